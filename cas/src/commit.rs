//! Layers built in place: [`PendingLayer`], the executor's overlay upper dir or COPY target.
//!
//! `Store::begin_layer` makes a temp layer directory (`layers/tmp/<lease>-<n>/`, flocked like an
//! ingest) whose `rootfs/` the caller fills: a RUN step mounts it as the overlay upper dir (with
//! `work/` as the overlay work dir), a COPY writes files into it or places existing objects with
//! [`PendingLayer::link_object`]. [`PendingLayer::commit`] then turns that directory itself into
//! the layer, without copying any file:
//!
//! 1. one walk in tar order (the deterministic tar of [`crate::tarwrite`]) computes the diffID
//!    (sha256 of the tar stream, which is never written anywhere) and the layer record;
//! 2. each regular file becomes an object: a file placed by `link_object` already is one; any other
//!    file is hashed (blake3, in the same read as the sha256), stripped of `trusted.overlay.*`
//!    xattrs, and hardlinked into `objects/` under its key, or, when an equal object exists and the
//!    file has no other name, replaced by a hardlink to that object (deduplication);
//! 3. the commit ordering of [`crate::layer`] (flush, record, `layer.json`, rename) follows. The
//!    flush is an `fsync` of each object this layer created (its own files, and those callers
//!    report with [`PendingLayer::note_new_object`]) when there are at most 64 of them, else one
//!    `syncfs`; a layer made only of links to existing objects flushes no data at all.
//!
//! Hardlinks in the tar come from inodes shared *within the tree* only: files placed by
//! `link_object` never count as hardlinks of each other, even when they share an object.
//! Dropping a `PendingLayer` without committing removes its directory.
//!
//! # Deltas
//!
//! A layer much like an existing one (a COPY of a context where one file of 20,000 changed)
//! can be stored over it, its *base* ([`PendingLayer::use_base`]): the caller leaves to the
//! base every file it has with the same object at the same path
//! ([`PendingLayer::skip_in_base`]) and every directory it has as it is
//! ([`PendingLayer::leave_dir_to_base`]), so the tree holds only what differs and the cost of the
//! step grows with the change, not with the layer. The layer's content is the union of its tree
//! over the base's, as overlayfs shows two stacked lower dirs: [`Store::layer_dirs`] gives both,
//! and the commit walks the union (the diffID, the record and every regenerated tar are the
//! layer's own, byte for byte those of the whole tree). A union can only add and replace, so
//! [`PendingLayer::settle_base`] keeps the base only when every entry of the base is one of the
//! layer's, with a directory for a directory, and when the base gives more than twice the files
//! the tree holds. A base has no base itself, holds no whiteouts and no tar hardlinks, and lives
//! as long as its deltas (GC marks it with them).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use rustc_hash::FxHashMap;

use crate::digest::Digest;
use crate::error::{Error, Result, io_err};
use crate::layer::{Durability, LayerInfo, TempLayer};
use crate::lease::{Lease, LeaseHandle};
use crate::object::{ObjectKey, ObjectMeta};
use crate::record::{Batch, RecordWriter, hash_batches};
use crate::store::Store;
use crate::tarwrite::{
    Entry, Meta, Placed, Prefetch, Probe, TreeSink, pad, read_cached, shrank, walk_trees,
    write_end, write_header,
};

/// A layer being built in place; see the module docs.
pub struct PendingLayer<'s> {
    store: &'s Store,
    lease: &'s Lease,
    tmp: TempLayer,
    /// The layer this one is built over (see the module docs, Deltas).
    base: Option<LayerBase>,
    /// Directories left to the base ([`Self::leave_dir_to_base`]): paths (bytes).
    left_dirs: Mutex<Vec<Vec<u8>>>,
    /// Paths (bytes) placed with `link_object`, and their objects.
    linked: Mutex<FxHashMap<Vec<u8>, Placed>>,
    /// Objects this layer created (their data must be flushed before the commit).
    new_objects: Mutex<Vec<ObjectKey>>,
}

/// Up to this many new objects are flushed one by one; more take one `syncfs`.
const MAX_FSYNCS: usize = 64;

impl std::fmt::Debug for PendingLayer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLayer")
            .field("dir", &self.tmp.dir)
            .finish()
    }
}

impl Store {
    /// Reads what [`PendingLayer::set_base`] needs of the layer `base` (its entries), after
    /// recording it in `lease` (no prune removes it from then on). `None` when it cannot be a
    /// base: missing, a delta itself, or holding tar hardlinks or whiteouts (which a union of
    /// trees would not reproduce).
    ///
    /// # Errors
    /// I/O errors; an unreadable record of `base`.
    pub fn load_base(&self, lease: &LeaseHandle, base: &Digest) -> Result<Option<LayerBase>> {
        // In the lease first: a prune from now on keeps it; then it must still be there.
        lease.record_layer(base)?;
        if self.layer(base)?.is_none() || self.layer_base(base)?.is_some() {
            return Ok(None);
        }
        let path = self.layer_rootfs(base).with_file_name("record.zst");
        let file = File::open(&path).map_err(io_err(&path))?;
        let entries = crate::record::entries(io::BufReader::new(file))?;
        let mut paths = hashbrown::HashTable::with_capacity(entries.len());
        for (idx, e) in entries.iter().enumerate() {
            let name = e.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
            if e.kind == b'1' || name.starts_with(b".wh.") {
                return Ok(None);
            }
            if e.object.is_some() || e.kind == b'5' {
                let idx = u32::try_from(idx)
                    .map_err(|_| Error::Archive(format!("layer {base} has too many entries")))?;
                paths.insert_unique(path_hash(&e.path), idx, |&i| {
                    path_hash(&entries[i as usize].path)
                });
            }
        }
        let skipped = entries.iter().map(|_| AtomicU8::new(0)).collect();
        Ok(Some(LayerBase {
            diff_id: *base,
            entries,
            paths,
            skipped,
        }))
    }

