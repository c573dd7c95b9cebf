//! `strata build` and `strata builder prune`: turn the command line into a
//! [`BuildRequest`], run it with a progress renderer, and write the outputs.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use strata_cas::Reference;
use strata_executor::build::{BuildRequest, NetworkMode, build};
use strata_executor::cache::{BuildCache, PruneOptions};
use strata_executor::ssh::{SshAgents, SshSource};
use strata_executor::{Error as ExecError, export};
use strata_oci::service::ArchiveFormat;
use strata_planner::BuildOptions;
use strata_planner::dockerignore::DockerIgnore;

use super::open_images;
use crate::Failure;
use crate::cli::{BuildArgs, BuilderPruneArgs, NetworkArg};
use crate::diagnostic::{Severity, render};
use crate::format::human_size;
use crate::progress::{Mode, Progress};

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Image,
    Oci(String),
    Docker(String),
    Tar(String),
    Local(String),
}

fn usage(e: anyhow::Error) -> Failure {
    Failure::Usage(e)
}

/// Parses `type=T,dest=D` (or a bare path, which docker reads as `type=local,dest=PATH`).
fn parse_output(spec: &str) -> anyhow::Result<Output> {
    if !spec.contains('=') {
        return Ok(Output::Local(spec.to_string()));
    }
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid --output {spec:?}: expected key=value pairs"))?;
        match k {
            "type" => kind = Some(v.to_string()),
            "dest" => dest = Some(v.to_string()),
            "name" | "push" | "compression" | "oci-mediatypes" => {}
            other => bail!("invalid --output {spec:?}: unknown key {other:?}"),
        }
    }
    let need = |d: Option<String>, t: &str| {
        d.ok_or_else(|| anyhow!("--output type={t} needs dest=PATH (or dest=- for stdout)"))
    };
    Ok(match kind.as_deref() {
        Some("image") | None if dest.is_none() => Output::Image,
        Some("oci") => Output::Oci(need(dest, "oci")?),
        Some("docker") => Output::Docker(need(dest, "docker")?),
        Some("tar") => Output::Tar(need(dest, "tar")?),
        Some("local") => Output::Local(need(dest, "local")?),
        Some(other) => {
            bail!("invalid --output type {other:?}: use image, oci, docker, tar or local")
        }
        None => bail!("invalid --output {spec:?}: missing type="),
    })
}

/// `id=ID,src=PATH` / `id=ID,env=VAR` (`type=file|env` accepted).
fn parse_secret(spec: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid --secret {spec:?}: expected key=value pairs"))?;
        match k {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" if v == "file" || v == "env" => {}
            other => bail!("invalid --secret {spec:?}: unknown key {other:?}"),
        }
    }
    let id = id
        .or_else(|| env.clone())
        .ok_or_else(|| anyhow!("invalid --secret {spec:?}: id= is required"))?;
    let value = match (src, env) {
        (Some(path), _) => {
            fs::read(&path).with_context(|| format!("secret {id}: cannot read {path}"))?
        }
        (None, Some(var)) => std::env::var_os(&var)
            .ok_or_else(|| anyhow!("secret {id}: environment variable {var} is not set"))?
            .into_encoded_bytes(),
        (None, None) => std::env::var_os(&id)
            .ok_or_else(|| anyhow!("secret {id}: give src=PATH or env=VAR"))?
            .into_encoded_bytes(),
    };
    Ok((id, value))
}

/// `ID`, `ID=SOCKET` or `ID=KEY[,KEY...]`, as docker build's `--ssh`: without paths, the agent
/// at `$SSH_AUTH_SOCK`.
fn parse_ssh(spec: &str) -> anyhow::Result<(String, SshSource)> {
    let (id, paths) = spec.split_once('=').unwrap_or((spec, ""));
    if id.is_empty() || id.contains(',') {
        bail!("invalid --ssh {spec:?}: expected ID, ID=SOCKET or ID=KEY[,KEY...]");
    }
    let mut paths: Vec<PathBuf> = paths
        .split(',')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    if paths.is_empty() {
        let sock = std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                anyhow!("--ssh {id}: no socket or key given and SSH_AUTH_SOCK is not set")
            })?;
        paths.push(PathBuf::from(sock));
    }
    let source = SshSource::from_paths(id, paths)?;
    Ok((id.to_string(), source))
}

