//! The container commands: `run`, `create`, `start`, `stop`, `restart`, `kill`, `wait`, `rm`,
//! `ps`, `logs`, `attach`, `inspect` of containers, and the hidden `__supervise`. Thin: flags
//! become [`strata_runner::create::CreateOptions`], the work is in `strata_runner`, and the
//! output and exit codes are docker's (125 when `run` fails before the container starts,
//! otherwise the container's own code).

use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicI32;

use anyhow::{Context as _, anyhow};
use serde_json::Value;
use strata_runner::container::{Container, ContainerStore, Status};
use strata_runner::create::{self, CreateOptions};
use strata_runner::lifecycle;
use strata_runner::logs::{self, ReadOptions};
use strata_runner::supervisor::{self, Foreground};

use crate::Failure;
use crate::cli::{
    AttachArgs, ContainersArgs, ExecArgs, InspectArgs, KillArgs, LogsArgs, PsArgs, RmArgs, RunArgs,
    StartArgs, StopArgs,
};
use crate::format::{self, Format, Timestamp, object};

/// docker's exit code when `run` fails before the container starts.
const EXIT_RUN_FAILED: u8 = 125;

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the strata binary")
}

fn cstore(root: &Path) -> anyhow::Result<ContainerStore> {
    ContainerStore::open(root)
        .with_context(|| format!("cannot open the containers under {}", root.display()))
}

/// The flags of `run`/`create` as the runner's options.
fn options(args: &RunArgs) -> anyhow::Result<CreateOptions> {
    let mut env_files = Vec::new();
    for f in &args.env_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the env file {}", f.display()))?;
        env_files.extend(create::parse_env_file(&f.display().to_string(), &text)?);
    }
    let mut publish = Vec::new();
    for p in &args.publish {
        publish.extend(strata_runner::net::parse_publish(p)?);
    }
    let mut mounts = Vec::new();
    for v in &args.volume {
        mounts.push(strata_runner::mounts::parse_volume_flag(v)?);
    }
    for m in &args.mount {
        mounts.push(strata_runner::mounts::parse_mount_flag(m)?);
    }
    for t in &args.tmpfs {
        mounts.push(strata_runner::mounts::parse_tmpfs_flag(t)?);
    }
    let mut config = strata_runner::container::RunConfig {
        tty: args.tty,
        open_stdin: args.interactive,
        auto_remove: args.rm,
        network_mode: args.network.clone(),
        publish_all: args.publish_all,
        volumes_from: args.volumes_from.clone(),
        stop_signal: args.stop_signal.clone().unwrap_or_default(),
        stop_timeout: args.stop_timeout,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        privileged: args.privileged,
        read_only: args.read_only,
        init: args.init,
        pids_limit: args.pids_limit,
        ..Default::default()
    };
    if !config.stop_signal.is_empty() {
        lifecycle::parse_signal(&config.stop_signal)?;
    }
    if let Some(m) = &args.memory {
        config.memory = Some(create::parse_memory(m)?);
    }
    if let Some(c) = &args.cpus {
        config.nano_cpus = Some(create::parse_cpus(c)?);
    }
    Ok(CreateOptions {
        image: args.image.clone(),
        args: args.command.clone(),
        name: args.name.clone(),
        env: args.env.clone(),
        env_files,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        entrypoint: args.entrypoint.clone(),
        hostname: args.hostname.clone(),
        labels: args.label.clone(),
        mounts,
        publish,
        config,
    })
}

fn usage_exit(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::from(EXIT_RUN_FAILED)
}

