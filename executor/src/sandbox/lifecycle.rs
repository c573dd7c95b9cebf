//! The caller's side of a container process: [`create`] (everything set up, pid 1 blocked
//! right before exec), [`Created::start`] (the exec), [`Running::wait`], and [`exec`] (a new
//! process in the namespaces of a running container).
//!
//! The helpers (`strata __sandbox-init`, `strata __sandbox-exec`) talk back on a close-on-exec
//! sync pipe at fd 3 ([`super::SYNC_FD`]): `P<pid>\n` (the host pid of the container
//! process), `R\n` (ready and blocked on the start barrier), `E<message>` (a setup failure),
//! then EOF once the command was exec'd. The start barrier is a pipe at fd 4
//! ([`super::START_FD`]) whose write end only [`Created`] holds: one byte starts the command,
//! EOF (a dropped [`Created`]) makes pid 1 exit. Both ends are closed before the exec, so no fd
//! of strata's reaches the container.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::{Child, Command};

use nix::errno::Errno;
use oci_spec::runtime::{Process, Spec};

use super::cgroup::Cgroup;
use super::{ExitStatus, PARENT_ENV, START_FD, SYNC_FD, Stdio};
use crate::error::{Error, Result};

fn sandbox_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Sandbox(format!("{what}: {e}"))
}

/// One message of the sync protocol.
#[derive(Debug, PartialEq, Eq)]
enum Msg {
    Pid(i32),
    Ready,
    Failed(String),
    /// The command could not be exec'd: docker's exit code (127, 126) and message.
    ExecFailed(i32, String),
    Eof,
}

fn next_msg(r: &mut BufReader<File>) -> Result<Msg> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)
        .map_err(|e| sandbox_err("reading the sync pipe", e))?;
    match line.first() {
        None => Ok(Msg::Eof),
        Some(b'E') => {
            // A failure message runs to EOF (it may span lines).
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
            line.extend(rest);
            let text = String::from_utf8_lossy(&line[1..]);
            // The helper's message is an Error's text; ours adds the "sandbox: " again.
            let text = text.strip_prefix("sandbox: ").unwrap_or(&text);
            Ok(Msg::Failed(text.trim_end().to_string()))
        }
        Some(b'R') if line == b"R\n" => Ok(Msg::Ready),
        Some(b'X') => std::str::from_utf8(&line[1..])
            .ok()
            .and_then(|s| s.trim_end().split_once(' '))
            .and_then(|(code, msg)| Some(Msg::ExecFailed(code.parse().ok()?, msg.to_string())))
            .ok_or_else(|| Error::Sandbox(format!("bad sync message {line:?}"))),
        Some(b'P') => std::str::from_utf8(&line[1..])
            .ok()
            .and_then(|s| s.trim_end().parse().ok())
            .map(Msg::Pid)
            .ok_or_else(|| Error::Sandbox(format!("bad sync message {line:?}"))),
        Some(_) => Err(Error::Sandbox(format!("bad sync message {line:?}"))),
    }
}

