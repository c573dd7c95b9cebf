//! File-system steps: COPY, ADD and WORKDIR write layers directly, without a container.
//!
//! Data enters as a [`SourceTree`] (the build context, or a [`LayerView`] of another stage or
//! image), the destination image as a [`LayerView`] (its unpacked layers, top first), and a
//! [`strata_cas::PendingLayer`] whose rootfs becomes the new layer. It leaves as files in that
//! rootfs: regular files are hardlinks to store objects, named from the source's content hash when
//! the source knows it (the context index does), so an unchanged file costs one `link(2)`.
//!
//! Every path is resolved with [`resolve`] inside its root (RESOLVE_IN_ROOT semantics: absolute
//! symlink targets restart at the root, `..` stops at the root, 40 links at most), in the source
//! tree and in the image alike; nothing is ever resolved on the host.
//!
//! - [`view`]: the merged, read-only view of a stack of unpacked layers (overlay semantics);
//! - [`dir`]: a plain directory as a source tree (contexts before indexing, tests, benches);
//! - [`user`]: `/etc/passwd` and `/etc/group` read through a view, for USER and `--chown`;
//! - [`copy`]: COPY (and the COPY half of ADD), WORKDIR's `mkdir -p`, the sources' cache digest;
//! - [`add`]: ADD's archive extraction and URL download;
//! - [`pattern`]: Go's `filepath.Match` and `--exclude` patterns.

pub mod add;
pub mod copy;
pub mod dir;
pub mod pattern;
pub mod user;
pub mod view;

use std::fs::File;
use std::path::PathBuf;

pub use copy::{Chmod, CopyRequest, CopyStats, copy, mkdir_p, sources_digest};
pub use dir::DirTree;
pub use user::{resolve_chown, resolve_user};
pub use view::LayerView;

use crate::error::{Error, Result};

/// Most symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// The type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device (never an overlay whiteout: views hide those).
    Char,
    /// A block device.
    Block,
    /// A socket (never copied).
    Socket,
}

/// What a source tree knows about one file (`lstat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The file type.
    pub kind: FileKind,
    /// Permission bits, set-id and sticky bits (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files).
    pub size: u64,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    /// Device number (devices).
    pub rdev: u64,
    /// The blake3 hash of the content, when the tree knows it without reading the file.
    pub hash: Option<[u8; 32]>,
    /// (dev, ino) of a regular file with more than one name in the source tree: names with
    /// the same identity are hardlinks of each other, and a copy keeps them linked.
    pub link_id: Option<(u64, u64)>,
}

impl Stat {
    /// Builds a stat from `lstat` metadata (no content hash).
    pub fn from_metadata(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let t = m.file_type();
        let kind = if t.is_dir() {
            FileKind::Dir
        } else if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_char_device() {
            FileKind::Char
        } else if t.is_block_device() {
            FileKind::Block
        } else if t.is_socket() {
            FileKind::Socket
        } else {
            FileKind::File
        };
        Stat {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: (m.mtime(), u32::try_from(m.mtime_nsec()).unwrap_or(0)),
            rdev: m.rdev(),
            hash: None,
            link_id: (t.is_file() && m.nlink() > 1).then(|| (m.dev(), m.ino())),
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
}

/// A read-only tree that COPY reads from. Paths are clean, relative to the tree's root, `/`
/// separated, without a leading `/` (`""` is the root), and never contain symlinks except
/// possibly in the last component: callers resolve with [`resolve`] first.
pub trait SourceTree: Sync {
    /// `lstat`: `None` when nothing is there.
    ///
    /// # Errors
    /// I/O errors other than "not found" / "not a directory".
    fn lstat(&self, rel: &str) -> Result<Option<Stat>>;

    /// The names in a directory, sorted.
    ///
    /// # Errors
    /// I/O errors; `rel` not being a directory.
    fn read_dir(&self, rel: &str) -> Result<Vec<String>>;

    /// A symlink's target.
    ///
    /// # Errors
    /// I/O errors; `rel` not being a symlink.
    fn read_link(&self, rel: &str) -> Result<PathBuf>;

    /// Opens a regular file for reading (never following a final symlink).
    ///
    /// # Errors
    /// I/O errors.
    fn open(&self, rel: &str) -> Result<File>;

    /// Extended attributes to carry over with the file (none by default).
    ///
    /// # Errors
    /// I/O errors.
    fn xattrs(&self, _rel: &str) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(Vec::new())
    }

    /// Whether files keep their owner when copied (layer views) or become `0:0` (the context).
    fn keeps_owner(&self) -> bool {
        true
    }

    /// The content digest of what a COPY selects at `rel` (resolved) with `exclude`, when the
    /// tree keeps one (the context's index does, memoized and computed in parallel); `None`:
    /// the caller hashes the entries itself. Like the caller's, it never covers mtime.
    fn selection_digest(&self, _rel: &str, _exclude: &pattern::Excluder) -> Option<[u8; 32]> {
        None
    }

    /// A stamp of everything a COPY takes from the directory `rel` and all below it, mtimes
    /// included, when the tree keeps one: equal stamps, equal copies. `None` also when the
    /// subtree holds anything but directories and regular files with a single name (a
    /// hardlink group or a symlink is always copied by the walk). A tree that gives stamps
    /// gives no xattrs ([`Self::xattrs`]).
    fn stamp(&self, _rel: &str) -> Option<[u8; 32]> {
        None
    }
}

/// Joins a clean relative path and a name.
pub fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else if name.is_empty() {
        dir.to_owned()
    } else {
        // Not format!: this runs for every entry a COPY walks (60,000 times for a COPY of
        // 20,000 files), and the formatting machinery costs several times the copy.
        let mut out = String::with_capacity(dir.len() + 1 + name.len());
        out.push_str(dir);
        out.push('/');
        out.push_str(name);
        out
    }
}

