//! The RUN sandbox through `strata debug sandbox`, for real (root, busybox-static at
//! /bin/busybox): capabilities, pid namespace, EPERM for mount/unshare, network none vs host,
//! fd hygiene (the CVE-2024-21626 class), what lands in the upper dir, exit codes, and cleanup
//! after `kill -9`.

use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::busybox::busybox_rootfs;
use crate::common::{fresh_dir, pids_with_argv, run, strata, wait_until};

/// A store root, a busybox rootfs, and fresh upper/work dirs.
struct Box_ {
    dir: tempfile::TempDir,
}

impl Box_ {
    fn new() -> Self {
        let dir = fresh_dir();
        let rootfs = dir.path().join("rootfs");
        busybox_rootfs(&rootfs);
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        )
        .expect("passwd");
        let b = Box_ { dir };
        b.reset();
        b
    }

    fn upper(&self) -> PathBuf {
        self.dir.path().join("up")
    }

    /// Empties the upper and work dirs for the next run.
    fn reset(&self) {
        for d in ["up", "work"] {
            let p = self.dir.path().join(d);
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("mkdir");
        }
    }

    /// `strata debug sandbox` with this box's dirs, `extra` flags and then `-- cmd...`.
    fn cmd(&self, extra: &[&str], cmd: &[&str]) -> Command {
        let mut c = strata(&self.dir.path().join("store"));
        c.args(["debug", "sandbox", "--lower"])
            .arg(self.dir.path().join("rootfs"))
            .arg("--upper")
            .arg(self.upper())
            .arg("--work")
            .arg(self.dir.path().join("work"))
            .args(extra)
            .arg("--")
            .args(cmd);
        c
    }

    /// Runs `sh -c script` and returns (exit code, stdout, stderr).
    fn sh(&self, extra: &[&str], script: &str) -> (i32, String, String) {
        let (out, so, se) = run(self.cmd(extra, &["sh", "-c", script]).stdin(Stdio::null()));
        (out.status.code().unwrap_or(-1), so, se)
    }

    /// The names in the upper dir, recursively, sorted.
    fn upper_listing(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut stack = vec![self.upper()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read upper") {
                let e = e.expect("entry");
                let p = e.path();
                names.push(
                    p.strip_prefix(self.upper())
                        .expect("under upper")
                        .display()
                        .to_string(),
                );
                if e.file_type().expect("type").is_dir() {
                    stack.push(p);
                }
            }
        }
        names.sort();
        names
    }
}

fn status_line<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

#[test]
fn default_capabilities_and_non_root_gets_none() {
    let b = Box_::new();
    let (code, so, se) = b.sh(&[], "grep Cap /proc/self/status");
    assert_eq!(code, 0, "{se}");
    assert_eq!(status_line(&so, "CapEff:"), "00000000a80425fb");
    assert_eq!(status_line(&so, "CapPrm:"), "00000000a80425fb");
    assert_eq!(status_line(&so, "CapBnd:"), "00000000a80425fb");
    assert_eq!(status_line(&so, "CapInh:"), "0000000000000000");
    assert_eq!(status_line(&so, "CapAmb:"), "0000000000000000");

    let (code, so, se) = b.sh(
        &["--user", "1000:1000"],
        "id -u; id -g; grep Cap /proc/self/status",
    );
    assert_eq!(code, 0, "{se}");
    assert!(so.starts_with("1000\n1000\n"), "{so}");
    assert_eq!(status_line(&so, "CapEff:"), "0000000000000000");
    assert_eq!(status_line(&so, "CapPrm:"), "0000000000000000");
    assert_eq!(status_line(&so, "CapBnd:"), "00000000a80425fb");
}