/// Duplicates `fd` to a number >= 5 (close-on-exec), so the dup2s to 3 and 4 in the child
/// never clobber each other.
fn above_fixed(fd: OwnedFd) -> Result<OwnedFd> {
    // Why F_DUPFD_CLOEXEC: the lowest free fd >= 5. https://man7.org/linux/man-pages/man2/fcntl.2.html
    // SAFETY: plain syscall on an fd we own.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, START_FD + 1) };
    let n = Errno::result(rc).map_err(|e| sandbox_err("fcntl(F_DUPFD)", e))?;
    // SAFETY: `n` is a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Spawns `helper_exe args...` with `stdio`, the sync pipe at fd 3, `fd4` at fd 4, and the
/// child already in the cgroups whose `cgroup.procs` files are `join` (so everything the
/// helper starts is in them). Returns the child and the read end of the sync pipe.
fn spawn(
    helper_exe: &Path,
    args: &[&std::ffi::OsStr],
    stdio: Stdio,
    fd4: OwnedFd,
    join: &[File],
) -> Result<(Child, BufReader<File>)> {
    // Why pipe2(O_CLOEXEC): no other child spawned meanwhile inherits the write end, so EOF
    // means "the helper exec'd or exited". https://man7.org/linux/man-pages/man2/pipe.2.html
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sandbox_err("pipe2", e))?;
    let write_end = above_fixed(write_end)?;
    let fd4 = above_fixed(fd4)?;
    let mut cmd = Command::new(helper_exe);
    cmd.args(args)
        .env(PARENT_ENV, std::process::id().to_string())
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    match stdio.stdin {
        Some(fd) => cmd.stdin(fd),
        None => cmd.stdin(std::process::Stdio::null()),
    };
    let (wfd, ffd) = (write_end.as_raw_fd(), fd4.as_raw_fd());
    let procs: Vec<i32> = join.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the closure only calls write and dup2, both async-signal-safe, and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &procs {
                // Why "0": writing 0 to cgroup.procs moves the writing process; doing it before
                // the exec puts the helper and all it starts in the container's cgroup.
                // https://docs.kernel.org/admin-guide/cgroup-v2.html#core-interface-files
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Why dup2: the helper finds its pipes at fixed numbers; dup2 clears FD_CLOEXEC
            // on the copies (both sources are >= 5). https://man7.org/linux/man-pages/man2/dup.2.html
            if libc::dup2(wfd, SYNC_FD) < 0 || libc::dup2(ffd, START_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| Error::io(helper_exe, e))?;
    drop(write_end);
    drop(fd4);
    Ok((child, BufReader::new(File::from(read_end))))
}

/// The exit status of a finished helper: the command's code, or its signal.
fn status_of(status: std::process::ExitStatus) -> Result<ExitStatus> {
    match (status.code(), status.signal()) {
        (Some(c), _) => Ok(ExitStatus::Code(c)),
        (None, Some(s)) => Ok(ExitStatus::Signal(s)),
        (None, None) => Err(Error::Sandbox(format!("unexpected helper status {status}"))),
    }
}

/// Opens a pidfd for `pid` (None when it is already gone).
fn pidfd_open(pid: i32) -> Result<Option<OwnedFd>> {
    // Why pidfd_open: a handle that always names this process, even after its pid is reused.
    // https://man7.org/linux/man-pages/man2/pidfd_open.2.html
    // SAFETY: plain syscall with integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    match Errno::result(rc) {
        Ok(fd) => {
            let fd = i32::try_from(fd).map_err(|e| sandbox_err("pidfd_open", e))?;
            // SAFETY: a new fd nobody else owns.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        }
        Err(Errno::ESRCH) => Ok(None),
        Err(e) => Err(sandbox_err(&format!("pidfd_open({pid})"), e)),
    }
}

fn pidfd_send_signal(fd: &OwnedFd, signal: i32) -> nix::Result<()> {
    // Why pidfd_send_signal: the pidfd names this process even if its pid was reused.
    // https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html
    // SAFETY: plain syscall; a null siginfo means "as kill(2)".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// The start time of process `pid` (`/proc/<pid>/stat` field 22, clock ticks since boot):
/// with the pid it names one process for good (a reused pid has another start time).
///
/// # Errors
/// The process doesn't exist, or its stat line can't be parsed.
pub fn process_start_time(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    // The command name (field 2) is in parentheses and may hold spaces; field 3 follows the
    // last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(22 - 3))
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| Error::Sandbox(format!("{path}: no start time in {stat:?}")))
}

/// A helper process and what names its container process.
#[derive(Debug)]
struct Proc {
    child: Child,
    pid: i32,
    pid_start: u64,
    pidfd: Option<OwnedFd>,
    cgroup: Option<Cgroup>,
}

impl Proc {
    /// Kills the container process (through its pidfd, so the helper reaps it; else the
    /// helper, and PR_SET_PDEATHSIG takes the process along), reaps the helper and removes
    /// the cgroup; returns `err`.
    fn fail(mut self, err: Error) -> Error {
        match &self.pidfd {
            Some(fd) => {
                let _ = pidfd_send_signal(fd, libc::SIGKILL);
            }
            None => {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.remove();
        }
        err
    }
}

/// A container whose pid 1 is set up and blocked right before its exec (see [`create`]).
/// Dropping it without [`Created::start`] kills it and removes its cgroup.
#[derive(Debug)]
pub struct Created {
    proc_: Option<Proc>,
    start: Option<OwnedFd>,
    sync: Option<BufReader<File>>,
}

/// A started container process (or an [`exec`]'d one). Call [`Running::wait`] to reap it and
/// remove its cgroup.
#[derive(Debug)]
pub struct Running {
    proc_: Proc,
    exec_error: Option<ExecError>,
}

/// Why the command could not be exec'd (it then exits with [`ExecError::code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecError {
    /// docker's exit code: 127 (not found) or 126 (not executable).
    pub code: i32,
    /// docker's message (`exec: "nope": executable file not found in $PATH`).
    pub message: String,
}

/// How a container process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Its exit status.
    pub status: ExitStatus,
    /// The kernel's OOM killer killed a process of the container's cgroup.
    pub oom_killed: bool,
    /// Why the container's cgroup could not be removed (the status is still valid).
    pub cleanup_error: Option<String>,
}

