//! The image and store commands, one module per family: [`images`] (listing and filters),
//! [`image`] (tag, rmi, inspect, history), [`transfer`] (import, load, save), [`registry`]
//! (pull, push, login, logout, search) and [`system`] (df, prune, verify). Each takes its clap
//! arguments and the store root, calls the `cas` and `oci` crates and prints docker-compatible
//! output.

pub mod build;
pub mod commit;
pub mod image;
pub mod images;
pub mod registry;
pub mod run;
pub mod system;
pub mod transfer;
pub mod volume;

use std::path::Path;

use anyhow::Context as _;
use strata_cas::Store;
use strata_oci::Images;

use crate::Failure;
use crate::format::{Template, go_json_pretty};

/// Opens (creating if needed) the store under `root`.
///
/// # Errors
/// The root cannot be created or opened.
pub fn open_store(root: &Path) -> anyhow::Result<Store> {
    Store::open(root).with_context(|| format!("cannot open the store at {}", root.display()))
}

/// The image service on the store under `root`.
///
/// # Errors
/// The store cannot be opened.
pub fn open_images(root: &Path) -> anyhow::Result<Images> {
    Ok(Images::new(open_store(root)?))
}

/// Parses an `inspect`-style `--format` (a usage error, exit 125, when it is invalid).
///
/// # Errors
/// The template does not parse.
pub fn inspect_template(format: Option<&str>) -> Result<Option<Template>, Failure> {
    format
        .map(Template::parse)
        .transpose()
        .map_err(|e| Failure::Usage(anyhow::anyhow!("template parsing error: {e}")))
}

/// Prints what an `inspect` found: one template line each, or one JSON array as docker does.
/// `failed` (some name was not found; already reported) makes the exit status 1.
///
/// # Errors
/// The template fails on a value, or `failed`.
pub fn print_inspected(
    template: Option<&Template>,
    found: Vec<serde_json::Value>,
    failed: bool,
) -> Result<(), Failure> {
    match template {
        Some(t) => {
            let mut out = String::new();
            for v in &found {
                out.push_str(&t.render(v).map_err(|e| Failure::Other(e.into()))?);
                out.push('\n');
            }
            print!("{out}");
        }
        None => println!("{}", go_json_pretty(&serde_json::Value::Array(found))),
    }
    if failed {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}
