//! Garbage collection: leases, `gc.lock`, and mark-and-sweep over blobs, layers and objects.
//!
//! # Protocol
//!
//! Any number of strata processes share one root. Two mechanisms keep `prune` away from what they
//! are still using:
//!
//! - **Leases.** Every writing process holds a [`Lease`](crate::lease::Lease): a file
//!   `leases/<pid>-<rand>` on which it keeps an exclusive `flock` for its whole life (the kernel
//!   drops the lock when the process dies, even on `kill -9`). Before it commits a blob, layer or
//!   object it appends the id to its lease (`blob sha256:..`, `layer sha256:..`), so whatever it
//!   has written but not yet made reachable from a ref is a GC root.
//! - **`gc.lock`.** A writer holds `gc.lock` *shared* for the short commit step (record in the
//!   lease, rename into place) and while it creates a temp entry (`ingest/<id>` with its flocked
//!   `lock`, a lease file); `prune` holds it *exclusive* for the whole mark and sweep. Readers
//!   (`images`, `inspect`) take no lock: every file they read is replaced atomically; `verify`
//!   takes it shared so that no prune deletes things under it.
//!
//! # Why a concurrent writer is safe
//!
//! While prune runs, no commit step can run (exclusive vs shared). So every committed name prune
//! sees was published either before it (and then it is reachable from a ref or recorded in the
//! writer's lease, because the lease line is written before the rename under the same shared
//! lock) or not at all (and then it is not there to be swept). A writer that loses the race
//! simply waits on `gc.lock` for the prune to end; what it then finds present it records in its
//! lease before relying on it. Work in progress lives in temp entries owned by a live writer: a
//! held `lock` file (`ingest/<id>/lock`, `layers/tmp/<id>/lock`) or a name containing a live
//! lease id (`layers/tmp/<lease id>-<n>`, `tmp/<lease id>-...`); those are never touched.
//! Objects are written by layer ingests outside the commit step and become linked from their
//! temp tree a moment later, so (a) an object is only removed when its link count is 1 (no layer
//! tree, committed or being ingested, links it, whatever the records say), and (b) while any
//! layer ingest is running, objects are not swept at all. (b) needs the ingest to create its
//! `layers/tmp/<lease id>-<n>` directory under `gc.lock` shared: an ingest then either started
//! before the prune (and is seen) or waits for it to end.
//!
//! # Mark
//!
//! Roots are: every ref in `refs.json`; every id in a *live* lease (one whose flock is held; a
//! lease whose flock can be taken belongs to a dead process and is deleted); and whatever the
//! registered [`GcRoots`] (build cache, containers, registry, ...) return. From the root blobs
//! the walk follows every JSON blob the way images link them (docker schema2 and OCI alike):
//! `manifests[].digest` (indexes and manifest lists), `config.digest` and `layers[].digest`
//! (manifests), `rootfs.diff_ids` (configs, naming layers). A live layer keeps the objects its
//! tar-split record names, the blobs its compressed cache (`compressed/<diffid>/<kind>`)
//! points to, and its base when it is stored as a delta (`layers/sha256/<hex>/base`). If a live layer's record cannot be read, no object is swept (their liveness is
//! unknown). Untagged manifests are *not* roots: at the store level `prune` and `prune -a` are
//! the same, and "dangling images" are the image service's business.
//!
//! # Sweep
//!
//! Everything unmarked is removed, in an order that keeps the store consistent if the process
//! is killed at any instant:
//!
//! 1. compressed cache entries of dead layers (so no entry ever points to a removed blob);
//! 2. dead layers, each renamed into `layers/tmp/` (atomic) before it is deleted, so a committed
//!    layer is either complete or gone;
//! 3. dead blobs (single files: atomic), and partial files in `blobs/sha256/`;
//! 4. temp entries nobody owns: `ingest/*`, `layers/tmp/*`, `tmp/*` (stale leases were already
//!    removed by the mark);
//! 5. dead objects with link count 1 (last, so that the layer trees removed above free theirs).
//!
//! # What a crash leaves
//!
//! A prune killed half way has removed only unreachable things, each one atomically; the rest is
//! untouched and `verify` stays clean. Its leftovers (a layer renamed into `layers/tmp/` but not
//! yet deleted, objects no layer links any more) are removed by the next prune.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io_err};
use crate::lease::{GcLock, LeaseContents, live_leases, parse_lease};
use crate::object::ObjectKey;
use crate::store::dir_names;
use crate::{Digest, Store};

/// Blobs larger than this are never parsed as JSON during the mark (manifests, indexes and
/// configs are far smaller; compressed layers are not JSON anyway).
pub(crate) const MAX_JSON_BLOB: u64 = 16 << 20;

/// The GC roots one subsystem holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Blobs to keep; JSON blobs among them (manifests, indexes, configs) are followed.
    pub blobs: BTreeSet<Digest>,
    /// Layers (by diffID) to keep, with their objects and compressed cache entries.
    pub layers: BTreeSet<Digest>,
    /// File objects to keep.
    pub objects: BTreeSet<ObjectKey>,
}