/// Writes `BUNDLE/config.json` and sets the container up: cgroup (from `linux.resources` and
/// `linux.cgroupsPath`), namespaces, mounts, pivot, capabilities, seccomp, user; its pid 1
/// then blocks right before the exec of `process.args` until [`Created::start`]. The outer
/// init (the helper `strata __sandbox-init BUNDLE`) is our child and stays the parent of
/// pid 1; it dies with the thread that called `create` (PR_SET_PDEATHSIG).
///
/// # Errors
/// Writing the bundle, creating the cgroup, spawning the helper, or a setup failure reported
/// by the init (a failed mount, a bad cwd, a symlinked `/proc`, ...).
pub fn create(helper_exe: &Path, bundle: &Path, spec: &Spec, stdio: Stdio) -> Result<Created> {
    std::fs::create_dir_all(bundle).map_err(|e| Error::io(bundle, e))?;
    let config = bundle.join("config.json");
    let json = serde_json::to_vec_pretty(spec)
        .map_err(|e| Error::Sandbox(format!("cannot serialize the spec: {e}")))?;
    std::fs::write(&config, json).map_err(|e| Error::io(&config, e))?;

    let cgroup = Cgroup::create(spec)?;
    let join = match cgroup.as_ref().map(Cgroup::procs_files).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            if let Some(cg) = cgroup {
                let _ = cg.remove();
            }
            return Err(e);
        }
    };
    let spawned = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| sandbox_err("pipe2", e))
        .and_then(|(start_r, start_w)| {
            let args = [std::ffi::OsStr::new("__sandbox-init"), bundle.as_os_str()];
            spawn(helper_exe, &args, stdio, start_r, &join).map(|(c, s)| (c, s, start_w))
        });
    drop(join);
    let (child, mut sync, start) = match spawned {
        Ok(x) => x,
        Err(e) => {
            if let Some(cg) = cgroup {
                let _ = cg.remove();
            }
            return Err(e);
        }
    };
    let mut proc_ = Proc {
        child,
        pid: 0,
        pid_start: 0,
        pidfd: None,
        cgroup,
    };
    let (mut pid, mut ready) = (None, false);
    while pid.is_none() || !ready {
        match next_msg(&mut sync) {
            Ok(Msg::Pid(p)) => pid = Some(p),
            Ok(Msg::Ready) => ready = true,
            Ok(Msg::Failed(m)) => return Err(proc_.fail(Error::Sandbox(m))),
            Ok(Msg::ExecFailed(_, m)) => {
                let e = Error::Sandbox(format!("exec before start: {m}"));
                return Err(proc_.fail(e));
            }
            Ok(Msg::Eof) => {
                let _ = proc_.child.wait();
                let status = proc_
                    .child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let e = Error::Sandbox(format!(
                    "the init exited before the container was ready ({status})"
                ));
                return Err(proc_.fail(e));
            }
            Err(e) => return Err(proc_.fail(e)),
        }
    }
    let pid = pid.unwrap_or_default();
    proc_.pid = pid;
    // pid 1 is blocked on the barrier: the pid can't have been reused yet.
    match pidfd_open(pid).and_then(|fd| Ok((fd, process_start_time(pid)?))) {
        Ok((fd, start_time)) => {
            proc_.pidfd = fd;
            proc_.pid_start = start_time;
        }
        Err(e) => return Err(proc_.fail(e)),
    }
    Ok(Created {
        proc_: Some(proc_),
        start: Some(start),
        sync: Some(sync),
    })
}

impl Created {
    fn proc_ref(&self) -> Option<&Proc> {
        self.proc_.as_ref()
    }

    /// The host pid of the container's pid 1.
    pub fn pid(&self) -> i32 {
        self.proc_ref().map_or(0, |p| p.pid)
    }

    /// The start time of [`Created::pid`] ([`process_start_time`]).
    pub fn pid_start(&self) -> u64 {
        self.proc_ref().map_or(0, |p| p.pid_start)
    }

