//! `strata pull`, `push`, `login`, `logout` and `search`, and the puller `build` uses for
//! missing FROM images. The work happens in `strata_oci::registry`; this module turns its
//! progress events into docker's output: a bar per layer on a terminal, plain lines
//! (`abc123def456: Pull complete`) otherwise, nothing with `-q`.
//!
//! Credentials: `login` stores them in strata's own file (`~/.config/strata/auth.json`, or
//! `$STRATA_AUTH_FILE`; mode 0600), and every command also reads docker's
//! `~/.docker/config.json` (`auths`, `credHelpers`, `credsStore`). Registries listed with
//! `--insecure-registry` or in `registries.json` next to the auth file
//! (`{"insecure-registries": ["host:port"]}`) may use plain http, as localhost always may.
//!
//! A registry that sends nothing for `$STRATA_REGISTRY_READ_TIMEOUT` seconds (default 60) while
//! strata waits for a response or the rest of a body is a transient failure: retried, and a
//! download resumes where the registry allows.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, anyhow};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_cas::{Digest, Reference};
use strata_executor::build::ImagePuller;
use strata_oci::registry::credentials::{self, normalize_key};
use strata_oci::registry::search::search as run_search;
use strata_oci::registry::{
    AuthFiles, ClientConfig, Credential, Event, Platform, PullOptions, PushOptions, Registries,
    Status,
};

use super::open_images;
use crate::Failure;
use crate::cli::{LoginArgs, LogoutArgs, PullArgs, PushArgs, SearchArgs};

/// Docker Hub, the default of `login`/`logout`.
const DEFAULT_SERVER: &str = "docker.io";

/// The registry clients: credentials from the environment's files, insecure registries from
/// the flags and `registries.json`.
fn registries(insecure: &[String], cert_dir: Option<&Path>) -> anyhow::Result<Registries> {
    let auth = AuthFiles::from_env();
    let mut config = ClientConfig::default();
    if let Some(dir) = auth.strata.parent() {
        let file = dir.join("registries.json");
        config.insecure = credentials::insecure_from_file(&file)?;
    }
    config.insecure.extend(insecure.iter().cloned());
    config.cert_dir = cert_dir.map(Path::to_path_buf);
    if let Some(v) = std::env::var_os("STRATA_REGISTRY_READ_TIMEOUT") {
        config.read_timeout = v
            .to_str()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| {
                anyhow!("STRATA_REGISTRY_READ_TIMEOUT={v:?}: expected a positive number of seconds")
            })?;
    }
    Ok(Registries::new(config, auth))
}

fn parse_ref(s: &str) -> Result<Reference, Failure> {
    s.parse::<Reference>()
        .map_err(|e| Failure::Usage(anyhow!("{e}")))
}

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quiet,
    Plain,
    Tty,
}

/// Renders pull/push events.
struct Render {
    mode: Mode,
    push: bool,
    to_stderr: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    /// The last status printed per blob (plain mode prints changes only).
    last: Mutex<HashMap<Digest, String>>,
}

impl Render {
    fn new(quiet: bool, push: bool, to_stderr: bool) -> Render {
        let tty = if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let mode = match (quiet, tty) {
            (true, _) => Mode::Quiet,
            (false, true) => Mode::Tty,
            (false, false) => Mode::Plain,
        };
        let target = if to_stderr {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::stdout()
        };
        Render {
            mode,
            push,
            to_stderr,
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            last: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, s: &str) {
        if self.mode == Mode::Quiet {
            return;
        }
        if self.mode == Mode::Tty {
            let _ = self.multi.println(s);
        } else if self.to_stderr {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    }

    fn text(&self, s: &Status) -> String {
        match (s, self.push) {
            (Status::Waiting, false) => "Pulling fs layer".into(),
            (Status::Waiting, true) => "Preparing".into(),
            (Status::Exists, false) => "Already exists".into(),
            (Status::Exists, true) => "Layer already exists".into(),
            (Status::Progress { .. }, false) => "Downloading".into(),
            (Status::Progress { .. }, true) => "Pushing".into(),
            (Status::Extracting, _) => "Download complete".into(),
            (Status::Done, false) => "Pull complete".into(),
            (Status::Done, true) => "Pushed".into(),
            (Status::Mounted(from), _) => format!("Mounted from {from}"),
            (Status::Retrying(m), _) => format!("Retrying ({m})"),
        }
    }

    fn event(&self, e: Event) {
        let short: String = e.blob.hex().chars().take(12).collect();
        let text = self.text(&e.status);
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => {
                let Ok(mut last) = self.last.lock() else {
                    return;
                };
                if last.get(&e.blob) == Some(&text) {
                    return;
                }
                last.insert(e.blob, text.clone());
                drop(last);
                self.line(&format!("{short}: {text}"));
            }
            Mode::Tty => {
                let Ok(mut bars) = self.bars.lock() else {
                    return;
                };
                let bar = bars.entry(e.blob).or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new(0));
                    let style = ProgressStyle::with_template(
                        "{prefix}: {msg:<18} {bar:30} {bytes}/{total_bytes}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
                    b.set_style(style);
                    b.set_prefix(short.clone());
                    b
                });
                if let Status::Progress { done, total } = e.status {
                    bar.set_length(total);
                    bar.set_position(done);
                }
                bar.set_message(text);
                if matches!(e.status, Status::Done | Status::Exists | Status::Mounted(_)) {
                    bar.finish();
                }
            }
        }
    }
}

