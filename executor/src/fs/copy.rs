//! COPY (and ADD's local half), WORKDIR's `mkdir -p`, and the cache digest of COPY sources.
//!
//! # How a COPY writes its layer
//!
//! The destination image is a [`LayerView`]; the new layer is a [`PendingLayer`] whose rootfs is
//! put on top of that view ("the merged view"), exactly as overlayfs would stack it. Every
//! destination path is resolved in the merged view with the image root as `/`
//! ([`super::resolve`]), so `COPY f /linkdir/` lands where `/linkdir` points inside the image.
//! Before anything is created in a directory, that directory is *copied up* into the layer with
//! its own metadata (mode, owner, xattrs, mtime), as overlay's copy-up does; missing parents are
//! created `0755`, owned by the `--chown` owner (root otherwise), with the current time.
//! `--link` stacks the layer on an empty view instead: nothing of the image is looked at.
//!
//! Regular files are placed apart from the walk: the walk creates directories, symlinks and
//! special files and queues the files; the files are placed in parallel, each as a hardlink to
//! the store object named by (destination metadata, content blake3) when the source knows the
//! hash and the store has the object ([`PendingLayer::link_object_at`]: one `linkat(2)` from
//! the object's shard directory to the open destination directory), else streamed into an
//! [`ObjectWriter`] once and linked. With a single source (every destination queued once) the
//! files are placed while the walk goes on, a directory's files per batch; with several, a later
//! source may replace an earlier one's file, so they are placed after the walk. Directory mtimes
//! are applied last (creating entries changes them).
//!
//! A COPY of one source whose pending layer has a base (the same step's layer from an earlier
//! build, see `strata_cas::commit`) writes only what differs from it: a file whose object the
//! base has at the same path is left to the base, and a directory the base has with the same
//! mode, owner and mtime is only noted, and created (with its parents) once something is written
//! into it. Editing one file of 20,000 then links one file and creates its directories.
//!
//! # Docker's rules, as implemented
//!
//! - sources are relative to the source root; `..` above it is an error ("forbidden path outside
//!   the build context"); a missing source is an error (`"/x": not found`); a wildcard (Go
//!   `filepath.Match` per component) that matches nothing copies nothing, as in BuildKit;
//! - more than one source (after wildcard expansion) needs a destination ending in `/`;
//! - a relative destination is relative to WORKDIR; a destination ending in `/` (or `.`), or an
//!   existing directory, receives files under their own names; a directory source copies its
//!   *contents*; a symlink named as a source is followed inside the source root;
//! - copied entries keep mode and mtime; the owner is the `--chown` owner, else the source's owner
//!   for layer sources and `0:0` for the context ([`SourceTree::keeps_owner`]); `--chmod` (octal or
//!   symbolic, [`Chmod`]) applies to every copied file and directory;
//! - an existing directory keeps its metadata; a source directory over an existing
//!   non-directory is an error ("cannot copy to non-directory: /x"); anything else at a file's
//!   destination is replaced;
//! - `--parents` keeps each source's path (below a `/./` pivot when there is one), creating the
//!   intermediate directories with the source directories' metadata;
//! - `--exclude` patterns ([`Excluder`]) are matched against paths relative to each source
//!   (the name itself for a file source); an excluded directory is skipped with its contents.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Mutex, PoisonError};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use strata_cas::object::{ObjectKey, ObjectMeta, ObjectWriter};
use strata_cas::{PendingLayer, Store};

use super::pattern::{Excluder, has_meta};
use super::{
    FileKind, LayerView, SourceTree, Stat, add, base_name, clamp_rel, clean_rel, glob, join_rel,
    parent_rel, resolve,
};
use crate::error::{Error, Result, io_err};

/// A `--chmod` value: octal (`755`, `0644`) or symbolic (`u+x,g-w`, `a=rX`) as chmod(1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// The exact mode bits.
    Octal(u32),
    /// Clauses applied to each file's own mode.
    Symbolic(Vec<Clause>),
}

/// One symbolic clause: who, then operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    ops: Vec<(char, Perm)>,
}

/// The right-hand side of a symbolic operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    /// `rwxXst` letters.
    Letters(String),
    /// Copy of another class's bits (`u`, `g`, `o`).
    Copy(char),
}

impl Chmod {
    /// Parses a `--chmod` value.
    ///
    /// # Errors
    /// [`Error::Copy`] for anything that is neither an octal mode up to `7777` nor chmod(1)
    /// symbolic syntax.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::Copy(format!("invalid chmod parameter: {s:?}"));
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let m = u32::from_str_radix(s, 8).map_err(|_| bad())?;
            if m > 0o7777 {
                return Err(bad());
            }
            return Ok(Chmod::Octal(m));
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0u32;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => break,
                };
                chars.next();
            }
            let mut ops = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(bad());
                }
                let mut letters = String::new();
                let mut copy = None;
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' | 'w' | 'x' | 'X' | 's' | 't' if copy.is_none() => letters.push(c),
                        'u' | 'g' | 'o' if letters.is_empty() && copy.is_none() => copy = Some(c),
                        _ => break,
                    }
                    chars.next();
                }
                ops.push((
                    op,
                    match copy {
                        Some(c) => Perm::Copy(c),
                        None => Perm::Letters(letters),
                    },
                ));
            }
            if ops.is_empty() {
                return Err(bad());
            }
            clauses.push(Clause {
                who: if who == 0 { 0o7777 } else { who },
                ops,
            });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode of a file whose own mode is `mode` (`is_dir` for `X`).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for c in clauses {
            for (op, perm) in &c.ops {
                let bits = match perm {
                    Perm::Letters(l) => {
                        let mut b = 0u32;
                        for ch in l.chars() {
                            b |= match ch {
                                'r' => 0o444,
                                'w' => 0o222,
                                'x' => 0o111,
                                'X' if is_dir || mode & 0o111 != 0 => 0o111,
                                's' => 0o6000,
                                't' => 0o1000,
                                _ => 0,
                            };
                        }
                        b
                    }
                    Perm::Copy(src) => {
                        let v = match src {
                            'u' => (mode >> 6) & 7,
                            'g' => (mode >> 3) & 7,
                            _ => mode & 7,
                        };
                        v << 6 | v << 3 | v
                    }
                };
                let bits = bits & c.who;
                mode = match op {
                    '+' => mode | bits,
                    '-' => mode & !bits,
                    _ => (mode & !(c.who & 0o7777)) | bits,
                };
            }
        }
        mode
    }
}

