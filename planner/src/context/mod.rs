//! The build context, read once through a stat index kept in the store.
//!
//! [`ContextIndex::scan`] walks the context in parallel (one `fstatat` per entry, relative to its
//! directory's descriptor, never following a symlink), skips what `.dockerignore` excludes, and
//! hashes only the regular files whose `(size, mtime_ns, ctime_ns, ino, mode, uid, gid)` differ
//! from the previous scan recorded in the state file. Because ctime is part of that key, an edit
//! that restores its mtime is still noticed (BuildKit misses it: moby/buildkit#4817).
//!
//! The index then answers what COPY, ADD and `RUN --mount=type=bind` need: lookups, sorted
//! children, symlink resolution confined to the context ([`ContextIndex::resolve`]), Go-style
//! wildcard expansion ([`ContextIndex::glob`]) and content digests for cache keys
//! ([`ContextIndex::digest`]), which cover type, mode, uid, gid, link target and content, and
//! never mtime.
//!
//! Directories that are excluded but hold a re-included entry (`dir` then `!dir/keep`) are in the
//! index with only those children, as BuildKit's fsutil walker sends the parents of every file
//! it sends; an excluded directory with nothing re-included below it is absent.

mod scan;
mod state;

use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::dockerignore::{self, DockerIgnore, has_meta};
use crate::error::{Error, Result};

/// The type of a context entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Symlink => 2,
            Kind::Fifo => 3,
            Kind::CharDevice => 4,
            Kind::BlockDevice => 5,
            Kind::Socket => 6,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Kind::File,
            1 => Kind::Dir,
            2 => Kind::Symlink,
            3 => Kind::Fifo,
            4 => Kind::CharDevice,
            5 => Kind::BlockDevice,
            6 => Kind::Socket,
            _ => return None,
        })
    }
}

/// One file, directory, symlink or special file of the context, as `lstat` saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Kept (COPY preserves mtimes) but never part of any digest.
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    /// blake3 of the content for [`Kind::File`], zero otherwise.
    pub hash: [u8; 32],
    /// The symlink target bytes.
    pub link: Option<Vec<u8>>,
    pub nlink: u64,
    pub dev: u64,
}

/// What a scan did.
#[derive(Clone, Debug, Default)]
pub struct ScanStats {
    /// Entries in the index, the root included.
    pub entries: u64,
    /// Files whose content was read and hashed (the others reused the state's hash).
    pub hashed: u64,
    pub hashed_bytes: u64,
    /// The re-hashed files, sorted.
    pub hashed_paths: Vec<String>,
    pub duration: std::time::Duration,
}

/// A context's new stat index state, to write (see [`ContextIndex::scan_deferred`]).
#[derive(Debug)]
pub struct StateWrite {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl StateWrite {
    /// Writes the state (temp file + rename).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be written.
    pub fn write(self) -> Result<()> {
        state::write_atomic(&self.path, &self.bytes)
    }
}

/// The scanned context: every included entry by its cleaned relative path.
pub struct ContextIndex {
    root: PathBuf,
    /// In [`path_cmp`] order (pre-order, siblings by name); `paths[0]` is `""`, the root.
    paths: Vec<String>,
    entries: Vec<Entry>,
    /// Per entry: its direct children (indices), sorted by name bytes.
    children: Vec<Vec<u32>>,
    /// Memoized [`ContextIndex::digest`] per entry.
    digests: Vec<OnceLock<[u8; 32]>>,
    /// Memoized [`ContextIndex::stamp`] per entry.
    stamps: Vec<OnceLock<Option<[u8; 32]>>>,
    /// `paths` by hash, built at the first lookup: a COPY of 20,000 files looks up every one
    /// of them (and each of its parents) several times, and a binary search over the paths
    /// costs a cache miss per probe.
    lookup: OnceLock<hashbrown::HashTable<u32>>,
}

/// Directories with this many children hash them in parallel.
const PARALLEL_CHILDREN: usize = 64;

/// Directories with this many subdirectories stamp them in parallel.
const PARALLEL_SUBDIRS: usize = 8;

/// Symlinks followed before giving up, as the kernel's ELOOP limit.
const MAX_LINKS: usize = 40;

const DIGEST_TAG: &[u8] = b"strata.ctxdigest.v1";
const STAMP_TAG: &[u8] = b"strata.ctxstamp.v1";

impl ContextIndex {
    /// Scans `context` (an existing directory), skipping what `ignore` excludes; reuses the
    /// hashes in `state` (a file in the store, e.g. `ROOT/context/<key>.idx`, created if missing,
    /// rewritten only when something changed) for files whose `(size, mtime_ns, ctime_ns, ino,
    /// mode, uid, gid)` are unchanged; re-hashes the others in parallel. A state file that is
    /// corrupt, of another version or of another context is ignored and rewritten.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the context or one of its entries cannot be read or the state cannot
    /// be written, [`Error::Context`] when the context is not a directory or holds a name that
    /// is not UTF-8.
    pub fn scan(
        context: &Path,
        ignore: &DockerIgnore,
        state: Option<&Path>,
    ) -> Result<(Self, ScanStats)> {
        let (index, stats, write) = Self::scan_deferred(context, ignore, state, &|| {})?;
        if let Some(w) = write {
            w.write()?;
        }
        Ok((index, stats))
    }

