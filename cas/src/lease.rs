//! Leases and `gc.lock`: how running processes keep GC away from their work in progress.
//!
//! A [`Lease`] is a file `leases/<pid>-<rand>` on which its process holds an exclusive `flock`
//! for the lease's whole life; the kernel drops the lock when the process dies (even on
//! `kill -9`), so "the flock can be taken" means "the owner is dead" and the lease is stale.
//! Before committing a blob, layer or object, a writer appends `blob sha256:..`,
//! `layer sha256:..` or `object <hex>` to its lease while holding `gc.lock` *shared*
//! ([`GcLock::shared`]); `prune` holds it *exclusive* ([`GcLock::exclusive`]) for its mark and
//! sweep. See `gc.rs` for the whole protocol.
//!
//! A lease is created in `tmp/`, locked, and only then renamed into `leases/`, so nobody ever
//! sees an unlocked live lease.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::digest::Digest;
use crate::error::{Error, Result, io_err};
use crate::store::{Store, dir_names, unique_id};

/// What a lease line protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseKind {
    /// A blob, by digest (`blob sha256:..`).
    Blob,
    /// A layer, by diffID (`layer sha256:..`).
    Layer,
    /// A file object, by blake3 hex (`object <hex>`).
    Object,
}

impl LeaseKind {
    /// The word used in the lease file.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Blob => "blob",
            LeaseKind::Layer => "layer",
            LeaseKind::Object => "object",
        }
    }
}

/// A held lock on `gc.lock`, released on drop.
#[derive(Debug)]
pub struct GcGuard {
    _file: File,
    exclusive: bool,
}

impl GcGuard {
    /// Whether this is the exclusive (prune) lock.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

/// Helpers to take `<root>/gc.lock`.
#[derive(Debug, Clone, Copy)]
pub struct GcLock;

impl GcLock {
    fn open(root: &Path) -> Result<File> {
        let path = root.join("gc.lock");
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(path))
    }

    /// Takes `gc.lock` shared (writers, for their short commit step), blocking while a prune runs.
    ///
    /// # Errors
    /// Opening or locking `gc.lock` failed.
    pub fn shared(store: &Store) -> Result<GcGuard> {
        Self::shared_at(store.root())
    }

    /// [`GcLock::shared`] by root path.
    ///
    /// # Errors
    /// Opening or locking `gc.lock` failed.
    pub fn shared_at(root: &Path) -> Result<GcGuard> {
        let file = Self::open(root)?;
        file.lock_shared().map_err(io_err(root.join("gc.lock")))?;
        Ok(GcGuard {
            _file: file,
            exclusive: false,
        })
    }

    /// Takes `gc.lock` exclusive (prune), blocking while any writer commits.
    ///
    /// # Errors
    /// Opening or locking `gc.lock` failed.
    pub fn exclusive(store: &Store) -> Result<GcGuard> {
        let file = Self::open(store.root())?;
        file.lock().map_err(io_err(store.root().join("gc.lock")))?;
        Ok(GcGuard {
            _file: file,
            exclusive: true,
        })
    }
}

/// A running process's GC roots. Removed (and unlocked) on drop.
#[derive(Debug)]
pub struct Lease {
    handle: LeaseHandle,
}

/// A cheap, owned handle on a [`Lease`] for long-lived writers (a `BlobWriter` keeps one so it
/// needs no lifetime). Recording through a handle whose lease was dropped records nothing useful:
/// keep the lease alive until every writer committed.
#[derive(Debug, Clone)]
pub struct LeaseHandle {
    id: Arc<str>,
    path: Arc<Path>,
    root: Arc<Path>,
    file: Arc<File>,
}

impl Store {
    /// Creates a lease for this process's writes.
    ///
    /// # Errors
    /// Creating, locking or renaming the lease file failed.
    pub fn lease(&self) -> Result<Lease> {
        Lease::new(self)
    }
}