/// One COPY or ADD, with its sources as written (ARG/ENV already expanded).
pub struct CopyRequest<'a> {
    /// Where sources are read: the context, or a [`LayerView`] of a stage or image.
    pub source: &'a dyn SourceTree,
    /// The source paths (and, for ADD, URLs).
    pub sources: Vec<String>,
    /// The destination as written.
    pub dest: String,
    /// The WORKDIR (absolute) that a relative destination is relative to.
    pub workdir: String,
    /// `--chown`, already resolved with [`super::resolve_chown`].
    pub chown: Option<(u32, u32)>,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// ADD rather than COPY.
    pub is_add: bool,
    /// ADD `--checksum=sha256:<hex>` (URLs only).
    pub checksum: Option<String>,
    /// ADD: extract local tar archives (ADD's default; `--unpack=false` turns it off).
    pub unpack: bool,
    /// The [`CopyStats::stamps`] of the walk that made the pending layer's base, when this
    /// same COPY made it: a source directory whose stamp is the same now is copied as the base
    /// has it, without a walk ([`PendingLayer::leave_subtree_to_base`]).
    pub base_stamps: Option<&'a DirStamps>,
}

/// Stamps ([`SourceTree::stamp`]) of a COPY's source directories, by destination (relative).
pub type DirStamps = FxHashMap<String, [u8; 32]>;

impl<'a> CopyRequest<'a> {
    /// A COPY of `sources` from `source` to `dest`, WORKDIR `/`, no options.
    pub fn new(source: &'a dyn SourceTree, sources: Vec<String>, dest: &str) -> Self {
        Self {
            source,
            sources,
            dest: dest.to_owned(),
            workdir: "/".to_owned(),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            exclude: Vec::new(),
            is_add: false,
            checksum: None,
            unpack: true,
            base_stamps: None,
        }
    }

    fn name(&self) -> &'static str {
        if self.is_add { "ADD" } else { "COPY" }
    }
}

/// What a COPY did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files placed.
    pub files: u64,
    /// Files placed as a hardlink to an existing object, without reading them.
    pub linked: u64,
    /// Bytes read and written into objects (files whose object had to be written).
    pub copied_bytes: u64,
    /// Objects that did not exist before.
    pub new_objects: u64,
    /// Directories created (copy-ups included).
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Fifos and devices created.
    pub specials: u64,
    /// Entries extracted from ADD archives.
    pub extracted: u64,
    /// Bytes downloaded by ADD.
    pub downloaded_bytes: u64,
    /// The stamp of each source directory the walk met, by destination, when the source tree
    /// keeps stamps ([`SourceTree::stamp`]).
    pub stamps: Vec<(String, [u8; 32])>,
}

/// A regular file to place in the second phase.
struct FileJob {
    src: String,
    dest: PathBuf,
    meta: ObjectMeta,
    hash: Option<[u8; 32]>,
    /// Written as a file of its own (not an object link): other names will hardlink it, and
    /// the layer must record them as tar hardlinks.
    own_inode: bool,
}

/// A directory's mode, owner and mtime.
type DirMeta = (u32, (u32, u32), (i64, u32));

/// The layer being written, on top of the destination view; shared with [`add`].
pub(crate) struct Writer<'a, 'p> {
    pub(crate) merged: LayerView,
    pub(crate) upper: PathBuf,
    pub(crate) pending: &'a PendingLayer<'p>,
    pub(crate) store: &'a Store,
    pub(crate) stats: CopyStats,
    /// Owner of missing parents.
    pub(crate) parent_owner: (u32, u32),
    pub(crate) now: (i64, u32),
    /// mtimes to apply to directories of the layer at the end.
    dir_times: BTreeMap<String, (i64, u32)>,
    /// Directories created here over nothing: their contents are only what this copy wrote.
    fresh: FxHashSet<String>,
    /// Entries created in fresh directories (true: a directory), so that looking them up
    /// needs no syscall.
    created: FxHashMap<String, bool>,
    jobs: Vec<FileJob>,
    /// Index of the job placing each destination: a later source for the same destination
    /// replaces it (the last wildcard match wins, as in BuildKit).
    job_of: FxHashMap<PathBuf, usize>,
    /// Hardlinks to make once the files are placed: (existing name, new name).
    links: Vec<(PathBuf, PathBuf)>,
    /// Where the first name of each source hardlink group was placed.
    link_first: FxHashMap<(u64, u64), PathBuf>,
    /// Set while a single source is walked (each destination is then queued once): files that
    /// are no hardlink group's name go to threads that place them while the walk goes on.
    early: Option<SyncSender<Vec<FileJob>>>,
    /// Files for `early` not sent yet (batches of one directory, [`EARLY_BATCH`] at most).
    early_batch: Vec<FileJob>,
    /// The tree of the pending layer's base while this COPY builds a delta over it (see
    /// [`Writer::make_dir_or_defer`]; one source, every destination written once).
    base: Option<PathBuf>,
    /// Directories of the layer not created in the tree (yet): the base has them as they
    /// are; created, with their parents, once something is written into them.
    deferred: FxHashMap<String, DirMeta>,
}

fn now() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (i64::try_from(d.as_secs()).unwrap_or(0), d.subsec_nanos())
}

fn abs(rel: &str) -> String {
    format!("/{rel}")
}

/// Sets an entry's times without following it.
pub(crate) fn set_times(path: &Path, t: (i64, u32)) -> Result<()> {
    let ts = TimeSpec::new(t.0, i64::from(t.1));
    // Why: mtimes are part of the layer; NoFollowSymlink so a symlink's own times are set and
    // nothing is ever reached through one. https://man7.org/linux/man-pages/man2/utimensat.2.html
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err(path)(e.into()))
}

/// Sets an entry's owner without following it.
pub(crate) fn set_owner(path: &Path, uid: u32, gid: u32) -> Result<()> {
    // Why: ownership is part of the layer; lchown never follows a symlink.
    // https://man7.org/linux/man-pages/man2/lchown.2.html
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_err(path))
}

