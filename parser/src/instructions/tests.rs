//! Unit tests of the typed layer, on nodes built by `test_support` (independent of the raw
//! parser), plus expansion tests with a map environment.

use std::collections::HashMap;
use std::time::Duration;

use super::test_support::{N, n};
use super::*;
use crate::ast::{Directives, RawDockerfile};
use crate::error::{Error, Location};
use crate::shell::Lexer;

fn parse(node: N) -> Result<Instruction, Error> {
    parse_instruction(&node.build())
}

fn ok(node: N) -> Instruction {
    match parse(node) {
        Ok(i) => i,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The error message; also checks the error is at the keyword (line 3, column 2, as `at`).
fn err(node: N) -> String {
    let node = node.at(3, 2).build();
    let len = node.keyword.chars().count();
    match parse_instruction(&node) {
        Ok(i) => panic!("expected an error, got {i:?}"),
        Err(e) => {
            assert!(matches!(e, Error::Instruction { .. }), "{e:?}");
            assert_eq!(e.location(), Location::new(3, 2, len), "{e}");
            e.message()
        }
    }
}

macro_rules! expect {
    ($inst:expr, $variant:ident) => {
        match $inst {
            Instruction::$variant(c) => c,
            other => panic!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

// ---------------------------------------------------------------- keywords

#[test]
fn keywords_are_case_insensitive() {
    let c = expect!(ok(n("WORKDIR").args(&["/app"])), Workdir);
    assert_eq!(c.path, "/app");
    let c = expect!(ok(n("WorkDir").args(&["/app"])), Workdir);
    assert_eq!(c.path, "/app");
}

#[test]
fn unknown_instruction() {
    assert_eq!(err(n("foo").args(&["bar"])), "unknown instruction: FOO");
    assert_eq!(
        err(n("wrokdir").args(&["/x"])),
        "unknown instruction: WROKDIR (did you mean WORKDIR?)"
    );
    assert_eq!(
        err(n("form").args(&["x"])),
        "unknown instruction: FORM (did you mean FROM?)"
    );
}

#[test]
fn instruction_accessors() {
    let i = ok(n("user").args(&["app"]).at(4, 3).original("  USER app  "));
    assert_eq!(i.keyword(), "USER");
    assert_eq!(i.loc(), Location::new(4, 3, 4));
    assert_eq!(i.original(), "USER app");
}

// ---------------------------------------------------------------- FROM

#[test]
fn from_image() {
    let c = expect!(ok(n("from").args(&["alpine:3.20"])), From);
    assert_eq!(c.base, "alpine:3.20");
    assert_eq!(c.name, None);
    assert_eq!(c.platform, None);
}

#[test]
fn from_as_name_is_lowercased() {
    let c = expect!(ok(n("from").args(&["golang", "As", "Build-1.x_y"])), From);
    assert_eq!(c.name.as_deref(), Some("build-1.x_y"));
}

#[test]
fn from_platform_flag() {
    let c = expect!(
        ok(n("from")
            .flags(&["--platform=$BUILDPLATFORM"])
            .args(&["golang"])),
        From
    );
    assert_eq!(c.platform.as_deref(), Some("$BUILDPLATFORM"));
}

#[test]
fn from_stage_comment() {
    let c = expect!(
        ok(n("from")
            .args(&["a", "AS", "base"])
            .comments(&["base is the base stage", "x"])),
        From
    );
    assert_eq!(c.comment.as_deref(), Some("is the base stage"));
}

#[test]
fn from_errors() {
    let msg = "FROM requires either one or three arguments";
    assert_eq!(err(n("from")), msg);
    assert_eq!(err(n("from").args(&["a", "b"])), msg);
    assert_eq!(err(n("from").args(&["a", "to", "b"])), msg);
    assert_eq!(err(n("from").args(&["a", "as", "b", "c"])), msg);
    assert_eq!(
        err(n("from").args(&["a", "as", "1st"])),
        "invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert!(err(n("from").args(&["a", "as", "a$b"])).contains("\"a$b\""));
    assert_eq!(
        err(n("from").flags(&["--plat=x"]).args(&["a"])),
        "unknown flag --plat for FROM (did you mean --platform?)"
    );
    assert!(err(n("from").flags(&["--platform"]).args(&["a"])).contains("--platform"));
}

#[test]
fn stage_name_rule() {
    use super::parse::valid_stage_name;
    assert!(valid_stage_name("a"));
    assert!(valid_stage_name("a-b_c.d9"));
    assert!(!valid_stage_name(""));
    assert!(!valid_stage_name("9a"));
    assert!(!valid_stage_name("-a"));
    assert!(!valid_stage_name("a/b"));
    assert!(!valid_stage_name("é"));
}

// ---------------------------------------------------------------- RUN / CMD / ENTRYPOINT

#[test]
fn run_shell_form() {
    let c = expect!(ok(n("run").args(&["echo hi && ls"])), Run);
    assert_eq!(c.cmd_line, vec!["echo hi && ls"]);
    assert!(c.prepend_shell);
    assert_eq!(c.network, NetworkMode::Default);
    assert_eq!(c.security, SecurityMode::Sandbox);
    assert!(c.mounts.is_empty());
    assert!(c.flags_used.is_empty());
}

#[test]
fn run_exec_form() {
    let c = expect!(ok(n("run").json(&["echo", "$HOME"])), Run);
    assert_eq!(c.cmd_line, vec!["echo", "$HOME"]);
    assert!(!c.prepend_shell);
}

#[test]
fn run_heredoc() {
    let c = expect!(
        ok(n("run")
            .args(&["<<EOF"])
            .heredoc("EOF", "echo a\necho b\n", true)),
        Run
    );
    assert_eq!(c.cmd_line, vec!["<<EOF"]);
    assert_eq!(c.heredocs.len(), 1);
    assert_eq!(c.heredocs[0].content, "echo a\necho b\n");
}

#[test]
fn run_flags() {
    let c = expect!(
        ok(n("run")
            .flags(&[
                "--mount=type=cache,target=/root/.cache",
                "--network=none",
                "--mount=type=secret,id=tok",
                "--security=insecure",
            ])
            .args(&["make"])),
        Run
    );
    assert_eq!(c.mounts.len(), 2);
    assert_eq!(c.mounts[0].kind, MountType::Cache);
    assert_eq!(c.mounts[1].kind, MountType::Secret);
    assert_eq!(c.network, NetworkMode::None);
    assert_eq!(c.security, SecurityMode::Insecure);
    assert_eq!(c.flags_used, vec!["mount", "network", "security"]);
    let c = expect!(ok(n("run").flags(&["--network=host"]).args(&["x"])), Run);
    assert_eq!(c.network, NetworkMode::Host);
    let c = expect!(
        ok(n("run")
            .flags(&["--network=default", "--security=sandbox"])
            .args(&["x"])),
        Run
    );
    assert_eq!(c.network, NetworkMode::Default);
    assert_eq!(c.security, SecurityMode::Sandbox);
}

#[test]
fn run_flag_errors() {
    assert_eq!(
        err(n("run").flags(&["--network=bridge"]).args(&["x"])),
        "invalid network mode \"bridge\""
    );
    assert_eq!(
        err(n("run").flags(&["--security=privileged"]).args(&["x"])),
        "security \"privileged\" is not valid"
    );
    assert_eq!(
        err(n("run").flags(&["--mount=type=nope"]).args(&["x"])),
        "RUN --mount=type=nope: unsupported mount type \"nope\""
    );
    assert_eq!(
        err(n("run").flags(&["--mount"]).args(&["x"])),
        "missing a value on flag --mount (on RUN)"
    );
    assert_eq!(
        err(n("run")
            .flags(&["--network=none", "--network=host"])
            .args(&["x"])),
        "duplicate flag specified: --network (on RUN)"
    );
    assert!(
        err(n("run").flags(&["--device=x"]).args(&["x"]))
            .starts_with("unknown flag --device for RUN")
    );
}

#[test]
fn cmd_forms() {
    let c = expect!(ok(n("cmd").args(&["nginx -g 'daemon off;'"])), Cmd);
    assert_eq!(c.cmd_line, vec!["nginx -g 'daemon off;'"]);
    assert!(c.prepend_shell);
    let c = expect!(ok(n("cmd").json(&["--port", "80"])), Cmd);
    assert_eq!(c.cmd_line, vec!["--port", "80"]);
    assert!(!c.prepend_shell);
    let c = expect!(ok(n("cmd").json(&[])), Cmd);
    assert!(c.cmd_line.is_empty());
    assert!(err(n("cmd").flags(&["--x"]).args(&["a"])).contains("unknown flag --x for CMD"));
}

#[test]
fn entrypoint_forms() {
    let c = expect!(
        ok(n("entrypoint").json(&["/bin/app", "--serve"])),
        Entrypoint
    );
    assert_eq!(c.cmd_line, vec!["/bin/app", "--serve"]);
    assert!(!c.prepend_shell);
    let c = expect!(ok(n("entrypoint").args(&["exec app"])), Entrypoint);
    assert!(c.prepend_shell);
    let c = expect!(ok(n("entrypoint").json(&[])), Entrypoint);
    assert!(c.cmd_line.is_empty());
    assert!(err(n("entrypoint").flags(&["--x=1"]).args(&["a"])).contains("ENTRYPOINT"));
}

// ---------------------------------------------------------------- ENV / LABEL

#[test]
fn env_pairs() {
    let c = expect!(
        ok(n("env").args(&["A", "1", "=", "B", "two words", "="])),
        Env
    );
    assert_eq!(c.vars.len(), 2);
    assert_eq!(
        (c.vars[0].key.as_str(), c.vars[0].value.as_str()),
        ("A", "1")
    );
    assert_eq!(c.vars[1].value, "two words");
    assert!(!c.vars[0].no_delim);
    let c = expect!(ok(n("env").args(&["A", "legacy value", ""])), Env);
    assert!(c.vars[0].no_delim);
}

#[test]
fn env_and_label_errors() {
    for kw in ["env", "label"] {
        let up = kw.to_uppercase();
        assert_eq!(err(n(kw)), format!("{up} requires at least one argument"));
        assert_eq!(
            err(n(kw).args(&["A", "1"])),
            format!("Bad input to {up}, too many arguments")
        );
        assert_eq!(
            err(n(kw).args(&["", "1", "="])),
            format!("{up} names can not be blank")
        );
        assert!(err(n(kw).flags(&["--x=1"]).args(&["A", "1", "="])).contains(&up));
    }
}

#[test]
fn label_pairs() {
    let c = expect!(
        ok(n("label").args(&["org.opencontainers.image.title", "strata", "="])),
        Label
    );
    assert_eq!(c.labels[0].key, "org.opencontainers.image.title");
    assert_eq!(c.labels[0].value, "strata");
}

// ---------------------------------------------------------------- MAINTAINER

#[test]
fn maintainer_warns() {
    let node = n("maintainer")
        .args(&["Jane <jane@example.com>"])
        .at(2, 1)
        .build();
    let mut warnings = Vec::new();
    let i = parse_instruction_with_warnings(&node, &mut warnings).unwrap();
    let c = expect!(i, Maintainer);
    assert_eq!(c.maintainer, "Jane <jane@example.com>");
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].rule, "MaintainerDeprecated");
    assert_eq!(warnings[0].loc, Location::new(2, 1, 10));
}

#[test]
fn maintainer_errors() {
    assert_eq!(
        err(n("maintainer")),
        "MAINTAINER requires exactly one argument"
    );
    assert_eq!(
        err(n("maintainer").args(&["a", "b"])),
        "MAINTAINER requires exactly one argument"
    );
}

// ---------------------------------------------------------------- COPY / ADD

#[test]
fn copy_sources_and_dest() {
    let c = expect!(ok(n("copy").args(&["a", "b/", "/dst/"])), Copy);
    assert_eq!(c.sources, vec!["a", "b/"]);
    assert_eq!(c.dest, "/dst/");
    assert!(c.contents.is_empty());
    assert_eq!(c.from, None);
    assert!(!c.link && !c.parents);
}

#[test]
fn copy_json_form() {
    let c = expect!(ok(n("copy").json(&["a b", "/d"])), Copy);
    assert_eq!(c.sources, vec!["a b"]);
    assert_eq!(c.dest, "/d");
}

#[test]
fn copy_flags() {
    let c = expect!(
        ok(n("copy")
            .flags(&[
                "--from=build",
                "--chown=1000:1000",
                "--chmod=0755",
                "--link",
                "--parents=true",
                "--exclude=*.md",
                "--exclude=tmp/",
            ])
            .args(&["a", "/d"])),
        Copy
    );
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("1000:1000"));
    assert_eq!(c.chmod.as_deref(), Some("0755"));
    assert!(c.link);
    assert!(c.parents);
    assert_eq!(c.excludes, vec!["*.md", "tmp/"]);
}

#[test]
fn copy_rejects_add_only_flags() {
    for f in ["--checksum=sha256:abc", "--keep-git-dir", "--unpack"] {
        let e = err(n("copy").flags(&[f]).args(&["a", "/d"]));
        assert!(e.starts_with("unknown flag --"), "{e}");
        assert!(e.contains("for COPY"), "{e}");
    }
}

#[test]
fn add_flags() {
    let c = expect!(
        ok(n("add")
            .flags(&[
                "--checksum=sha256:0123",
                "--keep-git-dir=true",
                "--unpack=false",
                "--link=false",
                "--chown=app",
                "--chmod=644",
                "--exclude=.git",
            ])
            .args(&["https://example.com/x.tar.gz", "/d"])),
        Add
    );
    assert_eq!(c.checksum.as_deref(), Some("sha256:0123"));
    assert!(c.keep_git_dir);
    assert_eq!(c.unpack, Some(false));
    assert!(!c.link);
    assert_eq!(c.chown.as_deref(), Some("app"));
    assert_eq!(c.chmod.as_deref(), Some("644"));
    assert_eq!(c.excludes, vec![".git"]);
    let c = expect!(ok(n("add").args(&["a", "/d"])), Add);
    assert_eq!(c.unpack, None);
    let c = expect!(ok(n("add").flags(&["--unpack"]).args(&["a", "/d"])), Add);
    assert_eq!(c.unpack, Some(true));
}

#[test]
fn add_rejects_copy_only_flags() {
    assert!(
        err(n("add").flags(&["--from=x"]).args(&["a", "/d"]))
            .contains("unknown flag --from for ADD")
    );
    assert!(
        err(n("add").flags(&["--parents"]).args(&["a", "/d"]))
            .contains("unknown flag --parents for ADD")
    );
}

#[test]
fn copy_add_argument_count() {
    for kw in ["copy", "add"] {
        let up = kw.to_uppercase();
        let want = format!(
            "{up} requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(err(n(kw).args(&["a"])), want);
        assert_eq!(err(n(kw)), want);
        // The count is checked before the flags, as in BuildKit.
        assert_eq!(err(n(kw).flags(&["--bogus"]).args(&["a"])), want);
    }
}

#[test]
fn copy_heredoc_sources() {
    let c = expect!(
        ok(n("copy")
            .args(&["<<one", "<<-\"two\"", "file", "/dst/"])
            .heredoc("one", "hello $X\n", true)
            .heredoc("two", "raw $X\n", false)),
        Copy
    );
    assert_eq!(c.sources, vec!["file"]);
    assert_eq!(c.contents.len(), 2);
    assert_eq!(c.contents[0].path, "one");
    assert_eq!(c.contents[0].data, "hello $X\n");
    assert!(c.contents[0].expand);
    assert_eq!(c.contents[1].path, "two");
    assert!(!c.contents[1].expand);
    assert_eq!(c.heredocs.len(), 2);
}

#[test]
fn heredoc_destination_is_an_error() {
    assert_eq!(
        err(n("copy").args(&["a", "<<EOF"]).heredoc("EOF", "x\n", true)),
        "COPY cannot accept a heredoc as a destination"
    );
    assert_eq!(
        err(n("add").args(&["a", "<<EOF"])),
        "ADD cannot accept a heredoc as a destination"
    );
}

#[test]
fn heredoc_markers() {
    use super::parse::heredoc_marker;
    assert_eq!(heredoc_marker("<<EOF"), Some(("EOF".into(), false)));
    assert_eq!(heredoc_marker("<<-EOF"), Some(("EOF".into(), false)));
    assert_eq!(heredoc_marker("<<'EOF'"), Some(("EOF".into(), true)));
    assert_eq!(heredoc_marker("<<\"E\"OF"), Some(("EOF".into(), true)));
    assert_eq!(heredoc_marker("3<<EOF"), Some(("EOF".into(), false)));
    assert_eq!(heredoc_marker("<<"), None);
    assert_eq!(heredoc_marker("<<<EOF"), None);
    assert_eq!(heredoc_marker("a<<EOF"), None);
    assert_eq!(heredoc_marker("<<'EOF"), None);
    assert_eq!(heredoc_marker("file"), None);
}

// ---------------------------------------------------------------- EXPOSE

#[test]
fn expose_ports_sorted() {
    let c = expect!(
        ok(n("expose").args(&["8080/udp", "80", "443/tcp", "8000-8010/udp"])),
        Expose
    );
    assert_eq!(c.ports, vec!["443/tcp", "80", "8000-8010/udp", "8080/udp"]);
}

#[test]
fn expose_variables_are_checked_later() {
    let c = expect!(ok(n("expose").args(&["$PORT", "${P}/tcp"])), Expose);
    assert_eq!(c.ports, vec!["$PORT", "${P}/tcp"]);
}

#[test]
fn expose_errors() {
    assert_eq!(err(n("expose")), "EXPOSE requires at least one argument");
    assert!(err(n("expose").args(&["http"])).contains("EXPOSE: invalid port \"http\""));
    assert!(err(n("expose").args(&["80/icmp"])).contains("invalid protocol \"icmp\""));
    assert!(err(n("expose").args(&["99999"])).contains("99999"));
    assert!(err(n("expose").flags(&["--x=1"]).args(&["80"])).contains("EXPOSE"));
}

#[test]
fn expose_host_mapping_warns() {
    let node = n("expose").args(&["127.0.0.1:80:80"]).build();
    let mut warnings = Vec::new();
    parse_instruction_with_warnings(&node, &mut warnings).unwrap();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].rule, "ExposeInvalidFormat");
    assert!(warnings[0].message.contains("127.0.0.1:80:80"));
}

