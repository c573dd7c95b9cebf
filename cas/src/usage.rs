//! `strata system df`: what the store holds, what is in use, and the bytes deduplication saves.
//!
//! Sizes come from the disk, not from metadata: every committed layer's `rootfs/` is walked and
//! its regular files are identified by inode (`st_dev`, `st_ino`). Because layer trees are
//! hardlinks to shared objects, an inode met in several layers is stored once:
//!
//! - a layer's **size** is the apparent size of its files (each inode once within the layer);
//! - **without dedup** is the sum of those sizes over all layers (what separate unpacked copies
//!   would take); **unique** is the apparent size of every distinct inode, and
//!   **saved by dedup** is the difference; **on disk** counts each inode's allocated blocks
//!   (`st_blocks * 512`) once, over every object.
//!
//! Other subsystems (build cache, containers, volumes) add their own rows through
//! [`UsageSource`], as they add GC roots through [`GcRoots`](crate::gc::GcRoots).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::Store;
use crate::error::{Error, Result};
use crate::gc::{MarkSource, compressed_entries, is_hex64, mark, read_json_blob};
use crate::store::dir_names;

/// One row of `system df`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// What the row counts: "Images", "Layers", "Blobs", later "Build Cache", "Containers"...
    pub kind: String,
    /// How many there are.
    pub total: u64,
    /// How many are in use (reachable from a ref, or used by a container).
    pub active: u64,
    /// Bytes they take (each shared byte counted once).
    pub size: u64,
    /// Bytes a prune would free.
    pub reclaimable: u64,
}

/// A subsystem that contributes rows to `system df`.
pub trait UsageSource {
    /// A short name for errors ("build cache").
    fn name(&self) -> &str;
    /// Its rows.
    ///
    /// # Errors
    ///
    /// Any error aborts [`Store::usage_with`].
    fn rows(&self, store: &Store) -> Result<Vec<UsageRow>>;
}

/// One committed layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerUsage {
    /// The layer's diffID, `sha256:<hex>`.
    pub diff_id: String,
    /// Apparent size of its regular files (each inode once within the layer).
    pub size: u64,
    /// Bytes of its files that no other layer shares.
    pub unique: u64,
    /// Whether an image reachable from a ref uses it.
    pub active: bool,
}

/// One tagged image (`system df -v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    /// The ref, as stored (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The manifest digest, `sha256:<hex>`.
    pub manifest: String,
    /// Apparent size of its layers' files (each inode once).
    pub size: u64,
    /// Bytes it shares with other images.
    pub shared: u64,
    /// Bytes only it holds.
    pub unique: u64,
}

/// The store's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// The `system df` table: Images, Layers, Blobs, then every [`UsageSource`]'s rows.
    pub rows: Vec<UsageRow>,
    /// Per layer detail.
    pub layers: Vec<LayerUsage>,
    /// Per image detail.
    pub images: Vec<ImageUsage>,
    /// Sum over layers of their sizes: the bytes needed without deduplication.
    pub without_dedup: u64,
    /// Apparent size of every distinct file inode of every layer.
    pub unique_bytes: u64,
    /// `without_dedup - unique_bytes`.
    pub saved_by_dedup: u64,
    /// Allocated bytes of all objects (`st_blocks * 512`, each inode once).
    pub objects_on_disk: u64,
    /// Apparent bytes of all blobs.
    pub blob_bytes: u64,
}

/// A regular file of a layer tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