impl<'a, 'p> Writer<'a, 'p> {
    pub(crate) fn new(
        lower: &LayerView,
        pending: &'a PendingLayer<'p>,
        store: &'a Store,
        parent_owner: (u32, u32),
    ) -> Self {
        let upper = pending.rootfs();
        Self {
            merged: lower.with_upper(upper.clone()),
            upper,
            pending,
            store,
            stats: CopyStats::default(),
            parent_owner,
            now: now(),
            dir_times: BTreeMap::new(),
            fresh: FxHashSet::default(),
            created: FxHashMap::default(),
            jobs: Vec::new(),
            job_of: FxHashMap::default(),
            links: Vec::new(),
            link_first: FxHashMap::default(),
            early: None,
            early_batch: Vec::new(),
            base: None,
            deferred: FxHashMap::default(),
        }
    }

    /// Sends the files batched for the early placing threads; if they stopped (their error is
    /// reported at the end), the files are queued as usual.
    fn send_early(&mut self) {
        if self.early_batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.early_batch);
        let back = match &self.early {
            Some(tx) => match tx.send(batch) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(back)) => back,
            },
            None => batch,
        };
        self.early = None;
        for job in back {
            self.job_of.insert(job.dest.clone(), self.jobs.len());
            self.jobs.push(job);
        }
    }

    /// Ends early placement: the last batch is sent and the channel closed.
    fn end_early(&mut self) {
        self.send_early();
        self.early = None;
    }

    pub(crate) fn upper_path(&self, rel: &str) -> PathBuf {
        self.upper.join(rel)
    }

    fn upper_lstat(&self, rel: &str) -> Result<Option<fs::Metadata>> {
        let p = self.upper_path(rel);
        match fs::symlink_metadata(&p) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(p)(e)),
        }
    }

    /// What the merged view has at `rel` (cheap below directories created fresh here).
    pub(crate) fn merged_stat(&self, rel: &str) -> Result<Option<Stat>> {
        if let Some(&(mode, (uid, gid), mtime)) = self.deferred.get(rel) {
            return Ok(Some(Stat {
                kind: FileKind::Dir,
                mode,
                uid,
                gid,
                size: 0,
                mtime,
                rdev: 0,
                hash: None,
                link_id: None,
            }));
        }
        if self.fresh.contains(parent_rel(rel)) && !rel.is_empty() {
            return Ok(self.created.get(rel).map(|&is_dir| Stat {
                kind: if is_dir {
                    FileKind::Dir
                } else {
                    FileKind::File
                },
                mode: 0,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: (0, 0),
                rdev: 0,
                hash: None,
                link_id: None,
            }));
        }
        self.merged.stat(rel)
    }

    /// Makes sure the directory `rel` (a directory of the merged view) exists in the layer,
    /// copying it (and its parents) up with their own metadata.
    pub(crate) fn copy_up(&mut self, rel: &str) -> Result<()> {
        if rel.is_empty() || self.fresh.contains(rel) || self.deferred.contains_key(rel) {
            return Ok(());
        }
        if let Some(m) = self.upper_lstat(rel)?
            && m.is_dir()
        {
            return Ok(());
        }
        let st = match self.merged.stat(rel)? {
            Some(st) if st.is_dir() => st,
            _ => return Err(Error::Copy(format!("{}: not a directory", abs(rel)))),
        };
        let xattrs = self.merged.xattrs(rel)?;
        self.copy_up(parent_rel(rel))?;
        let p = self.upper_path(rel);
        fs::create_dir(&p).map_err(io_err(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(st.mode)).map_err(io_err(&p))?;
        set_owner(&p, st.uid, st.gid)?;
        for (k, v) in &xattrs {
            xattr::set(&p, k, v).map_err(io_err(&p))?;
        }
        self.dir_times.insert(rel.to_owned(), st.mtime);
        self.stats.dirs += 1;
        Ok(())
    }

    /// Creates the directory `rel` in the layer (its parent exists in the merged view and
    /// nothing is at `rel`) with the given metadata.
    pub(crate) fn make_dir(
        &mut self,
        rel: &str,
        mode: u32,
        owner: (u32, u32),
        mtime: (i64, u32),
    ) -> Result<()> {
        self.copy_up(parent_rel(rel))?;
        self.materialize(parent_rel(rel))?;
        self.create_dir(rel, (mode, owner, mtime))?;
        self.note_dir(rel)
    }

    /// [`Self::make_dir`], or, building a delta, nothing but a note when the base has this very
    /// directory (mode, owner, mtime, no xattrs): the directory is created only if something is
    /// written into it ([`Self::materialize`]), else the base's stands for it.
    fn make_dir_or_defer(&mut self, rel: &str, meta: DirMeta) -> Result<()> {
        let (mode, owner, mtime) = meta;
        let Some(base) = &self.base else {
            return self.make_dir(rel, mode, owner, mtime);
        };
        let p = base.join(rel);
        let same = match fs::symlink_metadata(&p) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                m.is_dir()
                    && m.mode() & 0o7777 == mode & 0o7777
                    && (m.uid(), m.gid()) == owner
                    && (m.mtime(), u32::try_from(m.mtime_nsec()).unwrap_or(u32::MAX)) == mtime
                    && xattr::list(&p).map_err(io_err(&p))?.next().is_none()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&p)(e)),
        };
        if !same {
            return self.make_dir(rel, mode, owner, mtime);
        }
        self.deferred.insert(rel.to_owned(), meta);
        self.note_dir(rel)
    }

    /// Creates the directory `rel` in the layer's tree (its parent exists there).
    fn create_dir(&mut self, rel: &str, (mode, owner, mtime): DirMeta) -> Result<()> {
        let p = self.upper_path(rel);
        fs::create_dir(&p).map_err(io_err(&p))?;
        // chmod after mkdir: the umask must not apply.
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io_err(&p))?;
        set_owner(&p, owner.0, owner.1)?;
        self.dir_times.insert(rel.to_owned(), mtime);
        Ok(())
    }

    /// Creates the deferred directory `rel` (and its deferred parents) in the tree, if it is one.
    fn materialize(&mut self, rel: &str) -> Result<()> {
        let Some(meta) = self.deferred.remove(rel) else {
            return Ok(());
        };
        self.materialize(parent_rel(rel))?;
        self.create_dir(rel, meta)
    }

    /// The bookkeeping of a directory this copy made (created or deferred).
    fn note_dir(&mut self, rel: &str) -> Result<()> {
        if self.fresh.contains(parent_rel(rel)) {
            self.created.insert(rel.to_owned(), true);
        }
        if self.lower_has_nothing(rel)? {
            self.fresh.insert(rel.to_owned());
        }
        self.stats.dirs += 1;
        Ok(())
    }

    /// Whether no layer below the upper has anything visible at `rel` (a new directory there
    /// then holds only what this copy writes).
    fn lower_has_nothing(&self, rel: &str) -> Result<bool> {
        if self.fresh.contains(parent_rel(rel)) {
            return Ok(true);
        }
        let lower = LayerView::new(self.merged.layers()[1..].to_vec());
        Ok(lower.stat(rel)?.is_none())
    }

    /// Resolves `rel` in the merged view (following symlinks) and makes it a directory:
    /// missing components are created `0755` with the parent owner. Returns the resolved path.
    pub(crate) fn ensure_dir_path(&mut self, rel: &str) -> Result<String> {
        let resolved = resolve(&self.merged, rel, true)?;
        let mut cur = String::new();
        for comp in resolved.split('/').filter(|c| !c.is_empty()) {
            cur = join_rel(&cur, comp);
            match self.merged_stat(&cur)? {
                Some(st) if st.is_dir() => {}
                Some(_) => {
                    return Err(Error::Copy(format!(
                        "mkdir {}: not a directory",
                        abs(&resolved)
                    )));
                }
                None => {
                    let owner = self.parent_owner;
                    self.make_dir(&cur, 0o755, owner, self.now)?;
                }
            }
        }
        Ok(resolved)
    }

    /// Clears the way for a new entry at `rel` (whose parent is a directory of the merged view).
    /// Returns true when an existing directory is kept (copied up) for a new directory.
    pub(crate) fn prepare(&mut self, rel: &str, new_is_dir: bool) -> Result<bool> {
        self.copy_up(parent_rel(rel))?;
        let existing = self.merged_stat(rel)?;
        if self.fresh.contains(parent_rel(rel)) {
            self.created.insert(rel.to_owned(), new_is_dir);
        }
        match existing {
            None => return Ok(false),
            Some(st) if st.is_dir() && new_is_dir => {
                self.copy_up(rel)?;
                return Ok(true);
            }
            Some(st) if new_is_dir => {
                let _ = st;
                return Err(Error::Copy(format!(
                    "cannot copy to non-directory: {}",
                    abs(rel)
                )));
            }
            Some(_) => {}
        }
        // A non-directory replaces whatever is there: remove it from the layer (a lower
        // entry is hidden by the new one). Never written through: unlink, then create.
        if let Some(m) = self.upper_lstat(rel)? {
            let p = self.upper_path(rel);
            if m.is_dir() {
                fs::remove_dir_all(&p).map_err(io_err(&p))?;
                self.fresh
                    .retain(|f| f != rel && !f.starts_with(&format!("{rel}/")));
            } else {
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
        Ok(false)
    }

    /// Records the mtime a directory of the layer gets at the end.
    pub(crate) fn set_dir_time(&mut self, rel: &str, t: (i64, u32)) {
        self.dir_times.insert(rel.to_owned(), t);
    }

    /// Queues a regular file with its final metadata. A file that is one name of a source
    /// hardlink group (`link_id`) keeps its link to the group's first name.
    pub(crate) fn queue_file(
        &mut self,
        src: &str,
        dest: &str,
        meta: ObjectMeta,
        hash: Option<[u8; 32]>,
        link_id: Option<(u64, u64)>,
    ) -> Result<()> {
        self.materialize(parent_rel(dest))?;
        let dest = self.upper_path(dest);
        if let Some(id) = link_id {
            if let Some(first) = self.link_first.get(&id) {
                if *first != dest {
                    self.links.push((first.clone(), dest));
                }
                return Ok(());
            }
            self.link_first.insert(id, dest.clone());
        }
        let job = FileJob {
            src: src.to_owned(),
            dest: dest.clone(),
            meta,
            hash,
            own_inode: link_id.is_some(),
        };
        if link_id.is_none() && self.early.is_some() {
            // A batch holds one directory's files: two threads linking into one directory
            // would wait for each other on its lock.
            if self
                .early_batch
                .last()
                .is_some_and(|j| j.dest.parent() != job.dest.parent())
            {
                self.send_early();
            }
            self.early_batch.push(job);
            if self.early_batch.len() >= EARLY_BATCH {
                self.send_early();
            }
            return Ok(());
        }
        match self.job_of.get(&dest) {
            Some(&i) => self.jobs[i] = job,
            None => {
                self.job_of.insert(dest, self.jobs.len());
                self.jobs.push(job);
            }
        }
        Ok(())
    }

    /// Places the queued files (in parallel) from `source`.
    fn run_jobs(&mut self, source: &dyn SourceTree) -> Result<()> {
        let mut jobs = std::mem::take(&mut self.jobs);
        self.job_of.clear();
        // A source file whose other names are not part of this copy (a context file hardlinked
        // elsewhere, as pnpm's store does) gets no second name here: it is placed as an object
        // link like any other file, not copied into an inode of its own.
        let partnered: HashSet<&PathBuf> = self.links.iter().map(|(first, _)| first).collect();
        for job in &mut jobs {
            job.own_inode &= partnered.contains(&job.dest);
        }
        let placer = Placer::new(self.pending, self.store, source);
        jobs.par_chunks(EARLY_BATCH)
            .try_for_each(|batch| placer.place_batch(batch))?;
        placer.add_to(&mut self.stats);
        Ok(())
    }

    /// Applies the directory mtimes (after everything was created).
    fn finish(&mut self, source: &dyn SourceTree) -> Result<()> {
        self.run_jobs(source)?;
        for rel in std::mem::take(&mut self.deferred).into_keys() {
            self.pending.leave_dir_to_base(&rel)?;
        }
        for (first, dest) in std::mem::take(&mut self.links) {
            if fs::symlink_metadata(&dest).is_ok() {
                fs::remove_file(&dest).map_err(io_err(&dest))?;
            }
            fs::hard_link(&first, &dest).map_err(io_err(&dest))?;
        }
        for (rel, t) in std::mem::take(&mut self.dir_times) {
            set_times(&self.upper_path(&rel), t)?;
        }
        Ok(())
    }
}

/// Opens a destination directory of the layer as a handle for `*at` calls.
fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(path)(e.into()))
}