    /// A pidfd of the container's pid 1 (signals sent through it never reach a reused pid).
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.proc_ref()
            .and_then(|p| p.pidfd.as_ref())
            .map(|f| f.as_fd())
    }

    /// The pid of the outer init (our child, the parent of the container's pid 1).
    pub fn init_pid(&self) -> i32 {
        self.proc_ref()
            .map_or(0, |p| i32::try_from(p.child.id()).unwrap_or(0))
    }

    /// Lets pid 1 exec the command.
    ///
    /// # Errors
    /// A failure the init reported after the barrier. A command that can't be found or run is
    /// an [`ExitStatus`] (127, 126) of [`Running::wait`], not an error.
    pub fn start(mut self) -> Result<Running> {
        let (Some(proc_), Some(start), Some(mut sync)) =
            (self.proc_.take(), self.start.take(), self.sync.take())
        else {
            return Err(Error::Sandbox("the container was already started".into()));
        };
        let wrote = File::from(start).write_all(b"s");
        if let Err(e) = wrote {
            return Err(proc_.fail(sandbox_err("writing the start barrier", e)));
        }
        match next_msg(&mut sync) {
            Ok(Msg::Eof) => Ok(Running {
                proc_,
                exec_error: None,
            }),
            Ok(Msg::ExecFailed(code, message)) => Ok(Running {
                proc_,
                exec_error: Some(ExecError { code, message }),
            }),
            Ok(Msg::Failed(m)) => Err(proc_.fail(Error::Sandbox(m))),
            Ok(other) => {
                Err(proc_.fail(Error::Sandbox(format!("unexpected sync message {other:?}"))))
            }
            Err(e) => Err(proc_.fail(e)),
        }
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        // EOF on the barrier makes pid 1 exit; reap the init and remove the cgroup.
        drop(self.start.take());
        if let Some(p) = self.proc_.take() {
            drop(p.fail(Error::Sandbox(String::new())));
        }
    }
}

impl Running {
    /// Set when the command could not be exec'd (the process then exits with its code): lets
    /// a detached caller fail at once, as `docker run -d` does.
    pub fn exec_error(&self) -> Option<&ExecError> {
        self.exec_error.as_ref()
    }

    /// The host pid of the container process (pid 1, or the [`exec`]'d process).
    pub fn pid(&self) -> i32 {
        self.proc_.pid
    }

    /// The start time of [`Running::pid`] ([`process_start_time`]).
    pub fn pid_start(&self) -> u64 {
        self.proc_.pid_start
    }

    /// A pidfd of the container process (None when it was gone before it could be opened).
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.proc_.pidfd.as_ref().map(|f| f.as_fd())
    }

    /// The pid of the helper process (our child).
    pub fn helper_pid(&self) -> i32 {
        i32::try_from(self.proc_.child.id()).unwrap_or(0)
    }

    /// Sends `signal` to the container process through its pidfd (never to a reused pid).
    ///
    /// # Errors
    /// The process is gone (ESRCH), or the signal number is bad.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let fd = self
            .proc_
            .pidfd
            .as_ref()
            .ok_or_else(|| Error::Sandbox("the process is gone".into()))?;
        pidfd_send_signal(fd, signal)
            .map_err(|e| sandbox_err(&format!("signal {signal} to {}", self.proc_.pid), e))
    }

    /// Waits for the process (for a container: its pid 1, after which the kernel kills the
    /// rest of its pid namespace) and removes its cgroup.
    ///
    /// # Errors
    /// waitpid on the helper failed.
    pub fn wait(self) -> Result<ExitStatus> {
        self.wait_outcome().map(|o| o.status)
    }

    /// [`Running::wait`], also telling whether the OOM killer fired in the container's cgroup.
    ///
    /// # Errors
    /// waitpid on the helper failed. A cgroup that can't be removed is reported in
    /// [`Outcome::cleanup_error`], so the exit status is never lost.
    pub fn wait_outcome(mut self) -> Result<Outcome> {
        let status = self
            .proc_
            .child
            .wait()
            .map_err(|e| sandbox_err("waiting for the sandbox", e))?;
        let status = status_of(status)?;
        let (mut oom_killed, mut cleanup_error) = (false, None);
        if let Some(cg) = self.proc_.cgroup.take() {
            oom_killed = cg.oom_killed();
            cleanup_error = cg.remove().err().map(|e| e.to_string());
        }
        Ok(Outcome {
            status,
            oom_killed,
            cleanup_error,
        })
    }
}

/// What `strata __sandbox-exec PID` reads on fd 4 (JSON).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct ExecConfig {
    /// The process to start.
    pub process: Process,
    /// The container's seccomp profile.
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// The target's start time when `exec` was called: the helper checks it after opening the
    /// namespaces, so they belong to that process and not to a reuse of its pid.
    pub target_start: u64,
}