/// Creates the container; an image that is not in the store is pulled first, as docker does
/// (`Unable to find image 'NAME' locally`, then the pull's lines on stderr).
///
/// # Errors
/// The image is neither here nor pullable; bad flags.
fn create_pulling(root: &Path, opts: CreateOptions) -> anyhow::Result<Container> {
    use strata_executor::build::ImagePuller as _;
    match create::create(root, opts.clone()) {
        Err(strata_runner::Error::Oci(strata_oci::Error::NoSuchImage(name)))
            if name.parse::<strata_cas::Reference>().is_ok() =>
        {
            eprintln!("Unable to find image '{name}' locally");
            let platform = strata_cas::Platform::host().to_string();
            super::registry::BuildPuller::new(root, &[], &platform)?
                .pull(&name)
                .map_err(|e| anyhow!("{e}"))?;
            Ok(create::create(root, opts)?)
        }
        other => Ok(other?),
    }
}

/// `strata create`: prints the new container's ID.
///
/// # Errors
/// Bad flags, an unknown image, a taken name.
pub fn create(root: &Path, args: &RunArgs) -> Result<(), Failure> {
    let opts = options(args).map_err(Failure::Usage)?;
    let c = create_pulling(root, opts).map_err(Failure::Usage)?;
    println!("{}", c.id);
    Ok(())
}

/// `strata run`: creates the container and runs it, detached (`-d`: prints the ID) or in the
/// foreground (streams its output, forwards signals, exits with its code).
pub fn run(root: &Path, args: &RunArgs) -> ExitCode {
    let pid = Arc::new(AtomicI32::new(0));
    let mut tty_guard = None;
    if !args.detach {
        // Before any thread exists, so every thread inherits the blocked mask.
        let winch = if args.tty {
            match strata_runner::tty::Pty::open() {
                Ok(p) => {
                    let p = Arc::new(p);
                    tty_guard = Some(Arc::clone(&p));
                    Some(p)
                }
                Err(e) => return usage_exit(&e.into()),
            }
        } else {
            None
        };
        let on_winch: Option<Box<dyn Fn() + Send>> = winch.map(|p| {
            Box::new(move || {
                let _ = p.copy_window_size();
            }) as Box<dyn Fn() + Send>
        });
        if let Err(e) = supervisor::forward_signals(Arc::clone(&pid), on_winch) {
            return usage_exit(&e.into());
        }
    }
    let exe = match exe() {
        Ok(e) => e,
        Err(e) => return usage_exit(&e),
    };
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => return usage_exit(&e),
    };
    let c = match create_pulling(root, opts) {
        Ok(c) => c,
        Err(e) => return usage_exit(&e),
    };
    if args.detach {
        return match supervisor::spawn_detached(root, &exe, &c.id) {
            Ok(warnings) => {
                for w in warnings {
                    eprintln!("{w}");
                }
                println!("{}", c.id);
                ExitCode::SUCCESS
            }
            Err(strata_runner::Error::StartFailed { code, message }) => {
                eprintln!("error: {message}");
                ExitCode::from(u8::try_from(code).unwrap_or(EXIT_RUN_FAILED))
            }
            Err(e) => usage_exit(&e.into()),
        };
    }
    let fg = match foreground(args.interactive, tty_guard.clone()) {
        Ok(f) => f,
        Err(e) => return usage_exit(&e),
    };
    let raw = match &tty_guard {
        Some(p) if args.interactive => p.raw_stdin().ok().flatten(),
        _ => None,
    };
    let warn: supervisor::Ready = Box::new(|r| {
        for w in r.unwrap_or_default() {
            eprintln!("{w}");
        }
    });
    let result = supervisor::supervise(root, &exe, &c.id, Some(fg), Some(warn), Some(pid));
    drop(raw);
    match result {
        Ok(exit) => {
            if let Some(e) = &exit.error {
                eprintln!("error: {e}");
            }
            ExitCode::from(u8::try_from(exit.code).unwrap_or(EXIT_RUN_FAILED))
        }
        Err(e) => usage_exit(&e.into()),
    }
}

/// The caller's stdio for the foreground container (`-t`: the pty's master side, wired by
/// the runner's tty module).
fn foreground(
    interactive: bool,
    pty: Option<Arc<strata_runner::tty::Pty>>,
) -> anyhow::Result<Foreground> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().context("dup");
    Ok(Foreground {
        pty,
        stdin: if interactive {
            Some(dup(std::io::stdin().as_fd())?)
        } else {
            None
        },
        stdout: dup(std::io::stdout().as_fd())?,
        stderr: dup(std::io::stderr().as_fd())?,
    })
}

