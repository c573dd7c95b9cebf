//! Streaming intake of image archives (docker-archive and OCI layout tars) and deterministic
//! tar writing for `save`.
//!
//! Reading: the archive's entries are visited once, in archive order, because `manifest.json` /
//! `index.json` may come after the layers. Each regular entry is classified by its first 512
//! bytes:
//! - compressed (gzip/zstd/xz magic) or a tar header (`ustar` magic, or a zero block): a layer.
//!   It is decompressed as it streams (bounded) straight into [`Store::ingest_layer`]; a
//!   compressed entry is also teed into a blob of the store, so its original digest stays
//!   available (and becomes the layer's compressed-cache entry). Only digests are remembered.
//! - anything else up to [`MAX_METADATA`] bytes (JSON documents, `VERSION`, `repositories`) is
//!   kept in memory; larger unrecognised entries are refused, naming the entry.
//! - symlinks and hardlinks (docker's legacy format links duplicate `layer.tar`s) are recorded
//!   and resolved, inside the archive's namespace, when looked up.
//!
//! Entry names are only used as keys of this in-memory map: nothing is written to the host file
//! system under an archive-chosen name, and `..` cannot climb above the archive root.
//!
//! Writing: [`TarOut`] writes ustar headers with mtime 0, uid/gid 0, mode 0644, no user names,
//! and streams each entry's content straight from the store, so the archive bytes depend only
//! on the content. Callers add entries in sorted order.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use strata_cas::digest::Hasher;
use strata_cas::lease::Lease;
use strata_cas::{Digest, Store};

use crate::compression::{self, Detected};
use crate::error::{Error, Result};

/// The largest non-layer entry kept in memory (manifests, configs, indexes).
pub const MAX_METADATA: u64 = 32 << 20;

/// How many symlink hops a lookup follows before giving up.
const MAX_LINK_HOPS: usize = 16;

/// A layer found in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledLayer {
    /// The diff ID the store computed while ingesting it.
    pub diff_id: Digest,
    /// The digest of the entry's bytes as stored in the archive (the diff ID when plain).
    pub raw_digest: Digest,
    /// The entry's size in the archive.
    pub raw_size: u64,
    /// The compression found by magic bytes.
    pub compression: Detected,
}

/// Everything remembered about an archive after one pass.
#[derive(Debug, Default)]
pub struct Spooled {
    /// Small entries, by normalised path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Layer entries, by normalised path.
    pub layers: BTreeMap<String, SpooledLayer>,
    /// Symlinks and hardlinks: normalised path -> normalised target.
    pub links: BTreeMap<String, String>,
}

/// An entry looked up in a [`Spooled`] archive.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// A small file's bytes.
    File(&'a [u8]),
    /// A layer.
    Layer(&'a SpooledLayer),
}

impl Spooled {
    /// Looks up an entry by path (normalised, links followed).
    ///
    /// # Errors
    ///
    /// [`Error::BadEntry`] when it is missing, escapes the archive or loops.
    pub fn get(&self, path: &str) -> Result<Found<'_>> {
        let mut p = normalize("", path).ok_or_else(|| bad(path, "path escapes the archive"))?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(f) = self.files.get(&p) {
                return Ok(Found::File(f));
            }
            if let Some(l) = self.layers.get(&p) {
                return Ok(Found::Layer(l));
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => return Err(bad(path, "no such entry in the archive")),
            }
        }
        Err(bad(path, "too many levels of links"))
    }

    /// A small file's bytes.
    ///
    /// # Errors
    ///
    /// [`Error::BadEntry`] when it is missing or is a layer.
    pub fn file(&self, path: &str) -> Result<&[u8]> {
        match self.get(path)? {
            Found::File(f) => Ok(f),
            Found::Layer(_) => Err(bad(path, "expected a JSON document, found a layer")),
        }
    }

    /// A layer.
    ///
    /// # Errors
    ///
    /// [`Error::BadEntry`] when it is missing or is not a layer.
    pub fn layer(&self, path: &str) -> Result<&SpooledLayer> {
        match self.get(path)? {
            Found::Layer(l) => Ok(l),
            Found::File(_) => Err(bad(path, "expected a layer tar")),
        }
    }

    /// Whether a path exists (as file, layer or link).
    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_ok()
    }
}

