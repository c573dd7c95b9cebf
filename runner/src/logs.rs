//! Docker's json-file log driver: `ROOT/containers/<id>/<id>-json.log`, one JSON object per
//! line: `{"log":"hi\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}`.
//!
//! [`LogWriter`] is what the supervisor copies the container's output into (a line per entry;
//! a line longer than 16 KiB, or the tail of a stream without a newline, is its own entry, as
//! docker does). [`read`] prints a log for `strata logs` (`--tail`, `-t`, `-f`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Docker's maximum bytes per entry.
const MAX_ENTRY: usize = 16 * 1024;

/// The stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The bytes (lossy UTF-8), with their newline.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 nanos.
    pub time: String,
}

/// The log file of container `id` in its directory `dir`.
pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}-json.log"))
}

/// Appends entries to a json-file log; shared by the stdout and stderr copiers.
#[derive(Debug, Clone)]
pub struct LogWriter {
    file: Arc<Mutex<File>>,
    path: PathBuf,
}

impl LogWriter {
    /// Opens (creating, appending) the log at `path`.
    ///
    /// # Errors
    /// The filesystem.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(LogWriter {
            file: Arc::new(Mutex::new(file)),
            path: path.to_path_buf(),
        })
    }

    /// Writes one entry.
    ///
    /// # Errors
    /// The filesystem.
    pub fn entry(&self, stream: Stream, bytes: &[u8]) -> Result<()> {
        let e = Entry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: stream.as_str().into(),
            time: strata_oci::image::now_rfc3339(),
        };
        let mut line = serde_json::to_vec(&e)
            .map_err(|e| Error::Invalid(format!("cannot encode a log entry: {e}")))?;
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| Error::Invalid("log writer poisoned".into()))?;
        f.write_all(&line).map_err(|e| Error::io(&self.path, e))
    }

    /// A per-stream line splitter that writes complete lines as entries.
    pub fn stream(&self, stream: Stream) -> LineSplitter {
        LineSplitter {
            log: self.clone(),
            stream,
            buf: Vec::new(),
        }
    }
}

/// Cuts a stream's bytes into entries (see the module docs); flushes the rest on drop.
#[derive(Debug)]
pub struct LineSplitter {
    log: LogWriter,
    stream: Stream,
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes read from the stream.
    ///
    /// # Errors
    /// Writing the log.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            self.buf.extend_from_slice(&bytes[..=i]);
            self.log.entry(self.stream, &self.buf)?;
            self.buf.clear();
            bytes = &bytes[i + 1..];
        }
        self.buf.extend_from_slice(bytes);
        while self.buf.len() >= MAX_ENTRY {
            let rest = self.buf.split_off(MAX_ENTRY);
            self.log.entry(self.stream, &self.buf)?;
            self.buf = rest;
        }
        Ok(())
    }

    /// Writes what is left (a last line without newline).
    ///
    /// # Errors
    /// Writing the log.
    pub fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.log.entry(self.stream, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Drop for LineSplitter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// How to print a log.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Only the last `n` entries.
    pub tail: Option<usize>,
    /// Prefix each entry with its time.
    pub timestamps: bool,
    /// Keep printing new entries while `running()` says so.
    pub follow: bool,
    /// Skip the log's first `skip_bytes` (what an earlier run of the container wrote: `start -a`
    /// shows only the new run's output, as docker's does).
    pub skip_bytes: u64,
}

fn emit(
    line: &[u8],
    opts: ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    let Ok(e) = serde_json::from_slice::<Entry>(line) else {
        // A torn last line (the writer is mid-append) or garbage: skipped.
        return Ok(());
    };
    let w: &mut dyn Write = if e.stream == "stderr" { err } else { out };
    if opts.timestamps {
        write!(w, "{} ", e.time)?;
    }
    w.write_all(e.log.as_bytes())?;
    w.flush()
}

/// Prints the log at `path` to `out`/`err` (by stream). With `follow`, polls for new entries
/// until `running()` returns false, then prints what is left.
///
/// # Errors
/// Reading the log, writing the output.
pub fn read(
    path: &Path,
    opts: ReadOptions,
    running: &dyn Fn() -> bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let io = |e| Error::io(path, e);
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.follow => {
            // Not written yet: wait for the supervisor to create it.
            while running() && !path.exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
            match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io(e)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let mut reader = BufReader::new(file);
    let mut pos = reader.seek(SeekFrom::Start(opts.skip_bytes)).map_err(io)?;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        pos += n as u64;
        lines.push(line);
    }
    let skip = opts.tail.map_or(0, |t| lines.len().saturating_sub(t));
    for line in &lines[skip..] {
        emit(line, opts, out, err).map_err(io)?;
    }
    if !opts.follow {
        return Ok(());
    }
    let mut partial = Vec::new();
    reader.seek(SeekFrom::Start(pos)).map_err(io)?;
    loop {
        let alive = running();
        loop {
            let n = reader.read_until(b'\n', &mut partial).map_err(io)?;
            if n == 0 || partial.last() != Some(&b'\n') {
                break;
            }
            emit(&partial, opts, out, err).map_err(io)?;
            partial.clear();
        }
        if !alive {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x-json.log");
        let w = LogWriter::open(&path).unwrap();
        let mut out = w.stream(Stream::Stdout);
        let mut err = w.stream(Stream::Stderr);
        out.feed(b"one\ntw").unwrap();
        out.feed(b"o\nthree").unwrap();
        err.feed(b"oops\n").unwrap();
        drop(out);
        drop(err);
        let (mut o, mut e) = (Vec::new(), Vec::new());
        read(&path, ReadOptions::default(), &|| false, &mut o, &mut e).unwrap();
        assert_eq!(o, b"one\ntwo\nthree");
        assert_eq!(e, b"oops\n");
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let opts = ReadOptions {
            tail: Some(2),
            ..Default::default()
        };
        read(&path, opts, &|| false, &mut o, &mut e).unwrap();
        assert_eq!(o, b"three");
        assert_eq!(e, b"oops\n");
        // What an earlier run wrote is skipped by its length.
        let earlier = std::fs::metadata(&path).unwrap().len();
        w.entry(Stream::Stdout, b"again\n").unwrap();
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let opts = ReadOptions {
            skip_bytes: earlier,
            ..Default::default()
        };
        read(&path, opts, &|| false, &mut o, &mut e).unwrap();
        assert_eq!(o, b"again\n");
        assert_eq!(e, b"");
    }

    #[test]
    fn entries_are_docker_json() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x-json.log");
        let w = LogWriter::open(&path).unwrap();
        w.entry(Stream::Stdout, b"hi \"q\"\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["log"], "hi \"q\"\n");
        assert_eq!(v["stream"], "stdout");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
