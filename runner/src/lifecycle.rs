//! start, stop, kill, wait, rm and restart of containers, from any strata process.
//!
//! Nothing is a daemon: a running container's record names its supervisor and its pid 1, each
//! with its start time ([`crate::container::same_process`]), so a signal only ever goes to
//! the process that was recorded, never to a reused pid. A record that says `running` whose
//! supervisor is gone (killed with SIGKILL, machine rebooted) is repaired by [`refresh`] to
//! `exited` (137) with an error, as podman does after a conmon crash.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::container::{Container, ContainerStore, Status, same_process};
use crate::error::{Error, Result};
use crate::supervisor;

/// How long to wait between looks at a record.
const POLL: Duration = Duration::from_millis(20);

/// Docker's default stop timeout.
pub const DEFAULT_STOP_TIMEOUT: u32 = 10;

/// Parses a signal as docker does: `SIGTERM`, `TERM`, `term` or `15`.
///
/// # Errors
/// [`Error::Invalid`] for an unknown signal.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::Invalid(format!("invalid signal: {s}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| Error::Invalid(format!("invalid signal: {s}")))
}

/// Whether the record's container is really running (its supervisor is alive).
fn supervisor_alive(c: &Container) -> bool {
    same_process(c.state.supervisor_pid, c.state.supervisor_start)
}

/// Loads a container and repairs a stale `running` record (its supervisor vanished).
///
/// # Errors
/// Those of [`ContainerStore::get`].
pub fn refresh(cstore: &ContainerStore, reference: &str) -> Result<Container> {
    let c = cstore.get(reference)?;
    if c.state.status != Status::Running || supervisor_alive(&c) {
        return Ok(c);
    }
    cstore.update(&c.id, |c| {
        if c.state.status == Status::Running && !supervisor_alive(c) {
            // The container's pid 1 dies with its supervisor (PDEATHSIG).
            c.state.status = Status::Exited;
            c.state.exit_code = 137;
            c.state.pid = 0;
            c.state.pid_start = 0;
            c.state.supervisor_pid = 0;
            c.state.error = "the supervisor exited unexpectedly".into();
            c.state.finished_at = strata_oci::image::now_rfc3339();
        }
        Ok(())
    })
}