/// The familiar form docker prints in `Status:` lines (`busybox:latest`).
fn shown(r: &Reference) -> String {
    r.familiar()
}

/// Pulls one reference with a renderer; returns (digest, status line).
fn pull_one(
    root: &Path,
    regs: &Registries,
    reference: &Reference,
    opts: &PullOptions,
    render: &Render,
) -> anyhow::Result<strata_oci::registry::Pulled> {
    let images = open_images(root)?;
    let label = reference
        .tag()
        .map(String::from)
        .or_else(|| reference.digest().map(|d| d.to_string()))
        .unwrap_or_default();
    render.line(&format!("{label}: Pulling from {}", reference.path()));
    let pulled = strata_oci::registry::pull(&images, regs, reference, opts, &|e| render.event(e))
        .with_context(|| format!("cannot pull {}", shown(reference)))?;
    render.line(&format!("Digest: {}", pulled.digest));
    let status = if pulled.updated {
        "Downloaded newer image for"
    } else {
        "Image is up to date for"
    };
    render.line(&format!("Status: {status} {}", shown(reference)));
    Ok(pulled)
}

/// `strata pull [--platform P] [-q] NAME[:TAG|@DIGEST]`.
///
/// # Errors
/// A malformed reference or platform (usage), registry or store failures.
pub fn pull(root: &Path, args: &PullArgs) -> Result<(), Failure> {
    let reference = parse_ref(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| Failure::Usage(anyhow!("{e}")))?,
        None => Platform::host(),
    };
    let regs = registries(
        &args.registry.insecure_registries,
        args.registry.cert_dir.as_deref(),
    )?;
    let render = Render::new(args.quiet, false, false);
    let last = args.reference.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        render.line("Using default tag: latest");
    }
    let opts = PullOptions {
        platform,
        jobs: args.jobs.max(1),
    };
    pull_one(root, &regs, &reference, &opts, &render)?;
    println!("{reference}");
    Ok(())
}

/// `strata push [-q] NAME[:TAG]`.
///
/// # Errors
/// A malformed reference (usage), a missing image, registry or store failures.
pub fn push(root: &Path, args: &PushArgs) -> Result<(), Failure> {
    let reference = parse_ref(&args.reference)?;
    if reference.digest().is_some() {
        return Err(Failure::Usage(anyhow!(
            "cannot push a digest reference: {}",
            args.reference
        )));
    }
    let regs = registries(
        &args.registry.insecure_registries,
        args.registry.cert_dir.as_deref(),
    )?;
    let images = open_images(root)?;
    let render = Render::new(args.quiet, true, false);
    render.line(&format!(
        "The push refers to repository [{}]",
        reference.name()
    ));
    let opts = PushOptions {
        chunk_size: args.chunk_size,
        jobs: args.jobs.max(1),
    };
    let pushed =
        strata_oci::registry::push(&images, &regs, &reference, &opts, &|e| render.event(e))
            .with_context(|| format!("cannot push {}", shown(&reference)))?;
    if args.quiet {
        println!("{}", pushed.digest);
    } else {
        render.line(&format!(
            "{}: digest: {} size: {}",
            reference.tag().unwrap_or("latest"),
            pushed.digest,
            pushed.size
        ));
    }
    Ok(())
}

/// The registry domain a `login`/`logout` argument names.
fn server_domain(server: Option<&str>) -> String {
    match server {
        None => DEFAULT_SERVER.to_string(),
        Some(s) => {
            let k = normalize_key(s);
            if k.is_empty() {
                DEFAULT_SERVER.to_string()
            } else {
                k
            }
        }
    }
}