/// Places queued files (from any number of threads) and counts what it did.
struct Placer<'a, 'p> {
    pending: &'a PendingLayer<'p>,
    store: &'a Store,
    source: &'a dyn SourceTree,
    tmp: PathBuf,
    files: AtomicU64,
    linked: AtomicU64,
    copied: AtomicU64,
    created: AtomicU64,
}

impl<'a, 'p> Placer<'a, 'p> {
    fn new(pending: &'a PendingLayer<'p>, store: &'a Store, source: &'a dyn SourceTree) -> Self {
        Placer {
            pending,
            store,
            source,
            tmp: pending.tmp_dir(),
            files: AtomicU64::new(0),
            linked: AtomicU64::new(0),
            copied: AtomicU64::new(0),
            created: AtomicU64::new(0),
        }
    }

    /// Places `job` (its destination is `dir`/its file name): a link to the object named by
    /// its metadata and known content hash when the store has it, else the content is read
    /// into a new object (or, for `own_inode`, into a file of its own).
    fn place(&self, job: &FileJob, dir: BorrowedFd<'_>) -> Result<()> {
        self.files.fetch_add(1, Ordering::Relaxed);
        let mut meta = job.meta.clone();
        meta.xattrs = self.source.xattrs(&job.src)?;
        if job.own_inode {
            let mut f = self.source.open(&job.src)?;
            let n = write_own_file(&mut f, &job.dest, &meta)?;
            self.copied.fetch_add(n, Ordering::Relaxed);
            return Ok(());
        }
        let name = job.dest.file_name().unwrap_or_default();
        let bare = meta.xattrs.is_empty();
        let link = |key: &ObjectKey| -> Result<bool> {
            Ok(self
                .pending
                .link_object_at(key, dir, name, &job.dest, bare)?)
        };
        if let Some(h) = job.hash
            && link(&meta.key(&h))?
        {
            self.linked.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut f = self.source.open(&job.src)?;
        let mut w = ObjectWriter::new(&self.tmp, meta)?;
        io::copy(&mut f, &mut w).map_err(io_err(&job.dest))?;
        self.copied.fetch_add(w.written(), Ordering::Relaxed);
        let (key, new) = w.commit(self.store)?;
        if new {
            self.created.fetch_add(1, Ordering::Relaxed);
            self.pending.note_new_object(&key)?;
        }
        if !link(&key)? {
            return Err(Error::Copy(format!(
                "object {key} vanished while placing {}",
                job.dest.display()
            )));
        }
        Ok(())
    }

    /// Places batches of files from `jobs` (shared with other threads doing the same) as they
    /// arrive, until the sender is dropped.
    fn place_all(&self, jobs: &Mutex<Receiver<Vec<FileJob>>>) -> Result<()> {
        /// Unless disarmed, closes the queue (its receiver is replaced by one of a closed
        /// channel) when the thread leaves by an error or a panic: the walk's sends then fail
        /// at once instead of waiting for room that nobody makes.
        struct CloseOnExit<'q>(&'q Mutex<Receiver<Vec<FileJob>>>, bool);
        impl Drop for CloseOnExit<'_> {
            fn drop(&mut self) {
                if self.1 {
                    let mut rx = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                    *rx = std::sync::mpsc::channel().1;
                }
            }
        }
        let mut guard = CloseOnExit(jobs, true);
        loop {
            let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
            let Ok(batch) = next else {
                guard.1 = false;
                return Ok(());
            };
            self.place_batch(&batch)?;
        }
    }

    /// Places `jobs` in turn, opening each destination directory once per run of files in it:
    /// a link then looks up one name there, not the whole path.
    fn place_batch(&self, jobs: &[FileJob]) -> Result<()> {
        let mut dir: Option<(&Path, OwnedFd)> = None;
        for job in jobs {
            let parent = job.dest.parent().unwrap_or(Path::new("/"));
            let fd = match &dir {
                Some((p, fd)) if *p == parent => fd,
                _ => &dir.insert((parent, open_dir(parent)?)).1,
            };
            self.place(job, fd.as_fd())?;
        }
        Ok(())
    }

    fn add_to(&self, stats: &mut CopyStats) {
        stats.files += self.files.load(Ordering::Relaxed);
        stats.linked += self.linked.load(Ordering::Relaxed);
        stats.copied_bytes += self.copied.load(Ordering::Relaxed);
        stats.new_objects += self.created.load(Ordering::Relaxed);
    }
}

