//! Layers: ingestion (safe extraction + record), commit ordering, byte-exact tar regeneration,
//! the compressed-blob cache, listing and removal.
//!
//! # On-disk format
//!
//! ```text
//! layers/sha256/<diffid-hex>/rootfs/      the unpacked tree (regular files are hardlinks to
//!                                         objects/<hh>/<key>); usable as an overlay lower dir
//! layers/sha256/<diffid-hex>/record.zst   the tar-split record (format: crate::record)
//! layers/sha256/<diffid-hex>/layer.json   {"diff_id":"sha256:..","size":<tar bytes>,
//!                                          "entries":<tar entries>,"unpacked_bytes":<sum of
//!                                          regular file sizes>,"created":<unix seconds>}
//! layers/sha256/<diffid-hex>/base         only in a layer stored as a delta (built in place
//!                                         over a similar layer, see crate::commit): text
//!                                         "sha256:<hex>\n", the base layer (never a delta
//!                                         itself); the layer's tree is then its rootfs/ over
//!                                         the base's rootfs/ (`Store::layer_dirs`), and the
//!                                         base lives as long as the layer does
//! layers/tmp/<lease-id>-<n>/              a layer being ingested: rootfs/, record.zst,
//!                                         layer.json, tmp/ (object temp files), trash/, and
//!                                         `lock`, flocked exclusively by the ingesting process
//! compressed/<diffid-hex>/<gzip|zstd|none> text file "sha256:<hex>\n": the blob holding this
//!                                         layer compressed that way (written temp + rename)
//! ```
//!
//! # Commit ordering ([`Store::ingest_layer`])
//!
//! 1. Extract into `layers/tmp/<id>/rootfs`; objects are renamed into `objects/` without any
//!    per-file fsync and hardlinked into the tree; the record is written alongside.
//!    Failpoint `layer.after-objects`.
//! 2. ONE `syncfs` of the store's file system (through the syscall seam) makes every object,
//!    directory entry and inode of the tree durable at once. Failpoint `layer.after-syncfs`.
//!    (Layers built in place, [`crate::commit`], flush only the objects they created, see
//!    [`Durability`].)
//! 3. `record.zst` and `layer.json` are finished and fsync'ed.
//! 4. Under `gc.lock` shared: the diffID is recorded in the lease (`layer sha256:..`),
//!    failpoint `layer.before-rename`, then the temp dir is renamed (no-replace) to
//!    `layers/sha256/<hex>`; if that exists the layer is already there and ours is discarded.
//! 5. `fsync` of `layers/sha256`.
//!
//! A crash before 4 leaves only `layers/tmp/<id>` (removed by prune once its lock is free) and
//! unreferenced objects (link count 1, removed by prune). A committed layer directory is only
//! ever visible complete: everything in it was durable before the rename.
//! An object found already present but with the wrong size (torn by a crash before a syncfs)
//! is replaced rather than linked (see [`crate::object`]).

use std::fs::{self, File};
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result, io_err};
use crate::extract::extract;
use crate::failpoint;
use crate::lease::{GcLock, Lease, LeaseKind};
use crate::object::object_path_in;
use crate::record::{RecordReader, RecordWriter, Segment};
use crate::store::{Store, dir_names};

/// How a layer's new data is made durable before its commit record (step 2 of the module
/// docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Durability {
    /// One `syncfs` of the store's file system: for layers with many new objects.
    Syncfs,
    /// An `fsync` of each of these new objects only. The layer's directory entries and links
    /// need no flush of their own: the file system journals metadata in order (ext4, xfs,
    /// btrfs), so the final rename is never durable before the entries made ahead of it. A
    /// layer made of links to existing objects flushes nothing, and never waits for unrelated
    /// dirty data of other processes, as a `syncfs` would.
    Objects(Vec<PathBuf>),
}

/// A committed layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the uncompressed tar in bytes.
    pub size: u64,
    /// Number of tar entries (PAX/GNU meta headers not counted).
    pub entries: u64,
    /// Sum of the sizes of the regular files (hardlinks counted once).
    pub unpacked_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LayerJson {
    diff_id: Digest,
    size: u64,
    entries: u64,
    #[serde(default)]
    unpacked_bytes: u64,
    #[serde(default)]
    created: u64,
}