/// Reads a line from stdin after a prompt on stderr, without echo when `secret` and stdin is
/// a terminal.
fn prompt(text: &str, secret: bool) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = if secret && stdin.is_terminal() {
        tcgetattr(&stdin).ok()
    } else {
        None
    };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        // Turns echo off while the password is typed (termios(3)):
        // https://man7.org/linux/man-pages/man3/termios.3.html
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let res = stdin.read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
        eprintln!();
    }
    res.context("cannot read from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `strata login [-u USER] [-p PASSWORD | --password-stdin] [SERVER]`.
///
/// # Errors
/// Conflicting flags (usage), refused credentials, unwritable credential file.
pub fn login(args: &LoginArgs) -> Result<(), Failure> {
    if args.password.is_some() && args.password_stdin {
        return Err(Failure::Usage(anyhow!(
            "--password and --password-stdin are mutually exclusive"
        )));
    }
    if args.password_stdin && args.username.is_none() {
        return Err(Failure::Usage(anyhow!(
            "must provide --username with --password-stdin"
        )));
    }
    let domain = server_domain(args.server.as_deref());
    let regs = registries(
        &args.registry.insecure_registries,
        args.registry.cert_dir.as_deref(),
    )?;
    let username = match &args.username {
        Some(u) => u.clone(),
        None => prompt("Username: ", false)?,
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from stdin")?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else if let Some(p) = &args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else {
        prompt("Password: ", true)?
    };
    if username.is_empty() || password.is_empty() {
        return Err(Failure::Usage(anyhow!(
            "user name and password are required"
        )));
    }
    let cred = Credential {
        username,
        secret: password,
    };
    let client = regs
        .client_with(&domain, cred.clone())
        .map_err(anyhow::Error::from)?;
    client
        .ping()
        .with_context(|| format!("login to {domain} failed"))?;
    regs.auth()
        .store(&domain, &cred)
        .context("cannot store the credentials")?;
    eprintln!(
        "Credentials saved in {} (mode 0600).",
        regs.auth().strata.display()
    );
    println!("Login Succeeded");
    Ok(())
}

/// `strata logout [SERVER]`.
///
/// # Errors
/// An unreadable or unwritable credential file.
pub fn logout(args: &LogoutArgs) -> Result<(), Failure> {
    let domain = server_domain(args.server.as_deref());
    let auth = AuthFiles::from_env();
    if auth
        .remove(&domain)
        .context("cannot update the credentials")?
    {
        println!("Removing login credentials for {domain}");
    } else {
        eprintln!("Not logged in to {domain}");
    }
    Ok(())
}

/// `strata search [--limit N] TERM`.
///
/// # Errors
/// Registry failures (a registry without a catalog).
pub fn search(args: &SearchArgs) -> Result<(), Failure> {
    let regs = registries(
        &args.registry.insecure_registries,
        args.registry.cert_dir.as_deref(),
    )?;
    let results = run_search(&regs, &args.term, args.limit)
        .with_context(|| format!("cannot search for {:?}", args.term))?;
    let name_w = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    println!(
        "{:<name_w$}   {:<45}   {:<5}   OFFICIAL",
        "NAME", "DESCRIPTION", "STARS"
    );
    for r in &results {
        let mut desc = r.description.replace('\n', " ");
        if !args.no_trunc && desc.chars().count() > 45 {
            desc = desc.chars().take(44).collect::<String>() + "…";
        }
        println!(
            "{:<name_w$}   {:<45}   {:<5}   {}",
            r.name,
            desc,
            r.stars,
            if r.official { "[OK]" } else { "" }
        );
    }
    Ok(())
}

/// The puller `build` uses: pulls missing FROM / `--from` images (once per name per build),
/// printing plain progress lines on stderr.
#[derive(Debug)]
pub struct BuildPuller {
    root: PathBuf,
    insecure: Vec<String>,
    platform: Platform,
    done: Mutex<HashSet<String>>,
}

impl BuildPuller {
    /// A puller for builds on the store under `root` for `platform` (`os/arch[/variant]`).
    ///
    /// # Errors
    /// An invalid platform.
    pub fn new(root: &Path, insecure: &[String], platform: &str) -> anyhow::Result<BuildPuller> {
        Ok(BuildPuller {
            root: root.to_path_buf(),
            insecure: insecure.to_vec(),
            platform: platform.parse()?,
            done: Mutex::new(HashSet::new()),
        })
    }
}

impl ImagePuller for BuildPuller {
    fn pull(&self, name: &str) -> Result<(), String> {
        // One pull at a time, each name once: stages that share a base wait for the first.
        let mut done = self
            .done
            .lock()
            .map_err(|_| "puller lock poisoned".to_string())?;
        let reference: Reference = name.parse().map_err(|e| format!("{e}"))?;
        if done.contains(reference.as_str()) {
            return Ok(());
        }
        let regs = registries(&self.insecure, None).map_err(|e| format!("{e:#}"))?;
        let mut render = Render::new(false, false, true);
        // Lines, not bars: the build's own progress view owns the terminal.
        render.mode = Mode::Plain;
        let opts = PullOptions {
            platform: self.platform.clone(),
            jobs: 4,
        };
        pull_one(&self.root, &regs, &reference, &opts, &render).map_err(|e| format!("{e:#}"))?;
        done.insert(reference.as_str().to_string());
        Ok(())
    }
}
