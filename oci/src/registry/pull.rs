//! `pull`: a reference's manifest (an index resolves to the platform's manifest), its config,
//! then its layers, several at a time, and finally the name.
//!
//! Nothing is trusted before it is hashed: the manifest must hash to the reference's digest
//! (when pinned) and to the index entry that named it, the config to the manifest's config
//! descriptor, every layer blob to its descriptor (digest and size) and its uncompressed tar to
//! the config's diff ID. A layer is downloaded into an ingest file (resuming with a `Range`
//! request after a broken connection when the registry allows it) while a second thread unpacks
//! the same bytes into the store; the last 256 KiB reach that thread only once the whole blob's
//! digest is verified, so a bad blob never completes a layer (a download restarted from zero
//! is unpacked from the verified file instead). Only then is its compressed blob committed (and
//! cached as the layer's compressed form). Config and manifest blobs are stored after every layer, and the name is moved last, so
//! a failed pull leaves no image behind (only lease-protected garbage that `prune` reclaims).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread;

use oci_spec::image::{Descriptor, ImageManifest};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, RANGE};
use strata_cas::blob::BlobWriter;
use strata_cas::layer::LayerInfo;
use strata_cas::lease::Lease;
use strata_cas::{Compression, Digest, Reference};

use super::client::{Client, Request, full_error};
use super::{Event, Events, Platform, Registries, Status, for_each_parallel, scope};
use crate::compression::{self, Detected};
use crate::error::{Error, Result};
use crate::image::{self, Document};
use crate::service::Images;

/// The largest manifest or index accepted (as containerd).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The largest image config accepted.
pub const MAX_CONFIG: u64 = 16 << 20;
/// Every media type of a manifest strata reads, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// Bytes between two progress events of one blob.
const PROGRESS_STEP: u64 = 1 << 20;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform picked from an index.
    pub platform: Platform,
    /// Layers downloaded at once.
    pub jobs: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            jobs: 4,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The reference pulled (normalised).
    pub reference: Reference,
    /// The digest the reference resolved to on the registry (an index's, for multi-platform
    /// images): docker's `Digest:` line.
    pub digest: Digest,
    /// The platform manifest stored.
    pub manifest: Digest,
    /// The image ID (config digest).
    pub id: Digest,
    /// Whether the name now points to a different image than before.
    pub updated: bool,
}

/// A failure while streaming a body: worth a retry or not.
enum BodyError {
    Transient(String),
    Fatal(Error),
}

/// Reads a small document (manifest, config) of at most `max` bytes, retrying broken bodies.
fn fetch_small(client: &Client, req: &Request, what: &str, max: u64) -> Result<Vec<u8>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = client.send_ok(req, what)?;
        if let Some(len) = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > max
        {
            return Err(Error::Registry {
                context: what.to_string(),
                message: format!("{len} bytes is more than the limit of {max}"),
            });
        }
        let mut buf = Vec::new();
        match resp.take(max + 1).read_to_end(&mut buf) {
            Ok(_) if buf.len() as u64 > max => {
                return Err(Error::Registry {
                    context: what.to_string(),
                    message: format!("larger than the limit of {max} bytes"),
                });
            }
            Ok(_) => return Ok(buf),
            Err(e) if attempt < client.attempts() => {
                let _ = e;
                client.sleep(attempt);
            }
            Err(e) => {
                return Err(Error::Registry {
                    context: what.to_string(),
                    message: format!("reading the response failed: {}", full_error(&e)),
                });
            }
        }
    }
}

/// Fetches a manifest or index by tag or digest.
fn fetch_manifest(client: &Client, repo: &str, target: &str, scope: &str) -> Result<Vec<u8>> {
    let req = Request::get(format!("/v2/{repo}/manifests/{target}"), scope)
        .header(ACCEPT, MANIFEST_ACCEPT);
    fetch_small(
        client,
        &req,
        &format!("manifest {}/{repo}:{target}", client.domain()),
        MAX_MANIFEST,
    )
}

fn check_digest(what: &str, expected: &Digest, bytes: &[u8]) -> Result<()> {
    image::expect_digest(what, expected, &Digest::of(bytes))
}