/// Every container, with stale records repaired.
///
/// # Errors
/// Reading the store.
pub fn list(cstore: &ContainerStore) -> Result<Vec<Container>> {
    let mut out = Vec::new();
    for c in cstore.list()? {
        if c.state.status == Status::Running && !supervisor_alive(&c) {
            match refresh(cstore, &c.id) {
                Ok(c) => out.push(c),
                Err(Error::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Sends `sig` to a running container's pid 1.
///
/// # Errors
/// [`Error::NotRunning`], or `kill(2)` failing.
pub fn kill(cstore: &ContainerStore, reference: &str, sig: Signal) -> Result<Container> {
    let c = refresh(cstore, reference)?;
    if c.state.status != Status::Running {
        return Err(Error::NotRunning(c.name.clone()));
    }
    // The pid may not be known yet right after the start.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut cur = c;
    while cur.state.pid == 0 && cur.state.status == Status::Running && Instant::now() < deadline {
        std::thread::sleep(POLL);
        cur = refresh(cstore, &cur.id)?;
    }
    if cur.state.status != Status::Running || !same_process(cur.state.pid, cur.state.pid_start) {
        return Err(Error::NotRunning(cur.name.clone()));
    }
    // Why kill: signals the recorded process only (checked against its start time above).
    // https://man7.org/linux/man-pages/man2/kill.2.html
    nix::sys::signal::kill(Pid::from_raw(cur.state.pid), sig)
        .map_err(|e| Error::Invalid(format!("cannot kill container {}: {e}", cur.name)))?;
    Ok(cur)
}

/// Waits until the container is not running; returns its record. `timeout: None` waits
/// forever.
///
/// # Errors
/// Reading the store; [`Error::NoSuchContainer`] when it is removed meanwhile.
pub fn wait_stopped(
    cstore: &ContainerStore,
    id: &str,
    timeout: Option<Duration>,
) -> Result<Container> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let c = refresh(cstore, id)?;
        if c.state.status != Status::Running {
            return Ok(c);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(c);
        }
        std::thread::sleep(POLL);
    }
}

/// `strata wait`: blocks until the container stops; returns its exit code. A container
/// removed meanwhile (`--rm`) yields its last known code when it was seen exiting, else an
/// error.
///
/// # Errors
/// [`Error::NoSuchContainer`].
pub fn wait(cstore: &ContainerStore, reference: &str) -> Result<i32> {
    let c = refresh(cstore, reference)?;
    let mut last = c.state.exit_code;
    loop {
        match refresh(cstore, &c.id) {
            Ok(c) if c.state.status != Status::Running => return Ok(c.state.exit_code),
            Ok(c) => last = c.state.exit_code,
            Err(Error::NoSuchContainer(_)) if c.config.auto_remove => return Ok(last),
            Err(e) => return Err(e),
        }
        std::thread::sleep(POLL);
    }
}

/// `strata stop`: the stop signal, then SIGKILL after `timeout` seconds (the container's
/// `--stop-timeout`, else 10); waits until it has stopped.
///
/// # Errors
/// Store errors.
pub fn stop(cstore: &ContainerStore, reference: &str, timeout: Option<u32>) -> Result<Container> {
    let c = refresh(cstore, reference)?;
    if c.state.status != Status::Running {
        return Ok(c);
    }
    let secs = timeout
        .or(c.config.stop_timeout)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    let sig = parse_signal(&c.config.stop_signal).unwrap_or(Signal::SIGTERM);
    match kill(cstore, &c.id, sig) {
        Ok(_) | Err(Error::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    let c = wait_stopped(cstore, &c.id, Some(Duration::from_secs(u64::from(secs))))?;
    if c.state.status != Status::Running {
        return Ok(c);
    }
    match kill(cstore, &c.id, Signal::SIGKILL) {
        Ok(_) | Err(Error::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    wait_stopped(cstore, &c.id, None)
}

/// `strata start`: starts a created or exited container under a detached supervisor; a
/// running one is left alone.
///
/// # Errors
/// [`Error::StartFailed`] with the supervisor's report.
pub fn start(root: &Path, exe: &Path, reference: &str) -> Result<Container> {
    let cstore = ContainerStore::open(root)?;
    let c = refresh(&cstore, reference)?;
    if c.state.status == Status::Running {
        return Ok(c);
    }
    supervisor::spawn_detached(root, exe, &c.id)?;
    match cstore.load(&c.id) {
        Ok(c) => Ok(c),
        // --rm and already gone.
        Err(Error::NoSuchContainer(_)) => Ok(c),
        Err(e) => Err(e),
    }
}

/// `strata restart`: stop (with `timeout`), then start.
///
/// # Errors
/// Those of [`stop`] and [`start`].
pub fn restart(
    root: &Path,
    exe: &Path,
    reference: &str,
    timeout: Option<u32>,
) -> Result<Container> {
    let cstore = ContainerStore::open(root)?;
    let c = stop(&cstore, reference, timeout)?;
    start(root, exe, &c.id)
}

/// `strata rm`: removes a stopped container (with `force`, kills a running one first).
/// Returns the removed record (the caller removes its anonymous volumes for `-v`).
///
/// # Errors
/// [`Error::Conflict`] for a running container without `force`.
pub fn remove(cstore: &ContainerStore, reference: &str, force: bool) -> Result<Container> {
    let c = refresh(cstore, reference)?;
    if c.state.status == Status::Running {
        if !force {
            return Err(Error::Conflict(format!(
                "cannot remove container \"/{}\": container is running: stop the container \
                 before removing or force remove",
                c.name
            )));
        }
        match kill(cstore, &c.id, Signal::SIGKILL) {
            Ok(_) | Err(Error::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
        match wait_stopped(cstore, &c.id, None) {
            Ok(_) => {}
            // --rm removed it meanwhile.
            Err(Error::NoSuchContainer(_)) => return Ok(c),
            Err(e) => return Err(e),
        }
    }
    let _lock = match cstore.lock(&c.id) {
        Ok(l) => l,
        Err(Error::NoSuchContainer(_)) => return Ok(c),
        Err(e) => return Err(e),
    };
    let now = cstore.load(&c.id)?;
    if now.state.status == Status::Running && supervisor_alive(&now) {
        return Err(Error::Conflict(format!(
            "container {} was started again meanwhile",
            now.name
        )));
    }
    cstore.remove(&now)?;
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("HUP").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
