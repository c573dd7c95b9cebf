//! Layer compression: detection by magic bytes, streamed and bounded decompression, and parallel
//! compression.
//!
//! - [`detect`] looks at the first bytes only (gzip `1f 8b`, zstd `28 b5 2f fd`, xz
//!   `fd 37 7a 58 5a 00`, anything else is taken as a plain tar).
//! - [`decompress`] returns a reader that decodes as it is read (multi-member gzip, zstd frames,
//!   xz streams) and fails with [`Error::TooLarge`]'s message (as an `io::Error` of kind
//!   `InvalidData`) once more than the bound has been produced: nothing is held in memory.
//! - [`GzipWriter`] is pigz-style: the input is cut into fixed-size chunks (1 MiB by default),
//!   each chunk is deflated independently on the rayon pool and ends with a sync flush (an empty
//!   stored block, byte aligned, not final), so the chunks concatenate into one valid raw-deflate
//!   stream; the last chunk finishes the stream. One gzip header (mtime 0, so equal input gives
//!   equal output), the CRC-32 of the whole input (combined from per-chunk CRCs) and the size
//!   trailer make it one gzip member that `gzip -t` and any inflater accept. Chunk boundaries
//!   depend only on the input offset, never on the thread count or on how the input was written,
//!   so the output is deterministic.
//! - zstd uses libzstd's multithreaded mode (`zstdmt`) with one worker per core.
//!
//! [`compress`] ties it together and returns the digest and size of what it wrote;
//! [`compress_from`] runs the producer of the input and the encoder on two threads.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc;

use flate2::{Crc, FlushCompress, Status};
use strata_cas::digest::Hasher;
use strata_cas::{Compression, Digest};

use crate::error::{Error, Result};

/// The default bound on the size of one decompressed stream: 64 GiB.
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 64 << 30;

/// The default chunk size of parallel gzip.
pub const DEFAULT_GZIP_CHUNK: usize = 1 << 20;

/// The smallest chunk size parallel gzip accepts (smaller chunks hurt the ratio).
pub const MIN_GZIP_CHUNK: usize = 128 << 10;

/// A compression format recognised on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// No known magic: a plain tar (or something that will fail as one).
    Plain,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
}

/// Recognises a compression format from the first bytes of a stream (6 are enough).
pub fn detect(head: &[u8]) -> Detected {
    if head.starts_with(&[0x1f, 0x8b]) {
        Detected::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Detected::Zstd
    } else if head.starts_with(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
        Detected::Xz
    } else {
        Detected::Plain
    }
}

/// A stream whose first bytes were read by [`peek`] and are replayed.
pub type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads up to `n` bytes (fewer only at end of stream) and returns them with a reader that
/// yields those bytes again followed by the rest of `input`.
///
/// # Errors
///
/// Read errors of `input`.
pub fn peek<R: Read>(mut input: R, n: usize) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    let again = io::Cursor::new(head.clone());
    Ok((head, again.chain(input)))
}

/// A reader that fails once more than `limit` bytes have come through it.
#[derive(Debug)]
pub struct Bounded<R> {
    inner: R,
    limit: u64,
    seen: u64,
}

impl<R> Bounded<R> {
    /// Wraps `inner` with a bound of `limit` bytes.
    pub fn new(inner: R, limit: u64) -> Self {
        Bounded {
            inner,
            limit,
            seen: 0,
        }
    }

    /// How many bytes have been read so far.
    pub fn bytes_read(&self) -> u64 {
        self.seen
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen = self.seen.saturating_add(n as u64);
        if self.seen > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Error::TooLarge(self.limit).to_string(),
            ));
        }
        Ok(n)
    }
}

/// Detects the compression of `input` and returns a streaming decoder for it, bounded to
/// `limit` decompressed bytes, with the format found.
///
/// # Errors
///
/// Read errors while peeking at the magic bytes, or a decoder that cannot be set up.
pub fn decompress<'a, R: Read + 'a>(
    input: R,
    limit: u64,
) -> Result<(Detected, Box<dyn Read + 'a>)> {
    decompress_buffered(io::BufReader::with_capacity(64 << 10, input), limit)
}

