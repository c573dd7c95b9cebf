//! Safe streaming extraction of an uncompressed tar into a layer tree, recording it as it goes.
//!
//! The tar is parsed here (not with the `tar` crate) because every raw byte must reach the
//! [record](crate::record): header blocks, PAX (`x`, `g`) and GNU long-name (`L`, `K`) blocks
//! with their data, padding, and the end-of-archive blocks plus whatever follows them. The
//! sha256 of the whole stream (the diffID) and its length are computed while reading (the
//! sha256 on a thread of its own, fed batches of the bytes read).
//!
//! # Path safety
//!
//! Every entry name is cleaned lexically first (`.` and empty components dropped, `..` pops a
//! component but never above the root, a leading `/` ignored), so `../../x` and `/etc/x` land
//! inside the root, as containerd and moby do. The parent directory is then opened with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to the root fd: symlinks in the
//! parent path are followed *as if the root were `/`*, so a symlink planted earlier in the archive
//! (to `/`, to `../../..`, to a host path) can never lead outside. Missing parents are created
//! one `mkdirat` at a time, each resolved the same way. The last component is created with
//! `*at` calls on that parent fd and never followed:
//!
//! - an existing entry of another type (including a symlink where a directory is expected) is
//!   removed first (`unlinkat`, or moved to the ingest's trash directory when it is a directory),
//!   so a later entry can never write, chmod or chown through an earlier symlink;
//! - metadata is applied to fds opened with `O_NOFOLLOW` or to things this extraction has just
//!   created itself in its private temp tree. Regular files are hardlinks to
//!   [objects](crate::object): an existing object is linked; a new small file is created here
//!   (`O_CREAT | O_EXCL | O_NOFOLLOW`) and its fd handed to a worker thread that writes it, applies
//!   its metadata through the fd and links the inode into `objects/` (large files go through an
//!   `ObjectWriter` and are linked once committed);
//! - hardlink targets are cleaned and resolved inside the root the same way, and linked with
//!   `linkat` without `AT_SYMLINK_FOLLOW` (a link to a symlink is a link to the symlink itself).
//!
//! # Whiteouts
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` becomes a 0/0 character device `NAME`
//! (owned like the entry), `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory, and
//! other `.wh..wh.*` entries (aufs metadata) are skipped. `trusted.overlay.*`, `user.overlay.*`
//! and `security.selinux` xattrs from the archive are never applied (an image must not forge
//! overlay metadata); xattrs on symlinks, devices and fifos are not applied either. All of them
//! stay in the record, so the regenerated tar is still byte for byte the original.
//!
//! # Errors
//!
//! A bad header checksum, a truncated stream, unsupported entries (GNU sparse and multi-volume),
//! an unresolvable hardlink, a symlink loop in a parent path: all are errors, and the caller
//! ([`crate::layer`]) then removes the whole temp tree, so nothing is committed.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, renameat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, makedev,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use xattr::FileExt;

use crate::commit::hasher_gone;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::object::{ObjectKey, ObjectLookup, ObjectMeta, ObjectWriter, Stored};
use crate::record::{Batch, RecordWriter, hash_and_record};
use crate::store::Store;

/// Tar block size.
pub(crate) const BLOCK: usize = 512;
/// Largest PAX extended header or GNU long name accepted.
const MAX_META: u64 = 8 << 20;
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What extraction found.
#[derive(Debug, Clone)]
pub(crate) struct Extracted {
    pub diff_id: Digest,
    pub size: u64,
    pub entries: u64,
    pub unpacked_bytes: u64,
}

/// The input stream, hashed, recorded and counted.
struct Input<R> {
    inner: R,
    sha: HashTee,
    count: u64,
}

/// Bytes handed to the hasher thread per batch.
const HASH_BATCH: usize = 1 << 20;

/// The record of an extraction.
type Record = RecordWriter<BufWriter<File>>;

/// The sha256 of the stream (the diffID) and the layer's record, both made on a thread of their
/// own: the bytes read are copied into batches, with what they are (verbatim tar bytes or file
/// content, and the object each file became), that the thread hashes and records while the
/// extraction goes on.
struct HashTee {
    batch: Batch,
    tx: SyncSender<Batch>,
    /// Batches the hasher is done with, for reuse.
    free: Receiver<Batch>,
    done: Receiver<Result<(Digest, Record)>>,
}

impl HashTee {
    /// Starts the hasher thread in `s`, writing `record`.
    fn start<'s>(s: &'s std::thread::Scope<'s, '_>, record: Record) -> HashTee {
        let (tx, rx) = sync_channel::<Batch>(4);
        let (free_tx, free) = channel();
        let (done_tx, done) = channel();
        s.spawn(move || {
            // A failure closes the channel, which stops the extraction; it then reports this.
            let _ = done_tx.send(hash_and_record(rx, &free_tx, record).map_err(rec_err));
        });
        HashTee {
            batch: Batch::with_capacity(HASH_BATCH),
            tx,
            free,
            done,
        }
    }

    /// Feeds verbatim tar bytes (`recorded`) or file content.
    fn update(&mut self, data: &[u8], recorded: bool) -> Result<()> {
        self.batch.push(data, recorded);
        if self.batch.bytes.len() >= HASH_BATCH {
            self.send()?;
        }
        Ok(())
    }

    /// The file whose content was just fed is the object `key`.
    fn file(&mut self, key: ObjectKey, size: u64) {
        self.batch.file(key, size);
    }

    fn send(&mut self) -> Result<()> {
        let next = self
            .free
            .try_recv()
            .unwrap_or_else(|_| Batch::with_capacity(HASH_BATCH));
        let full = std::mem::replace(&mut self.batch, next);
        if self.tx.send(full).is_err() {
            return Err(self.stopped());
        }
        Ok(())
    }

    /// Why the hasher thread stopped early.
    fn stopped(&self) -> Error {
        match self.done.try_recv() {
            Ok(Err(e)) => e,
            _ => hasher_gone(),
        }
    }

    /// The sha256 of everything fed, and the record of it.
    fn finish(mut self) -> Result<(Digest, Record)> {
        if !self.batch.events.is_empty() {
            self.send()?;
        }
        // Closing the channel ends the hasher, which then sends its results.
        let HashTee { tx, done, .. } = self;
        drop(tx);
        done.recv().map_err(|_| hasher_gone())?
    }
}

