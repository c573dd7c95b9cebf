//! The build cache: step records by cache key, and `RUN --mount=type=cache` directories.
//!
//! # On-disk format
//!
//! ```text
//! buildcache/records/<key hex>.json   {"layer":{"diff_id":"sha256:..","size":N}|null,
//!                                      "created":"<RFC 3339>","last_used":<unix secs>}
//! buildcache/lineage/<lineage key hex>     "sha256:<diff id>\n": the layer a COPY/ADD with this
//!                                         lineage (its key without its sources' content)
//!                                         last produced, or the base it was stored over: the
//!                                         next build of that step stores its layer as a delta
//!                                         over it (see strata_cas::commit); a hint, not a root.
//!                                         Then, optionally, one line of JSON: {"<dest dir>":
//!                                         "<stamp hex>", ...}, the stamps of the source
//!                                         directories of the walk that made that layer
//!                                         (`CopyStats::stamps`)
//! buildcache/mounts/<blake3(id) hex>[-N]/   a cache mount's directory (content never in a layer)
//! buildcache/mounts/<...>.lock              flocked while a RUN step uses it
//! context/<blake3(context path) hex>.idx      a build context's stat index (see
//!                                             `strata_planner::ContextIndex`), rewritten
//!                                             by each build of that context
//! ```
//!
//! A record says what a step with that key produced: its layer (or none: an empty diff or a
//! metadata-only step) and when it first ran, so a cached rebuild reproduces the same history
//! and the same image ID. Records are written temp + rename. A record whose layer is gone from
//! the store is a miss. Cache ids are hashed into directory names, so an id like `../../x` can
//! never name a path outside `buildcache/mounts/`.
//!
//! Records are GC roots ([`GcRoots`]): their layers survive `system prune` until the records
//! themselves are pruned (`builder prune`, or `system prune` for records no image uses).
//! Context indexes are build cache too (BuildKit's local source snapshots): a prune removes
//! them as it removes cache mounts, and the next build of that context hashes it afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use strata_cas::gc::{GcRoots, Roots};
use strata_cas::usage::{UsageRow, UsageSource};
use strata_cas::{Digest, Store};
use strata_planner::CacheKey;

use crate::error::{Error, Result};

/// Stamps a lineage hint keeps at most (a hint is read by every build of its step).
pub const MAX_STAMPS: usize = 4096;

/// What a lineage hint says (see [`BuildCache::lineage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// The layer to build the next one over.
    pub layer: Digest,
    /// The stamps of the walk that made `layer` (`CopyStats::stamps`).
    pub stamps: crate::fs::copy::DirStamps,
    /// Whether the hint has its stamps line: a hint of an earlier version has none, and one
    /// whose line does not parse has lost it.
    pub stamped: bool,
}

/// A layer a record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub diff_id: Digest,
    /// Size of the layer's tar.
    pub size: u64,
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub layer: Option<LayerRef>,
    pub created: String,
    #[serde(default)]
    pub last_used: u64,
}

/// How to prune the build cache.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Keep records younger than this (`--filter until=`).
    pub until: Option<Duration>,
    /// Keep the most recently used records while they fit in this many bytes.
    pub keep_storage: Option<u64>,
    /// Layers some image uses: records naming them are kept unless `all`.
    pub image_layers: BTreeSet<Digest>,
    /// Remove records even when an image uses their layer (`builder prune -a`).
    pub all: bool,
}

impl PruneOptions {
    /// Whether `until` keeps something last used at `used` (unix seconds) at `now`.
    fn young(&self, now: u64, used: u64) -> bool {
        self.until
            .is_some_and(|u| now.saturating_sub(used) < u.as_secs())
    }

