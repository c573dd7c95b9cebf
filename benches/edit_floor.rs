//! The floor of compare.py's `big-edit1` on this machine: the work that any tool must do to
//! rebuild `COPY src/ /app/` + `RUN find /app -type f | wc -l` after one of the 20,000 files
//! changed, and nothing else.
//!
//! The layer's diffID is the sha256 of its whole uncompressed tar. Its entries are sorted and keep
//! their mtimes, so an edit of the first file changes every byte's place in the hash and no saved
//! sha256 state can be resumed. The floor is then:
//! - one stat walk of the context, in sorted order (without it no tool knows what changed);
//! - every file read out of the page cache (this kernel has no `AF_ALG`, so sha256 runs in user
//!   space and the bytes must be copied there);
//! - one sha256 over a 512-byte header per entry, the contents and their padding;
//! - the step's `find` running at the same time, on the plain directory (no overlay, no sandbox).
//!
//! The walk and the reads are one pass, in one thread; the hash runs in another, as early as the
//! data allows. No index, no store, no layer written, no image committed: strata does all of
//! that on top, so its time can't be below this one's.
//!
//! Run with `cargo bench --bench edit_floor [-- DIR [RUNS]]`. DIR is a context's `src/` (for
//! example the `big/src` made by `../shared/bench/mkctx.sh`). Without it, a context with the same
//! shape (200 directories of 100 files of 100 B to 60 kB, about 358 MB) is made in a temp dir.
//! Under `cargo test --benches` (no `--bench` argument) it runs once on 2 directories, as
//! criterion's test mode does, to check that it works.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Bytes handed from the reader to the hasher at a time.
const BATCH: usize = 1 << 20;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let made;
    let dir = match args.first() {
        Some(dir) => PathBuf::from(dir),
        None => {
            made = tempfile::tempdir_in("/var/tmp").expect("temp dir");
            make_context(made.path(), if bench { 200 } else { 2 });
            made.path().to_path_buf()
        }
    };
    let runs: usize = match args.get(1) {
        Some(runs) => runs.parse().expect("RUNS is a number"),
        None if bench => 9,
        None => 1,
    };

    // One untimed pass, so the files are in the page cache as they are in a rebuild.
    let (bytes, _) = walk_read_hash(&dir);
    println!("{}: {bytes} tar bytes, {runs} runs", dir.display());

    let pure = median((0..runs).map(|_| pure_sha256(bytes)).collect());
    println!(
        "sha256 of {bytes} bytes in memory: {:.3} s",
        pure.as_secs_f64()
    );

    let alone = median((0..runs).map(|_| walk_read_hash(&dir).1).collect());
    println!("walk + read + sha256: {:.3} s", alone.as_secs_f64());

    if busybox().is_some() {
        let with_find = median(
            (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    let find = spawn_find(&dir);
                    walk_read_hash(&dir);
                    wait(find);
                    start.elapsed()
                })
                .collect(),
        );
        println!(
            "walk + read + sha256 with the step's find alongside: {:.3} s (the floor)",
            with_find.as_secs_f64()
        );
    } else {
        println!("no busybox: install busybox-static to time the step's find alongside");
    }
}

/// The tool-independent part of the rebuild: a sorted stat walk that reads each file as it goes,
/// feeding a sha256 of the tar-shaped stream on a second thread. Returns the bytes hashed and the
/// wall time.
fn walk_read_hash(dir: &Path) -> (u64, Duration) {
    let start = Instant::now();
    let (tx, rx) = sync_channel::<Vec<u8>>(64);
    let dir = dir.to_path_buf();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(BATCH);
        walk_sorted(&dir, &mut |path, len| {
            buf.extend_from_slice(&[0; 512]);
            if let Some(len) = len {
                let start = buf.len();
                buf.resize(start + len, 0);
                File::open(path)
                    .and_then(|mut f| f.read_exact(&mut buf[start..]))
                    .expect("read a context file");
                buf.resize(buf.len() + (512 - len % 512) % 512, 0);
            }
            if buf.len() >= BATCH {
                tx.send(std::mem::replace(&mut buf, Vec::with_capacity(BATCH)))
                    .expect("hasher alive");
            }
        });
        tx.send(buf).expect("hasher alive");
    });
    let mut hasher = Sha256::new();
    let mut bytes = 0;
    for batch in rx {
        bytes += batch.len() as u64;
        hasher.update(&batch);
    }
    std::hint::black_box(hasher.finalize());
    reader.join().expect("reader thread");
    (bytes, start.elapsed())
}

/// Calls `each` for every entry under `dir` in tar order: a directory before its children, names
/// sorted. `len` is the size of a regular file, `None` for anything else.
fn walk_sorted(dir: &Path, each: &mut dyn FnMut(&Path, Option<usize>)) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read a context directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    names.sort();
    for path in names {
        let meta = std::fs::symlink_metadata(&path).expect("stat a context entry");
        if meta.is_dir() {
            each(&path, None);
            walk_sorted(&path, each);
        } else if meta.is_file() {
            each(&path, Some(meta.len() as usize));
        } else {
            each(&path, None);
        }
    }
}

/// sha256 of `bytes` bytes already in memory: the hash's own limit on this CPU.
fn pure_sha256(bytes: u64) -> Duration {
    let block = vec![0x5a_u8; BATCH];
    let start = Instant::now();
    let mut hasher = Sha256::new();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BATCH as u64) as usize;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    std::hint::black_box(hasher.finalize());
    start.elapsed()
}

fn busybox() -> Option<&'static str> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|b| Path::new(b).exists())
}

/// The step's `find DIR -type f | wc -l`, with busybox as in the bench image.
fn spawn_find(dir: &Path) -> Child {
    let busybox = busybox().expect("busybox");
    Command::new(busybox)
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "{busybox} find \"$1\" -type f | {busybox} wc -l >/dev/null"
        ))
        .arg("sh")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn busybox find")
}

fn wait(mut child: Child) {
    let status = child.wait().expect("wait for find");
    assert!(status.success(), "find failed: {status}");
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// `dirs` directories (200 in the bench) of 100 files each, sizes drawn from mkctx.sh's choices, random content from
/// a fixed seed (xorshift; the bytes only need to be incompressible and reproducible).
fn make_context(dir: &Path, dirs: usize) {
    let mut state = 42_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for d in 0..dirs {
        let sub = dir.join(format!("d{d:03}"));
        std::fs::create_dir(&sub).expect("create a context directory");
        for f in 0..100 {
            let len: usize = [100, 1000, 4000, 20000, 60000][(next() % 5) as usize];
            let content: Vec<u8> = (0..len.div_ceil(8))
                .flat_map(|_| next().to_le_bytes())
                .take(len)
                .collect();
            File::create(sub.join(format!("f{f:03}.bin")))
                .and_then(|mut file| file.write_all(&content))
                .expect("write a context file");
        }
    }
}