/// A layer blob compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (`tar+gzip`).
    Gzip,
    /// zstd (`tar+zstd`).
    Zstd,
}

impl Compression {
    /// The cache file name: `none`, `gzip` or `zstd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

static TMP_N: AtomicU64 = AtomicU64::new(0);

/// The file of a layer directory naming its base (`sha256:<hex>`), for a layer stored as a delta.
pub(crate) const BASE_FILE: &str = "base";

/// The temp dir of an ingest: removed on drop unless committed; its `lock` is flocked.
pub(crate) struct TempLayer {
    pub(crate) dir: PathBuf,
    _lock: File,
    keep: bool,
}

impl TempLayer {
    pub(crate) fn new(store: &Store, lease: &Lease) -> Result<Self> {
        let n = TMP_N.fetch_add(1, Ordering::Relaxed);
        let dir = store
            .root
            .join("layers/tmp")
            .join(format!("{}-{n}", lease.id()));
        // Created and locked under gc.lock shared: a prune either sees this ingest as running (and
        // keeps every object) or finishes before it starts, never deletes objects in between.
        let guard = GcLock::shared(store)?;
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        drop(guard);
        for sub in ["rootfs", "tmp", "trash", "work"] {
            let p = dir.join(sub);
            fs::create_dir(&p).map_err(io_err(&p))?;
        }
        Ok(Self {
            dir,
            _lock: lock,
            keep: false,
        })
    }
}

impl Drop for TempLayer {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The object keys (hex) a committed layer's record names; `Ok(None)` if the layer is absent.
///
/// # Errors
/// [`Error::Corrupt`] for an unreadable record; I/O errors.
pub fn record_objects(root: &Path, hex: &str) -> Result<Option<Vec<String>>> {
    let path = root.join("layers/sha256").join(hex).join("record.zst");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let keys = crate::record::objects(file).map_err(|e| Error::Corrupt {
        path: path.clone(),
        message: format!("unreadable layer record: {e}"),
    })?;
    Ok(Some(keys.iter().map(|k| k.hex()).collect()))
}

impl Store {
    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    /// Ingests an uncompressed layer tar: safe extraction, objects, record, atomic commit (see
    /// the module docs for the ordering). An existing layer with the same diffID wins.
    ///
    /// # Errors
    /// [`Error::Archive`] / [`Error::UnsafeEntry`] for a corrupt, truncated or unsafe tar (then
    /// nothing is committed); I/O and syscall errors.
    ///
    /// The tar is read through its buffer (`BufRead`): file data goes from there straight to its
    /// object, with no copy of its own.
    pub fn ingest_layer(&self, lease: &Lease, uncompressed_tar: impl BufRead) -> Result<LayerInfo> {
        let tmp = TempLayer::new(self, lease)?;
        let record_path = tmp.dir.join("record.zst");
        let record_file = File::create(&record_path).map_err(io_err(&record_path))?;
        let record =
            RecordWriter::new(BufWriter::new(record_file)).map_err(io_err(&record_path))?;
        let (ex, record) = extract(
            self,
            uncompressed_tar,
            &tmp.dir.join("rootfs"),
            &tmp.dir.join("tmp"),
            &tmp.dir.join("trash"),
            record,
        )?;
        let info = LayerInfo {
            diff_id: ex.diff_id,
            size: ex.size,
            entries: ex.entries,
            unpacked_bytes: ex.unpacked_bytes,
        };
        self.commit_temp(lease, tmp, record, info, Durability::Syncfs)
    }

    /// [`Self::ingest_layer`] of a tar without a buffer of its own (a decoder, a pipe): it is
    /// read through one of 1 MiB.
    ///
    /// # Errors
    /// As [`Self::ingest_layer`].
    pub fn ingest_layer_from(
        &self,
        lease: &Lease,
        uncompressed_tar: impl Read,
    ) -> Result<LayerInfo> {
        self.ingest_layer(
            lease,
            io::BufReader::with_capacity(1 << 20, uncompressed_tar),
        )
    }