pub(crate) fn bad(entry: &str, reason: impl Into<String>) -> Error {
    Error::BadEntry {
        entry: entry.chars().take(300).collect(),
        reason: reason.into(),
    }
}

/// Normalises `path` relative to directory `base` ("" = archive root): drops `.`, leading `/`
/// and `./`, resolves `..`; `None` when it climbs above the root.
pub fn normalize(base: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{base}/{path}")
    };
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// A reader that hashes what passes through and copies it into an optional writer.
struct Tee<'a, R> {
    inner: R,
    hasher: Hasher,
    count: u64,
    copy: Option<&'a mut dyn Write>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some(w) = self.copy.as_mut() {
            w.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Whether a 512-byte block starts a tar archive.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if head[..512].iter().all(|b| *b == 0) {
        return true;
    }
    &head[257..262] == b"ustar"
}

/// Reads an archive tar once, ingesting layers into the store under `lease`.
///
/// # Errors
///
/// [`Error::BadEntry`] naming the entry for an unreadable, oversized or corrupt entry or layer;
/// [`Error::BadArchive`] when the tar itself is corrupt; store errors.
pub fn spool(store: &Store, lease: &Lease, input: impl Read, limit: u64) -> Result<Spooled> {
    let mut out = Spooled::default();
    let mut ar = tar::Archive::new(input);
    let entries = ar
        .entries()
        .map_err(|e| Error::BadArchive(format!("reading archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::BadArchive(format!("reading archive: {e}")))?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalize("", &raw_path) else {
            return Err(bad(&raw_path, "path escapes the archive"));
        };
        let dir = match path.rsplit_once('/') {
            Some((d, _)) => d.to_string(),
            None => String::new(),
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            // Hardlink names are relative to the archive root, symlinks to their directory.
            let base = if kind.is_hard_link() {
                ""
            } else {
                dir.as_str()
            };
            let t = normalize(base, &target)
                .ok_or_else(|| bad(&raw_path, "link target escapes the archive"))?;
            out.links.insert(path, t);
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        let size = entry.size();
        let (head, mut reader) =
            compression::peek(&mut entry, 512).map_err(|e| bad(&raw_path, e.to_string()))?;
        let detected = compression::detect(&head);
        if detected == Detected::Plain && !looks_like_tar(&head) {
            if size > MAX_METADATA {
                return Err(bad(
                    &raw_path,
                    "large entry that is neither a layer nor JSON",
                ));
            }
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            reader
                .read_to_end(&mut buf)
                .map_err(|e| bad(&raw_path, e.to_string()))?;
            out.files.insert(path, buf);
            continue;
        }
        let layer = ingest_entry(store, lease, &raw_path, &mut reader, detected, limit)?;
        out.layers.insert(path, layer);
    }
    Ok(out)
}

fn ingest_entry(
    store: &Store,
    lease: &Lease,
    name: &str,
    reader: &mut dyn Read,
    detected: Detected,
    limit: u64,
) -> Result<SpooledLayer> {
    let mut blob = if detected == Detected::Plain {
        None
    } else {
        Some(store.blob_writer(lease)?)
    };
    let (diff_id, raw_digest, raw_size) = {
        let mut tee = Tee {
            inner: reader,
            hasher: Hasher::new(),
            count: 0,
            copy: blob.as_mut().map(|b| b as &mut dyn Write),
        };
        let info = {
            let (_, decoded) = compression::decompress(&mut tee, limit)?;
            store
                .ingest_layer_from(lease, decoded)
                .map_err(|e| bad(name, e.to_string()))?
        };
        // Whatever the decoder did not need (trailing bytes) still belongs to the blob.
        io::copy(&mut tee, &mut io::sink()).map_err(|e| bad(name, e.to_string()))?;
        let raw = tee.hasher.finish();
        (info.diff_id, raw, tee.count)
    };
    if let Some(b) = blob {
        let (d, _) = b.commit(Some((&raw_digest, raw_size)))?;
        let c = match detected {
            Detected::Gzip => Some(strata_cas::Compression::Gzip),
            Detected::Zstd => Some(strata_cas::Compression::Zstd),
            Detected::Plain | Detected::Xz => None,
        };
        if let Some(c) = c {
            store.set_compressed_blob(lease, &diff_id, c, &d)?;
        }
    } else if raw_digest != diff_id {
        return Err(Error::DigestMismatch {
            what: format!("layer {name}"),
            expected: raw_digest.to_string(),
            actual: diff_id.to_string(),
        });
    }
    Ok(SpooledLayer {
        diff_id,
        raw_digest,
        raw_size,
        compression: detected,
    })
}

/// A deterministic tar writer (see the module documentation).
#[derive(Debug)]
pub struct TarOut<W: Write> {
    out: W,
}

impl<W: Write> TarOut<W> {
    /// Wraps `out`.
    pub fn new(out: W) -> Self {
        TarOut { out }
    }

    fn header(&mut self, path: &str, size: u64, dir: bool) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).map_err(|e| bad(path, e.to_string()))?;
        h.set_size(size);
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_cksum();
        self.out
            .write_all(h.as_bytes())
            .map_err(Error::io(format!("writing {path}")))
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.out
                .write_all(&[0u8; 512][..512 - rem])
                .map_err(Error::io("writing archive"))?;
        }
        Ok(())
    }

    /// Adds a directory entry.
    ///
    /// # Errors
    ///
    /// Write errors.
    pub fn dir(&mut self, path: &str) -> Result<()> {
        self.header(&format!("{}/", path.trim_end_matches('/')), 0, true)
    }

    /// Adds a file from bytes.
    ///
    /// # Errors
    ///
    /// Write errors.
    pub fn bytes(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.header(path, data.len() as u64, false)?;
        self.out
            .write_all(data)
            .map_err(Error::io(format!("writing {path}")))?;
        self.pad(data.len() as u64)
    }

    /// Adds a file of `size` bytes whose content `fill` writes; fails if it writes another
    /// amount.
    ///
    /// # Errors
    ///
    /// Write errors, or a size that differs from the announced one.
    pub fn stream(
        &mut self,
        path: &str,
        size: u64,
        fill: impl FnOnce(&mut dyn Write) -> Result<u64>,
    ) -> Result<()> {
        self.header(path, size, false)?;
        let mut counted = Counted {
            inner: &mut self.out,
            n: 0,
        };
        fill(&mut counted)?;
        if counted.n != size {
            return Err(bad(
                path,
                format!("wrote {} bytes, announced {size}", counted.n),
            ));
        }
        self.pad(size)
    }

    /// Writes the end-of-archive blocks and returns the writer.
    ///
    /// # Errors
    ///
    /// Write errors.
    pub fn finish(mut self) -> Result<W> {
        self.out
            .write_all(&[0u8; 1024])
            .map_err(Error::io("writing archive"))?;
        self.out.flush().map_err(Error::io("writing archive"))?;
        Ok(self.out)
    }
}

struct Counted<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_inside_root() {
        assert_eq!(normalize("", "./a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("x/y", "../z").as_deref(), Some("x/z"));
        assert_eq!(normalize("x", "/abs").as_deref(), Some("abs"));
        assert_eq!(normalize("", "../etc/passwd"), None);
        assert_eq!(normalize("a", "../../b"), None);
    }

    #[test]
    fn tar_out_is_readable_and_deterministic() {
        let write = || {
            let mut t = TarOut::new(Vec::new());
            t.bytes("a.json", b"{}").unwrap();
            t.stream("b/layer.tar", 3, |w| {
                w.write_all(b"xyz").map_err(Error::io("t"))?;
                Ok(3)
            })
            .unwrap();
            t.finish().unwrap()
        };
        let bytes = write();
        assert_eq!(bytes, write());
        let mut ar = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.json", "b/layer.tar"]);
        let mut t = TarOut::new(Vec::new());
        assert!(t.stream("x", 5, |_| Ok(0)).is_err());
    }
}
