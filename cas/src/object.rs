//! Deduplicated file objects: `<root>/objects/<hh>/<blake3-hex>`.
//!
//! # On-disk format
//!
//! Every regular file of every layer is stored once, as an *object*: a plain file whose content
//! and inode metadata are exactly those of the layer file. Layer trees (`layers/sha256/<d>/rootfs`)
//! hardlink these objects into place, so a file shared by two layers is one inode on disk.
//!
//! An object's name is its [`ObjectKey`]: the blake3 hash (64 lowercase hex digits) of
//!
//! ```text
//! b"strata.object.v2"
//! mode        u32 LE   (permission bits only: mode & 0o7777)
//! uid         u64 LE
//! gid         u64 LE
//! mtime secs  i64 LE
//! mtime nsec  u32 LE
//! xattrs      u64 LE count, then per xattr sorted by name:
//!             u64 LE name length, name bytes, u64 LE value length, value bytes
//! content     the blake3 hash (32 bytes) of the file's bytes
//! ```
//!
//! Hashing the content separately lets a caller that already knows a file's content hash (the
//! build context index) name its object for any metadata without reading the file again: a COPY
//! of 20,000 unchanged files only hardlinks existing objects.
//!
//! The file lives at `objects/<first two hex digits>/<all 64 hex digits>`. `security.selinux` is
//! never part of a key (the host labels files itself) and is ignored by [`verify_object`].
//!
//! # Write path
//!
//! [`ObjectWriter`] streams the content into a temp file in a caller-chosen temp directory on
//! the store's file system (layer ingestion uses `layers/tmp/<id>/tmp/`, which GC leaves alone
//! while the ingest's `lock` is held), hashing as it goes. [`ObjectWriter::commit`] then applies
//! the metadata to the *temp* file through its fd (fchown, fchmod, fsetxattr, futimens; in that
//! order because chown clears set-id bits and capabilities) and renames it with
//! `RENAME_NOREPLACE` to its final name. If the name exists the object is already there (same key
//! = same content and metadata) and the temp file is dropped. There is no per-object fsync: the
//! layer commit makes all its objects durable with one `syncfs` (see [`crate::layer`]).
//!
//! A committed object is never written, chmod'ed or chown'ed again. It is removed only by GC,
//! and only when its link count is 1 (no layer tree links it).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fchmod, futimens};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, linkat};
use xattr::FileExt;

use crate::error::{Error, Result, io_err};
use crate::store::Store;

/// Version tag hashed first into every object key.
pub const KEY_VERSION: &[u8] = b"strata.object.v2";

/// Xattrs that never take part in an object (set by the host, not by images).
pub const IGNORED_XATTRS: &[&str] = &["security.selinux"];

/// The blake3 key of an object (content + metadata).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(pub [u8; 32]);

impl ObjectKey {
    /// The 64-char lowercase hex form used as the file name.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex digits.
    ///
    /// # Errors
    /// [`Error::Corrupt`] (with an empty path) when `s` is not 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        let bad = || Error::Corrupt {
            path: PathBuf::new(),
            message: format!("invalid object key {s:?}"),
        };
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectKey({})", self.hex())
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Inode metadata that is part of an object's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime_secs: i64,
    /// Nanoseconds part of the modification time (< 1e9).
    pub mtime_nanos: u32,
    /// Extended attributes, sorted by name, without [`IGNORED_XATTRS`].
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl ObjectMeta {
    /// Sorts and filters the xattrs into canonical form.
    pub fn normalize(&mut self) {
        self.mode &= 0o7777;
        self.xattrs
            .retain(|(k, _)| !IGNORED_XATTRS.contains(&k.as_str()));
        self.xattrs.sort_by(|a, b| a.0.cmp(&b.0));
        self.xattrs.dedup_by(|a, b| a.0 == b.0);
    }

    /// The key of an object with this metadata whose content hashes (blake3) to `content`.
    pub fn key(&self, content: &[u8; 32]) -> ObjectKey {
        let mut h = blake3::Hasher::new();
        h.update(KEY_VERSION);
        h.update(&(self.mode & 0o7777).to_le_bytes());
        h.update(&self.uid.to_le_bytes());
        h.update(&self.gid.to_le_bytes());
        h.update(&self.mtime_secs.to_le_bytes());
        h.update(&self.mtime_nanos.to_le_bytes());
        h.update(&(self.xattrs.len() as u64).to_le_bytes());
        for (k, v) in &self.xattrs {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
        }
        h.update(content);
        ObjectKey(*h.finalize().as_bytes())
    }

    /// Reads the metadata of an open file (for verification and `ingest_dir`).
    ///
    /// # Errors
    /// I/O errors from fstat / flistxattr / fgetxattr.
    pub fn of_file(file: &File, path: &Path) -> Result<Self> {
        let m = file.metadata().map_err(io_err(path))?;
        let mut xattrs = Vec::new();
        for name in file.list_xattr().map_err(io_err(path))? {
            let Some(name) = name.to_str().map(str::to_owned) else {
                continue;
            };
            if let Some(v) = file.get_xattr(&name).map_err(io_err(path))? {
                xattrs.push((name, v));
            }
        }
        let mut meta = ObjectMeta {
            mode: m.mode() & 0o7777,
            uid: u64::from(m.uid()),
            gid: u64::from(m.gid()),
            mtime_secs: m.mtime(),
            mtime_nanos: u32::try_from(m.mtime_nsec()).unwrap_or(0),
            xattrs,
        };
        meta.normalize();
        Ok(meta)
    }
}

