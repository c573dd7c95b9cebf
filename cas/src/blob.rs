//! Blobs: content addressed by sha256 under `blobs/sha256/<hex>`.
//!
//! # Write path ([`BlobWriter`])
//!
//! 1. `ingest/<lease id>-<n>/` is created with a `lock` file that the writer flocks exclusively
//!    (under `gc.lock` shared, so a prune never sees the directory unlocked); data goes to
//!    `ingest/<id>/data` and is hashed as it is written.
//! 2. `commit`: flush (failpoint `blob.after-write`), verify size and digest against the
//!    expected ones, chmod 0444, **fsync(file)** (failpoint `blob.after-fsync`).
//! 3. Under `gc.lock` shared: record `blob sha256:..` in the lease, then **rename** (noreplace)
//!    into `blobs/sha256/<hex>`. An existing blob is success (ours is dropped): blobs are
//!    immutable, and an existing name always holds complete data because it was fsynced
//!    before its rename.
//! 4. Failpoints `blob.after-rename`, `blob.before-dir-fsync`, then **fsync(blobs/sha256)**.
//! 5. The ingest directory is removed (also when the writer is dropped uncommitted).
//!
//! A crash at any point leaves either no blob or a complete one, plus at most an ingest
//! directory (unlocked: prune removes it).
//!
//! The data file is written with `O_DIRECT` in aligned 4 MiB stretches (the unaligned tail goes
//! through the page cache at the end): a layer blob of hundreds of megabytes is written once, to
//! the disk, rather than copied into the page cache first and flushed by the commit's `fsync`.
//! Where the file system refuses `O_DIRECT`, the writer falls back to ordinary writes.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result, io_err};
use crate::failpoint;
use crate::lease::{GcLock, Lease, LeaseHandle, LeaseKind};
use crate::store::{Store, dir_names, unique_id};

/// Mode of committed blobs.
const BLOB_MODE: u32 = 0o444;
/// Write buffer of a blob writer: the stretch written at once with `O_DIRECT`.
const BUF_SIZE: usize = 4 << 20;
/// Alignment of `O_DIRECT` buffers, offsets and lengths (a page: at least any block size).
const DIRECT_ALIGN: usize = 4096;

/// A blob being written: `impl Write`, hashes as it goes; [`BlobWriter::commit`] publishes it.
#[derive(Debug)]
pub struct BlobWriter {
    store: Store,
    lease: LeaseHandle,
    dir: PathBuf,
    data_path: PathBuf,
    out: Option<DirectWriter>,
    _lock: File,
    hasher: Hasher,
    size: u64,
}

impl Store {
    /// The path of a committed blob (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    /// `<root>/blobs/sha256`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Starts writing a blob protected by `lease`.
    ///
    /// # Errors
    /// Creating the ingest directory, its lock or data file failed.
    pub fn blob_writer(&self, lease: &Lease) -> Result<BlobWriter> {
        BlobWriter::new(self, lease.handle())
    }

    /// Stores `bytes` as a blob and returns its digest (existing blobs are not rewritten).
    ///
    /// # Errors
    /// Any error of [`BlobWriter::commit`].
    pub fn put_blob(&self, lease: &Lease, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        {
            // Protect it first, then look: an existing blob recorded under gc.lock cannot be swept.
            let gc = GcLock::shared(self)?;
            lease.record_locked(&gc, LeaseKind::Blob, &d.to_string())?;
            if self.blob_path(&d).is_file() {
                return Ok(d);
            }
        }
        let mut w = self.blob_writer(lease)?;
        w.write_all(bytes).map_err(io_err(&w.data_path))?;
        let (d2, _) = w.commit(Some((&d, bytes.len() as u64)))?;
        Ok(d2)
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Opens a committed blob for reading.
    ///
    /// # Errors
    /// [`Error::BlobNotFound`] if absent, [`Error::Io`] otherwise.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| not_found_or(d, &p, e))
    }