/// [`decompress`] of an input that has its own buffer: the decoders read the compressed bytes
/// from it in place, and the magic bytes are looked at without consuming them.
///
/// # Errors
///
/// As [`decompress`].
pub fn decompress_buffered<'a, R: BufRead + 'a>(
    mut input: R,
    limit: u64,
) -> Result<(Detected, Box<dyn Read + 'a>)> {
    let head = input
        .fill_buf()
        .map_err(Error::io("reading compressed stream"))?;
    if head.len() >= MAGIC_LEN || head.is_empty() {
        let kind = detect(head);
        return Ok((kind, decoder(kind, input, limit)?));
    }
    // The buffer holds fewer bytes than the longest magic: peek by reading.
    let (head, input) = peek(input, MAGIC_LEN).map_err(Error::io("reading compressed stream"))?;
    let kind = detect(&head);
    Ok((kind, decoder(kind, io::BufReader::new(input), limit)?))
}

/// The longest magic that [`detect`] looks for.
const MAGIC_LEN: usize = 6;

/// The bounded decoder of `kind` over `input`.
fn decoder<'a, R: BufRead + 'a>(
    kind: Detected,
    input: R,
    limit: u64,
) -> Result<Box<dyn Read + 'a>> {
    Ok(match kind {
        Detected::Plain => Box::new(Bounded::new(input, limit)),
        Detected::Gzip => Box::new(Bounded::new(
            flate2::bufread::MultiGzDecoder::new(input),
            limit,
        )),
        Detected::Zstd => Box::new(Bounded::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(Error::io("starting zstd decoder"))?,
            limit,
        )),
        Detected::Xz => Box::new(Bounded::new(
            liblzma::bufread::XzDecoder::new_multi_decoder(input),
            limit,
        )),
    })
}