/// A subsystem that holds GC roots: the build cache, containers, the registry, ...
///
/// Each registers itself by being passed to [`Store::prune`].
pub trait GcRoots {
    /// A short name for reports and errors ("build cache").
    fn name(&self) -> &str;
    /// The roots it holds now. Called with `gc.lock` held exclusively, so no commit can
    /// happen in between; the implementation must not take `gc.lock` itself.
    ///
    /// # Errors
    ///
    /// Any error aborts the prune before anything is deleted.
    fn roots(&self, store: &Store) -> Result<Roots>;
}

/// How to prune.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneOptions {
    /// Count what would be removed without removing anything.
    pub dry_run: bool,
}

/// What a prune removed (or, in a dry run, would remove).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs removed.
    pub blobs: u64,
    /// Layers removed.
    pub layers: u64,
    /// Objects removed.
    pub objects: u64,
    /// Temporary files and directories removed (ingest, `tmp/`, `layers/tmp/`, stale leases).
    pub temp_files: u64,
    /// Bytes of the files actually deleted (each object counted once).
    pub reclaimed_bytes: u64,
}

/// The reachable set found by the mark, as lowercase hex.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Live {
    pub blobs: BTreeSet<String>,
    pub layers: BTreeSet<String>,
    pub objects: BTreeSet<String>,
    /// False when the record of some live layer could not be read: then the objects are not
    /// swept at all (their liveness is unknown).
    pub objects_complete: bool,
}

/// What the mark needs to read from a store; a trait so the walk is testable on plain data.
pub(crate) trait MarkSource {
    /// The bytes of a blob if it exists and may be JSON (small, starts with `{`).
    fn json_blob(&self, hex: &str) -> Option<Vec<u8>>;
    /// The object keys a committed layer's record names; `Ok(None)` if the layer is absent.
    ///
    /// # Errors
    ///
    /// The record exists but cannot be read.
    fn layer_objects(&self, hex: &str) -> Result<Option<Vec<String>>>;
    /// The blobs the compressed cache of a layer points to.
    fn compressed_blobs(&self, layer_hex: &str) -> Vec<String>;
    /// The base of a layer stored as a delta (hex), which lives as long as the layer does.
    fn layer_base(&self, _layer_hex: &str) -> Option<String> {
        None
    }
}

/// The hex of a `sha256:<64 lowercase hex>` string, or `None`.
pub(crate) fn sha256_hex(s: &str) -> Option<&str> {
    let hex = s.strip_prefix("sha256:")?;
    is_hex64(hex).then_some(hex)
}

/// Whether `s` is exactly 64 lowercase hex digits (a sha256 or blake3 hex).
pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The links one JSON blob holds: blobs (manifests of an index, config and layer blobs of a
/// manifest) and layers (diff IDs of a config).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Children {
    pub blobs: Vec<String>,
    pub layers: Vec<String>,
}

/// Parses a manifest, index, manifest list or image config (docker schema2 or OCI) and returns
/// what it links to. Anything else (not JSON, other JSON) has no children.
pub(crate) fn json_children(bytes: &[u8]) -> Children {
    let mut out = Children::default();
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return out;
    };
    let digest_of = |v: &serde_json::Value| {
        v.get("digest")
            .and_then(serde_json::Value::as_str)
            .and_then(sha256_hex)
            .map(str::to_owned)
    };
    if let Some(config) = value.get("config").filter(|c| c.get("digest").is_some()) {
        out.blobs.extend(digest_of(config));
    }
    for key in ["layers", "manifests"] {
        if let Some(list) = value.get(key).and_then(serde_json::Value::as_array) {
            out.blobs.extend(list.iter().filter_map(digest_of));
        }
    }
    if let Some(ids) = value
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(serde_json::Value::as_array)
    {
        out.layers.extend(
            ids.iter()
                .filter_map(serde_json::Value::as_str)
                .filter_map(sha256_hex)
                .map(str::to_owned),
        );
    }
    out
}

/// The mark phase: everything reachable from the roots.
pub(crate) fn mark(
    src: &impl MarkSource,
    blobs: impl IntoIterator<Item = String>,
    layers: impl IntoIterator<Item = String>,
    objects: impl IntoIterator<Item = String>,
) -> Live {
    let mut live = Live {
        objects: objects.into_iter().collect(),
        objects_complete: true,
        ..Live::default()
    };
    let mut blob_queue: Vec<String> = blobs.into_iter().collect();
    let mut layer_queue: Vec<String> = layers.into_iter().collect();
    while !blob_queue.is_empty() || !layer_queue.is_empty() {
        while let Some(hex) = blob_queue.pop() {
            if !live.blobs.insert(hex.clone()) {
                continue;
            }
            if let Some(bytes) = src.json_blob(&hex) {
                let children = json_children(&bytes);
                blob_queue.extend(children.blobs);
                layer_queue.extend(children.layers);
            }
        }
        while let Some(hex) = layer_queue.pop() {
            if !live.layers.insert(hex.clone()) {
                continue;
            }
            match src.layer_objects(&hex) {
                Ok(Some(objects)) => live.objects.extend(objects),
                Ok(None) => {}
                Err(_) => live.objects_complete = false,
            }
            blob_queue.extend(src.compressed_blobs(&hex));
            layer_queue.extend(src.layer_base(&hex));
        }
    }
    live
}

/// Every object in the store: `(hex, path)`, from `objects/<hh>/<hex>`.
pub(crate) fn list_object_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let base = root.join("objects");
    let mut out = Vec::new();
    for hh in dir_names(&base)? {
        let dir = base.join(&hh);
        if !dir.is_dir() {
            continue;
        }
        for name in dir_names(&dir)? {
            if is_hex64(&name) && name.starts_with(&hh) {
                out.push((name.clone(), dir.join(name)));
            }
        }
    }
    Ok(out)
}