/// `strata exec [-i] [-t] [-e K=V] [-u USER] [-w DIR] C CMD...`: exits with the command's
/// code (126/127 when it can't be run, 125 for strata's own errors).
pub fn exec(root: &Path, args: &ExecArgs) -> ExitCode {
    let pid = Arc::new(AtomicI32::new(0));
    let pty = if args.tty {
        match strata_runner::tty::Pty::open() {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => return usage_exit(&e.into()),
        }
    } else {
        None
    };
    let winch = pty.clone();
    let on_winch: Option<Box<dyn Fn() + Send>> = winch.map(|p| {
        Box::new(move || {
            let _ = p.copy_window_size();
        }) as Box<dyn Fn() + Send>
    });
    if let Err(e) = supervisor::forward_signals(Arc::clone(&pid), on_winch) {
        return usage_exit(&e.into());
    }
    let result = exe().and_then(|exe| {
        let fg = foreground(args.interactive, pty.clone())?;
        let io = strata_runner::exec::ExecIo {
            stdin: fg.stdin,
            stdout: fg.stdout,
            stderr: fg.stderr,
            pty: fg.pty,
        };
        let opts = strata_runner::exec::ExecOptions {
            cmd: args.command.clone(),
            env: args.env.clone(),
            user: args.user.clone(),
            workdir: args.workdir.clone(),
            tty: args.tty,
            interactive: args.interactive,
        };
        let _raw = match &pty {
            Some(p) if args.interactive => p.raw_stdin().ok().flatten(),
            _ => None,
        };
        Ok(strata_runner::exec::exec(
            root,
            &exe,
            &args.container,
            &opts,
            io,
            Some(Arc::clone(&pid)),
        )?)
    });
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_RUN_FAILED)),
        Err(e) => usage_exit(&e),
    }
}

/// `strata __supervise ID`.
pub fn supervise(root: &Path, id: &str, ready_fd: Option<i32>) -> ExitCode {
    let result = exe().and_then(|exe| {
        supervisor::supervise_main(root, &exe, id, ready_fd).map_err(anyhow::Error::from)
    });
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_RUN_FAILED)),
        Err(_) => ExitCode::from(EXIT_RUN_FAILED),
    }
}