/// The layer/image part of [`Usage`], from plain data: each layer's files, each image's layers
/// (`(reference, manifest hex, layer hexes)`), and the set of live layers.
pub(crate) fn compute(
    layers: &BTreeMap<String, Vec<FileStat>>,
    images: &[(String, String, Vec<String>)],
    live: &BTreeSet<String>,
) -> (Vec<LayerUsage>, Vec<ImageUsage>, u64, u64) {
    // Inode -> size, and inode -> layers holding it.
    let mut sizes: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut holders: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let mut per_layer: BTreeMap<&str, BTreeSet<(u64, u64)>> = BTreeMap::new();
    for (hex, files) in layers {
        let set = per_layer.entry(hex.as_str()).or_default();
        for f in files {
            sizes.insert((f.dev, f.ino), f.size);
            if set.insert((f.dev, f.ino)) {
                *holders.entry((f.dev, f.ino)).or_default() += 1;
            }
        }
    }
    let size_of = |set: &BTreeSet<(u64, u64)>| -> u64 {
        set.iter().map(|i| sizes.get(i).copied().unwrap_or(0)).sum()
    };
    let mut layer_rows = Vec::new();
    let mut without_dedup = 0;
    for (hex, set) in &per_layer {
        let size = size_of(set);
        without_dedup += size;
        let unique = set
            .iter()
            .filter(|i| holders.get(i) == Some(&1))
            .map(|i| sizes.get(i).copied().unwrap_or(0))
            .sum();
        layer_rows.push(LayerUsage {
            diff_id: format!("sha256:{hex}"),
            size,
            unique,
            active: live.contains(*hex),
        });
    }
    let unique_bytes = sizes.values().sum();

    // Images: inode sets, and per inode how many distinct images hold it.
    let image_sets: Vec<BTreeSet<(u64, u64)>> = images
        .iter()
        .map(|(_, _, ls)| {
            ls.iter()
                .filter_map(|l| per_layer.get(l.as_str()))
                .flatten()
                .copied()
                .collect()
        })
        .collect();
    let mut image_holders: BTreeMap<(u64, u64), BTreeSet<&str>> = BTreeMap::new();
    for ((_, manifest, _), set) in images.iter().zip(&image_sets) {
        for i in set {
            image_holders
                .entry(*i)
                .or_default()
                .insert(manifest.as_str());
        }
    }
    let image_rows = images
        .iter()
        .zip(&image_sets)
        .map(|((reference, manifest, _), set)| {
            let size = size_of(set);
            let shared: u64 = set
                .iter()
                .filter(|i| image_holders.get(i).is_some_and(|h| h.len() > 1))
                .map(|i| sizes.get(i).copied().unwrap_or(0))
                .sum();
            ImageUsage {
                reference: reference.clone(),
                manifest: format!("sha256:{manifest}"),
                size,
                shared,
                unique: size - shared,
            }
        })
        .collect();
    (layer_rows, image_rows, without_dedup, unique_bytes)
}

/// The regular files of a tree (not following symlinks).
fn tree_files(dir: &Path, out: &mut Vec<FileStat>) -> Result<()> {
    for name in dir_names(dir)? {
        let path = dir.join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            tree_files(&path, out)?;
        } else if meta.is_file() {
            out.push(FileStat {
                dev: meta.dev(),
                ino: meta.ino(),
                size: meta.len(),
            });
        }
    }
    Ok(())
}

/// A [`MarkSource`] that follows only the image graph (no records): for reachability.
struct GraphOnly<'a> {
    root: &'a Path,
}

impl MarkSource for GraphOnly<'_> {
    fn json_blob(&self, hex: &str) -> Option<Vec<u8>> {
        read_json_blob(self.root, hex)
    }
    fn layer_objects(&self, _: &str) -> Result<Option<Vec<String>>> {
        Ok(None)
    }
    fn compressed_blobs(&self, layer_hex: &str) -> Vec<String> {
        compressed_entries(self.root, layer_hex)
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }
}

impl Store {
    /// Sizes for `system df`: images, layers and blobs, with the bytes saved by deduplication.
    ///
    /// # Errors
    ///
    /// Reading refs or walking the store failed.
    pub fn usage(&self) -> Result<Usage> {
        self.usage_with(&[])
    }

