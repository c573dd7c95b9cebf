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