// ---------------------------------------------------------------- USER / WORKDIR / VOLUME

#[test]
fn user_and_workdir() {
    let c = expect!(ok(n("user").args(&["app:app"])), User);
    assert_eq!(c.user, "app:app");
    assert_eq!(err(n("user")), "USER requires exactly one argument");
    assert_eq!(
        err(n("user").args(&["a", "b"])),
        "USER requires exactly one argument"
    );
    assert!(err(n("user").flags(&["--x=1"]).args(&["a"])).contains("for USER"));
    assert_eq!(err(n("workdir")), "WORKDIR requires exactly one argument");
    assert!(err(n("workdir").flags(&["--x"]).args(&["/a"])).contains("for WORKDIR"));
}

#[test]
fn volume_forms() {
    let c = expect!(ok(n("volume").args(&["/data", "/logs"])), Volume);
    assert_eq!(c.volumes, vec!["/data", "/logs"]);
    let c = expect!(ok(n("volume").json(&[" /data "])), Volume);
    assert_eq!(c.volumes, vec!["/data"]);
    assert_eq!(err(n("volume")), "VOLUME requires at least one argument");
    assert_eq!(
        err(n("volume").json(&["/a", "  "])),
        "VOLUME specified can not be an empty string"
    );
}

// ---------------------------------------------------------------- STOPSIGNAL

