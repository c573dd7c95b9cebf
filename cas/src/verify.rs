//! `strata system verify`: re-hash every blob and object, check every ref, manifest, config and
//! layer link.
//!
//! Verification holds `gc.lock` *shared* (like a writer's commit step), so a concurrent prune
//! cannot delete things under it, while other writers and readers go on. It checks:
//!
//! - **blobs**: every file under `blobs/sha256/` is named by a valid digest (no partial files),
//!   is read-only, and its sha256 is its name;
//! - **objects**: every `objects/<hh>/<key>` hashes (content plus metadata) to its key;
//! - **refs**: `refs.json` parses and every ref's manifest blob exists;
//! - **graph**, from the refs: every index's manifests, every manifest's config and layers,
//!   every config's `rootfs.diff_ids` as committed layers. A manifest's compressed layer blob may
//!   be absent when the layer itself is committed (the blob is regenerated from it);
//! - **layers**: every committed layer has `rootfs/`, `record.zst` and a `layer.json` naming its
//!   diffID, and every object its record names exists;
//! - **compressed cache**: every entry points to an existing blob.
//!
//! Leftovers of interrupted writes (ingest directories, `tmp/`, `layers/tmp/`) are not problems:
//! `prune` removes them.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::Store;
use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::gc::{MarkSource, is_hex64, json_children, list_object_files, sha256_hex};
use crate::lease::GcLock;
use crate::object::ObjectKey;
use crate::store::dir_names;

/// One inconsistency found by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The file or directory at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl Problem {
    fn new(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// The sha256 hex of a file's content, streamed.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Hasher::new();
    std::io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finish().hex().to_string())
}

/// Checks one file of `blobs/sha256/`: name, mode, content digest.
pub(crate) fn check_blob_file(path: &Path) -> Vec<Problem> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !is_hex64(name) {
        return vec![Problem::new(path, "partial or foreign file in blobs/")];
    }
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return vec![Problem::new(path, format!("cannot stat blob: {e}"))],
    };
    if !meta.is_file() {
        return vec![Problem::new(path, "blob is not a regular file")];
    }
    let mut problems = Vec::new();
    if meta.permissions().mode() & 0o222 != 0 {
        problems.push(Problem::new(
            path,
            format!(
                "blob is writable (mode {:o}, want read-only)",
                meta.permissions().mode() & 0o7777
            ),
        ));
    }
    match sha256_file(path) {
        Ok(actual) if actual == name => {}
        Ok(actual) => problems.push(Problem::new(
            path,
            format!("digest mismatch: content hashes to sha256:{actual}"),
        )),
        Err(e) => problems.push(Problem::new(path, format!("cannot read blob: {e}"))),
    }
    problems
}

/// What the graph check needs from a store; a trait so the check is testable on plain data.
pub(crate) trait GraphSource: MarkSource {
    /// Whether a blob exists.
    fn blob_exists(&self, hex: &str) -> bool;
    /// The path of a blob, for messages.
    fn blob_path(&self, hex: &str) -> PathBuf;
    /// Whether a committed layer exists.
    fn layer_exists(&self, hex: &str) -> bool;
}

