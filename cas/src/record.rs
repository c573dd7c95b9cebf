//! The layer record (`record.zst`): what regenerates a layer's tar byte for byte.
//!
//! Like containers/storage's tar-split, the record keeps every byte of the tar that is not the
//! content of a regular file, verbatim and in order, plus a reference to the object holding each
//! regular file's content. Concatenating the segments gives back the original tar (same diffID).
//!
//! # On-disk format
//!
//! `record.zst` is zstd: frames of about 1 MiB, one stream to zstd's decoder. Decompressed
//! it is:
//!
//! ```text
//! magic    8 bytes  b"STRATREC"
//! version  u32 LE   = 1
//! segments, each introduced by a tag byte:
//!   0x01 Raw   varint len, then len bytes      verbatim tar bytes: header blocks (incl. PAX 'x'/'g'
//!                                              and GNU 'L'/'K' blocks with their data), the data
//!                                              of non-regular entries, padding after file data,
//!                                              the end-of-archive blocks and anything after them
//!   0x02 File  32 bytes object key, varint size the content of one regular file (no padding):
//!                                              `size` bytes of `objects/<hh>/<hex(key)>`
//!   0x00 End                                   last byte of the stream; a record without it is
//!                                              truncated and rejected
//! ```
//!
//! A varint is unsigned LEB128 (7 bits per byte, low bits first, high bit = more), at most 10
//! bytes. Consecutive raw bytes are coalesced into one Raw segment of at most [`MAX_RAW`] bytes.
//! Hardlinks inside a layer are ordinary header blocks in Raw segments: they come from the record,
//! never from inode sharing in the store.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::error::{Error, Result};
use crate::object::ObjectKey;

/// Magic bytes at the start of a decompressed record.
pub const MAGIC: &[u8; 8] = b"STRATREC";
/// Current format version.
pub const VERSION: u32 = 1;
/// Largest Raw segment the writer emits and the reader accepts.
pub const MAX_RAW: usize = 1 << 20;

const TAG_END: u8 = 0;
const TAG_RAW: u8 = 1;
const TAG_FILE: u8 = 2;

/// One record segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Verbatim tar bytes.
    Raw(Vec<u8>),
    /// A regular file's content, stored as an object.
    File {
        /// The object holding the content.
        object: ObjectKey,
        /// Content length in bytes.
        size: u64,
    },
}

/// Writes a record: buffers raw bytes and emits coalesced segments into a zstd stream.
pub struct RecordWriter<W: Write> {
    w: W,
    zstd: zstd::bulk::Compressor<'static>,
    /// Raw bytes of the segment being coalesced.
    raw: Vec<u8>,
    /// Encoded segments not yet compressed: they go out as one zstd frame once there are
    /// [`FRAME`] bytes. A layer of small files has three segments per file; a streaming
    /// encoder given each one costs several times their compression.
    out: Vec<u8>,
}

/// Bytes of encoded segments per zstd frame, at least.
const FRAME: usize = 1 << 20;

impl<W: Write> std::fmt::Debug for RecordWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("pending_raw", &self.raw.len())
            .field("pending_out", &self.out.len())
            .finish()
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

impl<W: Write> RecordWriter<W> {
    /// Starts a record on `out` (writes the header).
    ///
    /// # Errors
    /// I/O errors from `out`.
    pub fn new(out: W) -> io::Result<Self> {
        // Level 1: a record is mostly tar headers and object keys, written while a layer is
        // unpacked or committed; the faster level halves that CPU for a few percent of size.
        let zstd = zstd::bulk::Compressor::new(1)?;
        let mut head = Vec::with_capacity(FRAME + MAX_RAW);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        Ok(Self {
            w: out,
            zstd,
            raw: Vec::new(),
            out: head,
        })
    }