/// Writes `src` to a new file at `dest` with `meta` applied (owner, then mode, then mtime:
/// chown clears set-id bits). Returns the bytes written.
fn write_own_file(src: &mut fs::File, dest: &Path, meta: &ObjectMeta) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(io_err(dest))?;
    let n = io::copy(src, &mut out).map_err(io_err(dest))?;
    let uid = u32::try_from(meta.uid).unwrap_or(0);
    let gid = u32::try_from(meta.gid).unwrap_or(0);
    // Why: fd-based, on the file just created; https://man7.org/linux/man-pages/man2/fchown.2.html
    std::os::unix::fs::fchown(&out, Some(uid), Some(gid)).map_err(io_err(dest))?;
    out.set_permissions(fs::Permissions::from_mode(meta.mode & 0o7777))
        .map_err(io_err(dest))?;
    for (k, v) in &meta.xattrs {
        xattr::FileExt::set_xattr(&out, k, v).map_err(io_err(dest))?;
    }
    let t = nix::sys::time::TimeSpec::new(meta.mtime_secs, i64::from(meta.mtime_nanos));
    // Why: COPY keeps the source mtime; https://man7.org/linux/man-pages/man2/futimens.2.html
    nix::sys::stat::futimens(&out, &t, &t).map_err(|e| io_err(dest)(e.into()))?;
    Ok(n)
}