    /// [`Self::scan`], but the new state (when it changed) is returned to be written by the
    /// caller, on another thread while the index is used, say. `on_hash` is called (on the
    /// scan's threads) before each file is hashed: one new, changed or racy since the state's
    /// scan. A caller learns from the first call, long before the scan ends, that the context
    /// is not the one the state describes.
    ///
    /// # Errors
    /// As [`Self::scan`], but for writing the state.
    pub fn scan_deferred(
        context: &Path,
        ignore: &DockerIgnore,
        state: Option<&Path>,
        on_hash: &(dyn Fn() + Sync),
    ) -> Result<(Self, ScanStats, Option<StateWrite>)> {
        let started = std::time::Instant::now();
        let root = std::fs::canonicalize(context).map_err(crate::error::io_err(context))?;
        let previous = state.and_then(|path| state::Loaded::read(path, &root));
        let scanned = scan::scan(&root, ignore, previous.as_ref(), on_hash)?;

        let mut stats = ScanStats {
            entries: scanned.len() as u64,
            ..ScanStats::default()
        };
        for item in scanned.iter().filter(|s| s.hashed) {
            stats.hashed += 1;
            stats.hashed_bytes += item.entry.size;
            stats.hashed_paths.push(item.path.clone());
        }
        stats.hashed_paths.sort_unstable();

        let mut write = None;
        if let Some(path) = state {
            let bytes = state::encode(&root, &scanned);
            if previous
                .as_ref()
                .is_none_or(|p| p.bytes() != bytes.as_slice())
            {
                write = Some(StateWrite {
                    path: path.to_path_buf(),
                    bytes,
                });
            }
        }

        let mut paths = Vec::with_capacity(scanned.len());
        let mut entries = Vec::with_capacity(scanned.len());
        for item in scanned {
            paths.push(item.path);
            entries.push(item.entry);
        }
        // Pre-order: the parent of each entry is on the stack of open directories.
        let mut children = vec![Vec::new(); paths.len()];
        let mut open: Vec<usize> = vec![0];
        for (idx, path) in paths.iter().enumerate().skip(1) {
            let parent = parent_of(path);
            while let Some(&top) = open.last() {
                if paths[top] == parent {
                    break;
                }
                open.pop();
            }
            if let Some(&top) = open.last() {
                children[top].push(idx as u32);
            }
            if entries[idx].kind == Kind::Dir {
                open.push(idx);
            }
        }
        let digests = (0..paths.len()).map(|_| OnceLock::new()).collect();
        let stamps = (0..paths.len()).map(|_| OnceLock::new()).collect();
        stats.duration = started.elapsed();
        Ok((
            Self {
                root,
                paths,
                entries,
                children,
                digests,
                stamps,
                lookup: OnceLock::new(),
            },
            stats,
            write,
        ))
    }

    /// The context directory (canonicalized).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn find(&self, rel: &str) -> Option<usize> {
        let hash = |p: &str| rustc_hash::FxBuildHasher.hash_one(p);
        let table = self.lookup.get_or_init(|| {
            let mut table = hashbrown::HashTable::with_capacity(self.paths.len());
            for (idx, path) in self.paths.iter().enumerate() {
                // u32: the children lists index entries with u32 already.
                table.insert_unique(hash(path), idx as u32, |&i| hash(&self.paths[i as usize]));
            }
            table
        });
        table
            .find(hash(rel), |&i| self.paths[i as usize] == rel)
            .map(|&i| i as usize)
    }