    /// Starts a layer built in place (see [`crate::commit`]).
    ///
    /// # Errors
    /// I/O errors creating the temp directory.
    pub fn begin_layer<'s>(&'s self, lease: &'s Lease) -> Result<PendingLayer<'s>> {
        Ok(PendingLayer {
            store: self,
            lease,
            tmp: TempLayer::new(self, lease)?,
            base: None,
            left_dirs: Mutex::new(Vec::new()),
            linked: Mutex::new(FxHashMap::default()),
            new_objects: Mutex::new(Vec::new()),
        })
    }

    /// A short name for a layer's rootfs, relative to the store root (`l/<24 hex>`, a symlink to
    /// `../layers/sha256/<hex>/rootfs`), created if missing. Overlay mounts made from the store
    /// root with these names keep `lowerdir=` under one page even with 100+ layers.
    ///
    /// # Errors
    /// I/O errors creating the link.
    pub fn short_link(&self, diff_id: &Digest) -> Result<String> {
        let hex = diff_id.hex();
        let name = format!("l/{}", &hex[..24]);
        let path = self.root.join(&name);
        let target = PathBuf::from(format!("../layers/sha256/{hex}/rootfs"));
        match fs::read_link(&path) {
            Ok(t) if t == target => return Ok(name),
            Ok(_) => fs::remove_file(&path).map_err(io_err(&path))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        let dir = self.root.join("l");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        match std::os::unix::fs::symlink(&target, &path) {
            Ok(()) => Ok(name),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(name),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

impl PendingLayer<'_> {
    /// The directory to fill: it becomes the layer's tree.
    pub fn rootfs(&self) -> PathBuf {
        self.tmp.dir.join("rootfs")
    }

    /// An empty scratch directory on the store's file system (the overlay work dir).
    pub fn work_dir(&self) -> PathBuf {
        self.tmp.dir.join("work")
    }

    /// A temp directory on the store's file system for [`crate::object::ObjectWriter`]s whose
    /// objects are then placed with [`Self::link_object`].
    pub fn tmp_dir(&self) -> PathBuf {
        self.tmp.dir.join("tmp")
    }

    /// Whether nothing was placed in the tree (and it has no base).
    ///
    /// # Errors
    /// I/O errors reading the tree.
    pub fn is_empty(&self) -> Result<bool> {
        let root = self.rootfs();
        Ok(self.base.is_none() && fs::read_dir(&root).map_err(io_err(&root))?.next().is_none())
    }

    /// The directories whose union is the tree, top first (overlay lower dirs for a step that
    /// runs on it): [`Self::rootfs`], then the base's tree while the layer has one.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.rootfs()];
        dirs.extend(self.base_rootfs());
        dirs
    }

    /// Builds this layer over `base`, a committed layer the caller expects to be much like it
    /// (the same step's layer from an earlier build): a file the caller would link to an
    /// object that `base` has at the same path is left out of the tree
    /// ([`Self::skip_in_base`]), so is a directory equal to the base's
    /// ([`Self::leave_dir_to_base`]), and once everything is placed [`Self::settle_base`] says
    /// whether the tree over the base is exactly this layer. Returns false, changing nothing,
    /// when `base` cannot serve (see [`Store::load_base`]).
    ///
    /// # Errors
    /// As [`Store::load_base`].
    pub fn use_base(&mut self, base: &Digest) -> Result<bool> {
        let Some(base) = self.store.load_base(&self.lease.handle(), base)? else {
            return Ok(false);
        };
        self.set_base(base);
        Ok(true)
    }

    /// [`Self::use_base`] with a base loaded already.
    pub fn set_base(&mut self, base: LayerBase) {
        self.base = Some(base);
    }

    /// Whether the file at `rel` (relative to [`Self::rootfs`]) can be left to the base: the
    /// base has the object `key` there. The file then counts as placed by
    /// [`Self::link_object_at`] (with `bare` as there); nothing is written.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn skip_in_base(&self, key: &ObjectKey, rel: &str, bare: bool) -> Result<bool> {
        let Some(base) = &self.base else {
            return Ok(false);
        };
        let Some(idx) = base.index(rel.as_bytes()) else {
            return Ok(false);
        };
        if base.entries[idx].object.as_ref() != Some(key) {
            return Ok(false);
        }
        base.skipped[idx].store(SKIPPED | if bare { BARE } else { 0 }, Ordering::Relaxed);
        Ok(true)
    }

    /// Leaves all below the directory `rel` (relative to [`Self::rootfs`]) to the base, as
    /// [`Self::skip_in_base`] and [`Self::leave_dir_to_base`] would entry by entry: for a
    /// caller that knows the layer has exactly the base's entries there (a COPY of a source
    /// directory unchanged since the base was made of it), whose files have no xattrs. Returns
    /// the number of files left, or `None`, changing nothing, when the base has no directory
    /// `rel` or has below it anything but directories and regular files.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn leave_subtree_to_base(&self, rel: &str) -> Result<Option<u64>> {
        let Some(base) = &self.base else {
            return Ok(None);
        };
        let Some(idx) = base.index(rel.as_bytes()).filter(|_| !rel.is_empty()) else {
            return Ok(None);
        };
        if base.entries[idx].kind != b'5' {
            return Ok(None);
        }
        // The record is in the tree's pre-order: what is below a directory follows it.
        let below = |e: &&crate::record::RecordEntry| {
            e.path.get(rel.len()) == Some(&b'/') && e.path.starts_with(rel.as_bytes())
        };
        let end = idx + 1 + base.entries[idx + 1..].iter().take_while(below).count();
        let range = idx + 1..end;
        if !base.entries[range.clone()]
            .iter()
            .all(|e| e.kind == b'5' || e.object.is_some())
        {
            return Ok(None);
        }
        let mut dirs = Vec::new();
        let mut files = 0;
        for (e, mark) in base.entries[range.clone()].iter().zip(&base.skipped[range]) {
            if e.kind == b'5' {
                dirs.push(e.path.clone());
            } else {
                mark.store(SKIPPED | BARE, Ordering::Relaxed);
                files += 1;
            }
        }
        self.left_dirs
            .lock()
            .map_err(|_| Error::Archive("pending layer lock poisoned".into()))?
            .extend(dirs);
        Ok(Some(files))
    }