/// The descriptor of the platform's manifest in an index.
fn pick<'a>(descs: &'a [Descriptor], platform: &Platform, what: &str) -> Result<&'a Descriptor> {
    descs
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                platform.matches(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        })
        .ok_or_else(|| Error::Registry {
            context: what.to_string(),
            message: format!("no matching manifest for {platform} in the manifest list entries"),
        })
}

/// Compressed bytes held back from the unpacking thread until the blob's digest is verified:
/// the layer's tar cannot end (and be committed) before the last of them arrive.
const HOLD_BACK: usize = 256 << 10;
/// Chunks in flight between the download and the unpacking thread.
const TAP_DEPTH: usize = 8;

/// Bytes handed to the unpacking thread at once (besides the [`HOLD_BACK`] kept behind).
const FEED_CHUNK: usize = 4 << 20;

/// Feeds the bytes of a download to the thread unpacking it meanwhile, [`HOLD_BACK`] behind.
struct Feeder {
    tx: Option<SyncSender<io::Result<Vec<u8>>>>,
    /// Chunks the unpacking thread is done with, for reuse.
    free: Receiver<Vec<u8>>,
    held: Vec<u8>,
}

impl Feeder {
    /// A feeder and the reader of what it feeds.
    fn new() -> (Feeder, ChannelReader) {
        let (tx, rx) = sync_channel(TAP_DEPTH);
        let (reader, free) = ChannelReader::new(rx);
        let feeder = Feeder {
            tx: Some(tx),
            free,
            held: Vec::with_capacity(FEED_CHUNK + 2 * HOLD_BACK),
        };
        (feeder, reader)
    }

    fn push(&mut self, chunk: &[u8]) {
        if self.tx.is_none() {
            return;
        }
        self.held.extend_from_slice(chunk);
        if self.held.len() >= FEED_CHUNK + HOLD_BACK {
            // The front goes as it is; only the last HOLD_BACK bytes are copied, to stay.
            let keep = self.held.len() - HOLD_BACK;
            let mut rest = self
                .free
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(FEED_CHUNK + 2 * HOLD_BACK));
            rest.clear();
            rest.extend_from_slice(&self.held[keep..]);
            self.held.truncate(keep);
            let front = std::mem::replace(&mut self.held, rest);
            self.send(Ok(front));
        }
    }

    fn send(&mut self, item: io::Result<Vec<u8>>) {
        // A receiver that has gone (the unpacking failed) ends the streaming.
        if let Some(tx) = &self.tx
            && tx.send(item).is_err()
        {
            self.tx = None;
        }
    }

    /// The stream is unusable (a restart from zero, a failed download): the unpacking fails.
    fn abort(&mut self, why: &str) {
        self.send(Err(io::Error::other(why.to_string())));
        self.tx = None;
        self.held = Vec::new();
    }

    /// Everything arrived and was verified: the rest goes out, then the end of the stream.
    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.held);
        if !rest.is_empty() {
            self.send(Ok(rest));
        }
        self.tx = None;
    }
}

/// The receiving side of a channel of byte chunks, read in place (`BufRead`); each chunk is
/// handed back for reuse once read.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    free: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    /// The reader of `rx`, and the channel of the chunks it is done with.
    fn new(rx: Receiver<io::Result<Vec<u8>>>) -> (ChannelReader, Receiver<Vec<u8>>) {
        let (free, free_rx) = channel();
        let reader = ChannelReader {
            rx,
            free,
            cur: Vec::new(),
            pos: 0,
        };
        (reader, free_rx)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(v)) => {
                    let done = std::mem::replace(&mut self.cur, v);
                    self.pos = 0;
                    if done.capacity() > 0 {
                        // The sender may have gone: the chunk is then simply freed.
                        let _ = self.free.send(done);
                    }
                }
                Ok(Err(e)) => return Err(e),
                // The feeder finished: the end of the blob.
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.cur.len());
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Decompressed bytes per chunk sent from the decompression to the extraction thread.
const DECODED_CHUNK: usize = 1 << 20;