    /// Makes an ingested temp layer durable and renames it into place (steps 2 to 5 of the
    /// module docs); shared by [`Store::ingest_layer`] and [`crate::commit::PendingLayer`].
    pub(crate) fn commit_temp(
        &self,
        lease: &Lease,
        mut tmp: TempLayer,
        record: RecordWriter<BufWriter<File>>,
        info: LayerInfo,
        durability: Durability,
    ) -> Result<LayerInfo> {
        let record_path = tmp.dir.join("record.zst");
        for sub in ["trash", "tmp", "work"] {
            let p = tmp.dir.join(sub);
            match fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        failpoint::hit("layer.after-objects");
        match durability {
            Durability::Syncfs => self.sys.syncfs(&self.root)?,
            Durability::Objects(paths) => {
                for p in paths {
                    let f = File::open(&p).map_err(io_err(&p))?;
                    self.sys.fsync(&f)?;
                }
            }
        }
        failpoint::hit("layer.after-syncfs");
        let record_file = record
            .finish()
            .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
            .map_err(io_err(&record_path))?;
        self.sys.fsync(&record_file)?;
        drop(record_file);
        let json = LayerJson {
            diff_id: info.diff_id,
            size: info.size,
            entries: info.entries,
            unpacked_bytes: info.unpacked_bytes,
            created: now_secs(),
        };
        let json_path = tmp.dir.join("layer.json");
        let bytes = serde_json::to_vec(&json).map_err(|e| Error::Corrupt {
            path: json_path.clone(),
            message: e.to_string(),
        })?;
        let mut jf = File::create(&json_path).map_err(io_err(&json_path))?;
        jf.write_all(&bytes).map_err(io_err(&json_path))?;
        self.sys.fsync(&jf)?;
        drop(jf);
        self.sys.fsync_dir(&tmp.dir)?;

        let dest = self.layer_dir(&info.diff_id);
        let parent = self.root.join("layers/sha256");
        {
            let guard = GcLock::shared(self)?;
            lease.record_locked(&guard, LeaseKind::Layer, &info.diff_id.to_string())?;
            failpoint::hit("layer.before-rename");
            if dest.is_dir() {
                return Ok(self.layer(&info.diff_id)?.unwrap_or(info));
            }
            match self.sys.rename_noreplace(&tmp.dir, &dest) {
                Ok(()) => tmp.keep = true,
                Err(e) if e.is_already_exists() => {
                    return Ok(self.layer(&info.diff_id)?.unwrap_or(info));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The lock file moved with the directory; it is harmless in a committed layer.
        let _ = fs::remove_file(dest.join("lock"));
        self.sys.fsync_dir(&parent)?;
        Ok(info)
    }

    /// The committed layer with this diffID, if any.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for an unreadable `layer.json`.
    pub fn layer(&self, diff_id: &Digest) -> Result<Option<LayerInfo>> {
        let path = self.layer_dir(diff_id).join("layer.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let j: LayerJson = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: path.clone(),
            message: format!("invalid layer.json: {e}"),
        })?;
        if &j.diff_id != diff_id {
            return Err(Error::Corrupt {
                path,
                message: format!("layer.json names {} instead of {diff_id}", j.diff_id),
            });
        }
        Ok(Some(LayerInfo {
            diff_id: j.diff_id,
            size: j.size,
            entries: j.entries,
            unpacked_bytes: j.unpacked_bytes,
        }))
    }

    /// `layers/sha256/<hex>/rootfs` (whether or not it exists). A layer with a base (see
    /// [`Self::layer_base`]) has only part of its files there: use [`Self::layer_dirs`].
    pub fn layer_rootfs(&self, diff_id: &Digest) -> PathBuf {
        self.layer_dir(diff_id).join("rootfs")
    }

    /// The base of a layer stored as a delta, if it is one: its tree is then its own `rootfs/`
    /// over the base's (see [`crate::commit`]).
    ///
    /// # Errors
    /// [`Error::Corrupt`] for an unreadable `base` file.
    pub fn layer_base(&self, diff_id: &Digest) -> Result<Option<Digest>> {
        let path = self.layer_dir(diff_id).join(BASE_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map(Some).map_err(|_| Error::Corrupt {
                path,
                message: format!("not a layer diff ID: {:?}", text.trim()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The directories whose union (top first, as overlay lower dirs) is the layer's tree: its
    /// `rootfs/`, then its base's when it has one.
    ///
    /// # Errors
    /// As [`Self::layer_base`].
    pub fn layer_dirs(&self, diff_id: &Digest) -> Result<Vec<PathBuf>> {
        let mut dirs = vec![self.layer_rootfs(diff_id)];
        if let Some(base) = self.layer_base(diff_id)? {
            dirs.push(self.layer_rootfs(&base));
        }
        Ok(dirs)
    }

    /// [`Self::layer_dirs`] as short links (see [`Self::short_link`]).
    ///
    /// # Errors
    /// As [`Self::layer_base`] and [`Self::short_link`].
    pub fn layer_short_links(&self, diff_id: &Digest) -> Result<Vec<String>> {
        let mut links = vec![self.short_link(diff_id)?];
        if let Some(base) = self.layer_base(diff_id)? {
            links.push(self.short_link(&base)?);
        }
        Ok(links)
    }

    /// Writes the layer's original tar, byte for byte, from its record and objects.
    /// Returns the number of bytes written.
    ///
    /// # Errors
    /// [`Error::LayerNotFound`]; [`Error::Corrupt`] when an object is missing or too short;
    /// I/O errors writing `out`.
    pub fn write_layer_tar(&self, diff_id: &Digest, mut out: impl Write) -> Result<u64> {
        let path = self.layer_dir(diff_id).join("record.zst");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::LayerNotFound(diff_id.to_string()));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let out_err = |e: io::Error| Error::Io {
            path: PathBuf::from(format!("<layer tar {diff_id}>")),
            source: e,
        };
        let mut total = 0u64;
        for seg in RecordReader::new(io::BufReader::new(file))? {
            match seg? {
                Segment::Raw(bytes) => {
                    out.write_all(&bytes).map_err(out_err)?;
                    total += bytes.len() as u64;
                }
                Segment::File { object, size } => {
                    let opath = object_path_in(&self.root, &object);
                    let f = File::open(&opath).map_err(|e| Error::Corrupt {
                        path: opath.clone(),
                        message: format!("object of layer {diff_id} unreadable: {e}"),
                    })?;
                    let n = io::copy(&mut f.take(size), &mut out).map_err(out_err)?;
                    if n != size {
                        return Err(Error::Corrupt {
                            path: opath,
                            message: format!(
                                "object has {n} bytes, layer {diff_id} expects {size}"
                            ),
                        });
                    }
                    total += n;
                }
            }
        }
        out.flush().map_err(out_err)?;
        Ok(total)
    }

    /// The cached blob holding this layer compressed with `c`, if recorded and still present.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for an unparsable cache entry; I/O errors.
    pub fn compressed_blob(&self, diff_id: &Digest, c: Compression) -> Result<Option<Digest>> {
        let path = self
            .root
            .join("compressed")
            .join(diff_id.hex())
            .join(c.as_str());
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let d: Digest = text.trim().parse().map_err(|e| Error::Corrupt {
            path: path.clone(),
            message: format!("invalid compressed cache entry: {e}"),
        })?;
        Ok(self.blob_path(&d).is_file().then_some(d))
    }

    /// Records `blob` as the layer compressed with `c` (atomic temp + rename).
    ///
    /// # Errors
    /// [`Error::LayerNotFound`] if the layer is not committed; I/O and syscall errors.
    pub fn set_compressed_blob(
        &self,
        lease: &Lease,
        diff_id: &Digest,
        c: Compression,
        blob: &Digest,
    ) -> Result<()> {
        if !self.layer_dir(diff_id).is_dir() {
            return Err(Error::LayerNotFound(diff_id.to_string()));
        }
        let dir = self.root.join("compressed").join(diff_id.hex());
        self.sys.create_dir_all(&dir)?;
        let n = TMP_N.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}-compressed-{n}", lease.id()));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(format!("{blob}\n").as_bytes())
            .map_err(io_err(&tmp))?;
        self.sys.fsync(&f)?;
        drop(f);
        {
            let guard = GcLock::shared(self)?;
            lease.record_locked(&guard, LeaseKind::Blob, &blob.to_string())?;
            lease.record_locked(&guard, LeaseKind::Layer, &diff_id.to_string())?;
            if let Err(e) = self.sys.rename(&tmp, &dir.join(c.as_str())) {
                let _ = fs::remove_file(&tmp);
                return Err(e.into());
            }
        }
        self.sys.fsync_dir(&dir)?;
        Ok(())
    }

    /// Every committed layer's diffID, sorted.
    ///
    /// # Errors
    /// I/O errors reading `layers/sha256`.
    pub fn list_layers(&self) -> Result<Vec<Digest>> {
        let mut out: Vec<Digest> = dir_names(&self.root.join("layers/sha256"))?
            .into_iter()
            .filter_map(|n| Digest::from_hex(&n).ok())
            .collect();
        out.sort_by_key(|d| d.hex());
        Ok(out)
    }

    /// Removes a layer (GC): its compressed cache entries, then the layer directory (renamed
    /// into `layers/tmp/` first so it disappears atomically). Objects stay for GC to judge.
    /// Returns false if the layer did not exist.
    ///
    /// # Errors
    /// I/O and syscall errors.
    pub fn remove_layer(&self, diff_id: &Digest) -> Result<bool> {
        let comp = self.root.join("compressed").join(diff_id.hex());
        if comp.exists() {
            self.sys.remove_dir_all(&comp)?;
        }
        let dir = self.layer_dir(diff_id);
        let n = TMP_N.fetch_add(1, Ordering::Relaxed);
        let trash = self.root.join("layers/tmp").join(format!(
            "rm-{}-{}-{n}",
            diff_id.hex(),
            std::process::id()
        ));
        match self.sys.rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.sys.remove_dir_all(&trash)?;
        // The short link made for overlay mounts (see `Store::short_link`), if any.
        let link = self.root.join("l").join(&diff_id.hex()[..24]);
        match fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&link)(e)),
        }
        Ok(true)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::tarwrite::{Entry, write_end, write_entry};

    pub(crate) fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        (dir, store)
    }

    /// A store whose syscalls are recorded (and can be made to fail), with its recorder.
    pub(crate) fn recording_store() -> (
        tempfile::TempDir,
        std::sync::Arc<strata_sys::RecordingSyscall>,
        Store,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let rec = std::sync::Arc::new(strata_sys::RecordingSyscall::new());
        let store = Store::with_syscall(&dir.path().join("store"), rec.clone()).unwrap();
        (dir, rec, store)
    }

    pub(crate) fn file(name: &str, data_len: u64, mode: u32, mtime: i64) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: b'0',
            size: data_len,
            mode,
            mtime,
            ..Default::default()
        }
    }

    pub(crate) fn entry(name: &str, kind: u8, link: &str) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind,
            mode: 0o755,
            mtime: 1_600_000_000,
            link: link.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn rich_tar() -> Vec<u8> {
        let mut t = Vec::new();
        write_entry(&mut t, &entry("etc/", b'5', ""), b"").unwrap();
        write_entry(
            &mut t,
            &file("etc/passwd", 0, 0o644, 1_600_000_000),
            b"root:x:0:0\n",
        )
        .unwrap();
        write_entry(&mut t, &file("etc/empty", 0, 0o600, 1), b"").unwrap();
        let long = format!("etc/{}/{}", "d".repeat(120), "f".repeat(200));
        write_entry(&mut t, &file(&long, 0, 0o644, 5), b"long name").unwrap();
        write_entry(&mut t, &entry("etc/hard", b'1', "etc/passwd"), b"").unwrap();
        write_entry(&mut t, &entry("etc/sym", b'2', "../etc/passwd"), b"").unwrap();
        write_entry(&mut t, &entry("etc/longsym", b'2', &"x/".repeat(90)), b"").unwrap();
        let mut dev = entry("dev/null", b'3', "");
        dev.devmajor = 1;
        dev.devminor = 3;
        dev.mode = 0o666;
        write_entry(&mut t, &dev, b"").unwrap();
        write_entry(&mut t, &entry("dev/fifo", b'6', ""), b"").unwrap();
        let mut x = file("bin/cap", 0, 0o4755, 7);
        x.uid = 1000;
        x.gid = 2000;
        x.xattrs = vec![("user.note".into(), b"hello\0world".to_vec())];
        write_entry(&mut t, &x, b"#!/bin/sh\n").unwrap();
        // GNU long name, hand-made ('L' block then the real header).
        let gnu = "gnu/".to_string() + &"g".repeat(150);
        let mut ln = entry("././@LongLink", b'L', "");
        ln.mode = 0o644;
        let mut data = gnu.as_bytes().to_vec();
        data.push(0);
        write_entry(&mut t, &ln, &data).unwrap();
        write_entry(&mut t, &file(&gnu[..100], 0, 0o644, 9), b"gnu long").unwrap();
        // A sparse-ish big file: 3 MiB, mostly zeros.
        let mut big = vec![0u8; 3 << 20];
        big[1 << 20] = 1;
        write_entry(&mut t, &file("big", 0, 0o644, 11), &big).unwrap();
        write_end(&mut t).unwrap();
        t.extend_from_slice(&[0u8; 4096]); // record-size padding, as GNU tar writes
        t
    }

    #[test]
    fn regenerates_the_exact_tar() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let tar = rich_tar();
        let info = s.ingest_layer(&lease, &tar[..]).unwrap();
        assert_eq!(info.diff_id, Digest::of(&tar));
        assert_eq!(info.size, tar.len() as u64);
        let mut out = Vec::new();
        assert_eq!(
            s.write_layer_tar(&info.diff_id, &mut out).unwrap(),
            tar.len() as u64
        );
        assert!(out == tar, "regenerated tar differs");
        assert_eq!(s.layer(&info.diff_id).unwrap(), Some(info.clone()));
        assert_eq!(s.list_layers().unwrap(), vec![info.diff_id]);
        let root = s.layer_rootfs(&info.diff_id);
        let p = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        let h = fs::symlink_metadata(root.join("etc/hard")).unwrap();
        assert_eq!(p.ino(), h.ino());
        assert_eq!(
            fs::read_link(root.join("etc/sym")).unwrap(),
            Path::new("../etc/passwd")
        );
        let c = fs::symlink_metadata(root.join("bin/cap")).unwrap();
        assert_eq!(
            (c.mode() & 0o7777, c.uid(), c.gid(), c.mtime()),
            (0o4755, 1000, 2000, 7)
        );
        assert_eq!(
            xattr::get(root.join("bin/cap"), "user.note")
                .unwrap()
                .unwrap(),
            b"hello\0world"
        );
        let n = fs::symlink_metadata(root.join("dev/null")).unwrap();
        assert_eq!(n.rdev(), nix::sys::stat::makedev(1, 3));
        assert!(root.join("gnu").join("g".repeat(150)).is_file());
        // Every object re-hashes to its key; the record names them all.
        let objs = record_objects(s.root(), &info.diff_id.hex())
            .unwrap()
            .unwrap();
        assert!(objs.len() >= 6);
        for k in s.list_objects().unwrap() {
            s.verify_object(&k).unwrap();
        }
        // Second ingest of the same tar: same layer, no duplicate.
        let again = s.ingest_layer(&lease, &tar[..]).unwrap();
        assert_eq!(again, info);
        assert_eq!(
            fs::read_dir(s.root().join("layers/tmp")).unwrap().count(),
            0
        );
        // Compressed cache.
        let blob = s.put_blob(&lease, b"pretend gzip").unwrap();
        assert_eq!(
            s.compressed_blob(&info.diff_id, Compression::Gzip).unwrap(),
            None
        );
        s.set_compressed_blob(&lease, &info.diff_id, Compression::Gzip, &blob)
            .unwrap();
        assert_eq!(
            s.compressed_blob(&info.diff_id, Compression::Gzip).unwrap(),
            Some(blob)
        );
        assert!(s.remove_layer(&info.diff_id).unwrap());
        assert!(!s.remove_layer(&info.diff_id).unwrap());
        assert_eq!(s.layer(&info.diff_id).unwrap(), None);
    }

