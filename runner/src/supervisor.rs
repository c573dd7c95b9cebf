//! The per-container supervisor (the role conmon plays for podman).
//!
//! [`supervise`] runs one start of a container to its end: it builds the spec, records
//! `running` with its own pid (and start time), starts the sandbox, records the container's
//! pid 1 and its start time (so nobody ever signals a reused pid), copies stdout/stderr into
//! the json-file log (and, in the foreground, to the terminal), waits, records the exit code
//! and `finished_at`, and honours `--rm`.
//!
//! Detached (`run -d`, `start`), [`spawn_detached`] starts `strata __supervise ROOT ID` in a
//! new session with its stdio on `/dev/null`; that process forks once more (the double fork)
//! so the caller's child exits at once and the supervisor is nobody's child in the caller's
//! session. It reports through a pipe when the container runs (or why it could not start), so
//! `CID=$(strata run -d ...)` returns as soon as the container is up. In the foreground,
//! `run` calls [`supervise`] in-process, with the terminal's fds, and [`forward_signals`].

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use strata_cas::Store;
use strata_executor::sandbox::{self, Outcome};

use crate::attach::AttachServer;
use crate::container::{Container, ContainerStore, NEVER, Status, proc_start_time};
use crate::error::{Error, Result};
use crate::logs::{LogWriter, Stream, log_path};
use crate::tty::Pty;

/// The exit code of a container that could not be started (docker's 125).
pub const EXIT_START_FAILED: i32 = 125;

/// The caller's terminal, when the container runs in the foreground.
#[derive(Debug)]
pub struct Foreground {
    /// Where the container's stdin comes from (`-i`); `None`: `/dev/null`.
    pub stdin: Option<OwnedFd>,
    /// The caller's stdout.
    pub stdout: OwnedFd,
    /// The caller's stderr.
    pub stderr: OwnedFd,
    /// With `-t`: the pty the caller also uses for window size changes.
    pub pty: Option<Arc<Pty>>,
}

/// How a supervised start ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// docker's exit code: the container's code, 128 + signal, or 125 when it could not start.
    pub code: i32,
    /// Why it could not start.
    pub error: Option<String>,
}

/// What [`supervise`] reports on the way (for the detached caller's ready pipe).
/// `Ok(warnings)` once the container runs (the network's warnings, for the caller to print),
/// or why it could not start: docker's exit code (125, or 127/126 when the command could not
/// be exec'd) and the message.
pub type Ready = Box<dyn FnOnce(std::result::Result<Vec<String>, (i32, String)>) + Send>;

fn now() -> String {
    strata_oci::image::now_rfc3339()
}

/// Copies `from` into the log (as `stream`), to `tee` and to attached clients, until EOF.
fn copy_out(
    from: OwnedFd,
    log: &LogWriter,
    stream: Stream,
    mut tee: Option<std::fs::File>,
    attach: Option<&AttachServer>,
) {
    let mut reader = std::fs::File::from(from);
    let mut lines = log.stream(stream);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let _ = lines.feed(&buf[..n]);
        if let Some(a) = attach {
            a.broadcast(&buf[..n]);
        }
        if let Some(t) = tee.as_mut()
            && t.write_all(&buf[..n]).is_err()
        {
            tee = None;
        }
    }
    let _ = lines.flush();
}

/// Copies `from` into `to` until EOF of either (stdin forwarding).
fn copy_in(from: OwnedFd, to: OwnedFd) {
    let mut r = std::fs::File::from(from);
    let mut w = std::fs::File::from(to);
    let _ = std::io::copy(&mut r, &mut w);
}

