//! SSH agent forwarding for `RUN --mount=type=ssh`, fed by `strata build --ssh`.
//!
//! The data flow, as in BuildKit:
//! - The CLI turns each `--ssh ID[=SOCKET|KEY[,KEY...]]` into an [`SshSource`]
//!   ([`SshSource::from_paths`]).
//! - [`SshAgents::start`] gives every id an agent socket on the host: the socket named (by
//!   default `$SSH_AUTH_SOCK`) or, for key files, an `ssh-agent` of the build's own, loaded with
//!   `ssh-add` and killed when the build ends. The build request carries the sockets by id.
//! - Each ssh mount of a RUN gets a [`Forward`]: a new listening socket, owned and moded as the
//!   mount says, bind-mounted read-only at the mount's target. Its connections are relayed to the
//!   id's agent. The step never learns the host's socket path, and the socket goes when the step
//!   ends. Keys never enter a layer or a cache key.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a build's own `ssh-agent` may take to create its socket.
const AGENT_START: Duration = Duration::from_secs(10);

/// What one `--ssh` id forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSource {
    /// A running agent's socket.
    Socket(PathBuf),
    /// Private key files, served by an agent of the build's own.
    Keys(Vec<PathBuf>),
}

impl SshSource {
    /// Classifies the paths of `--ssh ID=PATH[,PATH...]`: one socket, or key files.
    ///
    /// # Errors
    ///
    /// A path that can't be read, that is neither a socket nor a file, or a socket given with
    /// other paths.
    pub fn from_paths(id: &str, paths: Vec<PathBuf>) -> Result<SshSource> {
        if paths.is_empty() {
            return Err(Error::Ssh(format!("{id}: no socket or key given")));
        }
        let mut sockets = 0;
        for path in &paths {
            let meta = std::fs::metadata(path)
                .map_err(|e| Error::Ssh(format!("{id}: {}: {e}", path.display())))?;
            if meta.file_type().is_socket() {
                sockets += 1;
            } else if !meta.is_file() {
                return Err(Error::Ssh(format!(
                    "{id}: {} is neither an agent socket nor a key file",
                    path.display()
                )));
            }
        }
        match sockets {
            0 => Ok(SshSource::Keys(paths)),
            1 if paths.len() == 1 => Ok(SshSource::Socket(paths.into_iter().next().expect("one"))),
            _ => Err(Error::Ssh(format!(
                "{id}: an agent socket must be the only path given"
            ))),
        }
    }
}

/// The agent sockets of a build, by `--ssh` id. Dropping it stops the agents it started.
#[derive(Debug, Default)]
pub struct SshAgents {
    sockets: BTreeMap<String, PathBuf>,
    /// The build's own agents, for ids given as key files.
    started: Vec<KeyAgent>,
}

impl SshAgents {
    /// Makes an agent socket for every id: the socket given, or a new `ssh-agent` holding the
    /// keys given.
    ///
    /// # Errors
    ///
    /// `ssh-agent` could not be started (openssh-client missing), or `ssh-add` refused a key
    /// (with its message: a bad format, a passphrase it could not ask for).
    pub fn start(sources: BTreeMap<String, SshSource>) -> Result<SshAgents> {
        let mut agents = SshAgents::default();
        for (id, source) in sources {
            let socket = match source {
                SshSource::Socket(path) => path,
                SshSource::Keys(keys) => {
                    let agent = KeyAgent::start(&id, &keys)?;
                    let socket = agent.socket.clone();
                    agents.started.push(agent);
                    socket
                }
            };
            agents.sockets.insert(id, socket);
        }
        Ok(agents)
    }

    /// The agent socket of every id, for the build request.
    pub fn sockets(&self) -> BTreeMap<String, PathBuf> {
        self.sockets.clone()
    }
}

