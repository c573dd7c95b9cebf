//! The store under stress, driven through the CLI as users and CI jobs drive it: crashes at every
//! failpoint, random `kill -9`, eight processes sharing one root, deduplication, corruption, and
//! readers that never wait for a writer.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{fresh_dir, run, strata};

/// Every failpoint on the commit paths of blobs, layers and refs.
const FAILPOINTS: &[&str] = &[
    "blob.after-write",
    "blob.after-fsync",
    "blob.after-rename",
    "blob.before-dir-fsync",
    "layer.after-objects",
    "layer.after-syncfs",
    "layer.before-rename",
    "ref.after-temp-write",
    "ref.before-rename",
];

/// A small deterministic pseudo-random generator (tests must not depend on a crate for this).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Writes a root filesystem tar of `files` regular files (`shared` of them identical across
/// seeds), a directory per 100 files, a symlink and a hardlink. Returns the tar's path.
fn rootfs_tar(dir: &Path, name: &str, files: usize, shared: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut builder = tar::Builder::new(File::create(&path).expect("create tar"));
    let mut rng = Lcg(seed);
    let add_dir = |b: &mut tar::Builder<File>, p: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, p, std::io::empty()).expect("dir");
    };
    add_dir(&mut builder, "bin");
    for i in 0..files {
        if i % 100 == 0 {
            add_dir(&mut builder, &format!("d{:03}", i / 100));
        }
        // Shared files have the same content, mode and mtime in every tree.
        let content: Vec<u8> = if i < shared {
            format!("shared file {i}\n")
                .repeat(40 + i % 50)
                .into_bytes()
        } else {
            (0..2000 + rng.next() % 4000)
                .map(|_| rng.next() as u8)
                .collect()
        };
        let mut h = tar::Header::new_gnu();
        h.set_mode(if i % 7 == 0 { 0o755 } else { 0o644 });
        h.set_size(content.len() as u64);
        h.set_mtime(1_700_000_000);
        builder
            .append_data(&mut h, format!("d{:03}/f{i:05}", i / 100), &content[..])
            .expect("file");
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    builder
        .append_link(&mut h, "bin/sh", "../d000/f00000")
        .expect("symlink");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o644);
    builder
        .append_link(&mut h, "bin/hard", "d000/f00001")
        .expect("hardlink");
    builder
        .into_inner()
        .expect("finish tar")
        .flush()
        .expect("flush");
    path
}

/// Runs `strata --root ROOT ARGS` and returns (success, stdout, stderr).
fn st(root: &Path, args: &[&str]) -> (bool, String, String) {
    let (out, so, se) = run(strata(root).args(args));
    (out.status.success(), so, se)
}

/// Asserts `system verify` finds nothing.
fn assert_verified(root: &Path, context: &str) {
    let (ok, so, se) = st(root, &["system", "verify"]);
    assert!(ok, "{context}: verify failed:\n{so}{se}");
}

