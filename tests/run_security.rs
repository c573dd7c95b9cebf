//! Docker's default security profile, checked for real from inside containers (root,
//! busybox-static at /bin/busybox, gcc for the probe): capabilities and `--cap-add/--cap-drop`,
//! denied syscalls (mount, unshare, keyctl: EPERM; clone3: ENOSYS), masked and read-only
//! paths, invisible host processes and files, `-m`, `--pids-limit`, `--read-only`, `-t`,
//! `exec` (same namespaces, no leaked fds), the start barrier, and the runtime binary out of
//! reach (CVE-2019-5736 class).
//!
//! Every check is a function over a [`Runner`]: how to run a command in a container with
//! docker-style flags. Here it is `strata debug sandbox` on a busybox rootfs that holds the
//! probe at `/bin/probe`; the same `check_*` functions can drive `strata run` on an image
//! with busybox and [`probe`] at `/bin/probe` (implement [`Runner`] for it).

use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::common::busybox::busybox_rootfs;
use crate::common::{fresh_dir, repo_root, run, strata, strata_bin};

/// (exit code, stdout, stderr) of a container command.
type Out = (i32, String, String);

/// How the checks run a command in a container.
pub(crate) trait Runner {
    /// Runs `cmd` in a new container with docker-style `flags` (`--cap-add X`, `--cap-drop X`,
    /// `--privileged`, `-m SIZE`, `--cpus N`, `--pids-limit N`, `--read-only`, `-t`,
    /// `--network none`) and stdin from /dev/null.
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Out;
    /// Starts `cmd` (long-running) in a new container with `flags`, runs `sh -c script` in
    /// it through exec, returns the exec's result and removes the container.
    fn exec(&self, flags: &[&str], cmd: &[&str], script: &str) -> Out;
}

/// The probe, built once per test run with `gcc -static` from tests/fixtures/probe/probe.c
/// into cargo's temp dir for tests (a temp name renamed into place, so concurrent test
/// processes never see half a binary).
pub(crate) fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).expect("probe dir");
        let out = dir.join("strata-probe");
        let tmp = dir.join(format!("strata-probe.{}", std::process::id()));
        let (o, _, se) = run(Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&tmp)
            .arg(repo_root().join("tests/fixtures/probe/probe.c")));
        assert!(o.status.success(), "gcc -static failed: {se}");
        std::fs::rename(&tmp, &out).expect("rename the probe");
        out
    })
}

/// `strata debug sandbox` on a busybox rootfs with the probe.
struct DebugSandbox {
    dir: tempfile::TempDir,
}

impl DebugSandbox {
    fn new() -> Self {
        let dir = fresh_dir();
        let rootfs = dir.path().join("rootfs");
        busybox_rootfs(&rootfs);
        std::fs::copy(probe(), rootfs.join("bin/probe")).expect("copy probe");
        DebugSandbox { dir }
    }

    /// `strata debug sandbox` with fresh upper/work dirs, `lower` above the rootfs, `flags`.
    fn cmd(&self, lower: &[&Path], flags: &[&str], cmd: &[&str]) -> Command {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let (up, work) = (
            self.dir.path().join(format!("up-{n}")),
            self.dir.path().join(format!("work-{n}")),
        );
        std::fs::create_dir_all(&up).expect("upper");
        std::fs::create_dir_all(&work).expect("work");
        let mut c = strata(&self.dir.path().join("store"));
        c.args(["debug", "sandbox"]);
        for l in lower {
            c.arg("--lower").arg(l);
        }
        c.arg("--lower")
            .arg(self.dir.path().join("rootfs"))
            .arg("--upper")
            .arg(up)
            .arg("--work")
            .arg(work)
            .args(flags)
            .arg("--")
            .args(cmd)
            .stdin(Stdio::null());
        c
    }
}

fn outcome(c: &mut Command) -> Out {
    let (o, so, se) = run(c);
    (o.status.code().unwrap_or(-1), so, se)
}

impl Runner for DebugSandbox {
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Out {
        outcome(&mut self.cmd(&[], flags, cmd))
    }

    fn exec(&self, flags: &[&str], cmd: &[&str], script: &str) -> Out {
        let mut all = flags.to_vec();
        all.extend(["--exec-sh", script]);
        outcome(&mut self.cmd(&[], &all, cmd))
    }
}

