//! `push`: an image's layer blobs, then its config, then its manifest under the tag.
//!
//! The manifest pushed is the stored one when all its layer blobs are stored compressed (a
//! pulled or OCI-loaded image keeps its digest); images strata built or imported describe their
//! layers as uncompressed tars, so they get an OCI manifest of gzip blobs, taken from (or made
//! into) the store's compressed-layer cache, so a second push compresses nothing.
//!
//! Each blob: `HEAD` (present: skipped), else a cross-repository mount from another repository
//! of the same registry whose stored image uses it (`POST ...?mount=D&from=REPO`; a guess from
//! this store's names: a refused mount just opens an upload session), else an
//! upload session: one `PUT` with the whole blob, or `PATCH` chunks then a closing `PUT` for
//! blobs over the chunk size ([`AUTO_CHUNK`] unless given).

use std::collections::{BTreeMap, BTreeSet};

use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use strata_cas::{Compression, Digest, Reference, Store};

use super::client::{Body, Client, Request};
use super::{Event, Events, Registries, Status, for_each_parallel, scope};
use crate::error::{Error, Result};
use crate::image;
use crate::oci_layout::compress_layers;
use crate::service::Images;

/// The chunk size of `chunk_size: 0`. A request body is sent from memory: reqwest's blocking
/// client would stream a reader in 8 KiB pieces through a channel, which halves the upload
/// rate of large blobs.
pub const AUTO_CHUNK: u64 = 32 << 20;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs larger than this are uploaded in chunks of this size; 0: automatic (blobs up to
    /// [`AUTO_CHUNK`] in one request, larger ones in chunks of that size). Each request's
    /// body is read into memory first.
    pub chunk_size: u64,
    /// Blobs uploaded at once.
    pub jobs: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            chunk_size: 0,
            jobs: 4,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The reference pushed.
    pub reference: Reference,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's size.
    pub size: u64,
}

/// One blob to upload.
#[derive(Debug, Clone)]
struct Upload {
    digest: Digest,
    size: u64,
    mount_from: Vec<String>,
}

fn registry_err(what: &str, message: impl Into<String>) -> Error {
    Error::Registry {
        context: what.to_string(),
        message: message.into(),
    }
}

/// The upload location a 202 names, absolute.
fn location(client: &Client, resp: &reqwest::blocking::Response, what: &str) -> Result<String> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| registry_err(what, "upload response without a Location"))?;
    Ok(client.absolute(loc)?.to_string())
}

fn with_digest(client: &Client, loc: &str, d: &Digest) -> Result<String> {
    let mut u = client.absolute(loc)?;
    u.query_pairs_mut().append_pair("digest", &d.to_string());
    Ok(u.to_string())
}

/// Uploads one blob (see the module docs).
fn upload(
    client: &Client,
    store: &Store,
    repo: &str,
    blob: &Upload,
    opts: &PushOptions,
    events: Events<'_>,
) -> Result<()> {
    let d = &blob.digest;
    let scope = scope(repo, true);
    let what = format!("pushing blob {d}");
    let head = client.send(&Request::new(
        Method::HEAD,
        format!("/v2/{repo}/blobs/{d}"),
        &scope,
    ))?;
    if head.status().is_success() {
        events(Event {
            blob: *d,
            status: Status::Exists,
        });
        return Ok(());
    }
    let mut loc = None;
    if let Some(from) = blob.mount_from.first() {
        let mut u = client.absolute(&format!("/v2/{repo}/blobs/uploads/"))?;
        u.query_pairs_mut()
            .append_pair("mount", &d.to_string())
            .append_pair("from", from);
        // The token must also allow reading the source repository.
        let mount_scope = format!("{scope} repository:{from}:pull");
        let resp = client.send_ok(
            &Request::new(Method::POST, u.to_string(), &mount_scope),
            &what,
        )?;
        if resp.status() == StatusCode::CREATED {
            events(Event {
                blob: *d,
                status: Status::Mounted(from.clone()),
            });
            return Ok(());
        }
        loc = Some(location(client, &resp, &what)?);
    }
    let mut loc = match loc {
        Some(l) => l,
        None => {
            let resp = client.send_ok(
                &Request::new(Method::POST, format!("/v2/{repo}/blobs/uploads/"), &scope),
                &what,
            )?;
            location(client, &resp, &what)?
        }
    };
    let path = store.blob_path(d);
    let octet = "application/octet-stream";
    let chunk = if opts.chunk_size == 0 {
        AUTO_CHUNK
    } else {
        opts.chunk_size
    };
    if blob.size <= chunk {
        let req = Request::new(Method::PUT, with_digest(client, &loc, d)?, &scope)
            .header(CONTENT_TYPE, octet)
            .body(Body::File {
                path,
                offset: 0,
                len: blob.size,
            });
        client.send_ok(&req, &what)?;
        events(Event {
            blob: *d,
            status: Status::Progress {
                done: blob.size,
                total: blob.size,
            },
        });
    } else {
        let mut offset = 0;
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            let req = Request::new(Method::PATCH, loc.clone(), &scope)
                .header(CONTENT_TYPE, octet)
                .header(CONTENT_RANGE, format!("{offset}-{}", offset + len - 1))
                .body(Body::File {
                    path: path.clone(),
                    offset,
                    len,
                });
            let resp = client.send_ok(&req, &what)?;
            loc = location(client, &resp, &what)?;
            offset += len;
            events(Event {
                blob: *d,
                status: Status::Progress {
                    done: offset,
                    total: blob.size,
                },
            });
        }
        let req = Request::new(Method::PUT, with_digest(client, &loc, d)?, &scope);
        client.send_ok(&req, &what)?;
    }
    events(Event {
        blob: *d,
        status: Status::Done,
    });
    Ok(())
}

