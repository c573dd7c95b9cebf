//! `strata __sandbox-init BUNDLE`: the process that turns a spec into a running command.

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimitType, Process, Spec};
use strata_sys::{CloneFlags, Create, RealSyscall, Syscall, resolve_in_root};

use super::{DEFAULT_PATH, PARENT_ENV, START_FD, SYNC_FD, mounts, seccomp};
use crate::error::{Error, Result};

/// The exit code of an init that failed before the command started (docker's 125).
pub(super) const EXIT_SETUP: i32 = 125;

/// The entry point of `strata __sandbox-init BUNDLE` (never returns): reads
/// `BUNDLE/config.json`, builds the sandbox, runs the command and exits like it (or re-raises
/// its fatal signal). A setup failure is written to the error pipe (fd 3, or stderr when fd 3
/// is not open) and exits 125.
pub fn init_main(bundle: &Path) -> ! {
    let code = match outer(bundle) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            EXIT_SETUP
        }
    };
    std::process::exit(code)
}

/// Writes a setup error where [`super::create`] reads it (`E` + the message, on the sync
/// pipe), or on stderr when the sync pipe is not open.
pub(super) fn report(e: &Error) {
    let msg = format!("{e}\n");
    if send(format!("E{msg}").as_bytes()).is_err() {
        let _ = std::io::stderr().write_all(msg.as_bytes());
    }
}

/// Writes one message of the sync protocol (`P<pid>\n`, `R\n`, `E<message>`) on fd 3.
pub(super) fn send(msg: &[u8]) -> Result<()> {
    // Why fcntl(F_GETFD): only write to fd 3 when it is open (it is the sync pipe when started
    // by `create`/`exec`). https://man7.org/linux/man-pages/man2/fcntl.2.html
    // SAFETY: plain syscall on an fd number.
    if unsafe { libc::fcntl(SYNC_FD, libc::F_GETFD) } < 0 {
        return Err(Error::Sandbox("the sync pipe is not open".into()));
    }
    // SAFETY: fd 3 is open (checked above) and stays open during the write.
    let fd = unsafe { BorrowedFd::borrow_raw(SYNC_FD) };
    let mut rest = msg;
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(sandbox_err("writing the sync pipe", e)),
        }
    }
    Ok(())
}

/// Closes an fd number no Rust object owns (EBADF is fine).
pub(super) fn close_raw(fd: i32) {
    // SAFETY: plain close of an fd number no Rust object owns.
    unsafe { libc::close(fd) };
}

/// Sets FD_CLOEXEC on an fd number (EBADF is fine).
pub(super) fn set_cloexec(fd: i32) {
    // Why FD_CLOEXEC: the exec of the command closes it, so nothing of strata's leaks into the
    // container (and EOF on the sync pipe tells the caller the exec happened).
    // https://man7.org/linux/man-pages/man2/fcntl.2.html
    // SAFETY: plain syscall on an fd number (EBADF when it isn't open, which is fine).
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

pub(super) fn sandbox_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Sandbox(format!("{what}: {e}"))
}

/// Sets the parent-death signal to SIGKILL.
pub(super) fn set_pdeathsig() -> Result<()> {
    // Why: if our parent dies (kill -9 of strata, or of the outer init), we die too, and with
    // pid 1 of the pid namespace gone the kernel kills every process of the step.
    // https://man7.org/linux/man-pages/man2/pr_set_pdeathsig.2const.html
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| sandbox_err("prctl(PDEATHSIG)", e))
}

/// Closes every fd from `first` on.
pub(super) fn close_from(first: u32) -> Result<()> {
    // Why: the command must inherit nothing but 0-2 (a leaked directory fd is a way out of the
    // root, CVE-2024-21626). https://man7.org/linux/man-pages/man2/close_range.2.html
    // SAFETY: plain syscall; no Rust object owns these fds in the init.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    Errno::result(rc)
        .map(drop)
        .map_err(|e| sandbox_err("close_range", e))
}

