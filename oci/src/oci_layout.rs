//! OCI image layout (as a tar: what `skopeo copy ... oci-archive:` and `docker save` >= 25
//! produce, and what skopeo and umoci read).
//!
//! ```text
//! oci-layout                  {"imageLayoutVersion":"1.0.0"}
//! index.json                  one manifest descriptor per name, annotated with
//!                             org.opencontainers.image.ref.name (the tag, as containerd writes
//!                             it) and io.containerd.image.name (the full name)
//! blobs/sha256/<hex>          manifests, configs and layers (tar+gzip by default, tar+zstd)
//! ```
//! Writing takes each layer's compressed blob from the store's (diffID, compression) cache, so a
//! second save never recompresses; missing ones are compressed into the store first, separate
//! layers in parallel (one thread per layer, each gzip/zstd stream itself parallel). For each
//! layer three things overlap: a prefetch thread asks the kernel for the objects a little ahead
//! (cold page cache), the tar is regenerated from the objects, and the encoder thread orders
//! compressed chunks into the blob writer, which hashes them (once).
//!
//! Reading resolves `index.json` (one level of nested index is followed, preferring
//! linux/amd64), checks every manifest and config blob's digest, and pairs layer descriptors
//! with the layers ingested while the archive streamed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType};
use strata_cas::blob::BlobWriter;
use strata_cas::lease::Lease;
use strata_cas::object::ObjectKey;
use strata_cas::{Compression, Digest, Reference, Store};

use crate::archive::{Spooled, TarOut, bad};
use crate::compression::{Encoder, compress_from};
use crate::docker_archive::{ArchiveImage, SaveImage};
use crate::error::{Error, Result};
use crate::image::{self, Document};

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Reads a small blob and checks its digest.
fn verified_blob<'a>(sp: &'a Spooled, what: &str, d: &Digest) -> Result<&'a [u8]> {
    let bytes = sp.file(&blob_path(d))?;
    image::expect_digest(what, d, &Digest::of(bytes))?;
    Ok(bytes)
}

/// The name an index entry gives its image.
fn entry_reference(desc: &Descriptor) -> Option<Reference> {
    let ann = desc.annotations().as_ref()?;
    if let Some(full) = ann.get(image::ANNOTATION_IMAGE_NAME)
        && let Ok(r) = full.parse::<Reference>()
    {
        return Some(r);
    }
    let name = ann.get(image::ANNOTATION_REF_NAME)?;
    // A bare tag ("latest") names no repository: the image loads untagged.
    if name.contains(':') || name.contains('/') {
        name.parse::<Reference>().ok()
    } else {
        None
    }
}

/// Picks the manifest descriptor of an index: linux/amd64 if a platform says so, else the first.
fn pick_manifest(descs: &[Descriptor]) -> Option<&Descriptor> {
    descs
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
            })
        })
        .or_else(|| descs.first())
}

