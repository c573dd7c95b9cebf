//! The `strata` binary as users run it: `debug parse`, `debug expand`, `--root`, diagnostics
//! and exit codes (0 success, 1 failure, 125 usage error).

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::common::{fresh_dir, repo_root, run, strata, strata_bin};

/// `strata` with a root that the debug commands never touch.
fn strata_plain() -> Command {
    strata(std::path::Path::new("/nonexistent/strata-root"))
}

#[test]
fn parse_example_prints_buildkit_dump() {
    let example = repo_root().join("examples/hello/Dockerfile");
    let (out, stdout, stderr) = run(strata_plain().args(["debug", "parse"]).arg(&example));
    assert!(out.status.success(), "stderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], r#"(arg "BASE=busybox")"#);
    assert_eq!(lines[1], r#"(from "${BASE}" "AS" "base")"#);
    assert_eq!(lines.last().copied(), Some(r#"(cmd "hello")"#));
    assert!(
        stdout.contains(r#"(copy ["--chmod=0755"] "<<'EOF'" "/usr/local/bin/hello")"#),
        "{stdout}"
    );
}

#[test]
fn parse_reads_stdin() {
    let mut child = strata_plain()
        .args(["debug", "parse", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"from busybox\nRUN echo hi\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"busybox\")\n(run \"echo hi\")\n"
    );
}

#[test]
fn parse_error_is_a_rustc_style_diagnostic() {
    let dir = fresh_dir();
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM busybox\n  RUNN echo hi\n").expect("write");
    let (out, stdout, stderr) = run(strata(dir.path())
        .args(["debug", "parse", "--format", "json"])
        .arg(&file));
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let first = format!("{}:2:3: error: ", file.display());
    assert!(stderr.starts_with(&first), "{stderr}");
    assert!(stderr.contains("unknown instruction"), "{stderr}");
    assert!(stderr.contains("2 |   RUNN echo hi\n"), "{stderr}");
    assert!(stderr.contains("  |   ^^^^\n"), "{stderr}");
}

#[test]
fn buildkit_format_accepts_unknown_keywords_like_buildkit() {
    let dir = fresh_dir();
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM busybox\nRUNN echo hi\n").expect("write");
    let (out, stdout, stderr) = run(strata(dir.path()).args(["debug", "parse"]).arg(&file));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("(from \"busybox\")\n(runn"), "{stdout}");
}

#[test]
fn parse_json_has_stages_and_positions() {
    let dir = fresh_dir();
    let file = dir.path().join("Dockerfile");
    std::fs::write(
        &file,
        "ARG V=1\nFROM busybox AS one\nRUN true\nFROM one\nCOPY --from=one /a /b\n",
    )
    .expect("write");
    let (out, stdout, stderr) = run(strata(dir.path())
        .args(["debug", "parse", "--format=json"])
        .arg(&file));
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    let stages = json["stages"].as_array().expect("stages array");
    assert_eq!(stages.len(), 2);
    assert_eq!(json["meta_args"].as_array().map(Vec::len), Some(1));
    assert!(
        stdout.contains("\"line\": 5"),
        "positions present: {stdout}"
    );
}

#[test]
fn missing_file_fails_with_a_message() {
    let (out, _, stderr) = run(strata_plain().args(["debug", "parse", "/nonexistent/Dockerfile"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read /nonexistent/Dockerfile"),
        "{stderr}"
    );
}

#[test]
fn expand_prints_the_word() {
    let (out, stdout, stderr) = run(strata_plain().args([
        "debug",
        "expand",
        "--env",
        "NAME=world",
        "--env",
        "EMPTY=",
        "--",
        "hi ${NAME} ${EMPTY:-dflt} '$NAME'",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "hi world dflt $NAME\n");
}

#[test]
fn expand_with_backtick_escape() {
    let (out, stdout, _) = run(strata_plain().args(["debug", "expand", "--escape", "`", "a`$b"]));
    assert!(out.status.success());
    assert_eq!(stdout, "a$b\n");
}

#[test]
fn expand_malformed_input_exits_1() {
    for word in ["${}", "${A", "'open", "\"open"] {
        let (out, stdout, stderr) = run(strata_plain().args(["debug", "expand", "--", word]));
        assert_eq!(out.status.code(), Some(1), "{word}: {stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.starts_with("error: cannot expand"),
            "{word}: {stderr}"
        );
    }
}

#[test]
fn usage_errors_exit_125() {
    let cases: &[&[&str]] = &[
        &["no-such-command"],
        &["debug", "parse"],
        &["debug", "parse", "--format", "yaml", "x"],
        &["debug", "expand", "--env", "NOEQUALS", "w"],
        &["--no-such-flag"],
    ];
    for args in cases {
        let (out, _, stderr) = run(strata_plain().args(*args));
        assert_eq!(out.status.code(), Some(125), "{args:?}: {stderr}");
    }
}

#[test]
fn help_and_version_exit_0() {
    for arg in ["--help", "--version"] {
        let (out, stdout, _) = run(Command::new(strata_bin()).arg(arg));
        assert_eq!(out.status.code(), Some(0), "{arg}");
        assert!(stdout.contains("strata"), "{stdout}");
    }
}

#[test]
fn root_comes_from_flag_then_env() {
    let (out, stdout, _) = run(Command::new(strata_bin())
        .env("STRATA_ROOT", "/from/env")
        .args(["--root", "/from/flag", "debug", "root"]));
    assert!(out.status.success());
    assert_eq!(stdout, "/from/flag\n");
    let (_, stdout, _) = run(Command::new(strata_bin())
        .env("STRATA_ROOT", "/from/env")
        .args(["debug", "root"]));
    assert_eq!(stdout, "/from/env\n");
    // The global flag is accepted after the subcommand too.
    let (_, stdout, _) = run(Command::new(strata_bin())
        .env_remove("STRATA_ROOT")
        .args(["debug", "root", "--root", "/late"]));
    assert_eq!(stdout, "/late\n");
}

#[test]
fn default_root_for_root_user() {
    if !nix_is_root() {
        return;
    }
    let (_, stdout, _) = run(Command::new(strata_bin())
        .env_remove("STRATA_ROOT")
        .args(["debug", "root"]));
    assert_eq!(stdout, "/var/lib/strata\n");
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}