/// Computes the key of in-memory content (tests, small files).
pub fn key_of(meta: &ObjectMeta, content: &[u8]) -> ObjectKey {
    meta.key(blake3::hash(content).as_bytes())
}

/// `objects/<hh>/<hex>` under `root`.
pub fn object_path_in(root: &Path, key: &ObjectKey) -> PathBuf {
    shard_path_in(root, key).join(key.hex())
}

/// `<root>/objects/<hh>`: the shard directory of `key`.
fn shard_path_in(root: &Path, key: &ObjectKey) -> PathBuf {
    root.join("objects").join(&key.hex()[..2])
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Streams one object into a temp file while hashing it; see the module docs.
#[derive(Debug)]
pub struct ObjectWriter {
    file: File,
    tmp: PathBuf,
    hasher: blake3::Hasher,
    meta: ObjectMeta,
    written: u64,
    done: bool,
}

impl ObjectWriter {
    /// Creates the temp file in `tmp_dir` (must be on the store's file system).
    ///
    /// # Errors
    /// I/O errors creating the temp file.
    pub fn new(tmp_dir: &Path, mut meta: ObjectMeta) -> Result<Self> {
        meta.normalize();
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = tmp_dir.join(format!("obj-{}-{n}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(Self {
            hasher: blake3::Hasher::new(),
            file,
            tmp,
            meta,
            written: 0,
            done: false,
        })
    }

    /// Bytes of content written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Applies the metadata to the temp file and renames it into `objects/`.
    /// Returns the key and whether a new object was created (false: it existed).
    ///
    /// # Errors
    /// Failure to apply metadata (e.g. not root and a foreign owner) or to rename.
    pub fn commit(mut self, store: &Store) -> Result<(ObjectKey, bool)> {
        let key = self.meta.key(self.hasher.finalize().as_bytes());
        let dest = store.object_path(&key);
        let meta = &self.meta;
        let tmp = self.tmp.clone();
        // Existing object: nothing to apply (saves four syscalls per deduplicated file).
        let torn = match store.stored_object(&key, self.written) {
            Stored::Whole => {
                self.discard();
                return Ok((key, false));
            }
            Stored::Torn => true,
            Stored::Missing => false,
        };
        apply_meta(&self.file, meta, &tmp)?;
        let renamed = if torn {
            store.sys.rename(&tmp, &dest)
        } else {
            store.sys.rename_noreplace(&tmp, &dest)
        };
        match renamed {
            Ok(()) => {}
            Err(e) if e.is_already_exists() => {
                self.discard();
                return Ok((key, false));
            }
            Err(e) if e.is_not_found() => {
                let parent = dest.parent().unwrap_or(&store.root);
                fs::create_dir_all(parent).map_err(io_err(parent))?;
                match store.sys.rename_noreplace(&tmp, &dest) {
                    Ok(()) => {}
                    Err(e) if e.is_already_exists() => {
                        self.discard();
                        return Ok((key, false));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.done = true;
        Ok((key, true))
    }

    fn discard(&mut self) {
        let _ = fs::remove_file(&self.tmp);
        self.done = true;
    }
}

/// What the store holds under an object's name, for content of a known size.
pub(crate) enum Stored {
    /// The object, whole.
    Whole,
    /// A same-named file of the wrong size: a torn write from a crash before the syncfs of its
    /// layer's commit. It is replaced (the one repair ever made to a committed name), never
    /// linked.
    Torn,
    /// Nothing.
    Missing,
}

impl Store {
    /// What is stored under `key` for content of `size` bytes (one `lstat`).
    pub(crate) fn stored_object(&self, key: &ObjectKey, size: u64) -> Stored {
        let Ok(Some(shard)) = self.object_shard(key, false) else {
            return Stored::Missing;
        };
        match nix::sys::stat::fstatat(shard, key.hex().as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(m) if m.st_mode & libc::S_IFMT == libc::S_IFREG && m.st_size as u64 == size => {
                Stored::Whole
            }
            Ok(_) => Stored::Torn,
            Err(_) => Stored::Missing,
        }
    }

    /// The open shard directory `objects/<hh>` of `key` ([`ShardDirs`]); `None` when it does
    /// not exist and `create` is false.
    ///
    /// # Errors
    /// Opening (or creating) the directory.
    pub(crate) fn object_shard(
        &self,
        key: &ObjectKey,
        create: bool,
    ) -> io::Result<Option<BorrowedFd<'_>>> {
        match self.shards.get(&self.root, key)? {
            None if create => {
                fs::create_dir_all(shard_path_in(&self.root, key))?;
                self.shards.get(&self.root, key)
            }
            found => Ok(found),
        }
    }
}

/// Lookups in one shard of `objects/` after which [`ObjectLookup`] considers reading the
/// shard's names.
const LIST_AFTER: u32 = 4;

/// Bytes of directory per lookup that a listing must save: a `statx` that finds nothing costs
/// about as much as listing a hundred names (some 80 bytes of directory each), so a shard is
/// listed once the lookups made in it would have paid for its listing.
const DIR_BYTES_PER_LOOKUP: u64 = 8000;

/// [`Store::stored_object`] for the many lookups of one extraction. Once a shard of `objects/`
/// (the first byte of the key) has been looked up in often enough to pay for a listing (at least
/// [`LIST_AFTER`] times, and once per [`DIR_BYTES_PER_LOOKUP`] of its directory's size, so a
/// huge shard is only listed for a layer with many files in it), its names are read in one
/// listing, and a key absent from the listing is missing without a `statx` of its own (a
/// negative lookup is the costliest kind: the whole small directory is searched). A key present
/// in the listing, or [`ObjectLookup::note`]d as placed since, is looked up as before.
///
/// A listing may go stale while the extraction runs, in safe directions only: an object that
/// another process adds later is taken as missing, which only loses that file's dedup (its
/// object link finds the name taken, and the file keeps its own inode, as in the race the
/// `statx` alone has); one that a prune removes is still looked up, and found missing.
pub(crate) struct ObjectLookup {
    lookups: [u32; 256],
    /// Per shard, the lookups that pay for its listing (known at [`LIST_AFTER`] lookups).
    list_at: [u64; 256],
    listed: Vec<Option<std::collections::HashSet<ObjectKey>>>,
    /// Keys placed by this extraction since its listings were read.
    noted: std::collections::HashSet<ObjectKey>,
}

impl ObjectLookup {
    pub(crate) fn new() -> ObjectLookup {
        ObjectLookup {
            lookups: [0; 256],
            list_at: [u64::MAX; 256],
            listed: vec![None; 256],
            noted: std::collections::HashSet::new(),
        }
    }

    /// What `store` holds under `key` for content of `size` bytes.
    pub(crate) fn stored(&mut self, store: &Store, key: &ObjectKey, size: u64) -> Stored {
        let shard = usize::from(key.0[0]);
        if !self.noted.contains(key) {
            match &self.listed[shard] {
                Some(names) if !names.contains(key) => return Stored::Missing,
                Some(_) => {}
                None => {
                    self.lookups[shard] += 1;
                    let n = self.lookups[shard];
                    if n == LIST_AFTER {
                        self.list_at[shard] = listing_pays_at(store, key);
                    }
                    if u64::from(n) >= self.list_at[shard] {
                        // A shard that cannot be listed keeps its lookups one by one.
                        self.listed[shard] = list_shard(store, key);
                        self.list_at[shard] = u64::MAX;
                    }
                }
            }
        }
        store.stored_object(key, size)
    }

    /// `key` is (or will be) stored by this extraction: it is always looked up.
    pub(crate) fn note(&mut self, key: ObjectKey) {
        self.noted.insert(key);
    }
}

/// The lookups in the shard of `key` that pay for listing it (see [`ObjectLookup`]).
fn listing_pays_at(store: &Store, key: &ObjectKey) -> u64 {
    match fs::metadata(shard_path_in(&store.root, key)) {
        Ok(m) => (m.len() / DIR_BYTES_PER_LOOKUP).max(u64::from(LIST_AFTER)),
        // Not created yet: nothing to list, at no cost.
        _ => u64::from(LIST_AFTER),
    }
}

/// The keys stored in the shard of `key` (none for a shard not created yet); `None` when it
/// cannot be read.
fn list_shard(store: &Store, key: &ObjectKey) -> Option<std::collections::HashSet<ObjectKey>> {
    let entries = match fs::read_dir(shard_path_in(&store.root, key)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(Default::default()),
        Err(_) => return None,
    };
    let mut names = std::collections::HashSet::new();
    for entry in entries {
        let entry = entry.ok()?;
        // Temp files and anything else that is not a key are not objects.
        if let Some(k) = entry
            .file_name()
            .to_str()
            .and_then(|n| ObjectKey::from_hex(n).ok())
        {
            names.insert(k);
        }
    }
    Some(names)
}

/// Gives a file just written for an object (an open fd: nothing to resolve) the object's
/// metadata: ownership first (chown clears set-id bits and `security.capability`), then the
/// mode, the xattrs, and the mtime last.
///
/// # Errors
/// The failing syscall, with `path` (what the file is) in the error.
pub(crate) fn apply_meta(file: &File, meta: &ObjectMeta, path: &Path) -> Result<()> {
    let sys_err = |e: nix::Error| Error::Io {
        path: path.to_path_buf(),
        source: io::Error::from(e),
    };
    let uid = u32::try_from(meta.uid)
        .map_err(|_| Error::Archive(format!("uid {} out of range", meta.uid)))?;
    let gid = u32::try_from(meta.gid)
        .map_err(|_| Error::Archive(format!("gid {} out of range", meta.gid)))?;
    // https://man7.org/linux/man-pages/man2/fchown.2.html
    fchown(file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(sys_err)?;
    // https://man7.org/linux/man-pages/man2/fchmod.2.html
    fchmod(file, Mode::from_bits_truncate(meta.mode & 0o7777)).map_err(sys_err)?;
    for (k, v) in &meta.xattrs {
        // https://man7.org/linux/man-pages/man2/fsetxattr.2.html
        file.set_xattr(k, v).map_err(io_err(path))?;
    }
    let mtime = TimeSpec::new(meta.mtime_secs, i64::from(meta.mtime_nanos));
    // https://man7.org/linux/man-pages/man2/futimens.2.html
    futimens(file, &mtime, &mtime).map_err(sys_err)
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Handles on the 256 shard directories of `objects/`, each opened (`O_PATH`) on first use and
/// kept for the life of the [`Store`]: a link to or from an object then looks up one name in its
/// shard, not the store's whole path (walking the two paths was a third of the `linkat`s of a
/// 20,000-file COPY). Shard directories are never removed (GC removes objects, not shards); a
/// shard that does not exist yet is not remembered, so a later call opens it once made.
#[derive(Debug)]
pub(crate) struct ShardDirs {
    fds: Box<[OnceLock<OwnedFd>]>,
}

impl ShardDirs {
    pub(crate) fn new() -> ShardDirs {
        ShardDirs {
            fds: (0..256).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The shard directory of `key` in the store at `root`; `None` when it does not exist.
    fn get(&self, root: &Path, key: &ObjectKey) -> io::Result<Option<BorrowedFd<'_>>> {
        let cell = &self.fds[usize::from(key.0[0])];
        if let Some(fd) = cell.get() {
            return Ok(Some(fd.as_fd()));
        }
        let dir = shard_path_in(root, key);
        match nix::fcntl::open(
            &dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => {
                // Another thread may have opened it meanwhile: either handle will do.
                let _ = cell.set(fd);
                Ok(cell.get().map(AsFd::as_fd))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Store {
    /// Names the object `key` `name` in the directory `parent` (a hardlink; `name` is not
    /// followed). `Ok(false)`, placing nothing, when the store has no such object.
    ///
    /// # Errors
    /// `linkat(2)` errors other than a missing object (e.g. `name` exists).
    pub fn link_object_at(
        &self,
        key: &ObjectKey,
        parent: BorrowedFd<'_>,
        name: &std::ffi::OsStr,
    ) -> io::Result<bool> {
        let Some(shard) = self.object_shard(key, false)? else {
            return Ok(false);
        };
        let hex = key.hex();
        // https://man7.org/linux/man-pages/man2/linkat.2.html (no AT_SYMLINK_FOLLOW)
        match linkat(shard, hex.as_str(), parent, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT)
                if nix::sys::stat::fstatat(shard, hex.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_err() =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the file `name` of `dir` (with `AT_EMPTY_PATH` and an empty name: the open file
    /// `dir` itself) the object name of `key` (a hardlink), creating its shard directory when
    /// missing. `EEXIST`: an object of that key is already there.
    pub(crate) fn name_object(
        &self,
        key: &ObjectKey,
        dir: BorrowedFd<'_>,
        name: &std::ffi::OsStr,
        flags: AtFlags,
    ) -> nix::Result<()> {
        let shard = self
            .object_shard(key, true)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
            .ok_or(Errno::ENOENT)?;
        // https://man7.org/linux/man-pages/man2/linkat.2.html
        linkat(dir, name, shard, key.hex().as_str(), flags)
    }

    /// `objects/<hh>/<hex>` for `key`.
    pub fn object_path(&self, key: &ObjectKey) -> PathBuf {
        object_path_in(&self.root, key)
    }

    /// Whether the object exists.
    pub fn has_object(&self, key: &ObjectKey) -> bool {
        self.object_path(key).is_file()
    }

    /// Every committed object (GC, verify, usage). Names that are not 64 hex digits are skipped.
    ///
    /// # Errors
    /// I/O errors reading `objects/`.
    pub fn list_objects(&self) -> Result<Vec<ObjectKey>> {
        let base = self.root.join("objects");
        let mut out = Vec::new();
        let rd = match fs::read_dir(&base) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&base)(e)),
        };
        for d in rd {
            let d = d.map_err(io_err(&base))?;
            let name = d.file_name();
            let Some(hh) = name.to_str() else { continue };
            if hh.len() != 2 {
                continue;
            }
            let sub = d.path();
            for f in fs::read_dir(&sub).map_err(io_err(&sub))? {
                let f = f.map_err(io_err(&sub))?;
                if let Some(k) = f
                    .file_name()
                    .to_str()
                    .and_then(|s| ObjectKey::from_hex(s).ok())
                    && k.hex().starts_with(hh)
                {
                    out.push(k);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes an object (GC). Returns false if it did not exist.
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn remove_object(&self, key: &ObjectKey) -> Result<bool> {
        match self.sys.remove_file(&self.object_path(key)) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-hashes an object from its content and inode metadata and compares with its name.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] when the object does not match its key; I/O errors.
    pub fn verify_object(&self, key: &ObjectKey) -> Result<()> {
        let path = self.object_path(key);
        let mut file = File::open(&path).map_err(io_err(&path))?;
        let meta = ObjectMeta::of_file(&file, &path)?;
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io_err(&path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let actual = meta.key(h.finalize().as_bytes()).hex();
        if actual != key.hex() {
            return Err(Error::DigestMismatch {
                path,
                expected: key.hex(),
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys in shard 7, told apart by their second byte.
    fn key7(n: u8) -> ObjectKey {
        let mut k = [0u8; 32];
        k[0] = 7;
        k[1] = n;
        ObjectKey(k)
    }

    fn put(store: &Store, key: &ObjectKey, data: &[u8]) {
        let path = store.object_path(key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    #[test]
    fn objects_are_linked_through_shard_handles() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let parent = File::open(out.path()).unwrap();
        let name = std::ffi::OsStr::new;
        // No shard yet: missing, and the missing shard is not remembered.
        assert!(
            !store
                .link_object_at(&key7(1), parent.as_fd(), name("a"))
                .unwrap()
        );
        assert!(matches!(store.stored_object(&key7(1), 3), Stored::Missing));
        put(&store, &key7(1), b"abc");
        assert!(matches!(store.stored_object(&key7(1), 3), Stored::Whole));
        assert!(matches!(store.stored_object(&key7(1), 4), Stored::Torn));
        assert!(
            store
                .link_object_at(&key7(1), parent.as_fd(), name("a"))
                .unwrap()
        );
        assert_eq!(fs::read(out.path().join("a")).unwrap(), b"abc");
        assert_eq!(fs::metadata(out.path().join("a")).unwrap().nlink(), 2);
        // Another key of the now open shard: missing; a taken name: an error.
        assert!(
            !store
                .link_object_at(&key7(2), parent.as_fd(), name("b"))
                .unwrap()
        );
        let taken = store.link_object_at(&key7(1), parent.as_fd(), name("a"));
        assert_eq!(taken.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        // A clone shares the handles.
        let clone = store.clone();
        assert!(
            clone
                .link_object_at(&key7(1), parent.as_fd(), name("c"))
                .unwrap()
        );
    }

    #[test]
    fn lookups_use_a_shard_listing_once_it_pays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut look = ObjectLookup::new();
        // A shard that does not exist yet: missing, then listed as empty.
        for n in 0..LIST_AFTER as u8 + 2 {
            assert!(matches!(look.stored(&store, &key7(n), 3), Stored::Missing));
        }
        // An object that appears behind the listing's back is taken as missing (its file then
        // simply keeps its own inode)...
        put(&store, &key7(200), b"abc");
        assert!(matches!(
            look.stored(&store, &key7(200), 3),
            Stored::Missing
        ));
        // ...unless this extraction placed it.
        look.note(key7(200));
        assert!(matches!(look.stored(&store, &key7(200), 3), Stored::Whole));

        // A shard listed with objects in it: present ones are still checked one by one.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        put(&store, &key7(1), b"abc");
        put(&store, &key7(2), b"torn");
        put(&store, &key7(3), b"abc");
        fs::write(
            store.object_path(&key7(9)).with_file_name("not-a-key"),
            b"x",
        )
        .unwrap();
        let mut look = ObjectLookup::new();
        for _ in 0..LIST_AFTER {
            assert!(matches!(look.stored(&store, &key7(1), 3), Stored::Whole));
        }
        assert!(look.listed[7].as_ref().is_some_and(|l| l.len() == 3));
        assert!(matches!(look.stored(&store, &key7(2), 3), Stored::Torn));
        assert!(matches!(look.stored(&store, &key7(4), 3), Stored::Missing));
        // Removed by a prune after the listing: found missing.
        fs::remove_file(store.object_path(&key7(3))).unwrap();
        assert!(matches!(look.stored(&store, &key7(3), 3), Stored::Missing));
        // Other shards are not affected.
        let mut other = key7(1);
        other.0[0] = 8;
        put(&store, &other, b"abc");
        assert!(matches!(look.stored(&store, &other, 3), Stored::Whole));

        // A large shard is listed only after as many lookups as its listing costs.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in 0..3000u32 {
            let mut k = key7(0);
            k.0[2..6].copy_from_slice(&n.to_be_bytes());
            put(&store, &k, b"");
        }
        let size = fs::metadata(store.object_path(&key7(0)).parent().unwrap())
            .unwrap()
            .len();
        let pays = size / DIR_BYTES_PER_LOOKUP;
        assert!(pays > u64::from(LIST_AFTER), "{size}");
        let mut look = ObjectLookup::new();
        for n in 1..=pays {
            assert!(look.listed[7].is_none(), "listed after {n} lookups");
            assert!(matches!(look.stored(&store, &key7(99), 0), Stored::Missing));
        }
        assert!(look.listed[7].as_ref().is_some_and(|l| l.len() == 3000));
    }

    #[test]
    fn key_depends_on_every_field() {
        let base = ObjectMeta {
            mode: 0o644,
            ..Default::default()
        };
        let k = key_of(&base, b"hello");
        assert_ne!(k, key_of(&base, b"hello!"));
        for m in [
            ObjectMeta {
                mode: 0o755,
                ..base.clone()
            },
            ObjectMeta {
                uid: 1,
                ..base.clone()
            },
            ObjectMeta {
                gid: 1,
                ..base.clone()
            },
            ObjectMeta {
                mtime_secs: 1,
                ..base.clone()
            },
            ObjectMeta {
                mtime_nanos: 1,
                ..base.clone()
            },
            ObjectMeta {
                xattrs: vec![("user.a".into(), b"b".to_vec())],
                ..base.clone()
            },
        ] {
            assert_ne!(k, key_of(&m, b"hello"), "{m:?}");
        }
        assert_eq!(ObjectKey::from_hex(&k.hex()).ok(), Some(k));
        assert!(ObjectKey::from_hex("../x").is_err());
        assert!(ObjectKey::from_hex(&k.hex().to_uppercase()).is_err());
    }
}