    /// Appends verbatim tar bytes.
    ///
    /// # Errors
    /// I/O errors from the output.
    pub fn raw(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = MAX_RAW - self.raw.len();
            let n = room.min(bytes.len());
            self.raw.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.raw.len() == MAX_RAW {
                self.flush_raw()?;
            }
        }
        Ok(())
    }

    fn flush_raw(&mut self) -> io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        self.out.push(TAG_RAW);
        put_varint(&mut self.out, self.raw.len() as u64);
        self.out.extend_from_slice(&self.raw);
        self.raw.clear();
        self.spill(FRAME)
    }

    /// Writes the encoded segments as a zstd frame once there are at least `min` bytes.
    fn spill(&mut self, min: usize) -> io::Result<()> {
        if self.out.len() >= min.max(1) {
            self.w.write_all(&self.zstd.compress(&self.out)?)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Appends a regular file's content reference.
    ///
    /// # Errors
    /// I/O errors from the output.
    pub fn file(&mut self, object: &ObjectKey, size: u64) -> io::Result<()> {
        self.flush_raw()?;
        self.out.push(TAG_FILE);
        self.out.extend_from_slice(&object.0);
        put_varint(&mut self.out, size);
        self.spill(FRAME)
    }

    /// Writes the End tag and finishes the zstd stream; returns the output.
    ///
    /// # Errors
    /// I/O errors from the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_raw()?;
        self.out.push(TAG_END);
        self.spill(0)?;
        Ok(self.w)
    }
}

/// A stretch of a layer's tar stream on its way to the thread that hashes it (the diffID) and
/// records it: its bytes, and what they are, in order.
pub(crate) struct Batch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) events: Vec<Ev>,
}

/// One stretch of a [`Batch`].
pub(crate) enum Ev {
    /// This many verbatim tar bytes (headers, padding, end blocks): hashed and recorded.
    Raw(usize),
    /// This many bytes of file content: hashed, not recorded (the record names the object).
    Data(usize),
    /// The record segment of the file whose content was just sent (no bytes).
    File(ObjectKey, u64),
}

impl Batch {
    pub(crate) fn with_capacity(n: usize) -> Batch {
        Batch {
            bytes: Vec::with_capacity(n),
            events: Vec::new(),
        }
    }

    /// Appends verbatim tar bytes (`recorded`) or file content.
    pub(crate) fn push(&mut self, bytes: &[u8], recorded: bool) {
        self.bytes.extend_from_slice(bytes);
        self.added(bytes.len(), recorded);
    }

    /// Counts the last `n` bytes of [`Self::bytes`] (appended by the caller) as verbatim tar
    /// bytes (`recorded`) or file content.
    pub(crate) fn added(&mut self, n: usize, recorded: bool) {
        match (self.events.last_mut(), recorded) {
            (Some(Ev::Raw(k)), true) | (Some(Ev::Data(k)), false) => *k += n,
            (_, true) => self.events.push(Ev::Raw(n)),
            (_, false) => self.events.push(Ev::Data(n)),
        }
    }

    /// The file whose content was just appended is the object `key`.
    pub(crate) fn file(&mut self, key: ObjectKey, size: u64) {
        self.events.push(Ev::File(key, size));
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.events.clear();
    }
}

/// Hashes every batch from `batches` (the diffID), handing each on to `next`, until the sender
/// closes or `next` refuses one (returns false): the loop of every layer hasher thread.
fn hash_each(
    batches: std::sync::mpsc::Receiver<Batch>,
    mut next: impl FnMut(Batch) -> bool,
) -> crate::digest::Digest {
    let mut sha = crate::digest::Hasher::new();
    for batch in batches {
        sha.update(&batch.bytes);
        if !next(batch) {
            break;
        }
    }
    sha.finish()
}

/// Hands `batch` back, cleared, to the sender that reuses it.
fn give_back(free: &std::sync::mpsc::Sender<Batch>, mut batch: Batch) {
    batch.clear();
    // The sender may be gone (its walk failed): the batch is then simply freed.
    let _ = free.send(batch);
}