/// Reads the images `index.json` describes.
///
/// # Errors
///
/// [`Error::BadEntry`] / [`Error::DigestMismatch`] naming the part that is missing or wrong.
pub fn read(sp: &Spooled) -> Result<Vec<ArchiveImage>> {
    let index = match image::parse_document("index.json", sp.file("index.json")?)? {
        Document::Index(i) => i,
        Document::Manifest(_) => return Err(bad("index.json", "not an image index")),
    };
    let mut images: Vec<ArchiveImage> = Vec::new();
    for desc in index.manifests() {
        let reference = entry_reference(desc);
        let mut d = image::to_digest("index.json", desc.digest())?;
        let mut bytes = verified_blob(sp, "manifest", &d)?;
        let mut doc = image::parse_document(&blob_path(&d), bytes)?;
        if let Document::Index(inner) = &doc {
            let Some(m) = pick_manifest(inner.manifests()) else {
                return Err(bad(&blob_path(&d), "empty image index"));
            };
            d = image::to_digest(&blob_path(&d), m.digest())?;
            bytes = verified_blob(sp, "manifest", &d)?;
            doc = image::parse_document(&blob_path(&d), bytes)?;
        }
        let Document::Manifest(m) = doc else {
            return Err(bad(&blob_path(&d), "nested index"));
        };
        // Several index entries may name one manifest: merge their names.
        if let Some(existing) = images
            .iter_mut()
            .find(|i| i.manifest.as_deref() == Some(bytes))
        {
            existing.references.extend(reference);
            continue;
        }
        let config_digest = image::to_digest("manifest config", m.config().digest())?;
        let config = verified_blob(sp, "image config", &config_digest)?.to_vec();
        let parsed = image::parse_config(&blob_path(&config_digest), &config)?;
        let want = image::diff_ids(&blob_path(&config_digest), &parsed)?;
        if want.len() != m.layers().len() {
            return Err(bad(
                &blob_path(&d),
                format!(
                    "manifest lists {} layers, config {}",
                    m.layers().len(),
                    want.len()
                ),
            ));
        }
        for (l, want) in m.layers().iter().zip(&want) {
            image::layer_compression(l.media_type().as_ref())?;
            let ld = image::to_digest("layer descriptor", l.digest())?;
            let layer = sp.layer(&blob_path(&ld))?;
            if layer.raw_digest != ld {
                image::expect_digest(&format!("layer {}", blob_path(&ld)), &ld, &layer.raw_digest)?;
            }
            if layer.diff_id != *want {
                image::expect_digest(
                    &format!("layer {} (diff ID)", blob_path(&ld)),
                    want,
                    &layer.diff_id,
                )?;
            }
        }
        images.push(ArchiveImage {
            config,
            config_digest,
            manifest: Some(bytes.to_vec()),
            diff_ids: want,
            references: reference.into_iter().collect(),
        });
    }
    Ok(images)
}

/// The buffer of blob copies into the archive: large reads, few system calls.
const COPY_BUF: usize = 1 << 20;