/// Checks the graph reachable from the ref targets: `(ref name, manifest hex, refs.json path)`.
pub(crate) fn check_graph(
    src: &impl GraphSource,
    refs: &[(String, String)],
    refs_path: &Path,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue: Vec<String> = Vec::new();
    for (name, hex) in refs {
        if src.blob_exists(hex) {
            queue.push(hex.clone());
        } else {
            problems.push(Problem::new(
                refs_path,
                format!("ref {name} points to missing manifest sha256:{hex}"),
            ));
        }
    }
    let mut layers_seen = BTreeSet::new();
    while let Some(hex) = queue.pop() {
        if !seen.insert(hex.clone()) {
            continue;
        }
        let Some(bytes) = src.json_blob(&hex) else {
            continue;
        };
        let path = src.blob_path(&hex);
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                problems.push(Problem::new(&path, format!("invalid JSON: {e}")));
                continue;
            }
        };
        let children = json_children(&bytes);
        // The manifest's layer blobs pair with its config's diff IDs, in order.
        let config = value
            .get("config")
            .and_then(|c| c.get("digest"))
            .and_then(serde_json::Value::as_str)
            .and_then(sha256_hex);
        // A missing config is reported below; the layer blobs cannot be judged without it.
        let config_missing = config.is_some_and(|c| !src.blob_exists(c));
        let config_layers: Vec<String> = config
            .and_then(|c| src.json_blob(c))
            .map(|c| json_children(&c).layers)
            .unwrap_or_default();
        let layer_blobs: Vec<String> = value
            .get("layers")
            .and_then(serde_json::Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|d| d.get("digest").and_then(serde_json::Value::as_str))
                    .filter_map(sha256_hex)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for child in children.blobs {
            if src.blob_exists(&child) {
                queue.push(child);
                continue;
            }
            if let Some(i) = layer_blobs.iter().position(|l| *l == child) {
                let regenerable = src.layer_exists(&child)
                    || config_layers.get(i).is_some_and(|d| src.layer_exists(d));
                if regenerable || config_missing {
                    continue;
                }
                problems.push(Problem::new(
                    &path,
                    format!("layer blob sha256:{child} is missing and its layer is not committed"),
                ));
            } else if value.get("manifests").is_some() && value.get("config").is_none() {
                // An index may name manifests of platforms the store never fetched (as
                // containerd keeps partial indexes): only the ones present are checked.
                continue;
            } else {
                problems.push(Problem::new(
                    &path,
                    format!("links to missing blob sha256:{child}"),
                ));
            }
        }
        for layer in children.layers {
            if layers_seen.insert(layer.clone()) && !src.layer_exists(&layer) {
                problems.push(Problem::new(
                    &path,
                    format!("diff ID sha256:{layer} has no committed layer"),
                ));
            }
        }
    }
    problems
}

/// Checks one committed layer directory: its parts, `layer.json`, and the objects its record
/// names (`object_exists`).
pub(crate) fn check_layer_dir(
    dir: &Path,
    record_objects: Result<Option<Vec<String>>>,
    object_exists: impl Fn(&str) -> bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !is_hex64(name) {
        problems.push(Problem::new(dir, "layer directory not named by a diff ID"));
        return problems;
    }
    if !dir.join("rootfs").is_dir() {
        problems.push(Problem::new(dir.join("rootfs"), "layer rootfs is missing"));
    }
    let base_path = dir.join(crate::layer::BASE_FILE);
    if base_path.exists() {
        let root = dir.parent().and_then(Path::parent).and_then(Path::parent);
        match root.and_then(|r| crate::gc::layer_base_hex(r, name)) {
            None => problems.push(Problem::new(&base_path, "does not name a layer")),
            Some(base) => {
                let base_dir = dir.with_file_name(&base);
                if !base_dir.join("layer.json").is_file() || !base_dir.join("rootfs").is_dir() {
                    problems.push(Problem::new(
                        &base_path,
                        format!("base layer sha256:{base} is missing"),
                    ));
                } else if base_dir.join(crate::layer::BASE_FILE).exists() {
                    problems.push(Problem::new(
                        &base_path,
                        format!("base layer sha256:{base} is a delta itself"),
                    ));
                }
            }
        }
    }
    let json_path = dir.join("layer.json");
    match fs::read(&json_path) {
        Err(e) => problems.push(Problem::new(&json_path, format!("cannot read: {e}"))),
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Err(e) => problems.push(Problem::new(&json_path, format!("invalid JSON: {e}"))),
            Ok(v) => {
                let diff_id = v.get("diff_id").and_then(serde_json::Value::as_str);
                if diff_id.and_then(sha256_hex) != Some(name) {
                    problems.push(Problem::new(
                        &json_path,
                        format!("diff_id {diff_id:?} does not match the directory name"),
                    ));
                }
                for key in ["size", "entries"] {
                    if v.get(key).and_then(serde_json::Value::as_u64).is_none() {
                        problems.push(Problem::new(
                            &json_path,
                            format!("missing or invalid {key:?}"),
                        ));
                    }
                }
            }
        },
    }
    let record = dir.join("record.zst");
    match record_objects {
        Ok(Some(objects)) => {
            let missing: BTreeSet<&String> = objects.iter().filter(|o| !object_exists(o)).collect();
            for o in missing {
                problems.push(Problem::new(&record, format!("names missing object {o}")));
            }
        }
        Ok(None) => problems.push(Problem::new(&record, "layer record is missing")),
        Err(e) => problems.push(Problem::new(&record, format!("unreadable record: {e}"))),
    }
    problems
}

/// The store-backed [`GraphSource`].
struct StoreGraph<'a> {
    store: &'a Store,
}