/// The outer init: namespaces, fork, wait, exit like the child.
fn outer(bundle: &Path) -> Result<i32> {
    set_pdeathsig()?;
    if let Ok(pid) = std::env::var(PARENT_ENV) {
        // The parent died before PDEATHSIG was armed: nobody waits for us.
        if nix::unistd::getppid().as_raw().to_string() != pid {
            return Err(Error::Sandbox("the parent exited".into()));
        }
    }
    close_from(START_FD as u32 + 1)?;
    set_cloexec(SYNC_FD);
    set_cloexec(START_FD);

    let config = bundle.join("config.json");
    let bytes = std::fs::read(&config).map_err(|e| Error::io(&config, e))?;
    let spec: Spec = serde_json::from_slice(&bytes)
        .map_err(|e| sandbox_err(&format!("{}", config.display()), e))?;

    let sys = RealSyscall;
    let ns = mounts::namespace_flags(&spec)?;
    // The mount namespace is unshared by the child; the others now, so the child is pid 1.
    let now = ns & !CloneFlags::CLONE_NEWNS;
    if !now.is_empty() {
        sys.unshare(now)?;
    }
    let set = block_forwarded()?;
    // A pipe whose write end only the outer init holds: the child sees POLLHUP if the outer
    // init died before the child armed its own PDEATHSIG.
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sandbox_err("pipe2", e))?;
    // Why fork (not a thread): unshare(CLONE_NEWPID) only applies to children.
    // https://man7.org/linux/man-pages/man2/fork.2.html
    // SAFETY: the init is single-threaded (nothing spawned threads), so the child may run
    // arbitrary code.
    match unsafe { fork() }.map_err(|e| sandbox_err("fork", e))? {
        ForkResult::Child => {
            drop(alive_w);
            let err = child(&sys, &spec, bundle, ns, alive_r, &set);
            report(&err);
            std::process::exit(EXIT_SETUP)
        }
        ForkResult::Parent { child } => {
            drop(alive_r);
            close_raw(START_FD);
            // The caller learns the host pid of the container's pid 1 from us (the child only
            // knows itself as 1).
            let sent = send(format!("P{child}\n").as_bytes());
            // The child holds the sync pipe until its exec; our copy would hide the EOF.
            close_raw(SYNC_FD);
            let status = wait_forwarding(child, &set)?;
            drop(alive_w);
            sent?;
            Ok(finish(status))
        }
    }
}

/// Blocks the signals an outer process forwards to its child (and SIGCHLD) and returns them.
pub(super) fn block_forwarded() -> Result<SigSet> {
    let forwarded = [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
    ];
    let mut set = SigSet::empty();
    for s in forwarded {
        set.add(s);
    }
    // Why block: the outer process takes these signals with sigwait (no async handlers).
    // https://man7.org/linux/man-pages/man2/sigprocmask.2.html
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| sandbox_err("sigprocmask", e))?;
    Ok(set)
}

/// Waits for `child`, forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT to it.
pub(super) fn wait_forwarding(child: Pid, set: &SigSet) -> Result<WaitStatus> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(s),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(sandbox_err("waitpid", e)),
        }
        // Why sigwait: a synchronous, race-free wait for SIGCHLD or a signal to forward.
        // https://man7.org/linux/man-pages/man3/sigwait.3.html
        let sig = set.wait().map_err(|e| sandbox_err("sigwait", e))?;
        if sig != Signal::SIGCHLD {
            // Why kill: the command (pid 1 of its namespace) only gets signals it handles.
            // https://man7.org/linux/man-pages/man2/kill.2.html
            let _ = kill(child, sig);
        }
    }
}

/// The outer init's exit: the child's code, or the child's signal re-raised on itself.
pub(super) fn finish(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => {
            // No core file from the re-raise.
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            // SAFETY: resetting a disposition to the default has no handler to race with.
            let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
            let mut one = SigSet::empty();
            one.add(sig);
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&one), None);
            // Why raise: `run` reports ExitStatus::Signal exactly as the command died.
            // https://man7.org/linux/man-pages/man3/raise.3.html
            let _ = nix::sys::signal::raise(sig);
            128 + sig as i32
        }
        _ => EXIT_SETUP,
    }
}