#[test]
fn stopsignal() {
    let c = expect!(ok(n("stopsignal").args(&["SIGQUIT"])), StopSignal);
    assert_eq!(c.signal, "SIGQUIT");
    expect!(ok(n("stopsignal").args(&["9"])), StopSignal);
    expect!(ok(n("stopsignal").args(&["$SIG"])), StopSignal);
    assert_eq!(
        err(n("stopsignal")),
        "STOPSIGNAL requires exactly one argument"
    );
    assert_eq!(
        err(n("stopsignal").args(&["a", "b"])),
        "STOPSIGNAL requires exactly one argument"
    );
    assert_eq!(
        err(n("stopsignal").args(&["SIGNOPE"])),
        "STOPSIGNAL: invalid signal: SIGNOPE"
    );
    assert!(err(n("stopsignal").flags(&["--x=1"]).args(&["9"])).contains("STOPSIGNAL"));
}

// ---------------------------------------------------------------- ARG

#[test]
fn arg_forms() {
    let c = expect!(
        ok(n("arg")
            .args(&["A", "B=", "C=x=y"])
            .comments(&["A is the first argument"])),
        Arg
    );
    assert_eq!(c.args.len(), 3);
    assert_eq!(c.args[0].key, "A");
    assert_eq!(c.args[0].value, None);
    assert_eq!(c.args[0].comment.as_deref(), Some("is the first argument"));
    assert_eq!(c.args[1].value.as_deref(), Some(""));
    assert_eq!(c.args[2].key, "C");
    assert_eq!(c.args[2].value.as_deref(), Some("x=y"));
}