impl MarkSource for StoreGraph<'_> {
    fn json_blob(&self, hex: &str) -> Option<Vec<u8>> {
        crate::gc::read_json_blob(self.store.root(), hex)
    }
    fn layer_objects(&self, hex: &str) -> Result<Option<Vec<String>>> {
        crate::gc::record_objects(self.store, hex)
    }
    fn compressed_blobs(&self, layer_hex: &str) -> Vec<String> {
        crate::gc::compressed_entries(self.store.root(), layer_hex)
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }
    fn layer_base(&self, layer_hex: &str) -> Option<String> {
        crate::gc::layer_base_hex(self.store.root(), layer_hex)
    }
}

impl GraphSource for StoreGraph<'_> {
    fn blob_exists(&self, hex: &str) -> bool {
        self.blob_path(hex).is_file()
    }
    fn blob_path(&self, hex: &str) -> PathBuf {
        self.store.root().join("blobs/sha256").join(hex)
    }
    fn layer_exists(&self, hex: &str) -> bool {
        let dir = self.store.root().join("layers/sha256").join(hex);
        dir.join("layer.json").is_file() && dir.join("rootfs").is_dir()
    }
}

impl Store {
    /// Re-hashes one object (content and metadata) against its key.
    fn check_object(&self, path: &Path, hex: &str) -> Option<Problem> {
        let key = match ObjectKey::from_hex(hex) {
            Ok(k) => k,
            Err(e) => return Some(Problem::new(path, e.to_string())),
        };
        match self.verify_object(&key) {
            Ok(()) => None,
            Err(Error::DigestMismatch { actual, .. }) => Some(Problem::new(
                path,
                format!("object mismatch: content and metadata hash to {actual}"),
            )),
            Err(e) => Some(Problem::new(path, format!("cannot verify object: {e}"))),
        }
    }

    /// Re-hashes every blob and object and checks every ref, manifest, config and layer link
    /// (see the [module docs](crate::verify)). An empty list means the store is consistent.
    ///
    /// # Errors
    ///
    /// Only when verification itself cannot run (the root or `gc.lock` cannot be opened);
    /// everything wrong with the content is a [`Problem`].
    pub fn verify(&self) -> Result<Vec<Problem>> {
        let root = self.root();
        let lock = GcLock::shared(self)?;

        let mut problems = Vec::new();
        let src = StoreGraph { store: self };

        // Blobs, hashed in parallel.
        let blob_dir = root.join("blobs/sha256");
        let blob_paths: Vec<PathBuf> = dir_names(&blob_dir)?
            .into_iter()
            .map(|n| blob_dir.join(n))
            .collect();
        problems.extend(
            blob_paths
                .par_iter()
                .flat_map_iter(|p| check_blob_file(p))
                .collect::<Vec<_>>(),
        );

        // Objects, hashed in parallel.
        let objects = list_object_files(root)?;
        problems.extend(
            objects
                .par_iter()
                .filter_map(|(hex, path)| self.check_object(path, hex))
                .collect::<Vec<_>>(),
        );
        let object_set: BTreeSet<&str> = objects.iter().map(|(h, _)| h.as_str()).collect();

        // Refs and the image graph.
        let refs_path = root.join("refs.json");
        match self.refs() {
            Ok(refs) => {
                let refs: Vec<(String, String)> =
                    refs.iter().map(|(r, d)| (r.to_string(), d.hex())).collect();
                problems.extend(check_graph(&src, &refs, &refs_path));
            }
            Err(e) => problems.push(Problem::new(&refs_path, format!("unreadable refs: {e}"))),
        }

        // Layers.
        let layer_dir = root.join("layers/sha256");
        let layer_names = dir_names(&layer_dir)?;
        problems.extend(
            layer_names
                .par_iter()
                .flat_map_iter(|name| {
                    check_layer_dir(
                        &layer_dir.join(name),
                        crate::gc::record_objects(self, name),
                        |o| object_set.contains(o),
                    )
                })
                .collect::<Vec<_>>(),
        );

        // Compressed cache.
        for layer in dir_names(&root.join("compressed"))? {
            for (path, blob) in crate::gc::compressed_entries(root, &layer) {
                if !src.blob_exists(&blob) {
                    problems.push(Problem::new(
                        path,
                        format!("points to missing blob sha256:{blob}"),
                    ));
                }
            }
        }
        drop(lock);
        problems.sort();
        problems.dedup();
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn h(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn write_blob(dir: &Path, bytes: &[u8]) -> PathBuf {
        let hex = crate::Digest::of(bytes).hex().to_string();
        let path = dir.join(hex);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        path
    }

    #[test]
    fn blob_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let good = write_blob(tmp.path(), b"hello");
        assert!(check_blob_file(&good).is_empty());

        let bad = write_blob(tmp.path(), b"world");
        fs::set_permissions(&bad, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(&bad).unwrap();
        bytes[0] ^= 1;
        fs::write(&bad, bytes).unwrap();
        let problems = check_blob_file(&bad);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.path == bad));
        assert!(problems[1].to_string().contains("digest mismatch"));

        let partial = tmp.path().join("data.tmp-1");
        fs::write(&partial, b"x").unwrap();
        assert_eq!(check_blob_file(&partial).len(), 1);
    }