/// Starts `process` inside the running container whose pid 1 is `target_pid`: the helper
/// `strata __sandbox-exec PID` joins its cgroups (before it even runs), opens all its
/// namespaces (mnt, pid, uts, ipc, net, cgroup) and joins them, forks (into the pid
/// namespace), applies `process` (user, cwd, env, capabilities, noNewPrivileges, rlimits,
/// terminal) and `spec`'s seccomp profile, and execs; it is non-dumpable until then
/// (CVE-2019-5736). Returns once the exec happened; [`Running::pid`] is the new process's
/// host pid.
///
/// # Errors
/// The target is gone, its cgroups can't be joined, spawning the helper, or a setup failure it reports
/// (a namespace that can't be joined, a bad cwd, ...).
pub fn exec(
    helper_exe: &Path,
    target_pid: i32,
    spec: &Spec,
    process: &Process,
    stdio: Stdio,
) -> Result<Running> {
    let config = ExecConfig {
        process: process.clone(),
        seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
        target_start: process_start_time(target_pid)?,
    };
    let json = serde_json::to_vec(&config)
        .map_err(|e| Error::Sandbox(format!("cannot serialize the exec config: {e}")))?;
    let join = super::cgroup::procs_files_of(target_pid)?;
    let (cfg_r, cfg_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sandbox_err("pipe2", e))?;
    let pid_arg = target_pid.to_string();
    let args = [
        std::ffi::OsStr::new("__sandbox-exec"),
        std::ffi::OsStr::new(&pid_arg),
    ];
    let (child, mut sync) = spawn(helper_exe, &args, stdio, cfg_r, &join)?;
    drop(join);
    let mut proc_ = Proc {
        child,
        pid: 0,
        pid_start: 0,
        pidfd: None,
        cgroup: None,
    };
    // The helper reads the whole config before anything else; a write error means it died,
    // which the sync pipe then explains.
    let _ = File::from(cfg_w).write_all(&json);
    let mut pid = None;
    let mut exec_error = None;
    loop {
        match next_msg(&mut sync) {
            Ok(Msg::Pid(p)) => pid = Some(p),
            Ok(Msg::ExecFailed(code, message)) => exec_error = Some(ExecError { code, message }),
            Ok(Msg::Eof) => break,
            Ok(Msg::Failed(m)) => return Err(proc_.fail(Error::Sandbox(m))),
            Ok(Msg::Ready) => {
                return Err(proc_.fail(Error::Sandbox("unexpected sync message".into())));
            }
            Err(e) => return Err(proc_.fail(e)),
        }
    }
    let Some(pid) = pid else {
        let _ = proc_.child.wait();
        return Err(proc_.fail(Error::Sandbox(
            "the exec helper exited before it started the process".into(),
        )));
    };
    proc_.pid = pid;
    // Our grandchild: until the helper reaps it, its pid can't be reused.
    match pidfd_open(pid) {
        Ok(fd) => proc_.pidfd = fd,
        Err(e) => return Err(proc_.fail(e)),
    }
    proc_.pid_start = process_start_time(pid).unwrap_or(0);
    Ok(Running { proc_, exec_error })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Result<BufReader<File>, Box<dyn std::error::Error>> {
        let (r, mut w) = std::io::pipe()?;
        w.write_all(bytes)?;
        drop(w);
        Ok(BufReader::new(File::from(OwnedFd::from(r))))
    }

    #[test]
    fn sync_messages_parse() -> Result<(), Box<dyn std::error::Error>> {
        let mut x = reader(b"X127 exec: \"nope\": not found\n")?;
        assert_eq!(
            next_msg(&mut x)?,
            Msg::ExecFailed(127, "exec: \"nope\": not found".into())
        );
        assert!(next_msg(&mut reader(b"Xabc oops\n")?).is_err());
        let mut r = reader(b"P42\nR\nEsandbox: mount x: EPERM\nsecond line\n")?;
        assert_eq!(next_msg(&mut r)?, Msg::Pid(42));
        assert_eq!(next_msg(&mut r)?, Msg::Ready);
        assert_eq!(
            next_msg(&mut r)?,
            Msg::Failed("mount x: EPERM\nsecond line".into())
        );
        assert_eq!(next_msg(&mut r)?, Msg::Eof);
        assert!(next_msg(&mut reader(b"Pnope\n")?).is_err());
        assert!(next_msg(&mut reader(b"?\n")?).is_err());
        Ok(())
    }

    #[test]
    fn start_time_names_a_live_process() -> Result<(), Box<dyn std::error::Error>> {
        let me = i32::try_from(std::process::id())?;
        let t = process_start_time(me)?;
        assert!(t > 0);
        assert_eq!(process_start_time(me)?, t);
        assert!(process_start_time(i32::MAX).is_err());
        Ok(())
    }
}