    /// Whether `keep_storage` keeps `size` more bytes after `kept` (most recent first).
    fn fits(&self, kept: u64, size: u64) -> bool {
        self.keep_storage.is_some_and(|k| kept + size <= k)
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub records: u64,
    pub mounts: u64,
    /// Context indexes removed.
    pub contexts: u64,
    /// Bytes of cache mount content and context indexes removed.
    pub bytes: u64,
}

/// The build cache of a store root.
#[derive(Debug, Clone)]
pub struct BuildCache {
    dir: PathBuf,
    contexts: PathBuf,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Apparent size of a tree (regular files), without following symlinks.
fn tree_size(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !m.is_dir() {
        return if m.is_file() { m.len() } else { 0 };
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}

impl BuildCache {
    /// The build cache under `root` (created on first write).
    pub fn new(root: &Path) -> Self {
        BuildCache {
            dir: root.join("buildcache"),
            contexts: root.join("context"),
        }
    }

    /// Where the stat index of the build context at `abs` (an absolute path) is kept.
    pub fn context_index_path(&self, abs: &Path) -> PathBuf {
        let hash = blake3::hash(abs.as_os_str().as_encoded_bytes()).to_hex();
        self.contexts.join(format!("{}.idx", &hash[..32]))
    }

    /// The context indexes: (path, size, mtime in unix seconds), most recently written first.
    fn context_indexes(&self) -> Vec<(PathBuf, u64, u64)> {
        let Ok(rd) = fs::read_dir(&self.contexts) else {
            return Vec::new();
        };
        let mut out: Vec<(PathBuf, u64, u64)> = rd
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "idx"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                m.is_file()
                    .then(|| (e.path(), m.len(), m.mtime().max(0) as u64))
            })
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.2));
        out
    }

    fn record_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join("records").join(format!("{}.json", key.hex()))
    }

    /// The record of `key`, if any and if its layer is still in the store.
    ///
    /// # Errors
    /// I/O errors other than "not found". An unreadable record is a miss, not an error.
    pub fn get(&self, store: &Store, key: &CacheKey) -> Result<Option<Record>> {
        let path = self.record_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let Ok(mut rec) = serde_json::from_slice::<Record>(&bytes) else {
            return Ok(None);
        };
        if let Some(l) = &rec.layer
            && store.layer(&l.diff_id)?.is_none()
        {
            return Ok(None);
        }
        // Best effort: last_used orders `--keep-storage` pruning.
        let now = now_secs();
        if now > rec.last_used + 60 {
            rec.last_used = now;
            let _ = self.put(key, &rec);
        }
        Ok(Some(rec))
    }

    /// Writes the record of `key` (temp + rename).
    ///
    /// # Errors
    /// I/O errors.
    pub fn put(&self, key: &CacheKey, rec: &Record) -> Result<()> {
        let bytes = serde_json::to_vec(rec).map_err(|e| Error::Sandbox(e.to_string()))?;
        replace_file(&self.record_path(key), key, &bytes)
    }

    fn lineage_path(&self, lineage: &CacheKey) -> PathBuf {
        self.dir.join("lineage").join(lineage.hex())
    }

    /// The layer the last build of a step with this lineage (its cache key without the
    /// content of its sources) produced or was stored over, if that layer is still in the
    /// store: a COPY whose sources changed builds its new layer as a delta over it.
    ///
    /// # Errors
    /// Store errors reading the layer.
    pub fn lineage(&self, store: &Store, lineage: &CacheKey) -> Result<Option<Lineage>> {
        let Ok(text) = fs::read_to_string(self.lineage_path(lineage)) else {
            return Ok(None);
        };
        let mut lines = text.lines();
        let Some(layer) = lines.next().and_then(|l| l.parse::<Digest>().ok()) else {
            return Ok(None);
        };
        if store.layer(&layer)?.is_none() {
            return Ok(None);
        }
        let parsed = lines
            .next()
            .and_then(|l| serde_json::from_str::<BTreeMap<String, String>>(l).ok());
        let stamped = parsed.is_some();
        let stamps = parsed
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(dest, hex)| {
                let mut stamp = [0u8; 32];
                hex::decode_to_slice(hex, &mut stamp).ok()?;
                Some((dest, stamp))
            })
            .collect();
        Ok(Some(Lineage {
            layer,
            stamps,
            stamped,
        }))
    }

    /// Records the layer for [`Self::lineage`], with the stamps of the walk that made it
    /// (written to a temp file, then renamed; a hint, never a GC root). Of more than
    /// [`MAX_STAMPS`] stamps, those of the directories nearest the top are kept (the largest
    /// subtrees, as a rule).
    ///
    /// # Errors
    /// I/O errors.
    pub fn set_lineage(
        &self,
        lineage: &CacheKey,
        layer: &Digest,
        stamps: &crate::fs::copy::DirStamps,
    ) -> Result<()> {
        let mut kept: Vec<(&String, &[u8; 32])> = stamps.iter().collect();
        if kept.len() > MAX_STAMPS {
            kept.sort_by_key(|(dest, _)| (dest.matches('/').count(), dest.len()));
            kept.truncate(MAX_STAMPS);
        }
        let stamps: BTreeMap<&str, String> = kept
            .into_iter()
            .map(|(dest, stamp)| (dest.as_str(), hex::encode(stamp)))
            .collect();
        let json = serde_json::to_string(&stamps).map_err(|e| Error::Sandbox(e.to_string()))?;
        replace_file(
            &self.lineage_path(lineage),
            lineage,
            format!("{layer}\n{json}\n").as_bytes(),
        )
    }

    fn records(&self) -> Result<Vec<(PathBuf, Record)>> {
        let dir = self.dir.join("records");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io_err(&dir))?;
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            if let Ok(rec) = fs::read(&path)
                .map_err(|_| ())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|_| ()))
            {
                out.push((path, rec));
            }
        }
        Ok(out)
    }

    /// A cache mount's directory for `id`, locked for the step's duration: `shared` takes a
    /// shared lock, `locked` waits for an exclusive one, `private` takes an exclusive lock on
    /// the first free instance (`<hash>`, `<hash>-1`, ...). A new directory gets `mode`, `uid`
    /// and `gid`. The returned file holds the lock until dropped.
    ///
    /// # Errors
    /// I/O errors creating or locking.
    pub fn mount_dir(
        &self,
        id: &str,
        sharing: Sharing,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(PathBuf, File, bool)> {
        let base = self.dir.join("mounts");
        fs::create_dir_all(&base).map_err(io_err(&base))?;
        let hash = blake3::hash(id.as_bytes()).to_hex().to_string();
        for n in 0.. {
            let name = if n == 0 {
                hash.clone()
            } else {
                format!("{hash}-{n}")
            };
            let lock_path = base.join(format!("{name}.lock"));
            let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
            match sharing {
                Sharing::Shared => lock.lock_shared().map_err(io_err(&lock_path))?,
                Sharing::Locked => lock.lock().map_err(io_err(&lock_path))?,
                Sharing::Private => match lock.try_lock() {
                    Ok(()) => {}
                    Err(fs::TryLockError::WouldBlock) => continue,
                    Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
                },
            }
            let dir = base.join(&name);
            let created = match fs::DirBuilder::new().mode(mode & 0o7777).create(&dir) {
                Ok(()) => {
                    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(io_err(&dir))?;
                    // The umask must not narrow the requested mode.
                    fs::set_permissions(
                        &dir,
                        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
                    )
                    .map_err(io_err(&dir))?;
                    true
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            return Ok((dir, lock, created));
        }
        Err(Error::Sandbox("no cache mount instance available".into()))
    }

    /// Removes records (see [`PruneOptions`]), every cache mount not in use and the context
    /// indexes (kept by `until` and, after the records, by `keep_storage`).
    ///
    /// # Errors
    /// I/O errors.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let now = now_secs();
        let mut records = self.records()?;
        // Most recently used first: those are kept under --keep-storage.
        records.sort_by_key(|r| std::cmp::Reverse(r.1.last_used));
        let mut kept_bytes = 0u64;
        let mut kept_layers = BTreeSet::new();
        for (path, rec) in records {
            let used = !opts.all
                && rec
                    .layer
                    .as_ref()
                    .is_some_and(|l| opts.image_layers.contains(&l.diff_id));
            let size = rec.layer.map(|l| l.size).unwrap_or(0);
            if opts.young(now, rec.last_used) || used || opts.fits(kept_bytes, size) {
                kept_bytes += size;
                kept_layers.extend(rec.layer.map(|l| l.diff_id));
                continue;
            }
            fs::remove_file(&path).map_err(io_err(&path))?;
            report.records += 1;
        }
        // Lineage hints go with the records of their layers.
        let lineage = self.dir.join("lineage");
        for name in fs::read_dir(&lineage).into_iter().flatten().flatten() {
            let path = name.path();
            if !read_lineage(&path).is_some_and(|l| kept_layers.contains(&l)) {
                let _ = fs::remove_file(&path);
            }
        }
        let base = self.dir.join("mounts");
        if let Ok(rd) = fs::read_dir(&base) {
            for e in rd.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "lock") || !path.is_dir() {
                    continue;
                }
                let lock_path = path.with_extension("lock");
                let Ok(lock) = File::create(&lock_path) else {
                    continue;
                };
                if lock.try_lock().is_err() {
                    continue; // in use by a running build
                }
                let mtime = e.metadata().map(|m| m.mtime().max(0) as u64);
                if mtime.is_ok_and(|m| opts.young(now, m)) {
                    continue;
                }
                report.bytes += tree_size(&path);
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                let _ = fs::remove_file(&lock_path);
                report.mounts += 1;
            }
        }
        // A build reading an index meanwhile has it open or read already; one writing it
        // renames a new file in.
        for (path, size, mtime) in self.context_indexes() {
            if opts.young(now, mtime) || opts.fits(kept_bytes, size) {
                kept_bytes += size;
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    report.contexts += 1;
                    report.bytes += size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(report)
    }
}

/// `RUN --mount=type=cache,sharing=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

impl GcRoots for BuildCache {
    fn name(&self) -> &str {
        "build cache"
    }

    fn roots(&self, _store: &Store) -> strata_cas::Result<Roots> {
        let mut roots = Roots::default();
        let records = self.records().map_err(|e| strata_cas::Error::Corrupt {
            path: self.dir.clone(),
            message: e.to_string(),
        })?;
        for (_, rec) in records {
            if let Some(l) = rec.layer {
                roots.layers.insert(l.diff_id);
            }
        }
        Ok(roots)
    }
}

impl UsageSource for BuildCache {
    fn name(&self) -> &str {
        "build cache"
    }

    fn rows(&self, store: &Store) -> strata_cas::Result<Vec<UsageRow>> {
        let records = self.records().map_err(|e| strata_cas::Error::Corrupt {
            path: self.dir.clone(),
            message: e.to_string(),
        })?;
        let mut layers = BTreeSet::new();
        for (_, rec) in &records {
            if let Some(l) = rec.layer {
                layers.insert(l.diff_id);
            }
        }
        let mut size = 0;
        for d in &layers {
            size += store.layer(d)?.map(|l| l.unpacked_bytes).unwrap_or(0);
        }
        let mut mounts = 0;
        let base = self.dir.join("mounts");
        if let Ok(rd) = fs::read_dir(&base) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    mounts += 1;
                    size += tree_size(&e.path());
                }
            }
        }
        let contexts = self.context_indexes();
        size += contexts.iter().map(|c| c.1).sum::<u64>();
        Ok(vec![UsageRow {
            kind: "Build Cache".into(),
            total: records.len() as u64 + mounts + contexts.len() as u64,
            active: 0,
            size,
            reclaimable: size,
        }])
    }
}