    #[derive(Default)]
    struct Fake {
        blobs: BTreeMap<String, Vec<u8>>,
        layers: BTreeSet<String>,
    }

    impl MarkSource for Fake {
        fn json_blob(&self, hex: &str) -> Option<Vec<u8>> {
            self.blobs
                .get(hex)
                .filter(|b| b.first() == Some(&b'{'))
                .cloned()
        }
        fn layer_objects(&self, _: &str) -> Result<Option<Vec<String>>> {
            Ok(None)
        }
        fn compressed_blobs(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
    }

    impl GraphSource for Fake {
        fn blob_exists(&self, hex: &str) -> bool {
            self.blobs.contains_key(hex)
        }
        fn blob_path(&self, hex: &str) -> PathBuf {
            PathBuf::from(format!("blobs/sha256/{hex}"))
        }
        fn layer_exists(&self, hex: &str) -> bool {
            self.layers.contains(hex)
        }
    }

    fn image(fake: &mut Fake, manifest: char, config: char, layer_blob: char, diff: char) {
        fake.blobs.insert(
            h(manifest),
            format!(
                r#"{{"config":{{"digest":"sha256:{}"}},"layers":[{{"digest":"sha256:{}"}}]}}"#,
                h(config),
                h(layer_blob)
            )
            .into_bytes(),
        );
        fake.blobs.insert(
            h(config),
            format!(r#"{{"rootfs":{{"diff_ids":["sha256:{}"]}}}}"#, h(diff)).into_bytes(),
        );
    }

    #[test]
    fn graph_consistent_with_regenerable_layer_blob() {
        let mut fake = Fake::default();
        image(&mut fake, 'a', 'b', 'c', 'd');
        fake.layers.insert(h('d'));
        let refs = vec![("x:latest".to_owned(), h('a'))];
        assert_eq!(check_graph(&fake, &refs, Path::new("refs.json")), vec![]);
    }

    #[test]
    fn missing_layer_and_dangling_ref() {
        let mut fake = Fake::default();
        image(&mut fake, 'a', 'b', 'c', 'd');
        let refs = vec![
            ("x:latest".to_owned(), h('a')),
            ("y:latest".to_owned(), h('9')),
        ];
        let problems = check_graph(&fake, &refs, Path::new("refs.json"));
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("refs.json: ref y:latest"))
        );
        assert!(
            text.iter()
                .any(|t| t.contains(&format!("diff ID sha256:{}", h('d'))))
        );
        assert!(text.iter().any(|t| t.contains("layer blob")));
    }

    #[test]
    fn partial_index_is_fine() {
        let mut fake = Fake::default();
        image(&mut fake, 'a', 'b', 'c', 'd');
        fake.layers.insert(h('d'));
        fake.blobs.insert(
            h('e'),
            format!(
                r#"{{"manifests":[{{"digest":"sha256:{}"}},{{"digest":"sha256:{}"}}]}}"#,
                h('a'),
                h('f')
            )
            .into_bytes(),
        );
        let refs = vec![("x:latest".to_owned(), h('e'))];
        assert_eq!(check_graph(&fake, &refs, Path::new("refs.json")), vec![]);
    }