/// Decompresses `input` into chunks sent on `tx`, reusing the chunks that come back on `free`
/// (already initialised: no buffer is zeroed again). Returns the format; a read error goes to
/// the receiver, which reports it.
fn decode_into(
    input: ChannelReader,
    limit: u64,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    free: &Receiver<Vec<u8>>,
) -> Result<Detected> {
    let (kind, mut decoded) = compression::decompress_buffered(input, limit)?;
    loop {
        let mut buf = free.try_recv().unwrap_or_default();
        buf.resize(DECODED_CHUNK, 0);
        let mut filled = 0;
        while filled < buf.len() {
            match decoded.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return Ok(kind);
                }
            }
        }
        if filled == 0 {
            return Ok(kind);
        }
        buf.truncate(filled);
        // The extraction stopped (it reports why).
        if tx.send(Ok(buf)).is_err() {
            return Ok(kind);
        }
    }
}

/// Streams a blob body into `w` (which may already hold the first bytes), up to `size`, and
/// into the feeder.
fn copy_body(
    mut body: impl Read,
    w: &mut BlobWriter,
    feeder: &mut Feeder,
    size: u64,
    d: &Digest,
    events: Events<'_>,
) -> std::result::Result<(), BodyError> {
    let mut last = w.size();
    loop {
        // One byte more than announced is enough to tell an over-long body.
        let max = usize::try_from(size.saturating_sub(w.size()))
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let before = w.size();
        let got = match w.read_from(&mut body, max) {
            Ok(Ok(got)) => got,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => {
                return Err(BodyError::Transient(format!(
                    "truncated body: got {} of {size} bytes ({})",
                    w.size(),
                    full_error(&e)
                )));
            }
            Err(e) => {
                return Err(BodyError::Fatal(Error::io(format!(
                    "writing {}",
                    w.ingest_path().display()
                ))(e)));
            }
        };
        if got.is_empty() {
            break;
        }
        if before + got.len() as u64 > size {
            return Err(BodyError::Fatal(Error::Registry {
                context: format!("blob {d}"),
                message: format!("the registry sent more than the {size} bytes announced"),
            }));
        }
        feeder.push(got);
        if w.size() - last >= PROGRESS_STEP {
            last = w.size();
            events(Event {
                blob: *d,
                status: Status::Progress {
                    done: last,
                    total: size,
                },
            });
        }
    }
    if w.size() < size {
        return Err(BodyError::Transient(format!(
            "truncated body: got {} of {size} bytes",
            w.size()
        )));
    }
    events(Event {
        blob: *d,
        status: Status::Progress {
            done: size,
            total: size,
        },
    });
    Ok(())
}

/// Everything one layer download needs.
struct LayerJob<'a> {
    images: &'a Images,
    lease: &'a Lease,
    client: &'a Client,
    repo: &'a str,
    events: Events<'a>,
}