/// The last component of a clean relative path (`""` for the root).
pub fn base_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// The parent of a clean relative path (`""` for top-level names and the root).
pub fn parent_rel(rel: &str) -> &str {
    rel.rfind('/').map(|i| &rel[..i]).unwrap_or("")
}

/// Lexically cleans `path` relative to a root: `.` and empty components dropped, `..` pops.
/// Returns `None` when a `..` would climb above the root.
pub fn clean_rel(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// Like [`clean_rel`], but `..` stops at the root (Go's `filepath.Join("/", p)`).
pub fn clamp_rel(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// How [`resolve_with`] treats a `..` that would climb above the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// It stays at the root (RESOLVE_IN_ROOT, `chroot`).
    Clamp,
    /// It is an error (archive extraction, as BuildKit's `os.Root`).
    Reject,
}

/// Resolves `path` inside `tree` with the tree's root as `/`: symlinks are followed (the last
/// one only when `follow_final`), absolute targets restart at the root, `..` stops at the root.
/// Returns the clean relative path reached; its existing prefix contains no symlinks (except the
/// last component when `!follow_final`). Components after a missing one are kept lexically.
///
/// # Errors
/// More than [`MAX_SYMLINKS`] links ("too many levels of symbolic links"); I/O errors.
pub fn resolve(tree: &dyn SourceTree, path: &str, follow_final: bool) -> Result<String> {
    resolve_with(tree, path, follow_final, Escape::Clamp)
}

/// [`resolve`] with a choice of what `..` above the root does.
///
/// # Errors
/// As [`resolve`]; with [`Escape::Reject`], a path or link target that leaves the root.
pub fn resolve_with(
    tree: &dyn SourceTree,
    path: &str,
    follow_final: bool,
    escape: Escape,
) -> Result<String> {
    let mut todo: Vec<String> = path
        .split('/')
        .rev()
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0usize;
    let mut missing = false;
    while let Some(c) = todo.pop() {
        if c == ".." {
            if done.pop().is_none() && escape == Escape::Reject {
                return Err(Error::Copy(format!(
                    "path {path:?} points outside its root"
                )));
            }
            continue;
        }
        done.push(c);
        if missing {
            continue;
        }
        let cur = done.join("/");
        let Some(st) = tree.lstat(&cur)? else {
            missing = true;
            continue;
        };
        if st.kind != FileKind::Symlink || (todo.is_empty() && !follow_final) {
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(Error::Copy(format!(
                "{path}: too many levels of symbolic links"
            )));
        }
        let target = tree.read_link(&cur)?;
        let target = target.to_string_lossy();
        done.pop();
        if target.starts_with('/') {
            done.clear();
        }
        todo.extend(
            target
                .split('/')
                .rev()
                .filter(|c| !c.is_empty() && *c != ".")
                .map(str::to_owned),
        );
    }
    Ok(done.join("/"))
}

/// Expands a wildcard path (Go `filepath.Match` per component) in `tree`: the matches in sorted
/// order, written as paths (symlinks in them are not resolved). Parents are resolved inside the
/// root to list them.
///
/// # Errors
/// A malformed pattern; I/O errors.
pub fn glob(tree: &dyn SourceTree, pattern: &str) -> Result<Vec<String>> {
    let comps: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut current = vec![String::new()];
    for c in comps {
        let mut next = Vec::new();
        for base in &current {
            if c == ".." {
                next.push(clamp_rel(&join_rel(base, "..")));
                continue;
            }
            if !pattern::has_meta(c) {
                next.push(join_rel(base, &pattern::unescape(c)));
                continue;
            }
            let dir = resolve(tree, base, true)?;
            match tree.lstat(&dir)? {
                Some(st) if st.is_dir() => {}
                _ => continue,
            }
            for name in tree.read_dir(&dir)? {
                if pattern::matches(c, &name)? {
                    next.push(join_rel(base, &name));
                }
            }
        }
        current = next;
    }
    let mut out = Vec::new();
    for p in current {
        let r = resolve(tree, &p, false)?;
        if tree.lstat(&r)?.is_some() {
            out.push(p);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests;