/// The `name:tag` references the store lists.
fn listed(root: &Path) -> Vec<String> {
    let (ok, so, se) = st(root, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(ok, "images failed: {se}");
    so.lines().map(str::to_string).collect()
}

#[test]
fn every_failpoint_leaves_a_consistent_store() {
    let dir = fresh_dir();
    let tar = rootfs_tar(dir.path(), "rootfs.tar", 300, 0, 1);
    for point in FAILPOINTS {
        let root = dir.path().join(format!("root-{point}"));
        let (ok, _, se) = st(&root, &["import", path_str(&tar), "before:1"]);
        assert!(ok, "{point}: first import: {se}");
        let out = strata(&root)
            .env("STRATA_FAILPOINT", point)
            .args(["import", path_str(&tar), "crash:1"])
            .output()
            .expect("run import");
        assert_eq!(
            out.status.signal(),
            Some(libc_sigabrt()),
            "{point}: the import should abort at the failpoint: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_verified(&root, point);
        assert!(
            listed(&root).contains(&"before:1".to_string()),
            "{point}: ref lost"
        );
        // The next command works, and a prune cleans what the crash left.
        let (ok, _, se) = st(&root, &["import", path_str(&tar), "after:1"]);
        assert!(ok, "{point}: import after the crash: {se}");
        let (ok, _, se) = st(&root, &["system", "prune", "-f"]);
        assert!(ok, "{point}: prune: {se}");
        assert_verified(&root, point);
        let refs = listed(&root);
        assert!(refs.contains(&"after:1".to_string()), "{point}: {refs:?}");
        assert!(
            leftovers(&root).is_empty(),
            "{point}: {:?}",
            leftovers(&root)
        );
    }
}

/// Ingest and temp files still present (after a prune there must be none).
fn leftovers(root: &Path) -> Vec<PathBuf> {
    ["ingest", "tmp", "layers/tmp"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect()
}

fn libc_sigabrt() -> i32 {
    6
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn random_kills_during_import_and_save_leave_a_consistent_store() {
    let dir = fresh_dir();
    let tar = rootfs_tar(dir.path(), "rootfs.tar", 3000, 0, 7);
    let root = dir.path().join("root");
    let (ok, _, se) = st(&root, &["import", path_str(&tar), "base:1"]);
    assert!(ok, "{se}");
    // How long an uninterrupted import and save take here, to aim the kills inside them.
    let start = Instant::now();
    let (ok, _, se) = st(&root, &["import", path_str(&tar), "probe:1"]);
    assert!(ok, "{se}");
    let import_time = start.elapsed();
    let out = dir.path().join("out.tar");
    let start = Instant::now();
    let (ok, _, se) = st(&root, &["save", "-o", path_str(&out), "probe:1"]);
    assert!(ok, "{se}");
    let save_time = start.elapsed();
    let mut rng = Lcg(2026);
    for i in 0..30 {
        let (args, span) = if i % 2 == 0 {
            (
                vec![
                    "import".to_string(),
                    path_str(&tar).to_string(),
                    format!("k{i}:1"),
                ],
                import_time,
            )
        } else {
            (
                vec![
                    "save".into(),
                    "-o".into(),
                    path_str(&out).into(),
                    "base:1".into(),
                ],
                save_time,
            )
        };
        let delay = span.mul_f64((rng.next() % 1000) as f64 / 1000.0);
        let mut child: Child = strata(&root)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        assert_verified(&root, &format!("kill {i} after {delay:?} of {args:?}"));
        assert!(
            listed(&root).contains(&"base:1".to_string()),
            "kill {i}: ref lost"
        );
    }
    let (ok, _, se) = st(&root, &["system", "prune", "-f"]);
    assert!(ok, "{se}");
    assert_verified(&root, "after the kills and a prune");
    let (ok, _, se) = st(&root, &["save", "-o", path_str(&out), "base:1"]);
    assert!(ok, "save after the kills: {se}");
}

#[test]
fn eight_processes_share_one_root() {
    let dir = fresh_dir();
    let root = dir.path().join("root");
    let tars: Vec<PathBuf> = (0..8)
        .map(|i| rootfs_tar(dir.path(), &format!("t{i}.tar"), 150, 100, 100 + i))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let workers: Vec<_> = tars
        .into_iter()
        .enumerate()
        .map(|(w, tar)| {
            let root = root.clone();
            std::thread::spawn(move || {
                // The refs this worker created and did not remove: they must all survive.
                let mut kept = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let name = format!("w{w}/img:{n}");
                    let (ok, _, se) = st(&root, &["import", path_str(&tar), &name]);
                    assert!(ok, "worker {w} import {n}: {se}");
                    let alias = format!("w{w}/alias:{n}");
                    let (ok, _, se) = st(&root, &["tag", &name, &alias]);
                    assert!(ok, "worker {w} tag {n}: {se}");
                    match n % 3 {
                        0 => {
                            let (ok, _, se) = st(&root, &["rmi", &name, &alias]);
                            assert!(ok, "worker {w} rmi {n}: {se}");
                        }
                        1 => {
                            let (ok, _, se) = st(&root, &["system", "prune", "-f"]);
                            assert!(ok, "worker {w} prune {n}: {se}");
                            kept.push(name);
                            kept.push(alias);
                        }
                        _ => {
                            let (ok, _, se) = st(&root, &["rmi", &alias]);
                            assert!(ok, "worker {w} untag {n}: {se}");
                            kept.push(name);
                        }
                    }
                }
                kept
            })
        })
        .collect();
    let mut expected = Vec::new();
    for w in workers {
        expected.extend(w.join().expect("worker panicked"));
    }
    assert_verified(&root, "after 60 s of 8 workers");
    let refs = listed(&root);
    let lost: Vec<&String> = expected
        .iter()
        .filter(|r| !refs.iter().any(|l| l.ends_with(r.as_str())))
        .collect();
    assert!(lost.is_empty(), "lost refs: {lost:?}");
    let (ok, _, se) = st(&root, &["system", "prune", "-f"]);
    assert!(ok, "{se}");
    assert_verified(&root, "after the final prune");
}

/// Disk usage of a directory in bytes, each inode counted once (du's rule).
fn disk_usage(dir: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(dir)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du output")
}

#[test]
fn shared_files_are_stored_once() {
    let dir = fresh_dir();
    let root = dir.path().join("root");
    // Two trees of 2,000 files sharing 1,900 (95%).
    let a = rootfs_tar(dir.path(), "a.tar", 2000, 1900, 11);
    let b = rootfs_tar(dir.path(), "b.tar", 2000, 1900, 12);
    let (ok, _, se) = st(&root, &["import", path_str(&a), "dedup/a:1"]);
    assert!(ok, "{se}");
    let after_a = disk_usage(&root);
    let (ok, _, se) = st(&root, &["import", path_str(&b), "dedup/b:1"]);
    assert!(ok, "{se}");
    let growth = disk_usage(&root) - after_a;
    // The second image adds its 5% of new files plus directories, links and metadata: far
    // less than a second copy.
    assert!(
        growth * 4 < after_a,
        "second import grew the root by {growth} bytes (first: {after_a})"
    );
    let (ok, so, se) = st(&root, &["system", "df"]);
    assert!(ok, "{se}");
    assert!(
        so.to_lowercase().contains("dedup"),
        "df shows the saving:\n{so}"
    );
}

#[test]
fn a_flipped_byte_is_found_and_named() {
    let dir = fresh_dir();
    let root = dir.path().join("root");
    let tar = rootfs_tar(dir.path(), "rootfs.tar", 50, 0, 3);
    let (ok, _, se) = st(&root, &["import", path_str(&tar), "flip:1"]);
    assert!(ok, "{se}");
    // Flip a byte in the config blob (the largest JSON blob is fine too: any blob will do).
    let blobs: Vec<PathBuf> = std::fs::read_dir(root.join("blobs/sha256"))
        .expect("blobs dir")
        .map(|e| e.expect("entry").path())
        .collect();
    let victim = blobs.first().expect("a blob").clone();
    let mut bytes = std::fs::read(&victim).expect("read blob");
    bytes[0] ^= 0x20;
    let mut perms = std::fs::metadata(&victim).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&victim, perms).expect("chmod");
    std::fs::write(&victim, &bytes).expect("write");
    let (ok, so, se) = st(&root, &["system", "verify"]);
    assert!(!ok, "verify must fail");
    let name = victim.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        format!("{so}{se}").contains(name),
        "verify names the blob:\n{so}{se}"
    );
    // Using the image fails with an error that names the blob.
    let out = dir.path().join("o.tar");
    let (ok, _, se) = st(&root, &["save", "-o", path_str(&out), "flip:1"]);
    let (ok2, _, se2) = st(&root, &["inspect", "flip:1"]);
    assert!(!(ok && ok2), "using the corrupt image must fail");
    assert!(
        se.contains(name) || se2.contains(name),
        "the error names the blob:\n{se}\n{se2}"
    );
}

#[test]
fn readers_never_wait_for_a_writer() {
    let dir = fresh_dir();
    let root = dir.path().join("root");
    let tar = rootfs_tar(dir.path(), "rootfs.tar", 400, 0, 5);
    let (ok, _, se) = st(&root, &["import", path_str(&tar), "ready:1"]);
    assert!(ok, "{se}");
    let bytes = std::fs::read(&tar).expect("read tar");
    // An import that is mid-write: half its input arrived, the rest is held back.
    let mut import = strata(&root)
        .args(["import", "-", "slow:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn import");
    let mut stdin = import.stdin.take().expect("stdin");
    stdin
        .write_all(&bytes[..bytes.len() / 2])
        .expect("feed half");
    stdin.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(300));
    // Readers and other writers go ahead while the import holds its input open.
    assert!(listed(&root).contains(&"ready:1".to_string()));
    let (ok, _, se) = st(&root, &["tag", "ready:1", "ready:2"]);
    assert!(ok, "{se}");
    let (ok, _, se) = st(&root, &["inspect", "ready:2"]);
    assert!(ok, "{se}");
    assert!(
        import.try_wait().expect("try_wait").is_none(),
        "import still running"
    );
    stdin
        .write_all(&bytes[bytes.len() / 2..])
        .expect("feed rest");
    drop(stdin);
    let status = import.wait().expect("wait");
    assert!(status.success());
    assert!(listed(&root).contains(&"slow:1".to_string()));
    assert_verified(&root, "after the slow import");
}
