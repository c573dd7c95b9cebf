//! Metadata instructions: how each changes the image config, and the history line BuildKit
//! records for it (`created_by`). None of them makes a layer.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use strata_parser::Instruction;

use crate::image_config::ImageConfig;

/// The shell BuildKit uses when no SHELL was given.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The stage's shell: SHELL if set, else `/bin/sh -c`.
pub fn shell(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .shell
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
}

/// A command line as an exec form: shell form gets the stage's shell prepended.
pub fn exec_form(config: &ImageConfig, cmd_line: &[String], prepend_shell: bool) -> Vec<String> {
    if prepend_shell {
        let mut v = shell(config);
        v.push(cmd_line.join(" "));
        v
    } else {
        cmd_line.to_vec()
    }
}

/// Go's `%q` of a string slice, as BuildKit formats CMD/ENTRYPOINT/SHELL history
/// (`["a" "b"]`).
pub fn go_quoted_list(items: &[String]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|s| strata_parser::goquote::quote(s))
        .collect();
    format!("[{}]", parts.join(" "))
}

/// Go's `%v` of a string slice (`[a b]`).
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

fn nanos(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .filter(|n| *n > 0)
}

/// The `Healthcheck` object of the config (Docker's field names; zero values left out).
pub fn healthcheck_json(h: &strata_parser::instructions::Healthcheck) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("Test".into(), json!(h.test));
    for (k, v) in [
        ("Interval", nanos(h.interval)),
        ("Timeout", nanos(h.timeout)),
        ("StartPeriod", nanos(h.start_period)),
        ("StartInterval", nanos(h.start_interval)),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(r) = h.retries.filter(|r| *r > 0) {
        m.insert("Retries".into(), json!(r));
    }
    Value::Object(m)
}

/// Applies an (expanded) metadata instruction; returns its history `created_by`, or `None`
/// for instructions that are not metadata (RUN, COPY, ADD, WORKDIR, FROM, ARG).
/// `cmd_set`: whether CMD was set in this stage (a new ENTRYPOINT clears an inherited CMD).
pub fn apply(config: &mut ImageConfig, ins: &Instruction, cmd_set: &mut bool) -> Option<String> {
    let c = &mut config.config;
    Some(match ins {
        Instruction::Env(e) => {
            let mut parts = Vec::new();
            for kv in &e.vars {
                parts.push(format!("{}={}", kv.key, kv.value));
            }
            for kv in &e.vars {
                config.set_env(&kv.key, &kv.value);
            }
            format!("ENV {}", parts.join(" "))
        }
        Instruction::Label(l) => {
            let labels = c.labels.get_or_insert_with(BTreeMap::new);
            let mut parts = Vec::new();
            for kv in &l.labels {
                labels.insert(kv.key.clone(), kv.value.clone());
                parts.push(format!("{}={}", kv.key, kv.value));
            }
            format!("LABEL {}", parts.join(" "))
        }
        Instruction::Cmd(cmd) => {
            let args = exec_form(config, &cmd.cmd_line, cmd.prepend_shell);
            let shown = go_quoted_list(&args);
            config.config.cmd = Some(args);
            *cmd_set = true;
            format!("CMD {shown}")
        }
        Instruction::Entrypoint(ep) => {
            let args = exec_form(config, &ep.cmd_line, ep.prepend_shell);
            let shown = go_quoted_list(&args);
            config.config.entrypoint = Some(args);
            if !*cmd_set {
                config.config.cmd = None;
            }
            format!("ENTRYPOINT {shown}")
        }
        Instruction::Expose(e) => {
            let ports = c.exposed_ports.get_or_insert_with(BTreeMap::new);
            let mut shown = Vec::new();
            for p in &e.ports {
                for p in expand_port_range(p) {
                    ports.insert(p.clone(), json!({}));
                    shown.push(p);
                }
            }
            format!("EXPOSE map[{}]", {
                let mut s: Vec<String> = shown.iter().map(|p| format!("{p}:{{}}")).collect();
                s.sort();
                s.join(" ")
            })
        }
        Instruction::Volume(v) => {
            let vols = c.volumes.get_or_insert_with(BTreeMap::new);
            for p in &v.volumes {
                vols.insert(p.clone(), json!({}));
            }
            format!("VOLUME {}", go_list(&v.volumes))
        }
        Instruction::User(u) => {
            c.user = Some(u.user.clone());
            format!("USER {}", u.user)
        }
        Instruction::StopSignal(s) => {
            c.stop_signal = Some(s.signal.clone());
            format!("STOPSIGNAL {}", s.signal)
        }
        Instruction::Healthcheck(h) => {
            let j = healthcheck_json(h);
            c.healthcheck = Some(j);
            format!("HEALTHCHECK {}", healthcheck_history(h))
        }
        Instruction::Shell(s) => {
            c.shell = Some(s.shell.clone());
            format!("SHELL {}", go_list(&s.shell))
        }
        Instruction::Maintainer(m) => {
            config.author = Some(m.maintainer.clone());
            format!("MAINTAINER {}", m.maintainer)
        }
        Instruction::Onbuild(o) => {
            // Recorded in the config only: BuildKit writes no history entry for ONBUILD.
            c.on_build
                .get_or_insert_with(Vec::new)
                .push(o.expression.clone());
            return None;
        }
        Instruction::From(_)
        | Instruction::Run(_)
        | Instruction::Add(_)
        | Instruction::Copy(_)
        | Instruction::Workdir(_)
        | Instruction::Arg(_) => return None,
    })
}