/// Unpacks a context tar from stdin into `dir` (entries may not leave it).
fn unpack_context(input: impl Read, dir: &Path) -> anyhow::Result<()> {
    let (_, decoded) = strata_oci::compression::decompress(input, u64::MAX)
        .context("cannot read the context tar from stdin")?;
    let mut ar = tar::Archive::new(decoded);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    for entry in ar.entries().context("cannot read the context tar")? {
        let mut entry = entry.context("corrupt context tar")?;
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if !entry
            .unpack_in(dir)
            .with_context(|| format!("context tar entry {name}"))?
        {
            bail!("context tar entry {name} points outside the context");
        }
    }
    Ok(())
}

/// `strata build`.
///
/// # Errors
/// Usage errors (125), a failed build (1, already reported with its step and output).
pub fn run(root: &Path, args: &BuildArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let mode = Mode::choose(args.progress, args.quiet);
    let outputs = args
        .outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(usage)?;
    let tags = args
        .tags
        .iter()
        .map(|t| {
            t.parse::<Reference>()
                .map_err(|e| anyhow!("invalid tag {t:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(usage)?;
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let mut allow_insecure = false;
    let mut allow_network_host = false;
    for a in &args.allow {
        match a.as_str() {
            "security.insecure" => allow_insecure = true,
            "network.host" => allow_network_host = true,
            other => {
                return Err(usage(anyhow!(
                    "invalid --allow {other:?}: use security.insecure or network.host"
                )));
            }
        }
    }
    let platform: strata_planner::args::Platform = match &args.platform {
        Some(p) => p.parse().map_err(|e| usage(anyhow!("{e}")))?,
        None => Default::default(),
    };
    let platform_text = platform.to_string();
    if args.context == "-" && args.file.as_deref() == Some("-") {
        return Err(usage(anyhow!(
            "the context and the Dockerfile cannot both come from stdin"
        )));
    }
    let mut secrets = BTreeMap::new();
    for s in &args.secrets {
        let (id, v) = parse_secret(s).map_err(usage)?;
        secrets.insert(id, v);
    }
    let mut ssh = BTreeMap::new();
    for s in &args.ssh {
        let (id, source) = parse_ssh(s).map_err(usage)?;
        ssh.insert(id, source);
    }
    // Lives until the build ends: the agents started for key files stop when it drops.
    let ssh = SshAgents::start(ssh).map_err(|e| Failure::Other(anyhow!(e)))?;

    // The context: a directory, or a tar on stdin unpacked into a temp dir.
    let _tmp_context;
    let context: PathBuf = if args.context == "-" {
        let dir = tempfile::Builder::new()
            .prefix("strata-context-")
            .tempdir()
            .context("cannot create a temp dir for the context")?;
        unpack_context(std::io::stdin().lock(), dir.path())?;
        let p = dir.path().to_path_buf();
        _tmp_context = Some(dir);
        p
    } else {
        _tmp_context = None;
        let p = PathBuf::from(&args.context);
        if !p.is_dir() {
            return Err(usage(anyhow!(
                "unable to prepare context: path {:?} not found or not a directory",
                args.context
            )));
        }
        p
    };
    let (dockerfile_path, dockerfile_name, text) = match args.file.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the Dockerfile from stdin")?;
            (context.join("Dockerfile"), "-".to_string(), s)
        }
        Some(f) => {
            let p = PathBuf::from(f);
            let text = fs::read_to_string(&p)
                .map_err(|e| usage(anyhow!("cannot read the Dockerfile {}: {e}", p.display())))?;
            (p, f.to_string(), text)
        }
        None => {
            let p = context.join("Dockerfile");
            let text = fs::read_to_string(&p)
                .map_err(|e| usage(anyhow!("cannot read the Dockerfile {}: {e}", p.display())))?;
            (p, "Dockerfile".to_string(), text)
        }
    };
    let dockerfile = match strata_parser::parse_dockerfile(&text) {
        Ok(df) => df,
        Err(e) => {
            report(&dockerfile_name, &text, &e);
            return Err(Failure::Reported);
        }
    };
    let ignore = DockerIgnore::load(&context, &dockerfile_path)
        .map_err(|e| Failure::Other(anyhow!("{e}")))?;
    let req = BuildRequest {
        dockerfile,
        dockerfile_name: dockerfile_name.clone(),
        context: Some(context),
        keep_context_index: args.context != "-",
        ignore,
        options: BuildOptions {
            build_args,
            target: args.target.clone(),
            platform,
        },
        tags: if outputs.is_empty() || outputs.contains(&Output::Image) {
            tags
        } else {
            Vec::new()
        },
        labels,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        network: match args.network {
            NetworkArg::Default => NetworkMode::Default,
            NetworkArg::None => NetworkMode::None,
            NetworkArg::Host => NetworkMode::Host,
        },
        allow_insecure,
        allow_network_host,
        secrets,
        ssh: ssh.sockets(),
        helper_exe: std::env::current_exe().context("cannot find the strata binary")?,
        jobs: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2),
        puller: Some(std::sync::Arc::new(super::registry::BuildPuller::new(
            root,
            &args.insecure_registries,
            &platform_text,
        )?)),
        pull_always: args.pull,
    };
    let images = open_images(root)?;
    let progress = Progress::new(mode);
    let result = build(&images, &req, progress.sink());
    progress.finish(result.is_ok(), started.elapsed());
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            report_build_error(&dockerfile_name, &text, &e);
            return Err(Failure::Reported);
        }
    };
    let id = outcome.image.id.to_string();
    if let Some(path) = &args.iidfile {
        fs::write(path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    }
    for o in &outputs {
        write_output(&images, &outcome, o)?;
    }
    if mode == Mode::Quiet {
        println!("{id}");
    } else {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "writing image {id}");
        for t in &outcome.image.references {
            let _ = writeln!(err, "naming to {t}");
        }
    }
    Ok(())
}