#[test]
fn only_the_sandbox_processes_are_visible() {
    let b = Box_::new();
    let (code, so, se) = b.sh(
        &[],
        "ls /proc | grep '^[0-9]*$'; echo; cat /proc/1/cmdline; true",
    );
    assert_eq!(code, 0, "{se}");
    let (pids, cmdline) = so.split_once("\n\n").expect("two parts");
    let pids: Vec<&str> = pids.lines().collect();
    // pid 1 = sh (the command), plus the ls and grep of the pipeline.
    assert!(pids.contains(&"1") && pids.len() <= 3, "{pids:?}");
    assert!(cmdline.starts_with("sh\0-c\0ls /proc"), "{cmdline:?}");
    // Positive control: the host sees many more processes.
    let host = std::fs::read_dir("/proc")
        .expect("host /proc")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count();
    assert!(host > 3, "host has {host} processes");
}

#[test]
fn mount_and_unshare_fail_with_eperm() {
    let b = Box_::new();
    let (code, so, se) = b.sh(
        &[],
        "mkdir -p /m; mount -t tmpfs x /m; echo mount=$?; unshare -m true; echo unshare=$?; \
         unshare -p -f true; echo unshare_pid=$?",
    );
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "mount=1\nunshare=1\nunshare_pid=1\n");
    // busybox mount words EPERM as "permission denied (are you root?)".
    assert!(
        se.contains("mount: permission denied (are you root?)"),
        "{se}"
    );
    assert!(
        se.contains("unshare: unshare(0x20000): Operation not permitted"),
        "{se}"
    );
    assert!(
        se.contains("unshare: unshare(0x20000000): Operation not permitted"),
        "{se}"
    );
    // Positive control: as host root the same commands work.
    let m = fresh_dir();
    let script = format!("mount -t tmpfs x {} && echo mounted", m.path().display());
    let (out, so, se) = run(Command::new("/bin/busybox").args([
        "unshare",
        "-m",
        "/bin/busybox",
        "sh",
        "-c",
        &script,
    ]));
    assert!(out.status.success(), "{se}");
    assert_eq!(so, "mounted\n");
}

#[test]
fn network_none_cannot_reach_the_host_but_host_can() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"pong\n");
        }
    });
    let b = Box_::new();
    let script = format!("nc 127.0.0.1 {port} </dev/null; echo rc=$?");
    let (code, so, se) = b.sh(&["--network", "host"], &script);
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "pong\nrc=0\n", "{se}");
    let (code, so, se) = b.sh(&["--network", "none"], &script);
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "rc=1\n", "{se}");
    assert!(se.contains("Connection refused"), "{se}");
    // lo is up and alone.
    let (code, so, se) = b.sh(
        &["--network", "none"],
        "cat /sys/class/net/lo/operstate; ls /sys/class/net",
    );
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "unknown\nlo\n");
}

#[test]
fn leaked_fds_reach_nothing_outside_the_root() {
    let secret = fresh_dir();
    std::fs::write(secret.path().join("SECRET"), b"x").expect("secret");
    // Without O_CLOEXEC: every child of the test process inherits it.
    let fd = nix::fcntl::open(
        secret.path(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open secret dir");
    let n = fd.as_raw_fd();
    // Positive control: a plain child sees the host dir through the leaked fd.
    let (out, so, _) =
        run(Command::new("/bin/busybox").args(["ls", &format!("/proc/self/fd/{n}/")]));
    assert!(out.status.success() && so.contains("SECRET"), "{so}");

    let b = Box_::new();
    let (code, so, se) = b.sh(&["--cwd", &format!("/proc/self/fd/{n}")], "ls; pwd");
    assert_eq!(code, 125, "{so}{se}");
    assert!(!so.contains("SECRET"), "{so}");
    assert!(se.contains("error: sandbox:"), "{se}");

    // Only 0, 1 and 2 are open in the command (pid 1 is sh; `; true` keeps sh from exec'ing
    // ls, whose own directory fd would show up).
    let (code, so, se) = b.sh(&[], "ls /proc/1/fd; true");
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "0\n1\n2\n");
    drop(fd);
}

#[test]
fn upper_dir_holds_only_what_the_step_wrote() {
    let b = Box_::new();
    let (code, _, se) = b.sh(&[], "true");
    assert_eq!(code, 0, "{se}");
    assert!(b.upper_listing().is_empty(), "{:?}", b.upper_listing());

    b.reset();
    let (code, _, se) = b.sh(&[], "touch /x");
    assert_eq!(code, 0, "{se}");
    assert_eq!(b.upper_listing(), ["x"]);

    b.reset();
    let ctx = fresh_dir();
    std::fs::write(ctx.path().join("in"), b"data").expect("ctx file");
    let bind = format!("{}:/ctx:ro", ctx.path().display());
    let (code, so, se) = b.sh(
        &["--tmpfs", "/cache", "--bind", &bind],
        "echo hi > /cache/f; cat /ctx/in; touch /ctx/w 2>/dev/null || echo ro",
    );
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "dataro\n");
    assert_eq!(b.upper_listing(), ["cache", "ctx"]);
    for d in ["cache", "ctx"] {
        let p = b.upper().join(d);
        assert!(p.is_dir(), "{d}");
        assert_eq!(std::fs::read_dir(&p).expect("read").count(), 0, "{d} empty");
    }
}