    /// The tar is read in whatever stretches its reader's buffer holds: headers, file data,
    /// padding and the trailing bytes may all be cut anywhere.
    #[test]
    fn any_buffer_size_gives_the_same_layer() {
        let tar = rich_tar();
        let mut infos = Vec::new();
        for cap in [61, 512, 513, 4096, 1 << 20] {
            let (_d, s) = store();
            let lease = s.lease().unwrap();
            let info = s
                .ingest_layer(&lease, io::BufReader::with_capacity(cap, &tar[..]))
                .unwrap();
            let mut out = Vec::new();
            s.write_layer_tar(&info.diff_id, &mut out).unwrap();
            assert!(out == tar, "regenerated tar differs (buffer of {cap})");
            infos.push(info);
        }
        assert!(infos.windows(2).all(|w| w[0] == w[1]), "{infos:?}");
        assert_eq!(infos[0].diff_id, Digest::of(&tar));
        // Cut short in the big file's data, read in small stretches: an error, nothing committed.
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let cut = &tar[..tar.len() - 4096 - 1024 - 1000];
        let err = s
            .ingest_layer(&lease, io::BufReader::with_capacity(7, cut))
            .unwrap_err();
        assert!(err.to_string().contains("truncated archive"), "{err}");
        assert!(s.list_layers().unwrap().is_empty());
    }