/// The child: pid 1 of the new pid namespace. Returns only on failure.
fn child(
    sys: &dyn Syscall,
    spec: &Spec,
    bundle: &Path,
    ns: CloneFlags,
    alive: OwnedFd,
    blocked: &SigSet,
) -> Error {
    match child_setup(sys, spec, bundle, ns, alive, blocked) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn child_setup(
    sys: &dyn Syscall,
    spec: &Spec,
    bundle: &Path,
    ns: CloneFlags,
    alive: OwnedFd,
    blocked: &SigSet,
) -> Result<std::convert::Infallible> {
    set_pdeathsig()?;
    if outer_died(&alive) {
        return Err(Error::Sandbox("the outer init exited".into()));
    }
    drop(alive);
    sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(blocked), None)
        .map_err(|e| sandbox_err("sigprocmask", e))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Sandbox("the spec has no process".into()))?;
    // Why umask 0: device nodes and mount targets get exactly their modes.
    // https://man7.org/linux/man-pages/man2/umask.2.html
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    mounts::setup_rootfs(sys, spec, bundle)?;
    if ns.contains(CloneFlags::CLONE_NEWNET) {
        sys.set_link_up("lo")?;
    }
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    finish_process(sys, process, seccomp, true)
}

/// The end of every container process, shared by the init's pid 1 and `exec`: rlimits, the
/// controlling terminal, fds, cwd, capabilities, no_new_privileges, seccomp, user, signals;
/// then (with `barrier`) "ready" on the sync pipe and a wait for `start`; then the exec.
pub(super) fn finish_process(
    sys: &dyn Syscall,
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    barrier: bool,
) -> Result<std::convert::Infallible> {
    set_dumpable(false)?;
    set_rlimits(process)?;
    if process.terminal() == Some(true) {
        set_controlling_terminal()?;
    }
    // Nothing but 0-2, the close-on-exec sync pipe and start barrier survives into the command.
    let keep = if barrier { START_FD } else { SYNC_FD };
    close_from(keep as u32 + 1)?;
    enter_cwd(sys, process.cwd())?;
    let caps = process
        .capabilities()
        .clone()
        .unwrap_or_else(no_capabilities);
    drop_bounding(caps.bounding().as_ref())?;
    if process.no_new_privileges() == Some(true) {
        // Why: the spec asks that exec can never gain privileges (setuid bits, file caps).
        // https://man7.org/linux/man-pages/man2/pr_set_no_new_privs.2const.html
        nix::sys::prctl::set_no_new_privs().map_err(|e| sandbox_err("prctl(NO_NEW_PRIVS)", e))?;
    }
    if let Some(profile) = seccomp {
        // Installed while CAP_SYS_ADMIN is still held, so no_new_privs isn't needed.
        seccomp::install(&seccomp::compile(profile)?)?;
    }
    change_user(sys, process)?;
    set_capabilities(&caps)?;
    // Credential changes clear the parent-death signal and reset the dumpable flag; set both
    // again.
    set_pdeathsig()?;
    set_dumpable(false)?;
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    reset_signals();
    if barrier {
        send(b"R\n")?;
        wait_for_start()?;
    }
    exec(process)
}

/// Blocks until the caller's `start` writes a byte on the start barrier, then closes it.
fn wait_for_start() -> Result<()> {
    let mut byte = [0u8; 1];
    let n = loop {
        // Why read: the start barrier is a pipe whose write end only the caller holds; a byte
        // means "exec now", EOF means the caller gave up. https://man7.org/linux/man-pages/man2/read.2.html
        // SAFETY: `byte` is a valid 1-byte buffer for the duration of the call.
        let rc = unsafe { libc::read(START_FD, byte.as_mut_ptr().cast(), 1) };
        match Errno::result(rc) {
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sandbox_err("reading the start barrier", e)),
        }
    };
    close_raw(START_FD);
    if n == 1 {
        Ok(())
    } else {
        Err(Error::Sandbox("the container was never started".into()))
    }
}

/// Sets or clears the dumpable flag.
pub(super) fn set_dumpable(on: bool) -> Result<()> {
    // Why: a non-dumpable process's /proc/<pid> (exe, fds, mem) is root-owned and can't be
    // ptraced without CAP_SYS_PTRACE, so nothing in the container can reach the strata binary
    // through it (CVE-2019-5736). exec of the command makes it dumpable again.
    // https://man7.org/linux/man-pages/man2/pr_set_dumpable.2const.html
    nix::sys::prctl::set_dumpable(on).map_err(|e| sandbox_err("prctl(SET_DUMPABLE)", e))
}