    /// The base's tree while the layer has one (see [`Self::use_base`]).
    pub fn base_rootfs(&self) -> Option<PathBuf> {
        self.base
            .as_ref()
            .map(|b| self.store.layer_rootfs(&b.diff_id))
    }

    /// Records that the directory `rel` (relative to [`Self::rootfs`]) of this layer is left
    /// to the base: the caller found the base's directory there equal to it (mode, owner,
    /// mtime, no xattrs) and did not create it.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn leave_dir_to_base(&self, rel: &str) -> Result<()> {
        self.left_dirs
            .lock()
            .map_err(|_| Error::Archive("pending layer lock poisoned".into()))?
            .push(rel.as_bytes().to_vec());
        Ok(())
    }

    /// Decides, once the tree is complete, whether the layer keeps its base (see
    /// [`Self::use_base`]): only when the tree over the base is exactly this layer, that is
    /// when every entry of the base is one of the layer's (a file or a directory left to the
    /// base, or the same name in the tree, a directory for a directory), and when the tree
    /// holds at most half as many files as the base gives it (past that, a layer of its own is
    /// the better base for the next build). With nothing left to the base, the tree is the
    /// layer and the base is dropped. Returns false when the base does not do: the tree is then
    /// not the layer, and the caller builds it again without a base (a file removed from a
    /// COPY's sources, say).
    ///
    /// # Errors
    /// I/O errors; a poisoned lock.
    pub fn settle_base(&mut self) -> Result<bool> {
        let poisoned = || Error::Archive("pending layer lock poisoned".into());
        let Some(base) = self.base.take() else {
            return Ok(true);
        };
        let root = self.rootfs();
        let left_dirs = std::mem::take(&mut *self.left_dirs.lock().map_err(|_| poisoned())?);
        let left_dirs: rustc_hash::FxHashSet<&[u8]> = left_dirs.iter().map(Vec::as_slice).collect();
        let mut tree = BTreeMap::new();
        if !scan_tree(&root, &root, &mut tree)? {
            return Ok(false);
        }
        // One pass over the base: each entry is the tree's (a name placed in the tree after
        // all wins over its skip), a directory for a directory, or left to the base.
        let mut clean = true;
        let mut skipped = 0usize;
        for (e, mark) in base.entries.iter().zip(&base.skipped) {
            let is_dir = e.kind == b'5';
            clean &= match tree.get(e.path.as_slice()) {
                Some(&tree_dir) => {
                    mark.store(0, Ordering::Relaxed);
                    tree_dir == is_dir
                }
                None if is_dir => left_dirs.contains(e.path.as_slice()),
                None => {
                    let left = mark.load(Ordering::Relaxed) & SKIPPED != 0;
                    skipped += usize::from(left);
                    left
                }
            };
        }
        if skipped == 0 && left_dirs.is_empty() {
            // Nothing left to the base: the tree is the whole layer.
            return Ok(true);
        }
        let own_files = tree.values().filter(|&&is_dir| !is_dir).count();
        if !clean || own_files * 2 > skipped {
            return Ok(false);
        }
        self.base = Some(base);
        Ok(true)
    }

    /// Places the object `key` at `dest` (a path inside [`Self::rootfs`]) as a hardlink.
    /// Returns false, placing nothing, when the store has no such object.
    ///
    /// # Errors
    /// I/O errors other than a missing object (e.g. `dest` exists).
    pub fn link_object(&self, key: &ObjectKey, dest: &Path) -> Result<bool> {
        self.link_object_at(key, nix::fcntl::AT_FDCWD, dest.as_os_str(), dest, false)
    }

    /// [`Self::link_object`] into the open directory `parent` under `name`, where `dest` is
    /// `parent/name` (for the record and errors): a caller placing many files opens each
    /// directory once and saves every link the walk of the whole path. `bare` says that the
    /// object's metadata (which its key covers) has no xattrs: the commit then does not list
    /// them.
    ///
    /// # Errors
    /// As [`Self::link_object`].
    pub fn link_object_at(
        &self,
        key: &ObjectKey,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        dest: &Path,
        bare: bool,
    ) -> Result<bool> {
        if !self
            .store
            .link_object_at(key, parent, name)
            .map_err(io_err(dest))?
        {
            return Ok(false);
        }
        self.linked
            .lock()
            .map_err(|_| Error::Archive("pending layer lock poisoned".into()))?
            .insert(
                dest.as_os_str().as_bytes().to_vec(),
                Placed { key: *key, bare },
            );
        Ok(true)
    }

    /// Records that the caller wrote the object `key` for this layer (an
    /// [`crate::object::ObjectWriter`] that reported a new object), so the commit flushes it.
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn note_new_object(&self, key: &ObjectKey) -> Result<()> {
        self.new_objects
            .lock()
            .map_err(|_| Error::Archive("pending layer lock poisoned".into()))?
            .push(*key);
        Ok(())
    }

    /// Turns the tree into a committed layer (see the module docs).
    ///
    /// # Errors
    /// I/O and syscall errors; a file that shrinks while being read.
    pub fn commit(self) -> Result<LayerInfo> {
        let hashed = self.hash(false)?;
        self.finish(hashed)
    }

    /// The first half of [`Self::commit`]: walks the tree into the record and the diffID, and
    /// turns new files into objects. With `in_use` (the tree is a lower dir of a running
    /// sandbox meanwhile) the tree is never changed: equal files are not replaced by links to
    /// existing objects.
    ///
    /// # Errors
    /// As [`Self::commit`].
    pub fn hash(&self, in_use: bool) -> Result<Hashed> {
        let poisoned = || Error::Archive("pending layer lock poisoned".into());
        let record_path = self.tmp.dir.join("record.zst");
        let record_file = File::create(&record_path).map_err(io_err(&record_path))?;
        let record =
            RecordWriter::new(BufWriter::new(record_file)).map_err(io_err(&record_path))?;
        // Taken, not cloned (20,000 paths for a big COPY): a layer is hashed once.
        let linked = std::mem::take(&mut *self.linked.lock().map_err(|_| poisoned())?);
        let mut new_objects =
            std::mem::take(&mut *self.new_objects.lock().map_err(|_| poisoned())?);
        // The walk (syscalls, reads, blake3 of new files, the record) and the sha256 of the tar
        // stream run on two threads: the sha256 of a large layer is the longest single task,
        // so its thread does nothing else. The walker packs headers and file contents into
        // large batches (no allocation per file) and records each; the hasher hashes each
        // batch in one call and hands it back for reuse.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(POOL - 1);
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Batch>();
        for _ in 0..POOL - 1 {
            let _ = free_tx.send(Batch::with_capacity(BATCH));
        }
        let dirs = self.dirs();
        let rootfs = self.rootfs();
        let prefetch = Prefetch::new();
        let (walked, hashed) = std::thread::scope(|s| {
            // Files evicted from the page cache since they were written are read back with
            // many reads in flight, not one at a time by the walk (once the walk meets one).
            s.spawn(|| prefetch.run(&dirs));
            let hasher = s.spawn(move || hash_batches(rx, &free_tx));
            let mut sink = CommitSink {
                store: self.store,
                linked,
                base: self.base.as_ref(),
                in_use,
                new_objects: &mut new_objects,
                tx,
                record,
                prefetch: &prefetch,
                probe: Probe::default(),
                batch: Batch::with_capacity(BATCH),
                free: free_rx,
                size: 0,
                entries: 0,
                unpacked: 0,
            };
            let walked = walk_trees(&rootfs, dirs.get(1).map(PathBuf::as_path), &mut sink)
                .and_then(|()| {
                    let mut end = Vec::new();
                    write_end(&mut end).map_err(io_err("<tar>"))?;
                    sink.raw(&end)?;
                    sink.flush()?;
                    Ok(())
                });
            let CommitSink {
                tx,
                record,
                size,
                entries,
                unpacked,
                ..
            } = sink;
            // The hasher ends once the channel closes.
            drop(tx);
            prefetch.stop();
            let hashed = hasher
                .join()
                .map_err(|_| Error::Archive("layer hasher thread panicked".into()));
            (walked.map(|()| (record, size, entries, unpacked)), hashed)
        });
        let (record, size, entries, unpacked) = walked?;
        let diff_id = hashed?;
        let info = LayerInfo {
            diff_id,
            size,
            entries,
            unpacked_bytes: unpacked,
        };
        Ok(Hashed {
            record,
            info,
            new_objects,
        })
    }

    /// The second half of [`Self::commit`]: flushes the new objects and commits the layer.
    ///
    /// # Errors
    /// I/O and syscall errors.
    pub fn finish(self, hashed: Hashed) -> Result<LayerInfo> {
        let Hashed {
            record,
            info,
            new_objects,
        } = hashed;
        if let Some(base) = &self.base {
            let path = self.tmp.dir.join(crate::layer::BASE_FILE);
            let mut f = File::create(&path).map_err(io_err(&path))?;
            writeln!(f, "{}", base.diff_id).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        let durability = if new_objects.len() <= MAX_FSYNCS {
            Durability::Objects(
                new_objects
                    .iter()
                    .map(|k| self.store.object_path(k))
                    .collect(),
            )
        } else {
            Durability::Syncfs
        };
        self.store
            .commit_temp(self.lease, self.tmp, record, info, durability)
    }
}

