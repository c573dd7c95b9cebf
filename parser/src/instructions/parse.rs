//! Raw [`Node`] → typed [`Instruction`], with BuildKit's per-instruction validation.
//!
//! Checks run in BuildKit's order for each instruction (argument count, then flags, then
//! values), so the first error reported is the one BuildKit reports. Every error is at the
//! instruction keyword's location; for an ONBUILD trigger, at the ONBUILD's.

use std::time::Duration;

use super::Instruction;
use super::commands::{
    Add, Arg, ArgDef, Cmd, Copy, Entrypoint, Env, Expose, From, Healthcheck, KeyValue, Label,
    Maintainer, NetworkMode, Onbuild, Run, SecurityMode, Shell, SourceContent, StopSignal, User,
    Volume, Workdir,
};
use super::duration::parse_go_duration;
use super::flags::{FlagKind, FlagSpec, ParsedFlags, parse_flags};
use super::mount::{MountError, parse_mount};
use super::suggest::did_you_mean;
use super::validate::{PortForm, check_port, check_signal};
use crate::ast::{Node, Warning};
use crate::error::{Error, Location};

/// Every instruction keyword, lower-case.
pub(crate) const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

const COPY_FLAGS: &[FlagSpec] = &[
    ("exclude", FlagKind::Strings),
    ("parents", FlagKind::Bool),
    ("chown", FlagKind::String),
    ("from", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
];

const ADD_FLAGS: &[FlagSpec] = &[
    ("exclude", FlagKind::Strings),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("keep-git-dir", FlagKind::Bool),
    ("checksum", FlagKind::String),
    ("unpack", FlagKind::Bool),
];

const RUN_FLAGS: &[FlagSpec] = &[
    ("mount", FlagKind::Strings),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
];

const HEALTHCHECK_FLAGS: &[FlagSpec] = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];

const FROM_FLAGS: &[FlagSpec] = &[("platform", FlagKind::String)];

/// Parses one raw node into a typed instruction, discarding warnings.
///
/// # Errors
///
/// [`Error::Instruction`] at the keyword's location for an unknown keyword, an unknown or
/// malformed flag, a wrong argument count or an invalid value.
pub fn parse_instruction(node: &Node) -> Result<Instruction, Error> {
    parse_instruction_with_warnings(node, &mut Vec::new())
}

/// Parses one raw node into a typed instruction, appending warnings (e.g.
/// `MaintainerDeprecated`) to `warnings`.
///
/// # Errors
///
/// As [`parse_instruction`].
pub fn parse_instruction_with_warnings(
    node: &Node,
    warnings: &mut Vec<Warning>,
) -> Result<Instruction, Error> {
    let req = Req {
        node,
        loc: node.location(),
        warnings,
    };
    req.parse()
}

/// One instruction being parsed: the node, where its errors go, and the warning sink.
struct Req<'a> {
    node: &'a Node,
    loc: Location,
    warnings: &'a mut Vec<Warning>,
}

