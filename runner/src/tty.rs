//! `-t`: a pseudo-terminal for the container. The container gets the slave side as
//! stdin/stdout/stderr (`process.terminal` in the spec); the supervisor keeps the master,
//! copies its output to the log (and the caller's terminal), and feeds it the caller's stdin,
//! which [`RawMode`] puts in raw mode meanwhile. SIGWINCH is forwarded by copying the
//! caller's window size onto the master ([`Pty::copy_window_size`]).

use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{Error, Result};

fn tty_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{what}: {e}"))
}

/// The caller's window size (of stdin, else stdout), when one is a terminal.
fn caller_winsize() -> Option<libc::winsize> {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // Why TIOCGWINSZ: the size the container's terminal should start with.
        // https://man7.org/linux/man-pages/man2/TIOCGWINSZ.2const.html
        // SAFETY: `ws` is a valid winsize the kernel fills.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 {
            return Some(ws);
        }
    }
    None
}

/// A pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    master: OwnedFd,
    slave: Mutex<Option<OwnedFd>>,
}

impl Pty {
    /// Opens a pty with the caller's window size (when it has a terminal).
    ///
    /// # Errors
    /// `openpty` failing.
    pub fn open() -> Result<Pty> {
        let ws = caller_winsize().map(|w| nix::pty::Winsize {
            ws_row: w.ws_row,
            ws_col: w.ws_col,
            ws_xpixel: w.ws_xpixel,
            ws_ypixel: w.ws_ypixel,
        });
        // Why openpty: a fresh master/slave pair from /dev/ptmx.
        // https://man7.org/linux/man-pages/man3/openpty.3.html
        let p = nix::pty::openpty(ws.as_ref(), None).map_err(|e| tty_err("openpty", e))?;
        for fd in [&p.master, &p.slave] {
            nix::fcntl::fcntl(
                fd.as_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(|e| tty_err("fcntl", e))?;
        }
        Ok(Pty {
            master: p.master,
            slave: Mutex::new(Some(p.slave)),
        })
    }

    /// The master side.
    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// The host path of the slave side (`/dev/pts/N`).
    ///
    /// # Errors
    /// `ptsname` failing.
    pub fn slave_path(&self) -> Result<std::path::PathBuf> {
        // Why TIOCGPTN: the pty's number, to name its slave (ptsname_r without libc's
        // buffer handling). https://man7.org/linux/man-pages/man2/ioctl_tty.2.html
        let mut n: libc::c_uint = 0;
        // SAFETY: `n` is a valid c_uint the kernel fills; the fd is open.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCGPTN, &mut n) };
        if rc < 0 {
            return Err(tty_err("TIOCGPTN", std::io::Error::last_os_error()));
        }
        Ok(std::path::PathBuf::from(format!("/dev/pts/{n}")))
    }

    /// Takes the slave side (once): the caller hands it to the container and must not keep a
    /// copy, so the master sees EOF (EIO) when the container is gone.
    pub fn take_slave(&self) -> Option<OwnedFd> {
        self.slave.lock().ok().and_then(|mut s| s.take())
    }

    /// Copies the caller's window size onto the terminal (SIGWINCH).
    ///
    /// # Errors
    /// `ioctl` failing.
    pub fn copy_window_size(&self) -> Result<()> {
        let Some(ws) = caller_winsize() else {
            return Ok(());
        };
        // Why TIOCSWINSZ on the master: the kernel sends SIGWINCH to the container's
        // foreground process group. https://man7.org/linux/man-pages/man2/TIOCSWINSZ.2const.html
        // SAFETY: `ws` is a valid winsize; the fd is open for our lifetime.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 {
            return Err(tty_err("TIOCSWINSZ", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Puts the caller's stdin in raw mode until the guard drops (nothing when stdin is
    /// not a terminal).
    ///
    /// # Errors
    /// `tcsetattr` failing.
    pub fn raw_stdin(&self) -> Result<Option<RawMode>> {
        RawMode::enable()
    }
}

/// The caller's terminal in raw mode; restored on drop.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin, when it is a terminal.
    ///
    /// # Errors
    /// `tcsetattr` failing.
    pub fn enable() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return Ok(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        // Why raw mode: keys (Ctrl-C included) go to the container's terminal as bytes.
        // https://man7.org/linux/man-pages/man3/termios.3.html
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .map_err(|e| tty_err("tcsetattr", e))?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn pty_round_trip() {
        let p = Pty::open().unwrap();
        let slave = p.take_slave().unwrap();
        assert!(p.take_slave().is_none());
        let mut s = std::fs::File::from(slave);
        s.write_all(b"hi\n").unwrap();
        let mut m = std::fs::File::from(p.master().try_clone_to_owned().unwrap());
        let mut buf = [0u8; 16];
        let n = m.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"hi"));
    }
}