    /// The entry at `rel` (cleaned; `""` is the context root itself), not following symlinks.
    pub fn get(&self, rel: &str) -> Option<&Entry> {
        self.find(rel).map(|idx| &self.entries[idx])
    }

    /// Direct children of a directory as `(full rel path, entry)`, sorted by name bytes.
    pub fn children(&self, dir_rel: &str) -> Vec<(&str, &Entry)> {
        self.find(dir_rel).map_or_else(Vec::new, |idx| {
            self.children[idx]
                .iter()
                .map(|&c| (self.paths[c as usize].as_str(), &self.entries[c as usize]))
                .collect()
        })
    }

    /// Resolves `rel` with the context as root, like `openat2` `RESOLVE_IN_ROOT`: absolute
    /// symlink targets restart at the context root, `..` never climbs above it, intermediate
    /// symlinks are followed; the final component is followed only if `follow_final`. Returns
    /// the resolved rel path, `Ok(None)` if it does not exist (or is excluded).
    ///
    /// # Errors
    ///
    /// [`Error::SymlinkLoop`] after more than 40 symlinks.
    pub fn resolve(&self, rel: &str, follow_final: bool) -> Result<Option<String>> {
        let mut todo: Vec<String> = Vec::new();
        push_components(&mut todo, rel);
        let mut current: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(part) = todo.pop() {
            if part == ".." {
                current.pop();
                continue;
            }
            current.push(part);
            let path = current.join("/");
            let Some(entry) = self.get(&path) else {
                return Ok(None);
            };
            let last = todo.is_empty();
            if entry.kind == Kind::Symlink && (!last || follow_final) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Error::SymlinkLoop {
                        path: rel.to_owned(),
                    });
                }
                let target = entry.link.as_deref().unwrap_or_default();
                let Ok(target) = std::str::from_utf8(target) else {
                    return Ok(None);
                };
                current.pop();
                if target.starts_with('/') {
                    current.clear();
                }
                push_components(&mut todo, target);
            } else if !last && entry.kind != Kind::Dir {
                return Ok(None);
            }
        }
        Ok(Some(current.join("/")))
    }

    /// Expands a wildcard source with Go `path/filepath.Match` semantics per component (`*`,
    /// `?`, `[...]`, `\` escapes) on the cleaned pattern (`..` never climbs above the root;
    /// intermediate symlinks are followed inside the context). Results are sorted; a pattern
    /// without metacharacters is returned as-is if it exists.
    ///
    /// # Errors
    ///
    /// [`Error::BadPattern`] for a malformed pattern, [`Error::SymlinkLoop`] from resolution.
    pub fn glob(&self, pattern: &str) -> Result<Vec<String>> {
        let rooted = dockerignore::clean(&format!("/{pattern}"));
        let cleaned = rooted.trim_start_matches('/');
        if !has_meta(cleaned) {
            let found = self.resolve(cleaned, false)?.is_some();
            return Ok(if found {
                vec![cleaned.to_owned()]
            } else {
                Vec::new()
            });
        }
        let bad = |message: String| Error::BadPattern {
            pattern: pattern.to_owned(),
            message,
        };
        let mut current = vec![String::new()];
        for part in cleaned.split('/') {
            let mut next = Vec::new();
            if has_meta(part) {
                let tokens = dockerignore::tokenize(part).map_err(bad)?;
                for base in &current {
                    let Some(dir) = self.resolve(base, true)? else {
                        continue;
                    };
                    for (child, _) in self.children(&dir) {
                        let name = base_name(child);
                        if dockerignore::match_tokens(&tokens, name) {
                            next.push(join(base, name));
                        }
                    }
                }
            } else {
                for base in &current {
                    let candidate = join(base, part);
                    if self.resolve(&candidate, false)?.is_some() {
                        next.push(candidate);
                    }
                }
            }
            current = next;
        }
        current.sort_unstable();
        current.dedup();
        Ok(current)
    }

    /// Content digest (blake3, tagged `strata.ctxdigest.v1`) of the entry at `rel`, not
    /// following a final symlink: type, mode, uid, gid, link target, content hash; a directory
    /// over its sorted children's (name, digest). Never mtime, ctime, inode or size alone.
    /// `None` if absent. Memoized per entry.
    pub fn digest(&self, rel: &str) -> Option<[u8; 32]> {
        self.find(rel).map(|idx| self.digest_at(idx))
    }

    fn digest_at(&self, idx: usize) -> [u8; 32] {
        if let Some(done) = self.digests[idx].get() {
            return *done;
        }
        let entry = &self.entries[idx];
        let digest = if entry.kind == Kind::Dir {
            let kids = &self.children[idx];
            if kids.len() >= PARALLEL_CHILDREN {
                kids.par_iter().for_each(|&child| {
                    self.digest_at(child as usize);
                });
            }
            let mut hasher = blake3::Hasher::new();
            hasher.update(header(entry, &mut [0; HEADER_MAX], &mut Vec::new()));
            hasher.update(&(kids.len() as u64).to_le_bytes());
            for &child in kids {
                let child = child as usize;
                add_child(
                    &mut hasher,
                    base_name(&self.paths[child]),
                    &self.digest_at(child),
                );
            }
            *hasher.finalize().as_bytes()
        } else {
            *blake3::hash(header(entry, &mut [0; HEADER_MAX], &mut Vec::new())).as_bytes()
        };
        *self.digests[idx].get_or_init(|| digest)
    }

    /// A stamp of the entry at `rel` and everything below it: [`ContextIndex::digest`]'s
    /// fields plus mtime and size, for a directory followed by its sorted children's names,
    /// each with a subdirectory's stamp or a file's fields.
    /// Equal stamps, equal copies (a COPY keeps mtimes). `None` when `rel` is absent or the
    /// subtree holds anything but directories and regular files with a single name: a
    /// hardlink group, a symlink or a special file. Memoized per entry.
    pub fn stamp(&self, rel: &str) -> Option<[u8; 32]> {
        self.find(rel).and_then(|idx| self.stamp_at(idx))
    }

    fn stamp_at(&self, idx: usize) -> Option<[u8; 32]> {
        if let Some(done) = self.stamps[idx].get() {
            return *done;
        }
        let entry = &self.entries[idx];
        let mut hasher = blake3::Hasher::new();
        hasher.update(STAMP_TAG);
        let stamp = match entry.kind {
            Kind::File if entry.nlink == 1 => {
                self.stamp_fields(idx, &mut hasher);
                Some(*hasher.finalize().as_bytes())
            }
            Kind::Dir => {
                let kids = &self.children[idx];
                let is_dir = |&&c: &&u32| self.entries[c as usize].kind == Kind::Dir;
                if kids.iter().filter(is_dir).count() >= PARALLEL_SUBDIRS {
                    kids.par_iter().filter(is_dir).for_each(|&child| {
                        self.stamp_at(child as usize);
                    });
                }
                self.stamp_fields(idx, &mut hasher);
                hasher.update(&(kids.len() as u64).to_le_bytes());
                // A file's fields go straight into its directory's stamp: one hash per
                // directory, not one per file.
                kids.iter()
                    .try_for_each(|&child| {
                        let child = child as usize;
                        let name = base_name(&self.paths[child]);
                        hasher.update(&(name.len() as u64).to_le_bytes());
                        hasher.update(name.as_bytes());
                        match &self.entries[child] {
                            e if e.kind == Kind::Dir => {
                                hasher.update(&self.stamp_at(child)?);
                            }
                            e if e.kind == Kind::File && e.nlink == 1 => {
                                self.stamp_fields(child, &mut hasher);
                            }
                            _ => return None,
                        }
                        Some(())
                    })
                    .map(|()| *hasher.finalize().as_bytes())
            }
            _ => None,
        };
        *self.stamps[idx].get_or_init(|| stamp)
    }

    /// What a stamp takes of one entry: [`header`]'s fields, mtime and size.
    fn stamp_fields(&self, idx: usize, hasher: &mut blake3::Hasher) {
        let entry = &self.entries[idx];
        hasher.update(header(entry, &mut [0; HEADER_MAX], &mut Vec::new()));
        hasher.update(&entry.mtime_ns.to_le_bytes());
        hasher.update(&entry.size.to_le_bytes());
    }

    /// Like [`ContextIndex::digest`] for the selection COPY makes of `rel` with `exclude` (the
    /// `COPY --exclude` patterns, Docker syntax, relative to `rel`): excluded entries are left
    /// out, with the same re-inclusion rules as `.dockerignore`. For a file source the patterns
    /// are matched against its name; a fully excluded selection has the digest of an empty one.
    /// `None` if `rel` is absent.
    pub fn digest_filtered(&self, rel: &str, exclude: &DockerIgnore) -> Option<[u8; 32]> {
        if exclude.is_empty() {
            return self.digest(rel);
        }
        let idx = self.find(rel)?;
        if self.entries[idx].kind != Kind::Dir {
            if exclude.is_excluded(base_name(rel)) {
                let mut hasher = blake3::Hasher::new();
                hasher.update(DIGEST_TAG);
                hasher.update(b"empty");
                return Some(*hasher.finalize().as_bytes());
            }
            return Some(self.digest_at(idx));
        }
        self.filtered_dir(idx, "", exclude, false)
    }

    /// The filtered digest of directory `idx` whose path relative to the selection is `sub`;
    /// `None` when `pending` (the directory itself is excluded) and nothing below is kept.
    fn filtered_dir(
        &self,
        idx: usize,
        sub: &str,
        exclude: &DockerIgnore,
        pending: bool,
    ) -> Option<[u8; 32]> {
        let mut kept = Vec::new();
        for &child in &self.children[idx] {
            let child = child as usize;
            let name = base_name(&self.paths[child]);
            let child_sub = join(sub, name);
            let is_dir = self.entries[child].kind == Kind::Dir;
            let digest = if exclude.is_excluded(&child_sub) {
                if !(is_dir && exclude.may_reinclude_under(&child_sub)) {
                    continue;
                }
                match self.filtered_dir(child, &child_sub, exclude, true) {
                    Some(d) => d,
                    None => continue,
                }
            } else if is_dir && exclude.may_affect_under(&child_sub) {
                self.filtered_dir(child, &child_sub, exclude, false)?
            } else {
                self.digest_at(child)
            };
            kept.push((name, digest));
        }
        if pending && kept.is_empty() {
            return None;
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(header(
            &self.entries[idx],
            &mut [0; HEADER_MAX],
            &mut Vec::new(),
        ));
        hasher.update(&(kept.len() as u64).to_le_bytes());
        for (name, digest) in kept {
            add_child(&mut hasher, name, &digest);
        }
        Some(*hasher.finalize().as_bytes())
    }
}