/// `80` -> `80/tcp`; `8000-8002/udp` -> one entry per port, as Docker's `nat.ParsePortSpecs`.
fn expand_port_range(spec: &str) -> Vec<String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if let Some((a, b)) = ports.split_once('-')
        && let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
        && a <= b
    {
        return (a..=b).map(|p| format!("{p}/{proto}")).collect();
    }
    vec![format!("{ports}/{proto}")]
}

/// BuildKit's `fmt.Sprintf("HEALTHCHECK %q", health)` of Docker's HealthConfig struct:
/// `&{["CMD-SHELL" "x"] "30s" "0s" "0s" '\x00'}`.
fn healthcheck_history(h: &strata_parser::instructions::Healthcheck) -> String {
    let d = |d: Option<std::time::Duration>| go_duration(d.unwrap_or_default());
    // Docker's HealthConfig as the recorded BuildKit prints it: test, interval, timeout,
    // start period, retries (StartInterval is not part of that struct).
    format!(
        "&{{{} {:?} {:?} {:?} '{}'}}",
        go_quoted_list(&h.test),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
        go_rune(h.retries.unwrap_or(0))
    )
}

/// Go's `%q` of an int used as a rune (`'\x00'`, `'\x03'`).
fn go_rune(n: u32) -> String {
    match char::from_u32(n) {
        Some(c) if (' '..='~').contains(&c) && c != '\'' && c != '\\' => c.to_string(),
        _ if n < 0x100 => format!("\\x{n:02x}"),
        _ => format!("\\u{n:04x}"),
    }
}

/// Go's `time.Duration.String()`.
pub fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", trim_float(ns as f64 / 1e3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", trim_float(ns as f64 / 1e6));
    }
    let total = d.as_secs_f64();
    let h = (total / 3600.0).floor();
    let m = ((total - h * 3600.0) / 60.0).floor();
    let s = total - h * 3600.0 - m * 60.0;
    let mut out = String::new();
    if h > 0.0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0.0 || m > 0.0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", trim_float((s * 1e9).round() / 1e9)));
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_rune(0), "\\x00");
        assert_eq!(go_rune(3), "\\x03");
        assert_eq!(
            go_quoted_list(&["cat".into(), "/a b".into()]),
            r#"["cat" "/a b"]"#
        );
    }

    #[test]
    fn entrypoint_clears_an_inherited_cmd_only() {
        let df = strata_parser::parse_dockerfile(
            "FROM x\nENTRYPOINT [\"e\"]\nCMD c\nENTRYPOINT [\"f\"]\n",
        )
        .unwrap();
        let mut config = ImageConfig::default();
        config.config.cmd = Some(vec!["inherited".into()]);
        let mut cmd_set = false;
        let ins = &df.stages[0].instructions;
        apply(&mut config, &ins[0], &mut cmd_set);
        assert_eq!(config.config.cmd, None);
        apply(&mut config, &ins[1], &mut cmd_set);
        let h = apply(&mut config, &ins[2], &mut cmd_set).unwrap();
        assert_eq!(h, r#"ENTRYPOINT ["f"]"#);
        assert_eq!(
            config.config.cmd,
            Some(vec!["/bin/sh".into(), "-c".into(), "c".into()])
        );
    }
}