/// Copies a whole blob file into the archive through `buf`; returns the bytes copied.
fn copy_blob(mut f: File, w: &mut dyn Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0u64;
    loop {
        match f.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                w.write_all(&buf[..k])?;
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// How far ahead of a layer's tar regeneration [`prefetch`] asks for object data.
const READAHEAD: u64 = 128 << 20;

/// Progress of a layer's tar regeneration, shared with its [`prefetch`] thread.
#[derive(Debug, Default)]
struct Progress {
    /// Tar bytes produced so far.
    produced: AtomicU64,
    /// The regeneration has ended (done or failed): prefetching stops.
    done: AtomicBool,
}

/// A writer that publishes how much went through it.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    progress: &'a Progress,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress
            .produced
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Asks the kernel to start reading the layer's objects, in record order, at most
/// [`READAHEAD`] bytes ahead of the regeneration. The regeneration reads one small file after
/// the other; when the objects have left the page cache that is one synchronous disk read per
/// file, while this keeps many requests in flight. Advice only: any failure just stops it.
fn prefetch(store: &Store, diff_id: &Digest, progress: &Progress) {
    let Ok(Some(keys)) = strata_cas::layer::record_objects(store.root(), &diff_id.hex()) else {
        return;
    };
    let mut requested = 0u64;
    for hex in keys {
        while requested > progress.produced.load(Ordering::Relaxed) + READAHEAD {
            if progress.done.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
        if progress.done.load(Ordering::Relaxed) {
            return;
        }
        let Ok(key) = ObjectKey::from_hex(&hex) else {
            return;
        };
        let Ok(f) = File::open(store.object_path(&key)) else {
            continue;
        };
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        // Starts asynchronous readahead of the whole file into the page cache, so the
        // regeneration's read finds it there (posix_fadvise(2), POSIX_FADV_WILLNEED):
        // https://man7.org/linux/man-pages/man2/posix_fadvise.2.html
        if posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_WILLNEED).is_err() {
            return;
        }
        requested += size;
    }
}

/// A layer's compressed blob.
#[derive(Debug)]
enum Blob {
    /// Committed (found in the cache).
    Committed(Digest, u64),
    /// Written and flushed, not committed yet: the writer's ingest file holds it.
    Written(Box<BlobWriter>, Digest, u64),
}

/// The compressed blob of a layer: from the cache, or made now (and left for [`commit`]).
fn compress_layer(store: &Store, lease: &Lease, diff_id: &Digest, c: Compression) -> Result<Blob> {
    if let Some(d) = store.compressed_blob(diff_id, c)?
        && store.has_blob(&d)
    {
        return Ok(Blob::Committed(d, store.blob_size(&d)?));
    }
    // The blob writer hashes what it stores: the encoder only counts. The tar is regenerated
    // on this thread while another one encodes and writes.
    let enc = Encoder::counting(c, store.blob_writer(lease)?)?;
    let progress = Progress::default();
    let (out, mut writer) = thread::scope(|s| {
        s.spawn(|| prefetch(store, diff_id, &progress));
        let res = compress_from(enc, |w| {
            let mut counted = Counting {
                inner: w,
                progress: &progress,
            };
            store.write_layer_tar(diff_id, &mut counted)?;
            Ok(())
        });
        progress.done.store(true, Ordering::Relaxed);
        res
    })?;
    writer
        .flush()
        .map_err(Error::io(format!("writing compressed layer {diff_id}")))?;
    if writer.size() != out.size {
        return Err(Error::BadArchive(format!(
            "compressed layer {diff_id}: wrote {} bytes, stored {}",
            out.size,
            writer.size()
        )));
    }
    let (d, size) = (writer.digest(), writer.size());
    Ok(Blob::Written(Box::new(writer), d, size))
}

/// Commits a blob [`compress_layer`] wrote and records it in the (diffID, compression) cache:
/// durable before visible, as every blob.
fn commit(
    store: &Store,
    lease: &Lease,
    diff_id: &Digest,
    c: Compression,
    blob: Blob,
) -> Result<()> {
    if let Blob::Written(writer, d, size) = blob {
        writer.commit(Some((&d, size)))?;
        store.set_compressed_blob(lease, diff_id, c, &d)?;
    }
    Ok(())
}

/// Compresses the layers that have no cached blob, in parallel; returns every layer's blob.
fn compress_all(
    store: &Store,
    lease: &Lease,
    diff_ids: &[Digest],
    c: Compression,
) -> Result<Vec<(Digest, Blob)>> {
    let mut todo: Vec<Digest> = diff_ids.to_vec();
    todo.sort();
    todo.dedup();
    // One OS thread per layer (not rayon tasks: the gzip writer itself waits on rayon tasks and
    // must never block a pool thread), a few at a time.
    let width = rayon::current_num_threads().clamp(2, 8);
    let mut done = Vec::new();
    for group in todo.chunks(width) {
        let results: Vec<Result<Blob>> = thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|d| s.spawn(move || compress_layer(store, lease, d, c)))
                .collect();
            handles.into_iter().map(joined).collect()
        });
        for (d, r) in group.iter().zip(results) {
            done.push((*d, r?));
        }
    }
    Ok(done)
}

fn joined<T>(h: thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(Error::BadArchive("compression thread panicked".into())))
}

/// Makes sure every layer has a compressed blob, compressing missing ones in parallel.
///
/// # Errors
///
/// Store and compression errors.
pub fn compress_layers(
    store: &Store,
    lease: &Lease,
    diff_ids: &[Digest],
    c: Compression,
) -> Result<BTreeMap<Digest, (Digest, u64)>> {
    let mut done = BTreeMap::new();
    for (diff_id, blob) in compress_all(store, lease, diff_ids, c)? {
        let (d, size) = match &blob {
            Blob::Committed(d, size) | Blob::Written(_, d, size) => (*d, *size),
        };
        commit(store, lease, &diff_id, c, blob)?;
        done.insert(diff_id, (d, size));
    }
    Ok(done)
}