#[test]
fn arg_errors() {
    assert_eq!(err(n("arg")), "ARG requires at least one argument");
    assert_eq!(err(n("arg").args(&["=x"])), "ARG names can not be blank");
    assert!(err(n("arg").flags(&["--required"]).args(&["A"])).contains("for ARG"));
}

// ---------------------------------------------------------------- SHELL

#[test]
fn shell_json_only() {
    let c = expect!(
        ok(n("shell").json(&["/bin/bash", "-eo", "pipefail", "-c"])),
        Shell
    );
    assert_eq!(c.shell, vec!["/bin/bash", "-eo", "pipefail", "-c"]);
    assert_eq!(
        err(n("shell").args(&["/bin/bash -c"])),
        "SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(
        err(n("shell").json(&[])),
        "SHELL requires at least one argument"
    );
    assert_eq!(err(n("shell")), "SHELL requires at least one argument");
}

// ---------------------------------------------------------------- HEALTHCHECK

#[test]
fn healthcheck_none() {
    let c = expect!(ok(n("healthcheck").args(&["none"])), Healthcheck);
    assert_eq!(c.test, vec!["NONE"]);
    assert_eq!(c.interval, None);
    assert_eq!(
        err(n("healthcheck").args(&["NONE", "x"])),
        "HEALTHCHECK NONE takes no arguments"
    );
}