    #[test]
    fn truncated_or_corrupt_tar_commits_nothing() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let tar = rich_tar();
        let mut bad_sum = tar.clone();
        bad_sum[10] ^= 1;
        for input in [
            &tar[..700],
            &tar[..1024],
            &tar[..tar.len() - 4096 - 1024],
            &bad_sum[..],
            &b""[..],
        ] {
            assert!(s.ingest_layer(&lease, input).is_err());
        }
        assert!(s.list_layers().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(s.root().join("layers/tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn dedup_shares_objects_and_metadata_is_part_of_the_key() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let mk = |variant: u8| {
            let mut t = Vec::new();
            for i in 0..100 {
                let data = if i < 95 {
                    format!("shared {i}")
                } else {
                    format!("own {variant} {i}")
                };
                write_entry(
                    &mut t,
                    &file(&format!("f{i}"), 0, 0o644, 100),
                    data.as_bytes(),
                )
                .unwrap();
            }
            let mode = if variant == 0 { 0o644 } else { 0o755 };
            write_entry(&mut t, &file("same", 0, mode, 100), b"same content").unwrap();
            write_end(&mut t).unwrap();
            t
        };
        let a = s.ingest_layer(&lease, &mk(0)[..]).unwrap();
        let b = s.ingest_layer(&lease, &mk(1)[..]).unwrap();
        assert_ne!(a.diff_id, b.diff_id);
        let (ra, rb) = (s.layer_rootfs(&a.diff_id), s.layer_rootfs(&b.diff_id));
        for i in 0..100 {
            let ma = fs::metadata(ra.join(format!("f{i}"))).unwrap();
            let mb = fs::metadata(rb.join(format!("f{i}"))).unwrap();
            if i < 95 {
                assert_eq!(ma.ino(), mb.ino());
                assert_eq!(ma.nlink(), 3, "object + two layers");
            } else {
                assert_ne!(ma.ino(), mb.ino());
                assert_eq!(ma.nlink(), 2);
            }
        }
        let sa = fs::metadata(ra.join("same")).unwrap();
        let sb = fs::metadata(rb.join("same")).unwrap();
        assert_ne!(sa.ino(), sb.ino());
        assert_eq!(s.list_objects().unwrap().len(), 95 + 5 + 5 + 2);
    }
}