/// Makes stdin (a pty slave) the controlling terminal of a new session.
fn set_controlling_terminal() -> Result<()> {
    // Why setsid: only a session leader without a terminal may acquire one.
    // https://man7.org/linux/man-pages/man2/setsid.2.html
    nix::unistd::setsid().map_err(|e| sandbox_err("setsid", e))?;
    // Why TIOCSCTTY: job control and ^C in the container need the pty as its terminal.
    // https://man7.org/linux/man-pages/man2/TIOCSCTTY.2const.html
    // SAFETY: plain ioctl on fd 0 with an integer argument.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    Errno::result(rc)
        .map(drop)
        .map_err(|e| sandbox_err("ioctl(TIOCSCTTY) on stdin (is it a terminal?)", e))
}

/// True when the write end of the outer init's liveness pipe is closed (it died).
pub(super) fn outer_died(alive: &OwnedFd) -> bool {
    use std::os::fd::AsFd as _;
    let mut pfd = [nix::poll::PollFd::new(
        alive.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    // Why poll: POLLHUP here means the outer init died before PDEATHSIG was armed.
    // https://man7.org/linux/man-pages/man2/poll.2.html
    nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO).is_ok()
        && pfd[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLHUP))
}

fn no_capabilities() -> LinuxCapabilities {
    let none = Capabilities::new();
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(none.clone()));
    c.set_effective(Some(none.clone()));
    c.set_permitted(Some(none.clone()));
    c.set_inheritable(Some(none.clone()));
    c.set_ambient(Some(none));
    c
}

fn set_rlimits(process: &Process) -> Result<()> {
    for r in process.rlimits().iter().flatten() {
        let resource = match r.typ() {
            PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
            PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
            PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
            PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
            PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
            PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
            PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
            PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
            PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
            PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
            PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
            PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
            PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
            PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
            PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
            PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
        };
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // Why: the spec's resource limits for the command.
        // https://man7.org/linux/man-pages/man2/setrlimit.2.html
        // SAFETY: `lim` is a valid rlimit living across the call.
        let rc = unsafe { libc::setrlimit(resource as _, &lim) };
        Errno::result(rc).map_err(|e| sandbox_err(&format!("setrlimit({:?})", r.typ()), e))?;
    }
    Ok(())
}

/// Changes into the process's cwd inside the new root, creating it (root-owned, 0755) when
/// missing, and checks that it really is inside the root.
fn enter_cwd(sys: &dyn Syscall, cwd: &Path) -> Result<()> {
    if !cwd.is_absolute() {
        return Err(Error::Sandbox(format!(
            "cwd {} must be absolute",
            cwd.display()
        )));
    }
    match sys.chdir(cwd) {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {
            let real = resolve_in_root(Path::new("/"), cwd, Create::Dir)?;
            sys.chdir(&real)?;
        }
        Err(e) => return Err(e.into()),
    }
    // Why getcwd: after pivot_root a cwd outside the root reads as "(unreachable)/...".
    // https://man7.org/linux/man-pages/man3/getcwd.3.html
    let here = nix::unistd::getcwd().map_err(|e| sandbox_err("getcwd", e))?;
    if !here.is_absolute() || here.starts_with("(unreachable)") {
        return Err(Error::Sandbox(format!(
            "cwd {} is outside the root",
            cwd.display()
        )));
    }
    Ok(())
}

fn to_caps(set: Option<&Capabilities>) -> Result<caps::CapsHashSet> {
    set.into_iter()
        .flatten()
        .map(|c| {
            format!("CAP_{c}")
                .parse::<caps::Capability>()
                .map_err(|e| sandbox_err("capability", e))
        })
        .collect()
}

fn drop_bounding(bounding: Option<&Capabilities>) -> Result<()> {
    let keep = to_caps(bounding)?;
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            // Why: capabilities outside the bounding set can never come back, even through
            // exec of a file with capabilities. https://man7.org/linux/man-pages/man7/capabilities.7.html
            caps::drop(None, caps::CapSet::Bounding, cap)
                .map_err(|e| sandbox_err(&format!("drop {cap} from the bounding set"), e))?;
        }
    }
    Ok(())
}