/// Runs one start of container `id` to its end and returns how it ended. The record says `running` meanwhile
/// and `exited` after; with `--rm` the container is removed. `ready` is told once the
/// container's pid is known (or why it could not start); `pid_cell` receives its pid for
/// signal forwarding.
///
/// # Errors
/// The store (a record that can't be read or written). Failures to start the container are
/// recorded in its state and returned as code 125 with the message in `state.error`.
pub fn supervise(
    root: &Path,
    exe: &Path,
    id: &str,
    fg: Option<Foreground>,
    ready: Option<Ready>,
    pid_cell: Option<Arc<AtomicI32>>,
) -> Result<Exit> {
    let cstore = ContainerStore::open(root)?;
    let store = Store::open(root)?;
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let my_start = proc_start_time(me).unwrap_or(0);
    let ready = Arc::new(Mutex::new(ready));
    let tell = |r: std::result::Result<Vec<String>, (i32, String)>| {
        if let Ok(mut g) = ready.lock()
            && let Some(f) = g.take()
        {
            f(r);
        }
    };
    let started = cstore.update(id, |c| {
        if c.state.status == Status::Running
            && crate::container::same_process(c.state.supervisor_pid, c.state.supervisor_start)
        {
            return Err(Error::Conflict(format!(
                "container {} is already running",
                c.name
            )));
        }
        c.state.status = Status::Running;
        c.state.pid = 0;
        c.state.pid_start = 0;
        c.state.supervisor_pid = me;
        c.state.supervisor_start = my_start;
        c.state.exit_code = 0;
        c.state.oom_killed = false;
        c.state.error.clear();
        c.state.started_at = now();
        c.state.finished_at = NEVER.into();
        Ok(())
    });
    let c = match started {
        Ok(c) => c,
        Err(e) => {
            tell(Err((EXIT_START_FAILED, e.to_string())));
            return Err(e);
        }
    };
    let mut teardown = None;
    let foreground = fg.is_some();
    let outcome = run_sandbox(&store, &cstore, &c, exe, fg, &tell, pid_cell, &mut teardown);
    if !foreground && let Some(t) = teardown.take() {
        // Detached: others watch the record (`stop`, `wait`), so the published ports are
        // free before it says `exited`.
        let _ = t.join();
    }
    let (code, oom, error) = match outcome {
        Ok(o) => (o.status.code(), o.oom_killed, String::new()),
        Err(e) => (EXIT_START_FAILED, false, e.to_string()),
    };
    tell(if error.is_empty() {
        Ok(Vec::new())
    } else {
        Err((EXIT_START_FAILED, error.clone()))
    });
    let c = cstore.update(id, |c| {
        c.state.status = Status::Exited;
        c.state.pid = 0;
        c.state.pid_start = 0;
        c.state.supervisor_pid = 0;
        c.state.supervisor_start = 0;
        c.state.exit_code = code;
        c.state.oom_killed = oom;
        c.state.error = error.clone();
        c.state.finished_at = now();
        Ok(())
    })?;
    if c.config.auto_remove {
        remove_after_exit(root, &cstore, &c)?;
    }
    // Foreground: the network (proxy, slirp4netns) stops on its thread, not waited for:
    // slirp4netns's exit (with the kernel's teardown of the network namespace, ~15 ms)
    // happens anyway, at the latest when this process exits (its exit fd), and so does the
    // closing of the proxy's sockets, before `run` returns to its caller.
    drop(teardown);
    Ok(Exit {
        code,
        error: (!error.is_empty()).then_some(error),
    })
}

/// `--rm`: the container's directory and name go, and its anonymous volumes (as docker).
fn remove_after_exit(root: &Path, cstore: &ContainerStore, c: &Container) -> Result<()> {
    {
        let _lock = cstore.lock(&c.id)?;
        cstore.remove(c)?;
    }
    let volumes = crate::volume::Volumes::new(root);
    let in_use = crate::volume::in_use(cstore)?;
    volumes.remove_anonymous(&c.config.mounts, &in_use)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = std::io::pipe().map_err(|e| Error::io("<pipe>", e))?;
    Ok((OwnedFd::from(r), OwnedFd::from(w)))
}