fn status_line<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

/// (CapEff, CapPrm, CapBnd) of a shell run with `flags`.
fn caps(r: &dyn Runner, flags: &[&str]) -> (String, String, String) {
    let (code, so, se) = r.run(flags, &["grep", "Cap", "/proc/self/status"]);
    assert_eq!(code, 0, "{se}");
    (
        status_line(&so, "CapEff:").to_string(),
        status_line(&so, "CapPrm:").to_string(),
        status_line(&so, "CapBnd:").to_string(),
    )
}

pub(crate) fn check_default_capabilities(r: &dyn Runner) {
    let (eff, prm, bnd) = caps(r, &[]);
    assert_eq!(eff, "00000000a80425fb");
    assert_eq!(prm, eff);
    assert_eq!(bnd, eff);
}

pub(crate) fn check_cap_add_and_drop(r: &dyn Runner) {
    // CHOWN is bit 0, SYS_ADMIN bit 21.
    let (eff, prm, bnd) = caps(r, &["--cap-drop", "chown", "--cap-add", "CAP_SYS_ADMIN"]);
    assert_eq!(eff, "00000000a82425fa");
    assert_eq!((prm.as_str(), bnd.as_str()), (eff.as_str(), eff.as_str()));
    // NET_BIND_SERVICE is bit 10.
    let (eff, _, bnd) = caps(r, &["--cap-drop", "ALL", "--cap-add", "net_bind_service"]);
    assert_eq!(
        (eff.as_str(), bnd.as_str()),
        ("0000000000000400", "0000000000000400")
    );
    let (code, _, se) = r.run(&["--cap-add", "CAP_FLY"], &["true"]);
    assert_eq!(code, 125, "{se}");
    assert!(se.contains("unknown capability: \"CAP_FLY\""), "{se}");
}

/// The probe's verdicts on the syscalls a container may not make.
fn probe_all(r: &dyn Runner, flags: &[&str]) -> String {
    let script = "for t in mount unshare unshare-user keyctl clone3; do probe $t; done";
    let (code, so, se) = r.run(flags, &["sh", "-c", script]);
    assert_eq!(code, 0, "{se}");
    so
}

pub(crate) fn check_denied_syscalls(r: &dyn Runner) {
    assert_eq!(
        probe_all(r, &[]),
        "mount EPERM\nunshare EPERM\nunshare-user EPERM\nkeyctl EPERM\nclone3 ENOSYS\n"
    );
    // Positive control: privileged (all capabilities, no seccomp) the same calls work.
    assert_eq!(
        probe_all(r, &["--privileged"]),
        "mount OK\nunshare OK\nunshare-user OK\nkeyctl OK\nclone3 OK\n"
    );
}

pub(crate) fn check_masked_and_readonly_paths(r: &dyn Runner) {
    let script = "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
                  [ -e $f ] && echo $f $(cat $f | wc -c); done; echo firmware $(ls /sys/firmware | wc -l); \
                  echo 1 > /proc/sys/kernel/domainname && echo sys-writable; \
                  echo h > /proc/sysrq-trigger && echo sysrq-writable; true";
    let (code, so, se) = r.run(&[], &["sh", "-c", script]);
    assert_eq!(code, 0, "{se}");
    for line in so.lines() {
        assert!(line.ends_with(" 0"), "not empty: {line} ({so})");
    }
    assert!(
        so.contains("/proc/keys 0\n") && so.contains("firmware 0\n"),
        "{so}"
    );
    assert!(se.contains("Read-only file system"), "{se}");
    // Positive control: privileged, the same paths have content.
    let (_, so, _) = r.run(
        &["--privileged"],
        &["sh", "-c", "cat /proc/keys /proc/timer_list | wc -c"],
    );
    assert_ne!(so.trim(), "0", "{so}");
}