fn write_output(
    images: &strata_oci::Images,
    outcome: &strata_executor::build::BuildOutcome,
    o: &Output,
) -> anyhow::Result<()> {
    let id = outcome.image.id.to_string();
    let to = |dest: &str| -> anyhow::Result<Box<dyn Write>> {
        Ok(if dest == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(std::io::BufWriter::new(
                fs::File::create(dest).with_context(|| format!("cannot create {dest}"))?,
            ))
        })
    };
    match o {
        Output::Image => Ok(()),
        Output::Oci(dest) | Output::Docker(dest) => {
            let format = if matches!(o, Output::Oci(_)) {
                ArchiveFormat::Oci
            } else {
                ArchiveFormat::Docker
            };
            let mut w = to(dest)?;
            images
                .save(std::slice::from_ref(&id), format, &mut w)
                .with_context(|| format!("cannot write the image to {dest}"))?;
            w.flush().context("cannot write the output")?;
            Ok(())
        }
        Output::Tar(dest) => {
            let mut w = to(dest)?;
            export::rootfs_tar(images.store(), &outcome.layers, &mut w)
                .with_context(|| format!("cannot write the root filesystem to {dest}"))?;
            w.flush().context("cannot write the output")?;
            Ok(())
        }
        Output::Local(dest) => export::rootfs_dir(images.store(), &outcome.layers, Path::new(dest))
            .with_context(|| format!("cannot write the root filesystem to {dest}")),
    }
}

fn report(file: &str, src: &str, e: &strata_parser::Error) {
    let (loc, msg) = match e {
        strata_parser::Error::Syntax { loc, message }
        | strata_parser::Error::Instruction { loc, message } => (*loc, message.clone()),
        strata_parser::Error::Expand { loc, source } => (*loc, source.to_string()),
    };
    eprint!("{}", render(file, src, loc, Severity::Error, &msg));
}