/// An `ssh-agent` that the build started for key files, in a private temp dir, with a
/// watchdog that kills it should strata die without dropping it (`kill -9`).
#[derive(Debug)]
struct KeyAgent {
    child: Child,
    /// The watchdog and the write end of its pipe.
    watchdog: Option<(Child, io::PipeWriter)>,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl KeyAgent {
    fn start(id: &str, keys: &[PathBuf]) -> Result<KeyAgent> {
        let dir = private_dir()?;
        let socket = dir.path().join("agent");
        // -D: stay in the foreground, so the child is the agent and killing it ends it.
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Ssh(format!(
                    "{id}: key files are served by ssh-agent, which could not be started ({e}); \
                     install openssh-client, or give an agent socket"
                ))
            })?;
        let mut agent = KeyAgent {
            child,
            watchdog: None,
            socket,
            _dir: dir,
        };
        agent.watchdog =
            Some(watchdog(agent.child.id()).map_err(|e| {
                Error::Ssh(format!("{id}: cannot start the agent's watchdog: {e}"))
            })?);
        let deadline = Instant::now() + AGENT_START;
        while UnixStream::connect(&agent.socket).is_err() {
            if let Ok(Some(status)) = agent.child.try_wait() {
                return Err(Error::Ssh(format!("{id}: ssh-agent exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err(Error::Ssh(format!(
                    "{id}: ssh-agent did not open its socket within {AGENT_START:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = Command::new("ssh-add")
            .arg("-q")
            .args(keys)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Ssh(format!("{id}: cannot run ssh-add: {e}")))?;
        if !out.status.success() {
            return Err(Error::Ssh(format!(
                "{id}: ssh-add could not load {}: {}",
                keys.iter()
                    .map(|k| k.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(agent)
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        // The watchdog first: once the agent is reaped its pid may be reused, and the
        // watchdog must never get to kill that.
        if let Some((mut watchdog, _lifeline)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sh` waiting for the end of a pipe whose write end only this process holds (it is
/// close-on-exec), then killing `pid`. The kernel closes that end when strata dies, however it
/// dies. `PR_SET_PDEATHSIG` can't do this job: `ssh-agent` is set-group-ID on Debian, and exec
/// of such a binary clears it.
fn watchdog(pid: u32) -> io::Result<(Child, io::PipeWriter)> {
    let (read, write) = io::pipe()?;
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg("cat >/dev/null; kill -9 \"$1\"")
        .arg("sh")
        .arg(pid.to_string())
        .stdin(read)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((child, write))
}

/// A temp dir only the build's user can enter: agent sockets live there. A `$TMPDIR` too long
/// for a socket's path (108 bytes with its name) gives way to `/tmp`.
fn private_dir() -> Result<tempfile::TempDir> {
    let mut base = std::env::temp_dir();
    if base.as_os_str().len() > 80 {
        base = PathBuf::from("/tmp");
    }
    let dir = tempfile::Builder::new()
        .prefix("strata-ssh-")
        .tempdir_in(&base)
        .map_err(|e| Error::io(&base, e))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir.path(), e))?;
    Ok(dir)
}

/// One ssh mount's socket: connections to it are relayed to an agent. Dropping it stops
/// accepting and removes the socket; relays already open end when either side closes.
#[derive(Debug)]
pub struct Forward {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Forward {
    /// Listens on a new socket (`mode`, owned by `uid:gid`) that relays to `agent`.
    ///
    /// # Errors
    ///
    /// The socket could not be made (temp dir, bind, chown, chmod).
    pub fn start(agent: &Path, mode: u32, uid: u32, gid: u32) -> Result<Forward> {
        let dir = private_dir()?;
        let path = dir.path().join("agent");
        let listener = UnixListener::bind(&path).map_err(|e| Error::io(&path, e))?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|e| Error::io(&path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| Error::io(&path, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = Arc::clone(&stop);
            let agent = agent.to_path_buf();
            std::thread::Builder::new()
                .name("ssh-forward".into())
                .spawn(move || {
                    for client in listener.incoming() {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        match client {
                            Ok(client) => relay(client, &agent),
                            // Out of fds or a signal: nothing to relay; try the next one.
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                })
                .map_err(|e| Error::io("<thread>", e))?
        };
        Ok(Forward {
            path,
            stop,
            accept: Some(accept),
            _dir: dir,
        })
    }

    /// The socket to bind-mount into the step.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the blocked accept, which then sees `stop`. Should the connection fail, the
        // thread is left blocked rather than waited for (it holds nothing but the listener).
        if UnixStream::connect(&self.path).is_ok()
            && let Some(accept) = self.accept.take()
        {
            let _ = accept.join();
        }
    }
}

/// Relays one connection to the agent, a thread per direction; each side's end of input is
/// passed on as a half-close, so a client that stops writing still gets the agent's answer.
fn relay(client: UnixStream, agent: &Path) {
    // An agent that is gone: the client sees its connection closed, as with a dead agent.
    let Ok(upstream) = UnixStream::connect(agent) else {
        return;
    };
    let (Ok(client_in), Ok(upstream_in)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let spawn = |name: &str, from: UnixStream, to: UnixStream| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || pump(from, to))
    };
    let _ = spawn("ssh-relay-out", client_in, upstream);
    let _ = spawn("ssh-relay-in", upstream_in, client);
}

/// Copies `from` into `to` until `from` ends (or either fails), then half-closes `to`.
fn pump(mut from: UnixStream, mut to: UnixStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// An "agent" that answers each connection with `agent:` and what it read, once the client
    /// half-closes.
    fn fake_agent(dir: &Path) -> PathBuf {
        let path = dir.join("fake-agent");
        let listener = UnixListener::bind(&path).expect("bind the fake agent");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    conn.read_to_end(&mut got).expect("read the request");
                    conn.write_all(b"agent:").expect("answer");
                    conn.write_all(&got).expect("answer");
                });
            }
        });
        path
    }

    fn ask(socket: &Path, request: &[u8]) -> Vec<u8> {
        let mut conn = UnixStream::connect(socket).expect("connect to the forward");
        conn.write_all(request).expect("send");
        conn.shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).expect("receive");
        answer
    }

    #[test]
    fn a_forward_relays_each_connection_to_the_agent_both_ways() {
        let dir = tempfile::tempdir().expect("temp dir");
        let agent = fake_agent(dir.path());
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let fwd = Forward::start(&agent, 0o640, me.0, me.1).expect("forward");

        let meta = std::fs::symlink_metadata(fwd.path()).expect("stat the socket");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!((meta.uid(), meta.gid()), me);

        assert_eq!(ask(fwd.path(), b"one"), b"agent:one");
        // Several clients at once, each with its own relay.
        let answers: Vec<Vec<u8>> = std::thread::scope(|s| {
            let asks: Vec<_> = (0..4)
                .map(|i| {
                    let path = fwd.path().to_path_buf();
                    s.spawn(move || ask(&path, format!("req{i}").repeat(5000).as_bytes()))
                })
                .collect();
            asks.into_iter()
                .map(|a| a.join().expect("client"))
                .collect()
        });
        for (i, answer) in answers.iter().enumerate() {
            let want = format!("agent:{}", format!("req{i}").repeat(5000));
            assert_eq!(answer, want.as_bytes());
        }

        let path = fwd.path().to_path_buf();
        drop(fwd);
        assert!(!path.exists(), "the socket goes with the forward");
    }

    #[test]
    fn a_forward_to_a_missing_agent_closes_its_clients() {
        let dir = tempfile::tempdir().expect("temp dir");
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let fwd = Forward::start(&dir.path().join("gone"), 0o600, me.0, me.1).expect("forward");
        let mut conn = UnixStream::connect(fwd.path()).expect("connect to the forward");
        // The relay closes the connection at once: the write may or may not land first.
        let _ = conn.write_all(b"anyone?");
        let mut answer = Vec::new();
        match conn.read_to_end(&mut answer) {
            Ok(_) => assert_eq!(answer, b""),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        }
    }

    #[test]
    fn paths_are_one_socket_or_key_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("sock");
        let _listener = UnixListener::bind(&socket).expect("bind");
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, b"not checked here").expect("key");

        assert_eq!(
            SshSource::from_paths("default", vec![socket.clone()]).expect("socket"),
            SshSource::Socket(socket.clone())
        );
        assert_eq!(
            SshSource::from_paths("k", vec![key.clone(), key.clone()]).expect("keys"),
            SshSource::Keys(vec![key.clone(), key.clone()])
        );
        let err = |paths: Vec<PathBuf>| {
            SshSource::from_paths("x", paths)
                .expect_err("refused")
                .to_string()
        };
        assert!(err(vec![socket.clone(), key.clone()]).contains("must be the only path"));
        assert!(err(vec![dir.path().join("missing")]).contains("missing"));
        assert!(err(vec![dir.path().to_path_buf()]).contains("neither an agent socket"));
        assert!(err(Vec::new()).contains("no socket or key"));
    }
}