impl<R: BufRead> Input<R> {
    /// Hands the next `len` bytes of the stream (fewer only at its end) to `f`, stretch by
    /// stretch as they sit in the reader's buffer (no copy of its own), hashing and counting
    /// them. Returns how many there were.
    fn take(
        &mut self,
        len: u64,
        recorded: bool,
        mut f: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let mut got = 0;
        while got < len {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Archive(format!("reading archive: {e}"))),
            };
            if avail.is_empty() {
                break;
            }
            let n = avail
                .len()
                .min(usize::try_from(len - got).unwrap_or(usize::MAX));
            f(&avail[..n])?;
            self.sha.update(&avail[..n], recorded)?;
            self.inner.consume(n);
            got += n as u64;
            self.count += n as u64;
        }
        Ok(got)
    }

    /// [`Self::take`] of exactly `len` bytes.
    fn take_all(
        &mut self,
        len: u64,
        recorded: bool,
        f: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        if self.take(len, recorded, f)? < len {
            return Err(Error::Archive(format!(
                "truncated archive at byte {}",
                self.count
            )));
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` verbatim tar bytes; Ok(false) on a clean EOF before the first
    /// byte.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut at = 0;
        let got = self.take(buf.len() as u64, true, |s| {
            buf[at..at + s.len()].copy_from_slice(s);
            at += s.len();
            Ok(())
        })?;
        if got == 0 && !buf.is_empty() {
            return Ok(false);
        }
        if at < buf.len() {
            return Err(Error::Archive(format!(
                "truncated archive at byte {}",
                self.count
            )));
        }
        Ok(true)
    }

    /// Reads exactly `buf.len()` verbatim tar bytes.
    fn need(&mut self, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() || self.fill(buf)? {
            Ok(())
        } else {
            Err(Error::Archive(format!(
                "truncated archive at byte {}",
                self.count
            )))
        }
    }

    /// Appends exactly `len` bytes of file content to `v`.
    fn append(&mut self, v: &mut Vec<u8>, len: usize) -> Result<()> {
        v.reserve(len);
        self.take_all(len as u64, false, |s| {
            v.extend_from_slice(s);
            Ok(())
        })
    }
}

/// An error writing the layer's record.
fn rec_err(e: io::Error) -> Error {
    Error::Io {
        path: PathBuf::from("record.zst"),
        source: e,
    }
}

pub(crate) fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// Parses a tar numeric field: octal (NUL/space padded) or GNU base-256.
pub(crate) fn parse_num(field: &[u8]) -> Result<i64> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        let neg = first == 0xff;
        let mut v: i128 = if neg { -1 } else { i128::from(first & 0x7f) };
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|x| x.checked_add(i128::from(b)))
                .ok_or_else(|| Error::Archive("numeric field overflow".into()))?;
            if v.unsigned_abs() > i64::MAX as u128 {
                return Err(Error::Archive("numeric field overflow".into()));
            }
        }
        return i64::try_from(v).map_err(|_| Error::Archive("numeric field overflow".into()));
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != b' ' && b != 0)
        .collect();
    if s.is_empty() {
        return Ok(0);
    }
    let mut v: i64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return Err(Error::Archive(format!(
                "invalid octal field {:?}",
                String::from_utf8_lossy(field)
            )));
        }
        v = v
            .checked_mul(8)
            .and_then(|x| x.checked_add(i64::from(b - b'0')))
            .ok_or_else(|| Error::Archive("numeric field overflow".into()))?;
    }
    Ok(v)
}

pub(crate) fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn checksum_ok(block: &[u8; BLOCK]) -> Result<bool> {
    let stored = parse_num(&block[148..156])?;
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    Ok(stored == unsigned || stored == signed)
}

/// The name of the entry whose ustar header is `block`: the PAX `path` if any, else the GNU
/// long name (`L`) before it if any, else the header's name (after its ustar prefix).
pub(crate) fn header_path(
    block: &[u8; BLOCK],
    long_name: Option<Vec<u8>>,
    pax: &BTreeMap<String, Vec<u8>>,
) -> Vec<u8> {
    if let Some(p) = pax.get("path") {
        return p.clone();
    }
    if let Some(n) = long_name {
        return n;
    }
    let name = cstr(&block[0..100]);
    let prefix = cstr(&block[345..500]);
    if &block[257..263] == b"ustar\0" && !prefix.is_empty() {
        [prefix, b"/", name].concat()
    } else {
        name.to_vec()
    }
}

/// Parses PAX records (`"<len> <key>=<value>\n"`) into `out`.
pub(crate) fn parse_pax(data: &[u8], out: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
    let bad = || Error::Archive("malformed PAX header".into());
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let key = String::from_utf8(rec[..eq].to_vec()).map_err(|_| bad())?;
        if key.starts_with("GNU.sparse") {
            return Err(Error::Archive(
                "GNU sparse entries are not supported".into(),
            ));
        }
        out.insert(key, rec[eq + 1..].to_vec());
        rest = &rest[len..];
    }
    Ok(())
}

pub(crate) fn pax_int(pax: &BTreeMap<String, Vec<u8>>, key: &str) -> Result<Option<i64>> {
    pax.get(key)
        .map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| Error::Archive(format!("invalid PAX {key}")))
        })
        .transpose()
}

/// PAX mtime `secs[.frac]` (possibly negative) -> (secs, nanos).
fn pax_time(v: &[u8]) -> Result<(i64, u32)> {
    let bad = || Error::Archive("invalid PAX mtime".into());
    let s = std::str::from_utf8(v).map_err(|_| bad())?.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let neg = int.starts_with('-');
    let secs: i64 = if int.is_empty() || int == "-" {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().map_err(|_| bad())?;
    if neg && nanos > 0 {
        Ok((secs - 1, 1_000_000_000 - nanos))
    } else {
        Ok((secs, nanos))
    }
}

/// Lexically cleans an archive path into components inside the root.
pub(crate) fn clean(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// One parsed entry header.
#[derive(Debug)]
struct Header {
    kind: u8,
    path: Vec<u8>,
    link: Vec<u8>,
    size: u64,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    devmajor: u64,
    devminor: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The extraction target: a root fd plus bookkeeping.
struct Tree<'a> {
    root: OwnedFd,
    trash: &'a Path,
    trash_n: u64,
    dir_times: Vec<(Vec<u8>, (i64, u32))>,
    /// The last parent directory opened by [`Tree::parent_dir`] (its cleaned path and fd):
    /// the entries of one directory, consecutive in a tar, share it. A path of the tree only
    /// changes what it resolves to when [`Tree::clear`] removes one of its components, for an
    /// entry whose parent is an ancestor (so the cache has moved on already); `clear` drops
    /// it all the same.
    last_parent: Option<(Vec<u8>, Rc<OwnedFd>)>,
}

fn nix_err(entry: &[u8], what: &str) -> impl FnOnce(Errno) -> Error {
    let entry = String::from_utf8_lossy(entry).into_owned();
    let what = what.to_owned();
    move |e| Error::Io {
        path: PathBuf::from(format!("{entry} ({what})")),
        source: io::Error::from(e),
    }
}

fn unsafe_entry(entry: &[u8], reason: impl Into<String>) -> Error {
    Error::UnsafeEntry {
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason: reason.into(),
    }
}

fn applicable_xattr(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name == "security.selinux")
}

impl Tree<'_> {
    /// Opens `comps` (a directory) resolved inside the root; creates missing directories.
    fn open_dir(
        &self,
        comps: &[&[u8]],
        flags: OFlag,
        create: bool,
        entry: &[u8],
    ) -> Result<OwnedFd> {
        let how = || {
            OpenHow::new()
                .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
        };
        let path = if comps.is_empty() {
            b".".to_vec()
        } else {
            join(comps)
        };
        // Why: RESOLVE_IN_ROOT makes the kernel resolve every component (symlinks and `..`
        // included) as if the layer root were `/`; nothing can resolve outside it.
        // https://man7.org/linux/man-pages/man2/openat2.2.html
        match openat2(self.root.as_fd(), os(&path), how()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) if create && !comps.is_empty() => {}
            Err(Errno::ELOOP) => return Err(unsafe_entry(entry, "symlink loop in parent path")),
            Err(Errno::ENOTDIR) => return Err(unsafe_entry(entry, "a parent is not a directory")),
            Err(e) => return Err(nix_err(entry, "open parent")(e)),
        }
        let parent = self.open_dir(&comps[..comps.len() - 1], OFlag::O_PATH, true, entry)?;
        let name = comps[comps.len() - 1];
        // https://man7.org/linux/man-pages/man2/mkdirat.2.html
        match mkdirat(parent.as_fd(), os(name), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(nix_err(entry, "mkdir parent")(e)),
        }
        openat2(self.root.as_fd(), os(&path), how()).map_err(|e| match e {
            Errno::ELOOP => unsafe_entry(entry, "symlink loop in parent path"),
            Errno::ENOTDIR => unsafe_entry(entry, "a parent is not a directory"),
            e => nix_err(entry, "open parent")(e),
        })
    }

    /// The directory `comps` (created if missing) opened `O_PATH` as [`Tree::open_dir`] does,
    /// or the same fd as for the previous entry when it had the same parent.
    fn parent_dir(&mut self, comps: &[&[u8]], entry: &[u8]) -> Result<Rc<OwnedFd>> {
        let path = join(comps);
        if let Some((last, fd)) = &self.last_parent
            && *last == path
        {
            return Ok(Rc::clone(fd));
        }
        let fd = Rc::new(self.open_dir(comps, OFlag::O_PATH, true, entry)?);
        self.last_parent = Some((path, Rc::clone(&fd)));
        Ok(fd)
    }

    /// Removes whatever is at `parent/name` unless both it and the new entry are directories.
    /// Returns true when an existing directory is kept.
    fn clear(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        new_is_dir: bool,
        entry: &[u8],
    ) -> Result<bool> {
        // https://man7.org/linux/man-pages/man2/fstatat.2.html (AT_SYMLINK_NOFOLLOW: lstat)
        let st = match fstatat(parent.as_fd(), os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(nix_err(entry, "stat")(e)),
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && new_is_dir {
            return Ok(true);
        }
        // What was there may be a component of the cached parent's path.
        self.last_parent = None;
        if is_dir {
            // Move the directory aside (one atomic rename); the trash is deleted with the temp tree.
            let trash = openat(
                nix::fcntl::AT_FDCWD,
                self.trash,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(nix_err(entry, "open trash"))?;
            self.trash_n += 1;
            let n = self.trash_n.to_string();
            // https://man7.org/linux/man-pages/man2/renameat.2.html
            renameat(parent.as_fd(), os(name), trash.as_fd(), n.as_str())
                .map_err(nix_err(entry, "replace directory"))?;
        } else {
            // https://man7.org/linux/man-pages/man2/unlinkat.2.html
            unlinkat(parent.as_fd(), os(name), UnlinkatFlags::NoRemoveDir)
                .map_err(nix_err(entry, "replace"))?;
        }
        Ok(false)
    }

    /// Creates `parent/name` with `make`, a `*at` call that fails with `EEXIST` rather than
    /// touch what is there (`O_CREAT | O_EXCL`, `linkat`, `symlinkat`, `mknodat`): a new name
    /// costs that one call. When something is in the way it is cleared as [`Tree::clear`]
    /// does, and `make` runs once more.
    fn create<T>(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        entry: &[u8],
        what: &str,
        mut make: impl FnMut() -> nix::Result<T>,
    ) -> Result<T> {
        match make() {
            Err(Errno::EEXIST) => {
                self.clear(parent, name, false, entry)?;
                make().map_err(nix_err(entry, what))
            }
            r => r.map_err(nix_err(entry, what)),
        }
    }

    fn chown_nofollow(parent: &OwnedFd, name: &[u8], h: &Header, entry: &[u8]) -> Result<()> {
        let (uid, gid) = ids(h)?;
        // https://man7.org/linux/man-pages/man2/fchownat.2.html
        fchownat(
            parent.as_fd(),
            os(name),
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(nix_err(entry, "chown"))
    }

    fn times_nofollow(parent: &OwnedFd, name: &[u8], t: (i64, u32), entry: &[u8]) -> Result<()> {
        let ts = TimeSpec::new(t.0, i64::from(t.1));
        // https://man7.org/linux/man-pages/man2/utimensat.2.html
        utimensat(
            parent.as_fd(),
            os(name),
            &ts,
            &ts,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(nix_err(entry, "utimes"))
    }
}

fn ids(h: &Header) -> Result<(Uid, Gid)> {
    let uid =
        u32::try_from(h.uid).map_err(|_| Error::Archive(format!("uid {} out of range", h.uid)))?;
    let gid =
        u32::try_from(h.gid).map_err(|_| Error::Archive(format!("gid {} out of range", h.gid)))?;
    Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
}

/// Extracts `input` into `rootfs` (an empty directory), storing regular files as objects
/// (temp files in `obj_tmp`), directories replaced mid-archive in `trash`, and every raw byte
/// in `record`.
pub(crate) fn extract<R: BufRead>(
    store: &Store,
    input: R,
    rootfs: &Path,
    obj_tmp: &Path,
    trash: &Path,
    record: Record,
) -> Result<(Extracted, Record)> {
    std::thread::scope(|s| {
        let (jobs, job_rx) = sync_channel::<Vec<FileJob>>(JOB_DEPTH / JOB_BATCH);
        let (done_tx, done) = channel();
        s.spawn(move || object_worker(store, obj_tmp, &job_rx, &done_tx));
        let mut objects = Objects {
            store,
            obj_tmp,
            jobs: Some(jobs),
            batch: Vec::with_capacity(JOB_BATCH),
            done,
            in_flight: HashSet::new(),
            stored: ObjectLookup::new(),
            pending: 0,
            spare: Vec::new(),
            writeback: Writeback::start(s, store),
        };
        let extracted = extract_into(s, store, input, rootfs, trash, record, &mut objects);
        // Every object is complete (or the first failure known) before the caller commits.
        let finished = objects.finish();
        let extracted = extracted?;
        finished?;
        Ok(extracted)
    })
}

fn extract_into<'s, R: BufRead>(
    scope: &'s std::thread::Scope<'s, '_>,
    store: &Store,
    input: R,
    rootfs: &Path,
    trash: &Path,
    record: Record,
    objects: &mut Objects<'_>,
) -> Result<(Extracted, Record)> {
    let root = openat(
        nix::fcntl::AT_FDCWD,
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Io {
        path: rootfs.to_path_buf(),
        source: e.into(),
    })?;
    let mut tree = Tree {
        root,
        trash,
        trash_n: 0,
        dir_times: Vec::new(),
        last_parent: None,
    };
    let mut inp = Input {
        inner: input,
        sha: HashTee::start(scope, record),
        count: 0,
    };
    let mut global: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut local: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut entries = 0u64;
    let mut unpacked = 0u64;
    let mut block = [0u8; BLOCK];
    loop {
        if !inp.fill(&mut block)? {
            return Err(Error::Archive(
                "truncated archive: no end-of-archive marker".into(),
            ));
        }
        if block.iter().all(|&b| b == 0) {
            // End of archive: a second zero block (or EOF), then keep whatever follows verbatim.
            if inp.fill(&mut block)? {
                if !block.iter().all(|&b| b == 0) {
                    return Err(Error::Archive(
                        "invalid archive: data after a single zero block".into(),
                    ));
                }
                inp.take(u64::MAX, true, |_| Ok(()))?;
            }
            break;
        }
        if !checksum_ok(&block)? {
            return Err(Error::Archive(format!(
                "bad header checksum at byte {}",
                inp.count - BLOCK as u64
            )));
        }
        let kind = block[156];
        let hsize = parse_num(&block[124..136])?;
        let hsize = u64::try_from(hsize).map_err(|_| Error::Archive("negative size".into()))?;
        // Meta entries: PAX and GNU long names.
        if matches!(kind, b'x' | b'g' | b'L' | b'K') {
            if hsize > MAX_META {
                return Err(Error::Archive(format!(
                    "extended header of {hsize} bytes is too large"
                )));
            }
            let mut data = vec![0u8; hsize as usize + padding(hsize)];
            inp.need(&mut data)?;
            let data = &data[..hsize as usize];
            match kind {
                b'x' => parse_pax(data, &mut local)?,
                b'g' => parse_pax(data, &mut global)?,
                b'L' => long_name = Some(cstr(data).to_vec()),
                _ => long_link = Some(cstr(data).to_vec()),
            }
            continue;
        }
        if matches!(kind, b'S' | b'M') {
            return Err(Error::Archive(format!(
                "unsupported GNU entry type {:?}",
                kind as char
            )));
        }
        let mut pax = global.clone();
        pax.append(&mut local);
        let path = header_path(&block, long_name.take(), &pax);
        let mut link = cstr(&block[157..257]).to_vec();
        if let Some(l) = long_link.take() {
            link = l;
        }
        if let Some(l) = pax.get("linkpath") {
            link = l.clone();
        }
        let size = match pax_int(&pax, "size")? {
            Some(s) => u64::try_from(s).map_err(|_| Error::Archive("negative size".into()))?,
            None => hsize,
        };
        let mtime = match pax.get("mtime") {
            Some(v) => pax_time(v)?,
            None => (parse_num(&block[136..148])?, 0),
        };
        let nonneg = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| Error::Archive(format!("negative {what}")))
        };
        let uid = nonneg(
            pax_int(&pax, "uid")?.map_or_else(|| parse_num(&block[108..116]), Ok)?,
            "uid",
        )?;
        let gid = nonneg(
            pax_int(&pax, "gid")?.map_or_else(|| parse_num(&block[116..124]), Ok)?,
            "gid",
        )?;
        let mut xattrs: Vec<(String, Vec<u8>)> = pax
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("SCHILY.xattr.")
                    .map(|n| (n.to_owned(), v.clone()))
            })
            .collect();
        xattrs.sort();
        let mut kind = kind;
        if (kind == 0 || kind == b'0') && path.ends_with(b"/") {
            kind = b'5';
        }
        let h = Header {
            kind,
            size,
            mode: (parse_num(&block[100..108])? & 0o7777) as u32,
            uid,
            gid,
            mtime,
            devmajor: nonneg(parse_num(&block[329..337])?, "devmajor")?,
            devminor: nonneg(parse_num(&block[337..345])?, "devminor")?,
            xattrs,
            path,
            link,
        };
        entries += 1;
        let is_reg = matches!(h.kind, 0 | b'0' | b'7');
        if is_reg {
            unpacked += h.size;
        }
        apply(store, &mut tree, &h, &mut inp, objects)?;
        objects.writeback.progress(unpacked);
        if !is_reg && h.size > 0 {
            // Data of a non-regular entry: kept verbatim, never interpreted.
            inp.take_all(h.size, true, |_| Ok(()))?;
        }
        let pad = padding(h.size);
        if pad > 0 {
            let mut p = [0u8; BLOCK];
            inp.need(&mut p[..pad])?;
        }
    }
    // Directory times last: creating children changes them.
    for (path, t) in std::mem::take(&mut tree.dir_times).into_iter().rev() {
        let comps = clean(&path);
        let ts = TimeSpec::new(t.0, i64::from(t.1));
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let p = if comps.is_empty() {
            b".".to_vec()
        } else {
            join(&comps)
        };
        if let Ok(fd) = openat2(tree.root.as_fd(), os(&p), how) {
            futimens(fd.as_fd(), &ts, &ts).map_err(nix_err(&path, "utimes"))?;
        }
    }
    let (diff_id, record) = inp.sha.finish()?;
    let extracted = Extracted {
        diff_id,
        size: inp.count,
        entries,
        unpacked_bytes: unpacked,
    };
    Ok((extracted, record))
}

/// Regular files up to this size are read into memory and finished by the object worker.
const SMALL_FILE: usize = 1 << 20;
/// Files queued for the object worker at most (besides the batch being filled).
const JOB_DEPTH: usize = 32;
/// Files handed to the object worker at once: one wake-up per batch, not per file.
const JOB_BATCH: usize = 8;

/// A regular file of the layer, created empty in the tree, for the object worker to fill.
struct FileJob {
    /// The new file, open for writing (its only name is in the tree).
    file: File,
    data: Vec<u8>,
    meta: ObjectMeta,
    key: ObjectKey,
    /// The store holds a torn object (wrong size) under `key`: replace it.
    torn: bool,
    entry: Vec<u8>,
}

/// The regular files of an extraction. The extraction thread hashes each small file (blake3,
/// in memory) for its key, which the record needs at once; an existing object is linked into
/// the tree as before. A new one is created empty *in the tree* (so every later entry, a
/// hardlink to it included, finds it in place) and handed to a worker thread that writes the
/// data, applies the metadata and links the inode into `objects/` under its key: the writes and
/// metadata syscalls, the longest part of unpacking a layer, run next to the parsing.
struct Objects<'s> {
    store: &'s Store,
    obj_tmp: &'s Path,
    jobs: Option<SyncSender<Vec<FileJob>>>,
    /// Files queued here, not sent to the worker yet.
    batch: Vec<FileJob>,
    done: Receiver<Result<(ObjectKey, Vec<u8>)>>,
    /// Keys queued and not finished yet (a second file with the same key waits for the
    /// first, then links to it: a key is never queued twice).
    in_flight: HashSet<ObjectKey>,
    /// What the store holds (with shard listings instead of a `statx` per missing object).
    stored: ObjectLookup,
    pending: usize,
    /// Data buffers back from the worker, for reuse.
    spare: Vec<Vec<u8>>,
    writeback: Writeback,
}

/// File data written after which the file system's writeback is started again.
const WRITEBACK_EVERY: u64 = 64 << 20;

/// Starts the writeback of what the extraction wrote so far, every [`WRITEBACK_EVERY`] bytes,
/// with a `syncfs` on a thread of its own (its errors are ignored: the commit's own `syncfs` is
/// the one that makes the layer durable). Otherwise the page cache holds every byte of a large
/// layer until that commit, which then waits for all of it to reach the disk.
struct Writeback {
    kick: SyncSender<()>,
    next: u64,
}

impl Writeback {
    fn start<'s>(s: &'s std::thread::Scope<'s, '_>, store: &'s Store) -> Writeback {
        let (kick, kicks) = sync_channel::<()>(1);
        s.spawn(move || {
            for () in kicks {
                let _ = store.sys.syncfs(&store.root);
            }
        });
        Writeback {
            kick,
            next: WRITEBACK_EVERY,
        }
    }

    /// `written`: the bytes of file data extracted so far.
    fn progress(&mut self, written: u64) {
        if written >= self.next {
            self.next = written + WRITEBACK_EVERY;
            // A kick already pending: the syncfs it starts covers this data too.
            let _ = self.kick.try_send(());
        }
    }
}

impl Objects<'_> {
    /// An empty buffer for a file's data, reused when one is free.
    fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }

    fn finished(&mut self, r: Result<(ObjectKey, Vec<u8>)>) -> Result<()> {
        self.pending -= 1;
        let (key, data) = r?;
        self.in_flight.remove(&key);
        self.recycle(data);
        Ok(())
    }

    /// Keeps a data buffer for a later file.
    fn recycle(&mut self, data: Vec<u8>) {
        if self.spare.len() < JOB_DEPTH {
            self.spare.push(data);
        }
    }

    /// Hands the queued files to the worker.
    fn send_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(JOB_BATCH));
        let jobs = self.jobs.as_ref().ok_or_else(worker_gone)?;
        jobs.send(batch).map_err(|_| worker_gone())
    }

    /// Takes the results in, waiting for all of them with `all` (else only those ready).
    fn collect(&mut self, all: bool) -> Result<()> {
        if all {
            self.send_batch()?;
        }
        while self.pending > 0 {
            let r = if all {
                self.done.recv().map_err(|_| worker_gone())?
            } else {
                match self.done.try_recv() {
                    Ok(r) => r,
                    Err(TryRecvError::Empty) => return Ok(()),
                    Err(TryRecvError::Disconnected) => return Err(worker_gone()),
                }
            };
            self.finished(r)?;
        }
        Ok(())
    }

    /// Puts a regular file with content `data` and object key `key` at `parent/name` (what is
    /// there is replaced, see [`Tree::create`]).
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        tree: &mut Tree<'_>,
        parent: &OwnedFd,
        name: &[u8],
        entry: &[u8],
        key: ObjectKey,
        meta: ObjectMeta,
        data: Vec<u8>,
    ) -> Result<()> {
        self.collect(false)?;
        if self.in_flight.contains(&key) {
            self.collect(true)?;
        }
        let torn = match self.stored.stored(self.store, &key, data.len() as u64) {
            Stored::Whole => {
                link_object_at(tree, self.store, &key, parent, name, entry)?;
                self.recycle(data);
                return Ok(());
            }
            Stored::Torn => true,
            Stored::Missing => false,
        };
        // Created here, by this call, in the private temp tree: O_EXCL and O_NOFOLLOW.
        let fd = tree.create(parent, name, entry, "create", || {
            openat(
                parent.as_fd(),
                os(name),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
        })?;
        let job = FileJob {
            file: File::from(fd),
            data,
            meta,
            key,
            torn,
            entry: entry.to_vec(),
        };
        self.batch.push(job);
        self.pending += 1;
        self.in_flight.insert(key);
        self.stored.note(key);
        if self.batch.len() >= JOB_BATCH {
            self.send_batch()?;
        }
        Ok(())
    }

    /// Closes the queue and waits for every queued file; the first failure wins.
    fn finish(&mut self) -> Result<()> {
        let mut first = self.send_batch();
        self.jobs = None;
        while self.pending > 0 {
            let r = match self.done.recv() {
                Ok(r) => self.finished(r),
                Err(_) => {
                    self.pending = 0;
                    Err(worker_gone())
                }
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// Names the object `key` `parent/name` in the tree (a hardlink; `name` is not followed;
/// whatever was there is replaced).
fn link_object_at(
    tree: &mut Tree<'_>,
    store: &Store,
    key: &ObjectKey,
    parent: &OwnedFd,
    name: &[u8],
    entry: &[u8],
) -> Result<()> {
    tree.create(parent, name, entry, "link object", || {
        match store.link_object_at(key, parent.as_fd(), os(name)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Errno::ENOENT),
            Err(e) => Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
        }
    })
}

fn worker_gone() -> Error {
    Error::Archive("the object writer thread stopped".into())
}

/// The object worker: finishes queued files in order until the queue closes. After a failure
/// it only answers the rest (the extraction stops at the first failure it is told about).
fn object_worker(
    store: &Store,
    obj_tmp: &Path,
    jobs: &Receiver<Vec<FileJob>>,
    done: &Sender<Result<(ObjectKey, Vec<u8>)>>,
) {
    let mut failed = false;
    for job in jobs.iter().flatten() {
        // Every job gets an answer: the extraction counts them.
        let r = if failed {
            Err(Error::Archive(
                "not written after an earlier failure".into(),
            ))
        } else {
            finish_object(store, obj_tmp, &job).map(|()| (job.key, job.data))
        };
        failed |= r.is_err();
        if done.send(r).is_err() {
            return;
        }
    }
}

/// Writes a queued file's data and metadata, then names its inode `objects/<key>`.
fn finish_object(store: &Store, obj_tmp: &Path, job: &FileJob) -> Result<()> {
    let path = PathBuf::from(String::from_utf8_lossy(&job.entry).into_owned());
    (&job.file).write_all(&job.data).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    crate::object::apply_meta(&job.file, &job.meta, &path)?;
    if !job.torn {
        // Why: the inode gets its object name through its fd (AT_EMPTY_PATH).
        match store.name_object(
            &job.key,
            job.file.as_fd(),
            OsStr::new(""),
            AtFlags::AT_EMPTY_PATH,
        ) {
            // Equal content and metadata committed meanwhile: this file keeps its own inode.
            Ok(()) | Err(Errno::EEXIST) => return Ok(()),
            // No CAP_DAC_READ_SEARCH, or a later entry replaced the file (no name is left):
            // the object from the data in memory, as below.
            Err(Errno::ENOENT | Errno::EPERM) => {}
            Err(e) => return Err(nix_err(&job.entry, "link object")(e)),
        }
    }
    let mut w = ObjectWriter::new(obj_tmp, job.meta.clone())?;
    w.write_all(&job.data).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    let (key, _) = w.commit(store)?;
    if key != job.key {
        return Err(Error::Archive(format!(
            "{}: object key changed while writing",
            path.display()
        )));
    }
    Ok(())
}

/// Applies one entry to the tree (reading a regular file's data from `inp`).
fn apply<R: BufRead>(
    store: &Store,
    tree: &mut Tree<'_>,
    h: &Header,
    inp: &mut Input<R>,
    objects: &mut Objects<'_>,
) -> Result<()> {
    let entry = h.path.as_slice();
    let comps = clean(entry);
    let is_reg = matches!(h.kind, 0 | b'0' | b'7');
    let Some((&name, parent_comps)) = comps.split_last() else {
        // The root itself: only a directory entry ("./") may name it.
        if h.kind == b'5' {
            let fd = tree.open_dir(&[], OFlag::O_RDONLY, false, entry)?;
            dir_meta(&fd, h, entry)?;
            tree.dir_times.push((Vec::new(), h.mtime));
            return Ok(());
        }
        return Err(unsafe_entry(entry, "a non-directory entry names the root"));
    };
    if name.len() > 255 {
        return Err(unsafe_entry(entry, "name component longer than 255 bytes"));
    }
    // Whiteouts.
    if let Some(target) = name.strip_prefix(b".wh.") {
        if is_reg && h.size > 0 {
            return Err(unsafe_entry(entry, "whiteout with content"));
        }
        if target == b".wh..opq" {
            let fd = tree.open_dir(parent_comps, OFlag::O_RDONLY, true, entry)?;
            let dir = File::from(fd);
            dir.set_xattr(OPAQUE_XATTR, b"y").map_err(|e| Error::Io {
                path: PathBuf::from(String::from_utf8_lossy(entry).into_owned()),
                source: e,
            })?;
            return Ok(());
        }
        if target.starts_with(b".wh.") {
            return Ok(()); // aufs metadata (.wh..wh.plnk and the like): no file system effect
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(unsafe_entry(entry, "whiteout of an invalid name"));
        }
        let parent = tree.parent_dir(parent_comps, entry)?;
        // https://man7.org/linux/man-pages/man2/mknodat.2.html (0/0 char device = overlay whiteout)
        tree.create(&parent, target, entry, "mknod whiteout", || {
            mknodat(
                parent.as_fd(),
                os(target),
                SFlag::S_IFCHR,
                Mode::empty(),
                makedev(0, 0),
            )
        })?;
        Tree::chown_nofollow(&parent, target, h, entry)?;
        return Ok(());
    }
    let parent = tree.parent_dir(parent_comps, entry)?;
    match h.kind {
        0 | b'0' | b'7' => {
            let mut meta = ObjectMeta {
                mode: h.mode,
                uid: h.uid,
                gid: h.gid,
                mtime_secs: h.mtime.0,
                mtime_nanos: h.mtime.1,
                xattrs: h
                    .xattrs
                    .iter()
                    .filter(|(k, _)| applicable_xattr(k))
                    .cloned()
                    .collect(),
            };
            meta.normalize();
            if h.size <= SMALL_FILE as u64 {
                let mut data = objects.buffer();
                inp.append(&mut data, h.size as usize)?;
                let key = meta.key(blake3::hash(&data).as_bytes());
                inp.sha.file(key, h.size);
                return objects.place(tree, &parent, name, entry, key, meta, data);
            }
            let obj_tmp = objects.obj_tmp;
            let mut w = ObjectWriter::new(obj_tmp, meta)?;
            inp.take_all(h.size, false, |s| {
                w.write_all(s).map_err(|e| Error::Io {
                    path: obj_tmp.to_path_buf(),
                    source: e,
                })
            })?;
            let (key, _) = w.commit(store)?;
            inp.sha.file(key, h.size);
            link_object_at(tree, store, &key, &parent, name, entry)?;
        }
        b'5' => {
            let mkdir = || mkdirat(parent.as_fd(), os(name), Mode::from_bits_truncate(0o700));
            match mkdir() {
                // Something is there: a directory stays (its content too), the rest goes.
                Err(Errno::EEXIST) => {
                    if !tree.clear(&parent, name, true, entry)? {
                        mkdir().map_err(nix_err(entry, "mkdir"))?;
                    }
                }
                r => r.map_err(nix_err(entry, "mkdir"))?,
            }
            let fd = openat(
                parent.as_fd(),
                os(name),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(nix_err(entry, "open dir"))?;
            dir_meta(&fd, h, entry)?;
            tree.dir_times.push((join(&comps), h.mtime));
        }
        b'2' => {
            // https://man7.org/linux/man-pages/man2/symlinkat.2.html
            tree.create(&parent, name, entry, "symlink", || {
                symlinkat(os(&h.link), parent.as_fd(), os(name))
            })?;
            Tree::chown_nofollow(&parent, name, h, entry)?;
            Tree::times_nofollow(&parent, name, h.mtime, entry)?;
        }
        b'1' => {
            let target = clean(&h.link);
            let Some((&tname, tparent)) = target.split_last() else {
                return Err(unsafe_entry(entry, "hardlink to the root"));
            };
            let tp = tree
                .open_dir(tparent, OFlag::O_PATH, false, entry)
                .map_err(|_| unsafe_entry(entry, "hardlink target not found in the layer"))?;
            match fstatat(tp.as_fd(), os(tname), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                    return Err(unsafe_entry(entry, "hardlink to a directory"));
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(unsafe_entry(
                        entry,
                        "hardlink target not found in the layer",
                    ));
                }
            }
            if comps == target {
                return Ok(()); // a link to itself: nothing to do
            }
            tree.create(&parent, name, entry, "hardlink", || {
                linkat(
                    tp.as_fd(),
                    os(tname),
                    parent.as_fd(),
                    os(name),
                    AtFlags::empty(),
                )
            })?;
        }
        b'3' | b'4' | b'6' => {
            let (kind, dev) = match h.kind {
                b'3' => (SFlag::S_IFCHR, makedev(h.devmajor, h.devminor)),
                b'4' => (SFlag::S_IFBLK, makedev(h.devmajor, h.devminor)),
                _ => (SFlag::S_IFIFO, 0),
            };
            tree.create(&parent, name, entry, "mknod", || {
                mknodat(
                    parent.as_fd(),
                    os(name),
                    kind,
                    Mode::from_bits_truncate(h.mode),
                    dev,
                )
            })?;
            Tree::chown_nofollow(&parent, name, h, entry)?;
            // Why: mknod's mode is masked by the umask. The node was created by this call in our
            // private temp tree and is not a symlink, so following is harmless.
            fchmodat(
                parent.as_fd(),
                os(name),
                Mode::from_bits_truncate(h.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(nix_err(entry, "chmod"))?;
            Tree::times_nofollow(&parent, name, h.mtime, entry)?;
        }
        b'V' => {} // volume label: no file system effect
        k => {
            return Err(Error::Archive(format!(
                "unsupported entry type {:?} for {}",
                k as char,
                String::from_utf8_lossy(entry)
            )));
        }
    }
    Ok(())
}

/// Owner, mode and xattrs of a directory, through its fd.
fn dir_meta(fd: &OwnedFd, h: &Header, entry: &[u8]) -> Result<()> {
    let (uid, gid) = ids(h)?;
    // https://man7.org/linux/man-pages/man2/fchown.2.html
    fchown(fd.as_fd(), Some(uid), Some(gid)).map_err(nix_err(entry, "chown"))?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(h.mode)).map_err(nix_err(entry, "chmod"))?;
    if !h.xattrs.is_empty() {
        let dup = fd.try_clone().map_err(|e| Error::Io {
            path: PathBuf::from(String::from_utf8_lossy(entry).into_owned()),
            source: e,
        })?;
        let file = File::from(dup);
        for (k, v) in h.xattrs.iter().filter(|(k, _)| applicable_xattr(k)) {
            file.set_xattr(k, v).map_err(|e| Error::Io {
                path: PathBuf::from(format!("{} (xattr {k})", String::from_utf8_lossy(entry))),
                source: e,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Breakout classes from containerd's and moby's archive tests, each against a canary
    //! directory outside the store that must stay untouched.

    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    use super::*;
    use crate::layer::tests::{entry, file, store};
    use crate::tarwrite::{Entry, write_end, write_entry};

    struct Canary {
        _d: tempfile::TempDir,
        dir: PathBuf,
        store: Store,
    }

    fn canary() -> Canary {
        let (d, store) = store();
        let dir = d.path().join("canary");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("secret"), "original").unwrap();
        fs::set_permissions(dir.join("secret"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        Canary { _d: d, dir, store }
    }

    impl Canary {
        fn abs(&self, rest: &str) -> String {
            format!("{}/{rest}", self.dir.display())
        }

        /// Ingests the entries; the result may be Ok (contained) or Err (rejected), never a panic.
        fn run(&self, entries: &[(Entry, &[u8])]) -> Result<crate::layer::LayerInfo> {
            let mut t = Vec::new();
            for (e, data) in entries {
                write_entry(&mut t, e, data).unwrap();
            }
            write_end(&mut t).unwrap();
            let lease = self.store.lease().unwrap();
            let r = self.store.ingest_layer(&lease, &t[..]);
            self.check();
            r
        }

        fn check(&self) {
            let names: Vec<_> = fs::read_dir(&self.dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                names,
                vec![std::ffi::OsString::from("secret")],
                "canary dir changed"
            );
            let m = fs::symlink_metadata(self.dir.join("secret")).unwrap();
            assert!(m.is_file());
            assert_eq!((m.mode() & 0o7777, m.nlink(), m.uid()), (0o644, 1, 0));
            assert_eq!(
                fs::read_to_string(self.dir.join("secret")).unwrap(),
                "original"
            );
            let d = fs::symlink_metadata(&self.dir).unwrap();
            assert_eq!(d.mode() & 0o7777, 0o755);
            assert!(xattr::get(&self.dir, OPAQUE_XATTR).unwrap().is_none());
            let parent: Vec<_> = fs::read_dir(self.dir.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                parent.len(),
                2,
                "something was created next to the canary: {parent:?}"
            );
            for k in self.store.list_objects().unwrap() {
                self.store.verify_object(&k).unwrap();
            }
        }
    }

    fn f(name: &str) -> Entry {
        file(name, 0, 0o644, 1)
    }

    #[test]
    fn dot_dot_escape() {
        let c = canary();
        let info = c
            .run(&[
                (f("../../../../../../../../canary/pwned"), b"x"),
                (f("a/../../../canary/pwned2"), b"x"),
            ])
            .unwrap();
        assert!(
            c.store
                .layer_rootfs(&info.diff_id)
                .join("canary/pwned")
                .is_file()
        );
    }

    #[test]
    fn absolute_path() {
        let c = canary();
        let info = c
            .run(&[
                (f(&c.abs("pwned")), b"x"),
                (f(&c.abs("secret")), b"overwritten"),
            ])
            .unwrap();
        let inside = c
            .store
            .layer_rootfs(&info.diff_id)
            .join(c.abs("secret").trim_start_matches('/'));
        assert_eq!(fs::read_to_string(inside).unwrap(), "overwritten");
    }

    #[test]
    fn symlink_to_outside_then_write_through() {
        let c = canary();
        let _ = c.run(&[
            (entry("abs", b'2', &c.abs("")), b""),
            (f("abs/pwned"), b"x"),
            (f("abs/secret"), b"overwritten"),
            (entry("rel", b'2', "../../../../../../../../../canary"), b""),
            (f("rel/pwned"), b"x"),
            (entry("dotdot", b'2', ".."), b""),
            (
                f("dotdot/dotdot/dotdot/dotdot/dotdot/dotdot/canary/pwned"),
                b"x",
            ),
        ]);
    }

    #[test]
    fn symlink_replaced_mid_archive() {
        let c = canary();
        let _ = c.run(&[
            (entry("d/", b'5', ""), b""),
            (f("d/ok"), b"ok"),
            (entry("d", b'2', &c.abs("")), b""),
            (f("d/pwned"), b"x"),
            (entry("d/", b'5', ""), b""),
            (f("d/secret"), b"x"),
        ]);
    }

    /// Entries of one directory share its fd; when a later entry replaces that directory (by a
    /// symlink, a file, a new directory), the next entries land where the path now resolves,
    /// never in the replaced directory.
    #[test]
    fn replaced_parent_directories_are_opened_again() {
        let c = canary();
        let info = c
            .run(&[
                (entry("e/", b'5', ""), b""),
                (entry("d/", b'5', ""), b""),
                (f("d/a"), b"a"),
                (entry("d", b'2', "/e"), b""),
                (f("d/b"), b"b"),
                (f("g/x"), b"x"),
                (f("g"), b"file"),
                (entry("g/", b'5', ""), b""),
                (f("g/y"), b"y"),
                (f("h/x"), b"x"),
                (entry("h/", b'5', ""), b""),
                (f("h/y"), b"y"),
            ])
            .unwrap();
        let root = c.store.layer_rootfs(&info.diff_id);
        assert!(fs::symlink_metadata(root.join("d")).unwrap().is_symlink());
        assert_eq!(fs::read(root.join("e/b")).unwrap(), b"b");
        assert!(!root.join("e/a").exists());
        assert!(fs::symlink_metadata(root.join("g")).unwrap().is_dir());
        assert_eq!(fs::read(root.join("g/y")).unwrap(), b"y");
        assert!(!root.join("g/x").exists());
        // A directory entry over an existing directory keeps it and its content.
        assert_eq!(fs::read(root.join("h/x")).unwrap(), b"x");
        assert_eq!(fs::read(root.join("h/y")).unwrap(), b"y");
    }

    #[test]
    fn hardlink_to_outside_file() {
        let c = canary();
        assert!(
            c.run(&[(entry("h", b'1', "../../../../../../../canary/secret"), b"")])
                .is_err()
        );
        assert!(c.run(&[(entry("h", b'1', &c.abs("secret")), b"")]).is_err());
    }

    #[test]
    fn hardlink_through_symlink() {
        let c = canary();
        assert!(
            c.run(&[
                (entry("l", b'2', &c.abs("")), b""),
                (entry("h", b'1', "l/secret"), b"")
            ])
            .is_err()
        );
        // A hardlink to the symlink itself links the symlink inode; writing through it stays inside.
        let _ = c.run(&[
            (entry("l", b'2', &c.abs("secret")), b""),
            (entry("h", b'1', "l"), b""),
            (f("h"), b"x"),
        ]);
        let _ = c.run(&[
            (entry("l", b'2', &c.abs("")), b""),
            (entry("h", b'1', "l"), b""),
            (f("h/pwned"), b"x"),
        ]);
    }

    #[test]
    fn chmod_through_symlink() {
        let c = canary();
        let mut dir = entry("cd", b'5', "");
        dir.mode = 0o777;
        let mut dev = entry("cf", b'6', "");
        dev.mode = 0o777;
        let _ = c.run(&[
            (entry("cd", b'2', &c.abs("")), b""),
            (dir.clone(), b""),
            (entry("cf", b'2', &c.abs("secret")), b""),
            (dev, b""),
            (entry("cs", b'2', &c.abs("secret")), b""),
            (file("cs", 0, 0o777, 1), b"x"),
        ]);
        // Directory entry whose *parent* is a symlink out: chmod lands inside.
        let mut inner = entry("p/canary/", b'5', "");
        inner.mode = 0o700;
        let _ = c.run(&[(entry("p", b'2', &c.abs("..")), b""), (inner, b"")]);
    }

    #[test]
    fn nested_symlink_loops() {
        let c = canary();
        assert!(
            c.run(&[
                (entry("a", b'2', "b"), b""),
                (entry("b", b'2', "a"), b""),
                (f("a/x"), b"x")
            ])
            .is_err()
        );
        assert!(
            c.run(&[(entry("s", b'2', "s"), b""), (f("s/x"), b"x")])
                .is_err()
        );
        assert!(
            c.run(&[
                (entry("s", b'2', "s/../s"), b""),
                (entry("h", b'1', "s/x"), b"")
            ])
            .is_err()
        );
    }

    #[test]
    fn long_names() {
        let c = canary();
        assert!(c.run(&[(f(&"n".repeat(300)), b"x")]).is_err());
        let deep = format!("{}f", "dddddddddd/".repeat(300));
        let _ = c.run(&[(f(&deep), b"x")]);
        let ok = format!("{}/f", "d".repeat(250));
        c.run(&[(f(&ok), b"x")]).unwrap();
    }

    #[test]
    fn whiteout_escaping_root() {
        let c = canary();
        assert!(c.run(&[(f(".wh.."), b"")]).is_err());
        assert!(c.run(&[(f("x/.wh..."), b"")]).is_err());
        let info = c
            .run(&[
                (f("../../../../../../canary/.wh.secret"), b""),
                (f(&c.abs(".wh.secret")), b""),
            ])
            .unwrap();
        let wh = fs::symlink_metadata(c.store.layer_rootfs(&info.diff_id).join("canary/secret"))
            .unwrap();
        assert_eq!(wh.rdev(), 0);
        let _ = c.run(&[
            (entry("o", b'2', &c.abs("")), b""),
            (f("o/.wh..wh..opq"), b""),
            (f("o/.wh.secret"), b""),
        ]);
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let c = canary();
        let info = c
            .run(&[
                (entry("d/", b'5', ""), b""),
                (f("d/.wh..wh..opq"), b""),
                (f("d/.wh.gone"), b""),
            ])
            .unwrap();
        let root = c.store.layer_rootfs(&info.diff_id);
        assert_eq!(
            xattr::get(root.join("d"), OPAQUE_XATTR).unwrap().as_deref(),
            Some(&b"y"[..])
        );
        let m = fs::symlink_metadata(root.join("d/gone")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &m.file_type()
        ));
        assert_eq!(m.rdev(), 0);
        // A forged overlay xattr from the archive is never applied.
        let mut forged = entry("e/", b'5', "");
        forged.xattrs = vec![(OPAQUE_XATTR.into(), b"y".to_vec())];
        let info = c.run(&[(forged, b"")]).unwrap();
        assert!(
            xattr::get(c.store.layer_rootfs(&info.diff_id).join("e"), OPAQUE_XATTR)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn device_node() {
        let c = canary();
        let mut dev = entry("../../../../../../canary/null", b'3', "");
        dev.devmajor = 1;
        dev.devminor = 3;
        let mut abs = dev.clone();
        abs.name = c.abs("zero").into_bytes();
        let info = c.run(&[(dev, b""), (abs, b"")]).unwrap();
        assert!(
            c.store
                .layer_rootfs(&info.diff_id)
                .join("canary/null")
                .exists()
        );
    }

    #[test]
    fn write_through_hardlink_never_mutates_an_object() {
        let c = canary();
        let info = c
            .run(&[(f("a"), b"A"), (entry("b", b'1', "a"), b""), (f("b"), b"B")])
            .unwrap();
        let root = c.store.layer_rootfs(&info.diff_id);
        assert_eq!(fs::read(root.join("a")).unwrap(), b"A");
        assert_eq!(fs::read(root.join("b")).unwrap(), b"B");
    }

    /// Small files finished by the object worker, in the orders that involve a queued file:
    /// a hardlink to it, equal content queued twice, an overwrite of it, a file whose only name
    /// goes before the worker links it. Every object is whole, equal files share one, the tree
    /// holds the last content, and the record regenerates the exact tar.
    #[test]
    fn queued_files_in_every_order() {
        let c = canary();
        let mut t = Vec::new();
        let mut entries: Vec<(Entry, Vec<u8>)> = vec![
            (f("a"), b"same".to_vec()),
            (entry("b", b'1', "a"), Vec::new()),
            (f("c"), b"same".to_vec()),
            (f("d"), b"first d".to_vec()),
            (f("d"), b"second d".to_vec()),
        ];
        // Many files whose names are all replaced at once by later entries: some of them lose
        // their only name while queued.
        for i in 0..200 {
            entries.push((f(&format!("many/{i}")), format!("old {i}").into_bytes()));
        }
        entries.push((entry("many/", b'5', ""), Vec::new()));
        for i in 0..200 {
            entries.push((f(&format!("many/{i}")), format!("new {i}").into_bytes()));
        }
        for (e, data) in &entries {
            let mut e = e.clone();
            e.size = data.len() as u64;
            write_entry(&mut t, &e, data).unwrap();
        }
        write_end(&mut t).unwrap();
        let lease = c.store.lease().unwrap();
        let info = c.store.ingest_layer(&lease, &t[..]).unwrap();
        c.check();
        let root = c.store.layer_rootfs(&info.diff_id);
        let ino = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().ino();
        assert_eq!(fs::read(root.join("a")).unwrap(), b"same");
        assert_eq!(ino("a"), ino("b"));
        assert_eq!(ino("a"), ino("c"), "equal files share one object");
        assert_eq!(fs::read(root.join("d")).unwrap(), b"second d");
        for i in [0, 99, 199] {
            let got = fs::read(root.join(format!("many/{i}"))).unwrap();
            assert_eq!(got, format!("new {i}").into_bytes());
        }
        let objects = c.store.list_objects().unwrap();
        assert_eq!(
            objects.len(),
            1 + 2 + 400,
            "same, both d, old and new many/*"
        );
        let mut back = Vec::new();
        c.store.write_layer_tar(&info.diff_id, &mut back).unwrap();
        assert!(back == t, "the record regenerates the tar byte for byte");
        assert!(c.store.verify().unwrap().is_empty());
    }

    /// Entries that meet a file still queued for the object worker: a whiteout of it leaves the
    /// whiteout, a file under it is refused (its parent is not a directory).
    #[test]
    fn whiteouts_and_children_of_queued_files() {
        let c = canary();
        let info = c
            .run(&[(f("w"), b"data"), (f(".wh.w"), b""), (f("keep"), b"k")])
            .unwrap();
        let root = c.store.layer_rootfs(&info.diff_id);
        let m = fs::symlink_metadata(root.join("w")).unwrap();
        assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "w is a whiteout"
        );
        assert_eq!(fs::read(root.join("keep")).unwrap(), b"k");
        match c.run(&[(f("p"), b"file"), (f("p/child"), b"x")]) {
            Err(Error::UnsafeEntry { reason, .. }) => {
                assert_eq!(reason, "a parent is not a directory");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Past 64 MiB of file data an extraction starts the writeback (one more syncfs, besides
    /// the commit's); a small layer's commit is its only syncfs.
    #[test]
    fn large_layers_start_writeback_early() {
        let (_d, rec, s) = crate::layer::tests::recording_store();
        let lease = s.lease().unwrap();
        let ingest = |files: &[(&str, usize)]| {
            let mut t = Vec::new();
            for (i, (name, len)) in files.iter().enumerate() {
                let data = vec![i as u8; *len];
                write_entry(&mut t, &file(name, *len as u64, 0o644, 1), &data).unwrap();
            }
            write_end(&mut t).unwrap();
            rec.clear();
            s.ingest_layer(&lease, &t[..]).unwrap();
            rec.calls_of(&[strata_sys::CallKind::Syncfs]).len()
        };
        // A small layer: the commit's syncfs only.
        assert_eq!(ingest(&[("a", 1000), ("b", 5000)]), 1);
        // 70 MiB of file data: one early writeback, then the commit's.
        let big: Vec<(String, usize)> = (0..70).map(|i| (format!("f{i}"), 1 << 20)).collect();
        let big: Vec<(&str, usize)> = big.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        assert_eq!(ingest(&big), 2);
    }

    /// A same-named object of the wrong size (a torn write from a crash) is replaced by the
    /// whole one, never linked into the tree.
    #[test]
    fn torn_object_is_replaced() {
        let c = canary();
        let mut meta = ObjectMeta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_secs: 1,
            mtime_nanos: 0,
            xattrs: Vec::new(),
        };
        meta.normalize();
        let key = crate::object::key_of(&meta, b"whole content");
        let obj = c.store.object_path(&key);
        fs::create_dir_all(obj.parent().unwrap()).unwrap();
        fs::write(&obj, b"whole").unwrap();
        let info = c.run(&[(f("x"), b"whole content")]).unwrap();
        let root = c.store.layer_rootfs(&info.diff_id);
        assert_eq!(fs::read(root.join("x")).unwrap(), b"whole content");
        assert_eq!(fs::read(&obj).unwrap(), b"whole content");
        c.store.verify_object(&key).unwrap();
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_num(b"0000755\0").unwrap(), 0o755);
        assert_eq!(parse_num(b"  755 \0").unwrap(), 0o755);
        assert_eq!(parse_num(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
        assert!(parse_num(b"0009").is_err());
        assert!(parse_num(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(pax_time(b"-1.5").unwrap(), (-2, 500_000_000));
        assert_eq!(pax_time(b"12.000000001").unwrap(), (12, 1));
        assert_eq!(clean(b"/../a/./b/../c//"), vec![&b"a"[..], &b"c"[..]]);
    }
}