/// The store-backed [`MarkSource`].
struct StoreSource<'a> {
    store: &'a Store,
}

/// The bytes of blob `hex` if it exists and may be JSON: at most [`MAX_JSON_BLOB`] bytes, first
/// non-blank byte `{`.
pub(crate) fn read_json_blob(root: &Path, hex: &str) -> Option<Vec<u8>> {
    let path = root.join("blobs/sha256").join(hex);
    let file = fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len > MAX_JSON_BLOB {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_JSON_BLOB).read_to_end(&mut bytes).ok()?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    Some(bytes)
}

/// The object keys (hex) a committed layer's record names; `Ok(None)` if the layer or its
/// record is absent.
pub(crate) fn record_objects(store: &Store, hex: &str) -> Result<Option<Vec<String>>> {
    crate::layer::record_objects(store.root(), hex)
}

impl MarkSource for StoreSource<'_> {
    fn json_blob(&self, hex: &str) -> Option<Vec<u8>> {
        read_json_blob(self.store.root(), hex)
    }

    fn layer_objects(&self, hex: &str) -> Result<Option<Vec<String>>> {
        record_objects(self.store, hex)
    }

    fn compressed_blobs(&self, layer_hex: &str) -> Vec<String> {
        compressed_entries(self.store.root(), layer_hex)
            .into_iter()
            .map(|(_, blob)| blob)
            .collect()
    }

    fn layer_base(&self, layer_hex: &str) -> Option<String> {
        layer_base_hex(self.store.root(), layer_hex)
    }
}

/// The base (hex) a committed layer names in its `base` file, if any (see [`crate::layer`]).
pub(crate) fn layer_base_hex(root: &Path, layer_hex: &str) -> Option<String> {
    let path = root
        .join("layers/sha256")
        .join(layer_hex)
        .join(crate::layer::BASE_FILE);
    let text = fs::read_to_string(path).ok()?;
    sha256_hex(text.trim()).map(str::to_owned)
}

/// The compressed cache entries of a layer: `(entry path, blob hex)`.
pub(crate) fn compressed_entries(root: &Path, layer_hex: &str) -> Vec<(PathBuf, String)> {
    let dir = root.join("compressed").join(layer_hex);
    let mut out = Vec::new();
    for name in dir_names(&dir).unwrap_or_default() {
        let path = dir.join(&name);
        if let Ok(text) = fs::read_to_string(&path)
            && let Some(hex) = sha256_hex(text.trim())
        {
            out.push((path, hex.to_owned()));
        }
    }
    out
}