/// The walk over one source, with the request's owner and mode rules.
struct Copier<'r, 'w, 'a, 'p> {
    req: &'r CopyRequest<'r>,
    w: &'w mut Writer<'a, 'p>,
    excluder: Excluder,
}

impl Copier<'_, '_, '_, '_> {
    fn owner(&self, st: &Stat) -> (u32, u32) {
        match self.req.chown {
            Some(o) => o,
            None if self.req.source.keeps_owner() => (st.uid, st.gid),
            None => (0, 0),
        }
    }

    fn mode(&self, st: &Stat) -> u32 {
        match &self.req.chmod {
            Some(c) => c.apply(st.mode, st.is_dir()),
            None => st.mode,
        }
    }

    /// Copies the source entry `src` (resolved) with stat `st` to `dest` (whose parent is a
    /// directory of the merged view). `excl` is its path for `--exclude`.
    fn entry(&mut self, src: &str, st: &Stat, dest: &str, excl: &str) -> Result<()> {
        if !excl.is_empty() && self.excluder.is_excluded(excl) {
            return Ok(());
        }
        let src_tree = self.req.source;
        match st.kind {
            FileKind::Dir => {
                if !self.w.prepare(dest, true)? {
                    let (mode, owner) = (self.mode(st), self.owner(st));
                    self.w.make_dir_or_defer(dest, (mode, owner, st.mtime))?;
                }
                if let Some(stamp) = src_tree.stamp(src) {
                    if self.left_subtree_to_base(dest, &stamp)? {
                        return Ok(());
                    }
                    self.w.stats.stamps.push((dest.to_owned(), stamp));
                }
                self.contents(src, dest, excl)?;
            }
            FileKind::File => {
                self.w.prepare(dest, false)?;
                let (uid, gid) = self.owner(st);
                let meta = ObjectMeta {
                    mode: self.mode(st),
                    uid: u64::from(uid),
                    gid: u64::from(gid),
                    mtime_secs: st.mtime.0,
                    mtime_nanos: st.mtime.1,
                    xattrs: Vec::new(),
                };
                if self.left_to_base(src, dest, &meta, st)? {
                    return Ok(());
                }
                self.w.queue_file(src, dest, meta, st.hash, st.link_id)?;
            }
            FileKind::Symlink => {
                self.w.prepare(dest, false)?;
                self.w.materialize(parent_rel(dest))?;
                let target = src_tree.read_link(src)?;
                let p = self.w.upper_path(dest);
                symlink(&target, &p).map_err(io_err(&p))?;
                let (uid, gid) = self.owner(st);
                set_owner(&p, uid, gid)?;
                set_times(&p, st.mtime)?;
                self.w.stats.symlinks += 1;
            }
            FileKind::Fifo | FileKind::Char | FileKind::Block => {
                self.w.prepare(dest, false)?;
                self.w.materialize(parent_rel(dest))?;
                let p = self.w.upper_path(dest);
                let kind = match st.kind {
                    FileKind::Fifo => SFlag::S_IFIFO,
                    FileKind::Char => SFlag::S_IFCHR,
                    _ => SFlag::S_IFBLK,
                };
                // Why: devices and fifos of a stage are copied as they are (BuildKit copies
                // them too). https://man7.org/linux/man-pages/man2/mknod.2.html
                mknod(&p, kind, Mode::from_bits_truncate(self.mode(st)), st.rdev)
                    .map_err(|e| io_err(&p)(e.into()))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(self.mode(st)))
                    .map_err(io_err(&p))?;
                let (uid, gid) = self.owner(st);
                set_owner(&p, uid, gid)?;
                set_times(&p, st.mtime)?;
                self.w.stats.specials += 1;
            }
            FileKind::Socket => {}
        }
        Ok(())
    }

    /// Whether the regular file `src` (stat `st`) needs no placing at `dest`, building a delta:
    /// the base has its object (`meta` with the source's xattrs, and its content hash) there.
    fn left_to_base(
        &mut self,
        src: &str,
        dest: &str,
        meta: &ObjectMeta,
        st: &Stat,
    ) -> Result<bool> {
        let (Some(_), Some(hash), None) = (&self.w.base, st.hash, st.link_id) else {
            return Ok(false);
        };
        let xattrs = self.req.source.xattrs(src)?;
        let bare = xattrs.is_empty();
        let key = ObjectMeta {
            xattrs,
            ..meta.clone()
        }
        .key(&hash);
        if !self.w.pending.skip_in_base(&key, dest, bare)? {
            return Ok(false);
        }
        self.w.stats.files += 1;
        self.w.stats.linked += 1;
        Ok(true)
    }

    /// Whether all below the directory `dest` is left to the base, building a delta: its
    /// source directory's `stamp` is the one it had when the base was made of it.
    fn left_subtree_to_base(&mut self, dest: &str, stamp: &[u8; 32]) -> Result<bool> {
        let (Some(_), Some(stamps)) = (&self.w.base, self.req.base_stamps) else {
            return Ok(false);
        };
        if stamps.get(dest) != Some(stamp) {
            return Ok(false);
        }
        let Some(files) = self.w.pending.leave_subtree_to_base(dest)? else {
            return Ok(false);
        };
        self.w.stats.files += files;
        self.w.stats.linked += files;
        Ok(true)
    }

    /// Copies the contents of the source directory `src` into the directory `dest`.
    fn contents(&mut self, src: &str, dest: &str, excl: &str) -> Result<()> {
        let tree = self.req.source;
        for name in tree.read_dir(src)? {
            let child = join_rel(src, &name);
            let Some(st) = tree.lstat(&child)? else {
                continue;
            };
            self.entry(&child, &st, &join_rel(dest, &name), &join_rel(excl, &name))?;
        }
        Ok(())
    }
}

/// A source after wildcard expansion.
enum Item {
    Url(String),
    Local { rel: String, pivot: String },
}

fn is_dir_dest(dest: &str) -> bool {
    dest.is_empty() || dest.ends_with('/') || dest == "." || dest.ends_with("/.")
}