/// One start: spec, log, stdio (pipes or the pty), sandbox create, network, start, wait.
/// `teardown` receives the thread that stops the network, so the caller overlaps it with
/// recording the exit.
#[allow(clippy::too_many_arguments)]
fn run_sandbox(
    store: &Store,
    cstore: &ContainerStore,
    c: &Container,
    exe: &Path,
    fg: Option<Foreground>,
    tell: &(dyn Fn(std::result::Result<Vec<String>, (i32, String)>) + Sync),
    pid_cell: Option<Arc<AtomicI32>>,
    teardown: &mut Option<std::thread::JoinHandle<()>>,
) -> Result<Outcome> {
    let mut spec = crate::create::build_spec(store, cstore, c)?;
    let dir = cstore.container_dir(&c.id);
    let bundle = dir.join("bundle");
    let log = LogWriter::open(&log_path(&dir, &c.id))?;
    let (fg_in, tee_out, tee_err, fg_pty) = match fg {
        Some(f) => (
            f.stdin,
            Some(std::fs::File::from(f.stdout)),
            Some(std::fs::File::from(f.stderr)),
            f.pty,
        ),
        None => (None, None, None, None),
    };
    let pty = match (c.config.tty, fg_pty) {
        (false, _) => None,
        (true, Some(p)) => Some(p),
        (true, None) => Some(Arc::new(Pty::open()?)),
    };
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned().map_err(|e| Error::io("<dup>", e))
    };
    if let Some(p) = &pty {
        // As runc: the terminal is also /dev/console, so ttyname() finds it in the
        // container's /dev (its /dev/pts is a new devpts instance without our pty).
        sandbox::add_bind(&mut spec, &p.slave_path()?, "/dev/console", false);
    }
    let detached = tee_out.is_none();
    // Detached: attach clients' input goes here (the container's stdin with -i).
    let mut attach_input = None;
    let (stdio, out_r, err_r, stdin_feed) = match &pty {
        Some(p) => {
            let slave = p
                .take_slave()
                .ok_or_else(|| Error::Invalid("the terminal is already in use".into()))?;
            let feed = match fg_in {
                Some(src) if c.config.open_stdin => Some((src, dup(p.master())?)),
                _ => None,
            };
            if detached && c.config.open_stdin {
                attach_input = Some(std::fs::File::from(dup(p.master())?));
            }
            let stdio = sandbox::Stdio {
                stdin: Some(dup(slave.as_fd())?),
                stdout: dup(slave.as_fd())?,
                stderr: slave,
            };
            (stdio, dup(p.master())?, None, feed)
        }
        None => {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let (stdin, feed) = match fg_in {
                Some(src) if c.config.open_stdin => {
                    let (r, w) = pipe()?;
                    (Some(r), Some((src, w)))
                }
                _ if detached && c.config.open_stdin => {
                    let (r, w) = pipe()?;
                    attach_input = Some(std::fs::File::from(w));
                    (Some(r), None)
                }
                _ => (None, None),
            };
            let stdio = sandbox::Stdio {
                stdin,
                stdout: out_w,
                stderr: err_w,
            };
            (stdio, out_r, Some(err_r), feed)
        }
    };
    let server = if detached {
        Some(AttachServer::listen(&dir, attach_input)?)
    } else {
        None
    };
    let server = server.as_ref();
    std::thread::scope(|s| {
        let log2 = log.clone();
        s.spawn(move || copy_out(out_r, &log2, Stream::Stdout, tee_out, server));
        if let Some(err_r) = err_r {
            let log3 = log.clone();
            s.spawn(move || copy_out(err_r, &log3, Stream::Stderr, tee_err, server));
        }
        if let Some((src, w)) = stdin_feed {
            // Not scoped: a read of the terminal may block past the container's end.
            std::thread::spawn(move || copy_in(src, w));
        }
        // This thread lives until the container ends: the sandbox's init dies with the
        // thread that created it (PR_SET_PDEATHSIG).
        let created = sandbox::create(exe, &bundle, &spec, stdio)?;
        let (pid, start) = (created.pid(), created.pid_start());
        // Ports and slirp4netns between create and start, as docker's bridge is ready
        // before the command runs.
        let mode: crate::net::NetworkMode = c.config.network_mode.parse()?;
        let net = crate::net::NetHandle::begin(mode, &c.config.port_bindings, pid)?.finish()?;
        let ports = net.ports().to_vec();
        cstore.update(&c.id, |r| {
            r.state.pid = pid;
            r.state.pid_start = start;
            r.config.port_bindings = ports;
            Ok(())
        })?;
        if let Some(cell) = &pid_cell {
            cell.store(pid, Ordering::Release);
        }
        let running = created.start()?;
        match running.exec_error() {
            Some(e) => tell(Err((e.code, e.message.clone()))),
            None => tell(Ok(net.warnings().to_vec())),
        }
        let outcome = running.wait_outcome();
        *teardown = Some(std::thread::spawn(move || drop(net)));
        if let Some(cell) = &pid_cell {
            cell.store(0, Ordering::Release);
        }
        Ok(outcome?)
    })
}

/// Blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH in the calling
/// thread (call it before spawning any thread), then forwards them from a thread to the
/// container's pid in `pid`. SIGWINCH goes to `on_winch` instead. The thread lives until the
/// process exits.
///
/// # Errors
/// `pthread_sigmask` failing.
pub fn forward_signals(pid: Arc<AtomicI32>, on_winch: Option<Box<dyn Fn() + Send>>) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    // Why block in every thread: only the forwarding thread's sigwait takes these signals.
    // https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html
    set.thread_block()
        .map_err(|e| Error::Invalid(format!("pthread_sigmask: {e}")))?;
    std::thread::spawn(move || {
        loop {
            let Ok(sig) = set.wait() else { return };
            if sig == Signal::SIGWINCH {
                if let Some(f) = &on_winch {
                    f();
                }
                continue;
            }
            let p = pid.load(Ordering::Acquire);
            if p > 0 {
                // Why kill: the container's pid 1 gets the signal we got, as docker's
                // --sig-proxy does. https://man7.org/linux/man-pages/man2/kill.2.html
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
            }
        }
    });
    Ok(())
}

/// Starts `strata __supervise ROOT ID` fully detached (new session, stdio on `/dev/null`,
/// double fork) and waits until it reports that the container runs; returns the network's
/// warnings.
///
/// # Errors
/// Spawning it, or its report of why the container could not start ([`Error::StartFailed`]).
pub fn spawn_detached(root: &Path, exe: &Path, id: &str) -> Result<Vec<String>> {
    let (r, w) = std::io::pipe().map_err(|e| Error::io("<pipe>", e))?;
    let w = OwnedFd::from(w);
    let wfd = std::os::fd::AsRawFd::as_raw_fd(&w);
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .arg("__supervise")
        .arg("--ready-fd")
        .arg("3")
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid and dup2 are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // Why setsid: the supervisor leaves the caller's session and terminal, so a
            // closed terminal's SIGHUP never reaches it. https://man7.org/linux/man-pages/man2/setsid.2.html
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| Error::io(exe, e))?;
    drop(w);
    drop(cmd);
    // The intermediate process exits right after its fork.
    let _ = child.wait();
    let mut msg = String::new();
    let mut r = std::fs::File::from(OwnedFd::from(r));
    let _ = r.read_to_string(&mut msg);
    match msg.strip_prefix("ok\n") {
        Some(rest) => Ok(rest.lines().map(str::to_string).collect()),
        None if msg.is_empty() => Err(Error::StartFailed {
            code: EXIT_START_FAILED,
            message: "the supervisor exited without reporting".into(),
        }),
        None => {
            let report = msg.strip_prefix("error ").unwrap_or(&msg);
            let (code, message) = report
                .split_once(": ")
                .and_then(|(c, m)| Some((c.parse().ok()?, m)))
                .unwrap_or((EXIT_START_FAILED, report));
            Err(Error::StartFailed {
                code,
                message: message.trim_end().to_string(),
            })
        }
    }
}

/// The body of `strata __supervise [--ready-fd FD] ID`: forks (the parent exits 0 at once),
/// then supervises the container and reports readiness on `ready_fd`. Returns only in the
/// parent (with 0) or after the container ended.
///
/// # Errors
/// The fork, or the store.
pub fn supervise_main(root: &Path, exe: &Path, id: &str, ready_fd: Option<i32>) -> Result<i32> {
    // Why fork here: the caller's direct child exits at once; the supervisor is orphaned to
    // init (or a subreaper) and never becomes a zombie of the caller. The process is single
    // threaded at this point. https://man7.org/linux/man-pages/man2/fork.2.html
    // SAFETY: no thread has been spawned yet in this process.
    match unsafe { nix::unistd::fork() } {
        Err(e) => return Err(Error::Invalid(format!("fork: {e}"))),
        Ok(nix::unistd::ForkResult::Parent { .. }) => return Ok(0),
        Ok(nix::unistd::ForkResult::Child) => {}
    }
    // SAFETY: the fd was handed to us open by spawn_detached and nothing else owns it.
    let ready_file = ready_fd.map(|fd| unsafe { std::fs::File::from(OwnedFd::from_raw_fd(fd)) });
    if let Some(f) = &ready_file {
        // Keep the report pipe out of every process we spawn.
        let _ = nix::fcntl::fcntl(
            f.as_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    let ready: Option<Ready> = ready_file.map(|mut f| -> Ready {
        Box::new(move |r| {
            let _ = match r {
                Ok(warnings) => {
                    let mut text = String::from("ok\n");
                    for w in warnings {
                        text.push_str(&format!("{w}\n"));
                    }
                    f.write_all(text.as_bytes())
                }
                Err((code, e)) => f.write_all(format!("error {code}: {e}\n").as_bytes()),
            };
        })
    });
    supervise(root, exe, id, None, ready, None).map(|e| e.code)
}
