//! `strata debug parse`, `strata debug expand`, `strata debug sandbox` and the hidden
//! `strata debug net`.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use strata_executor::sandbox;
use strata_parser::shell::Lexer;
use strata_parser::{Dockerfile, RawDockerfile};

use crate::Failure;
use crate::cli::{ExpandArgs, NetArgs, ParseArgs, ParseFormat, SandboxArgs, SandboxNetwork};
use crate::diagnostic::{self, Severity};

/// Parses a Dockerfile and prints the BuildKit dump or the typed JSON.
///
/// # Errors
/// An unreadable file, or a parse error (already printed as a diagnostic).
pub fn parse(args: &ParseArgs) -> Result<(), Failure> {
    let (name, bytes) = read_input(&args.file)?;
    let src = String::from_utf8_lossy(&bytes);
    let parsed = match args.format {
        ParseFormat::Buildkit => strata_parser::parse_bytes(&bytes).map(Parsed::Raw),
        ParseFormat::Json => strata_parser::parse_bytes(&bytes)
            .and_then(Dockerfile::from_raw)
            .map(|df| Parsed::Typed(Box::new(df))),
    };
    let parsed = parsed.map_err(|err| {
        let message = err.message();
        eprint!(
            "{}",
            diagnostic::render(&name, &src, err.location(), Severity::Error, &message)
        );
        Failure::Reported
    })?;
    let (output, warnings) = match parsed {
        Parsed::Raw(raw) => (raw.dump(), raw.warnings),
        Parsed::Typed(df) => (
            serde_json::to_string_pretty(&df).context("cannot serialize the instructions")?,
            df.warnings,
        ),
    };
    for w in &warnings {
        let message = format!("{} ({})", w.message, w.rule);
        eprint!(
            "{}",
            diagnostic::render(&name, &src, w.loc, Severity::Warning, &message)
        );
    }
    println!("{output}");
    Ok(())
}

/// Expands one word with the given variables and prints it.
///
/// # Errors
/// Malformed input (`${}`, an unterminated quote or brace, `${V:?msg}` on an unset variable).
pub fn expand(args: &ExpandArgs) -> Result<(), Failure> {
    let env: Vec<(String, String)> = args.env.clone();
    let word = Lexer::new(args.escape)
        .process_word(&args.word, &env)
        .with_context(|| format!("cannot expand {:?}", args.word))?;
    println!("{word}");
    Ok(())
}

/// What `debug parse` produced, before printing.
enum Parsed {
    Raw(RawDockerfile),
    Typed(Box<Dockerfile>),
}

/// Reads FILE, or stdin for `-`; returns the name to show in diagnostics and the bytes.
fn read_input(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the Dockerfile from stdin")?;
        return Ok(("<stdin>".to_string(), bytes));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((path.display().to_string(), bytes))
}

/// Runs a command in the RUN sandbox (default spec, overlay with the stub lower at the bottom,
/// `/etc` files, plus docker's capability, resource, read-only and tty flags) with the caller's
/// stdio; exits with the command's code (128 + signal), or 125 when the sandbox could not be
/// set up. With `--exec-sh`, the container is created and started, the script runs inside it
/// through `sandbox::exec`, and the exit code is the script's.
pub fn sandbox(root: &Path, args: &SandboxArgs) -> ExitCode {
    match run_sandbox(root, args) {
        Ok(status) => ExitCode::from(u8::try_from(status.code()).unwrap_or(u8::MAX)),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(125)
        }
    }
}

/// Docker's `RAMInBytes` subset: a number with an optional `b`, `k`, `m`, `g` suffix (binary).
fn parse_memory(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("invalid memory size {s:?}"))?;
    n.checked_mul(mult)
        .with_context(|| format!("memory size {s:?} is too large"))
}

fn run_sandbox(root: &Path, args: &SandboxArgs) -> anyhow::Result<sandbox::ExitStatus> {
    let base = root.join("sandbox");
    let bundle = base.join(format!("bundle-{}", std::process::id()));
    let result = build_and_run(&base, &bundle, args);
    let _ = std::fs::remove_dir_all(&bundle);
    result
}