/// The base of a layer built as a delta ([`PendingLayer::use_base`], [`Store::load_base`]).
pub struct LayerBase {
    diff_id: Digest,
    /// Its tar entries.
    entries: Vec<crate::record::RecordEntry>,
    /// Its regular files and directories: indices in `entries`, by [`path_hash`] (see
    /// [`LayerBase::index`]).
    paths: hashbrown::HashTable<u32>,
    /// Per entry of `entries`: [`SKIPPED`] once the layer leaves the file to the base
    /// ([`PendingLayer::skip_in_base`]), with [`BARE`] when the object has no xattrs.
    skipped: Vec<AtomicU8>,
}

/// A base file left to the base (see [`LayerBase::skipped`]).
const SKIPPED: u8 = 1;
/// A skipped file whose object carries no xattrs.
const BARE: u8 = 2;

fn path_hash(path: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(path)
}

impl LayerBase {
    /// The index in `entries` of the regular file or directory at `rel`.
    fn index(&self, rel: &[u8]) -> Option<usize> {
        self.paths
            .find(path_hash(rel), |&i| self.entries[i as usize].path == rel)
            .map(|&i| i as usize)
    }

    /// The base file at `rel` when the layer left it to the base, as the commit's walk meets
    /// it in the base's tree.
    fn placed(&self, rel: &[u8]) -> Option<Placed> {
        let idx = self.index(rel)?;
        let mark = self.skipped[idx].load(Ordering::Relaxed);
        if mark & SKIPPED == 0 {
            return None;
        }
        Some(Placed {
            key: self.entries[idx].object?,
            bare: mark & BARE != 0,
        })
    }
}

impl std::fmt::Debug for LayerBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerBase")
            .field("diff_id", &self.diff_id)
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// Lists the tree under `dir` into `out` (relative path bytes, and whether each is a
/// directory); false when it holds something a union with a base would not keep as it is: an
/// overlay whiteout, or a directory with xattrs (an opaque one, say).
fn scan_tree(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, bool>) -> Result<bool> {
    let mut clean = true;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let m = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let rel = path
            .strip_prefix(root)
            .map_err(|_| Error::Archive(format!("{} outside the tree", path.display())))?
            .as_os_str()
            .as_bytes()
            .to_vec();
        if m.file_type().is_char_device() && m.rdev() == 0 {
            clean = false;
        }
        out.insert(rel, m.is_dir());
        if m.is_dir() {
            clean &= xattr::list(&path).map_err(io_err(&path))?.next().is_none();
            clean &= scan_tree(root, &path, out)?;
        }
    }
    Ok(clean)
}

/// A hashed pending layer ([`PendingLayer::hash`]), ready for [`PendingLayer::finish`].
pub struct Hashed {
    record: RecordWriter<BufWriter<File>>,
    info: LayerInfo,
    new_objects: Vec<ObjectKey>,
}