impl Req<'_> {
    fn parse(mut self) -> Result<Instruction, Error> {
        let keyword = self.node.keyword.to_ascii_lowercase();
        Ok(match keyword.as_str() {
            "env" => Instruction::Env(self.env()?),
            "maintainer" => Instruction::Maintainer(self.maintainer()?),
            "label" => Instruction::Label(self.label()?),
            "add" => Instruction::Add(self.add()?),
            "copy" => Instruction::Copy(self.copy()?),
            "from" => Instruction::From(self.from()?),
            "onbuild" => Instruction::Onbuild(self.onbuild()?),
            "workdir" => Instruction::Workdir(self.workdir()?),
            "run" => Instruction::Run(self.run()?),
            "cmd" => Instruction::Cmd(self.cmd()?),
            "healthcheck" => Instruction::Healthcheck(self.healthcheck()?),
            "entrypoint" => Instruction::Entrypoint(self.entrypoint()?),
            "expose" => Instruction::Expose(self.expose()?),
            "user" => Instruction::User(self.user()?),
            "volume" => Instruction::Volume(self.volume()?),
            "stopsignal" => Instruction::StopSignal(self.stopsignal()?),
            "arg" => Instruction::Arg(self.arg()?),
            "shell" => Instruction::Shell(self.shell()?),
            _ => return Err(self.unknown(&keyword)),
        })
    }

    fn unknown(&self, keyword: &str) -> Error {
        let mut msg = format!("unknown instruction: {}", self.node.keyword.to_uppercase());
        if let Some(best) = did_you_mean(keyword, KEYWORDS) {
            msg.push_str(&format!(" (did you mean {}?)", best.to_uppercase()));
        }
        self.err(msg)
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::instruction(self.loc, msg)
    }

    fn args(&self) -> &[String] {
        &self.node.args
    }

    fn original(&self) -> String {
        self.node.original.trim().to_string()
    }

    fn flags(&self, name: &str, specs: &[FlagSpec]) -> Result<ParsedFlags, Error> {
        parse_flags(name, &self.node.flags, specs).map_err(|m| self.err(m))
    }

    fn no_flags(&self, name: &str) -> Result<(), Error> {
        self.flags(name, &[]).map(|_| ())
    }

    fn exactly_one(&self, name: &str) -> Result<String, Error> {
        match self.args() {
            [one] => Ok(one.clone()),
            _ => Err(self.err(format!("{name} requires exactly one argument"))),
        }
    }

    fn at_least_one(&self, name: &str) -> Result<(), Error> {
        if self.args().is_empty() {
            Err(self.err(format!("{name} requires at least one argument")))
        } else {
            Ok(())
        }
    }

    fn warn(&mut self, rule: &str, message: String) {
        self.warnings.push(Warning {
            rule: rule.to_string(),
            message,
            loc: self.loc,
        });
    }

    fn env(&self) -> Result<Env, Error> {
        self.no_flags("ENV")?;
        Ok(Env {
            loc: self.loc,
            original: self.original(),
            vars: self.key_values("ENV")?,
        })
    }

    fn label(&self) -> Result<Label, Error> {
        self.no_flags("LABEL")?;
        Ok(Label {
            loc: self.loc,
            original: self.original(),
            labels: self.key_values("LABEL")?,
        })
    }

    /// ENV/LABEL pairs from the raw layer's key, value, separator triples.
    fn key_values(&self, name: &str) -> Result<Vec<KeyValue>, Error> {
        let args = self.args();
        if args.is_empty() {
            return Err(self.err(format!("{name} requires at least one argument")));
        }
        if !args.len().is_multiple_of(3) {
            return Err(self.err(format!("Bad input to {name}, too many arguments")));
        }
        args.chunks(3)
            .map(|t| {
                if t[0].is_empty() {
                    return Err(self.err(format!("{name} names can not be blank")));
                }
                Ok(KeyValue {
                    key: t[0].clone(),
                    value: t[1].clone(),
                    no_delim: t[2].is_empty(),
                })
            })
            .collect()
    }

    fn maintainer(&mut self) -> Result<Maintainer, Error> {
        let maintainer = self.exactly_one("MAINTAINER")?;
        self.no_flags("MAINTAINER")?;
        self.warn(
            "MaintainerDeprecated",
            "Maintainer instruction is deprecated in favor of using label".to_string(),
        );
        Ok(Maintainer {
            loc: self.loc,
            original: self.original(),
            maintainer,
        })
    }

    fn add(&self) -> Result<Add, Error> {
        self.need_destination("ADD")?;
        let f = self.flags("ADD", ADD_FLAGS)?;
        let (sources, contents, dest) = self.sources_and_dest("ADD")?;
        Ok(Add {
            loc: self.loc,
            original: self.original(),
            sources,
            contents,
            dest,
            chown: f.string("chown"),
            chmod: f.string("chmod"),
            link: f.bool("link"),
            keep_git_dir: f.bool("keep-git-dir"),
            checksum: f.string("checksum"),
            unpack: f.bool_opt("unpack"),
            excludes: f.strings("exclude"),
            heredocs: self.node.heredocs.clone(),
        })
    }

    fn copy(&self) -> Result<Copy, Error> {
        self.need_destination("COPY")?;
        let f = self.flags("COPY", COPY_FLAGS)?;
        let (sources, contents, dest) = self.sources_and_dest("COPY")?;
        Ok(Copy {
            loc: self.loc,
            original: self.original(),
            sources,
            contents,
            dest,
            from: f.string("from"),
            chown: f.string("chown"),
            chmod: f.string("chmod"),
            link: f.bool("link"),
            parents: f.bool("parents"),
            excludes: f.strings("exclude"),
            heredocs: self.node.heredocs.clone(),
        })
    }

    fn need_destination(&self, name: &str) -> Result<(), Error> {
        if self.args().len() < 2 {
            return Err(self.err(format!(
                "{name} requires at least two arguments, but only one was provided. \
                 Destination could not be determined"
            )));
        }
        Ok(())
    }

    /// Splits COPY/ADD arguments into path sources, heredoc sources and the destination.
    fn sources_and_dest(
        &self,
        name: &str,
    ) -> Result<(Vec<String>, Vec<SourceContent>, String), Error> {
        let args = self.args();
        let (dest, srcs) = match args.split_last() {
            Some(split) => split,
            None => return Err(self.err(format!("{name} requires at least two arguments"))),
        };
        if heredoc_marker(dest).is_some() {
            return Err(self.err(format!("{name} cannot accept a heredoc as a destination")));
        }
        let mut sources = Vec::new();
        let mut contents = Vec::new();
        for src in srcs {
            match heredoc_marker(src) {
                Some((marker_name, quoted)) => {
                    contents.push(self.heredoc_content(&marker_name, quoted));
                }
                None => sources.push(src.clone()),
            }
        }
        Ok((sources, contents, dest.clone()))
    }

    fn heredoc_content(&self, name: &str, quoted: bool) -> SourceContent {
        match self.node.heredocs.iter().find(|h| h.name == name) {
            Some(h) => SourceContent {
                path: h.name.clone(),
                data: h.content.clone(),
                expand: h.expand,
            },
            None => SourceContent {
                path: name.to_string(),
                data: String::new(),
                expand: !quoted,
            },
        }
    }

    fn from(&self) -> Result<From, Error> {
        let name = self.stage_name()?;
        let f = self.flags("FROM", FROM_FLAGS)?;
        let comment = name
            .as_deref()
            .and_then(|n| comment_for(&self.node.prev_comments, n));
        Ok(From {
            loc: self.loc,
            original: self.original(),
            base: self.args()[0].clone(),
            name,
            platform: f.string("platform"),
            comment,
        })
    }

    /// `image` or `image AS name` (any case for `AS`); the name is lower-cased.
    fn stage_name(&self) -> Result<Option<String>, Error> {
        match self.args() {
            [_] => Ok(None),
            [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                let lower = name.to_lowercase();
                if valid_stage_name(&lower) {
                    Ok(Some(lower))
                } else {
                    Err(self.err(format!(
                        "invalid name for build stage: {}, name can't start with a number or \
                         contain symbols",
                        crate::goquote::quote(name)
                    )))
                }
            }
            _ => Err(self.err("FROM requires either one or three arguments")),
        }
    }

    fn onbuild(&mut self) -> Result<Onbuild, Error> {
        let Some(sub) = self.node.sub.as_deref() else {
            return Err(self.err("ONBUILD requires at least one argument"));
        };
        self.no_flags("ONBUILD")?;
        let trigger_kw = sub.keyword.trim().to_uppercase();
        match trigger_kw.as_str() {
            "ONBUILD" => {
                return Err(self.err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
            }
            "MAINTAINER" | "FROM" => {
                return Err(self.err(format!("{trigger_kw} isn't allowed as an ONBUILD trigger")));
            }
            _ => {}
        }
        // The raw layer may attach the trigger's heredocs to the ONBUILD node.
        let mut trigger_node = sub.clone();
        if trigger_node.heredocs.is_empty() {
            trigger_node.heredocs = self.node.heredocs.clone();
        }
        let trigger = Req {
            node: &trigger_node,
            loc: self.loc,
            warnings: &mut *self.warnings,
        }
        .parse()?;
        Ok(Onbuild {
            loc: self.loc,
            original: self.original(),
            expression: self.onbuild_expression(sub),
            trigger: Box::new(trigger),
        })
    }

    /// The line without its `ONBUILD` keyword, plus heredoc bodies as BuildKit records them.
    fn onbuild_expression(&self, sub: &Node) -> String {
        let mut expr = strip_keyword(&self.node.original, "onbuild").to_string();
        let heredocs = if self.node.heredocs.is_empty() {
            &sub.heredocs
        } else {
            &self.node.heredocs
        };
        for h in heredocs {
            expr.push('\n');
            expr.push_str(&h.content);
            expr.push_str(&h.name);
        }
        expr
    }

    fn workdir(&self) -> Result<Workdir, Error> {
        let path = self.exactly_one("WORKDIR")?;
        self.no_flags("WORKDIR")?;
        Ok(Workdir {
            loc: self.loc,
            original: self.original(),
            path,
        })
    }

    fn run(&self) -> Result<Run, Error> {
        let f = self.flags("RUN", RUN_FLAGS)?;
        let mut mounts = Vec::new();
        for spec in f.strings("mount") {
            let m = parse_mount(&spec, None).map_err(|e| self.mount_error(&spec, e))?;
            mounts.push(m);
        }
        let network = match f.string("network").as_deref() {
            None | Some("default") => NetworkMode::Default,
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            Some(other) => return Err(self.err(format!("invalid network mode {other:?}"))),
        };
        let security = match f.string("security").as_deref() {
            None | Some("sandbox") => SecurityMode::Sandbox,
            Some("insecure") => SecurityMode::Insecure,
            Some(other) => return Err(self.err(format!("security {other:?} is not valid"))),
        };
        Ok(Run {
            loc: self.loc,
            original: self.original(),
            cmd_line: self.cmd_line(),
            prepend_shell: !self.node.json,
            heredocs: self.node.heredocs.clone(),
            mounts,
            network,
            security,
            flags_used: flags_used(&self.node.flags),
        })
    }

    fn mount_error(&self, spec: &str, e: MountError) -> Error {
        match e {
            MountError::Invalid(m) => self.err(format!("RUN --mount={spec}: {m}")),
            MountError::Expand(source) => Error::Expand {
                loc: self.loc,
                source,
            },
        }
    }

    /// BuildKit's `handleJSONArgs`: the exec form as is, the shell form as one string.
    fn cmd_line(&self) -> Vec<String> {
        let args = self.args();
        if args.is_empty() {
            Vec::new()
        } else if self.node.json {
            args.to_vec()
        } else {
            vec![args.join(" ")]
        }
    }

    fn cmd(&self) -> Result<Cmd, Error> {
        self.no_flags("CMD")?;
        Ok(Cmd {
            loc: self.loc,
            original: self.original(),
            cmd_line: self.cmd_line(),
            prepend_shell: !self.node.json,
            heredocs: self.node.heredocs.clone(),
        })
    }

    fn entrypoint(&self) -> Result<Entrypoint, Error> {
        self.no_flags("ENTRYPOINT")?;
        Ok(Entrypoint {
            loc: self.loc,
            original: self.original(),
            cmd_line: self.cmd_line(),
            prepend_shell: !self.node.json,
            heredocs: self.node.heredocs.clone(),
        })
    }

    fn healthcheck(&self) -> Result<Healthcheck, Error> {
        self.at_least_one("HEALTHCHECK")?;
        let mut hc = Healthcheck {
            loc: self.loc,
            original: self.original(),
            test: Vec::new(),
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        };
        let kind = self.args()[0].to_uppercase();
        let rest = &self.args()[1..];
        if kind == "NONE" {
            if !rest.is_empty() {
                return Err(self.err("HEALTHCHECK NONE takes no arguments"));
            }
            // BuildKit ignores flags here; strata still rejects unknown ones.
            self.flags("HEALTHCHECK", HEALTHCHECK_FLAGS)?;
            hc.test = vec![kind];
            return Ok(hc);
        }
        let f = self.flags("HEALTHCHECK", HEALTHCHECK_FLAGS)?;
        if kind != "CMD" {
            return Err(self.err(format!(
                "Unknown type {} in HEALTHCHECK (try CMD)",
                crate::goquote::quote(&kind)
            )));
        }
        let cmd: Vec<String> = if rest.is_empty() {
            Vec::new()
        } else if self.node.json {
            rest.to_vec()
        } else {
            vec![rest.join(" ")]
        };
        if cmd.is_empty() {
            return Err(self.err("Missing command after HEALTHCHECK CMD"));
        }
        let tag = if self.node.json { "CMD" } else { "CMD-SHELL" };
        hc.test = std::iter::once(tag.to_string()).chain(cmd).collect();
        hc.interval = self.interval(&f, "interval")?;
        hc.timeout = self.interval(&f, "timeout")?;
        hc.start_period = self.interval(&f, "start-period")?;
        hc.start_interval = self.interval(&f, "start-interval")?;
        hc.retries = self.retries(&f)?;
        Ok(hc)
    }

    /// A HEALTHCHECK duration: empty or 0 means unset; otherwise at least 1ms.
    fn interval(&self, f: &ParsedFlags, name: &str) -> Result<Option<Duration>, Error> {
        let Some(value) = f.string(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let nanos = parse_go_duration(&value)
            .map_err(|e| self.err(format!("HEALTHCHECK --{name}={value}: {e}")))?;
        if nanos == 0 {
            return Ok(None);
        }
        match u64::try_from(nanos) {
            Ok(n) if n >= 1_000_000 => Ok(Some(Duration::from_nanos(n))),
            _ => Err(self.err(format!(
                "Interval {} cannot be less than 1ms (HEALTHCHECK --{name}={value})",
                crate::goquote::quote(name)
            ))),
        }
    }

    fn retries(&self, f: &ParsedFlags) -> Result<Option<u32>, Error> {
        let Some(value) = f.string("retries").filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let n: i32 = value.parse().map_err(|_| {
            self.err(format!(
                "HEALTHCHECK --retries={value}: not a 32-bit integer"
            ))
        })?;
        if n < 0 {
            return Err(self.err(format!("--retries cannot be negative ({n})")));
        }
        Ok(u32::try_from(n).ok().filter(|n| *n > 0))
    }

    fn expose(&mut self) -> Result<Expose, Error> {
        self.at_least_one("EXPOSE")?;
        self.no_flags("EXPOSE")?;
        let mut ports = self.args().to_vec();
        for p in ports.iter().filter(|p| !p.contains('$')) {
            self.check_expose_word(p)?;
        }
        ports.sort();
        Ok(Expose {
            loc: self.loc,
            original: self.original(),
            ports,
        })
    }

    fn check_expose_word(&mut self, p: &str) -> Result<(), Error> {
        match check_port(p).map_err(|m| self.err(m))? {
            PortForm::Plain => {}
            PortForm::WithHost => self.warn(
                "ExposeInvalidFormat",
                format!(
                    "EXPOSE instruction should not define an IP address or host-port mapping, \
                     found '{p}'"
                ),
            ),
        }
        Ok(())
    }

    fn user(&self) -> Result<User, Error> {
        let user = self.exactly_one("USER")?;
        self.no_flags("USER")?;
        Ok(User {
            loc: self.loc,
            original: self.original(),
            user,
        })
    }

    fn volume(&self) -> Result<Volume, Error> {
        self.at_least_one("VOLUME")?;
        self.no_flags("VOLUME")?;
        let mut volumes = Vec::new();
        for v in self.args() {
            let v = v.trim();
            if v.is_empty() {
                return Err(self.err("VOLUME specified can not be an empty string"));
            }
            volumes.push(v.to_string());
        }
        Ok(Volume {
            loc: self.loc,
            original: self.original(),
            volumes,
        })
    }

    fn stopsignal(&self) -> Result<StopSignal, Error> {
        let signal = self.exactly_one("STOPSIGNAL")?;
        self.no_flags("STOPSIGNAL")?;
        if !signal.contains('$') {
            check_signal(&signal).map_err(|m| self.err(m))?;
        }
        Ok(StopSignal {
            loc: self.loc,
            original: self.original(),
            signal,
        })
    }

    fn arg(&self) -> Result<Arg, Error> {
        self.at_least_one("ARG")?;
        self.no_flags("ARG")?;
        let mut args = Vec::new();
        for word in self.args() {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (word.clone(), None),
            };
            if key.is_empty() {
                return Err(self.err("ARG names can not be blank"));
            }
            let comment = comment_for(&self.node.prev_comments, &key);
            args.push(ArgDef {
                key,
                value,
                comment,
            });
        }
        Ok(Arg {
            loc: self.loc,
            original: self.original(),
            args,
        })
    }

    fn shell(&self) -> Result<Shell, Error> {
        self.no_flags("SHELL")?;
        let shell = self.cmd_line();
        if shell.is_empty() {
            return Err(self.err("SHELL requires at least one argument"));
        }
        if !self.node.json {
            return Err(self.err("SHELL requires the arguments to be in JSON form"));
        }
        Ok(Shell {
            loc: self.loc,
            original: self.original(),
            shell,
        })
    }
}

