//! [`Images`]: the image service behind `import`, `load`, `save`, `images`, `tag`, `rmi`,
//! `inspect` and `history`.
//!
//! An image is a manifest blob named by refs in `refs.json`; its ID is the config digest.
//! Manifests strata writes itself (import, docker-archive load) describe layers as uncompressed
//! `tar` descriptors whose digest is the diff ID: the store regenerates that blob from the
//! committed layer, so no second copy is kept (`verify` accepts such regenerable layer blobs).
//! OCI archives keep their original manifest (and compressed blobs, which double as the
//! compression cache), so their manifest digest survives a load.
//!
//! **Untagged images.** An image without any name (loaded untagged, or whose last tag moved to
//! another image) stays reachable through a hidden ref `strata.invalid/dangling:<manifest hex>`
//! in the same `refs.json`: GC keeps it, `images -a`/`dangling=true` show it as
//! `<none>:<none>`, and nothing else shows the hidden name. Every tag move and removal that
//! could orphan or un-orphan an image happens inside one atomic `update_refs` step.
//! Deleting an image only removes refs; `system prune` reclaims the blobs and layers.

use oci_spec::image::ImageConfiguration;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use strata_cas::lease::{GcGuard, GcLock, Lease};
use strata_cas::{Compression, Digest, Reference, Store};

use crate::archive;
use crate::compression::{self, DEFAULT_MAX_DECOMPRESSED};
use crate::docker_archive::{self, ArchiveImage, SaveImage};
use crate::error::{Error, Result};
use crate::image;
use crate::oci_layout;

/// The registry domain of hidden refs that keep untagged images reachable.
pub const HIDDEN_DOMAIN: &str = "strata.invalid";
/// The repository of hidden refs.
pub const HIDDEN_REPO: &str = "strata.invalid/dangling";

/// The archive format of `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// docker-archive (classic `docker save` layout).
    Docker,
    /// OCI image layout tar with gzip layers.
    Oci,
    /// OCI image layout tar with zstd layers.
    OciZstd,
}

/// One image as `images` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The config digest: the image ID.
    pub id: Digest,
    /// The manifest digest.
    pub manifest: Digest,
    /// The (visible) names; empty for a dangling image.
    pub references: Vec<Reference>,
    /// `created` from the config (RFC 3339).
    pub created: Option<String>,
    /// Sum of the layers' unpacked bytes.
    pub size: u64,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
    /// Diff IDs, base first.
    pub layers: Vec<Digest>,
    /// `repository@digest` references a registry serves it under (pulled or pushed).
    pub repo_digests: Vec<Reference>,
}

/// One loaded name (or image ID when the image came without a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The name, when the archive gave one.
    pub reference: Option<Reference>,
    /// The image ID.
    pub id: Digest,
}

/// One row of `history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The image ID on the newest row, `None` (`<missing>`) on the others.
    pub id: Option<Digest>,
    /// When the step ran.
    pub created: Option<String>,
    /// The command.
    pub created_by: String,
    /// The layer's unpacked size (0 for empty layers).
    pub size: u64,
    /// The comment.
    pub comment: String,
    /// The step made no layer.
    pub empty_layer: bool,
}

/// What `rmi` did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// `Untagged: <familiar name>`.
    Untagged(Reference),
    /// `Deleted: <image ID>`.
    Deleted(Digest),
}

/// What a spec resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The manifest digest.
    pub manifest: Digest,
    /// The image ID (config digest).
    pub id: Digest,
    /// The reference the spec named, when it named one.
    pub reference: Option<Reference>,
}

/// One image in the store: a manifest and everything pointing at it.
#[derive(Debug, Clone)]
struct Record {
    manifest: Digest,
    config: Digest,
    refs: Vec<Reference>,
}

/// The image service over a store.
#[derive(Debug, Clone)]
pub struct Images {
    store: Store,
    max_decompressed: u64,
}

fn is_hidden(r: &Reference) -> bool {
    r.domain() == HIDDEN_DOMAIN
}

fn hidden_ref(manifest: &Digest) -> strata_cas::Result<Reference> {
    format!("{HIDDEN_REPO}:{}", manifest.hex()).parse::<Reference>()
}