fn report_build_error(file: &str, src: &str, e: &ExecError) {
    match e {
        ExecError::Step {
            loc,
            message,
            output,
        } => {
            if !output.is_empty() {
                eprintln!("------");
                for l in output {
                    eprintln!(" > {l}");
                }
                eprintln!("------");
            }
            eprint!("{}", render(file, src, *loc, Severity::Error, message));
        }
        ExecError::Dockerfile(pe) | ExecError::Planner(strata_planner::Error::Dockerfile(pe)) => {
            report(file, src, pe)
        }
        ExecError::Planner(strata_planner::Error::At { loc, message }) => {
            eprint!("{}", render(file, src, *loc, Severity::Error, message));
        }
        other => eprintln!("error: {other}"),
    }
}

/// Parses a size like `512MB`, `2GB`, `100k` (decimal units, as docker's `--keep-storage`).
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size {s:?}"))?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        _ => bail!("invalid size {s:?}"),
    };
    Ok((n * mult) as u64)
}

/// Parses a Go duration as `--filter until=` takes it (`24h`, `30m`, `1h30m`, `90s`).
fn parse_until(s: &str) -> anyhow::Result<std::time::Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| anyhow!("invalid duration {s:?}"))?;
        num.clear();
        total += n * match c {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            'd' => 86400.0,
            _ => bail!("invalid duration {s:?}"),
        };
    }
    if !num.is_empty() {
        bail!("invalid duration {s:?}: missing unit");
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// `strata builder prune`.
///
/// # Errors
/// Usage errors (125); store errors.
pub fn prune(root: &Path, args: &BuilderPruneArgs) -> Result<(), Failure> {
    let mut opts = PruneOptions {
        all: args.all,
        ..Default::default()
    };
    for f in &args.filter {
        match f.split_once('=') {
            Some(("until", v)) => opts.until = Some(parse_until(v).map_err(usage)?),
            _ => {
                return Err(usage(anyhow!(
                    "invalid --filter {f:?}: only until=DURATION"
                )));
            }
        }
    }
    if let Some(k) = &args.keep_storage {
        opts.keep_storage = Some(parse_size(k).map_err(usage)?);
    }
    let images = open_images(root)?;
    for summary in images.list().context("cannot list images")? {
        opts.image_layers.extend(summary.layers);
    }
    let cache = BuildCache::new(root);
    let report = cache
        .prune(&opts)
        .map_err(|e| Failure::Other(anyhow!("{e}")))?;
    // The layers only the removed records kept are reclaimed now, as docker's builder prune
    // frees their space (the remaining records and every image stay roots).
    let gc = images
        .store()
        .prune(&[&cache], strata_cas::gc::PruneOptions::default())
        .context("cannot reclaim the build cache's layers")?;
    println!(
        "Deleted build cache records: {}, cache mounts: {}, context indexes: {}\n\
         Total reclaimed space: {}",
        report.records,
        report.mounts,
        report.contexts,
        human_size(report.bytes + gc.reclaimed_bytes)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_specs_parse_as_docker_builds() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let key = dir.path().join("id_ed25519");
        fs::write(&key, "k").unwrap();

        let (id, source) = parse_ssh(&format!("default={}", sock.display())).unwrap();
        assert_eq!((id.as_str(), source), ("default", SshSource::Socket(sock)));
        let (id, source) = parse_ssh(&format!("git={},{}", key.display(), key.display())).unwrap();
        assert_eq!(
            (id.as_str(), source),
            ("git", SshSource::Keys(vec![key.clone(), key.clone()]))
        );
        for bad in ["", "=x", "a,b", "x=/nonexistent/key"] {
            assert!(parse_ssh(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn outputs_secrets_sizes_and_durations_parse() {
        assert_eq!(
            parse_output("type=oci,dest=o.tar").unwrap(),
            Output::Oci("o.tar".into())
        );
        assert_eq!(parse_output("out").unwrap(), Output::Local("out".into()));
        assert_eq!(parse_output("type=image").unwrap(), Output::Image);
        assert!(parse_output("type=tar").is_err());
        assert!(parse_output("type=zip,dest=x").is_err());
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("512mb").unwrap(), 512_000_000);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_until("1h30m").unwrap().as_secs(), 5400);
        assert!(parse_until("10").is_err());
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            parse_secret("id=tok,env=PATH").unwrap(),
            ("tok".into(), path.into_bytes())
        );
        assert!(parse_secret("src=/nonexistent").is_err());
    }
}