/// BuildKit's stage name rule: `^[a-z][a-z0-9-_.]*$` (after lower-casing).
pub(crate) fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// BuildKit's `getComment`: the first comment line starting with `<name> `, minus that prefix.
fn comment_for(comments: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name} ");
    comments
        .iter()
        .find_map(|c| c.strip_prefix(&prefix))
        .map(str::to_string)
}

/// The names of the flags given, in order of first use.
fn flags_used(raw: &[String]) -> Vec<String> {
    let mut used: Vec<String> = Vec::new();
    for word in raw {
        let body = word.trim_start_matches("--");
        let name = body.split('=').next().unwrap_or(body).to_string();
        if !name.is_empty() && !used.contains(&name) {
            used.push(name);
        }
    }
    used
}

/// `original` without leading blanks and the (case-insensitive) keyword and the blanks after it.
fn strip_keyword<'a>(original: &'a str, keyword: &str) -> &'a str {
    let s = original.trim_start();
    match s.get(..keyword.len()) {
        Some(head) if head.eq_ignore_ascii_case(keyword) => s[keyword.len()..].trim_start(),
        _ => s,
    }
}

/// Recognises a heredoc word (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) and returns its name
/// without quotes and whether any part of it was quoted.
pub(crate) fn heredoc_marker(word: &str) -> Option<(String, bool)> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut name = String::new();
    let mut quoted = false;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                quoted = true;
                let close = c;
                loop {
                    match chars.next() {
                        Some(q) if q == close => break,
                        Some(ch) => name.push(ch),
                        None => return None,
                    }
                }
            }
            '\\' => {
                quoted = true;
                name.push(chars.next()?);
            }
            c if c.is_whitespace() => return None,
            c => name.push(c),
        }
    }
    if name.is_empty() {
        return None;
    }
    Some((name, quoted))
}
