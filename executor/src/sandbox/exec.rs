//! `strata __sandbox-exec PID`: starts a process inside the namespaces of a running container
//! (the helper side of [`super::exec`]).
//!
//! It reads its [`ExecConfig`] from fd 4, becomes non-dumpable, opens every namespace of the
//! target first (after joining the mount namespace, `/proc/<pid>` would name another process),
//! joins them (mnt last), forks so the child is in the target's pid namespace, reports the
//! child's host pid on the sync pipe and waits for it like the outer init; the child runs the
//! same finishing code as the container's pid 1 ([`super::init`]) and execs.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt as _;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigmaskHow, sigprocmask};
use nix::unistd::{ForkResult, fork};
use strata_sys::RealSyscall;

use super::init::{
    EXIT_SETUP, block_forwarded, close_from, close_raw, finish, finish_process, outer_died, report,
    sandbox_err, send, set_cloexec, set_dumpable, set_pdeathsig, wait_forwarding,
};
use super::lifecycle::ExecConfig;
use super::{PARENT_ENV, START_FD, SYNC_FD};
use crate::error::{Error, Result};

/// The namespaces `exec` joins, in order (the mount namespace last: it changes root and cwd).
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The entry point of `strata __sandbox-exec PID` (never returns): exits like the started
/// process, or 125 after writing a setup failure to the sync pipe (or stderr).
pub fn exec_main(target: i32) -> ! {
    let code = match helper(target) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            EXIT_SETUP
        }
    };
    std::process::exit(code)
}

fn read_config() -> Result<ExecConfig> {
    // SAFETY: fd 4 is the config pipe `exec` passed us; nothing else owns it, and the File
    // closes it when dropped.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(START_FD) });
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(|e| sandbox_err("reading the exec config", e))?;
    serde_json::from_slice(&bytes).map_err(|e| sandbox_err("the exec config", e))
}

/// Opens the target's namespaces that differ from ours.
fn open_namespaces(target: i32) -> Result<Vec<(File, CloneFlags)>> {
    let mut out = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{target}/ns/{name}");
        let f = match File::open(&path) {
            Ok(f) => f,
            // A kernel without this namespace type.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "cgroup" => continue,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let theirs = f.metadata().map_err(|e| Error::io(&path, e))?;
        let own = format!("/proc/self/ns/{name}");
        let ours = std::fs::metadata(&own).map_err(|e| Error::io(&own, e))?;
        if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
            out.push((f, flag));
        }
    }
    Ok(out)
}

fn helper(target: i32) -> Result<i32> {
    set_pdeathsig()?;
    if let Ok(pid) = std::env::var(PARENT_ENV)
        && nix::unistd::getppid().as_raw().to_string() != pid
    {
        return Err(Error::Sandbox("the parent exited".into()));
    }
    // From here until the exec nothing in the container may reach us through /proc.
    set_dumpable(false)?;
    close_from(START_FD as u32 + 1)?;
    set_cloexec(SYNC_FD);
    let config = read_config()?;
    let namespaces = open_namespaces(target)?;
    // Checked after the opens: the namespaces are those of the process `exec` was asked for,
    // not of a process that reused its pid since.
    if super::process_start_time(target).ok() != Some(config.target_start) {
        return Err(Error::Sandbox(format!("process {target} is gone")));
    }
    for (f, flag) in &namespaces {
        // Why setns: joins the container's namespace; for pid only our children are in it,
        // hence the fork below. https://man7.org/linux/man-pages/man2/setns.2.html
        setns(f, *flag).map_err(|e| sandbox_err(&format!("setns({flag:?}) of pid {target}"), e))?;
    }
    drop(namespaces);
    let set = block_forwarded()?;
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sandbox_err("pipe2", e))?;
    // SAFETY: the helper is single-threaded, so the child may run arbitrary code.
    match unsafe { fork() }.map_err(|e| sandbox_err("fork", e))? {
        ForkResult::Child => {
            drop(alive_w);
            let err = (|| -> Result<std::convert::Infallible> {
                set_pdeathsig()?;
                if outer_died(&alive_r) {
                    return Err(Error::Sandbox("the exec helper exited".into()));
                }
                drop(alive_r);
                sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)
                    .map_err(|e| sandbox_err("sigprocmask", e))?;
                finish_process(
                    &RealSyscall,
                    &config.process,
                    config.seccomp.as_ref(),
                    false,
                )
            })();
            match err {
                Ok(never) => match never {},
                Err(e) => report(&e),
            }
            std::process::exit(EXIT_SETUP)
        }
        ForkResult::Parent { child } => {
            drop(alive_r);
            let sent = send(format!("P{child}\n").as_bytes());
            close_raw(SYNC_FD);
            let status = wait_forwarding(child, &set)?;
            drop(alive_w);
            sent?;
            Ok(finish(status))
        }
    }
}