pub(crate) fn check_host_invisible(r: &dyn Runner) {
    let marker = std::env::temp_dir().join(format!("strata-host-marker-{}", std::process::id()));
    std::fs::write(&marker, b"host").expect("marker");
    let script = format!(
        "ls /proc | grep -c '^[0-9]*$'; cat {} 2>/dev/null || echo no-marker; true",
        marker.display()
    );
    let (code, so, se) = r.run(&[], &["sh", "-c", &script]);
    let _ = std::fs::remove_file(&marker);
    assert_eq!(code, 0, "{se}");
    let mut lines = so.lines();
    let pids: u32 = lines.next().and_then(|l| l.parse().ok()).expect("a count");
    // sh, ls and grep (ls may have exited already).
    assert!(pids <= 3, "{so}");
    assert_eq!(lines.next(), Some("no-marker"));
}

pub(crate) fn check_network_none_cannot_reach_the_host(r: &dyn Runner) {
    use std::io::Write as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"pong\n");
        }
    });
    let script = format!("nc 127.0.0.1 {port} </dev/null; echo rc=$?");
    let (code, so, se) = r.run(&["--network", "none"], &["sh", "-c", &script]);
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "rc=1\n", "{se}");
    // Positive control: with the host's network the server answers.
    let (_, so, _) = r.run(&["--network", "host"], &["sh", "-c", &script]);
    assert_eq!(so, "pong\nrc=0\n");
}

pub(crate) fn check_memory_limit(r: &dyn Runner) {
    let (code, so, se) = r.run(&["-m", "64m"], &["probe", "alloc", "200"]);
    assert_eq!(code, 137, "{so}{se}");
    assert_eq!(so, "");
    // Positive control: enough memory.
    let (code, so, se) = r.run(&["-m", "512m"], &["probe", "alloc", "200"]);
    assert_eq!((code, so.as_str()), (0, "alloc OK\n"), "{se}");
}

pub(crate) fn check_pids_limit(r: &dyn Runner) {
    let (code, so, se) = r.run(&["--pids-limit", "20"], &["probe", "forks", "100"]);
    assert_eq!(code, 0, "{se}");
    let words: Vec<&str> = so.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{so}");
    let n: u32 = words[1].parse().expect("count");
    assert!(n < 20, "{so}");
    assert_eq!(words[2], "EAGAIN", "{so}");
    // Positive control: without the limit all forks succeed.
    let (_, so, _) = r.run(&[], &["probe", "forks", "100"]);
    assert_eq!(so, "forks 100 OK\n");
}

pub(crate) fn check_read_only_root(r: &dyn Runner) {
    let (code, so, se) = r.run(
        &["--read-only"],
        &[
            "sh",
            "-c",
            "touch /x || echo ro; touch /dev/shm/x && echo shm-rw",
        ],
    );
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "ro\nshm-rw\n");
    assert!(se.contains("Read-only file system"), "{se}");
    let (_, so, _) = r.run(&[], &["sh", "-c", "touch /x && echo rw"]);
    assert_eq!(so, "rw\n");
}

pub(crate) fn check_tty(r: &dyn Runner) {
    // pid 1 leads its own session (field 6 = 1) with the pty as controlling terminal
    // (field 7, tty_nr, non-zero).
    let (code, so, se) = r.run(
        &["-t"],
        &[
            "sh",
            "-c",
            "[ -t 0 ] && echo tty; cut -d' ' -f6,7 /proc/self/stat",
        ],
    );
    assert_eq!(code, 0, "{se}");
    let so = so.replace('\r', "");
    let mut lines = so.lines();
    assert_eq!(lines.next(), Some("tty"), "{so}");
    let fields: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
    assert_eq!(fields.first(), Some(&"1"), "{so}");
    assert_ne!(fields.get(1), Some(&"0"), "{so}");
    let (_, so, _) = r.run(&[], &["sh", "-c", "[ -t 0 ] || echo no-tty"]);
    assert_eq!(so, "no-tty\n");
}

const NAMESPACES: [&str; 6] = ["mnt", "pid", "uts", "ipc", "net", "cgroup"];

