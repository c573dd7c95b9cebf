//! Helpers shared by the integration tests: fresh temp folders, the `strata` binary, and text
//! comparison with a readable line diff.

#![allow(dead_code)]

pub mod busybox;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh temporary folder, removed when dropped.
pub fn fresh_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-test-")
        .tempdir()
        .expect("create temp dir")
}

/// The path of the `strata` binary under test.
pub fn strata_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

/// A `strata` command with `--root` set to `root`.
pub fn strata(root: &Path) -> Command {
    let mut c = Command::new(strata_bin());
    c.arg("--root").arg(root);
    c
}

/// Runs a command and returns its output, with stdout and stderr as text.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run command");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, so, se)
}

/// The root of the repository (for fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A line diff of `expected` and `actual`, marking each differing line with `-` and `+`.
pub fn line_diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => out.push_str(&format!("  {x}\n")),
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("- {x}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!("+ {y}\n"));
                }
            }
        }
    }
    out
}

/// Asserts that two texts are equal, printing a line diff (`-` expected, `+` actual) if not.
#[macro_export]
macro_rules! assert_text_eq {
    ($expected:expr, $actual:expr $(, $($ctx:tt)+)?) => {{
        let (e, a): (&str, &str) = (&$expected, &$actual);
        if e != a {
            panic!(
                "texts differ{}:\n{}",
                { let _c = String::new(); $( let _c = format!(" ({})", format!($($ctx)+)); )? _c },
                $crate::common::line_diff(e, a)
            );
        }
    }};
}

/// Every live process: its pid and its raw command line (NUL-separated arguments).
fn processes() -> impl Iterator<Item = (u32, Vec<u8>)> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, cmdline))
        })
}

/// The pids whose argv is exactly `argv`.
pub fn pids_with_argv(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    processes()
        .filter(|(_, cmdline)| *cmdline == want)
        .map(|(pid, _)| pid)
        .collect()
}

/// The command lines (arguments joined by spaces) that mention `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    processes()
        .map(|(_, cmdline)| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(needle))
        .collect()
}

/// Polls `f` every 50 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f()
}

/// `podman` on throwaway storage under `dir` (vfs, no daemon, no systemd).
pub fn podman(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
    c
}