    /// Reads a whole blob and verifies its digest (for manifests and configs).
    ///
    /// # Errors
    /// [`Error::BlobNotFound`], [`Error::Io`], or [`Error::DigestMismatch`] naming the blob's path
    /// when its content does not hash to `d`.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let mut f = File::open(&p).map_err(|e| not_found_or(d, &p, e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io_err(&p))?;
        let actual = Digest::of(&buf);
        if actual != *d {
            return Err(Error::DigestMismatch {
                path: p,
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(buf)
    }

    /// The size of a committed blob in bytes.
    ///
    /// # Errors
    /// [`Error::BlobNotFound`] if absent, [`Error::Io`] otherwise.
    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        let p = self.blob_path(d);
        std::fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| not_found_or(d, &p, e))
    }

    /// Every committed blob, sorted. Names that are not a valid digest hex are skipped (verify
    /// reports them by walking the directory itself).
    ///
    /// # Errors
    /// Listing `blobs/sha256` failed.
    pub fn list_blobs(&self) -> Result<Vec<Digest>> {
        let mut out: Vec<Digest> = dir_names(&self.blobs_dir())?
            .into_iter()
            .filter_map(|n| Digest::from_hex(&n).ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Removes a blob (GC). Returns whether it existed. The caller holds `gc.lock` exclusive.
    ///
    /// # Errors
    /// Unlinking failed for another reason than absence.
    pub fn remove_blob(&self, d: &Digest) -> Result<bool> {
        match self.sys.remove_file(&self.blob_path(d)) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn not_found_or(d: &Digest, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::BlobNotFound(d.to_string())
    } else {
        io_err(path)(e)
    }
}

impl BlobWriter {
    fn new(store: &Store, lease: LeaseHandle) -> Result<BlobWriter> {
        let dir = store
            .ingest_root()
            .join(format!("{}-{}", lease.id(), unique_id()));
        // Shared gc.lock: a prune cannot see the directory between mkdir and flock.
        let _gc = GcLock::shared(store)?;
        store.sys.create_dir_all(&dir)?;
        let cleanup = |e: Error| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path)
            .map_err(io_err(&lock_path))
            .map_err(cleanup)?;
        lock.lock().map_err(io_err(&lock_path)).map_err(cleanup)?;
        let data_path = dir.join("data");
        let file = DirectWriter::create(&data_path)
            .map_err(io_err(&data_path))
            .map_err(cleanup)?;
        Ok(BlobWriter {
            store: store.clone(),
            lease,
            dir,
            data_path,
            out: Some(file),
            _lock: lock,
            hasher: Hasher::new(),
            size: 0,
        })
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest of everything written so far: what [`BlobWriter::commit`] publishes when
    /// nothing more is written.
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// Reads once from `r`, at most `max` bytes, straight into the blob (no copy through a
    /// buffer of the caller's): the bytes count as written. Returns them (empty at the end of
    /// `r`), for the caller to look at.
    ///
    /// # Errors
    /// The outer error is the blob's (writing out a full buffer); the inner one is `r`'s read
    /// error, after which nothing was added.
    pub fn read_from(
        &mut self,
        r: &mut dyn Read,
        max: usize,
    ) -> std::io::Result<std::io::Result<&[u8]>> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob writer already finished"))?;
        out.make_room()?;
        let got = match out.read_from(r, max) {
            Ok(got) => got,
            Err(e) => return Ok(Err(e)),
        };
        self.hasher.update(got);
        self.size += got.len() as u64;
        Ok(Ok(got))
    }

    /// The ingest data file (for error messages).
    pub fn ingest_path(&self) -> &Path {
        &self.data_path
    }

    /// Makes the blob durable and visible; returns its digest and size. With `expected`, the
    /// content must have exactly that size and digest.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] / [`Error::DigestMismatch`] for unexpected content (nothing is
    /// committed), or any error of flush, fsync, rename or the directory fsync. On error the
    /// ingest directory is removed.
    pub fn commit(mut self, expected: Option<(&Digest, u64)>) -> Result<(Digest, u64)> {
        let out = self.out.take().ok_or_else(|| Error::Corrupt {
            path: self.data_path.clone(),
            message: "blob writer already finished".into(),
        })?;
        let file = out.into_file().map_err(io_err(&self.data_path))?;
        failpoint::hit("blob.after-write");
        let digest = std::mem::take(&mut self.hasher).finish();
        if let Some((d, size)) = expected {
            if self.size != size {
                return Err(Error::SizeMismatch {
                    path: self.data_path.clone(),
                    expected: size,
                    actual: self.size,
                });
            }
            if digest != *d {
                return Err(Error::DigestMismatch {
                    path: self.data_path.clone(),
                    expected: d.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        file.set_permissions(Permissions::from_mode(BLOB_MODE))
            .map_err(io_err(&self.data_path))?;
        self.store.sys.fsync(&file)?;
        drop(file);
        failpoint::hit("blob.after-fsync");
        let target = self.store.blob_path(&digest);
        {
            let gc = GcLock::shared(&self.store)?;
            self.lease
                .record_locked(&gc, LeaseKind::Blob, &digest.to_string())?;
            match self.store.sys.rename_noreplace(&self.data_path, &target) {
                Ok(()) => {}
                // Somebody committed the same content first: theirs is complete, ours is dropped.
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e.into()),
            }
        }
        failpoint::hit("blob.after-rename");
        failpoint::hit("blob.before-dir-fsync");
        self.store.sys.fsync_dir(&self.store.blobs_dir())?;
        Ok((digest, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob writer already finished"))?;
        let n = out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Committed or not, the ingest directory has served its purpose (the data file was
        // renamed away on success). Unflushed buffered data is discarded with it.
        drop(self.out.take());
        let _ = self.store.sys.remove_dir_all(&self.dir);
    }
}

/// A new file written sequentially: full [`BUF_SIZE`] stretches with `O_DIRECT` from an aligned
/// buffer, the rest (at [`DirectWriter::flush`]) through the page cache. `O_DIRECT` is dropped
/// for good when the file system refuses it (at `open` or at the first write) and after a flush.
struct DirectWriter {
    file: File,
    /// Holds an aligned [`BUF_SIZE`] window at `start`.
    mem: Vec<u8>,
    start: usize,
    len: usize,
    direct: bool,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("buffered", &self.len)
            .field("direct", &self.direct)
            .finish()
    }
}

impl DirectWriter {
    fn create(path: &Path) -> std::io::Result<DirectWriter> {
        let open = |flags| {
            OpenOptions::new()
                .create_new(true)
                .write(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = match open(libc::O_DIRECT) {
            Ok(f) => (f, true),
            // tmpfs and some others: no O_DIRECT (nothing was created).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
            Err(e) => return Err(e),
        };
        let mem = vec![0u8; BUF_SIZE + DIRECT_ALIGN];
        let start = mem.as_ptr().align_offset(DIRECT_ALIGN);
        Ok(DirectWriter {
            file,
            mem,
            start,
            len: 0,
            direct,
        })
    }

    fn buf(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + BUF_SIZE]
    }

    /// Clears `O_DIRECT` on the file: later writes may be of any length and offset.
    fn buffered(&mut self) -> std::io::Result<()> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        if self.direct {
            let flags = fcntl(&self.file, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
            let flags = OFlag::from_bits_retain(flags) - OFlag::O_DIRECT;
            fcntl(&self.file, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
            self.direct = false;
        }
        Ok(())
    }

    /// Writes the buffered bytes out (all of them; the buffer is empty afterwards).
    fn drain(&mut self) -> std::io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        if !self.len.is_multiple_of(DIRECT_ALIGN) {
            self.buffered()?;
        }
        let (start, len) = (self.start, self.len);
        let mut done = 0;
        while done < len {
            match self.file.write(&self.mem[start + done..start + len]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) if !n.is_multiple_of(DIRECT_ALIGN) && done + n < len => {
                    // A short direct write leaves an unaligned rest: finish it buffered.
                    done += n;
                    self.buffered()?;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A file system that takes O_DIRECT at open but not for these writes.
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    self.buffered()?;
                }
                Err(e) => return Err(e),
            }
        }
        self.len = 0;
        Ok(())
    }

    /// Writes the buffer out when it is full.
    fn make_room(&mut self) -> std::io::Result<()> {
        if self.len == BUF_SIZE {
            self.drain()?;
        }
        Ok(())
    }

    /// Reads once from `r` into the buffer (after [`Self::make_room`]), at most `max` bytes;
    /// returns what was read.
    fn read_from(&mut self, r: &mut dyn Read, max: usize) -> std::io::Result<&[u8]> {
        let len = self.len;
        let room = (BUF_SIZE - len).min(max);
        let n = r.read(&mut self.buf()[len..len + room])?;
        self.len += n;
        Ok(&self.buf()[len..len + n])
    }

    /// The file, everything written.
    fn into_file(mut self) -> std::io::Result<File> {
        self.drain()?;
        Ok(self.file)
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.make_room()?;
        let len = self.len;
        let n = data.len().min(BUF_SIZE - len);
        self.buf()[len..len + n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.drain()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use strata_sys::{Call, CallKind};

    use super::*;
    use crate::layer::tests::recording_store;

    fn tmp() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(io_err("tempdir"))
    }

    fn ingest_entries(store: &Store) -> usize {
        std::fs::read_dir(store.ingest_root())
            .map(|r| r.count())
            .unwrap_or(usize::MAX)
    }

    /// A reader that hands out at most `step` bytes per read and can fail once at `fail_at`.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
        fail_at: Option<usize>,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.fail_at.is_some_and(|f| self.at >= f) {
                self.fail_at = None;
                return Err(std::io::Error::other("connection reset"));
            }
            let n = buf.len().min(self.step).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn read_from_fills_the_blob_in_place() -> Result<()> {
        let d = tmp()?;
        let store = Store::open(d.path())?;
        let lease = store.lease()?;
        // Over two direct-write buffers, in odd steps, with a read error in the middle.
        let data: Vec<u8> = (0..(2 * BUF_SIZE + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut r = Trickle {
            data: data.clone(),
            at: 0,
            step: 300_007,
            fail_at: Some(BUF_SIZE + 5),
        };
        let mut w = store.blob_writer(&lease)?;
        let mut seen = Vec::new();
        let mut errors = 0;
        loop {
            let before = w.size();
            assert_eq!(before, seen.len() as u64);
            match w.read_from(&mut r, 1 << 30).map_err(io_err("blob"))? {
                Ok([]) => break,
                Ok(got) => seen.extend_from_slice(got),
                Err(e) => {
                    // Nothing was added by the failed read.
                    assert_eq!(e.to_string(), "connection reset");
                    assert_eq!(w.size(), before);
                    errors += 1;
                }
            }
        }
        assert_eq!(errors, 1);
        assert!(seen == data, "the returned stretches are the stream");
        // `max` bounds a read.
        let mut one = Trickle {
            data: vec![9; 10],
            at: 0,
            step: 10,
            fail_at: None,
        };
        let got = w.read_from(&mut one, 3).map_err(io_err("blob"))?;
        assert_eq!(got.map_err(io_err("blob"))?, &[9, 9, 9]);
        let mut all = data.clone();
        all.extend_from_slice(&[9, 9, 9]);
        let (digest, size) = w.commit(None)?;
        assert_eq!((digest, size), (Digest::of(&all), all.len() as u64));
        assert!(std::fs::read(store.blob_path(&digest)).map_err(io_err("blob"))? == all);
        Ok(())
    }

    /// The behaviour every store must show, whatever its syscall seam.
    pub(crate) fn blob_suite(store: &Store) -> Result<()> {
        let lease = store.lease()?;
        // put + read back
        let d = store.put_blob(&lease, b"hello")?;
        assert_eq!(d, Digest::of(b"hello"));
        assert!(store.has_blob(&d));
        assert_eq!(store.read_blob(&d)?, b"hello");
        assert_eq!(store.blob_size(&d)?, 5);
        let mut s = String::new();
        store
            .open_blob(&d)?
            .read_to_string(&mut s)
            .map_err(io_err("read"))?;
        assert_eq!(s, "hello");
        let mode = std::fs::metadata(store.blob_path(&d))
            .map_err(io_err("meta"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
        // idempotent put
        assert_eq!(store.put_blob(&lease, b"hello")?, d);
        // streamed writer, no expectation, large content
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = store.blob_writer(&lease)?;
        for chunk in big.chunks(7777) {
            w.write_all(chunk).map_err(io_err("write"))?;
        }
        assert_eq!(w.size(), big.len() as u64);
        let (bd, bs) = w.commit(None)?;
        assert_eq!((bd, bs), (Digest::of(&big), big.len() as u64));
        // a second writer of the same content: "already exists" is success
        let mut w = store.blob_writer(&lease)?;
        w.write_all(&big).map_err(io_err("write"))?;
        assert_eq!(w.commit(Some((&bd, bs)))?, (bd, bs));
        // mismatches commit nothing
        let mut w = store.blob_writer(&lease)?;
        w.write_all(b"abc").map_err(io_err("write"))?;
        let wrong = Digest::of(b"abd");
        assert!(matches!(
            w.commit(Some((&wrong, 3))),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(!store.has_blob(&wrong) && !store.has_blob(&Digest::of(b"abc")));
        let mut w = store.blob_writer(&lease)?;
        w.write_all(b"abc").map_err(io_err("write"))?;
        assert!(matches!(
            w.commit(Some((&Digest::of(b"abc"), 4))),
            Err(Error::SizeMismatch { .. })
        ));
        // dropped writer
        let mut w = store.blob_writer(&lease)?;
        w.write_all(b"never").map_err(io_err("write"))?;
        drop(w);
        assert!(!store.has_blob(&Digest::of(b"never")));
        assert_eq!(ingest_entries(store), 0);
        // missing blobs
        let missing = Digest::of(b"missing");
        assert!(!store.has_blob(&missing));
        assert!(matches!(
            store.read_blob(&missing),
            Err(Error::BlobNotFound(_))
        ));
        assert!(matches!(
            store.open_blob(&missing),
            Err(Error::BlobNotFound(_))
        ));
        assert!(matches!(
            store.blob_size(&missing),
            Err(Error::BlobNotFound(_))
        ));
        // listing and removal
        let mut expect = vec![d, bd];
        expect.sort();
        assert_eq!(store.list_blobs()?, expect);
        assert!(store.remove_blob(&bd)?);
        assert!(!store.remove_blob(&bd)?);
        assert_eq!(store.list_blobs()?, vec![d]);
        // the lease recorded what was committed
        let live = crate::lease::live_leases(store)?;
        let mine = live
            .iter()
            .find(|l| l.id == lease.id())
            .ok_or(Error::BlobNotFound("lease".into()))?;
        assert!(mine.blobs.contains(&d) && mine.blobs.contains(&bd));
        // corruption is detected and named
        let p = store.blob_path(&d);
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).map_err(io_err(&p))?;
        std::fs::write(&p, b"hellO").map_err(io_err(&p))?;
        match store.read_blob(&d) {
            Err(e @ Error::DigestMismatch { .. }) => {
                assert!(e.to_string().contains(&d.hex()), "{e}")
            }
            other => panic!("corruption not detected: {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn suite_on_real_store() -> Result<()> {
        let dir = tmp()?;
        blob_suite(&Store::open(dir.path())?)
    }

    #[test]
    fn suite_on_recording_store() -> Result<()> {
        let (_dir, rec, store) = recording_store();
        blob_suite(&store)?;
        assert!(!rec.calls().is_empty());
        Ok(())
    }

    #[test]
    fn commit_order_is_fsync_rename_fsync_dir() -> Result<()> {
        let (_dir, rec, store) = recording_store();
        let lease = store.lease()?;
        rec.clear();
        let d = store.put_blob(&lease, b"ordered")?;
        let calls = rec.calls_of(&[
            CallKind::Fsync,
            CallKind::RenameNoreplace,
            CallKind::Rename,
            CallKind::FsyncDir,
        ]);
        assert_eq!(calls.len(), 3, "{calls:?}");
        let Call::Fsync(data) = &calls[0] else {
            panic!("first call is not fsync(file): {calls:?}");
        };
        assert!(data.ends_with("data") && data.to_string_lossy().contains("/ingest/"));
        let Call::RenameNoreplace(from, to) = &calls[1] else {
            panic!("second call is not the rename: {calls:?}");
        };
        assert!(from.ends_with("data") && from.file_name() == data.file_name());
        assert_eq!(to, &store.blob_path(&d));
        assert_eq!(calls[2], Call::FsyncDir(store.blobs_dir()));
        Ok(())
    }

    /// Every length around the O_DIRECT boundaries (and a flush in the middle, after which
    /// writes go on through the page cache) gives back exactly the bytes written.
    #[test]
    fn direct_writer_keeps_every_byte() -> Result<()> {
        let dir = tmp()?;
        let pattern = |i: usize| (i.wrapping_mul(31) ^ (i >> 9)) as u8;
        for (n, (len, flush_at)) in [
            (0, None),
            (1, None),
            (DIRECT_ALIGN - 1, None),
            (DIRECT_ALIGN, None),
            (BUF_SIZE - 1, None),
            (BUF_SIZE, None),
            (BUF_SIZE + 1, None),
            (2 * BUF_SIZE + 12_345, None),
            (2 * BUF_SIZE + 12_345, Some(BUF_SIZE + 7)),
            (3 * BUF_SIZE, Some(BUF_SIZE)),
        ]
        .into_iter()
        .enumerate()
        {
            let data: Vec<u8> = (0..len).map(pattern).collect();
            let path = dir.path().join(format!("f{n}"));
            let mut w = DirectWriter::create(&path).map_err(io_err(&path))?;
            // Odd-sized writes, as a network body arrives.
            let mut at = 0;
            for chunk in data.chunks(65_537) {
                w.write_all(chunk).map_err(io_err(&path))?;
                at += chunk.len();
                if flush_at.is_some_and(|f| at >= f && at - chunk.len() < f) {
                    w.flush().map_err(io_err(&path))?;
                }
            }
            drop(w.into_file().map_err(io_err(&path))?);
            let back = std::fs::read(&path).map_err(io_err(&path))?;
            assert_eq!(back.len(), len, "length {len}, flush at {flush_at:?}");
            assert!(
                back == data,
                "content of length {len}, flush at {flush_at:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn failed_fsync_commits_nothing() -> Result<()> {
        for (kind, errno) in [
            (CallKind::Fsync, libc::EIO),
            (CallKind::RenameNoreplace, libc::ENOSPC),
            (CallKind::FsyncDir, libc::EIO),
        ] {
            let (_dir, rec, store) = recording_store();
            let lease = store.lease()?;
            rec.fail_next(kind, errno);
            let err = store.put_blob(&lease, b"doomed");
            let e = err
                .err()
                .ok_or(Error::BlobNotFound("expected failure".into()))?;
            assert!(
                matches!(&e, Error::Sys(s) if s.raw_errno() == Some(errno)),
                "{e}"
            );
            if kind != CallKind::FsyncDir {
                // The blob never became visible.
                assert!(!store.has_blob(&Digest::of(b"doomed")), "{kind:?}");
            }
            assert_eq!(ingest_entries(&store), 0, "{kind:?}: ingest cleaned");
            // The next attempt works.
            rec.clear_failures();
            let d = store.put_blob(&lease, b"doomed")?;
            assert_eq!(store.read_blob(&d)?, b"doomed");
        }
        Ok(())
    }

    #[test]
    fn concurrent_writers_of_same_content() -> Result<()> {
        let dir = tmp()?;
        let store = Store::open(dir.path())?;
        let lease = store.lease()?;
        let results: Vec<Result<Digest>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| store.put_blob(&lease, b"same bytes")))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::BlobNotFound("thread panicked".into())))
                })
                .collect()
        });
        for r in results {
            assert_eq!(r?, Digest::of(b"same bytes"));
        }
        assert_eq!(store.list_blobs()?.len(), 1);
        assert_eq!(ingest_entries(&store), 0);
        Ok(())
    }
}