fn build_and_run(
    base: &Path,
    bundle: &Path,
    args: &SandboxArgs,
) -> anyhow::Result<sandbox::ExitStatus> {
    use std::os::fd::AsFd as _;

    let stub = sandbox::stub_lower(base)?;
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).with_context(|| format!("cannot create {rootfs:?}"))?;
    let absolute = |p: &Path| {
        std::fs::canonicalize(p).with_context(|| format!("cannot resolve {}", p.display()))
    };
    let mut lower = args
        .lower
        .iter()
        .map(|p| absolute(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    lower.push(stub);
    let mut env = args.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={}", sandbox::DEFAULT_PATH));
    }
    let network = match args.network {
        SandboxNetwork::None => sandbox::Network::None,
        SandboxNetwork::Host => sandbox::Network::Host,
    };
    let (uid, gid) = args.user;
    let mut spec = sandbox::default_spec(
        &rootfs,
        args.command.clone(),
        env.clone(),
        &args.cwd,
        uid,
        gid,
        Vec::new(),
        "buildkitsandbox",
        network,
    )?;
    sandbox::set_overlay(
        &mut spec,
        &sandbox::Overlay {
            lower,
            upper: absolute(&args.upper)?,
            work: absolute(&args.work)?,
            chdir: None,
        },
    );
    sandbox::add_etc_files(&mut spec, &bundle.join("etc"))?;
    for b in &args.bind {
        let (src, rest) = b
            .split_once(':')
            .with_context(|| format!("bad --bind {b:?}: expected SRC:DST[:ro]"))?;
        let (dst, ro) = match rest.strip_suffix(":ro") {
            Some(d) => (d, true),
            None => (rest, false),
        };
        sandbox::add_bind(&mut spec, &absolute(Path::new(src))?, dst, ro);
    }
    for t in &args.tmpfs {
        sandbox::add_tmpfs(&mut spec, t, None);
    }
    if args.privileged {
        sandbox::make_privileged(&mut spec);
    }
    sandbox::adjust_capabilities(&mut spec, &args.cap_add, &args.cap_drop)?;
    let memory = args.memory.as_deref().map(parse_memory).transpose()?;
    let nano_cpus = args.cpus.map(|c| (c * 1e9).round() as i64);
    sandbox::set_resources(
        &mut spec,
        &sandbox::Resources {
            memory,
            nano_cpus,
            pids_limit: args.pids_limit,
        },
    )?;
    if args.read_only
        && let Some(r) = spec.root_mut()
    {
        r.set_readonly(Some(true));
    }
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(args.tty));
    }

    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned();
    let mut pty_master = None;
    let stdio = if args.tty {
        let pty = nix::pty::openpty(None, None).context("openpty")?;
        let slave = pty.slave;
        pty_master = Some(pty.master);
        sandbox::Stdio {
            stdin: Some(dup(slave.as_fd())?),
            stdout: dup(slave.as_fd())?,
            stderr: slave,
        }
    } else {
        sandbox::Stdio {
            stdin: Some(dup(std::io::stdin().as_fd())?),
            stdout: dup(std::io::stdout().as_fd())?,
            stderr: dup(std::io::stderr().as_fd())?,
        }
    };
    let exe = std::env::current_exe().context("cannot find the strata binary")?;
    let created = sandbox::create(&exe, bundle, &spec, stdio)?;
    // The container holds the only slave copies now: EIO on the master means it exited.
    let copier = pty_master.map(|m| {
        std::thread::spawn(move || {
            let mut master = std::fs::File::from(m);
            let _ = std::io::copy(&mut master, &mut std::io::stdout());
        })
    });
    let running = created.start()?;
    if let Some(script) = &args.exec_sh {
        let mut process = spec.process().clone().context("the spec has no process")?;
        process.set_args(Some(vec!["sh".into(), "-c".into(), script.clone()]));
        process.set_terminal(Some(false));
        let stdio = sandbox::Stdio {
            stdin: None,
            stdout: dup(std::io::stdout().as_fd())?,
            stderr: dup(std::io::stderr().as_fd())?,
        };
        let exec = sandbox::exec(&exe, running.pid(), &spec, &process, stdio);
        let status = exec.and_then(|e| e.wait());
        let _ = running.signal(nix::sys::signal::Signal::SIGKILL as i32);
        let _ = running.wait();
        return Ok(status?);
    }
    let outcome = running.wait_outcome()?;
    if let Some(c) = copier {
        let _ = c.join();
    }
    if let Some(e) = &outcome.cleanup_error {
        eprintln!("strata: {e}");
    }
    if outcome.oom_killed {
        eprintln!("strata: the container was OOM-killed");
    }
    Ok(outcome.status)
}

/// Sets up a container network for the namespace of `--pid` (what the supervisor does between
/// the sandbox's create and start), prints the warnings on stderr, then on stdout docker's
/// `port` lines, `slirp4netns PID` when one runs, and `ready`; keeps it up until stdin
/// closes. Bad flags and setup failures are usage errors (125), as `run`'s are.
///
/// # Errors
/// A bad `--network` or `-p`, a host port in use, a namespace that cannot be joined.
pub fn net(args: &NetArgs) -> Result<(), Failure> {
    use std::io::Write as _;
    use strata_runner::net::{self, NetHandle};

    let usage = |e: strata_runner::Error| Failure::Usage(e.into());
    let mode = args.network.parse::<net::NetworkMode>().map_err(usage)?;
    let mut ports = Vec::new();
    for p in &args.publish {
        ports.extend(net::parse_publish(p).map_err(usage)?);
    }
    if args.publish_all {
        ports.extend(net::publish_all(&args.expose).map_err(usage)?);
    }
    let handle = NetHandle::setup(mode, &ports, args.pid).map_err(usage)?;
    for w in handle.warnings() {
        eprintln!("WARNING: {w}");
    }
    let mut out = String::new();
    for line in net::format_ports(handle.ports(), None).map_err(usage)? {
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(pid) = handle.slirp_pid() {
        out.push_str(&format!("slirp4netns {pid}\n"));
    }
    out.push_str("ready\n");
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    drop(stdout);
    // Until stdin closes (or fails).
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    drop(handle);
    Ok(())
}