    /// [`Store::usage`] plus the rows of other subsystems.
    ///
    /// # Errors
    ///
    /// Reading refs, walking the store, or one of `extra` failed.
    pub fn usage_with(&self, extra: &[&dyn UsageSource]) -> Result<Usage> {
        let root = self.root();
        let src = GraphOnly { root };

        // Images: one per distinct manifest a ref names.
        let refs = self.refs()?;
        let mut images = Vec::new();
        let mut seen_manifests = BTreeSet::new();
        for (reference, digest) in &refs {
            let hex = digest.hex();
            let reach = mark(&src, [hex.clone()], [], []);
            images.push((
                reference.to_string(),
                hex.clone(),
                reach.layers.into_iter().collect(),
            ));
            seen_manifests.insert(hex);
        }
        let live = mark(&src, seen_manifests.iter().cloned(), [], []);

        // Layers.
        let layer_dir = root.join("layers/sha256");
        let mut layers = BTreeMap::new();
        for name in dir_names(&layer_dir)? {
            if !is_hex64(&name) {
                continue;
            }
            let mut files = Vec::new();
            tree_files(&layer_dir.join(&name).join("rootfs"), &mut files)?;
            layers.insert(name, files);
        }
        let (layer_rows, mut image_rows, without_dedup, unique_bytes) =
            compute(&layers, &images, &live.layers);
        // One row per image even when two refs name the same manifest: keep the first.
        let mut firsts = BTreeSet::new();
        image_rows.retain(|i| firsts.insert(i.manifest.clone()));

        // Objects on disk, and the part only dead layers (or nobody) hold.
        let live_inodes: BTreeSet<(u64, u64)> = layers
            .iter()
            .filter(|(hex, _)| live.layers.contains(*hex))
            .flat_map(|(_, files)| files.iter().map(|f| (f.dev, f.ino)))
            .collect();
        let mut objects_on_disk = 0;
        let mut objects_reclaimable = 0;
        for (_, path) in crate::gc::list_object_files(root)? {
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let bytes = meta.blocks() * 512;
            objects_on_disk += bytes;
            if !live_inodes.contains(&(meta.dev(), meta.ino())) {
                objects_reclaimable += bytes;
            }
        }

        // Blobs.
        let blob_dir = root.join("blobs/sha256");
        let (mut blob_total, mut blob_active, mut blob_bytes, mut blob_reclaimable) = (0, 0, 0, 0);
        for name in dir_names(&blob_dir)? {
            let Ok(meta) = fs::symlink_metadata(blob_dir.join(&name)) else {
                continue;
            };
            blob_total += 1;
            blob_bytes += meta.len();
            if live.blobs.contains(&name) {
                blob_active += 1;
            } else {
                blob_reclaimable += meta.len();
            }
        }

        let active_layers = layer_rows.iter().filter(|l| l.active).count() as u64;
        // Images: the files of their layers, each inode once.
        let image_size = layers
            .iter()
            .filter(|(hex, _)| live.layers.contains(*hex))
            .flat_map(|(_, files)| files.iter().map(|f| ((f.dev, f.ino), f.size)))
            .collect::<BTreeMap<_, _>>()
            .values()
            .sum::<u64>();
        let mut rows = vec![
            UsageRow {
                kind: "Images".to_owned(),
                total: image_rows.len() as u64,
                active: image_rows.len() as u64,
                size: image_size,
                reclaimable: 0,
            },
            UsageRow {
                kind: "Layers".to_owned(),
                total: layer_rows.len() as u64,
                active: active_layers,
                size: objects_on_disk,
                reclaimable: objects_reclaimable,
            },
            UsageRow {
                kind: "Blobs".to_owned(),
                total: blob_total,
                active: blob_active,
                size: blob_bytes,
                reclaimable: blob_reclaimable,
            },
        ];
        for source in extra {
            rows.extend(source.rows(self).map_err(|e| Error::Corrupt {
                path: root.to_path_buf(),
                message: format!("usage of {}: {e}", source.name()),
            })?);
        }
        Ok(Usage {
            rows,
            layers: layer_rows,
            images: image_rows,
            without_dedup,
            unique_bytes,
            saved_by_dedup: without_dedup.saturating_sub(unique_bytes),
            objects_on_disk,
            blob_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(ino: u64, size: u64) -> FileStat {
        FileStat { dev: 1, ino, size }
    }

    #[test]
    fn dedup_figures() {
        // Two layers sharing inode 1 (100 bytes); layer a also has 2 (10), b has 3 (5).
        // Layer a holds a tar hardlink to inode 1 (listed twice): counted once.
        let layers: BTreeMap<String, Vec<FileStat>> = [
            ("a".to_owned(), vec![f(1, 100), f(1, 100), f(2, 10)]),
            ("b".to_owned(), vec![f(1, 100), f(3, 5)]),
            ("c".to_owned(), vec![f(4, 7)]),
        ]
        .into_iter()
        .collect();
        let images = vec![
            ("x".to_owned(), "m1".to_owned(), vec!["a".to_owned()]),
            ("y".to_owned(), "m2".to_owned(), vec!["b".to_owned()]),
        ];
        let live: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into_iter().collect();
        let (ls, is, without, unique) = compute(&layers, &images, &live);
        assert_eq!(without, 110 + 105 + 7);
        assert_eq!(unique, 100 + 10 + 5 + 7);
        assert_eq!(ls[0].size, 110);
        assert_eq!(ls[0].unique, 10);
        assert!(ls[0].active && ls[1].active && !ls[2].active);
        assert_eq!(is[0].size, 110);
        assert_eq!(is[0].shared, 100);
        assert_eq!(is[0].unique, 10);
        assert_eq!(is[1].unique, 5);
    }

    #[test]
    fn empty() {
        let (ls, is, without, unique) = compute(&BTreeMap::new(), &[], &BTreeSet::new());
        assert!(ls.is_empty() && is.is_empty());
        assert_eq!((without, unique), (0, 0));
    }
}

#[cfg(test)]
mod store_tests {
    use crate::gc::fixture::*;

    #[test]
    fn two_images_sharing_most_files() {
        let (_d, store) = store();
        let big = vec![7u8; 100_000];
        let other = vec![8u8; 50_000];
        let l1 = layer(&store, &[("big", &big), ("one", b"1111")]);
        let l2 = layer(&store, &[("big", &big), ("two", b"22")]);
        let l3 = layer(&store, &[("other", &other)]);
        let m1 = image(&store, &[&l1]);
        let m2 = image(&store, &[&l2]);
        set_refs(
            &store,
            &[
                ("docker.io/library/a:latest", &m1),
                ("docker.io/library/b:latest", &m2),
            ],
        );
        let u = store.usage().unwrap();
        assert_eq!(u.without_dedup, 100_004 + 100_002 + 50_000);
        assert_eq!(u.unique_bytes, 100_000 + 4 + 2 + 50_000);
        assert_eq!(u.saved_by_dedup, 100_000);
        assert_eq!(u.layers.len(), 3);
        let images = &u.rows[0];
        assert_eq!((images.kind.as_str(), images.total), ("Images", 2));
        assert_eq!(images.size, 100_000 + 4 + 2);
        let layers = &u.rows[1];
        assert_eq!(
            (layers.kind.as_str(), layers.total, layers.active),
            ("Layers", 3, 2)
        );
        // Only the unreferenced layer's object is reclaimable.
        assert!(
            layers.reclaimable >= 50_000 && layers.reclaimable < 100_000,
            "{layers:?}"
        );
        assert!(u.objects_on_disk >= 150_000);
        let a = u
            .images
            .iter()
            .find(|i| i.reference.contains("/a:"))
            .unwrap();
        assert_eq!((a.size, a.shared, a.unique), (100_004, 100_000, 4));
        let blobs = &u.rows[2];
        assert_eq!((blobs.total, blobs.active), (4, 4));
        let _ = l3;
    }

    #[test]
    fn extra_rows() {
        struct Volumes;
        impl super::UsageSource for Volumes {
            fn name(&self) -> &str {
                "volumes"
            }
            fn rows(&self, _: &crate::Store) -> crate::Result<Vec<super::UsageRow>> {
                Ok(vec![super::UsageRow {
                    kind: "Local Volumes".to_owned(),
                    total: 1,
                    active: 0,
                    size: 5,
                    reclaimable: 5,
                }])
            }
        }
        let (_d, store) = store();
        let u = store.usage_with(&[&Volumes]).unwrap();
        assert_eq!(u.rows.len(), 4);
        assert_eq!(u.rows[3].kind, "Local Volumes");
        assert_eq!(u.saved_by_dedup, 0);
    }
}