#[test]
fn exit_codes_propagate() {
    let b = Box_::new();
    assert_eq!(b.sh(&[], "exit 3").0, 3);
    let (out, _, se) = run(b.cmd(&[], &["no-such-command"]).stdin(Stdio::null()));
    assert_eq!(out.status.code(), Some(127), "{se}");
    assert!(se.contains("executable file not found in $PATH"), "{se}");
    let (out, _, se) = run(b.cmd(&[], &["/etc/passwd"]).stdin(Stdio::null()));
    assert_eq!(out.status.code(), Some(126), "{se}");
    // As in Docker, pid 1 ignores signals it has no handler for.
    assert_eq!(b.sh(&[], "kill -TERM $$; echo alive").1, "alive\n");
    assert_eq!(b.sh(&[], "sh -c 'kill -9 $$'; echo $?").1, "137\n");
}

#[test]
fn busybox_tools_work_under_seccomp() {
    let b = Box_::new();
    let (code, so, se) = b.sh(
        &[],
        "set -e; mkdir -p /a/b; echo hello > /a/b/f; ln -s /a/b/f /a/l; cat /a/l | wc -c; \
         find /a -name f; sha256sum /a/b/f | cut -c1-16; \
         dd if=/dev/zero of=/a/z bs=1k count=4 2>/dev/null; ls -l /a/z | awk '{print $5}'; \
         chmod 600 /a/z; chown 1:1 /a/z; rm -r /a; echo done",
    );
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "6\n/a/b/f\n5891b5b522d5df08\n4096\ndone\n");
}

fn overlay_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(" - overlay "))
        .count()
}

#[test]
fn kill_9_leaves_no_process_and_no_mount() {
    let b = Box_::new();
    let before = overlay_mounts();
    let marker = ["sleep", "1234"];
    let mut child = b
        .cmd(&[], &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(
        wait_until(Duration::from_secs(10), || !pids_with_argv(&marker)
            .is_empty()),
        "the sandbox never started"
    );
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert!(
        wait_until(Duration::from_secs(5), || pids_with_argv(&marker)
            .is_empty()),
        "still alive: {:?}",
        pids_with_argv(&marker)
    );
    assert_eq!(
        overlay_mounts(),
        before,
        "an overlay mount leaked to the host"
    );
}

#[test]
fn stub_lower_is_created_once() {
    let dir = fresh_dir();
    let a = strata_executor::sandbox::stub_lower(dir.path()).expect("stubs");
    let b = strata_executor::sandbox::stub_lower(dir.path()).expect("stubs again");
    assert_eq!(a, b);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["sandbox-stubs-v2"]);
    for f in ["etc/hosts", "etc/resolv.conf"] {
        assert_eq!(std::fs::metadata(a.join(f)).expect(f).len(), 0);
    }
    for d in ["dev", "proc", "sys"] {
        assert!(a.join(d).is_dir(), "{d}");
    }
}