/// The live leases without deleting the stale ones (dry run).
fn dry_live_leases(store: &Store) -> Result<Vec<LeaseContents>> {
    let dir = store.leases_dir();
    let mut out = Vec::new();
    for name in dir_names(&dir)? {
        let path = dir.join(&name);
        if try_lock_exclusive(&path).is_some() {
            continue;
        }
        match fs::read_to_string(&path) {
            Ok(text) => out.push(parse_lease(&name, &text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(out)
}

/// Tries to take an exclusive flock on `path` without blocking: `true` if taken (its holder is
/// gone). The lock is released when the returned file is dropped.
pub(crate) fn try_lock_exclusive(path: &Path) -> Option<fs::File> {
    let file = fs::OpenOptions::new().read(true).open(path).ok()?;
    file.try_lock().ok()?;
    Some(file)
}

impl Store {
    /// Mark-and-sweep garbage collection (see the [module docs](crate::gc)).
    ///
    /// Roots are the refs, the live leases, and what every `extra` subsystem returns.
    ///
    /// # Errors
    ///
    /// Taking `gc.lock`, reading refs or leases, an `extra` root source, or removing a file
    /// failed. Nothing reachable is ever removed; a failure half way leaves the store consistent.
    pub fn prune(&self, extra: &[&dyn GcRoots], opts: PruneOptions) -> Result<PruneReport> {
        let root = self.root();
        let lock = GcLock::exclusive(self)?;

        let mut report = PruneReport::default();
        let (mut blobs, mut layers, mut objects) = (Vec::new(), Vec::new(), Vec::new());
        for (_, digest) in self.refs()? {
            blobs.push(digest.hex());
        }
        // live_leases deletes the stale ones (their flock could be taken: owner dead).
        let leases_before = dir_names(&self.leases_dir())?.len();
        let leases = if opts.dry_run {
            dry_live_leases(self)?
        } else {
            live_leases(self)?
        };
        report.temp_files += leases_before.saturating_sub(leases.len()) as u64;
        let live_ids: BTreeSet<String> = leases.iter().map(|l| l.id.clone()).collect();
        for lease in leases {
            blobs.extend(lease.blobs.iter().map(Digest::hex));
            layers.extend(lease.layers.iter().map(Digest::hex));
            objects.extend(lease.objects);
        }
        for source in extra {
            let r = source.roots(self).map_err(|e| Error::Corrupt {
                path: root.to_path_buf(),
                message: format!("gc roots of {}: {e}", source.name()),
            })?;
            blobs.extend(r.blobs.iter().map(Digest::hex));
            layers.extend(r.layers.iter().map(Digest::hex));
            objects.extend(r.objects.iter().map(ObjectKey::hex));
        }
        let live = mark(&StoreSource { store: self }, blobs, layers, objects);
        self.sweep(&live, &live_ids, opts, &mut report)?;
        drop(lock);
        Ok(report)
    }

    /// Removes a file (or a directory tree) unless it is already gone.
    fn remove_path(&self, path: &Path) -> Result<()> {
        let result = match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(path)(e)),
            Ok(meta) if meta.is_dir() => self.sys.remove_dir_all(path),
            Ok(_) => self.sys.remove_file(path),
        };
        result.map_err(Error::from)
    }

    fn sweep(
        &self,
        live: &Live,
        live_ids: &BTreeSet<String>,
        opts: PruneOptions,
        report: &mut PruneReport,
    ) -> Result<()> {
        let root = self.root();
        let dry = opts.dry_run;

        // 1. Compressed cache entries of dead layers (before any blob they point to).
        let compressed = root.join("compressed");
        for name in dir_names(&compressed)? {
            if !live.layers.contains(&name) && !dry {
                self.remove_path(&compressed.join(&name))?;
            }
        }

        // 2. Dead layers: renamed into layers/tmp (atomic), then deleted (`remove_layer`).
        let layer_dir = root.join("layers/sha256");
        for name in dir_names(&layer_dir)? {
            if live.layers.contains(&name) {
                continue;
            }
            let Ok(digest) = Digest::from_hex(&name) else {
                continue; // not a layer name: verify reports it, prune leaves it
            };
            report.layers += 1;
            report.reclaimed_bytes += tree_bytes(&layer_dir.join(&name));
            if !dry {
                self.remove_layer(&digest)?;
            }
        }

        // 3. Dead blobs, and partial files (names that are not a digest) in blobs/.
        let blob_dir = root.join("blobs/sha256");
        for name in dir_names(&blob_dir)? {
            if live.blobs.contains(&name) {
                continue;
            }
            let path = blob_dir.join(&name);
            report.reclaimed_bytes += fs::symlink_metadata(&path).map_or(0, |m| m.len());
            match Digest::from_hex(&name) {
                Ok(d) => {
                    report.blobs += 1;
                    if !dry {
                        self.remove_blob(&d)?;
                    }
                }
                Err(_) => {
                    report.temp_files += 1;
                    if !dry {
                        self.remove_path(&path)?;
                    }
                }
            }
        }

        // 4. Ingest directories, layers/tmp and tmp/ entries nobody owns any more. Writers
        // create them under gc.lock shared, so none is half-made now.
        let mut ingest_running = false;
        for (dir, is_layer_tmp) in [
            (root.join("ingest"), false),
            (root.join("layers/tmp"), true),
            (root.join("tmp"), false),
        ] {
            for name in dir_names(&dir)? {
                let path = dir.join(&name);
                let (is_live, lock) = temp_owner(&path, &name, live_ids);
                if is_live {
                    ingest_running |= is_layer_tmp;
                    continue;
                }
                report.temp_files += 1;
                report.reclaimed_bytes += tree_bytes(&path);
                if !dry {
                    self.remove_path(&path)?;
                }
                drop(lock);
            }
        }

        // 5. Dead objects that no layer tree links any more. Skipped while a layer ingest runs:
        // it may have just renamed (or found) an object it has not hardlinked yet.
        if live.objects_complete && !ingest_running {
            for (hex, path) in list_object_files(root)? {
                if live.objects.contains(&hex) {
                    continue;
                }
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                // In a dry run the dead layers are still there: count what they alone hold.
                if meta.nlink() > 1 && !dry {
                    continue;
                }
                report.objects += 1;
                report.reclaimed_bytes += meta.len();
                if !dry {
                    let key = ObjectKey::from_hex(&hex)?;
                    self.remove_object(&key)?;
                }
            }
        }
        Ok(())
    }
}

/// Bytes a removal frees in a file tree: apparent sizes of regular files no other link holds.
fn tree_bytes(path: &Path) -> u64 {
    fn walk(path: &Path, seen: &mut BTreeSet<(u64, u64)>) -> u64 {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return 0;
        };
        if meta.is_dir() {
            let names = dir_names(path).unwrap_or_default();
            return names.iter().map(|n| walk(&path.join(n), seen)).sum();
        }
        if meta.is_file() && seen.insert((meta.dev(), meta.ino())) && meta.nlink() <= 1 {
            return meta.len();
        }
        0
    }
    walk(path, &mut BTreeSet::new())
}

/// Whether a temp entry (`ingest/<id>`, `layers/tmp/<id>`, `tmp/<name>`) is still owned: its
/// `lock` file is flocked by a writer, or its name contains the id of a live lease
/// (`<lease id>-<n>`, `refs.json.tmp-<lease id>`). When not owned, the returned lock (if any)
/// is held so nobody can take the entry over while it is removed.
fn temp_owner(path: &Path, name: &str, live_ids: &BTreeSet<String>) -> (bool, Option<fs::File>) {
    if live_ids.iter().any(|id| name.contains(id.as_str())) {
        return (true, None);
    }
    let lock = path.join("lock");
    if lock.is_file() {
        return match try_lock_exclusive(&lock) {
            Some(f) => (false, Some(f)),
            None => (true, None),
        };
    }
    (false, None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn h(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[derive(Default)]
    struct Fake {
        blobs: BTreeMap<String, Vec<u8>>,
        layers: BTreeMap<String, Result<Vec<String>, ()>>,
        compressed: BTreeMap<String, Vec<String>>,
        bases: BTreeMap<String, String>,
    }

    impl MarkSource for Fake {
        fn json_blob(&self, hex: &str) -> Option<Vec<u8>> {
            self.blobs.get(hex).cloned()
        }
        fn layer_objects(&self, hex: &str) -> Result<Option<Vec<String>>> {
            match self.layers.get(hex) {
                None => Ok(None),
                Some(Ok(v)) => Ok(Some(v.clone())),
                Some(Err(())) => Err(Error::LayerNotFound(hex.to_owned())),
            }
        }
        fn compressed_blobs(&self, layer_hex: &str) -> Vec<String> {
            self.compressed.get(layer_hex).cloned().unwrap_or_default()
        }
        fn layer_base(&self, layer_hex: &str) -> Option<String> {
            self.bases.get(layer_hex).cloned()
        }
    }

    #[test]
    fn a_live_delta_keeps_its_base_and_the_base_objects() {
        let mut fake = Fake::default();
        fake.layers.insert(h('d'), Ok(vec![h('1')]));
        fake.layers.insert(h('b'), Ok(vec![h('2'), h('3')]));
        fake.bases.insert(h('d'), h('b'));
        let live = mark(&fake, [], [h('d')], []);
        assert!(live.layers.contains(&h('b')));
        assert_eq!(
            live.objects.iter().cloned().collect::<BTreeSet<_>>(),
            [h('1'), h('2'), h('3')].into_iter().collect()
        );
        // The base alone keeps nothing of the delta.
        let live = mark(&fake, [], [h('b')], []);
        assert!(!live.layers.contains(&h('d')));
    }

    #[test]
    fn sha256_hex_validates() {
        assert_eq!(
            sha256_hex(&format!("sha256:{}", h('a'))),
            Some(h('a').as_str())
        );
        assert_eq!(sha256_hex(&format!("sha256:{}", h('A'))), None);
        assert_eq!(sha256_hex(&format!("sha512:{}", h('a'))), None);
        assert_eq!(sha256_hex("sha256:../../x"), None);
        assert_eq!(sha256_hex(&format!("sha256:{}0", h('a'))), None);
    }

    #[test]
    fn children_of_docker_and_oci_documents() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{}","size":1}},
            "layers":[{{"digest":"sha256:{}","size":2}},{{"digest":"sha256:{}","size":3}}]}}"#,
            h('1'),
            h('2'),
            h('3')
        );
        let c = json_children(manifest.as_bytes());
        assert_eq!(c.blobs, vec![h('1'), h('2'), h('3')]);
        assert!(c.layers.is_empty());

        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[{{"digest":"sha256:{}"}},{{"digest":"sha512:{}"}}]}}"#,
            h('4'),
            h('5')
        );
        assert_eq!(json_children(index.as_bytes()).blobs, vec![h('4')]);

        let config = format!(
            r#"{{"architecture":"amd64","config":{{"Cmd":["sh"]}},
            "rootfs":{{"type":"layers","diff_ids":["sha256:{}","sha256:{}"]}}}}"#,
            h('6'),
            h('7')
        );
        let c = json_children(config.as_bytes());
        assert!(
            c.blobs.is_empty(),
            "a config's `config` object has no digest"
        );
        assert_eq!(c.layers, vec![h('6'), h('7')]);

        assert_eq!(json_children(b"\x1f\x8b garbage"), Children::default());
        assert_eq!(json_children(b"[1,2]"), Children::default());
    }

    #[test]
    fn mark_walks_refs_to_objects_and_compressed_blobs() {
        let mut fake = Fake::default();
        // index 'a' -> manifest 'b' -> config 'c' + layer blob 'd'; config -> layer 'e'.
        fake.blobs.insert(
            h('a'),
            format!(r#"{{"manifests":[{{"digest":"sha256:{}"}}]}}"#, h('b')).into_bytes(),
        );
        fake.blobs.insert(
            h('b'),
            format!(
                r#"{{"config":{{"digest":"sha256:{}"}},"layers":[{{"digest":"sha256:{}"}}]}}"#,
                h('c'),
                h('d')
            )
            .into_bytes(),
        );
        fake.blobs.insert(
            h('c'),
            format!(r#"{{"rootfs":{{"diff_ids":["sha256:{}"]}}}}"#, h('e')).into_bytes(),
        );
        fake.layers.insert(h('e'), Ok(vec![h('0'), h('1')]));
        fake.compressed.insert(h('e'), vec![h('f')]);
        // An unreferenced layer and its compressed blob.
        fake.layers.insert(h('9'), Ok(vec![h('8')]));
        fake.compressed.insert(h('9'), vec![h('7')]);

        let live = mark(&fake, [h('a')], [], [h('5')]);
        assert_eq!(
            live.blobs,
            [h('a'), h('b'), h('c'), h('d'), h('f')]
                .into_iter()
                .collect()
        );
        assert_eq!(live.layers, [h('e')].into_iter().collect());
        assert_eq!(live.objects, [h('0'), h('1'), h('5')].into_iter().collect());
        assert!(live.objects_complete);
    }

    #[test]
    fn unreadable_record_disables_object_sweep() {
        let mut fake = Fake::default();
        fake.layers.insert(h('e'), Err(()));
        let live = mark(&fake, [], [h('e')], []);
        assert!(!live.objects_complete);
    }

    #[test]
    fn mark_survives_cycles() {
        let mut fake = Fake::default();
        fake.blobs.insert(
            h('a'),
            format!(r#"{{"manifests":[{{"digest":"sha256:{}"}}]}}"#, h('a')).into_bytes(),
        );
        let live = mark(&fake, [h('a')], [], []);
        assert_eq!(live.blobs.len(), 1);
    }
}

/// A synthetic store for the tests of gc, verify and usage: files written directly in the
/// documented layout.
#[cfg(test)]
pub(crate) mod fixture {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use crate::Store;
    use crate::object::{ObjectMeta, key_of};
    use crate::record::RecordWriter;

    pub fn sha(bytes: &[u8]) -> String {
        crate::Digest::of(bytes).hex().to_string()
    }

    pub fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        (dir, store)
    }

    pub fn blob(store: &Store, bytes: &[u8]) -> String {
        let hex = sha(bytes);
        let path = store.root().join("blobs/sha256").join(&hex);
        if !path.exists() {
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        }
        hex
    }

    pub fn object(store: &Store, content: &[u8]) -> String {
        let tmp = store.root().join("tmp/fixture-object");
        fs::write(&tmp, content).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        let file = fs::OpenOptions::new().write(true).open(&tmp).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            .unwrap();
        let key = key_of(&ObjectMeta::of_file(&file, &tmp).unwrap(), content).hex();
        let dir = store.root().join("objects").join(&key[..2]);
        fs::create_dir_all(&dir).unwrap();
        if dir.join(&key).exists() {
            fs::remove_file(&tmp).unwrap();
        } else {
            fs::rename(&tmp, dir.join(&key)).unwrap();
        }
        key
    }

    pub fn object_path(store: &Store, key: &str) -> std::path::PathBuf {
        store.root().join("objects").join(&key[..2]).join(key)
    }

    /// A committed layer holding `files` (name, content); returns its (fake) diff ID hex.
    pub fn layer(store: &Store, files: &[(&str, &[u8])]) -> String {
        let mut id = Vec::new();
        let mut record = RecordWriter::new(Vec::new()).unwrap();
        let tmp = store.root().join("layers/tmp/fixture");
        fs::create_dir_all(tmp.join("rootfs")).unwrap();
        for (name, content) in files {
            id.extend_from_slice(name.as_bytes());
            id.push(0);
            id.extend_from_slice(content);
            let key = object(store, content);
            fs::hard_link(object_path(store, &key), tmp.join("rootfs").join(name)).unwrap();
            record.raw(&[0u8; 512]).unwrap();
            let k = crate::object::ObjectKey::from_hex(&key).unwrap();
            record.file(&k, content.len() as u64).unwrap();
        }
        let hex = sha(&id);
        fs::write(tmp.join("record.zst"), record.finish().unwrap()).unwrap();
        fs::write(
            tmp.join("layer.json"),
            format!(
                r#"{{"diff_id":"sha256:{hex}","size":{},"entries":{}}}"#,
                id.len(),
                files.len()
            ),
        )
        .unwrap();
        fs::rename(&tmp, store.root().join("layers/sha256").join(&hex)).unwrap();
        hex
    }

    /// An image (config + manifest blobs) of `layers`; returns the manifest hex.
    pub fn image(store: &Store, layers: &[&str]) -> String {
        let ids: Vec<String> = layers.iter().map(|l| format!("\"sha256:{l}\"")).collect();
        let config = blob(
            store,
            format!(
                r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
                ids.join(",")
            )
            .as_bytes(),
        );
        let descs: Vec<String> = layers
            .iter()
            .map(|l| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":1}}"#,
                    sha(l.as_bytes())
                )
            })
            .collect();
        blob(
            store,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config}","size":1}},"layers":[{}]}}"#,
                descs.join(",")
            )
            .as_bytes(),
        )
    }

    /// Writes refs.json with `refs` (name -> manifest hex).
    pub fn set_refs(store: &Store, refs: &[(&str, &str)]) {
        let map: BTreeMap<String, String> = refs
            .iter()
            .map(|(r, m)| ((*r).to_owned(), format!("sha256:{m}")))
            .collect();
        let json = serde_json::json!({"version": 1, "refs": map});
        write_file(&store.root().join("refs.json"), json.to_string().as_bytes());
    }

    fn write_file(path: &Path, bytes: &[u8]) {
        let tmp = path.with_extension("fixture-tmp");
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, path).unwrap();
    }
}