impl Hashed {
    /// The layer's diffID, size and counts.
    pub fn info(&self) -> &LayerInfo {
        &self.info
    }
}

impl std::fmt::Debug for Hashed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hashed").field("info", &self.info).finish()
    }
}

/// Bytes per batch sent to the hasher. Small enough that the batches in use stay few pages:
/// every page a build touches for the first time is a page fault, and in a VM that hands freed
/// memory back to its host (virtio-balloon free page reporting) each of those costs the host a
/// fault too. 512 KiB batches hash as fast as 4 MiB ones (the channel's cost per batch is
/// nothing next to a 512 KiB sha256), and the hasher starts after the first 512 KiB.
const BATCH: usize = 512 << 10;

/// Batches in use at once (walker, channel, hasher).
const POOL: usize = 6;

struct CommitSink<'s> {
    store: &'s Store,
    linked: FxHashMap<Vec<u8>, Placed>,
    /// The base the tree is walked over, if any.
    base: Option<&'s LayerBase>,
    /// The tree is in use as a lower dir: change nothing in it.
    in_use: bool,
    new_objects: &'s mut Vec<ObjectKey>,
    tx: std::sync::mpsc::SyncSender<Batch>,
    /// Each batch is recorded here before the hasher gets it.
    record: RecordWriter<BufWriter<File>>,
    prefetch: &'s Prefetch,
    /// Reads try the page cache alone until the cache looks cold, which starts `prefetch`.
    probe: Probe,
    /// The batch being filled.
    batch: Batch,
    /// Batches the hasher is done with.
    free: std::sync::mpsc::Receiver<Batch>,
    size: u64,
    entries: u64,
    unpacked: u64,
}

/// The error of a layer hasher thread (here, or in [`crate::extract`]) that stopped early.
pub(crate) fn hasher_gone() -> Error {
    Error::Archive("layer hasher thread stopped".into())
}

impl CommitSink<'_> {
    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.size += bytes.len() as u64;
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = self.room()?;
            let (now, later) = rest.split_at(rest.len().min(room));
            self.batch.push(now, true);
            rest = later;
        }
        Ok(())
    }

    /// Free bytes in the current batch (at least one: a full batch is sent first).
    fn room(&mut self) -> Result<usize> {
        if self.batch.bytes.len() >= BATCH {
            self.flush()?;
        }
        Ok(BATCH - self.batch.bytes.len())
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.events.is_empty() {
            return Ok(());
        }
        self.record
            .replay(&self.batch)
            .map_err(io_err("record.zst"))?;
        let next = self.free.recv().map_err(|_| hasher_gone())?;
        let full = std::mem::replace(&mut self.batch, next);
        self.tx.send(full).map_err(|_| hasher_gone())
    }

    /// Reads the file once, straight into the batch: its bytes go to the hasher (sha256 of the
    /// tar), and into `b3` (blake3) when the file's key is not known. Exactly `size` bytes are
    /// read: a file read to its known size needs no extra read to see its end.
    fn content(
        &mut self,
        path: &Path,
        file: File,
        size: u64,
        mut b3: Option<&mut blake3::Hasher>,
    ) -> Result<()> {
        let mut n = 0u64;
        while n < size {
            let room = self.room()?;
            let want = (size - n).min(room as u64);
            let start = self.batch.bytes.len();
            let mut cached = None;
            if self.probe.on() {
                // usize: `want` is at most `room`.
                cached = read_cached(&file, &mut self.batch.bytes, want as usize)
                    .map_err(io_err(path))?;
                if self.probe.cold(cached.is_none()) {
                    self.prefetch.start();
                }
            }
            let k = match cached {
                Some(k) => k,
                // read_to_end fills the spare capacity without zeroing it first.
                None => (&file)
                    .take(want)
                    .read_to_end(&mut self.batch.bytes)
                    .map_err(io_err(path))?,
            };
            if k == 0 {
                break;
            }
            if let Some(h) = b3.as_mut() {
                h.update(&self.batch.bytes[start..]);
            }
            self.batch.added(k, false);
            n += k as u64;
        }
        if n != size {
            return Err(shrank(path));
        }
        self.size += size;
        Ok(())
    }

    /// Makes `path` (not placed by `link_object`) an object; returns its key.
    fn objectify(&mut self, path: &Path, hash: &[u8; 32], m: &Meta) -> Result<ObjectKey> {
        // Overlay's own bookkeeping (origin, impure, ...) is not part of a layer.
        for name in xattr::list(path).map_err(io_err(path))? {
            if name
                .to_str()
                .is_some_and(|n| n.starts_with("trusted.overlay."))
            {
                xattr::remove(path, &name).map_err(io_err(path))?;
            }
        }
        let file = File::open(path).map_err(io_err(path))?;
        let meta = ObjectMeta::of_file(&file, path)?;
        drop(file);
        let key = meta.key(hash);
        let obj = self.store.object_path(&key);
        match self.store.name_object(
            &key,
            nix::fcntl::AT_FDCWD,
            path.as_os_str(),
            nix::fcntl::AtFlags::empty(),
        ) {
            Ok(()) => {
                self.new_objects.push(key);
                return Ok(key);
            }
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(io_err(&obj)(e.into())),
        }
        // An equal object exists. A file with a single name is replaced by a link to it; a file
        // with several names keeps its inode (the tree's hardlinks must stay one inode).
        let om = fs::symlink_metadata(&obj).map_err(io_err(&obj))?;
        if !self.in_use
            && m.nlink == 1
            && om.len() == m.size
            && (om.dev(), om.ino()) != (m.dev, m.ino)
        {
            let tmp = path.with_file_name(format!(
                ".strata-dedup-{}",
                path.file_name().map(|n| n.len()).unwrap_or(0)
            ));
            fs::hard_link(&obj, &tmp).map_err(io_err(&tmp))?;
            fs::rename(&tmp, path).map_err(io_err(path))?;
        }
        Ok(key)
    }
}