    #[test]
    fn missing_config() {
        let mut fake = Fake::default();
        image(&mut fake, 'a', 'b', 'c', 'd');
        fake.layers.insert(h('d'));
        fake.blobs.remove(&h('b'));
        let refs = vec![("x:latest".to_owned(), h('a'))];
        let problems = check_graph(&fake, &refs, Path::new("refs.json"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("missing blob"));
    }

    #[test]
    fn layer_dir_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(h('d'));
        fs::create_dir_all(dir.join("rootfs")).unwrap();
        fs::write(
            dir.join("layer.json"),
            format!(r#"{{"diff_id":"sha256:{}","size":10,"entries":1}}"#, h('d')),
        )
        .unwrap();
        let ok = check_layer_dir(&dir, Ok(Some(vec![h('1')])), |o| o == h('1'));
        assert!(ok.is_empty(), "{ok:?}");
        let missing = check_layer_dir(&dir, Ok(Some(vec![h('1'), h('2')])), |o| o == h('1'));
        assert_eq!(missing.len(), 1);
        assert!(missing[0].message.contains(&h('2')));
        let no_record = check_layer_dir(&dir, Ok(None), |_| true);
        assert_eq!(no_record.len(), 1);
        let bad = check_layer_dir(&dir, Err(Error::LayerNotFound("x".into())), |_| true);
        assert_eq!(bad.len(), 1);
        fs::write(
            dir.join("layer.json"),
            format!(r#"{{"diff_id":"sha256:{}"}}"#, h('e')),
        )
        .unwrap();
        fs::remove_dir(dir.join("rootfs")).unwrap();
        assert_eq!(check_layer_dir(&dir, Ok(Some(vec![])), |_| true).len(), 4);
    }
}

#[cfg(test)]
mod store_tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use crate::gc::fixture::*;

    fn flip_byte(path: &std::path::Path) {
        let mode = fs::metadata(path).unwrap().permissions().mode();
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(path).unwrap();
        bytes[0] ^= 0x20;
        fs::write(path, bytes).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn setup() -> (tempfile::TempDir, crate::Store, String, String) {
        let (d, store) = store();
        let l = layer(&store, &[("a", b"hello"), ("b", b"world")]);
        let m = image(&store, &[&l]);
        set_refs(&store, &[("docker.io/library/x:latest", &m)]);
        assert_eq!(store.verify().unwrap(), vec![]);
        (d, store, l, m)
    }

    #[test]
    fn flipped_blob_byte_is_one_problem_naming_the_blob() {
        let (_d, store, _, _) = setup();
        let extra = blob(&store, b"some layer bytes");
        let path = store.root().join("blobs/sha256").join(&extra);
        flip_byte(&path);
        let problems = store.verify().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, path);
        assert!(problems[0].to_string().contains("digest mismatch"));
    }

    #[test]
    fn corrupt_object_and_missing_object() {
        let (_d, store, _, _) = setup();
        let key = object(&store, b"hello");
        let path = object_path(&store, &key);
        flip_byte(&path);
        let problems = store.verify().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, path);

        fs::remove_file(&path).unwrap();
        let problems = store.verify().unwrap();
        // The layer tree keeps its own link, but the record names a missing object.
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].path.ends_with("record.zst"), "{problems:?}");
        assert!(problems[0].message.contains(&key));
    }

    #[test]
    fn missing_layer() {
        let (_d, store, l, m) = setup();
        fs::remove_dir_all(store.root().join("layers/sha256").join(&l)).unwrap();
        let problems = store.verify().unwrap();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.contains(&format!("diff ID sha256:{l} has no committed layer"))),
            "{text:?}"
        );
        // The manifest's (never stored) compressed layer blob cannot be regenerated any more.
        assert!(
            text.iter().all(|t| !t.contains(&m) || t.contains("layer")),
            "{text:?}"
        );
    }

    #[test]
    fn dangling_ref() {
        let (_d, store, _, m) = setup();
        let gone = sha(b"nothing");
        set_refs(
            &store,
            &[
                ("docker.io/library/x:latest", &m),
                ("docker.io/library/y:1", &gone),
            ],
        );
        let problems = store.verify().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, store.root().join("refs.json"));
        assert!(problems[0].message.contains("docker.io/library/y:1"));
    }

    #[test]
    fn writable_blob_and_bad_layer_json() {
        let (_d, store, l, m) = setup();
        let path = store.root().join("blobs/sha256").join(&m);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(
            store
                .root()
                .join("layers/sha256")
                .join(&l)
                .join("layer.json"),
            "{not json",
        )
        .unwrap();
        let problems = store.verify().unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn corrupt_refs_json() {
        let (_d, store, _, _) = setup();
        fs::write(store.root().join("refs.json"), "{").unwrap();
        let problems = store.verify().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, store.root().join("refs.json"));
    }
}
