//! `strata attach`: the supervisor of a detached container serves `attach.sock` in the
//! container's directory ([`AttachServer`]); every client gets the container's output as it
//! is produced, and what a client writes goes to the container's stdin (when it was started
//! with `-i`). [`attach`] is the client side.
//!
//! The socket is reached through `/proc/self/fd/<dir fd>/attach.sock`, so the 108-byte limit
//! of a socket path never bites however deep the root is.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// A short path to `dir/name` through an open fd of `dir` (kept open by the caller).
fn short_path(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

fn open_dir(dir: &Path) -> Result<File> {
    File::open(dir).map_err(|e| Error::io(dir, e))
}

/// The supervisor's side: accepts clients and fans the output out to them.
#[derive(Debug)]
pub struct AttachServer {
    clients: Arc<Mutex<Vec<UnixStream>>>,
    path: PathBuf,
}

impl AttachServer {
    /// Listens on `dir/attach.sock` (replacing a stale one); each client's input is copied to
    /// `input` (the container's stdin) when given.
    ///
    /// # Errors
    /// Binding the socket.
    pub fn listen(dir: &Path, input: Option<File>) -> Result<AttachServer> {
        let path = dir.join(SOCKET);
        let d = open_dir(dir)?;
        let short = short_path(&d, SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&short).map_err(|e| Error::io(&path, e))?;
        drop(d);
        let clients: Arc<Mutex<Vec<UnixStream>>> = Arc::new(Mutex::new(Vec::new()));
        let list = Arc::clone(&clients);
        let input = input.map(|f| Arc::new(Mutex::new(f)));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Ok(out) = conn.try_clone()
                    && let Ok(mut l) = list.lock()
                {
                    l.push(out);
                }
                if let Some(input) = input.clone() {
                    std::thread::spawn(move || forward_input(conn, &input));
                }
            }
        });
        Ok(AttachServer { clients, path })
    }

    /// Sends `bytes` to every client; a client that can't take them is dropped.
    pub fn broadcast(&self, bytes: &[u8]) {
        if let Ok(mut l) = self.clients.lock() {
            l.retain_mut(|c| c.write_all(bytes).is_ok());
        }
    }
}

impl Drop for AttachServer {
    /// Clients see EOF; the socket goes.
    fn drop(&mut self) {
        if let Ok(mut l) = self.clients.lock() {
            for c in l.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn forward_input(mut from: UnixStream, to: &Mutex<File>) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Ok(mut f) = to.lock() else { return };
        if f.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// The client: connects to the supervisor of the container in `dir`, copies `stdin` (when
/// given) to it and its output to `stdout` until the container ends.
///
/// # Errors
/// [`Error::NotRunning`] when nothing listens (the container is not running detached).
pub fn attach(dir: &Path, name: &str, stdin: Option<OwnedFd>, stdout: OwnedFd) -> Result<()> {
    let d = open_dir(dir)?;
    let stream = UnixStream::connect(short_path(&d, SOCKET))
        .map_err(|_| Error::NotRunning(name.to_string()))?;
    drop(d);
    if let Some(input) = stdin {
        let mut to = stream.try_clone().map_err(|e| Error::io(dir, e))?;
        std::thread::spawn(move || {
            let mut from = File::from(input);
            let _ = std::io::copy(&mut from, &mut to);
        });
    }
    let mut from = stream;
    let mut out = File::from(stdout);
    let _ = std::io::copy(&mut from, &mut out);
    Ok(())
}
