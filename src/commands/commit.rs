//! `strata commit` and `strata cp`: a container's file system into an image, or copied
//! to and from the host; the work is in [`strata_runner::commit`] and [`strata_runner::cp`].

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, anyhow};
use strata_cas::{Reference, Store};
use strata_runner::commit::{CommitOptions, commit as commit_container};
use strata_runner::container::{Container, ContainerStore, same_process};
use strata_runner::cp::{self, CpOptions, Sink, Source, Target};

use crate::Failure;
use crate::cli::{CommitArgs, CpArgs};
use crate::commands::open_images;

/// `strata commit [-a A] [-c INSTR]... [-m MSG] C [IMAGE]`: prints the new image ID.
///
/// # Errors
/// No such container; a bad name or `-c` line (125); store errors.
pub fn commit(root: &Path, args: &CommitArgs) -> Result<(), Failure> {
    let reference = args
        .image
        .as_deref()
        .map(|s| {
            s.parse::<Reference>()
                .map_err(|e| Failure::Usage(anyhow!("invalid reference format {s:?}: {e}")))
        })
        .transpose()?;
    let cstore = ContainerStore::open(root).context("cannot open the containers")?;
    let c = cstore.get(&args.container).map_err(anyhow::Error::from)?;
    let images = open_images(root)?;
    let upper = cstore.container_dir(&c.id).join("upper");
    let opts = CommitOptions {
        changes: args.changes.clone(),
        message: args.message.clone(),
        author: args.author.clone(),
        reference,
    };
    let summary = commit_container(&images, &c, &upper, &opts).map_err(|e| match e {
        strata_runner::Error::Oci(strata_oci::Error::BadChange { .. }) => {
            Failure::Usage(anyhow!(e))
        }
        e => Failure::Other(anyhow!(e).context(format!("cannot commit {}", args.container))),
    })?;
    println!("{}", summary.id);
    Ok(())
}

/// One side of `cp`: a container path or a local one.
enum Side<'a> {
    Container(&'a str, &'a str),
    Local(&'a str),
}

/// docker's rule: a local path is `-`, starts with `/` or `.`, or has no `:`.
fn side(arg: &str) -> Side<'_> {
    if arg == "-" || arg.starts_with('/') || arg.starts_with('.') {
        return Side::Local(arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => Side::Container(c, p),
        _ => Side::Local(arg),
    }
}

fn target(root: &Path, cstore: &ContainerStore, c: &Container) -> anyhow::Result<Target> {
    if c.state.pid > 0 && same_process(c.state.pid, c.state.pid_start) {
        return Ok(Target::Running {
            pid: c.state.pid,
            pid_start: c.state.pid_start,
        });
    }
    let store = Store::open(root).context("cannot open the store")?;
    let spec = strata_runner::create::build_spec(&store, cstore, c)
        .with_context(|| format!("cannot prepare the file system of {}", c.name))?;
    Ok(Target::Stopped {
        spec: Box::new(spec),
        bundle: cstore.container_dir(&c.id).join("bundle"),
    })
}

/// `strata cp [-a] [-L] SRC DEST`.
///
/// # Errors
/// Both or neither side a container (125); no such container; copy errors.
pub fn cp(root: &Path, args: &CpArgs) -> Result<(), Failure> {
    let opts = CpOptions {
        follow_link: args.follow_link,
        archive: args.archive,
    };
    let cstore = ContainerStore::open(root).context("cannot open the containers")?;
    match (side(&args.source), side(&args.dest)) {
        (Side::Container(name, path), Side::Local(dest)) => {
            let c = cstore.get(name).map_err(anyhow::Error::from)?;
            let t = target(root, &cstore, &c)?;
            let path = if path.is_empty() { "/" } else { path };
            if dest == "-" {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                cp::copy_from(&t, path, Sink::Stream(&mut out), opts)
                    .map_err(anyhow::Error::from)?;
                out.flush().context("cannot write to stdout")?;
            } else {
                cp::copy_from(&t, path, Sink::Host(Path::new(dest)), opts)
                    .map_err(anyhow::Error::from)?;
            }
            Ok(())
        }
        (Side::Local(src), Side::Container(name, path)) => {
            let c = cstore.get(name).map_err(anyhow::Error::from)?;
            let t = target(root, &cstore, &c)?;
            let path = if path.is_empty() { "/" } else { path };
            if src == "-" {
                let stdin = std::io::stdin();
                let mut input = stdin.lock();
                cp::copy_to(&t, Source::Stream(&mut input), path, opts)
                    .map_err(anyhow::Error::from)?;
            } else {
                cp::copy_to(&t, Source::Host(Path::new(src)), path, opts)
                    .map_err(anyhow::Error::from)?;
            }
            Ok(())
        }
        (Side::Container(..), Side::Container(..)) => Err(Failure::Usage(anyhow!(
            "copying between containers is not supported"
        ))),
        (Side::Local(_), Side::Local(_)) => Err(Failure::Usage(anyhow!(
            "must specify at least one container source"
        ))),
    }
}