impl LayerJob<'_> {
    /// Downloads a blob into a fresh ingest file, resuming after broken bodies when the registry
    /// answers ranges; returns the writer, not committed, with its size and digest checked.
    fn download(&self, d: &Digest, size: u64, feeder: &mut Feeder) -> Result<BlobWriter> {
        let (store, lease, client, repo, events) = (
            self.images.store(),
            self.lease,
            self.client,
            self.repo,
            self.events,
        );
        let scope = scope(repo, false);
        let url = format!("/v2/{repo}/blobs/{d}");
        let what = format!("blob {d}");
        let mut w = store.blob_writer(lease)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let offset = w.size();
            let mut req = Request::get(&url, &scope);
            if offset > 0 {
                req = req.header(RANGE, format!("bytes={offset}-"));
            }
            let resp = client.send_ok(&req, &what)?;
            if offset > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
                // No range support: start over (the unpacking, fed the old bytes, is abandoned).
                w = store.blob_writer(lease)?;
                feeder.abort("the download restarted");
            }
            match copy_body(resp, &mut w, feeder, size, d, events) {
                Ok(()) => break,
                Err(BodyError::Fatal(e)) => return Err(e),
                Err(BodyError::Transient(m)) if attempt < client.attempts() => {
                    events(Event {
                        blob: *d,
                        status: Status::Retrying(m),
                    });
                    client.sleep(attempt);
                }
                Err(BodyError::Transient(m)) => {
                    return Err(Error::Registry {
                        context: format!("pulling {what}"),
                        message: format!("{m} (after {attempt} attempts)"),
                    });
                }
            }
        }
        w.flush()
            .map_err(Error::io(format!("writing {}", w.ingest_path().display())))?;
        let actual = w.digest();
        if actual != *d {
            image::expect_digest(
                &format!("blob {d} from {}/{repo}", client.domain()),
                d,
                &actual,
            )?;
        }
        Ok(w)
    }

    /// Makes one layer present: skipped when committed, else downloaded, checked and unpacked.
    fn run(&self, desc: &Descriptor, diff_id: &Digest) -> Result<()> {
        let store = self.images.store();
        let d = image::to_digest("layer descriptor", desc.digest())?;
        image::layer_compression(desc.media_type().as_ref())?;
        // Protect first, then look: a prune cannot sweep it in between.
        self.lease.record_layer(diff_id)?;
        if store.layer(diff_id)?.is_some() {
            (self.events)(Event {
                blob: d,
                status: Status::Exists,
            });
            return Ok(());
        }
        let size = desc.size();
        let limit = self.images.limit();
        let (mut feeder, reader) = Feeder::new();
        // The layer is unpacked while it downloads; the download's digest is checked before the
        // last bytes are handed over, so a bad blob never completes a layer.
        let (w, streamed) = thread::scope(|s| {
            let unpack = s.spawn(move || -> Result<(Detected, LayerInfo)> {
                // Decompression runs on a thread of its own, a few MiB ahead of the extraction:
                // they are the two longest tasks of a pull, and overlap on two cores.
                let (dtx, drx) = sync_channel::<io::Result<Vec<u8>>>(TAP_DEPTH);
                let (decoded, free) = ChannelReader::new(drx);
                thread::scope(|s| {
                    let decoder = s.spawn(move || decode_into(reader, limit, &dtx, &free));
                    let info = store.ingest_layer(self.lease, decoded);
                    // A decoder that could not start ends the stream at once: its error, not
                    // the extraction's, says what went wrong.
                    let kind = decoder.join().unwrap_or_else(|_| {
                        Err(Error::Registry {
                            context: "pull".into(),
                            message: "the decompression thread panicked".into(),
                        })
                    })?;
                    Ok((kind, info?))
                })
            });
            let w = self.download(&d, size, &mut feeder);
            match &w {
                Ok(_) => feeder.finish(),
                Err(_) => feeder.abort("the download failed"),
            }
            let streamed = unpack.join().ok().and_then(|r| r.ok());
            (w, streamed)
        });
        let w = w?;
        (self.events)(Event {
            blob: d,
            status: Status::Extracting,
        });
        let (kind, info) = match streamed {
            Some(done) => done,
            // Not streamed to the end (a restarted download, a failure): from the verified file.
            None => {
                let path = w.ingest_path().to_path_buf();
                let f =
                    File::open(&path).map_err(Error::io(format!("reading {}", path.display())))?;
                let (kind, decoded) =
                    compression::decompress_buffered(BufReader::with_capacity(1 << 20, f), limit)?;
                let info =
                    store
                        .ingest_layer_from(self.lease, decoded)
                        .map_err(|e| Error::BadEntry {
                            entry: format!("layer {d}"),
                            reason: e.to_string(),
                        })?;
                (kind, info)
            }
        };
        if info.diff_id != *diff_id {
            image::expect_digest(
                &format!("layer {d} (diff ID from the image config)"),
                diff_id,
                &info.diff_id,
            )?;
        }
        if d != *diff_id {
            w.commit(Some((&d, size)))?;
            let c = match kind {
                Detected::Gzip => Some(Compression::Gzip),
                Detected::Zstd => Some(Compression::Zstd),
                Detected::Plain | Detected::Xz => None,
            };
            if let Some(c) = c {
                store.set_compressed_blob(self.lease, diff_id, c, &d)?;
            }
        }
        (self.events)(Event {
            blob: d,
            status: Status::Done,
        });
        Ok(())
    }
}