/// Writes an OCI layout tar of `images` with layers compressed as `c`.
///
/// # Errors
///
/// Store, compression and write errors.
pub fn write(
    store: &Store,
    lease: &Lease,
    images: &[SaveImage],
    c: Compression,
    out: impl Write,
) -> Result<()> {
    let all: Vec<Digest> = images
        .iter()
        .flat_map(|i| i.layers.iter().map(|(d, _)| *d))
        .collect();
    let made = if c == Compression::None {
        Vec::new()
    } else {
        compress_all(store, lease, &all, c)?
    };
    // Fresh blobs are committed (fsync, rename, cache entry) on another thread while the
    // archive is written, their content read from the ingest file (still readable once renamed).
    let mut compressed = BTreeMap::new();
    let mut fresh: BTreeMap<Digest, File> = BTreeMap::new();
    let mut pending = Vec::new();
    for (diff_id, blob) in made {
        match &blob {
            Blob::Committed(d, size) => {
                compressed.insert(diff_id, (*d, *size));
            }
            Blob::Written(w, d, size) => {
                let path = w.ingest_path();
                let f =
                    File::open(path).map_err(Error::io(format!("reading {}", path.display())))?;
                fresh.insert(*d, f);
                compressed.insert(diff_id, (*d, *size));
                pending.push((diff_id, blob));
            }
        }
    }
    thread::scope(|s| {
        let commits = s.spawn(move || {
            pending
                .into_iter()
                .try_for_each(|(diff_id, blob)| commit(store, lease, &diff_id, c, blob))
        });
        let written = write_archive(store, images, c, &compressed, fresh, out);
        let committed = joined(commits);
        written.and(committed)
    })
}

/// Writes the layout tar, given every layer's compressed blob (`compressed`, by diffID) and
/// open files for the blobs still being committed (`fresh`).
fn write_archive(
    store: &Store,
    images: &[SaveImage],
    c: Compression,
    compressed: &BTreeMap<Digest, (Digest, u64)>,
    mut fresh: BTreeMap<Digest, File>,
    out: impl Write,
) -> Result<()> {
    enum Src<'a> {
        Bytes(Vec<u8>),
        Config(&'a [u8]),
        Blob(Digest, u64),
        Layer(Digest, u64),
    }
    let mut blobs: BTreeMap<String, Src<'_>> = BTreeMap::new();
    let mut manifests: Vec<Descriptor> = Vec::new();
    for img in images {
        let mut layers = Vec::new();
        for (d, size) in &img.layers {
            let (ld, lsize) = match compressed.get(d) {
                Some((bd, bs)) => {
                    blobs.insert(blob_path(bd), Src::Blob(*bd, *bs));
                    (*bd, *bs)
                }
                None => {
                    blobs.insert(blob_path(d), Src::Layer(*d, *size));
                    (*d, *size)
                }
            };
            layers.push(image::descriptor(image::layer_media_type(c), &ld, lsize)?);
        }
        blobs.insert(blob_path(&img.config_digest), Src::Config(&img.config));
        let config_desc = image::descriptor(
            image::OCI_CONFIG,
            &img.config_digest,
            img.config.len() as u64,
        )?;
        let manifest = image::build_manifest(config_desc, layers)?;
        let mbytes = image::canonical_json("manifest", &manifest)?;
        let md = Digest::of(&mbytes);
        let mut desc = image::descriptor(image::OCI_MANIFEST, &md, mbytes.len() as u64)?;
        blobs.insert(blob_path(&md), Src::Bytes(mbytes));
        if img.references.is_empty() {
            manifests.push(desc);
        } else {
            for r in &img.references {
                let mut ann = std::collections::HashMap::new();
                ann.insert(image::ANNOTATION_IMAGE_NAME.to_string(), r.to_string());
                if let Some(tag) = r.tag() {
                    ann.insert(image::ANNOTATION_REF_NAME.to_string(), tag.to_string());
                }
                desc.set_annotations(Some(ann));
                manifests.push(desc.clone());
            }
        }
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| Error::json("index.json", e))?;
    let index_bytes = image::canonical_json("index.json", &index)?;

    let mut buf = vec![0u8; COPY_BUF];
    let mut tar = TarOut::new(out);
    tar.dir("blobs")?;
    tar.dir("blobs/sha256")?;
    for (path, src) in &blobs {
        match src {
            Src::Bytes(b) => tar.bytes(path, b)?,
            Src::Config(b) => tar.bytes(path, b)?,
            Src::Blob(d, size) => tar.stream(path, *size, |w| {
                let f = match fresh.remove(d) {
                    Some(f) => f,
                    None => store.open_blob(d)?,
                };
                copy_blob(f, w, &mut buf).map_err(Error::io(format!("copying blob {d}")))
            })?,
            Src::Layer(d, size) => tar.stream(path, *size, |w| Ok(store.write_layer_tar(d, w)?))?,
        }
    }
    tar.bytes("index.json", &index_bytes)?;
    tar.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.finish()?;
    Ok(())
}