/// Expands the sources of a request: URLs, globs, `--parents` pivots.
fn expand(req: &CopyRequest<'_>) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for s in &req.sources {
        if req.is_add && add::is_url(s) {
            items.push(Item::Url(s.clone()));
            continue;
        }
        if req.is_add && add::is_git(s) {
            return Err(Error::Copy(format!(
                "ADD of git repositories is not supported: {s}"
            )));
        }
        let (pivot, full) = match (req.parents, s.find("/./")) {
            (true, Some(i)) => (&s[..i], s.clone()),
            _ => ("", s.clone()),
        };
        let forbidden = || Error::Copy(format!("forbidden path outside the build context: {s}"));
        let rel = clean_rel(&full).ok_or_else(forbidden)?;
        let pivot = clean_rel(pivot).ok_or_else(forbidden)?;
        if has_meta(&rel) {
            for m in glob(req.source, &rel)? {
                items.push(Item::Local {
                    rel: m,
                    pivot: pivot.clone(),
                });
            }
        } else {
            items.push(Item::Local {
                rel: super::pattern::unescape(&rel),
                pivot,
            });
        }
    }
    Ok(items)
}

/// Runs a COPY or ADD into `pending`, on top of `dest_view` (the image before this step).
///
/// # Errors
/// Docker's errors for bad sources and destinations (see the module docs), ADD's archive and
/// download errors, store and I/O errors. On error the pending layer is left half-written: drop
/// it.
pub fn copy(
    req: &CopyRequest<'_>,
    dest_view: &LayerView,
    pending: &PendingLayer<'_>,
    store: &Store,
) -> Result<CopyStats> {
    let dest_is_dir = is_dir_dest(&req.dest);
    let dest_rel = if req.dest.starts_with('/') {
        clamp_rel(&req.dest)
    } else {
        clamp_rel(&format!("{}/{}", req.workdir, req.dest))
    };
    let items = expand(req)?;
    if req.checksum.is_some() && items.iter().any(|i| matches!(i, Item::Local { .. })) {
        return Err(Error::Copy(
            "checksum can't be specified for non-HTTP(S) sources".into(),
        ));
    }
    if items.len() > 1 && !dest_is_dir {
        return Err(Error::Copy(format!(
            "When using {} with more than one source file, the destination must be a directory and end with a /",
            req.name()
        )));
    }
    let lower = if req.link {
        LayerView::empty()
    } else {
        dest_view.clone()
    };
    let excluder = Excluder::new(&req.exclude)?;
    let mut w = Writer::new(&lower, pending, store, req.chown.unwrap_or((0, 0)));
    let placer = Placer::new(pending, store, req.source);
    // One source: each destination is queued once, so its files can be placed while the walk
    // goes on, by as many threads as there are cores (the walk is the lighter part).
    let early = items.len() == 1;
    let (tx, rx) = std::sync::mpsc::sync_channel(EARLY_QUEUE);
    let queue = Mutex::new(rx);
    std::thread::scope(|s| -> Result<()> {
        let mut placing = Vec::new();
        if early {
            w.early = Some(tx);
            // A delta over the pending layer's base: a COPY (no archive to unpack, no
            // `--parents` pivots) of one source, whose destinations are each written once.
            if !req.is_add && !req.parents {
                w.base = pending.base_rootfs();
            }
            for _ in 0..rayon::current_num_threads() {
                let (placer, queue) = (&placer, &queue);
                placing.push(s.spawn(move || placer.place_all(queue)));
            }
        }
        let walked = walk_items(req, &mut w, excluder, items, &dest_rel, dest_is_dir);
        w.end_early();
        let mut placed = Ok(());
        for h in placing {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(Error::Copy("a file placing thread panicked".into())));
            placed = placed.and(r);
        }
        walked.and(placed)
    })?;
    placer.add_to(&mut w.stats);
    w.finish(req.source)?;
    Ok(w.stats)
}

/// Batches queued for the early placing threads at most (a bound on the memory of a fast
/// walk).
pub(crate) const EARLY_QUEUE: usize = 16;

/// Files placed as one task at most (a batch sent to the early placing threads ends with its
/// directory's files too).
pub(crate) const EARLY_BATCH: usize = 256;

/// The walk of [`copy`]: every source item into the layer (regular files are queued).
fn walk_items(
    req: &CopyRequest<'_>,
    w: &mut Writer<'_, '_>,
    excluder: Excluder,
    items: Vec<Item>,
    dest_rel: &str,
    dest_is_dir: bool,
) -> Result<()> {
    let mut c = Copier { req, w, excluder };
    for item in items {
        let (rel, pivot) = match item {
            Item::Url(url) => {
                add::download(c.w, req, &url, dest_rel, dest_is_dir)?;
                continue;
            }
            Item::Local { rel, pivot } => (rel, pivot),
        };
        let src = resolve(req.source, &rel, true)?;
        let Some(st) = req.source.lstat(&src)? else {
            return Err(Error::Copy(format!("{:?}: not found", abs(&rel))));
        };
        if req.parents {
            let sub = rel
                .strip_prefix(&pivot)
                .map(|s| s.trim_start_matches('/'))
                .unwrap_or(&rel)
                .to_owned();
            let mut d = c.w.ensure_dir_path(dest_rel)?;
            let mut s = pivot.clone();
            let sub_parent = parent_rel(&sub);
            for comp in sub_parent.split('/').filter(|x| !x.is_empty()) {
                s = join_rel(&s, comp);
                let rs = resolve(req.source, &s, true)?;
                let Some(dst) = req.source.lstat(&rs)? else {
                    return Err(Error::Copy(format!("{:?}: not found", abs(&s))));
                };
                let next = join_rel(&d, comp);
                c.entry_dir_only(&dst, &next)?;
                d = resolve(&c.w.merged, &next, true)?;
            }
            let target = join_rel(&d, base_name(&sub));
            if st.is_dir() && sub.is_empty() {
                c.contents(&src, &d, "")?;
            } else {
                c.entry(&src, &st, &target, "")?;
                // a directory's own name is not matched by --exclude; its contents are
            }
            continue;
        }
        if req.is_add
            && req.unpack
            && st.kind == FileKind::File
            && add::is_archive(req.source, &src)?
        {
            let d = c.w.ensure_dir_path(dest_rel)?;
            add::extract(c.w, req, &src, &d)?;
            continue;
        }
        if st.is_dir() {
            // The stamps of the whole source, computed in parallel before the walk asks for
            // them directory by directory.
            let _ = req.source.stamp(&src);
            let r = resolve(&c.w.merged, dest_rel, true)?;
            if !r.is_empty() {
                c.w.ensure_dir_path(parent_rel(&r))?;
            }
            if r.is_empty() || c.w.prepare(&r, true)? {
                c.contents(&src, &r, "")?;
            } else {
                // BuildKit copies a directory's *contents*: the destination directory is
                // created like a missing parent (0755, the --chown owner or root).
                let owner = req.chown.unwrap_or((0, 0));
                let now = c.w.now;
                c.w.make_dir(&r, 0o755, owner, now)?;
                c.contents(&src, &r, "")?;
            }
            continue;
        }
        let name = base_name(&rel).to_owned();
        if c.excluder.is_excluded(&name) || c.excluder.is_excluded(&rel) {
            continue;
        }
        let r = resolve(&c.w.merged, dest_rel, true)?;
        let into_dir =
            dest_is_dir || r.is_empty() || c.w.merged_stat(&r)?.is_some_and(|s| s.is_dir());
        let target = if into_dir {
            let d = c.w.ensure_dir_path(&r)?;
            join_rel(&d, &name)
        } else {
            let parent = c.w.ensure_dir_path(parent_rel(&r))?;
            join_rel(&parent, base_name(&r))
        };
        c.entry(&src, &st, &target, "")?;
    }
    Ok(())
}