/// The body of a layer's hasher thread whose sender records the batches itself (a layer
/// commit's walk has the spare time, an extraction does not: see [`hash_and_record`]): hashes
/// every batch from `batches` (the diffID) and hands it back, cleared, on `free`, until the
/// sender closes. The hash never waits for anything but the next batch.
pub(crate) fn hash_batches(
    batches: std::sync::mpsc::Receiver<Batch>,
    free: &std::sync::mpsc::Sender<Batch>,
) -> crate::digest::Digest {
    hash_each(batches, |batch| {
        give_back(free, batch);
        true
    })
}

/// The body of a layer's hasher thread: hashes (the diffID) and records every batch from
/// `batches`, handing each back on `free` for reuse, until the sender closes. The record (its
/// zstd compression) is written on a thread of its own, behind the hash: the sha256 of a large
/// layer is the longest single task of an extraction, whose sender has no time to spare.
///
/// # Errors
/// I/O errors writing the record (both threads stop there, which the sender sees).
pub(crate) fn hash_and_record<W: Write + Send>(
    batches: std::sync::mpsc::Receiver<Batch>,
    free: &std::sync::mpsc::Sender<Batch>,
    mut record: RecordWriter<W>,
) -> io::Result<(crate::digest::Digest, RecordWriter<W>)> {
    let (to_record, recorded) = std::sync::mpsc::sync_channel::<Batch>(1);
    std::thread::scope(|s| {
        let recorder = s.spawn(move || -> io::Result<RecordWriter<W>> {
            for batch in recorded {
                record.replay(&batch)?;
                give_back(free, batch);
            }
            Ok(record)
        });
        // A refused batch: the recorder stopped on an error, reported below.
        let sha = hash_each(batches, |batch| to_record.send(batch).is_ok());
        drop(to_record);
        let record = recorder
            .join()
            .map_err(|_| io::Error::other("layer recorder thread panicked"))??;
        Ok((sha, record))
    })
}

impl<W: Write> RecordWriter<W> {
    /// Records what `batch` holds.
    ///
    /// # Errors
    /// I/O errors from the output.
    pub(crate) fn replay(&mut self, batch: &Batch) -> io::Result<()> {
        let mut at = 0;
        for ev in &batch.events {
            match *ev {
                Ev::Raw(n) => {
                    self.raw(&batch.bytes[at..at + n])?;
                    at += n;
                }
                Ev::Data(n) => at += n,
                Ev::File(key, size) => self.file(&key, size)?,
            }
        }
        Ok(())
    }
}

/// Reads a record segment by segment.
pub struct RecordReader<R: Read> {
    dec: BufReader<zstd::stream::read::Decoder<'static, BufReader<R>>>,
    ended: bool,
}

impl<R: Read> std::fmt::Debug for RecordReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReader")
            .field("ended", &self.ended)
            .finish()
    }
}

fn corrupt(msg: impl Into<String>) -> Error {
    Error::Archive(format!("corrupt layer record: {}", msg.into()))
}