impl TreeSink for CommitSink<'_> {
    fn header(&mut self, e: &Entry) -> Result<()> {
        let mut h = Vec::with_capacity(1024);
        write_header(&mut h, e).map_err(io_err("<tar>"))?;
        self.entries += 1;
        self.raw(&h)
    }

    fn file(
        &mut self,
        path: &Path,
        e: &Entry,
        m: &Meta,
        f: File,
        placed: Option<Placed>,
    ) -> Result<()> {
        let mut h = Vec::with_capacity(1024);
        write_header(&mut h, e).map_err(io_err("<tar>"))?;
        self.entries += 1;
        self.raw(&h)?;
        let key = match placed {
            Some(p) => {
                self.content(path, f, e.size, None)?;
                p.key
            }
            None => {
                let mut b3 = blake3::Hasher::new();
                self.content(path, f, e.size, Some(&mut b3))?;
                self.objectify(path, b3.finalize().as_bytes(), m)?
            }
        };
        self.batch.file(key, e.size);
        self.unpacked += e.size;
        let mut p = Vec::new();
        pad(&mut p, e.size).map_err(io_err("<tar>"))?;
        self.raw(&p)
    }

    /// A file placed by `link_object`, or one of the base's left to it (an object has at
    /// least two names: its own and this one; a path replaced by a single-named file
    /// afterwards is not trusted).
    fn placed(&self, path: &Path, rel: &[u8], m: &Meta, below: bool) -> Option<Placed> {
        if m.nlink < 2 {
            return None;
        }
        if below {
            return self.base.and_then(|b| b.placed(rel));
        }
        self.linked.get(path.as_os_str().as_bytes()).copied()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use nix::sys::stat::{Mode, SFlag, makedev, mknod};

    use super::*;
    use crate::layer::tests::store;
    use crate::object::key_of;
    use crate::tarwrite::write_dir_tar;

    fn regenerated(s: &Store, d: &Digest) -> Vec<u8> {
        let mut out = Vec::new();
        s.write_layer_tar(d, &mut out).unwrap();
        out
    }

    /// Sets an entry's mtime (whole seconds plus `nanos`) without following it.
    fn stamp(p: &Path, secs: i64, nanos: i64) {
        let t = nix::sys::time::TimeSpec::new(secs, nanos);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            p,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    /// A committed layer of `files` (path, content) under a directory `a` (mode 0750,
    /// mtime `dir_time`), every file with mtime 1.5e9.
    fn plain_layer(s: &Store, lease: &Lease, files: &[(&str, &str)], dir_time: i64) -> LayerInfo {
        let p = s.begin_layer(lease).unwrap();
        let r = p.rootfs();
        fs::create_dir(r.join("a")).unwrap();
        fs::set_permissions(r.join("a"), fs::Permissions::from_mode(0o750)).unwrap();
        for (name, content) in files {
            fs::write(r.join("a").join(name), content).unwrap();
            stamp(&r.join("a").join(name), 1_500_000_000, 0);
        }
        stamp(&r.join("a"), dir_time, 7);
        p.commit().unwrap()
    }

    #[test]
    fn a_layer_stored_over_a_base_is_the_layer_a_whole_tree_makes() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let names: Vec<String> = (0..40).map(|i| format!("f{i:02}")).collect();
        let mut files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), n.as_str())).collect();
        let base = plain_layer(&s, &lease, &files, 1_600_000_000);
        let base_entries = crate::record::entries(
            File::open(s.layer_rootfs(&base.diff_id).with_file_name("record.zst")).unwrap(),
        )
        .unwrap();
        assert_eq!(base_entries.len(), 41);
        assert_eq!(
            (base_entries[0].path.as_slice(), base_entries[0].kind),
            (&b"a"[..], b'5')
        );
        let key_of_base = |name: &str| {
            base_entries
                .iter()
                .find(|e| e.path == format!("a/{name}").into_bytes())
                .and_then(|e| e.object)
                .unwrap()
        };

        // The same layer but f07 edited: f07 and its directory in the tree, the rest left to the
        // base.
        files[7].1 = "edited";
        let whole = {
            let (_d2, s2) = store();
            let l2 = s2.lease().unwrap();
            let info = plain_layer(&s2, &l2, &files, 1_600_000_000);
            regenerated(&s2, &info.diff_id)
        };
        let mut p = s.begin_layer(&lease).unwrap();
        assert!(p.use_base(&base.diff_id).unwrap());
        let r = p.rootfs();
        fs::create_dir(r.join("a")).unwrap();
        fs::set_permissions(r.join("a"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(r.join("a/f07"), "edited").unwrap();
        stamp(&r.join("a/f07"), 1_500_000_000, 0);
        stamp(&r.join("a"), 1_600_000_000, 7);
        for name in names.iter().filter(|n| *n != "f07") {
            let rel = format!("a/{name}");
            assert!(p.skip_in_base(&key_of_base(name), &rel, true).unwrap());
        }
        // A key the base does not have there is not skipped.
        assert!(!p.skip_in_base(&key_of_base("f01"), "a/f02", true).unwrap());
        assert!(p.settle_base().unwrap());
        assert_eq!(p.dirs(), vec![r.clone(), s.layer_rootfs(&base.diff_id)]);
        assert!(!p.is_empty().unwrap());
        let info = p.commit().unwrap();
        assert!(regenerated(&s, &info.diff_id) == whole);
        assert_eq!(info.diff_id, Digest::of(&whole));
        assert_eq!(s.layer_base(&info.diff_id).unwrap(), Some(base.diff_id));
        assert_eq!(
            s.layer_dirs(&info.diff_id).unwrap(),
            vec![s.layer_rootfs(&info.diff_id), s.layer_rootfs(&base.diff_id)]
        );
        let own: Vec<_> = fs::read_dir(s.layer_rootfs(&info.diff_id).join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(own, ["f07"]);
        assert!(s.verify().unwrap().is_empty(), "{:?}", s.verify());
        // A delta is never a base.
        let mut p = s.begin_layer(&lease).unwrap();
        assert!(!p.use_base(&info.diff_id).unwrap());
        assert!(p.settle_base().unwrap(), "no base: the tree is the layer");
    }

    #[test]
    fn a_base_with_more_than_the_layer_is_refused_after_the_placement() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let files = [("x", "1"), ("y", "2"), ("z", "3")];
        let base = plain_layer(&s, &lease, &files, 1_600_000_000);
        let entries = crate::record::entries(
            File::open(s.layer_rootfs(&base.diff_id).with_file_name("record.zst")).unwrap(),
        )
        .unwrap();
        let key = |p: &[u8]| {
            entries
                .iter()
                .find(|e| e.path == p)
                .unwrap()
                .object
                .unwrap()
        };
        // The layer has x and y as the base has them, and an equal `a`, but no z.
        let mut p = s.begin_layer(&lease).unwrap();
        assert!(p.use_base(&base.diff_id).unwrap());
        assert!(p.skip_in_base(&key(b"a/x"), "a/x", true).unwrap());
        assert!(p.skip_in_base(&key(b"a/y"), "a/y", true).unwrap());
        p.leave_dir_to_base("a").unwrap();
        assert!(!p.settle_base().unwrap());
        // With z too, the tree (empty) over the base is the layer: the base's own diffID.
        let mut p = s.begin_layer(&lease).unwrap();
        assert!(p.use_base(&base.diff_id).unwrap());
        for f in [&b"a/x"[..], b"a/y", b"a/z"] {
            let rel = std::str::from_utf8(f).unwrap();
            assert!(p.skip_in_base(&key(f), rel, true).unwrap());
        }
        p.leave_dir_to_base("a").unwrap();
        assert!(p.settle_base().unwrap());
        assert!(!p.is_empty().unwrap());
        assert_eq!(p.commit().unwrap().diff_id, base.diff_id);
    }

    #[test]
    fn a_subtree_left_to_the_base_is_taken_whole_or_not_at_all() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let layer = |dirs: &[&str], files: &[&str], links: &[(&str, &str)]| {
            let p = s.begin_layer(&lease).unwrap();
            let r = p.rootfs();
            for d in dirs {
                fs::create_dir(r.join(d)).unwrap();
            }
            for f in files {
                fs::write(r.join(f), f).unwrap();
            }
            for (target, at) in links {
                std::os::unix::fs::symlink(target, r.join(at)).unwrap();
            }
            p.commit().unwrap().diff_id
        };
        let base = layer(&["a", "a/sub"], &["a/f0", "a/sub/s0", "a/sub/s1"], &[]);
        let mut p = s.begin_layer(&lease).unwrap();
        assert!(p.use_base(&base).unwrap());
        assert_eq!(p.leave_subtree_to_base("a/f0").unwrap(), None, "a file");
        assert_eq!(
            p.leave_subtree_to_base("z").unwrap(),
            None,
            "not in the base"
        );
        assert_eq!(p.leave_subtree_to_base("").unwrap(), None, "the root");
        assert_eq!(p.leave_subtree_to_base("a/sub").unwrap(), Some(2));
        assert_eq!(p.leave_subtree_to_base("a").unwrap(), Some(3));
        p.leave_dir_to_base("a").unwrap();
        assert!(p.settle_base().unwrap());
        assert_eq!(
            p.commit().unwrap().diff_id,
            base,
            "the base, entry for entry"
        );

        // A symlink below: nothing is left, so the empty tree is not the layer.
        let base = layer(&["b"], &["b/x"], &[("x", "b/l")]);
        let mut p = s.begin_layer(&lease).unwrap();
        assert!(p.use_base(&base).unwrap());
        assert_eq!(p.leave_subtree_to_base("b").unwrap(), None);
        p.leave_dir_to_base("b").unwrap();
        assert!(!p.settle_base().unwrap());
    }

    #[test]
    fn record_entries_name_every_entry_and_object() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let p = s.begin_layer(&lease).unwrap();
        let r = p.rootfs();
        let long = "n".repeat(150);
        fs::create_dir_all(r.join("d").join(&long)).unwrap();
        fs::write(r.join("d").join(&long).join("f"), "deep").unwrap();
        fs::write(r.join("e"), "").unwrap();
        fs::hard_link(r.join("e"), r.join("e2")).unwrap();
        symlink("x".repeat(120), r.join("l")).unwrap();
        let info = p.commit().unwrap();
        let got = crate::record::entries(
            File::open(s.layer_rootfs(&info.diff_id).with_file_name("record.zst")).unwrap(),
        )
        .unwrap();
        let names: Vec<(String, u8, bool)> = got
            .iter()
            .map(|e| {
                (
                    String::from_utf8(e.path.clone()).unwrap(),
                    e.kind,
                    e.object.is_some(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("d".into(), b'5', false),
                (format!("d/{long}"), b'5', false),
                (format!("d/{long}/f"), b'0', true),
                ("e".into(), b'0', true),
                ("e2".into(), b'1', false),
                ("l".into(), b'2', false),
            ]
        );
    }

    #[test]
    fn upper_dir_becomes_the_layer_without_copies() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let p = s.begin_layer(&lease).unwrap();
        let r = p.rootfs();
        fs::create_dir_all(r.join("etc/opq")).unwrap();
        fs::write(r.join("etc/a"), "alpha").unwrap();
        fs::hard_link(r.join("etc/a"), r.join("etc/a2")).unwrap();
        fs::write(r.join("big"), vec![9u8; 3 << 20]).unwrap();
        fs::set_permissions(r.join("big"), fs::Permissions::from_mode(0o750)).unwrap();
        xattr::set(r.join("big"), "trusted.overlay.origin", b"xyz").unwrap();
        xattr::set(r.join("etc/opq"), "trusted.overlay.opaque", b"y").unwrap();
        symlink("a", r.join("etc/l")).unwrap();
        mknod(
            &r.join("gone"),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .unwrap();
        let mut expected = Vec::new();
        write_dir_tar(&r, &mut expected).unwrap();
        let ino = fs::metadata(r.join("big")).unwrap().ino();
        assert!(!p.is_empty().unwrap());
        let info = p.commit().unwrap();
        assert_eq!(info.diff_id, Digest::of(&expected));
        assert_eq!(info.size, expected.len() as u64);
        assert!(regenerated(&s, &info.diff_id) == expected);
        let tree = s.layer_rootfs(&info.diff_id);
        // No copy: the very inode written by the step is the object now, without overlay xattrs.
        let m = fs::metadata(tree.join("big")).unwrap();
        assert_eq!(m.ino(), ino);
        assert_eq!(m.nlink(), 2);
        assert!(
            xattr::get(tree.join("big"), "trusted.overlay.origin")
                .unwrap()
                .is_none()
        );
        // The tree's own hardlink pair stays one inode (plus the object name).
        let a = fs::metadata(tree.join("etc/a")).unwrap();
        assert_eq!(a.ino(), fs::metadata(tree.join("etc/a2")).unwrap().ino());
        assert_eq!(a.nlink(), 3);
        assert!(s.verify().unwrap().is_empty(), "{:?}", s.verify());
        assert!(!tree.parent().unwrap().join("work").exists());
    }

    #[test]
    fn linked_objects_are_not_tar_hardlinks_and_equal_files_dedup() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        // A first layer creates the object for "same" (0644, root, mtime 0).
        let first = s.begin_layer(&lease).unwrap();
        fs::write(first.rootfs().join("x"), "same").unwrap();
        fs::set_permissions(first.rootfs().join("x"), fs::Permissions::from_mode(0o644)).unwrap();
        let f = File::open(first.rootfs().join("x")).unwrap();
        let key = ObjectMeta::of_file(&f, Path::new("x"))
            .unwrap()
            .key(blake3::hash(b"same").as_bytes());
        drop(f);
        first.commit().unwrap();
        assert!(s.has_object(&key));

        let p = s.begin_layer(&lease).unwrap();
        let r = p.rootfs();
        assert!(p.link_object(&key, &r.join("one")).unwrap());
        assert!(p.link_object(&key, &r.join("two")).unwrap());
        let missing = key_of(&ObjectMeta::default(), b"never stored");
        assert!(!p.link_object(&missing, &r.join("three")).unwrap());
        assert!(!r.join("three").exists());
        // An equal file written by a step is replaced by the existing object.
        fs::write(r.join("written"), "same").unwrap();
        let obj = fs::metadata(s.object_path(&key)).unwrap();
        fs::set_permissions(r.join("written"), fs::Permissions::from_mode(0o644)).unwrap();
        let t = nix::sys::time::TimeSpec::new(obj.mtime(), obj.mtime_nsec());
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &r.join("written"),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let info = p.commit().unwrap();
        // The tar holds three regular files, none a hardlink.
        let tar = regenerated(&s, &info.diff_id);
        let mut ar = tar::Archive::new(&tar[..]);
        let kinds: Vec<_> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect();
        assert_eq!(kinds, vec![tar::EntryType::Regular; 3]);
        let tree = s.layer_rootfs(&info.diff_id);
        let ino = fs::metadata(s.object_path(&key)).unwrap().ino();
        for n in ["one", "two", "written"] {
            assert_eq!(fs::metadata(tree.join(n)).unwrap().ino(), ino, "{n}");
        }
        assert!(s.verify().unwrap().is_empty());
    }

    #[test]
    fn only_new_objects_are_flushed() {
        use strata_sys::{Call, CallKind};
        let (_d, rec, s) = crate::layer::tests::recording_store();
        let lease = s.lease().unwrap();
        // A step's new file: its object (and only it) is fsynced, no syncfs.
        let p = s.begin_layer(&lease).unwrap();
        fs::write(p.rootfs().join("new"), "fresh").unwrap();
        rec.clear();
        let info = p.commit().unwrap();
        let tree = s.layer_rootfs(&info.diff_id);
        let ino = fs::metadata(tree.join("new")).unwrap().ino();
        let calls = rec.calls_of(&[CallKind::Fsync, CallKind::Syncfs]);
        assert!(
            !calls.iter().any(|c| matches!(c, Call::Syncfs(_))),
            "{calls:?}"
        );
        let key = s
            .list_objects()
            .unwrap()
            .into_iter()
            .find(|k| fs::metadata(s.object_path(k)).unwrap().ino() == ino)
            .unwrap();
        assert!(
            calls.contains(&Call::Fsync(s.object_path(&key))),
            "{calls:?}"
        );
        // Links to existing objects only: no data flush at all.
        let p = s.begin_layer(&lease).unwrap();
        assert!(p.link_object(&key, &p.rootfs().join("again")).unwrap());
        rec.clear();
        p.commit().unwrap();
        let calls = rec.calls_of(&[CallKind::Fsync, CallKind::Syncfs]);
        assert!(
            !calls.iter().any(|c| matches!(c, Call::Syncfs(_)))
                && !calls.contains(&Call::Fsync(s.object_path(&key))),
            "{calls:?}"
        );
        // Many new files: one syncfs.
        let p = s.begin_layer(&lease).unwrap();
        for i in 0..(MAX_FSYNCS + 1) {
            fs::write(p.rootfs().join(format!("f{i}")), format!("{i}")).unwrap();
        }
        rec.clear();
        p.commit().unwrap();
        assert_eq!(rec.calls_of(&[CallKind::Syncfs]).len(), 1);
    }

    #[test]
    fn short_links_point_at_the_rootfs() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let p = s.begin_layer(&lease).unwrap();
        fs::write(p.rootfs().join("f"), "x").unwrap();
        let info = p.commit().unwrap();
        let name = s.short_link(&info.diff_id).unwrap();
        assert_eq!(name.len(), 26);
        assert_eq!(s.short_link(&info.diff_id).unwrap(), name);
        assert_eq!(fs::read(s.root().join(&name).join("f")).unwrap(), b"x");
        assert!(s.remove_layer(&info.diff_id).unwrap());
        assert!(fs::symlink_metadata(s.root().join(&name)).is_err());
    }

    #[test]
    fn dropped_pending_layer_leaves_nothing() {
        let (_d, s) = store();
        let lease = s.lease().unwrap();
        let p = s.begin_layer(&lease).unwrap();
        fs::write(p.rootfs().join("f"), "x").unwrap();
        let dir = p.rootfs().parent().unwrap().to_path_buf();
        drop(p);
        assert!(!dir.exists());
    }
}
