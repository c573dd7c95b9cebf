//! Refs: `refs.json` maps full references (`docker.io/library/busybox:latest`) to manifest
//! digests. It also keeps each image's repo digests (docker's `RepoDigests`): the
//! `repository@sha256:...` references under which a registry serves it, recorded by pull and
//! push, and dropped with the image's last ref.
//!
//! - Reads ([`Store::refs`]) take no lock: the file is only ever replaced by `rename`, so a reader
//!   sees the old or the new version, never a mix.
//! - Writes ([`Store::set_ref`], [`Store::remove_ref`], [`Store::update_refs`]) hold `gc.lock`
//!   shared (so a prune reads a settled file and never sweeps the temp file) and `refs.lock`
//!   exclusive (so concurrent writers never lose each other's updates: read-modify-write is
//!   serialised). The new content goes to `tmp/refs.json.tmp-<id>`, is fsynced (failpoint
//!   `ref.after-temp-write`), renamed over `refs.json` (failpoint `ref.before-rename` just
//!   before), and the root directory is fsynced.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result, io_err};
use crate::failpoint;
use crate::lease::{GcLock, Lease, LeaseKind};
use crate::reference::Reference;
use crate::store::{Store, unique_id};

/// The on-disk format version of `refs.json`.
const REFS_VERSION: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsFile {
    version: u32,
    refs: BTreeMap<Reference, Digest>,
    /// Manifest digest (a value of `refs`) -> `repository@digest` references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    repo_digests: BTreeMap<Digest, BTreeSet<Reference>>,
}

impl Store {
    /// All refs (lock-free read). A missing `refs.json` means no refs.
    ///
    /// # Errors
    /// Reading failed, or [`Error::Corrupt`] when `refs.json` does not parse.
    pub fn refs(&self) -> Result<BTreeMap<Reference, Digest>> {
        Ok(self.refs_file()?.refs)
    }

    /// Each image's repo digests, by manifest digest (lock-free read).
    ///
    /// # Errors
    /// As [`Store::refs`].
    pub fn repo_digests(&self) -> Result<BTreeMap<Digest, BTreeSet<Reference>>> {
        Ok(self.refs_file()?.repo_digests)
    }

    /// Records that a registry serves the image whose manifest is `manifest` as `repo_digest`
    /// (`repository@sha256:...`), replacing an earlier digest of the same repository. Nothing
    /// is recorded for a manifest no ref points at.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] when `repo_digest` has no digest; as [`Store::update_refs`].
    pub fn add_repo_digest(&self, manifest: &Digest, repo_digest: &Reference) -> Result<()> {
        if repo_digest.digest().is_none() || repo_digest.tag().is_some() {
            return Err(Error::InvalidReference {
                input: repo_digest.to_string(),
                reason: "a repo digest is repository@digest".into(),
            });
        }
        self.update_file(|file| {
            if !file.refs.values().any(|d| d == manifest) {
                return Ok(false);
            }
            let set = file.repo_digests.entry(*manifest).or_default();
            if set.contains(repo_digest) {
                return Ok(false);
            }
            set.retain(|r| r.repository() != repo_digest.repository());
            set.insert(repo_digest.clone());
            Ok(true)
        })
    }

