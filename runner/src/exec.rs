//! `strata exec`: a new process in every namespace of a running container
//! ([`sandbox::exec`]), with the container's spec (capabilities, seccomp, `noNewPrivileges`)
//! and docker's overrides: `-e` on top of the container's env, `-u` resolved in the image,
//! `-w`, `-t`.

use std::os::fd::{AsFd as _, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use oci_spec::runtime::{Process, Spec};
use strata_cas::{Digest, Store};
use strata_executor::fs::LayerView;
use strata_executor::sandbox;

use crate::container::{ContainerStore, Status, same_process};
use crate::error::{Error, Result};
use crate::tty::Pty;

/// What to exec.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// `-e K=V` (added to the container's env).
    pub env: Vec<String>,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
    /// `-w DIR`.
    pub workdir: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
}

/// The caller's stdio for the exec'd process.
#[derive(Debug)]
pub struct ExecIo {
    /// stdin (`-i`), else `/dev/null`.
    pub stdin: Option<OwnedFd>,
    /// stdout.
    pub stdout: OwnedFd,
    /// stderr.
    pub stderr: OwnedFd,
    /// With `-t`: the pty whose slave the process gets; the caller copies its master.
    pub pty: Option<Arc<Pty>>,
}

fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

fn copy(from: OwnedFd, to: OwnedFd) {
    let mut r = std::fs::File::from(from);
    let mut w = std::fs::File::from(to);
    let _ = std::io::copy(&mut r, &mut w);
}

/// Runs `opts.cmd` in container `reference` and returns its exit code (126/127 when it can't
/// be run). `pid_cell` receives the new process's host pid for signal forwarding.
///
/// # Errors
/// [`Error::NotRunning`], an unknown user, or the sandbox failing to enter the container.
pub fn exec(
    root: &Path,
    exe: &Path,
    reference: &str,
    opts: &ExecOptions,
    io: ExecIo,
    pid_cell: Option<Arc<AtomicI32>>,
) -> Result<i32> {
    let cstore = ContainerStore::open(root)?;
    let c = crate::lifecycle::refresh(&cstore, reference)?;
    if c.state.status != Status::Running || !same_process(c.state.pid, c.state.pid_start) {
        return Err(Error::NotRunning(c.name.clone()));
    }
    if opts.cmd.is_empty() {
        return Err(Error::Invalid("exec needs a command".into()));
    }
    let spec = load_spec(&cstore.container_dir(&c.id).join("bundle"))?;
    let mut process: Process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(opts.cmd.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for e in &opts.env {
        let kv = if e.contains('=') {
            e.clone()
        } else {
            match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            }
        };
        let key = kv
            .split_once('=')
            .map_or(kv.as_str(), |(k, _)| k)
            .to_string();
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != key);
        env.push(kv);
    }
    process.set_env(Some(env));
    if let Some(w) = opts.workdir.as_deref().filter(|w| !w.is_empty()) {
        if !w.starts_with('/') {
            return Err(Error::Invalid(format!(
                "the working directory '{w}' is invalid, it needs to be an absolute path"
            )));
        }
        process.set_cwd(w.into());
    }
    if let Some(u) = opts.user.as_deref().filter(|u| !u.is_empty()) {
        let store = Store::open(root)?;
        let mut dirs = Vec::new();
        for d in c.layers.iter().rev() {
            let diff: Digest = d
                .parse()
                .map_err(|_| Error::Invalid(format!("bad layer id {d:?} in the record")))?;
            dirs.extend(store.layer_dirs(&diff)?);
        }
        let (uid, gid, groups) = strata_executor::fs::resolve_user(&LayerView::new(dirs), u)?;
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_additional_gids(Some(groups));
        process.set_user(user);
        if uid != 0
            && let Some(caps) = process.capabilities().clone()
        {
            // As docker: a non-root user gets no effective or permitted capabilities.
            let mut caps = caps;
            caps.set_effective(Some(Default::default()));
            caps.set_permitted(Some(Default::default()));
            process.set_capabilities(Some(caps));
        }
    }
    process.set_terminal(Some(opts.tty));
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned().map_err(|e| Error::io("<dup>", e))
    };
    let (stdio, pumps) = match &io.pty {
        Some(p) => {
            let slave = p
                .take_slave()
                .ok_or_else(|| Error::Invalid("the terminal is already in use".into()))?;
            let stdio = sandbox::Stdio {
                stdin: Some(dup(slave.as_fd())?),
                stdout: dup(slave.as_fd())?,
                stderr: slave,
            };
            let input = match io.stdin {
                Some(src) if opts.interactive => Some((src, dup(p.master())?)),
                _ => None,
            };
            (stdio, Some((dup(p.master())?, io.stdout, input)))
        }
        None => (
            sandbox::Stdio {
                stdin: if opts.interactive { io.stdin } else { None },
                stdout: io.stdout,
                stderr: io.stderr,
            },
            None,
        ),
    };
    let running = sandbox::exec(exe, c.state.pid, &spec, &process, stdio)?;
    if let Some(cell) = &pid_cell {
        cell.store(running.pid(), Ordering::Release);
    }
    let output = pumps.map(|(master, out, input)| {
        if let Some((src, w)) = input {
            std::thread::spawn(move || copy(src, w));
        }
        std::thread::spawn(move || copy(master, out))
    });
    let status = running.wait();
    if let Some(cell) = &pid_cell {
        cell.store(0, Ordering::Release);
    }
    if let Some(t) = output {
        let _ = t.join();
    }
    Ok(status?.code())
}
