//! The stat index file: a compact, versioned binary format, written to a temp file and renamed
//! into place. A file that is truncated, fails its checksum, has another version or belongs to
//! another context is ignored (the scan then hashes everything and rewrites it).
//!
//! Layout, little endian: magic `STRATACX`, version `u32`, root path (`u32` length + bytes),
//! entry count `u64`, the entries in pre-order (`path_cmp`), then the blake3 of everything before it.
//! An entry: path (`u32` length + bytes), kind `u8`, racy `u8`, mode, uid, gid (`u32`), size
//! `u64`, mtime_ns, ctime_ns (`i64`), ino, nlink, dev (`u64`), content hash (32 bytes), link
//! target (`u32` length, `u32::MAX` for none, + bytes).

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::scan::Scanned;
use super::{Entry, Kind, path_cmp};
use crate::error::{Result, io_err};

const MAGIC: &[u8; 8] = b"STRATACX";
const VERSION: u32 = 1;
const NO_LINK: u32 = u32::MAX;

/// A previous scan, as read from its state file.
pub(super) struct Loaded {
    bytes: Vec<u8>,
    records: Vec<Record>,
    /// FNV-1a of a path → its record; `u32::MAX` when two paths share a key (never reused).
    by_key: HashMap<u64, u32>,
}

/// What hash reuse needs of one previous entry; the path is a range of `Loaded::bytes`.
struct Record {
    path: Range<usize>,
    kind: Kind,
    racy: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    hash: [u8; 32],
}

impl Loaded {
    /// The state at `path` if it is a valid one for `root`; `None` otherwise (missing included).
    pub(super) fn read(path: &Path, root: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        let records = decode(&bytes, root)?;
        let mut by_key = HashMap::with_capacity(records.len());
        for (idx, record) in records.iter().enumerate() {
            by_key
                .entry(fnv(&bytes[record.path.clone()]))
                .and_modify(|slot| *slot = u32::MAX)
                .or_insert(u32::try_from(idx).ok()?);
        }
        Some(Self {
            bytes,
            records,
            by_key,
        })
    }

    /// The file's raw bytes, to tell whether a rewrite would change anything.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The previous hash of the file at `rel` if its stat key is unchanged and it was not racy.
    pub(super) fn reusable(&self, rel: &str, now: &Entry) -> Option<[u8; 32]> {
        let idx = *self.by_key.get(&fnv(rel.as_bytes()))?;
        let r = self.records.get(idx as usize)?;
        let same = self.bytes[r.path.clone()] == *rel.as_bytes()
            && r.kind == Kind::File
            && !r.racy
            && r.size == now.size
            && r.mtime_ns == now.mtime_ns
            && r.ctime_ns == now.ctime_ns
            && r.ino == now.ino
            && r.mode == now.mode
            && r.uid == now.uid
            && r.gid == now.gid;
        same.then_some(r.hash)
    }
}

/// 64-bit FNV-1a: a cheap key for the path lookups of a rescan.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Serializes a scan (in [`path_cmp`] order).
pub(super) fn encode(root: &Path, scanned: &[Scanned]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + scanned.len() * 128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    put_bytes(&mut out, root.as_os_str().as_bytes());
    out.extend_from_slice(&(scanned.len() as u64).to_le_bytes());
    for item in scanned {
        let e = &item.entry;
        put_bytes(&mut out, item.path.as_bytes());
        out.push(e.kind.code());
        out.push(u8::from(item.racy));
        for v in [e.mode, e.uid, e.gid] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.ctime_ns.to_le_bytes());
        for v in [e.ino, e.nlink, e.dev] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&e.hash);
        match &e.link {
            Some(link) => put_bytes(&mut out, link),
            None => out.extend_from_slice(&NO_LINK.to_le_bytes()),
        }
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Paths and link targets are bounded by PATH_MAX, far below u32::MAX.
    let len = u32::try_from(bytes.len()).unwrap_or(NO_LINK - 1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes[..len as usize]);
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory renamed over it.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

/// A cursor over the state bytes; every read fails softly at the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<Range<usize>> {
        let end = self.pos.checked_add(n)?;
        if end > self.bytes.len() {
            return None;
        }
        let range = self.pos..end;
        self.pos = end;
        Some(range)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let range = self.take(N)?;
        self.bytes[range].try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    fn sized(&mut self) -> Option<Range<usize>> {
        let len = self.u32()?;
        self.take(len as usize)
    }
}

fn decode(bytes: &[u8], root: &Path) -> Option<Vec<Record>> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, sum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    if r.array::<8>()? != *MAGIC || r.u32()? != VERSION {
        return None;
    }
    let stored_root = r.sized()?;
    if &body[stored_root] != root.as_os_str().as_bytes() {
        return None;
    }
    let count = usize::try_from(r.u64()?).ok()?;
    // Each record is at least 110 bytes: a count beyond that is corrupt, not an allocation.
    let mut records = Vec::with_capacity(count.min(body.len() / 100));
    for _ in 0..count {
        let path = r.sized()?;
        let kind = Kind::from_code(r.u8()?)?;
        let racy = r.u8()? != 0;
        let (mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?);
        let size = r.u64()?;
        let (mtime_ns, ctime_ns) = (r.i64()?, r.i64()?);
        let ino = r.u64()?;
        let _nlink = r.u64()?;
        let _dev = r.u64()?;
        let hash = r.array::<32>()?;
        let link_len = r.u32()?;
        if link_len != NO_LINK {
            r.take(link_len as usize)?;
        }
        if let Some(prev) = records.last() {
            let prev: &Record = prev;
            if path_cmp(&body[prev.path.clone()], &body[path.clone()]).is_ge() {
                return None;
            }
        }
        records.push(Record {
            path,
            kind,
            racy,
            mode,
            uid,
            gid,
            size,
            mtime_ns,
            ctime_ns,
            ino,
            hash,
        });
    }
    (r.pos == body.len()).then_some(records)
}