    fn refs_file(&self) -> Result<RefsFile> {
        let path = self.root.join("refs.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RefsFile {
                    version: REFS_VERSION,
                    ..RefsFile::default()
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let file: RefsFile = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: path.clone(),
            message: format!("cannot parse refs: {e}"),
        })?;
        if file.version != REFS_VERSION {
            return Err(Error::Corrupt {
                path,
                message: format!("unsupported refs version {}", file.version),
            });
        }
        Ok(file)
    }

    /// Points `r` at `d` (creating or moving the tag). `d` is recorded in `lease` first.
    ///
    /// # Errors
    /// Locking, reading or writing the refs failed.
    pub fn set_ref(&self, lease: &Lease, r: &Reference, d: &Digest) -> Result<()> {
        lease.record(LeaseKind::Blob, &d.to_string())?;
        self.update_refs(|refs| {
            refs.insert(r.clone(), *d);
            Ok(true)
        })
    }

    /// Removes `r`; returns whether it existed.
    ///
    /// # Errors
    /// Locking, reading or writing the refs failed.
    pub fn remove_ref(&self, r: &Reference) -> Result<bool> {
        let mut existed = false;
        self.update_refs(|refs| {
            existed = refs.remove(r).is_some();
            Ok(existed)
        })?;
        Ok(existed)
    }

    /// Atomic read-modify-write of the refs. `f` returns whether it changed anything (nothing is
    /// written otherwise); an error from `f` aborts without writing.
    ///
    /// # Errors
    /// `f`'s error, or locking, reading or writing the refs failed.
    pub fn update_refs<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&mut BTreeMap<Reference, Digest>) -> Result<bool>,
    {
        self.update_file(|file| f(&mut file.refs))
    }

    /// Read-modify-write of the whole file (see [`Store::update_refs`]). Repo digests of
    /// manifests no ref points at any more are dropped on the way.
    fn update_file<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&mut RefsFile) -> Result<bool>,
    {
        let _gc = GcLock::shared(self)?;
        let lock_path = self.root.join("refs.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        let mut file = self.refs_file()?;
        if !f(&mut file)? {
            return Ok(());
        }
        let named: BTreeSet<Digest> = file.refs.values().copied().collect();
        file.repo_digests
            .retain(|m, set| named.contains(m) && !set.is_empty());
        file.version = REFS_VERSION;
        let body = serde_json::to_vec_pretty(&file).map_err(|e| Error::Corrupt {
            path: self.root.join("refs.json"),
            message: format!("cannot serialise refs: {e}"),
        })?;
        let tmp = self
            .tmp_dir()
            .join(format!("refs.json.tmp-{}", unique_id()));
        let result = self.write_refs_file(&tmp, &body);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        drop(lock);
        result
    }

    fn write_refs_file(&self, tmp: &std::path::Path, body: &[u8]) -> Result<()> {
        let mut file = File::create_new(tmp).map_err(io_err(tmp))?;
        file.write_all(body).map_err(io_err(tmp))?;
        file.write_all(b"\n").map_err(io_err(tmp))?;
        self.sys.fsync(&file)?;
        drop(file);
        failpoint::hit("ref.after-temp-write");
        failpoint::hit("ref.before-rename");
        let path = self.root.join("refs.json");
        self.sys.rename(tmp, &path)?;
        self.sys.fsync_dir(&self.root)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::path::Path;
    use std::process::Command;

    use strata_sys::CallKind;

    use super::*;

    fn r(s: &str) -> Result<Reference> {
        s.parse()
    }

    #[test]
    fn set_read_remove() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let store = Store::open(dir.path())?;
        assert!(store.refs()?.is_empty());
        let lease = store.lease()?;
        let d1 = store.put_blob(&lease, b"m1")?;
        let d2 = store.put_blob(&lease, b"m2")?;
        store.set_ref(&lease, &r("busybox")?, &d1)?;
        store.set_ref(&lease, &r("myorg/app:1")?, &d2)?;
        store.set_ref(&lease, &r("busybox:latest")?, &d2)?;
        let refs = store.refs()?;
        assert_eq!(refs.len(), 2);
        assert_eq!(refs.get(&r("busybox")?), Some(&d2));
        let text = std::fs::read_to_string(dir.path().join("refs.json")).map_err(io_err("r"))?;
        assert!(
            text.contains("\"docker.io/library/busybox:latest\""),
            "{text}"
        );
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(store.remove_ref(&r("busybox")?)?);
        assert!(!store.remove_ref(&r("busybox")?)?);
        assert_eq!(store.refs()?.len(), 1);
        assert_eq!(
            std::fs::read_dir(store.tmp_dir())
                .map_err(io_err("t"))?
                .count(),
            0
        );
        Ok(())
    }

    #[test]
    fn repo_digests_follow_their_image() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let store = Store::open(dir.path())?;
        let lease = store.lease()?;
        let m = store.put_blob(&lease, b"manifest")?;
        let d1 = Digest::of(b"pushed once");
        let d2 = Digest::of(b"pushed again");
        // Not named yet: nothing to attach it to.
        store.add_repo_digest(&m, &r("reg:5000/app")?.with_digest(d1))?;
        assert!(store.repo_digests()?.is_empty());
        store.set_ref(&lease, &r("reg:5000/app:1")?, &m)?;
        store.add_repo_digest(&m, &r("reg:5000/app")?.with_digest(d1))?;
        store.add_repo_digest(&m, &r("other/app")?.with_digest(d1))?;
        // The same repository again: the newer digest replaces the older.
        store.add_repo_digest(&m, &r("reg:5000/app")?.with_digest(d2))?;
        let got: Vec<String> = store.repo_digests()?[&m]
            .iter()
            .map(Reference::familiar)
            .collect();
        assert_eq!(
            got,
            vec![format!("other/app@{d1}"), format!("reg:5000/app@{d2}")]
        );
        assert!(store.add_repo_digest(&m, &r("reg:5000/app:1")?).is_err());
        // A tag is no repo digest, and the image's last ref takes its digests along.
        store.remove_ref(&r("reg:5000/app:1")?)?;
        assert!(store.repo_digests()?.is_empty());
        // refs.json files without the field still read.
        std::fs::write(
            dir.path().join("refs.json"),
            br#"{"version": 1, "refs": {}}"#,
        )
        .map_err(io_err("w"))?;
        assert!(store.repo_digests()?.is_empty() && store.refs()?.is_empty());
        Ok(())
    }

    #[test]
    fn corrupt_refs_are_reported() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let store = Store::open(dir.path())?;
        std::fs::write(dir.path().join("refs.json"), b"{nope").map_err(io_err("w"))?;
        match store.refs() {
            Err(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains("refs.json")),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn failed_rename_keeps_old_refs_and_cleans_temp() -> Result<()> {
        let (_dir, rec, store) = crate::layer::tests::recording_store();
        let lease = store.lease()?;
        let d = Digest::of(b"x");
        store.set_ref(&lease, &r("a")?, &d)?;
        rec.fail_next(CallKind::Rename, libc::EIO);
        assert!(store.set_ref(&lease, &r("b")?, &d).is_err());
        assert_eq!(
            store.refs()?.keys().cloned().collect::<Vec<_>>(),
            vec![r("a")?]
        );
        assert_eq!(
            std::fs::read_dir(store.tmp_dir())
                .map_err(io_err("t"))?
                .count(),
            0
        );
        Ok(())
    }

    #[test]
    fn concurrent_writers_lose_nothing() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let store = Store::open(dir.path())?;
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|t| {
                    let store = store.clone();
                    s.spawn(move || -> Result<()> {
                        // A separate Store value and lease per thread, as separate processes.
                        let store = Store::open(store.root())?;
                        let lease = store.lease()?;
                        for i in 0..15 {
                            let d = Digest::of(format!("{t}-{i}").as_bytes());
                            store.set_ref(&lease, &r(&format!("t{t}:v{i}"))?, &d)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::BlobNotFound("thread panicked".into())))
                })
                .collect()
        });
        for res in results {
            res?;
        }
        let refs = store.refs()?;
        assert_eq!(refs.len(), 8 * 15);
        for t in 0..8 {
            for i in 0..15 {
                let d = Digest::of(format!("{t}-{i}").as_bytes());
                assert_eq!(refs.get(&r(&format!("t{t}:v{i}"))?), Some(&d));
            }
        }
        Ok(())
    }

    const REFS_CHILD_ENV: &str = "STRATA_CAS_TEST_REFS_CHILD";

    /// Child mode of [`concurrent_processes_lose_nothing`]: `<root>:<n>` sets 10 refs `p<n>:v<i>`.
    #[test]
    fn refs_child() -> Result<()> {
        let Some(arg) = std::env::var_os(REFS_CHILD_ENV) else {
            return Ok(());
        };
        let arg = arg.to_string_lossy().into_owned();
        let Some((root, n)) = arg.rsplit_once(':') else {
            return Err(Error::BlobNotFound(arg));
        };
        let store = Store::open(Path::new(root))?;
        let lease = store.lease()?;
        for i in 0..10 {
            let d = Digest::of(format!("p{n}-{i}").as_bytes());
            store.set_ref(&lease, &r(&format!("p{n}:v{i}"))?, &d)?;
        }
        Ok(())
    }

    #[test]
    fn concurrent_processes_lose_nothing() -> Result<()> {
        let exe = std::env::current_exe().map_err(io_err("current_exe"))?;
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let store = Store::open(dir.path())?;
        let children = (0..8)
            .map(|n| {
                Command::new(&exe)
                    .args(["--exact", "refs::tests::refs_child", "--test-threads=1"])
                    .env(REFS_CHILD_ENV, format!("{}:{n}", dir.path().display()))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .map_err(io_err(&exe))
            })
            .collect::<Result<Vec<_>>>()?;
        for mut c in children {
            let status = c.wait().map_err(io_err(&exe))?;
            assert!(status.success(), "{status:?}");
        }
        let refs = store.refs()?;
        assert_eq!(refs.len(), 80);
        for n in 0..8 {
            for i in 0..10 {
                let d = Digest::of(format!("p{n}-{i}").as_bytes());
                assert_eq!(refs.get(&r(&format!("p{n}:v{i}"))?), Some(&d));
            }
        }
        assert!(crate::lease::live_leases(&store)?.is_empty());
        Ok(())
    }

    const CHILD_ENV: &str = "STRATA_CAS_TEST_CHILD_ROOT";
    const CHILD_BLOB: &[u8] = b"the child's blob, written under a failpoint";

    /// Child mode of [`failpoints_abort_and_leave_store_consistent`]: does nothing in a normal
    /// test run.
    #[test]
    fn failpoint_child() -> Result<()> {
        let Some(root) = std::env::var_os(CHILD_ENV) else {
            return Ok(());
        };
        let store = Store::open(Path::new(&root))?;
        let lease = store.lease()?;
        let d = store.put_blob(&lease, CHILD_BLOB)?;
        store.set_ref(&lease, &r("child:latest")?, &d)?;
        Ok(())
    }

    /// The consistency a crash must preserve: every blob is complete, refs parse and point to
    /// blobs, leftovers only under ingest/ and tmp/.
    fn assert_consistent(store: &Store, point: &str) -> Result<()> {
        for entry in std::fs::read_dir(store.blobs_dir()).map_err(io_err("blobs"))? {
            let entry = entry.map_err(io_err("blobs"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let d = Digest::from_hex(&name)?;
            store.read_blob(&d)?;
        }
        for (re, d) in store.refs()? {
            assert!(store.has_blob(&d), "{point}: {re} points to missing {d}");
        }
        for entry in std::fs::read_dir(store.root()).map_err(io_err("root"))? {
            let name = entry.map_err(io_err("root"))?.file_name();
            let name = name.to_string_lossy();
            assert!(
                [
                    "blobs",
                    "ingest",
                    "objects",
                    "layers",
                    "compressed",
                    "tmp",
                    "leases",
                    "gc.lock",
                    "refs.lock",
                    "refs.json"
                ]
                .contains(&name.as_ref()),
                "{point}: unexpected {name}"
            );
        }
        Ok(())
    }

    #[test]
    fn failpoints_abort_and_leave_store_consistent() -> Result<()> {
        let exe = std::env::current_exe().map_err(io_err("current_exe"))?;
        let points = [
            "blob.after-write",
            "blob.after-fsync",
            "blob.after-rename",
            "blob.before-dir-fsync",
            "ref.after-temp-write",
            "ref.before-rename",
        ];
        for point in points {
            let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
            let store = Store::open(dir.path())?;
            // A previous ref the crash must not lose.
            let lease = store.lease()?;
            let old = store.put_blob(&lease, b"old manifest")?;
            store.set_ref(&lease, &r("old:1")?, &old)?;
            drop(lease);
            let out = Command::new(&exe)
                .args(["--exact", "refs::tests::failpoint_child", "--nocapture"])
                .arg("--test-threads=1")
                .env(CHILD_ENV, dir.path())
                .env(failpoint::ENV, point)
                .output()
                .map_err(io_err(&exe))?;
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGABRT),
                "{point}: child did not abort: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(point),
                "{point}"
            );
            assert_consistent(&store, point)?;
            assert_eq!(store.refs()?.get(&r("old:1")?), Some(&old), "{point}");
            let child = Digest::of(CHILD_BLOB);
            let expect_blob = !point.starts_with("blob.after-write") && point != "blob.after-fsync";
            assert_eq!(store.has_blob(&child), expect_blob, "{point}");
            // The dead child's lease is stale.
            assert!(crate::lease::live_leases(&store)?.is_empty(), "{point}");
            // The next command works.
            let lease = store.lease()?;
            let d = store.put_blob(&lease, CHILD_BLOB)?;
            store.set_ref(&lease, &r("child:latest")?, &d)?;
            assert_consistent(&store, point)?;
            assert_eq!(store.refs()?.len(), 2, "{point}");
        }
        Ok(())
    }
}
