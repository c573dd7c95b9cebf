//! Outbound access for `bridge` containers through `slirp4netns` (Debian's package): a user
//! mode TCP/IP stack in the host namespace behind a `tap0` device in the container's network
//! namespace (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3).
//!
//! slirp4netns runs as root in the host's namespaces, so it is confined as podman confines it
//! (`--enable-sandbox --enable-seccomp`).
//!
//! It is started after the sandbox is created and before it starts, with `--ready-fd` (so the
//! device is configured when the container's command runs) and `--exit-fd` (it exits when
//! [`Slirp`] is dropped, or when the process holding it dies).

use std::io::Read as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, Result};

/// The device slirp4netns creates in the container.
pub const TAP: &str = "tap0";
/// The container's address on [`TAP`].
pub const CONTAINER_ADDR: &str = "10.0.2.100";
/// How long slirp4netns may take to configure the device before it is given up on (generous:
/// a loaded machine must not fail).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `slirp4netns` from `PATH` (`/usr/local/bin:/usr/bin:/bin` when unset), if installed.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("slirp4netns"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running `slirp4netns` serving one container; dropping it stops it.
#[derive(Debug)]
pub struct Slirp {
    child: Child,
    /// The write end of the exit pipe: closing it makes slirp4netns exit.
    exit_w: Option<OwnedFd>,
    /// The read end of the ready pipe, until it reported ready.
    ready_r: Option<OwnedFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::Net {
        what: "pipe for slirp4netns".to_string(),
        source: e.into(),
    })
}

impl Slirp {
    /// Starts `exe` for the network namespace of `pid` and waits until `tap0` is configured
    /// (address, default route, MTU 65520). Connections to the host's loopback are refused
    /// (`--disable-host-loopback`); it runs confined (`--enable-sandbox --enable-seccomp`). [`Slirp::spawn`] + [`Slirp::wait_ready`].
    ///
    /// # Errors
    /// As [`Slirp::spawn`] and [`Slirp::wait_ready`].
    pub fn start(exe: &Path, pid: i32) -> Result<Slirp> {
        let mut slirp = Slirp::spawn(exe, pid)?;
        slirp.wait_ready()?;
        Ok(slirp)
    }

    /// Starts `exe` for the network namespace of `pid` without waiting for it (it takes a few
    /// tens of milliseconds, mostly loading its libraries: the caller may do other work
    /// meanwhile, then call [`Slirp::wait_ready`] before the container starts).
    ///
    /// # Errors
    /// [`Error::Net`] when it cannot be spawned.
    pub fn spawn(exe: &Path, pid: i32) -> Result<Slirp> {
        let (ready_r, ready_w) = pipe()?;
        let (exit_r, exit_w) = pipe()?;
        let (ready_fd, exit_fd) = (ready_w.as_raw_fd(), exit_r.as_raw_fd());
        let mut cmd = Command::new(exe);
        cmd.arg("--configure")
            .arg("--mtu=65520")
            .arg("--disable-host-loopback")
            // As podman: its own mount namespace with nothing in it, capabilities dropped,
            // and a seccomp filter (no execve, mount, setns, ptrace, ...).
            .arg("--enable-sandbox")
            .arg("--enable-seccomp")
            .arg(format!("--ready-fd={ready_fd}"))
            .arg(format!("--exit-fd={exit_fd}"))
            .arg(pid.to_string())
            .arg(TAP)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec. The two pipe ends
        // slirp4netns is told about lose O_CLOEXEC in the child (every other fd keeps it), and
        // setsid(2) puts it in its own session: a Ctrl-C on the terminal of a foreground
        // `strata run` goes to the container, never to slirp4netns
        // (https://man7.org/linux/man-pages/man2/setsid.2.html).
        unsafe {
            cmd.pre_exec(move || {
                for fd in [ready_fd, exit_fd] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| Error::Net {
            what: format!("cannot run {}", exe.display()),
            source,
        })?;
        Ok(Slirp {
            child,
            exit_w: Some(exit_w),
            ready_r: Some(ready_r),
        })
    }

    /// Waits until slirp4netns reports `tap0` configured (at once when it already did).
    ///
    /// # Errors
    /// [`Error::Slirp`] with the last line of its stderr when it exits (or does not report
    /// ready in a minute) before configuring the device; it is killed then.
    pub fn wait_ready(&mut self) -> Result<()> {
        let Some(ready_r) = self.ready_r.take() else {
            return Ok(());
        };
        if wait_ready(&ready_r)? {
            // Keep draining its stderr so that it never blocks on a full pipe.
            if let Some(mut err) = self.child.stderr.take() {
                let _ = std::thread::Builder::new()
                    .name("slirp4netns-stderr".to_string())
                    .spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
            }
            return Ok(());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut msg = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut msg);
        }
        let msg = msg.trim();
        Err(Error::Slirp(match msg.lines().last() {
            Some(last) => last.to_string(),
            None => "it exited before configuring tap0".to_string(),
        }))
    }

    /// The pid of the `slirp4netns` process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        // Closing the exit fd makes slirp4netns exit; SIGKILL too so that it never lingers.
        self.exit_w.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for slirp4netns to write to the ready pipe: `Ok(true)` when it did, `Ok(false)` when
/// the pipe closed (it exited) or it took too long.
fn wait_ready(ready: &OwnedFd) -> Result<bool> {
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(ready),
        PollFlags::POLLIN,
    )];
    let timeout = PollTimeout::try_from(READY_TIMEOUT).unwrap_or(PollTimeout::MAX);
    loop {
        match poll(&mut fds, timeout) {
            Ok(0) => return Ok(false),
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Net {
                    what: "waiting for slirp4netns".to_string(),
                    source: e.into(),
                });
            }
        }
    }
    let mut buf = [0u8; 16];
    match nix::unistd::read(ready, &mut buf) {
        Ok(n) => Ok(n > 0),
        Err(e) => Err(Error::Net {
            what: "reading slirp4netns's ready fd".to_string(),
            source: e.into(),
        }),
    }
}