/// Writes `bytes` to `path` (the file of `key` in its directory, created if missing) as a temp
/// file renamed over it: a reader sees the old file or the new one, never part of one.
fn replace_file(path: &Path, key: &CacheKey, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(".{}.{}.tmp", key.hex(), std::process::id()));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// The layer a lineage hint names (`None` for a missing or unreadable hint).
fn read_lineage(path: &Path) -> Option<Digest> {
    fs::read_to_string(path).ok()?.lines().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> CacheKey {
        CacheKey([b; 32])
    }

    #[test]
    fn records_round_trip_and_missing_layers_miss() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("s")).unwrap();
        let c = BuildCache::new(store.root());
        assert_eq!(c.get(&store, &key(1)).unwrap(), None);
        let rec = Record {
            layer: None,
            created: "2024-01-01T00:00:00Z".into(),
            last_used: 0,
        };
        c.put(&key(1), &rec).unwrap();
        assert_eq!(
            c.get(&store, &key(1)).unwrap().unwrap().created,
            rec.created
        );
        let gone = Record {
            layer: Some(LayerRef {
                diff_id: Digest::of(b"nope"),
                size: 1,
            }),
            ..rec.clone()
        };
        c.put(&key(2), &gone).unwrap();
        assert_eq!(c.get(&store, &key(2)).unwrap(), None);
        assert_eq!(c.roots(&store).unwrap().layers.len(), 1);
        let r = c.prune(&PruneOptions::default()).unwrap();
        assert_eq!(r.records, 2);
        assert_eq!(c.get(&store, &key(1)).unwrap(), None);
    }

    #[test]
    fn lineage_hints_keep_their_stamps_and_go_with_their_layer() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("s")).unwrap();
        let c = BuildCache::new(store.root());
        let lease = store.lease().unwrap();
        let pending = store.begin_layer(&lease).unwrap();
        fs::write(pending.rootfs().join("f"), "f").unwrap();
        let layer = pending.commit().unwrap().diff_id;
        assert_eq!(c.lineage(&store, &key(1)).unwrap(), None);

        let stamps: crate::fs::copy::DirStamps = [
            ("app/a".to_string(), [7; 32]),
            ("app/a\nb".to_string(), [8; 32]),
        ]
        .into_iter()
        .collect();
        c.set_lineage(&key(1), &layer, &stamps).unwrap();
        let hint = c.lineage(&store, &key(1)).unwrap().unwrap();
        assert_eq!(
            (hint.layer, &hint.stamps, hint.stamped),
            (layer, &stamps, true)
        );
        c.set_lineage(&key(3), &layer, &Default::default()).unwrap();
        assert!(c.lineage(&store, &key(3)).unwrap().unwrap().stamped);
        // A hint of one line (or stamps that do not parse) names its layer without stamps.
        let path = c.lineage_path(&key(1));
        for text in [format!("{layer}\n"), format!("{layer}\n{{\"x\": 1\n")] {
            fs::write(&path, text).unwrap();
            let hint = c.lineage(&store, &key(1)).unwrap().unwrap();
            assert_eq!(
                (hint.layer, hint.stamps.len(), hint.stamped),
                (layer, 0, false)
            );
        }
        // Past MAX_STAMPS, the deepest directories go first.
        let mut many: crate::fs::copy::DirStamps = (0..MAX_STAMPS)
            .map(|i| (format!("app/d{i}"), [1; 32]))
            .collect();
        many.insert("app/d0/deeper".into(), [2; 32]);
        c.set_lineage(&key(1), &layer, &many).unwrap();
        let hint = c.lineage(&store, &key(1)).unwrap().unwrap();
        assert_eq!(hint.stamps.len(), MAX_STAMPS);
        assert!(!hint.stamps.contains_key("app/d0/deeper"));
        // A prune keeps the hint while a record keeps its layer, then removes it.
        c.set_lineage(&key(1), &layer, &stamps).unwrap();
        let rec = Record {
            layer: Some(LayerRef {
                diff_id: layer,
                size: 1,
            }),
            created: "2024-01-01T00:00:00Z".into(),
            last_used: now_secs(),
        };
        c.put(&key(2), &rec).unwrap();
        let young = PruneOptions {
            until: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        c.prune(&young).unwrap();
        assert!(c.lineage(&store, &key(1)).unwrap().is_some());
        c.prune(&PruneOptions::default()).unwrap();
        assert!(!path.exists());
    }

    /// Context indexes are build cache: counted by `system df`, kept by `until` while recently
    /// written and by `keep_storage` while they fit, removed otherwise.
    #[test]
    fn context_indexes_are_pruned_as_build_cache() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("s")).unwrap();
        let c = BuildCache::new(store.root());
        let old = c.context_index_path(Path::new("/ctx/old"));
        let new = c.context_index_path(Path::new("/ctx/new"));
        assert_ne!(old, new);
        assert_eq!(old, c.context_index_path(Path::new("/ctx/old")));
        fs::create_dir_all(old.parent().unwrap()).unwrap();
        fs::write(&old, vec![0u8; 1000]).unwrap();
        fs::write(&new, vec![0u8; 3000]).unwrap();
        let ago = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(ago)
            .unwrap();
        let row = &c.rows(&store).unwrap()[0];
        assert_eq!((row.total, row.size), (2, 4000));

        // until=1h keeps the one written now.
        let r = c
            .prune(&PruneOptions {
                until: Some(Duration::from_secs(3600)),
                ..Default::default()
            })
            .unwrap();
        assert_eq!((r.contexts, r.bytes), (1, 1000));
        assert!(!old.exists() && new.exists());
        // keep-storage below its size removes it; a plain prune removes everything.
        let r = c
            .prune(&PruneOptions {
                keep_storage: Some(2000),
                ..Default::default()
            })
            .unwrap();
        assert_eq!((r.contexts, r.bytes), (1, 3000));
        assert!(!new.exists());
        let row = &c.rows(&store).unwrap()[0];
        assert_eq!((row.total, row.size), (0, 0));
    }

    #[test]
    fn cache_ids_stay_inside_and_private_mounts_do_not_share() {
        let d = tempfile::tempdir().unwrap();
        let c = BuildCache::new(d.path());
        let (dir, _l1, created) = c
            .mount_dir("../../../etc", Sharing::Shared, 0o755, 0, 0)
            .unwrap();
        assert!(created);
        assert!(dir.starts_with(d.path().join("buildcache/mounts")));
        let (p1, _a, _) = c.mount_dir("x", Sharing::Private, 0o700, 0, 0).unwrap();
        let (p2, _b, _) = c.mount_dir("x", Sharing::Private, 0o700, 0, 0).unwrap();
        assert_ne!(p1, p2);
        assert_eq!(fs::metadata(&p1).unwrap().mode() & 0o7777, 0o700);
        drop((_a, _b));
        let r = c.prune(&PruneOptions::default()).unwrap();
        assert_eq!(r.mounts, 2, "the shared mount is still locked by _l1");
    }
}