impl Lease {
    /// Creates `leases/<pid>-<rand>`, exclusively flocked for the lease's life.
    ///
    /// # Errors
    /// Creating, locking or renaming the lease file failed.
    pub fn new(store: &Store) -> Result<Lease> {
        // Shared gc.lock: no prune can sweep tmp/ while the file is not yet in leases/.
        let _gc = GcLock::shared(store)?;
        let id = unique_id();
        let tmp = store.tmp_dir().join(format!("lease-{id}"));
        let path = store.leases_dir().join(&id);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        if let Err(e) = file.try_lock() {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                std::fs::TryLockError::Error(e) => io_err(&tmp)(e),
                std::fs::TryLockError::WouldBlock => Error::Corrupt {
                    path: tmp.clone(),
                    message: "fresh lease file is locked by someone else".into(),
                },
            });
        }
        if let Err(e) = store.sys.rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(Lease {
            handle: LeaseHandle {
                id: id.into(),
                path: path.into(),
                root: store.root().into(),
                file: Arc::new(file),
            },
        })
    }

    /// An owned handle recording into this lease.
    pub fn handle(&self) -> LeaseHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for Lease {
    type Target = LeaseHandle;

    fn deref(&self) -> &LeaseHandle {
        &self.handle
    }
}

impl LeaseHandle {
    /// The lease's id (`<pid>-<rand>`): temp names containing it are live while the lease is.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `kind id` to the lease, holding `gc.lock` shared for the append.
    ///
    /// # Errors
    /// Taking `gc.lock` or writing the lease failed.
    pub fn record(&self, kind: LeaseKind, id: &str) -> Result<()> {
        let guard = GcLock::shared_at(&self.root)?;
        self.record_locked(&guard, kind, id)
    }

    /// Appends `kind id` while the caller already holds `gc.lock` (so the record and the
    /// following rename form one step a prune cannot split).
    ///
    /// # Errors
    /// Writing the lease failed.
    pub fn record_locked(&self, _guard: &GcGuard, kind: LeaseKind, id: &str) -> Result<()> {
        if id.is_empty() || id.contains(char::is_whitespace) {
            return Err(Error::Corrupt {
                path: self.path.to_path_buf(),
                message: format!("invalid lease id {id:?}"),
            });
        }
        let line = format!("{} {id}\n", kind.as_str());
        // One write(2) on an O_APPEND file: lines of concurrent threads never interleave.
        (&*self.file)
            .write_all(line.as_bytes())
            .map_err(io_err(self.path.to_path_buf()))
    }

    /// Records a blob digest ([`LeaseHandle::record`]).
    ///
    /// # Errors
    /// As [`LeaseHandle::record`].
    pub fn record_blob(&self, d: &Digest) -> Result<()> {
        self.record(LeaseKind::Blob, &d.to_string())
    }

    /// Records a layer diffID ([`LeaseHandle::record`]).
    ///
    /// # Errors
    /// As [`LeaseHandle::record`].
    pub fn record_layer(&self, d: &Digest) -> Result<()> {
        self.record(LeaseKind::Layer, &d.to_string())
    }

    /// Records a file object key ([`LeaseHandle::record`]).
    ///
    /// # Errors
    /// As [`LeaseHandle::record`].
    pub fn record_object(&self, hex: &str) -> Result<()> {
        self.record(LeaseKind::Object, hex)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Removed while still locked; the fd (and the lock) closes right after.
        let _ = std::fs::remove_file(&self.handle.path);
    }
}

/// The parsed contents of a live lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseContents {
    /// The lease id (file name).
    pub id: String,
    /// Recorded blobs.
    pub blobs: Vec<Digest>,
    /// Recorded layer diffIDs.
    pub layers: Vec<Digest>,
    /// Recorded object keys (hex).
    pub objects: Vec<String>,
}