/// Downloads the layers, `jobs` at a time; the first error stops new downloads.
fn pull_layers(
    job: &LayerJob<'_>,
    m: &ImageManifest,
    diff_ids: &[Digest],
    jobs: usize,
) -> Result<()> {
    let work: Vec<(&Descriptor, &Digest)> = m.layers().iter().zip(diff_ids).collect();
    for (desc, _) in &work {
        (job.events)(Event {
            blob: image::to_digest("layer descriptor", desc.digest())?,
            status: Status::Waiting,
        });
    }
    for_each_parallel(&work, jobs, |(desc, diff_id)| job.run(desc, diff_id))
}

/// Pulls `reference` into the store and names it.
///
/// # Errors
///
/// [`Error::DigestMismatch`] for any content that does not match its digest, [`Error::Registry`]
/// / [`Error::Unauthorized`] for registry failures, store errors. Nothing is named then.
pub fn pull(
    images: &Images,
    registries: &Registries,
    reference: &Reference,
    opts: &PullOptions,
    events: Events<'_>,
) -> Result<Pulled> {
    let client = registries.client(reference.domain())?;
    let repo = reference.path();
    let scope = scope(repo, false);
    let target = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => strata_cas::reference::DEFAULT_TAG.to_string(),
    };
    let top_bytes = fetch_manifest(&client, repo, &target, &scope)?;
    let top = Digest::of(&top_bytes);
    if let Some(d) = reference.digest() {
        check_digest(&format!("manifest of {reference}"), d, &top_bytes)?;
    }
    let what = format!("manifest {top} of {reference}");
    let (manifest_bytes, manifest_digest) = match image::parse_document(&what, &top_bytes)? {
        Document::Manifest(_) => (top_bytes, top),
        Document::Index(idx) => {
            let desc = pick(idx.manifests(), &opts.platform, &what)?;
            let d = image::to_digest(&what, desc.digest())?;
            let bytes = fetch_manifest(&client, repo, &d.to_string(), &scope)?;
            check_digest(&format!("manifest {d} (from index {top})"), &d, &bytes)?;
            (bytes, d)
        }
    };
    let what = format!("manifest {manifest_digest} of {reference}");
    let m = image::parse_manifest(&what, &manifest_bytes)?;
    let config_digest = image::to_digest(&what, m.config().digest())?;
    let store = images.store();
    let lease = store.lease()?;
    lease.record_blob(&config_digest)?;
    let config_bytes = if store.has_blob(&config_digest) {
        store.read_blob(&config_digest)?
    } else {
        if m.config().size() > MAX_CONFIG {
            return Err(Error::Registry {
                context: format!("config {config_digest}"),
                message: format!(
                    "{} bytes is more than the limit of {MAX_CONFIG}",
                    m.config().size()
                ),
            });
        }
        let req = Request::get(format!("/v2/{repo}/blobs/{config_digest}"), &scope);
        let b = fetch_small(
            &client,
            &req,
            &format!("config {config_digest}"),
            MAX_CONFIG,
        )?;
        check_digest(&format!("config blob of {reference}"), &config_digest, &b)?;
        b
    };
    let cfg_what = format!("image config {config_digest}");
    let cfg = image::parse_config(&cfg_what, &config_bytes)?;
    let diff_ids = image::diff_ids(&cfg_what, &cfg)?;
    if diff_ids.len() != m.layers().len() {
        return Err(Error::BadJson {
            what,
            reason: format!(
                "{} layers, but the config lists {} diff IDs",
                m.layers().len(),
                diff_ids.len()
            ),
        });
    }
    let job = LayerJob {
        images,
        lease: &lease,
        client: &client,
        repo,
        events,
    };
    pull_layers(&job, &m, &diff_ids, opts.jobs)?;
    store.put_blob(&lease, &config_bytes)?;
    store.put_blob(&lease, &manifest_bytes)?;
    let updated = images.name_manifest(&manifest_digest, std::slice::from_ref(reference))?;
    // docker's RepoDigests: the digest the reference resolved to (an index's, for a
    // multi-platform image), under which the registry serves it.
    store.add_repo_digest(&manifest_digest, &reference.with_digest(top))?;
    drop(lease);
    Ok(Pulled {
        reference: reference.clone(),
        digest: top,
        manifest: manifest_digest,
        id: config_digest,
        updated,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, Read, Write};

    use super::*;

    /// Sends `chunks` on a channel, then (unless `None`) an error, and closes it.
    fn channel_of(chunks: &[&[u8]], error: Option<&str>) -> (ChannelReader, Receiver<Vec<u8>>) {
        let (tx, rx) = sync_channel(chunks.len() + 1);
        for c in chunks {
            tx.send(Ok(c.to_vec())).unwrap();
        }
        if let Some(e) = error {
            tx.send(Err(io::Error::other(e.to_string()))).unwrap();
        }
        ChannelReader::new(rx)
    }

    #[test]
    fn channel_reader_reads_chunks_in_place_and_hands_them_back() {
        let (mut r, free) = channel_of(&[b"hello ", b"", b"wor", b"ld"], None);
        assert_eq!(r.fill_buf().unwrap(), b"hello ");
        r.consume(2);
        let mut two = [0u8; 2];
        r.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"ll");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "o world");
        assert!(r.fill_buf().unwrap().is_empty(), "the end stays the end");
        // Every chunk read to its end came back for reuse (the last one is still current).
        let back: Vec<Vec<u8>> = free.try_iter().collect();
        assert_eq!(back, vec![b"hello ".to_vec(), b"wor".to_vec()]);

        let (mut r, _free) = channel_of(&[b"abc"], Some("the download failed"));
        let mut all = Vec::new();
        let err = r.read_to_end(&mut all).unwrap_err();
        assert_eq!(err.to_string(), "the download failed");
        assert_eq!(all, b"abc");
    }

    #[test]
    fn decoder_fills_whole_chunks_and_reuses_them() {
        let data: Vec<u8> = (0..(3 * DECODED_CHUNK + 777))
            .map(|i| (i * 31 % 253) as u8)
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let pieces: Vec<&[u8]> = gz.chunks(10_000).collect();
        let (input, _) = channel_of(&pieces, None);
        let (tx, rx) = sync_channel(16);
        let (free_tx, free) = channel();
        // One used chunk, shorter than a whole one, is offered for reuse.
        free_tx.send(vec![7u8; 10]).unwrap();
        let kind = decode_into(input, u64::MAX, &tx, &free).unwrap();
        drop(tx);
        assert_eq!(kind, Detected::Gzip);
        let chunks: Vec<Vec<u8>> = rx.iter().map(|c| c.unwrap()).collect();
        let lens: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(lens, [DECODED_CHUNK, DECODED_CHUNK, DECODED_CHUNK, 777]);
        assert!(chunks.concat() == data, "the decoded stream");

        // A corrupt stream: what decoded fine, then the error, for the extraction to report.
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid..].iter_mut().for_each(|b| *b = !*b);
        let (input, _) = channel_of(&[&bad], None);
        let (tx, rx) = sync_channel(16);
        decode_into(input, u64::MAX, &tx, &free).unwrap();
        drop(tx);
        let last = rx.iter().last().unwrap();
        assert!(last.is_err());
    }

    #[test]
    fn feeder_holds_back_the_end_until_finished() {
        let (mut feeder, mut reader) = Feeder::new();
        let data: Vec<u8> = (0..(FEED_CHUNK + 2 * HOLD_BACK + 5))
            .map(|i| (i % 241) as u8)
            .collect();
        let got = std::thread::scope(|s| {
            let reading = s.spawn(move || {
                let mut all = Vec::new();
                reader.read_to_end(&mut all).map(|_| all)
            });
            for piece in data.chunks(100_003) {
                feeder.push(piece);
            }
            // At least the last HOLD_BACK bytes are still held, the front went out.
            let held = feeder.held.len();
            feeder.finish();
            (held, reading.join().unwrap())
        });
        let (held, got) = got;
        assert!((HOLD_BACK..FEED_CHUNK).contains(&held), "{held}");
        assert!(got.unwrap() == data);
    }
}