impl<R: Read> RecordReader<R> {
    /// Opens a record and checks its header.
    ///
    /// # Errors
    /// [`Error::Archive`] for a bad magic or an unknown version; I/O errors.
    pub fn new(input: R) -> Result<Self> {
        let dec = zstd::stream::read::Decoder::new(input).map_err(|e| corrupt(e.to_string()))?;
        let mut dec = BufReader::new(dec);
        let mut head = [0u8; 12];
        dec.read_exact(&mut head)
            .map_err(|e| corrupt(format!("header: {e}")))?;
        if &head[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let v = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if v != VERSION {
            return Err(corrupt(format!("unsupported version {v}")));
        }
        Ok(Self { dec, ended: false })
    }

    fn byte(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        self.dec
            .read_exact(&mut b)
            .map_err(|e| corrupt(format!("truncated: {e}")))?;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err(corrupt("varint overflow"));
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long"))
    }

    /// The next segment, or `None` after the End tag.
    ///
    /// # Errors
    /// [`Error::Archive`] for a truncated or malformed record.
    pub fn next_segment(&mut self) -> Result<Option<Segment>> {
        let mut raw = Vec::new();
        Ok(match self.next_into(&mut raw)? {
            Next::Raw => Some(Segment::Raw(raw)),
            Next::File { object, size } => Some(Segment::File { object, size }),
            Next::End => None,
        })
    }

    /// The next segment, a Raw one's bytes appended to `raw` (no buffer of its own: a record
    /// read whole has one Raw segment per file).
    fn next_into(&mut self, raw: &mut Vec<u8>) -> Result<Next> {
        if self.ended {
            return Ok(Next::End);
        }
        match self.byte()? {
            TAG_END => {
                self.ended = true;
                if !self
                    .dec
                    .fill_buf()
                    .map_err(|e| corrupt(e.to_string()))?
                    .is_empty()
                {
                    return Err(corrupt("data after end tag"));
                }
                Ok(Next::End)
            }
            TAG_RAW => {
                let len = self.varint()?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= MAX_RAW && l > 0)
                    .ok_or_else(|| corrupt("bad raw length"))?;
                let start = raw.len();
                raw.resize(start + len, 0);
                self.dec
                    .read_exact(&mut raw[start..])
                    .map_err(|e| corrupt(format!("truncated raw: {e}")))?;
                Ok(Next::Raw)
            }
            TAG_FILE => {
                let mut key = [0u8; 32];
                self.dec
                    .read_exact(&mut key)
                    .map_err(|e| corrupt(format!("truncated file: {e}")))?;
                let size = self.varint()?;
                Ok(Next::File {
                    object: ObjectKey(key),
                    size,
                })
            }
            t => Err(corrupt(format!("unknown segment tag {t}"))),
        }
    }
}

/// What [`RecordReader::next_into`] read.
enum Next {
    Raw,
    File { object: ObjectKey, size: u64 },
    End,
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Result<Segment>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_segment().transpose()
    }
}

/// Every object a record refers to, in order (duplicates kept out).
///
/// # Errors
/// As [`RecordReader::next_segment`].
pub fn objects<R: Read>(input: R) -> Result<Vec<ObjectKey>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for seg in RecordReader::new(input)? {
        if let Segment::File { object, .. } = seg?
            && seen.insert(object)
        {
            out.push(object);
        }
    }
    Ok(out)
}

/// One tar entry of a record (see [`entries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEntry {
    /// The entry's name (a PAX `path` or GNU long name applied), without a trailing `/`.
    pub path: Vec<u8>,
    /// The tar type flag (`b'0'` for every regular file, `b'5'` a directory, ...).
    pub kind: u8,
    /// A regular file's object.
    pub object: Option<ObjectKey>,
}

/// Reads the verbatim tar bytes of a record in order, and its file segments where the tar has
/// a regular file's content.
struct TarSegments<R: Read> {
    reader: RecordReader<R>,
    raw: Vec<u8>,
    at: usize,
    /// A file segment met while raw bytes were being read.
    file: Option<(ObjectKey, u64)>,
}

impl<R: Read> TarSegments<R> {
    /// The next `n` raw bytes.
    fn raw(&mut self, n: usize) -> Result<&[u8]> {
        while self.raw.len() - self.at < n {
            if self.file.is_some() {
                return Err(corrupt("file content where tar headers were expected"));
            }
            // What was read goes: cleared when all of it was, moved down once it is big.
            if self.at == self.raw.len() {
                self.raw.clear();
                self.at = 0;
            } else if self.at >= MAX_RAW {
                self.raw.drain(..self.at);
                self.at = 0;
            }
            match self.reader.next_into(&mut self.raw)? {
                Next::Raw => {}
                Next::File { object, size } => self.file = Some((object, size)),
                Next::End => return Err(corrupt("tar ends early")),
            }
        }
        self.at += n;
        Ok(&self.raw[self.at - n..self.at])
    }