/// Parses lease text; malformed lines (a torn last line of a dead writer) are skipped.
pub fn parse_lease(id: &str, text: &str) -> LeaseContents {
    let mut c = LeaseContents {
        id: id.to_string(),
        ..LeaseContents::default()
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(kind), Some(value), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        match kind {
            "blob" => c.blobs.extend(value.parse::<Digest>().ok()),
            "layer" => c.layers.extend(value.parse::<Digest>().ok()),
            "object"
                if value.len() == 64
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                c.objects.push(value.to_string())
            }
            _ => {}
        }
    }
    c
}

/// The contents of every live lease; stale ones (flock obtainable: owner dead) are deleted.
///
/// # Errors
/// Listing `leases/` or reading a live lease failed.
pub fn live_leases(store: &Store) -> Result<Vec<LeaseContents>> {
    let dir = store.leases_dir();
    let mut out = Vec::new();
    for name in dir_names(&dir)? {
        let path = dir.join(&name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        match file.try_lock() {
            Ok(()) => {
                // Owner dead: remove while we hold its lock.
                match store.sys.remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&path)(e)),
                };
                out.push(parse_lease(&name, &text));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Result<(tempfile::TempDir, Store)> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let s = Store::open(dir.path())?;
        Ok((dir, s))
    }

    #[test]
    fn lease_lifecycle() -> Result<()> {
        let (_d, s) = store()?;
        let d = Digest::of(b"x");
        let lease = s.lease()?;
        assert!(lease.path().starts_with(s.leases_dir()));
        lease.record_blob(&d)?;
        lease.record_layer(&d)?;
        lease.record_object(&"ab".repeat(32))?;
        assert!(lease.record(LeaseKind::Blob, "a b").is_err());
        let other = s.lease()?;
        assert_ne!(other.id(), lease.id());
        let live = live_leases(&s)?;
        assert_eq!(live.len(), 2);
        let mine = live
            .iter()
            .find(|l| l.id == lease.id())
            .ok_or(Error::BlobNotFound("lease".into()))?;
        assert_eq!(mine.blobs, vec![d]);
        assert_eq!(mine.layers, vec![d]);
        assert_eq!(mine.objects, vec!["ab".repeat(32)]);
        let path = lease.path().to_path_buf();
        drop(lease);
        assert!(!path.exists());
        assert_eq!(live_leases(&s)?.len(), 1);
        Ok(())
    }

    #[test]
    fn stale_lease_is_deleted() -> Result<()> {
        let (_d, s) = store()?;
        let stale = s.leases_dir().join("1-dead");
        std::fs::write(&stale, format!("blob {}\nblob sha2", Digest::of(b"")))
            .map_err(io_err(&stale))?;
        assert!(live_leases(&s)?.is_empty());
        assert!(!stale.exists());
        Ok(())
    }

    #[test]
    fn gc_lock_modes() -> Result<()> {
        let (_d, s) = store()?;
        let a = GcLock::shared(&s)?;
        let b = GcLock::shared(&s)?;
        assert!(!a.is_exclusive() && !b.is_exclusive());
        let probe = File::open(s.root().join("gc.lock")).map_err(io_err("gc.lock"))?;
        assert!(probe.try_lock().is_err(), "exclusive blocked by shared");
        drop((a, b));
        let x = GcLock::exclusive(&s)?;
        assert!(x.is_exclusive());
        assert!(
            probe.try_lock_shared().is_err(),
            "shared blocked by exclusive"
        );
        drop(x);
        assert!(probe.try_lock_shared().is_ok());
        Ok(())
    }

    #[test]
    fn parse_skips_garbage() {
        let d = Digest::of(b"");
        let c = parse_lease(
            "x",
            &format!("blob {d}\nlayer sha256:../../x\nobject zz\nblob {d} extra\nwhat\n"),
        );
        assert_eq!(c.blobs, vec![d]);
        assert!(c.layers.is_empty() && c.objects.is_empty());
    }
}