/// A writer that passes bytes through while counting them and (unless made with
/// [`DigestWriter::counting`]) computing their sha256.
#[derive(Debug)]
pub struct DigestWriter<W> {
    inner: W,
    hasher: Option<Hasher>,
    count: u64,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`, hashing.
    pub fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Some(Hasher::new()),
            count: 0,
        }
    }

    /// Wraps `inner`, only counting: for a destination that hashes by itself (a store blob
    /// writer), so the stream is not hashed twice.
    pub fn counting(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: None,
            count: 0,
        }
    }

    /// The digest (when hashing) and size of everything written, and the inner writer.
    pub fn finish(self) -> (Option<Digest>, u64, W) {
        let d = self.hasher.map(Hasher::finish);
        (d, self.count, self.inner)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Settings of parallel gzip.
#[derive(Debug, Clone, Copy)]
pub struct GzipOptions {
    /// The deflate level (0-9).
    pub level: u32,
    /// The chunk size; clamped to [`MIN_GZIP_CHUNK`]..=16 MiB.
    pub chunk: usize,
}

impl Default for GzipOptions {
    fn default() -> Self {
        GzipOptions {
            level: 6,
            chunk: DEFAULT_GZIP_CHUNK,
        }
    }
}

type ChunkResult = io::Result<(Vec<u8>, Crc)>;

/// A pigz-style parallel gzip writer (see the module documentation). Call
/// [`GzipWriter::finish`] at the end: dropping it without finishing leaves a truncated stream.
#[derive(Debug)]
pub struct GzipWriter<W: Write> {
    out: W,
    opts: GzipOptions,
    buf: Vec<u8>,
    pending: VecDeque<mpsc::Receiver<ChunkResult>>,
    max_pending: usize,
    crc: Crc,
    header_written: bool,
}

impl<W: Write> GzipWriter<W> {
    /// A writer with the given options.
    pub fn new(out: W, opts: GzipOptions) -> Self {
        let chunk = opts.chunk.clamp(MIN_GZIP_CHUNK, 16 << 20);
        let threads = rayon::current_num_threads().max(1);
        GzipWriter {
            out,
            opts: GzipOptions {
                level: opts.level.min(9),
                chunk,
            },
            buf: Vec::with_capacity(chunk),
            pending: VecDeque::new(),
            max_pending: threads * 2,
            crc: Crc::new(),
            header_written: false,
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // ID1 ID2 CM=deflate FLG=0 MTIME=0 (deterministic) XFL=0 OS=3 (unix), as pigz.
            self.out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Hands the buffered chunk to the pool.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.opts.chunk));
        let level = flate2::Compression::new(self.opts.level);
        let (tx, rx) = mpsc::sync_channel(1);
        rayon::spawn(move || {
            let mut crc = Crc::new();
            crc.update(&data);
            let res = deflate_chunk(&data, level, last).map(|out| (out, crc));
            // The receiver only disappears when the writer was dropped; nothing to report then.
            let _ = tx.send(res);
        });
        self.pending.push_back(rx);
        while self.pending.len() > self.max_pending {
            self.drain_one()?;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let (bytes, crc) = rx
            .recv()
            .map_err(|_| io::Error::other("gzip worker stopped"))??;
        self.write_header()?;
        self.out.write_all(&bytes)?;
        self.crc.combine(&crc);
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    ///
    /// # Errors
    ///
    /// Write errors of the inner writer, or a deflate failure.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.drain_one()?;
        }
        self.write_header()?;
        let crc = self.crc.sum();
        let isize = self.crc.amount();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&isize.to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.opts.chunk - self.buf.len();
        let n = room.min(buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == self.opts.chunk {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunk boundaries are fixed by offset (determinism); only finished chunks are written.
        self.out.flush()
    }
}

/// How much of a chunk the trial deflate samples: [`TRIAL_SLICES`] slices of this size, spread
/// evenly over the chunk.
const TRIAL_SLICE: usize = 8 << 10;

/// How many slices the trial samples.
const TRIAL_SLICES: usize = 4;

/// The trial saving (percent of the sample) from which a chunk is deflated whole at the
/// configured level. Below it the chunk is mostly already-compressed or random content (a
/// layer of archives, images, binaries packed with compressed data): see [`split_runs`].
const POOR_SAVING_PCT: usize = 20;

/// The granularity of [`split_runs`].
const BLOCK: usize = 512;

/// Random-looking runs shorter than this are deflated with their neighbours rather than stored
/// (a stored run costs 5 bytes of block header and restarts the compressor).
const MIN_STORED_RUN: usize = 4 * BLOCK;

/// Deflated runs of a poor chunk shorter than this use the fast level (see [`deflate_chunk`]).
const SHORT_RUN: usize = 8 << 10;

/// How a chunk is encoded, decided by a cheap trial on samples of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trial {
    /// Deflated whole at the configured level.
    Compressible,
    /// Split into random-looking runs (stored) and the rest (deflated).
    Poor,
}

/// A level-1 deflate of [`TRIAL_SLICES`] slices spread over the chunk: a saving under
/// [`POOR_SAVING_PCT`] marks it [`Trial::Poor`]. Costs about 3% of a level-6 pass over the
/// chunk; depends only on the chunk's bytes, so the output stays deterministic.
fn trial(data: &[u8]) -> Trial {
    if data.len() < TRIAL_SLICE * TRIAL_SLICES {
        return Trial::Compressible;
    }
    let step = data.len() / TRIAL_SLICES;
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(TRIAL_SLICE * TRIAL_SLICES + 1024);
    for i in 0..TRIAL_SLICES {
        let slice = &data[i * step..i * step + TRIAL_SLICE];
        let flush = if i + 1 == TRIAL_SLICES {
            FlushCompress::Finish
        } else {
            FlushCompress::None
        };
        let before = c.total_in();
        if c.compress_vec(slice, &mut out, flush).is_err()
            || c.total_in() - before != slice.len() as u64
        {
            return Trial::Compressible;
        }
    }
    let sampled = TRIAL_SLICE * TRIAL_SLICES;
    if out.len() * 100 > sampled * (100 - POOR_SAVING_PCT) {
        Trial::Poor
    } else {
        Trial::Compressible
    }
}

/// Whether a block looks like random bytes: almost no zero bytes and about half of the bytes
/// with the high bit set (text, machine code, tar headers and padding all fail one of the two).
/// A byte-statistics test, far cheaper than a trial deflate, and exact enough at this size: a
/// random block fails it with probability below 1e-6.
fn looks_random(block: &[u8]) -> bool {
    let n = block.len();
    if n < BLOCK {
        return false;
    }
    // Per-lane byte counters over 32-byte rows (at most 16 rows per block fit a u8): one pass
    // the compiler turns into vector compares and adds.
    let mut zero_lanes = [0u8; 32];
    let mut high_lanes = [0u8; 32];
    let (mut zeros, mut high) = (0usize, 0usize);
    for rows in block.chunks(32 * 16) {
        for row in rows.chunks_exact(32) {
            for i in 0..32 {
                zero_lanes[i] += u8::from(row[i] == 0);
                high_lanes[i] += row[i] >> 7;
            }
        }
        for b in rows.chunks_exact(32).remainder() {
            zeros += usize::from(*b == 0);
            high += usize::from(*b >> 7);
        }
        zeros += zero_lanes.iter().map(|c| usize::from(*c)).sum::<usize>();
        high += high_lanes.iter().map(|c| usize::from(*c)).sum::<usize>();
        zero_lanes = [0; 32];
        high_lanes = [0; 32];
    }
    zeros * 64 <= n && high.abs_diff(n / 2) * 8 <= n
}

/// Cuts a poorly compressible chunk into runs at [`BLOCK`] offsets: `(start, end, stored)`.
/// Runs of random-looking blocks of at least [`MIN_STORED_RUN`] bytes are stored; everything
/// else (the tar headers and padding between already-compressed files, say) is deflated.
fn split_runs(data: &[u8]) -> Vec<(usize, usize, bool)> {
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let start = i * BLOCK;
        let end = start + block.len();
        let stored = looks_random(block);
        match runs.last_mut() {
            Some(last) if last.2 == stored => last.1 = end,
            _ => runs.push((start, end, stored)),
        }
    }
    // Short stored runs join the deflated ones around them.
    let mut merged: Vec<(usize, usize, bool)> = Vec::with_capacity(runs.len());
    for (start, end, stored) in runs {
        let stored = stored && end - start >= MIN_STORED_RUN;
        match merged.last_mut() {
            Some(last) if last.2 == stored => last.1 = end,
            _ => merged.push((start, end, stored)),
        }
    }
    merged
}

/// Appends `data` as stored (uncompressed) deflate blocks. The stream must be byte aligned,
/// which it is at the start of a chunk and after a sync flush.
fn store(data: &[u8], out: &mut Vec<u8>) {
    for piece in data.chunks(usize::from(u16::MAX)) {
        // BFINAL=0, BTYPE=00, then padding to the byte boundary (RFC 1951 section 3.2.4).
        let len = piece.len() as u16;
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
}

/// The last block of a deflate stream with no data: BFINAL=1, stored, LEN=0.
const FINAL_EMPTY_BLOCK: [u8; 5] = [1, 0, 0, 0xff, 0xff];

/// Deflates `data` with `c` (fresh or reset) into `out`, ending with `flush` (sync: byte
/// aligned and not final; finish: the final block).
fn deflate_into(
    c: &mut flate2::Compress,
    data: &[u8],
    out: &mut Vec<u8>,
    flush: FlushCompress,
) -> io::Result<()> {
    let last = flush == FlushCompress::Finish;
    let base = c.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = usize::try_from(c.total_in() - base)
            .unwrap_or(data.len())
            .min(data.len());
        let status = c
            .compress_vec(&data[consumed..], out, flush)
            .map_err(io::Error::other)?;
        let all_in = usize::try_from(c.total_in() - base).unwrap_or(0) == data.len();
        match status {
            Status::StreamEnd => break,
            // A flush is complete when all input is taken and output space is left over.
            Status::Ok | Status::BufError if !last && all_in && out.len() < out.capacity() => break,
            Status::Ok | Status::BufError => {}
        }
    }
    Ok(())
}

/// Deflates one chunk as raw deflate; ends with a sync flush, or with the final block when
/// `last`. Compressible chunks go through one compressor at `level`; poor ones are split by
/// [`split_runs`], random-looking runs stored, runs under [`SHORT_RUN`] deflated at level 1 and
/// longer ones at `level`.
fn deflate_chunk(data: &[u8], level: flate2::Compression, last: bool) -> io::Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(data.len() + data.len() / 64 + 1024);
    if level.level() == 0 {
        store(data, &mut out);
        if last {
            out.extend_from_slice(&FINAL_EMPTY_BLOCK);
        }
        return Ok(out);
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    if trial(data) == Trial::Compressible {
        let mut c = flate2::Compress::new(level, false);
        deflate_into(&mut c, data, &mut out, flush)?;
        return Ok(out);
    }
    // Short runs (the headers and padding between stored files) go through the fast level:
    // its fixed Huffman codes spare building trees for every few hundred bytes.
    let mut full: Option<flate2::Compress> = None;
    let mut fast: Option<flate2::Compress> = None;
    for (start, end, stored) in split_runs(data) {
        let run = &data[start..end];
        if stored {
            store(run, &mut out);
            continue;
        }
        let (slot, run_level) = if run.len() < SHORT_RUN {
            (&mut fast, flate2::Compression::fast())
        } else {
            (&mut full, level)
        };
        let c = match slot.as_mut() {
            Some(c) => {
                c.reset();
                c
            }
            None => slot.insert(flate2::Compress::new(run_level, false)),
        };
        deflate_into(c, run, &mut out, FlushCompress::Sync)?;
    }
    if last {
        out.extend_from_slice(&FINAL_EMPTY_BLOCK);
    }
    Ok(out)
}

/// What [`compress`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// The digest of the compressed output; `None` from an [`Encoder::counting`].
    pub digest: Option<Digest>,
    /// The size of the compressed output.
    pub size: u64,
    /// The number of input bytes.
    pub input_size: u64,
}

/// A writer compressing into `out` with the given format; call [`Encoder::finish`].
pub enum Encoder<W: Write> {
    /// Uncompressed pass-through.
    None(DigestWriter<W>, u64),
    /// Parallel gzip.
    Gzip(GzipWriter<DigestWriter<W>>, u64),
    /// Multithreaded zstd.
    Zstd(zstd::stream::write::Encoder<'static, DigestWriter<W>>, u64),
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::None(..) => "Encoder::None",
            Encoder::Gzip(..) => "Encoder::Gzip",
            Encoder::Zstd(..) => "Encoder::Zstd",
        })
    }
}

/// The zstd level strata uses (libzstd's default).
pub const ZSTD_LEVEL: i32 = 3;

impl<W: Write> Encoder<W> {
    /// A compressing writer for `c`.
    ///
    /// # Errors
    ///
    /// The zstd encoder cannot be set up.
    pub fn new(c: Compression, out: W) -> Result<Self> {
        Self::with(c, DigestWriter::new(out))
    }

    /// A compressing writer for `c` that counts its output but does not hash it (for a
    /// destination that hashes, such as a store blob writer).
    ///
    /// # Errors
    ///
    /// The zstd encoder cannot be set up.
    pub fn counting(c: Compression, out: W) -> Result<Self> {
        Self::with(c, DigestWriter::counting(out))
    }

    fn with(c: Compression, out: DigestWriter<W>) -> Result<Self> {
        Ok(match c {
            Compression::None => Encoder::None(out, 0),
            Compression::Gzip => Encoder::Gzip(GzipWriter::new(out, GzipOptions::default()), 0),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)
                    .map_err(Error::io("starting zstd encoder"))?;
                let threads = u32::try_from(rayon::current_num_threads()).unwrap_or(1);
                if threads > 1 {
                    e.multithread(threads)
                        .map_err(Error::io("enabling zstd multithreading"))?;
                }
                Encoder::Zstd(e, 0)
            }
        })
    }

    /// Ends the stream.
    ///
    /// # Errors
    ///
    /// Write errors of the inner writer.
    pub fn finish(self) -> Result<(Compressed, W)> {
        let ctx = "finishing compressed stream";
        let (dw, input_size) = match self {
            Encoder::None(w, n) => (w, n),
            Encoder::Gzip(w, n) => (w.finish().map_err(Error::io(ctx))?, n),
            Encoder::Zstd(w, n) => (w.finish().map_err(Error::io(ctx))?, n),
        };
        let (digest, size, inner) = dw.finish();
        Ok((
            Compressed {
                digest,
                size,
                input_size,
            },
            inner,
        ))
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (n, count) = match self {
            Encoder::None(w, c) => (w.write(buf)?, c),
            Encoder::Gzip(w, c) => (w.write(buf)?, c),
            Encoder::Zstd(w, c) => (w.write(buf)?, c),
        };
        *count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w, _) => w.flush(),
            Encoder::Gzip(w, _) => w.flush(),
            Encoder::Zstd(w, _) => w.flush(),
        }
    }
}

/// Compresses all of `input` into `out` and returns the digest and size of the output.
///
/// # Errors
///
/// Read errors of `input`, write errors of `out`.
pub fn compress(c: Compression, mut input: impl Read, out: impl Write) -> Result<Compressed> {
    let mut enc = Encoder::new(c, out)?;
    io::copy(&mut input, &mut enc).map_err(Error::io("compressing"))?;
    Ok(enc.finish()?.0)
}

/// How much [`compress_from`]'s producer hands to the encoder thread at a time.
const HANDOFF: usize = 1 << 20;

/// A writer that hands full buffers to another thread.
struct Handoff {
    tx: mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
    /// The receiving thread has stopped (it failed): its error is the one to report.
    broken: bool,
}

impl Handoff {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(HANDOFF));
        self.tx.send(full).map_err(|_| {
            self.broken = true;
            io::Error::other("compression thread stopped")
        })
    }
}

impl Write for Handoff {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (HANDOFF - self.buf.len()).min(buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == HANDOFF {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Compresses what `fill` writes through `enc`, with `fill` on the calling thread and the
/// encoder (chunk dispatch, ordered output, the destination's hashing and writes) on another,
/// so producing the input (regenerating a layer tar from its objects) overlaps with encoding.
/// The output is the same as writing through `enc` directly.
///
/// # Errors
///
/// `fill`'s error, or the encoder's (write errors of the destination, deflate failures).
pub fn compress_from<W: Write + Send>(
    enc: Encoder<W>,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<(Compressed, W)> {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut enc = enc;
            for buf in rx {
                enc.write_all(&buf).map_err(Error::io("compressing"))?;
            }
            enc.finish()
        });
        let mut hand = Handoff {
            tx,
            buf: Vec::with_capacity(HANDOFF),
            broken: false,
        };
        let filled = fill(&mut hand).and_then(|()| hand.send().map_err(Error::io("compressing")));
        let broken = hand.broken;
        // Closing the channel ends the encoder's input.
        drop(hand);
        let encoded = worker
            .join()
            .unwrap_or_else(|_| Err(Error::BadArchive("compression thread panicked".into())));
        match (filled, encoded) {
            (Err(_), Err(e)) if broken => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), encoded) => encoded,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: a counter pattern with some noise.
        let mut v = Vec::with_capacity(n);
        let mut x: u32 = 12345;
        for i in 0..n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            v.push(if i % 7 == 0 {
                (x >> 16) as u8
            } else {
                (i % 251) as u8
            });
        }
        v
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress(Compression::Gzip, data, &mut out).unwrap();
        out
    }

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn incompressible_chunks_are_stored_and_round_trip() {
        // Random bytes (an already-compressed file, say) next to compressible text.
        let mut data = random(DEFAULT_GZIP_CHUNK * 2, 7);
        assert_eq!(trial(&data[..DEFAULT_GZIP_CHUNK]), Trial::Poor);
        assert_eq!(
            split_runs(&data[..DEFAULT_GZIP_CHUNK]),
            [(0, DEFAULT_GZIP_CHUNK, true)]
        );
        let text = b"hello layer ".repeat(DEFAULT_GZIP_CHUNK / 12);
        assert_eq!(trial(&text), Trial::Compressible);
        data.extend_from_slice(&text);
        let gz = gzip(&data);
        // Stored random chunks cost a few bytes per 64 KiB block; the text still compresses.
        assert!(
            gz.len() < DEFAULT_GZIP_CHUNK * 2 + DEFAULT_GZIP_CHUNK / 10,
            "{}",
            gz.len()
        );
        assert_eq!(gunzip(&gz), data);
        assert_eq!(gz, gzip(&data), "deterministic");
    }

    #[test]
    fn headers_between_random_files_are_still_deflated() {
        // A tar of already-compressed files: 512-byte mostly-zero headers between random
        // contents. The chunk is poor as a whole; the headers still shrink, the contents are
        // stored rather than run through the full-level compressor.
        let mut data = Vec::new();
        let mut header = vec![0u8; 512];
        header[..9].copy_from_slice(b"app/f.bin");
        for (i, size) in [3000usize, 20_000, 100, 60_000, 4000]
            .iter()
            .cycle()
            .enumerate()
        {
            if data.len() > DEFAULT_GZIP_CHUNK * 3 {
                break;
            }
            data.extend_from_slice(&header);
            data.extend_from_slice(&random(*size, i as u64 + 1));
            data.resize(data.len().next_multiple_of(512), 0);
        }
        let chunk = &data[..DEFAULT_GZIP_CHUNK];
        assert_eq!(trial(chunk), Trial::Poor);
        let runs = split_runs(chunk);
        let stored: usize = runs.iter().filter(|r| r.2).map(|r| r.1 - r.0).sum();
        assert!(stored > DEFAULT_GZIP_CHUNK * 3 / 4, "{stored}");
        assert!(runs.iter().any(|r| !r.2), "headers are deflated");
        assert_eq!(runs.first().map(|r| r.0), Some(0));
        assert_eq!(runs.last().map(|r| r.1), Some(chunk.len()));
        assert!(
            runs.windows(2)
                .all(|w| w[0].1 == w[1].0 && w[0].2 != w[1].2)
        );
        let gz = gzip(&data);
        assert!(
            gz.len() < data.len() * 99 / 100,
            "{} of {}",
            gz.len(),
            data.len()
        );
        assert_eq!(gunzip(&gz), data);
        let (_, mut r) = decompress(&gz[..], DEFAULT_MAX_DECOMPRESSED).unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn looks_random_counts_like_the_plain_definition() {
        let plain = |b: &[u8]| {
            let zeros = b.iter().filter(|x| **x == 0).count();
            let high = b.iter().filter(|x| **x >= 0x80).count();
            b.len() >= BLOCK && zeros * 64 <= b.len() && high.abs_diff(b.len() / 2) * 8 <= b.len()
        };
        let r = random(4096, 11);
        let text = b"plain text, no high bits ".repeat(40);
        let mut header = vec![0u8; 512];
        header[..20].copy_from_slice(&r[..20]);
        let mut half = r[..1000].to_vec();
        half.extend_from_slice(&[0u8; 30]);
        for b in [
            &r[..512],
            &r[..BLOCK + 77],
            &r[..],
            &text[..],
            &header[..],
            &half[..],
            &r[..100],
        ] {
            assert_eq!(looks_random(b), plain(b), "{}", b.len());
        }
        assert!(looks_random(&r[..512]));
        assert!(!looks_random(&text));
        assert!(!looks_random(&header));
    }

    #[test]
    fn stored_blocks_split_at_64k() {
        let data = random(200_000, 3);
        let mut out = Vec::new();
        store(&data, &mut out);
        out.extend_from_slice(&FINAL_EMPTY_BLOCK);
        assert_eq!(out.len(), data.len() + 4 * 5 + 5);
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn compress_from_matches_direct_writes_and_reports_fill_errors() {
        let data = sample(DEFAULT_GZIP_CHUNK * 3 + 99);
        let (c, out) = compress_from(Encoder::new(Compression::Gzip, Vec::new()).unwrap(), |w| {
            for piece in data.chunks(100_000) {
                w.write_all(piece).map_err(Error::io("t"))?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(out, gzip(&data));
        assert_eq!(c.digest, Some(Digest::of(&out)));
        assert_eq!(c.input_size, data.len() as u64);
        let (c, out) = compress_from(
            Encoder::counting(Compression::Gzip, Vec::new()).unwrap(),
            |w| w.write_all(&data).map_err(Error::io("t")),
        )
        .unwrap();
        assert_eq!((c.digest, c.size), (None, out.len() as u64));
        let err = compress_from(Encoder::new(Compression::Gzip, Vec::new()).unwrap(), |w| {
            w.write_all(&data).map_err(Error::io("t"))?;
            Err(Error::BadArchive("source broke".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("source broke"), "{err}");
    }

    #[test]
    fn detects_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Detected::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Detected::Zstd);
        assert_eq!(detect(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Detected::Xz);
        assert_eq!(detect(b"etc/"), Detected::Plain);
        assert_eq!(detect(&[]), Detected::Plain);
    }

    #[test]
    fn gzip_roundtrip_sizes() {
        for n in [0, 1, 1000, MIN_GZIP_CHUNK * 8, DEFAULT_GZIP_CHUNK * 3 + 17] {
            let data = sample(n);
            let gz = gzip(&data);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "size {n}");
            // Our own decoder path.
            let (kind, mut r) = decompress(&gz[..], DEFAULT_MAX_DECOMPRESSED).unwrap();
            assert_eq!(kind, Detected::Gzip);
            let mut back2 = Vec::new();
            r.read_to_end(&mut back2).unwrap();
            assert_eq!(back2, data);
        }
    }

    #[test]
    fn gzip_is_deterministic_and_independent_of_write_sizes() {
        let data = sample(DEFAULT_GZIP_CHUNK * 2 + 5);
        let a = gzip(&data);
        let mut b = Vec::new();
        let mut w = GzipWriter::new(&mut b, GzipOptions::default());
        for piece in data.chunks(777) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "mtime is 0");
    }

    #[test]
    fn gzip_t_accepts_output() {
        if std::process::Command::new("gzip")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, gzip(&sample(DEFAULT_GZIP_CHUNK * 4 + 3))).unwrap();
        let st = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        let empty = dir.path().join("e.gz");
        std::fs::write(&empty, gzip(&[])).unwrap();
        let st = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&empty)
            .status()
            .unwrap();
        assert!(st.success());
    }

    #[test]
    fn zstd_and_xz_roundtrip() {
        let data = sample(3 << 20);
        let mut z = Vec::new();
        let c = compress(Compression::Zstd, &data[..], &mut z).unwrap();
        assert_eq!(c.input_size, data.len() as u64);
        assert_eq!(c.size, z.len() as u64);
        assert_eq!(c.digest, Some(Digest::of(&z)));
        let (kind, mut r) = decompress(&z[..], DEFAULT_MAX_DECOMPRESSED).unwrap();
        assert_eq!(kind, Detected::Zstd);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);

        let mut xz = Vec::new();
        let mut e = liblzma::write::XzEncoder::new(&mut xz, 1);
        e.write_all(&data).unwrap();
        e.finish().unwrap();
        let (kind, mut r) = decompress(&xz[..], DEFAULT_MAX_DECOMPRESSED).unwrap();
        assert_eq!(kind, Detected::Xz);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    /// A buffered input whose buffer holds fewer bytes than the longest magic (or the magic cut
    /// anywhere) is still detected, and decoded whole; an empty one is plain.
    #[test]
    fn buffered_input_is_detected_from_any_buffer() {
        let data = sample(300 << 10);
        let gz = gzip(&data);
        let mut z = Vec::new();
        compress(Compression::Zstd, &data[..], &mut z).unwrap();
        let mut xz = Vec::new();
        let mut e = liblzma::write::XzEncoder::new(&mut xz, 1);
        e.write_all(&data).unwrap();
        e.finish().unwrap();
        for (input, want) in [
            (&gz, Detected::Gzip),
            (&z, Detected::Zstd),
            (&xz, Detected::Xz),
            (&data, Detected::Plain),
        ] {
            for cap in [1, 2, 5, 6, 64 << 10] {
                let r = io::BufReader::with_capacity(cap, &input[..]);
                let (kind, mut r) = decompress_buffered(r, DEFAULT_MAX_DECOMPRESSED).unwrap();
                assert_eq!(kind, want, "buffer of {cap}");
                let mut back = Vec::new();
                r.read_to_end(&mut back).unwrap();
                assert!(back == data, "{want:?} through a buffer of {cap}");
            }
        }
        let (kind, mut r) = decompress_buffered(&b""[..], 10).unwrap();
        assert_eq!(kind, Detected::Plain);
        assert_eq!(r.read(&mut [0; 4]).unwrap(), 0);
    }

    #[test]
    fn decompression_is_bounded() {
        let data = vec![0u8; 1 << 20];
        let gz = gzip(&data);
        let (_, mut r) = decompress(&gz[..], 1000).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let (kind, mut r) = decompress(&data[..], 10).unwrap();
        assert_eq!(kind, Detected::Plain);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn plain_passes_through() {
        let (kind, mut r) = decompress(&b"abc"[..], 3).unwrap();
        assert_eq!(kind, Detected::Plain);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abc");
    }
}