    /// The file segment that must come next (no raw bytes before it).
    fn file(&mut self) -> Result<(ObjectKey, u64)> {
        if self.at < self.raw.len() {
            return Err(corrupt("tar bytes where a file's content was expected"));
        }
        if let Some(f) = self.file.take() {
            return Ok(f);
        }
        match self.reader.next_into(&mut self.raw)? {
            Next::File { object, size } => Ok((object, size)),
            _ => Err(corrupt("a regular file without its content")),
        }
    }
}

/// The tar entries of a record, in order, with the object of each regular file: what a layer
/// holds, read without its tree or its file contents.
///
/// # Errors
/// [`Error::Archive`] for a record that is not a tar of headers and file segments.
pub fn entries<R: Read>(input: R) -> Result<Vec<RecordEntry>> {
    use crate::extract::{BLOCK, cstr, header_path, padding, parse_num, parse_pax, pax_int};
    let mut t = TarSegments {
        reader: RecordReader::new(input)?,
        raw: Vec::new(),
        at: 0,
        file: None,
    };
    let size_of = |v: i64| u64::try_from(v).map_err(|_| corrupt("negative size"));
    let len_of = |v: u64| usize::try_from(v).map_err(|_| corrupt("entry too large"));
    let mut out = Vec::new();
    let mut long_name = None;
    let mut pax = std::collections::BTreeMap::new();
    loop {
        let h: [u8; BLOCK] = t
            .raw(BLOCK)?
            .try_into()
            .map_err(|_| corrupt("short header"))?;
        if h.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let kind = h[156];
        let hsize = size_of(parse_num(&h[124..136])?)?;
        if matches!(kind, b'x' | b'g' | b'L' | b'K') {
            let data = t.raw(len_of(hsize)? + padding(hsize))?;
            let data = &data[..len_of(hsize)?];
            match kind {
                b'x' => parse_pax(data, &mut pax)?,
                b'L' => long_name = Some(cstr(data).to_vec()),
                _ => {}
            }
            continue;
        }
        let size = match pax_int(&pax, "size")? {
            Some(s) => size_of(s)?,
            None => hsize,
        };
        let mut path = header_path(&h, long_name.take(), &pax);
        pax.clear();
        while path.len() > 1 && path.ends_with(b"/") {
            path.pop();
        }
        let regular = matches!(kind, b'0' | 0 | b'7');
        let object = if regular {
            let (key, n) = t.file()?;
            if n != size {
                return Err(corrupt("file segment size differs from its header"));
            }
            t.raw(padding(size))?;
            Some(key)
        } else {
            t.raw(len_of(size)? + padding(size))?;
            None
        };
        out.push(RecordEntry {
            path,
            kind: if regular { b'0' } else { kind },
            object,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = RecordWriter::new(Vec::new()).unwrap();
        w.raw(b"abc").unwrap();
        w.raw(b"def").unwrap();
        let k = ObjectKey([7; 32]);
        w.file(&k, 300).unwrap();
        w.raw(&vec![1u8; MAX_RAW + 5]).unwrap();
        w.file(&k, u64::MAX).unwrap();
        let bytes = w.finish().unwrap();
        let segs: Vec<Segment> = RecordReader::new(&bytes[..])
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(segs.len(), 5);
        assert_eq!(segs[0], Segment::Raw(b"abcdef".to_vec()));
        assert_eq!(
            segs[1],
            Segment::File {
                object: k,
                size: 300
            }
        );
        assert_eq!(
            segs[4],
            Segment::File {
                object: k,
                size: u64::MAX
            }
        );
        assert_eq!(objects(&bytes[..]).unwrap(), vec![k]);
        // A record cut anywhere is an error, never a panic or a silent short read.
        let plain = zstd::decode_all(&bytes[..]).unwrap();
        for cut in [0, 5, 12, 13, 20, plain.len() - 1] {
            let re = zstd::encode_all(&plain[..cut], 1).unwrap();
            assert!(
                RecordReader::new(&re[..])
                    .and_then(|r| r.collect::<Result<Vec<_>>>())
                    .is_err(),
                "cut {cut}"
            );
        }
        assert!(RecordReader::new(&b"garbage"[..]).is_err());
    }
}