#[test]
fn healthcheck_cmd_forms() {
    let c = expect!(
        ok(n("healthcheck").args(&["CMD", "curl -f http://localhost/"])),
        Healthcheck
    );
    assert_eq!(c.test, vec!["CMD-SHELL", "curl -f http://localhost/"]);
    let c = expect!(
        ok(n("healthcheck").json(&["cmd", "curl", "-f", "x"])),
        Healthcheck
    );
    assert_eq!(c.test, vec!["CMD", "curl", "-f", "x"]);
}

#[test]
fn healthcheck_flags() {
    let c = expect!(
        ok(n("healthcheck")
            .flags(&[
                "--interval=1m30s",
                "--timeout=5s",
                "--start-period=500ms",
                "--start-interval=1h",
                "--retries=3",
            ])
            .args(&["CMD", "true"])),
        Healthcheck
    );
    assert_eq!(c.interval, Some(Duration::from_secs(90)));
    assert_eq!(c.timeout, Some(Duration::from_secs(5)));
    assert_eq!(c.start_period, Some(Duration::from_millis(500)));
    assert_eq!(c.start_interval, Some(Duration::from_secs(3600)));
    assert_eq!(c.retries, Some(3));
    let c = expect!(
        ok(n("healthcheck")
            .flags(&["--interval=0s", "--retries=0"])
            .args(&["CMD", "true"])),
        Healthcheck
    );
    assert_eq!(c.interval, None);
    assert_eq!(c.retries, None);
    let c = expect!(
        ok(n("healthcheck")
            .flags(&["--timeout=1ms"])
            .args(&["CMD", "true"])),
        Healthcheck
    );
    assert_eq!(c.timeout, Some(Duration::from_millis(1)));
}

#[test]
fn healthcheck_errors() {
    assert_eq!(
        err(n("healthcheck")),
        "HEALTHCHECK requires at least one argument"
    );
    assert_eq!(
        err(n("healthcheck").args(&["RUN", "x"])),
        "Unknown type \"RUN\" in HEALTHCHECK (try CMD)"
    );
    assert_eq!(
        err(n("healthcheck").args(&["CMD"])),
        "Missing command after HEALTHCHECK CMD"
    );
    assert_eq!(
        err(n("healthcheck")
            .flags(&["--interval=10"])
            .args(&["CMD", "x"])),
        "HEALTHCHECK --interval=10: time: missing unit in duration \"10\""
    );
    assert_eq!(
        err(n("healthcheck")
            .flags(&["--timeout=soon"])
            .args(&["CMD", "x"])),
        "HEALTHCHECK --timeout=soon: time: invalid duration \"soon\""
    );
    assert_eq!(
        err(n("healthcheck")
            .flags(&["--start-period=999us"])
            .args(&["CMD", "x"])),
        "Interval \"start-period\" cannot be less than 1ms (HEALTHCHECK --start-period=999us)"
    );
    assert!(
        err(n("healthcheck")
            .flags(&["--start-interval=-1s"])
            .args(&["CMD", "x"]))
        .contains("cannot be less than 1ms")
    );
    assert_eq!(
        err(n("healthcheck")
            .flags(&["--retries=-1"])
            .args(&["CMD", "x"])),
        "--retries cannot be negative (-1)"
    );
    assert_eq!(
        err(n("healthcheck")
            .flags(&["--retries=three"])
            .args(&["CMD", "x"])),
        "HEALTHCHECK --retries=three: not a 32-bit integer"
    );
    assert!(
        err(n("healthcheck").flags(&["--retry=3"]).args(&["CMD", "x"]))
            .contains("did you mean --retries?")
    );
    assert!(
        err(n("healthcheck").flags(&["--bogus=1"]).args(&["NONE"]))
            .contains("unknown flag --bogus for HEALTHCHECK")
    );
}