#[cfg(test)]
mod store_tests {
    use std::fs;

    use super::fixture::*;
    use super::*;

    fn exists_blob(store: &Store, hex: &str) -> bool {
        store.root().join("blobs/sha256").join(hex).exists()
    }

    #[test]
    fn prune_keeps_refs_and_removes_the_rest() {
        let (_d, store) = store();
        let shared: &[u8] = b"shared file content";
        let l1 = layer(&store, &[("a", shared), ("b", b"only in one")]);
        let l2 = layer(&store, &[("a", shared), ("c", b"only in two, longer")]);
        let m1 = image(&store, &[&l1]);
        let m2 = image(&store, &[&l2]);
        set_refs(&store, &[("docker.io/library/one:latest", &m1)]);
        let stray = blob(&store, b"stray");

        let dry = store.prune(&[], PruneOptions { dry_run: true }).unwrap();
        assert_eq!((dry.blobs, dry.layers, dry.objects), (3, 1, 1));
        assert!(exists_blob(&store, &m2));

        let report = store.prune(&[], PruneOptions::default()).unwrap();
        assert_eq!(report.blobs, 3, "{report:?}"); // m2, its config, stray
        assert_eq!(report.layers, 1);
        assert_eq!(report.objects, 1); // "only in two"; the shared one stays
        assert!(report.reclaimed_bytes >= (b"only in two, longer".len() + b"stray".len()) as u64);
        assert!(
            exists_blob(&store, &m1) && !exists_blob(&store, &m2) && !exists_blob(&store, &stray)
        );
        assert!(store.root().join("layers/sha256").join(&l1).is_dir());
        assert!(!store.root().join("layers/sha256").join(&l2).exists());
        assert_eq!(list_object_files(store.root()).unwrap().len(), 2);
        assert_eq!(store.verify().unwrap(), vec![]);

        // Idempotent.
        let again = store.prune(&[], PruneOptions::default()).unwrap();
        assert_eq!(again, PruneReport::default());
    }