/// Repositories of the same registry whose stored manifests list each blob: mount sources.
fn mount_sources(images: &Images, reference: &Reference) -> Result<BTreeMap<Digest, Vec<String>>> {
    let store = images.store();
    let mut out: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (r, m) in store.refs()? {
        if r.domain() != reference.domain() || r.path() == reference.path() {
            continue;
        }
        if !seen.insert((r.path().to_string(), m)) {
            continue;
        }
        let Ok(bytes) = store.read_blob(&m) else {
            continue;
        };
        let Ok(manifest) = image::parse_manifest("manifest", &bytes) else {
            continue;
        };
        for l in manifest.layers() {
            let Ok(d) = image::to_digest("layer", l.digest()) else {
                continue;
            };
            // An uncompressed descriptor (a built image) was pushed as its gzip blob.
            let pushed_as = store.compressed_blob(&d, Compression::Gzip).ok().flatten();
            for d in std::iter::once(d).chain(pushed_as) {
                let v = out.entry(d).or_default();
                if !v.iter().any(|p| p == r.path()) {
                    v.push(r.path().to_string());
                }
            }
        }
    }
    Ok(out)
}

/// Uploads blobs, `jobs` at a time; the first error stops new uploads.
fn upload_all(
    client: &Client,
    store: &Store,
    repo: &str,
    blobs: &[Upload],
    opts: &PushOptions,
    events: Events<'_>,
) -> Result<()> {
    for b in blobs {
        events(Event {
            blob: b.digest,
            status: Status::Waiting,
        });
    }
    for_each_parallel(blobs, opts.jobs, |b| {
        upload(client, store, repo, b, opts, events)
    })
}

/// Pushes the local image `reference` names to its registry under its tag.
///
/// # Errors
///
/// [`Error::NoSuchImage`], [`Error::Registry`] / [`Error::Unauthorized`] for registry failures,
/// store and compression errors.
pub fn push(
    images: &Images,
    registries: &Registries,
    reference: &Reference,
    opts: &PushOptions,
    events: Events<'_>,
) -> Result<Pushed> {
    let tag = reference
        .tag()
        .ok_or_else(|| Error::BadReference(format!("{reference}: push needs a tag")))?;
    let res = images.resolve(reference.as_str())?;
    let store = images.store();
    let lease = store.lease()?;
    lease.record_blob(&res.manifest)?;
    lease.record_blob(&res.id)?;
    let stored = store.read_blob(&res.manifest)?;
    let what = format!("manifest {}", res.manifest);
    let m = image::parse_manifest(&what, &stored)?;
    let config = store.read_blob(&res.id)?;
    let cfg_what = format!("image config {}", res.id);
    let diff_ids = image::diff_ids(&cfg_what, &image::parse_config(&cfg_what, &config)?)?;
    let mut layers: Vec<(Digest, u64)> = Vec::new();
    let mut keep = diff_ids.len() == m.layers().len();
    for (desc, diff_id) in m.layers().iter().zip(&diff_ids) {
        let d = image::to_digest(&what, desc.digest())?;
        lease.record_blob(&d)?;
        if d == *diff_id || !store.has_blob(&d) {
            keep = false;
        }
        layers.push((d, desc.size()));
    }
    let (manifest_bytes, media_type) = if keep {
        let mt = serde_json::from_slice::<serde_json::Value>(&stored)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(String::from)
            })
            .unwrap_or_else(|| image::OCI_MANIFEST.to_string());
        (stored, mt)
    } else {
        let made = compress_layers(store, &lease, &diff_ids, Compression::Gzip)?;
        layers.clear();
        let mut descs = Vec::new();
        for diff_id in &diff_ids {
            let (d, size) = made
                .get(diff_id)
                .copied()
                .ok_or_else(|| strata_cas::Error::LayerNotFound(diff_id.to_string()))?;
            descs.push(image::descriptor(image::OCI_LAYER_GZIP, &d, size)?);
            layers.push((d, size));
        }
        let built = image::build_manifest(
            image::descriptor(image::OCI_CONFIG, &res.id, config.len() as u64)?,
            descs,
        )?;
        (
            image::canonical_json("manifest", &built)?,
            image::OCI_MANIFEST.to_string(),
        )
    };
    let client = registries.client(reference.domain())?;
    let repo = reference.path();
    let sources = mount_sources(images, reference)?;
    let mut seen = BTreeSet::new();
    let uploads: Vec<Upload> = layers
        .iter()
        .filter(|(d, _)| seen.insert(*d))
        .map(|(d, size)| Upload {
            digest: *d,
            size: *size,
            mount_from: sources.get(d).cloned().unwrap_or_default(),
        })
        .collect();
    upload_all(&client, store, repo, &uploads, opts, events)?;
    let config_upload = Upload {
        digest: res.id,
        size: config.len() as u64,
        mount_from: Vec::new(),
    };
    // The config is no layer: docker shows no line for it.
    upload(&client, store, repo, &config_upload, opts, &|_| {})?;
    let digest = Digest::of(&manifest_bytes);
    let size = manifest_bytes.len() as u64;
    let req = Request::new(
        Method::PUT,
        format!("/v2/{repo}/manifests/{tag}"),
        &scope(repo, true),
    )
    .header(CONTENT_TYPE, media_type)
    .body(Body::Bytes(std::sync::Arc::new(manifest_bytes)));
    client.send_ok(&req, &format!("pushing manifest {reference}"))?;
    store.add_repo_digest(&res.manifest, &reference.with_digest(digest))?;
    drop(lease);
    Ok(Pushed {
        reference: reference.clone(),
        digest,
        size,
    })
}