impl Copier<'_, '_, '_, '_> {
    /// A `--parents` intermediate directory: created with the source directory's metadata when
    /// missing, kept when it exists.
    fn entry_dir_only(&mut self, st: &Stat, dest: &str) -> Result<()> {
        if !st.is_dir() {
            return Err(Error::Copy(format!(
                "cannot copy to non-directory: {}",
                abs(dest)
            )));
        }
        if !self.w.prepare(dest, true)? {
            let (mode, owner) = (self.mode(st), self.owner(st));
            self.w.make_dir(dest, mode, owner, st.mtime)?;
        }
        Ok(())
    }
}

/// WORKDIR: creates `path` (absolute, or relative to `/`) in `pending` as `mkdir -p` does on
/// top of `dest_view`: missing directories `0755` owned by `uid:gid`, existing parents copied up.
/// Nothing is written when the directory exists.
///
/// # Errors
/// A component that exists and is not a directory; I/O errors.
pub fn mkdir_p(
    dest_view: &LayerView,
    pending: &PendingLayer<'_>,
    store: &Store,
    path: &str,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let mut w = Writer::new(dest_view, pending, store, (uid, gid));
    w.ensure_dir_path(&clamp_rel(path))?;
    w.finish(&LayerView::empty())
}

/// The cache digest of a COPY's sources in `tree`: exactly the selected entries (wildcards
/// expanded, symlinked sources followed, `--exclude` applied), each with its path, type, mode,
/// owner (when the tree keeps owners), size, link target and content hash; never mtime.
/// `strata.copy-sources.v1` is hashed first.
///
/// # Errors
/// A missing source or one outside the root; I/O errors reading content the tree has no hash
/// for.
pub fn sources_digest(
    tree: &dyn SourceTree,
    sources: &[String],
    exclude: &[String],
) -> Result<[u8; 32]> {
    let excluder = Excluder::new(exclude)?;
    let mut h = blake3::Hasher::new();
    h.update(b"strata.copy-sources.v1");
    for s in sources {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
        let rel = clean_rel(s)
            .ok_or_else(|| Error::Copy(format!("forbidden path outside the build context: {s}")))?;
        let matches = if has_meta(&rel) {
            glob(tree, &rel)?
        } else {
            vec![super::pattern::unescape(&rel)]
        };
        h.update(&(matches.len() as u64).to_le_bytes());
        for m in matches {
            let src = resolve(tree, &m, true)?;
            let Some(st) = tree.lstat(&src)? else {
                return Err(Error::Copy(format!("{:?}: not found", abs(&m))));
            };
            h.update(m.as_bytes());
            h.update(&[0]);
            if st.kind != FileKind::Dir && excluder.is_excluded(base_name(&m)) {
                continue;
            }
            match tree.selection_digest(&src, &excluder) {
                Some(d) => {
                    h.update(&d);
                }
                None => hash_entry(tree, &src, &st, "", &excluder, &mut h)?,
            };
        }
    }
    Ok(*h.finalize().as_bytes())
}

fn hash_entry(
    tree: &dyn SourceTree,
    rel: &str,
    st: &Stat,
    excl: &str,
    excluder: &Excluder,
    h: &mut blake3::Hasher,
) -> Result<()> {
    h.update(excl.as_bytes());
    h.update(&[0, st.kind as u8]);
    h.update(&st.mode.to_le_bytes());
    if tree.keeps_owner() {
        h.update(&st.uid.to_le_bytes());
        h.update(&st.gid.to_le_bytes());
    }
    match st.kind {
        FileKind::File => {
            h.update(&st.size.to_le_bytes());
            let content = match st.hash {
                Some(c) => c,
                None => super::dir::hash_reader(tree.open(rel)?).map_err(io_err(rel))?,
            };
            h.update(&content);
            for (k, v) in tree.xattrs(rel)? {
                h.update(k.as_bytes());
                h.update(&[0]);
                h.update(&v);
            }
        }
        FileKind::Symlink => {
            h.update(tree.read_link(rel)?.to_string_lossy().as_bytes());
        }
        FileKind::Char | FileKind::Block => {
            h.update(&st.rdev.to_le_bytes());
        }
        FileKind::Dir => {
            for name in tree.read_dir(rel)? {
                let child = join_rel(rel, &name);
                let ce = join_rel(excl, &name);
                if excluder.is_excluded(&ce) {
                    continue;
                }
                let Some(cst) = tree.lstat(&child)? else {
                    continue;
                };
                hash_entry(tree, &child, &cst, &ce, excluder, h)?;
            }
            h.update(b"/end");
        }
        FileKind::Fifo | FileKind::Socket => {}
    }
    Ok(())
}