/// Sets `r -> manifest` in `refs`, dangling the image it replaces and un-dangling `manifest`.
/// The labels of an image config, sorted.
fn labels(config: &ImageConfiguration) -> BTreeMap<String, String> {
    config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn point(
    refs: &mut BTreeMap<Reference, Digest>,
    r: &Reference,
    manifest: &Digest,
) -> strata_cas::Result<()> {
    let old = refs.insert(r.clone(), *manifest);
    refs.remove(&hidden_ref(manifest)?);
    if let Some(old) = old
        && old != *manifest
        && !refs.values().any(|d| *d == old)
    {
        refs.insert(hidden_ref(&old)?, old);
    }
    Ok(())
}

impl Images {
    /// The service over `store`.
    pub fn new(store: Store) -> Self {
        Images {
            store,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }

    /// Sets the bound on any one decompressed stream (default 64 GiB).
    pub fn with_max_decompressed(mut self, limit: u64) -> Self {
        self.max_decompressed = limit;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The bound on any one decompressed stream.
    pub fn limit(&self) -> u64 {
        self.max_decompressed
    }

    /// Points `references` at a stored manifest in one refs update (or keeps it by a hidden ref
    /// when there are none); returns whether any of them pointed elsewhere (or nowhere) before.
    ///
    /// # Errors
    ///
    /// Store errors; [`strata_cas::Error::BlobNotFound`] when the manifest is not stored.
    pub fn name_manifest(&self, manifest: &Digest, references: &[Reference]) -> Result<bool> {
        let mut moved = false;
        self.store.update_refs(|refs| {
            if !self.store.has_blob(manifest) {
                return Err(strata_cas::Error::BlobNotFound(manifest.to_string()));
            }
            moved = references.iter().any(|r| refs.get(r) != Some(manifest));
            for r in references {
                point(refs, r, manifest)?;
            }
            if references.is_empty() && !refs.values().any(|d| d == manifest) {
                refs.insert(hidden_ref(manifest)?, *manifest);
            }
            Ok(true)
        })?;
        Ok(moved)
    }

    fn manifest_config(&self, manifest: &Digest) -> Result<Digest> {
        let bytes = self.store.read_blob(manifest)?;
        let m = image::parse_manifest(&format!("manifest {manifest}"), &bytes)?;
        image::to_digest("manifest config", m.config().digest())
    }

    /// Every image (one per manifest), with its refs (hidden ones included).
    ///
    /// Callers hold gc.lock shared, so no prune can sweep a manifest between reading refs.json
    /// and reading the manifests it names (another process may be removing images meanwhile).
    fn records(&self, _gc: &GcGuard) -> Result<Vec<Record>> {
        let mut by_manifest: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
        for (r, d) in self.store.refs()? {
            by_manifest.entry(d).or_default().push(r);
        }
        let mut out = Vec::new();
        for (manifest, refs) in by_manifest {
            let config = self.manifest_config(&manifest)?;
            out.push(Record {
                manifest,
                config,
                refs,
            });
        }
        Ok(out)
    }

    /// Imports a root file system tar (plain, gzip, zstd or xz) as a one-layer linux/amd64
    /// image, like `docker import`.
    ///
    /// # Errors
    ///
    /// Decompression, extraction and store errors; [`Error::BadChange`] for a bad `--change`.
    pub fn import(
        &self,
        tar: impl Read,
        reference: Option<&Reference>,
        changes: &[String],
        message: Option<&str>,
    ) -> Result<ImageSummary> {
        let message = message.unwrap_or("Imported from -");
        // Validate the changes before spending time on the tar.
        image::apply_changes(&mut Default::default(), &mut Default::default(), changes)?;
        let lease = self.store.lease()?;
        let (_, decoded) = compression::decompress(tar, self.max_decompressed)?;
        let info = self.store.ingest_layer_from(&lease, decoded)?;
        let created = image::now_rfc3339();
        let (config, extras) = image::import_config(&info.diff_id, &created, changes, message)?;
        let config_bytes = image::config_bytes(&config, &extras)?;
        let mut summary = self.commit(
            &lease,
            &config_bytes,
            &[(info.diff_id, info.size)],
            reference
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
                .as_slice(),
        )?;
        drop(lease);
        summary.size = info.unpacked_bytes;
        Ok(summary)
    }

    /// Stores an image made of committed layers: the config blob (`config_bytes`, which must
    /// parse as an image config naming exactly these diff IDs), a manifest describing each
    /// layer as its uncompressed tar (regenerated from the store on export), and the refs. With
    /// no reference the image is kept by a hidden ref (dangling). `layers`: (diff ID, tar size),
    /// base first.
    ///
    /// # Errors
    ///
    /// [`Error::BadJson`] for a config that does not parse or does not match `layers`; store
    /// errors.
    pub fn commit(
        &self,
        lease: &Lease,
        config_bytes: &[u8],
        layers: &[(Digest, u64)],
        references: &[Reference],
    ) -> Result<ImageSummary> {
        let config = image::parse_config("image config", config_bytes)?;
        let ids = image::diff_ids("image config", &config)?;
        if ids != layers.iter().map(|(d, _)| *d).collect::<Vec<_>>() {
            return Err(Error::json(
                "image config",
                "rootfs.diff_ids do not match the image's layers",
            ));
        }
        let config_digest = self.store.put_blob(lease, config_bytes)?;
        let mut descriptors = Vec::with_capacity(layers.len());
        let mut size = 0;
        for (d, tar_size) in layers {
            descriptors.push(image::descriptor(image::OCI_LAYER, d, *tar_size)?);
            size += self.store.layer(d)?.map(|l| l.unpacked_bytes).unwrap_or(0);
        }
        let manifest = image::build_manifest(
            image::descriptor(image::OCI_CONFIG, &config_digest, config_bytes.len() as u64)?,
            descriptors,
        )?;
        let manifest_bytes = image::canonical_json("manifest", &manifest)?;
        let manifest_digest = self.store.put_blob(lease, &manifest_bytes)?;
        self.store.update_refs(|refs| {
            for r in references {
                point(refs, r, &manifest_digest)?;
            }
            if references.is_empty() && !refs.values().any(|d| *d == manifest_digest) {
                refs.insert(hidden_ref(&manifest_digest)?, manifest_digest);
            }
            Ok(true)
        })?;
        Ok(ImageSummary {
            id: config_digest,
            manifest: manifest_digest,
            references: references.to_vec(),
            created: config.created().clone(),
            size,
            labels: labels(&config),
            layers: layers.iter().map(|(d, _)| *d).collect(),
            repo_digests: Vec::new(),
        })
    }

    /// The config of an image, as raw JSON bytes (docker extensions included) and parsed.
    ///
    /// # Errors
    ///
    /// Store errors; [`Error::BadJson`] for an unparsable config.
    pub fn config(&self, id: &Digest) -> Result<(Vec<u8>, ImageConfiguration)> {
        let bytes = self.store.read_blob(id)?;
        let parsed = image::parse_config(&format!("config {id}"), &bytes)?;
        Ok((bytes, parsed))
    }

    /// Loads a docker-archive or OCI layout tar (autodetected; `manifest.json` wins when both
    /// are present, as docker >= 25 writes both).
    ///
    /// # Errors
    ///
    /// [`Error::BadArchive`] / [`Error::BadEntry`] for malformed archives, store errors.
    pub fn load(&self, archive: impl Read) -> Result<Vec<Loaded>> {
        let lease = self.store.lease()?;
        let (_, decoded) = compression::decompress(archive, self.max_decompressed)?;
        let sp = archive::spool(&self.store, &lease, decoded, self.max_decompressed)?;
        let images: Vec<ArchiveImage> = if sp.contains("manifest.json") {
            docker_archive::read(&sp)?
        } else if sp.contains("index.json") {
            oci_layout::read(&sp)?
        } else {
            return Err(Error::BadArchive(
                "neither manifest.json nor index.json found (not a docker-archive or OCI layout)"
                    .into(),
            ));
        };
        let mut loaded = Vec::new();
        let mut plan: Vec<(Digest, Vec<Reference>)> = Vec::new();
        for img in &images {
            let config_digest = self.store.put_blob(&lease, &img.config)?;
            let manifest_bytes = match &img.manifest {
                Some(m) => m.clone(),
                None => {
                    let mut layers = Vec::new();
                    for d in &img.diff_ids {
                        let size = self
                            .store
                            .layer(d)?
                            .map(|l| l.size)
                            .ok_or_else(|| strata_cas::Error::LayerNotFound(d.to_string()))?;
                        layers.push(image::descriptor(image::OCI_LAYER, d, size)?);
                    }
                    let m = image::build_manifest(
                        image::descriptor(
                            image::OCI_CONFIG,
                            &config_digest,
                            img.config.len() as u64,
                        )?,
                        layers,
                    )?;
                    image::canonical_json("manifest", &m)?
                }
            };
            let manifest = self.store.put_blob(&lease, &manifest_bytes)?;
            plan.push((manifest, img.references.clone()));
            if img.references.is_empty() {
                loaded.push(Loaded {
                    reference: None,
                    id: config_digest,
                });
            }
            for r in &img.references {
                loaded.push(Loaded {
                    reference: Some(r.clone()),
                    id: config_digest,
                });
            }
        }
        self.store.update_refs(|refs| {
            for (manifest, names) in &plan {
                for r in names {
                    point(refs, r, manifest)?;
                }
                if names.is_empty() && !refs.values().any(|d| d == manifest) {
                    refs.insert(hidden_ref(manifest)?, *manifest);
                }
            }
            Ok(true)
        })?;
        drop(lease);
        Ok(loaded)
    }

    fn save_image(&self, spec: &str) -> Result<SaveImage> {
        let res = self.resolve(spec)?;
        let config = self.store.read_blob(&res.id)?;
        let parsed = image::parse_config(&format!("image config {}", res.id), &config)?;
        let mut layers = Vec::new();
        for d in image::diff_ids("image config", &parsed)? {
            let info = self
                .store
                .layer(&d)?
                .ok_or_else(|| strata_cas::Error::LayerNotFound(d.to_string()))?;
            layers.push((d, info.size));
        }
        Ok(SaveImage {
            config_digest: res.id,
            config,
            layers,
            references: res.reference.into_iter().collect(),
        })
    }

    /// Writes the named images as an archive.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchImage`], store, compression and write errors.
    pub fn save(&self, images: &[String], format: ArchiveFormat, out: impl Write) -> Result<()> {
        let mut list = Vec::new();
        for spec in images {
            list.push(self.save_image(spec)?);
        }
        match format {
            ArchiveFormat::Docker => docker_archive::write(&self.store, &list, out),
            ArchiveFormat::Oci | ArchiveFormat::OciZstd => {
                let c = if format == ArchiveFormat::Oci {
                    Compression::Gzip
                } else {
                    Compression::Zstd
                };
                let lease = self.store.lease()?;
                oci_layout::write(&self.store, &lease, &list, c, out)
            }
        }
    }

    fn summary(&self, rec: &Record) -> Result<ImageSummary> {
        let bytes = self.store.read_blob(&rec.config)?;
        let cfg = image::parse_config(&format!("image config {}", rec.config), &bytes)?;
        let layers = image::diff_ids("image config", &cfg)?;
        let mut size = 0;
        for d in &layers {
            if let Some(info) = self.store.layer(d)? {
                size += info.unpacked_bytes;
            }
        }
        Ok(ImageSummary {
            id: rec.config,
            manifest: rec.manifest,
            references: rec.refs.iter().filter(|r| !is_hidden(r)).cloned().collect(),
            created: cfg.created().clone(),
            size,
            labels: labels(&cfg),
            layers,
            repo_digests: self
                .store
                .repo_digests()?
                .remove(&rec.manifest)
                .map(|s| s.into_iter().collect())
                .unwrap_or_default(),
        })
    }

    /// Every image, newest first; dangling ones have no references.
    ///
    /// # Errors
    ///
    /// Store errors, unreadable manifests or configs.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        // Held across the whole listing: the configs read below stay in place too.
        let gc = GcLock::shared(&self.store)?;
        let mut out = Vec::new();
        for rec in self.records(&gc)? {
            out.push(self.summary(&rec)?);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Resolves `name[:tag]`, `name@sha256:...`, a full `sha256:` image ID or manifest digest,
    /// or a unique image ID prefix (with or without `sha256:`).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchImage`], [`Error::AmbiguousId`].
    pub fn resolve(&self, spec: &str) -> Result<Resolved> {
        let gc = GcLock::shared(&self.store)?;
        let digest = spec.parse::<Digest>().ok();
        let reference = spec.parse::<Reference>().ok().filter(|r| !is_hidden(r));
        // A plain name (the usual FROM) is one lookup in refs.json and one manifest read, however
        // many images (dangling ones of earlier builds, say) the store holds.
        if digest.is_none()
            && let Some(reference) = &reference
            && reference.digest().is_none()
            && let Some(manifest) = self.store.refs()?.get(reference)
        {
            return Ok(Resolved {
                manifest: *manifest,
                id: self.manifest_config(manifest)?,
                reference: Some(reference.clone()),
            });
        }
        let records = self.records(&gc)?;
        if let Some(d) = digest
            && let Some(r) = records.iter().find(|r| r.config == d || r.manifest == d)
        {
            return Ok(Resolved {
                manifest: r.manifest,
                id: r.config,
                reference: None,
            });
        }
        if let Some(reference) = reference {
            let repo_digests = if reference.digest().is_some() {
                self.store.repo_digests()?
            } else {
                BTreeMap::new()
            };
            let hit = records.iter().find(|r| match reference.digest() {
                // A pulled `name@sha256:` may name an index: its ref points to the platform's
                // manifest. A pushed image answers to the digest the registry gave it.
                Some(d) => {
                    r.manifest == *d
                        || r.refs.contains(&reference)
                        || repo_digests
                            .get(&r.manifest)
                            .is_some_and(|s| s.contains(&reference))
                }
                None => r.refs.contains(&reference),
            });
            if let Some(r) = hit {
                return Ok(Resolved {
                    manifest: r.manifest,
                    id: r.config,
                    reference: reference.digest().is_none().then_some(reference),
                });
            }
        }
        let prefix = spec.strip_prefix("sha256:").unwrap_or(spec);
        if !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            let ids: BTreeSet<Digest> = records
                .iter()
                .filter(|r| r.config.hex().starts_with(prefix))
                .map(|r| r.config)
                .collect();
            if ids.len() > 1 {
                return Err(Error::AmbiguousId {
                    prefix: spec.to_string(),
                    count: ids.len(),
                });
            }
            if let Some(id) = ids.into_iter().next() {
                // Prefer a tagged manifest of that image.
                let r = records
                    .iter()
                    .filter(|r| r.config == id)
                    .max_by_key(|r| r.refs.iter().any(|x| !is_hidden(x)));
                if let Some(r) = r {
                    return Ok(Resolved {
                        manifest: r.manifest,
                        id: r.config,
                        reference: None,
                    });
                }
            }
        }
        Err(Error::NoSuchImage(spec.to_string()))
    }

    /// Names the image `src` resolves to `dst` (docker's `tag`).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchImage`], [`Error::BadReference`], store errors.
    pub fn tag(&self, src: &str, dst: &str) -> Result<()> {
        let res = self.resolve(src)?;
        let dst_ref = dst
            .parse::<Reference>()
            .map_err(|e| Error::BadReference(e.to_string()))?;
        if dst_ref.digest().is_some() || is_hidden(&dst_ref) {
            return Err(Error::BadReference(format!(
                "{dst}: cannot tag with a digest"
            )));
        }
        self.store.update_refs(|refs| {
            // Checked under the refs update's gc.lock: if another process removed and pruned
            // the source meanwhile, don't create a ref to nothing.
            if !self.store.has_blob(&res.manifest) {
                return Err(strata_cas::Error::BlobNotFound(res.manifest.to_string()));
            }
            point(refs, &dst_ref, &res.manifest)?;
            Ok(true)
        })?;
        Ok(())
    }

    /// Removes images (`rmi`): a name is untagged, and the image deleted when it was its last
    /// name; an ID removes every name of the image (several only with `force`).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchImage`], [`Error::Conflict`], store errors. Specs before the failing one
    /// have been processed.
    pub fn remove(&self, specs: &[String], force: bool) -> Result<Vec<Removal>> {
        let mut out = Vec::new();
        for spec in specs {
            let res = self.resolve(spec)?;
            let image_manifests: BTreeSet<Digest> = self
                .records(&GcLock::shared(&self.store)?)?
                .iter()
                .filter(|r| r.config == res.id)
                .map(|r| r.manifest)
                .collect();
            if res.reference.is_none() && !force {
                let named = self
                    .store
                    .refs()?
                    .iter()
                    .filter(|(r, d)| image_manifests.contains(d) && !is_hidden(r))
                    .count();
                if named > 1 {
                    return Err(Error::Conflict {
                        id: res.id.hex().chars().take(12).collect(),
                    });
                }
            }
            let mut removals = Vec::new();
            self.store.update_refs(|refs| {
                removals.clear();
                // Every manifest of this image (same config), with its visible names.
                let manifests: BTreeSet<Digest> = if res.reference.is_some() {
                    [res.manifest].into()
                } else {
                    image_manifests.clone()
                };
                let names: Vec<Reference> = match &res.reference {
                    Some(r) => vec![r.clone()],
                    None => refs
                        .iter()
                        .filter(|(r, d)| manifests.contains(d) && !is_hidden(r))
                        .map(|(r, _)| r.clone())
                        .collect(),
                };
                for n in &names {
                    refs.remove(n);
                    removals.push(Removal::Untagged(n.clone()));
                }
                let still_named = refs
                    .iter()
                    .any(|(r, d)| manifests.contains(d) && !is_hidden(r));
                if !still_named {
                    for m in &manifests {
                        refs.remove(&hidden_ref(m)?);
                    }
                    removals.push(Removal::Deleted(res.id));
                }
                Ok(true)
            })?;
            out.extend(removals);
        }
        Ok(out)
    }

    /// `docker image inspect` for one image.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchImage`], store errors.
    pub fn inspect(&self, spec: &str) -> Result<serde_json::Value> {
        let res = self.resolve(spec)?;
        let gc = GcLock::shared(&self.store)?;
        let rec = self
            .records(&gc)?
            .into_iter()
            .find(|r| r.manifest == res.manifest)
            .ok_or_else(|| Error::NoSuchImage(spec.to_string()))?;
        let summary = self.summary(&rec)?;
        let bytes = self.store.read_blob(&res.id)?;
        let raw: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::json("image config", e))?;
        let field = |k: &str| raw.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let str_or_empty = |k: &str| raw.get(k).cloned().unwrap_or_else(|| "".into());
        let repo_tags: Vec<String> = summary
            .references
            .iter()
            .filter(|r| r.digest().is_none())
            .map(|r| r.familiar())
            .collect();
        let mut repo_digests: Vec<String> = summary
            .repo_digests
            .iter()
            .chain(summary.references.iter().filter(|r| r.digest().is_some()))
            .map(|r| r.familiar())
            .collect();
        repo_digests.sort();
        repo_digests.dedup();
        Ok(serde_json::json!({
            "Id": res.id.to_string(),
            "RepoTags": repo_tags,
            "RepoDigests": repo_digests,
            "Parent": "",
            "Comment": str_or_empty("comment"),
            "Created": str_or_empty("created"),
            "DockerVersion": "",
            "Author": str_or_empty("author"),
            "Config": field("config"),
            "Architecture": field("architecture"),
            "Variant": raw.get("variant").cloned(),
            "Os": field("os"),
            "Size": summary.size,
            "GraphDriver": {"Data": null, "Name": "strata"},
            "RootFS": {
                "Type": "layers",
                "Layers": summary.layers.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            },
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
            "Descriptor": {
                "mediaType": image::OCI_MANIFEST,
                "digest": res.manifest.to_string(),
            },
        }))
    }

    /// `docker history`: one row per history entry, newest first.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchImage`], store errors.
    pub fn history(&self, spec: &str) -> Result<Vec<HistoryEntry>> {
        let res = self.resolve(spec)?;
        let bytes = self.store.read_blob(&res.id)?;
        let cfg = image::parse_config("image config", &bytes)?;
        let diff_ids = image::diff_ids("image config", &cfg)?;
        let mut sizes = Vec::new();
        for d in &diff_ids {
            sizes.push(self.store.layer(d)?.map(|l| l.unpacked_bytes).unwrap_or(0));
        }
        let mut rows = Vec::new();
        let mut layer = 0usize;
        match cfg.history() {
            Some(h) if !h.is_empty() => {
                for e in h {
                    let empty = e.empty_layer().unwrap_or(false);
                    let size = if empty {
                        0
                    } else {
                        let s = sizes.get(layer).copied().unwrap_or(0);
                        layer += 1;
                        s
                    };
                    rows.push(HistoryEntry {
                        id: None,
                        created: e.created().clone(),
                        created_by: e.created_by().clone().unwrap_or_default(),
                        size,
                        comment: e.comment().clone().unwrap_or_default(),
                        empty_layer: empty,
                    });
                }
            }
            _ => {
                for s in &sizes {
                    rows.push(HistoryEntry {
                        id: None,
                        created: cfg.created().clone(),
                        created_by: String::new(),
                        size: *s,
                        comment: String::new(),
                        empty_layer: false,
                    });
                }
            }
        }
        rows.reverse();
        if let Some(first) = rows.first_mut() {
            first.id = Some(res.id);
        }
        Ok(rows)
    }
}