/// Runs `f` on each container reference, printing what it returns; errors are printed and
/// make the exit status 1 at the end, as docker does.
fn each(
    refs: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<Option<String>>,
) -> Result<(), Failure> {
    let mut failed = false;
    for r in refs {
        match f(r) {
            Ok(Some(line)) => println!("{line}"),
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    }
    if failed {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

/// `strata start [-a] C...`.
///
/// # Errors
/// A container that could not be started.
pub fn start(root: &Path, args: &StartArgs) -> Result<ExitCode, Failure> {
    let exe = exe()?;
    if args.attach {
        let [one] = args.containers.as_slice() else {
            return Err(Failure::Usage(anyhow!(
                "you cannot start and attach multiple containers at once"
            )));
        };
        // Only this run's output: the log keeps what earlier runs wrote.
        let store = cstore(root)?;
        let before = lifecycle::refresh(&store, one)
            .ok()
            .and_then(|c| {
                let path = logs::log_path(&store.container_dir(&c.id), &c.id);
                std::fs::metadata(path).ok()
            })
            .map_or(0, |m| m.len());
        let c = lifecycle::start(root, &exe, one).map_err(anyhow::Error::from)?;
        return follow_to_end(root, &c, before);
    }
    each(&args.containers, |r| {
        lifecycle::start(root, &exe, r)?;
        Ok(Some(r.to_string()))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a container's output (after the log's first `skip_bytes`) until it exits; returns
/// its code.
fn follow_to_end(root: &Path, c: &Container, skip_bytes: u64) -> Result<ExitCode, Failure> {
    let store = cstore(root)?;
    let opts = ReadOptions {
        follow: true,
        skip_bytes,
        ..Default::default()
    };
    print_log(&store, c, opts)?;
    let code = match store.load(&c.id) {
        Ok(c) => c.state.exit_code,
        Err(_) => 0,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `strata attach C`: the container's output (and, for `-i` containers, our stdin as its
/// input) until it exits; exits with its code.
///
/// # Errors
/// An unknown or stopped container.
pub fn attach(root: &Path, args: &AttachArgs) -> Result<ExitCode, Failure> {
    let store = cstore(root)?;
    let c = lifecycle::refresh(&store, &args.container).map_err(anyhow::Error::from)?;
    if c.state.status != Status::Running {
        return Err(anyhow!("you cannot attach to a stopped container, start it first").into());
    }
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().context("dup");
    let stdin = if c.config.open_stdin {
        Some(dup(std::io::stdin().as_fd())?)
    } else {
        None
    };
    let raw = if c.config.tty && c.config.open_stdin {
        strata_runner::tty::RawMode::enable().ok().flatten()
    } else {
        None
    };
    strata_runner::attach::attach(
        &store.container_dir(&c.id),
        &c.name,
        stdin,
        dup(std::io::stdout().as_fd())?,
    )
    .map_err(anyhow::Error::from)?;
    drop(raw);
    let code = lifecycle::wait(&store, &c.id).unwrap_or(0);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `strata stop [-t S] C...`.
///
/// # Errors
/// Unknown containers.
pub fn stop(root: &Path, args: &StopArgs) -> Result<(), Failure> {
    let store = cstore(root)?;
    each(&args.containers, |r| {
        lifecycle::stop(&store, r, args.time)?;
        Ok(Some(r.to_string()))
    })
}

/// `strata restart [-t S] C...`.
///
/// # Errors
/// Unknown containers, a failed start.
pub fn restart(root: &Path, args: &StopArgs) -> Result<(), Failure> {
    let exe = exe()?;
    each(&args.containers, |r| {
        lifecycle::restart(root, &exe, r, args.time)?;
        Ok(Some(r.to_string()))
    })
}

/// `strata kill [-s SIG] C...`.
///
/// # Errors
/// A bad signal, unknown or stopped containers.
pub fn kill(root: &Path, args: &KillArgs) -> Result<(), Failure> {
    let sig = lifecycle::parse_signal(&args.signal).map_err(|e| Failure::Usage(e.into()))?;
    let store = cstore(root)?;
    each(&args.containers, |r| {
        lifecycle::kill(&store, r, sig)?;
        Ok(Some(r.to_string()))
    })
}

/// `strata wait C...`: prints each exit code.
///
/// # Errors
/// Unknown containers.
pub fn wait(root: &Path, args: &ContainersArgs) -> Result<(), Failure> {
    let store = cstore(root)?;
    each(&args.containers, |r| {
        Ok(Some(lifecycle::wait(&store, r)?.to_string()))
    })
}

/// `strata rm [-f] [-v] C...`.
///
/// # Errors
/// Unknown or running (without `-f`) containers.
pub fn rm(root: &Path, args: &RmArgs) -> Result<(), Failure> {
    let store = cstore(root)?;
    each(&args.containers, |r| {
        let c = lifecycle::remove(&store, r, args.force)?;
        if args.volumes {
            let volumes = strata_runner::volume::Volumes::new(root);
            let in_use = strata_runner::volume::in_use(&store)?;
            volumes.remove_anonymous(&c.config.mounts, &in_use)?;
        }
        Ok(Some(r.to_string()))
    })
}

/// `strata logs [-f] [--tail N] [-t] C`.
///
/// # Errors
/// An unknown container, a bad `--tail`.
pub fn logs(root: &Path, args: &LogsArgs) -> Result<(), Failure> {
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            Failure::Usage(anyhow!("invalid --tail value {n:?}: a number or \"all\""))
        })?),
    };
    let store = cstore(root)?;
    let c = lifecycle::refresh(&store, &args.container).map_err(anyhow::Error::from)?;
    let opts = ReadOptions {
        tail,
        timestamps: args.timestamps,
        follow: args.follow,
        skip_bytes: 0,
    };
    print_log(&store, &c, opts)
}

/// Writes a container's json-file log to stdout and stderr (following it while the container
/// runs, when `opts` say so).
fn print_log(store: &ContainerStore, c: &Container, opts: ReadOptions) -> Result<(), Failure> {
    let dir = store.container_dir(&c.id);
    let running =
        || lifecycle::refresh(store, &c.id).is_ok_and(|c| c.state.status == Status::Running);
    logs::read(
        &logs::log_path(&dir, &c.id),
        opts,
        &running,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .map_err(anyhow::Error::from)?;
    Ok(())
}

const PS_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

fn ps_header() -> Value {
    object([
        ("ID", "CONTAINER ID"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("CreatedAt", "CREATED AT"),
        ("RunningFor", "CREATED"),
        ("Status", "STATUS"),
        ("State", "STATE"),
        ("Ports", "PORTS"),
        ("Names", "NAMES"),
        ("Labels", "LABELS"),
        ("Mounts", "MOUNTS"),
        ("Networks", "NETWORKS"),
        ("Size", "SIZE"),
    ])
}

fn since(t: &str, now: Timestamp) -> String {
    match Timestamp::parse_rfc3339(t) {
        Some(t) => format::human_duration(now.secs.saturating_sub(t.secs)),
        None => "N/A".into(),
    }
}

/// docker's STATUS column.
fn status_text(c: &Container, now: Timestamp) -> String {
    match c.state.status {
        Status::Running => format!("Up {}", since(&c.state.started_at, now)),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            c.state.exit_code,
            since(&c.state.finished_at, now)
        ),
        Status::Created => "Created".into(),
        Status::Paused => format!("Up {} (Paused)", since(&c.state.started_at, now)),
        Status::Restarting => "Restarting".into(),
        Status::Dead => "Dead".into(),
    }
}

fn ports_text(c: &Container) -> String {
    if c.state.status != Status::Running {
        return String::new();
    }
    strata_runner::net::ps_ports(&c.config.port_bindings, &c.config.exposed_ports)
}

fn ps_row(c: &Container, no_trunc: bool, now: Timestamp) -> Value {
    let mut command = c.path.clone();
    // docker's daemon quotes arguments that contain a space.
    for a in &c.args {
        command.push(' ');
        if a.contains(' ') {
            command.push_str(&format!("'{a}'"));
        } else {
            command.push_str(a);
        }
    }
    let command = if no_trunc {
        command
    } else {
        format::ellipsis(&command, 20)
    };
    let labels: Vec<String> = c
        .config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    object([
        (
            "ID",
            Value::from(if no_trunc {
                c.id.clone()
            } else {
                c.short_id().to_string()
            }),
        ),
        ("Image", Value::from(c.image.clone())),
        ("Command", Value::from(format!("{command:?}"))),
        (
            "CreatedAt",
            Value::from(format::created_at(Some(&c.created))),
        ),
        (
            "RunningFor",
            Value::from(format::created_since(Some(&c.created), now)),
        ),
        ("Status", Value::from(status_text(c, now))),
        ("State", Value::from(c.state.status.as_str())),
        ("Ports", Value::from(ports_text(c))),
        ("Names", Value::from(c.name.clone())),
        ("Labels", Value::from(labels.join(","))),
        ("Mounts", Value::from("")),
        ("Networks", Value::from(c.config.network_mode.clone())),
        ("Size", Value::from("")),
    ])
}

fn ps_filter(c: &Container, filters: &[(String, String)]) -> anyhow::Result<bool> {
    for (k, v) in filters {
        let ok = match k.as_str() {
            "status" => c.state.status.as_str() == v,
            "name" => c.name.contains(v.as_str()),
            "id" => c.id.starts_with(v.as_str()),
            "label" => match v.split_once('=') {
                Some((lk, lv)) => c.config.labels.get(lk).is_some_and(|x| x == lv),
                None => c.config.labels.contains_key(v),
            },
            "ancestor" => c.image == *v || c.image_id.contains(v.as_str()),
            "exited" => c.state.status == Status::Exited && c.state.exit_code.to_string() == *v,
            other => return Err(anyhow!("invalid filter '{other}'")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `strata ps [-a] [-q] [-l] [--no-trunc] [-f K=V] [--format F]`.
///
/// # Errors
/// A bad filter or format, an unreadable store.
pub fn ps(root: &Path, args: &PsArgs) -> Result<(), Failure> {
    let spec = match (&args.format, args.quiet) {
        (Some(f), _) => Some(f.as_str()),
        (None, true) => Some("{{.ID}}"),
        (None, false) => None,
    };
    let fmt = Format::new(spec, PS_TABLE)
        .map_err(|e| Failure::Usage(anyhow!("template parsing error: {e}")))?;
    let store = cstore(root)?;
    let all = lifecycle::list(&store).map_err(anyhow::Error::from)?;
    let status_filter = args.filter.iter().any(|(k, _)| k == "status");
    let mut rows = Vec::new();
    for c in &all {
        if !(args.all || args.latest || status_filter) && c.state.status != Status::Running {
            continue;
        }
        if !ps_filter(c, &args.filter).map_err(Failure::Usage)? {
            continue;
        }
        rows.push(c);
        if args.latest {
            break;
        }
    }
    let now = Timestamp::now();
    let data: Vec<Value> = rows.iter().map(|c| ps_row(c, args.no_trunc, now)).collect();
    let out = fmt
        .render(&ps_header(), &data)
        .map_err(|e| Failure::Other(e.into()))?;
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(out.as_bytes());
    Ok(())
}

/// `strata inspect`: each name as a container first (docker's order), else as an image; one
/// JSON array (or one template line each) in the order given. Names that are neither are
/// reported and make the exit status 1.
///
/// # Errors
/// A name that is neither, a template failure.
pub fn inspect(root: &Path, args: &InspectArgs) -> Result<(), Failure> {
    let template = super::inspect_template(args.format.as_deref())?;
    let store = cstore(root)?;
    let mut images = None;
    let mut found = Vec::new();
    let mut failed = false;
    for r in &args.images {
        match lifecycle::refresh(&store, r) {
            Ok(c) => found.push(c.inspect_json(&store.container_dir(&c.id))),
            Err(strata_runner::Error::NoSuchContainer(_)) => {
                if images.is_none() {
                    images = Some(super::open_images(root)?);
                }
                let Some(service) = &images else { continue };
                match service.inspect(r) {
                    Ok(v) => found.push(v),
                    Err(e) => {
                        eprintln!("error: {:#}", anyhow::Error::from(e));
                        failed = true;
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {:#}", anyhow::Error::from(e));
                failed = true;
            }
        }
    }
    super::print_inspected(template.as_ref(), found, failed)
}

/// `rmi`'s guard: an image a container uses is refused unless `-f`.
///
/// # Errors
/// An image in use.
pub fn check_rmi(root: &Path, images: &[String], force: bool) -> Result<(), Failure> {
    if force {
        return Ok(());
    }
    let service = super::open_images(root)?;
    let store = cstore(root)?;
    let all = store.list().map_err(anyhow::Error::from)?;
    for spec in images {
        let Ok(resolved) = service.resolve(spec) else {
            continue;
        };
        let id = resolved.id.to_string();
        if let Some(c) = all.iter().find(|c| c.image_id == id) {
            return Err(anyhow!(
                "conflict: unable to remove repository reference \"{spec}\" (must force) - \
                 container {} is using its referenced image {}",
                c.short_id(),
                format::truncate_id(&id)
            )
            .into());
        }
    }
    Ok(())
}