/// The part of every digest that describes the entry itself (all of it but a directory's
/// children): tag, type, mode, uid, gid, then size and content hash or the link target.
/// Written into `buf` (a stack buffer suffices for everything but long link targets).
fn header<'a>(entry: &Entry, buf: &'a mut [u8; HEADER_MAX], spill: &'a mut Vec<u8>) -> &'a [u8] {
    let link = entry.link.as_deref().unwrap_or_default();
    let mut fixed = [0u8; HEADER_FIXED];
    fixed[..DIGEST_TAG.len()].copy_from_slice(DIGEST_TAG);
    let mut at = DIGEST_TAG.len();
    fixed[at] = entry.kind.code();
    at += 1;
    for v in [entry.mode, entry.uid, entry.gid] {
        fixed[at..at + 4].copy_from_slice(&v.to_le_bytes());
        at += 4;
    }
    let tail: &[&[u8]] = match entry.kind {
        Kind::File => &[&entry.size.to_le_bytes(), &entry.hash],
        Kind::Symlink => &[&(link.len() as u64).to_le_bytes(), link],
        _ => &[],
    };
    let len = HEADER_FIXED + tail.iter().map(|t| t.len()).sum::<usize>();
    let out: &mut [u8] = if len <= HEADER_MAX {
        &mut buf[..len]
    } else {
        spill.resize(len, 0);
        spill.as_mut_slice()
    };
    out[..HEADER_FIXED].copy_from_slice(&fixed);
    let mut at = HEADER_FIXED;
    for part in tail {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    out
}

const HEADER_FIXED: usize = DIGEST_TAG.len() + 1 + 12;
const HEADER_MAX: usize = 256;

/// Orders paths component by component (`a/x` before `a.b`, as `/` sorts before every other
/// byte): the pre-order of the tree, with siblings by name bytes.
pub(crate) fn path_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(at) => key(a[at]).cmp(&key(b[at])),
        None => a.len().cmp(&b.len()),
    }
}

fn add_child(hasher: &mut blake3::Hasher, name: &str, digest: &[u8; 32]) {
    hasher.update(&(name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(digest);
}

/// Pushes the components of `path` on a stack so that the first one pops first.
fn push_components(stack: &mut Vec<String>, path: &str) {
    stack.extend(
        path.split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .rev()
            .map(str::to_owned),
    );
}

fn parent_of(path: &str) -> &str {
    path.rfind('/').map_or("", |pos| &path[..pos])
}

fn base_name(path: &str) -> &str {
    path.rfind('/').map_or(path, |pos| &path[pos + 1..])
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests;
