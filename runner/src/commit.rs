//! `strata commit`: a container's changes become a new image on top of its image.
//!
//! The container's overlay upper dir (`ROOT/containers/<id>/upper`, with overlayfs whiteouts
//! and opaque directories) is ingested as one layer by [`strata_cas::Store::ingest_dir`], the
//! same converter RUN steps' upper dirs go through (whiteouts become `.wh.` entries). The new
//! config is the image's config, with the container's settings docker carries over (its
//! command and entrypoint when given, its environment, working dir, user and labels), then the
//! `-c` changes ([`strata_oci::image::apply_changes`], as `import --change`), a history entry
//! (author, message, the container's command) and the new layer's diff ID. The image is
//! stored and tagged through [`strata_oci::Images::commit`]; with no name it is dangling.
//!
//! Volumes are not part of the image (docker's rule): they are mounts, not in the upper dir.
//! A running container is committed as its upper dir is at that moment (strata has no pause).

use std::collections::BTreeMap;
use std::path::Path;

use strata_cas::{Digest, Reference};
use strata_oci::image::{self, apply_changes, config_bytes, config_extras};
use strata_oci::{ImageSummary, Images};

use crate::container::Container;
use crate::error::{Error, Result};

/// What `commit` was asked for besides the container.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `-c` Dockerfile lines applied to the new config.
    pub changes: Vec<String>,
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-a`: the image's and history entry's author.
    pub author: Option<String>,
    /// The name to tag the new image with (dangling when `None`).
    pub reference: Option<Reference>,
}

fn oci_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{what}: {e}"))
}

/// Commits `container`'s `upper` dir as a new image on its image; see the module docs.
///
/// # Errors
/// [`Error::Oci`] for a bad `-c` line or a missing image; store and I/O errors.
pub fn commit(
    images: &Images,
    container: &Container,
    upper: &Path,
    opts: &CommitOptions,
) -> Result<ImageSummary> {
    // Validate the changes before ingesting anything.
    apply_changes(
        &mut Default::default(),
        &mut Default::default(),
        &opts.changes,
    )?;
    let image_id: Digest = container
        .image_id
        .parse()
        .map_err(|e| oci_err("the container's image ID", e))?;
    let (raw, mut config) = images.config(&image_id)?;
    let raw_json: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|e| oci_err("the image config", e))?;
    let mut extras = config_extras(&raw_json);
    let store = images.store();
    let mut layers = Vec::new();
    for d in image::diff_ids("image config", &config)? {
        let info = store
            .layer(&d)?
            .ok_or_else(|| Error::Invalid(format!("the image's layer {d} is missing")))?;
        layers.push((d, info.size));
    }
    let lease = store.lease()?;
    let info = store.ingest_dir(&lease, upper)?;
    layers.push((info.diff_id, info.size));

    let mut cfg = config.config().clone().unwrap_or_default();
    carry_over(&mut cfg, container);
    apply_changes(&mut cfg, &mut extras, &opts.changes)?;
    config.set_config(Some(cfg));
    let created = image::now_rfc3339();
    config.set_created(Some(created.clone()));
    config.set_author(opts.author.clone());
    let mut h = oci_spec::image::History::default();
    h.set_created(Some(created));
    h.set_author(opts.author.clone());
    h.set_created_by(Some(created_by(container)));
    h.set_comment(opts.message.clone());
    let mut history = config.history().clone().unwrap_or_default();
    history.push(h);
    config.set_history(Some(history));
    let mut rootfs = config.rootfs().clone();
    let mut ids = rootfs.diff_ids().clone();
    ids.push(info.diff_id.to_string());
    rootfs.set_diff_ids(ids);
    config.set_rootfs(rootfs);
    extras.comment = opts.message.clone();
    let bytes = config_bytes(&config, &extras)?;
    let refs: Vec<Reference> = opts.reference.iter().cloned().collect();
    let summary = images.commit(&lease, &bytes, &layers, &refs)?;
    drop(lease);
    Ok(summary)
}

/// The container's command, as docker's history shows it.
fn created_by(c: &Container) -> String {
    std::iter::once(c.path.as_str())
        .chain(c.args.iter().map(String::as_str))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// docker commits the container's config: its command (when the user gave one), entrypoint,
/// environment (over the image's), working dir, user and labels.
fn carry_over(cfg: &mut oci_spec::image::Config, c: &Container) {
    let rc = &c.config;
    if !rc.entrypoint.is_empty() {
        cfg.set_entrypoint(Some(rc.entrypoint.clone()));
        if rc.cmd.is_empty() {
            cfg.set_cmd(None);
        }
    }
    if !rc.cmd.is_empty() {
        cfg.set_cmd(Some(rc.cmd.clone()));
    }
    if !rc.env.is_empty() {
        let mut env: Vec<String> = cfg.env().clone().unwrap_or_default();
        for kv in &rc.env {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
            env.push(kv.clone());
        }
        cfg.set_env(Some(env));
    }
    if !rc.working_dir.is_empty() {
        cfg.set_working_dir(Some(rc.working_dir.clone()));
    }
    if !rc.user.is_empty() {
        cfg.set_user(Some(rc.user.clone()));
    }
    if !rc.labels.is_empty() {
        let mut labels: BTreeMap<String, String> = cfg
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        labels.extend(rc.labels.clone());
        cfg.set_labels(Some(labels.into_iter().collect()));
    }
}
