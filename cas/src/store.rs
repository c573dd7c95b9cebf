//! The store handle: the root directory and the syscall seam every durable write goes through.
//!
//! [`Store::open`] creates the on-disk layout (see DESIGN-3.md):
//!
//! ```text
//! <root>/blobs/sha256/<hex>        committed blobs, mode 0444
//! <root>/ingest/<id>/{data,lock}  in-progress blob writes
//! <root>/objects/<hh>/<hex>       deduplicated regular files
//! <root>/layers/sha256/<hex>/     committed layers; <root>/layers/tmp/<id>/ layers being ingested
//! <root>/compressed/<hex>/<kind>  compressed-blob cache
//! <root>/refs.json                tags (absent = none)
//! <root>/tmp/                     temp files
//! <root>/leases/<id>              running processes' GC roots
//! <root>/gc.lock, <root>/refs.lock
//! ```

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_sys::{RealSyscall, Syscall};

use crate::error::{Result, io_err};

/// The directories of the layout, relative to the root.
pub const LAYOUT_DIRS: &[&str] = &[
    "blobs/sha256",
    "ingest",
    "objects",
    "layers/sha256",
    "layers/tmp",
    "compressed",
    "tmp",
    "leases",
];

/// The lock files of the layout, relative to the root.
pub const LOCK_FILES: &[&str] = &["gc.lock", "refs.lock"];

/// An open store. Cheap to clone; safe to share between threads and processes.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) sys: Arc<dyn Syscall>,
    /// Open handles on `objects/<hh>`, shared by clones.
    pub(crate) shards: Arc<crate::object::ShardDirs>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, with the real syscalls.
    ///
    /// # Errors
    /// Any error creating the layout's directories or lock files.
    pub fn open(root: &Path) -> Result<Store> {
        Self::with_syscall(root, Arc::new(RealSyscall))
    }

    /// Opens (creating if needed) the store at `root`, with `sys` as the kernel seam (tests pass a
    /// `RecordingSyscall`).
    ///
    /// # Errors
    /// Any error creating the layout's directories or lock files.
    pub fn with_syscall(root: &Path, sys: Arc<dyn Syscall>) -> Result<Store> {
        for dir in LAYOUT_DIRS {
            let p = root.join(dir);
            if !p.is_dir() {
                sys.create_dir_all(&p)?;
            }
        }
        for lock in LOCK_FILES {
            let p = root.join(lock);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(io_err(&p))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            sys,
            shards: Arc::new(crate::object::ShardDirs::new()),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The syscall seam this store writes through.
    pub fn syscall(&self) -> &Arc<dyn Syscall> {
        &self.sys
    }

    /// `<root>/tmp`, for temp files that are renamed into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `<root>/ingest`.
    pub fn ingest_root(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// `<root>/leases`.
    pub fn leases_dir(&self) -> PathBuf {
        self.root.join("leases")
    }
}

/// A fresh unique identifier for temp/ingest names: `<pid>-<16 hex>` (per-process random seed
/// from std's `RandomState`, time and a counter).
pub fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u64(n);
    h.write_u32(std::process::id());
    format!("{}-{:016x}", std::process::id(), h.finish())
}

/// Names of the entries of a directory (empty if it does not exist).
pub(crate) fn dir_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_layout_and_is_idempotent() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let root = dir.path().join("root");
        let s = Store::open(&root)?;
        let _ = Store::open(&root)?;
        for d in LAYOUT_DIRS {
            assert!(root.join(d).is_dir(), "{d}");
        }
        for f in LOCK_FILES {
            assert!(root.join(f).is_file(), "{f}");
        }
        assert_eq!(s.root(), root);
        assert_ne!(unique_id(), unique_id());
        Ok(())
    }
}