pub(crate) fn check_exec_joins_every_namespace(r: &dyn Runner) {
    let script = NAMESPACES
        .iter()
        .map(|n| format!("echo {n} $(readlink /proc/self/ns/{n}) $(readlink /proc/1/ns/{n});"))
        .collect::<String>()
        + "grep CapEff /proc/self/status; cat /proc/1/cmdline | tr '\\0' ' '";
    let (code, so, se) = r.exec(&["--network", "none"], &["sleep", "1000"], &script);
    assert_eq!(code, 0, "{se}");
    let mut lines = so.lines();
    for n in NAMESPACES {
        let line = lines.next().unwrap_or_default();
        let w: Vec<&str> = line.split(' ').collect();
        assert_eq!(w.len(), 3, "{n}: {so}");
        assert_eq!(w[0], n);
        assert!(w[1].starts_with(&format!("{n}:[")), "{so}");
        assert_eq!(w[1], w[2], "{n} differs: {so}");
    }
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["CapEff:", "00000000a80425fb"])
    );
    assert_eq!(lines.next(), Some("sleep 1000 "), "{so}");
    // Positive control: the host's namespaces differ from the container's.
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").expect("ns");
    assert!(!so.contains(&host_mnt.display().to_string()), "{so}");
}

pub(crate) fn check_exec_leaks_no_fd(r: &dyn Runner) {
    let secret = fresh_dir();
    // Without O_CLOEXEC: every child of the test process inherits it.
    let fd = nix::fcntl::open(
        secret.path(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open secret dir");
    assert!(fd.as_raw_fd() > 2);
    let (code, so, se) = r.exec(&[], &["sleep", "1000"], "ls /proc/$$/fd; ls /proc/1/fd");
    assert_eq!(code, 0, "{se}");
    assert_eq!(so, "0\n1\n2\n0\n1\n2\n");
    drop(fd);
}

#[test]
fn default_capabilities() {
    check_default_capabilities(&DebugSandbox::new());
}

#[test]
fn cap_add_and_cap_drop_change_effective_and_bounding() {
    check_cap_add_and_drop(&DebugSandbox::new());
}

#[test]
fn mount_unshare_keyctl_are_eperm_and_clone3_enosys() {
    check_denied_syscalls(&DebugSandbox::new());
}

#[test]
fn masked_paths_read_empty_and_readonly_paths_refuse_writes() {
    check_masked_and_readonly_paths(&DebugSandbox::new());
}

#[test]
fn host_processes_and_files_are_invisible() {
    check_host_invisible(&DebugSandbox::new());
}

#[test]
fn network_none_cannot_reach_the_host() {
    check_network_none_cannot_reach_the_host(&DebugSandbox::new());
}

#[test]
fn memory_limit_kills_a_200mb_allocation() {
    check_memory_limit(&DebugSandbox::new());
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    check_pids_limit(&DebugSandbox::new());
}

#[test]
fn read_only_root() {
    check_read_only_root(&DebugSandbox::new());
}

#[test]
fn tty_is_the_controlling_terminal_of_pid_1() {
    check_tty(&DebugSandbox::new());
}

#[test]
fn exec_joins_every_namespace_of_pid_1() {
    check_exec_joins_every_namespace(&DebugSandbox::new());
}

#[test]
fn exec_leaks_no_fd() {
    check_exec_leaks_no_fd(&DebugSandbox::new());
}

#[test]
fn cpus_limit_is_accepted_and_cgroup_removed() {
    let b = DebugSandbox::new();
    let (code, so, se) = b.run(
        &["--cpus", "0.5", "-m", "100m"],
        &["cat", "/proc/self/cgroup"],
    );
    assert_eq!(code, 0, "{se}");
    // v1 here: the cpu and memory lines name the container's own cgroup; on the host it is gone
    // after the exit.
    let cpu = so
        .lines()
        .find_map(|l| l.strip_prefix("1:cpu:").or_else(|| l.strip_prefix("0::")))
        .filter(|p| p.contains("strata-"))
        .unwrap_or_else(|| panic!("not in a strata cgroup: {so}"));
    let mount = if Path::new("/sys/fs/cgroup/cpu").is_dir() {
        "/sys/fs/cgroup/cpu"
    } else {
        "/sys/fs/cgroup"
    };
    assert!(
        !Path::new(&format!("{mount}{cpu}")).exists(),
        "{cpu} left behind"
    );
}

#[test]
fn symlinked_proc_in_the_image_is_refused() {
    let b = DebugSandbox::new();
    let evil = fresh_dir();
    std::os::unix::fs::symlink("/tmp", evil.path().join("proc")).expect("symlink");
    let (code, so, se) = outcome(&mut b.cmd(&[evil.path()], &[], &["true"]));
    assert_eq!(code, 125, "{so}{se}");
    assert!(se.contains("/proc is a symlink in the image"), "{se}");
}

/// The library API directly: create (pid 1 blocked before exec, non-dumpable), exec into the
/// created container, start, and pid/start-time bookkeeping.
mod api {
    use std::io::Read as _;
    use std::os::fd::OwnedFd;

    use strata_executor::sandbox::{self, ExitStatus};

    use super::*;

    fn pipe() -> (std::fs::File, OwnedFd) {
        let (r, w) = std::io::pipe().expect("pipe");
        (std::fs::File::from(OwnedFd::from(r)), OwnedFd::from(w))
    }

    /// A spec for `args` on the busybox rootfs of `b`, and its bundle dir.
    fn spec(b: &DebugSandbox, args: &[&str]) -> (sandbox::runtime::Spec, PathBuf) {
        let bundle = b.dir.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("rootfs");
        for d in ["up", "work"] {
            std::fs::create_dir_all(b.dir.path().join(d)).expect("dir");
        }
        let stub = sandbox::stub_lower(&b.dir.path().join("stubs")).expect("stubs");
        let mut spec = sandbox::default_spec(
            &rootfs,
            args.iter().map(|s| s.to_string()).collect(),
            vec![format!("PATH={}", sandbox::DEFAULT_PATH)],
            "/",
            0,
            0,
            vec![],
            "api",
            sandbox::Network::None,
        )
        .expect("spec");
        sandbox::set_overlay(
            &mut spec,
            &sandbox::Overlay {
                lower: vec![b.dir.path().join("rootfs"), stub],
                upper: b.dir.path().join("up"),
                work: b.dir.path().join("work"),
                chdir: None,
            },
        );
        (spec, bundle)
    }

    fn exec_sh(pid: i32, spec: &sandbox::runtime::Spec, script: &str) -> (ExitStatus, String) {
        let mut process = spec.process().clone().expect("process");
        process.set_args(Some(vec!["sh".into(), "-c".into(), script.into()]));
        let (mut out_r, out_w) = pipe();
        let (_err_r, err_w) = pipe();
        let running = sandbox::exec(
            &strata_bin(),
            pid,
            spec,
            &process,
            sandbox::Stdio {
                stdin: None,
                stdout: out_w,
                stderr: err_w,
            },
        )
        .expect("exec");
        let mut so = String::new();
        out_r.read_to_string(&mut so).expect("read");
        (running.wait().expect("wait"), so)
    }

    #[test]
    fn created_pid_1_waits_out_of_reach_then_starts() {
        let b = DebugSandbox::new();
        let (spec, bundle) = spec(&b, &["sleep", "1000"]);
        let (_out_r, out_w) = pipe();
        let (_err_r, err_w) = pipe();
        let stdio = sandbox::Stdio {
            stdin: None,
            stdout: out_w,
            stderr: err_w,
        };
        let created = sandbox::create(&strata_bin(), &bundle, &spec, stdio).expect("create");
        let pid = created.pid();
        assert_ne!(pid, created.init_pid());
        assert_eq!(
            sandbox::process_start_time(pid).expect("start time"),
            created.pid_start()
        );
        assert!(created.pidfd().is_some());
        // The host pid is pid 1 of its namespace (the last NSpid).
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        assert!(status_line(&status, "NSpid:").ends_with("\t1"), "{status}");
        // Not started: pid 1 is still strata, blocked, and non-dumpable, so a process in the
        // container can't reach the runtime binary (or its fds) through /proc/1
        // (CVE-2019-5736 class).
        let (st, so) = exec_sh(
            pid,
            &spec,
            "readlink /proc/1/exe || echo denied; readlink /proc/1/fd/0 || echo denied; \
             cat /proc/1/environ || echo denied",
        );
        assert_eq!(st, ExitStatus::Code(0));
        assert_eq!(so, "denied\ndenied\ndenied\n");
        let running = created.start().expect("start");
        assert_eq!(running.pid(), pid);
        // Positive control: after the exec pid 1 is `sleep` (busybox), dumpable again.
        let (_, so) = exec_sh(pid, &spec, "readlink /proc/1/exe; ls /proc/1/fd");
        assert_eq!(so, "/bin/busybox\n0\n1\n2\n");
        running.signal(9).expect("kill");
        assert_eq!(running.wait().expect("wait"), ExitStatus::Signal(9));
        assert!(sandbox::process_start_time(pid).is_err(), "pid 1 is gone");
    }

    #[test]
    fn a_created_container_dropped_unstarted_goes_away() {
        let b = DebugSandbox::new();
        let (mut spec, bundle) = spec(&b, &["sleep", "1000"]);
        sandbox::set_resources(
            &mut spec,
            &sandbox::Resources {
                pids_limit: Some(10),
                ..Default::default()
            },
        )
        .expect("resources");
        let (_out_r, out_w) = pipe();
        let (_err_r, err_w) = pipe();
        let stdio = sandbox::Stdio {
            stdin: None,
            stdout: out_w,
            stderr: err_w,
        };
        let created = sandbox::create(&strata_bin(), &bundle, &spec, stdio).expect("create");
        let (pid, init) = (created.pid(), created.init_pid());
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
        let pids_path = cgroup
            .lines()
            .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
            .expect("a pids cgroup");
        assert!(pids_path.contains("strata-"), "{cgroup}");
        drop(created);
        assert!(
            sandbox::process_start_time(pid).is_err(),
            "pid 1 left: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/status"))
        );
        assert!(sandbox::process_start_time(init).is_err(), "init left");
        assert!(
            !Path::new(&format!("/sys/fs/cgroup/pids{pids_path}")).exists(),
            "cgroup left"
        );
    }

    #[test]
    fn cgroups_path_nests_under_our_own_cgroup_and_is_exclusive() {
        let b = DebugSandbox::new();
        let (mut spec, bundle) = spec(&b, &["sleep", "1000"]);
        let parent = format!("strata-test-{}", std::process::id());
        let mut linux = spec.linux().clone().expect("linux");
        linux.set_cgroups_path(Some(PathBuf::from(format!("/{parent}/c1"))));
        spec.set_linux(Some(linux));
        let stdio = || {
            let (_r, out_w) = pipe();
            let (_r2, err_w) = pipe();
            sandbox::Stdio {
                stdin: None,
                stdout: out_w,
                stderr: err_w,
            }
        };
        let created = sandbox::create(&strata_bin(), &bundle, &spec, stdio()).expect("create");
        let pid = created.pid();
        let ours = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
        let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
        let path_of = |text: &str, ctrl: &str| {
            text.lines()
                .find_map(|l| {
                    l.split_once(&format!(":{ctrl}:"))
                        .map(|(_, p)| p.to_string())
                })
                .unwrap_or_else(|| panic!("no {ctrl} line in {text}"))
        };
        let own_mem = path_of(&ours, "memory");
        let want = format!("{}/{parent}/c1", own_mem.trim_end_matches('/'));
        assert_eq!(path_of(&theirs, "memory"), want);
        // The same cgroupsPath while it is in use is refused.
        let bundle2 = b.dir.path().join("bundle2");
        let mut spec2 = spec.clone();
        if let Some(r) = spec2.root_mut() {
            r.set_path(bundle2.join("rootfs"));
        }
        std::fs::create_dir_all(bundle2.join("rootfs")).expect("rootfs2");
        let e = sandbox::create(&strata_bin(), &bundle2, &spec2, stdio())
            .expect_err("a second container in the same cgroup");
        assert!(e.to_string().contains("is in use"), "{e}");
        let running = created.start().expect("start");
        running.signal(9).expect("kill");
        let outcome = running.wait_outcome().expect("wait");
        assert_eq!(outcome.status, ExitStatus::Signal(9));
        assert!(!outcome.oom_killed);
        assert_eq!(outcome.cleanup_error, None);
        let mem_root = format!("/sys/fs/cgroup/memory{}", own_mem.trim_end_matches('/'));
        assert!(
            !Path::new(&format!("{mem_root}/{parent}")).exists(),
            "parent left"
        );
    }
}