fn change_user(sys: &dyn Syscall, process: &Process) -> Result<()> {
    let user = process.user();
    // Why KEEPCAPS: the permitted set survives the uid change; set_capabilities then sets
    // exactly the spec's sets. https://man7.org/linux/man-pages/man2/pr_set_keepcaps.2const.html
    nix::sys::prctl::set_keepcaps(true).map_err(|e| sandbox_err("prctl(KEEPCAPS)", e))?;
    let groups = user.additional_gids().clone().unwrap_or_default();
    sys.setgroups(&groups)?;
    sys.setresgid(user.gid())?;
    sys.setresuid(user.uid())?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| sandbox_err("prctl(KEEPCAPS)", e))?;
    Ok(())
}

fn set_capabilities(c: &LinuxCapabilities) -> Result<()> {
    let effective = to_caps(c.effective().as_ref())?;
    let permitted = to_caps(c.permitted().as_ref())?;
    let inheritable = to_caps(c.inheritable().as_ref())?;
    let ambient = to_caps(c.ambient().as_ref())?;
    // Why this order (capset(2) via the caps crate): effective must stay a subset of
    // permitted, and ambient needs its caps in permitted and inheritable.
    // https://man7.org/linux/man-pages/man2/capset.2.html
    caps::set(None, caps::CapSet::Effective, &effective)
        .and_then(|()| caps::set(None, caps::CapSet::Inheritable, &inheritable))
        .and_then(|()| caps::set(None, caps::CapSet::Permitted, &permitted))
        .and_then(|()| caps::clear(None, caps::CapSet::Ambient))
        .map_err(|e| sandbox_err("capset", e))?;
    for cap in ambient {
        caps::raise(None, caps::CapSet::Ambient, cap)
            .map_err(|e| sandbox_err(&format!("raise ambient {cap}"), e))?;
    }
    Ok(())
}

/// Default dispositions and an empty mask: the Rust runtime ignores SIGPIPE, and ignored
/// signals survive exec.
fn reset_signals() {
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: setting the default disposition installs no handler.
        let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Looks `name` up in `path` the way a shell does (names with a `/` are taken as they are).
fn lookup(name: &str, path: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|p| {
            nix::unistd::access(p.as_path(), nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
        })
}

/// Execs the command; on failure prints docker's message and exits 127 (not found) or 126
/// (not invocable).
fn exec(process: &Process) -> Result<std::convert::Infallible> {
    let args = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err(Error::Sandbox("the spec's process has no args".into()));
    };
    let env = process.env().clone().unwrap_or_default();
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let to_c = |s: &[u8]| CString::new(s).map_err(|_| sandbox_err("NUL byte in", "args/env"));
    let argv = args
        .iter()
        .map(|a| to_c(a.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let envp = env
        .iter()
        .map(|e| to_c(e.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let fail = |code: i32, msg: &str| -> ! {
        let text = format!("exec: {arg0:?}: {msg}");
        // The caller learns it before our exit (a detached `run` fails at once, like docker's).
        let _ = send(format!("X{code} {}\n", text.replace('\n', " ")).as_bytes());
        let _ = writeln!(std::io::stderr(), "strata: {text}");
        std::process::exit(code)
    };
    let Some(prog) = lookup(arg0, path) else {
        fail(127, "executable file not found in $PATH")
    };
    let prog_c = to_c(prog.as_os_str().as_bytes())?;
    // Why execve: replaces the init with the command, which becomes pid 1 of the namespace.
    // https://man7.org/linux/man-pages/man2/execve.2.html
    let Err(e) = nix::unistd::execve(&prog_c, &argv, &envp);
    match e {
        Errno::ENOENT | Errno::ENOTDIR => fail(127, "no such file or directory"),
        other => fail(126, &other.desc().to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_follows_path_and_takes_slashes_as_given() {
        assert_eq!(lookup("./x", "/nope"), Some(PathBuf::from("./x")));
        assert_eq!(lookup("sh", "/nonexistent-dir"), None);
        let found = lookup("sh", "/nonexistent-dir:/bin:/usr/bin");
        assert!(found.is_some_and(|p| p.ends_with("sh")));
    }

    #[test]
    fn capabilities_convert_to_the_caps_crate() -> Result<(), Box<dyn std::error::Error>> {
        let set: Capabilities = super::super::DEFAULT_CAPABILITIES.into_iter().collect();
        let caps = to_caps(Some(&set))?;
        let mask: u64 = caps.iter().map(|c| c.bitmask()).fold(0, |a, b| a | b);
        assert_eq!(mask, 0xa804_25fb);
        Ok(())
    }
}