// ---------------------------------------------------------------- ONBUILD

#[test]
fn onbuild_trigger() {
    let c = expect!(
        ok(n("onbuild")
            .sub(n("run").args(&["echo $HOME"]).original("RUN echo $HOME"))
            .original("ONBUILD RUN echo $HOME")),
        Onbuild
    );
    assert_eq!(c.expression, "RUN echo $HOME");
    let run = expect!(*c.trigger, Run);
    assert_eq!(run.cmd_line, vec!["echo $HOME"]);
    assert_eq!(run.loc, c.loc);
}

#[test]
fn onbuild_expression_with_heredoc() {
    let c = expect!(
        ok(n("onbuild")
            .sub(n("run").args(&["<<EOF"]).original("RUN <<EOF"))
            .heredoc("EOF", "echo hi\n", true)
            .original("  onbuild   RUN <<EOF")),
        Onbuild
    );
    assert_eq!(c.expression, "RUN <<EOF\necho hi\nEOF");
    let run = expect!(*c.trigger, Run);
    assert_eq!(run.heredocs.len(), 1);
}

#[test]
fn onbuild_forbidden_triggers() {
    assert_eq!(
        err(n("onbuild").sub(n("onbuild").sub(n("run").args(&["x"])))),
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        err(n("onbuild").sub(n("from").args(&["a"]))),
        "FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        err(n("onbuild").sub(n("maintainer").args(&["me"]))),
        "MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(err(n("onbuild")), "ONBUILD requires at least one argument");
}

#[test]
fn onbuild_trigger_errors_are_at_the_onbuild() {
    // `err` checks the location is the ONBUILD keyword's, not the trigger's.
    assert_eq!(
        err(n("onbuild").sub(n("copy").args(&["a"]).at(9, 9))),
        "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
    );
    assert_eq!(
        err(n("onbuild").sub(n("bogus").args(&["a"]))),
        "unknown instruction: BOGUS"
    );
}

// ---------------------------------------------------------------- stages

fn raw(nodes: Vec<N>) -> RawDockerfile {
    RawDockerfile {
        directives: Directives::default(),
        nodes: nodes
            .into_iter()
            .enumerate()
            .map(|(i, node)| node.at(i + 1, 1).build())
            .collect(),
        warnings: Vec::new(),
    }
}

#[test]
fn stages_and_meta_args() {
    let df = Dockerfile::from_raw(raw(vec![
        n("arg").args(&["BASE=alpine"]),
        n("from")
            .args(&["$BASE", "AS", "Build"])
            .comments(&["build compiles"]),
        n("run").args(&["make"]),
        n("arg").args(&["V"]),
        n("from")
            .flags(&["--platform=linux/arm64"])
            .args(&["scratch"]),
        n("copy").flags(&["--from=build"]).args(&["/out", "/"]),
    ]))
    .unwrap();
    assert_eq!(df.meta_args.len(), 1);
    assert_eq!(df.meta_args[0].args[0].key, "BASE");
    assert_eq!(df.stages.len(), 2);
    let s0 = &df.stages[0];
    assert_eq!(s0.name.as_deref(), Some("build"));
    assert_eq!(s0.base, "$BASE");
    assert_eq!(s0.loc, Location::new(2, 1, 4));
    assert_eq!(s0.comment.as_deref(), Some("compiles"));
    assert_eq!(s0.comments, vec!["build compiles"]);
    assert_eq!(s0.instructions.len(), 2);
    assert_eq!(s0.instructions[1].keyword(), "ARG");
    let s1 = &df.stages[1];
    assert_eq!(s1.name, None);
    assert_eq!(s1.platform.as_deref(), Some("linux/arm64"));
    assert_eq!(s1.instructions.len(), 1);
    assert_eq!(df.stage("BUILD").map(|(i, _)| i), Some(0));
    assert!(df.stage("nope").is_none());
    assert_eq!(s0.from_instruction().base, "$BASE");
}

#[test]
fn instruction_before_from_is_an_error() {
    let e =
        Dockerfile::from_raw(raw(vec![n("arg").args(&["A"]), n("run").args(&["x"])])).unwrap_err();
    assert_eq!(e.location(), Location::new(2, 1, 3));
    assert!(
        e.message().starts_with("no build stage in current context"),
        "{e}"
    );
    assert!(e.message().contains("RUN"), "{e}");
}

#[test]
fn errors_stop_at_the_first_bad_node() {
    let e = Dockerfile::from_raw(raw(vec![
        n("from").args(&["a"]),
        n("copy").args(&["x"]),
        n("bogus"),
    ]))
    .unwrap_err();
    assert_eq!(e.location().line, 2);
}

#[test]
fn dockerfile_warnings() {
    let mut r = raw(vec![
        n("from").args(&["a", "AS", "x"]),
        n("maintainer").args(&["me"]),
        n("from").args(&["b", "AS", "X"]),
    ]);
    r.warnings.push(crate::ast::Warning {
        rule: "EmptyContinuationLine".into(),
        message: "m".into(),
        loc: Location::new(1, 1, 1),
    });
    let df = Dockerfile::from_raw(r).unwrap();
    let rules: Vec<&str> = df.warnings.iter().map(|w| w.rule.as_str()).collect();
    assert_eq!(
        rules,
        vec![
            "EmptyContinuationLine",
            "MaintainerDeprecated",
            "DuplicateStageName"
        ]
    );
    assert_eq!(df.warnings[2].loc.line, 3);
}

#[test]
fn empty_file_has_no_stages() {
    let df = Dockerfile::from_raw(raw(vec![])).unwrap();
    assert!(df.stages.is_empty() && df.meta_args.is_empty());
}

#[test]
fn serializes_to_json() {
    let df = Dockerfile::from_raw(raw(vec![
        n("from").args(&["a"]),
        n("run")
            .flags(&["--mount=type=cache,target=/c"])
            .args(&["x"]),
        n("healthcheck")
            .flags(&["--interval=2s"])
            .args(&["CMD", "true"]),
        n("stopsignal").args(&["TERM"]),
    ]))
    .unwrap();
    let v = serde_json::to_value(&df).unwrap();
    let inst = &v["stages"][0]["instructions"];
    assert_eq!(inst[0]["instruction"], "RUN");
    assert_eq!(inst[0]["mounts"][0]["type"], "cache");
    assert_eq!(inst[0]["network"], "default");
    assert_eq!(inst[1]["instruction"], "HEALTHCHECK");
    assert_eq!(inst[1]["interval"], 2_000_000_000u64);
    assert_eq!(inst[2]["instruction"], "STOPSIGNAL");
    assert_eq!(v["stages"][0]["loc"]["line"], 1);
}

// ---------------------------------------------------------------- expansion

fn env() -> HashMap<String, String> {
    [
        ("A", "1"),
        ("DIR", "/srv/app"),
        ("USER", "app"),
        ("PORTS", "80 443/tcp"),
        ("SIG", "SIGINT"),
        ("BAD_SIG", "SIGNOPE"),
        ("T", "cache"),
        ("EMPTY", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs `f` only once the shell lexer expands words (it may still be a placeholder).
fn with_lexer(f: impl FnOnce(&Lexer, &HashMap<String, String>)) {
    let lexer = Lexer::new('\\');
    let env = env();
    if lexer.process_word("$A", &env).ok().as_deref() != Some("1") {
        eprintln!("shell lexer not available yet: expansion test skipped");
        return;
    }
    f(&lexer, &env);
}

fn expanded(node: N, lexer: &Lexer, env: &HashMap<String, String>) -> Result<Instruction, Error> {
    ok(node).expand(lexer, env)
}

#[test]
fn not_expanded_instructions_are_unchanged() {
    // These do not call the lexer at all, so they hold even with a placeholder lexer.
    let lexer = Lexer::new('\\');
    let env = env();
    for node in [
        n("run").args(&["echo $A"]),
        n("cmd").args(&["echo $A"]),
        n("entrypoint").json(&["$A"]),
        n("shell").json(&["$A"]),
        n("maintainer").args(&["$A"]),
        n("healthcheck").args(&["CMD", "$A"]),
        n("onbuild").sub(n("workdir").args(&["$DIR"])),
    ] {
        let i = ok(node);
        assert_eq!(i.expand(&lexer, &env).unwrap(), i);
    }
}

#[test]
fn expands_paths_users_and_pairs() {
    with_lexer(|lx, env| {
        let c = expect!(
            expanded(n("workdir").args(&["$DIR/sub"]), lx, env).unwrap(),
            Workdir
        );
        assert_eq!(c.path, "/srv/app/sub");
        let c = expect!(
            expanded(n("user").args(&["${USER}:$A"]), lx, env).unwrap(),
            User
        );
        assert_eq!(c.user, "app:1");
        let c = expect!(
            expanded(n("volume").args(&["$DIR", "/x$A"]), lx, env).unwrap(),
            Volume
        );
        assert_eq!(c.volumes, vec!["/srv/app", "/x1"]);
        let c = expect!(
            expanded(n("env").args(&["K$A", "$DIR", "="]), lx, env).unwrap(),
            Env
        );
        assert_eq!(
            (c.vars[0].key.as_str(), c.vars[0].value.as_str()),
            ("K1", "/srv/app")
        );
        let c = expect!(
            expanded(n("label").args(&["l", "$USER", "="]), lx, env).unwrap(),
            Label
        );
        assert_eq!(c.labels[0].value, "app");
        let c = expect!(
            expanded(n("arg").args(&["X=$A", "Y"]), lx, env).unwrap(),
            Arg
        );
        assert_eq!(c.args[0].value.as_deref(), Some("1"));
        assert_eq!(c.args[1].value, None);
    });
}

#[test]
fn expands_copy_add_and_flags() {
    with_lexer(|lx, env| {
        let c = expect!(
            expanded(
                n("copy")
                    .flags(&["--from=$T", "--chown=$USER", "--chmod=7$A"])
                    .args(&["$DIR/a", "$DIR/"]),
                lx,
                env
            )
            .unwrap(),
            Copy
        );
        assert_eq!(c.sources, vec!["/srv/app/a"]);
        assert_eq!(c.dest, "/srv/app/");
        assert_eq!(c.from.as_deref(), Some("cache"));
        assert_eq!(c.chown.as_deref(), Some("app"));
        assert_eq!(c.chmod.as_deref(), Some("71"));
        let c = expect!(
            expanded(
                n("add").flags(&["--checksum=$A"]).args(&["x", "$DIR"]),
                lx,
                env
            )
            .unwrap(),
            Add
        );
        assert_eq!(c.checksum.as_deref(), Some("1"));
        assert_eq!(c.dest, "/srv/app");
    });
}

#[test]
fn expands_from_and_platform() {
    with_lexer(|lx, env| {
        let c = expect!(
            expanded(
                n("from").flags(&["--platform=linux/$T"]).args(&["img:$A"]),
                lx,
                env
            )
            .unwrap(),
            From
        );
        assert_eq!(c.base, "img:1");
        assert_eq!(c.platform.as_deref(), Some("linux/cache"));
    });
}

#[test]
fn expands_expose_with_word_splitting_and_checks() {
    with_lexer(|lx, env| {
        let c = expect!(
            expanded(n("expose").args(&["$PORTS", "8$A"]), lx, env).unwrap(),
            Expose
        );
        assert_eq!(c.ports, vec!["80", "443/tcp", "81"]);
        let e = expanded(n("expose").args(&["$USER"]), lx, env).unwrap_err();
        assert!(matches!(e, Error::Instruction { .. }), "{e:?}");
        assert!(e.message().contains("\"app\""), "{e}");
    });
}

#[test]
fn expands_and_checks_stopsignal() {
    with_lexer(|lx, env| {
        let c = expect!(
            expanded(n("stopsignal").args(&["$SIG"]), lx, env).unwrap(),
            StopSignal
        );
        assert_eq!(c.signal, "SIGINT");
        let e = expanded(n("stopsignal").args(&["$BAD_SIG"]), lx, env).unwrap_err();
        assert_eq!(e.message(), "STOPSIGNAL: invalid signal: SIGNOPE");
    });
}

#[test]
fn expands_and_checks_mounts() {
    with_lexer(|lx, env| {
        let c = expect!(
            expanded(
                n("run")
                    .flags(&["--mount=type=$T,target=$DIR"])
                    .args(&["x"]),
                lx,
                env
            )
            .unwrap(),
            Run
        );
        assert_eq!(c.mounts[0].kind, MountType::Cache);
        assert_eq!(c.mounts[0].target.as_deref(), Some("/srv/app"));
        assert!(!c.mounts[0].read_only);
        let e = expanded(
            n("run").flags(&["--mount=type=$USER"]).args(&["x"]),
            lx,
            env,
        )
        .unwrap_err();
        assert_eq!(
            e.message(),
            "RUN --mount=type=$USER: unsupported mount type \"app\""
        );
    });
}

#[test]
fn empty_volume_after_expansion_is_an_error() {
    with_lexer(|lx, env| {
        let e = expanded(n("volume").args(&["$EMPTY"]), lx, env).unwrap_err();
        assert_eq!(e.message(), "VOLUME specified can not be an empty string");
    });
}

#[test]
fn expansion_errors_are_at_the_instruction() {
    with_lexer(|lx, env| {
        let i = ok(n("workdir").args(&["${A"]).at(7, 2));
        let e = i.expand(lx, env).unwrap_err();
        assert!(matches!(e, Error::Expand { .. }), "{e:?}");
        assert_eq!(e.location(), Location::new(7, 2, 7));
    });
}

#[test]
fn stage_expand_from() {
    with_lexer(|lx, env| {
        let df = Dockerfile::from_raw(raw(vec![
            n("from")
                .flags(&["--platform=$T"])
                .args(&["base:$A", "AS", "s"]),
        ]))
        .unwrap();
        let f = df.stages[0].expand_from(lx, env).unwrap();
        assert_eq!(f.base, "base:1");
        assert_eq!(f.platform.as_deref(), Some("cache"));
        assert_eq!(f.name.as_deref(), Some("s"));
    });
}

// ---------------------------------------------------------------- end to end

/// Through the raw parser; skipped while it is a placeholder.
#[test]
fn end_to_end_parse_dockerfile() {
    let src = "ARG V=1\nFROM alpine AS base\nRUN --mount=type=cache,target=/c echo hi\nCOPY --from=base a /b\n";
    let Ok(raw) = crate::raw::parse(src) else {
        eprintln!("raw parser not available yet: end-to-end test skipped");
        return;
    };
    let df = Dockerfile::from_raw(raw).unwrap();
    assert_eq!(df.meta_args.len(), 1);
    assert_eq!(df.stages.len(), 1);
    assert_eq!(df.stages[0].instructions.len(), 2);
    assert_eq!(parse_dockerfile(src).unwrap(), df);
}

#[test]
fn copy_heredoc_bodies_expand_unless_quoted() {
    let src = "FROM scratch\nCOPY <<A <<'B' /dst/\necho \"$X\" '$X'\nA\nkeep $X\nB\n";
    let df = parse_dockerfile(src).expect("parses");
    let env: HashMap<String, String> = [("X".to_string(), "1".to_string())].into();
    let expanded = df.stages[0].instructions[0]
        .expand(&Lexer::new('\\'), &env)
        .expect("expands");
    let Instruction::Copy(copy) = expanded else {
        panic!("not a COPY: {expanded:?}");
    };
    let bodies: Vec<&str> = copy.contents.iter().map(|c| c.data.as_str()).collect();
    assert_eq!(bodies, ["echo \"1\" '1'\n", "keep $X\n"]);
}