    #[test]
    fn compressed_cache_of_live_layers_is_kept() {
        let (_d, store) = store();
        let live = layer(&store, &[("a", b"1")]);
        let dead = layer(&store, &[("b", b"2")]);
        let m = image(&store, &[&live]);
        set_refs(&store, &[("docker.io/library/x:latest", &m)]);
        let gz_live = blob(&store, b"gzip of live");
        let gz_dead = blob(&store, b"gzip of dead");
        for (l, b) in [(&live, &gz_live), (&dead, &gz_dead)] {
            let dir = store.root().join("compressed").join(l);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("gzip"), format!("sha256:{b}\n")).unwrap();
        }
        store.prune(&[], PruneOptions::default()).unwrap();
        assert!(exists_blob(&store, &gz_live));
        assert!(!exists_blob(&store, &gz_dead));
        assert!(!store.root().join("compressed").join(&dead).exists());
        assert!(store.root().join("compressed").join(&live).exists());
        assert_eq!(store.verify().unwrap(), vec![]);
    }

    #[test]
    fn leases_and_extra_roots_protect() {
        let (_d, store) = store();
        let leased = blob(&store, b"leased");
        let lease = store.lease().unwrap();
        lease
            .record_blob(&format!("sha256:{leased}").parse().unwrap())
            .unwrap();
        // A stale lease: its owner is gone (nobody holds its flock).
        fs::write(
            store.root().join("leases/1-dead"),
            format!("blob sha256:{}\n", blob(&store, b"stale")),
        )
        .unwrap();

        struct Cache(Digest, ObjectKey);
        impl GcRoots for Cache {
            fn name(&self) -> &str {
                "build cache"
            }
            fn roots(&self, _: &Store) -> Result<Roots> {
                Ok(Roots {
                    layers: [self.0].into_iter().collect(),
                    objects: [self.1].into_iter().collect(),
                    ..Roots::default()
                })
            }
        }
        let cached = layer(&store, &[("f", b"cached")]);
        let loose = object(&store, b"kept by the cache alone");
        let cache = Cache(
            format!("sha256:{cached}").parse().unwrap(),
            ObjectKey::from_hex(&loose).unwrap(),
        );

        let report = store.prune(&[&cache], PruneOptions::default()).unwrap();
        assert!(exists_blob(&store, &leased));
        assert!(!exists_blob(&store, &fixture::sha(b"stale")));
        assert!(store.root().join("layers/sha256").join(&cached).is_dir());
        assert_eq!(report.objects, 0);
        assert!(object_path(&store, &loose).exists());
        assert!(!store.root().join("leases/1-dead").exists());
        assert!(lease.path().exists());
        assert_eq!(report.blobs, 1);

        drop(lease);
        let report = store.prune(&[], PruneOptions::default()).unwrap();
        assert_eq!((report.blobs, report.layers, report.objects), (1, 1, 2));
    }

    #[test]
    fn temp_files_and_ingest_dirs() {
        let (_d, store) = store();
        let root = store.root();
        // A dead ingest (unlocked) and a live one (lock held).
        for id in ["dead", "live"] {
            fs::create_dir_all(root.join("ingest").join(id)).unwrap();
            fs::write(root.join("ingest").join(id).join("data"), b"partial").unwrap();
            fs::write(root.join("ingest").join(id).join("lock"), b"").unwrap();
        }
        let held = fs::File::open(root.join("ingest/live/lock")).unwrap();
        held.lock().unwrap();
        // tmp/: a leftover and one named after a live lease.
        let lease = store.lease().unwrap();
        fs::write(root.join("tmp/refs.json.tmp-123-abc"), b"{}").unwrap();
        fs::write(
            root.join("tmp")
                .join(format!("refs.json.tmp-{}", lease.id())),
            b"{}",
        )
        .unwrap();
        // layers/tmp: a dead ingest and a live one (lock held).
        fs::create_dir_all(root.join("layers/tmp/dead/rootfs")).unwrap();
        fs::create_dir_all(root.join("layers/tmp/live/tmp")).unwrap();
        fs::write(root.join("layers/tmp/live/lock"), b"").unwrap();
        let held2 = fs::File::open(root.join("layers/tmp/live/lock")).unwrap();
        held2.lock().unwrap();
        // A partial file in blobs/.
        fs::write(root.join("blobs/sha256/partial.tmp"), b"x").unwrap();

        let report = store.prune(&[], PruneOptions::default()).unwrap();
        assert_eq!(report.temp_files, 4, "{report:?}");
        assert!(!root.join("ingest/dead").exists());
        assert!(root.join("ingest/live/data").exists());
        assert!(!root.join("tmp/refs.json.tmp-123-abc").exists());
        assert!(
            root.join("tmp")
                .join(format!("refs.json.tmp-{}", lease.id()))
                .exists()
        );
        assert!(!root.join("layers/tmp/dead").exists());
        assert!(root.join("layers/tmp/live").exists());
        assert!(!root.join("blobs/sha256/partial.tmp").exists());
        drop((held, held2));
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_000_000);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *content).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Ingests an image of one layer through the public API and tags it.
    fn real_image(store: &Store, tag: &str, files: &[(&str, &[u8])]) -> Result<Digest> {
        let lease = store.lease()?;
        let info = store.ingest_layer(&lease, &tar_of(files)[..])?;
        let config = store.put_blob(
            &lease,
            format!(
                r#"{{"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
                info.diff_id
            )
            .as_bytes(),
        )?;
        let manifest = store.put_blob(
            &lease,
            format!(
                r#"{{"schemaVersion":2,"config":{{"digest":"{config}"}},"layers":[{{"digest":"{}"}}]}}"#,
                info.diff_id
            )
            .as_bytes(),
        )?;
        store.set_ref(&lease, &tag.parse()?, &manifest)?;
        Ok(manifest)
    }

    #[test]
    fn real_store_round_trip() -> Result<()> {
        let (_d, store) = store();
        real_image(&store, "one", &[("a", b"shared"), ("b", b"only one")])?;
        real_image(&store, "two", &[("a", b"shared"), ("c", b"only two")])?;
        assert_eq!(store.verify()?, vec![]);
        let report = store.prune(&[], PruneOptions::default())?;
        assert_eq!((report.blobs, report.layers, report.objects), (0, 0, 0));
        assert!(store.remove_ref(&"two".parse()?)?);
        let report = store.prune(&[], PruneOptions::default())?;
        assert_eq!(
            (report.blobs, report.layers, report.objects),
            (2, 1, 1),
            "{report:?}"
        );
        assert_eq!(store.verify()?, vec![]);
        assert!(store.remove_ref(&"one".parse()?)?);
        let report = store.prune(&[], PruneOptions::default())?;
        assert_eq!(
            (report.blobs, report.layers, report.objects),
            (2, 1, 2),
            "{report:?}"
        );
        assert_eq!(list_object_files(store.root())?.len(), 0);
        assert_eq!(dir_names(&store.root().join("layers/tmp"))?.len(), 0);
        assert_eq!(dir_names(&store.root().join("tmp"))?.len(), 0);
        assert_eq!(dir_names(&store.root().join("ingest"))?.len(), 0);
        assert_eq!(store.verify()?, vec![]);
        Ok(())
    }

    #[test]
    fn verify_finds_one_flipped_byte_in_a_real_image() -> Result<()> {
        let (_d, store) = store();
        let manifest = real_image(&store, "one", &[("a", b"content")])?;
        let config = json_children(&store.read_blob(&manifest)?).blobs[0].clone();
        let path = store.root().join("blobs/sha256").join(&config);
        let mut bytes = fs::read(&path).map_err(io_err(&path))?;
        bytes[3] ^= 1;
        let mode = fs::metadata(&path).map_err(io_err(&path))?.permissions();
        fs::remove_file(&path).map_err(io_err(&path))?;
        fs::write(&path, bytes).map_err(io_err(&path))?;
        fs::set_permissions(&path, mode).map_err(io_err(&path))?;
        let problems = store.verify()?;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, path);
        Ok(())
    }

    #[test]
    fn prune_concurrent_with_writers() -> Result<()> {
        let (_d, store) = store();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| -> Result<()> {
            let pruner = s.spawn(|| -> Result<u64> {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.prune(&[], PruneOptions::default())?;
                    n += 1;
                }
                Ok(n)
            });
            let writers: Vec<_> = (0..2)
                .map(|w| {
                    let store = &store;
                    s.spawn(move || -> Result<()> {
                        for i in 0..25 {
                            let own = format!("writer {w} round {i}");
                            let tag = format!("w{w}:r{i}");
                            real_image(
                                store,
                                &tag,
                                &[("shared", b"same in every layer"), ("own", own.as_bytes())],
                            )?;
                            if i % 2 == 0 {
                                store.remove_ref(&tag.parse()?)?;
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            let mut result = Ok(());
            for w in writers {
                if let Ok(Err(e)) = w.join() {
                    result = Err(e);
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let prunes = pruner
                .join()
                .map_err(|_| Error::Archive("pruner panicked".into()))??;
            assert!(prunes > 0);
            result
        })?;
        assert_eq!(store.verify()?, vec![]);
        assert_eq!(store.refs()?.len(), 2 * 12);
        store.prune(&[], PruneOptions::default())?;
        assert_eq!(store.verify()?, vec![]);
        Ok(())
    }
}
