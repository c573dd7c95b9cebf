use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use super::*;

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, content).expect("write");
}

fn set_mtime(path: &Path, mtime: std::time::SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_times(fs::FileTimes::new().set_modified(mtime))
        .expect("utimensat");
}

/// Files changed within a clock tick of a scan are re-hashed by the next one (racy); tests
/// that count hashes let their edits age past that first.
fn settle() {
    std::thread::sleep(Duration::from_millis(30));
}

fn scan(ctx: &Path, ignore: &DockerIgnore, state: &Path) -> (ContextIndex, ScanStats) {
    ContextIndex::scan(ctx, ignore, Some(state)).expect("scan")
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path();
    write(ctx, "a/one.txt", "one\n");
    write(ctx, "a/two.txt", "two\n");
    write(ctx, "b/c/three.txt", "three\n");
    write(ctx, "top.txt", "top\n");
    dir
}

#[test]
fn scan_records_entries_children_and_hashes() {
    let dir = tree();
    let ctx = dir.path();
    symlink("../top.txt", ctx.join("a/link")).expect("symlink");
    let (index, stats) = ContextIndex::scan(ctx, &DockerIgnore::empty(), None).expect("scan");
    assert_eq!(stats.entries, 9, "root, a, 3 in a, b, b/c, three, top");
    assert_eq!(stats.hashed, 4);
    assert_eq!(stats.hashed_bytes, 4 + 4 + 6 + 4);
    let one = index.get("a/one.txt").expect("a/one.txt");
    assert_eq!(one.kind, Kind::File);
    assert_eq!(one.hash, *blake3::hash(b"one\n").as_bytes());
    assert_eq!(one.size, 4);
    let link = index.get("a/link").expect("a/link");
    assert_eq!(link.kind, Kind::Symlink);
    assert_eq!(link.link.as_deref(), Some(&b"../top.txt"[..]));
    assert_eq!(link.hash, [0; 32]);
    assert_eq!(index.get("").expect("root").kind, Kind::Dir);
    let names: Vec<&str> = index.children("a").into_iter().map(|(p, _)| p).collect();
    assert_eq!(names, ["a/link", "a/one.txt", "a/two.txt"]);
    let names: Vec<&str> = index.children("").into_iter().map(|(p, _)| p).collect();
    assert_eq!(names, ["a", "b", "top.txt"]);
    assert!(index.children("top.txt").is_empty());
    assert!(index.get("missing").is_none());
    assert_eq!(index.root(), fs::canonicalize(ctx).expect("canonical"));
}

#[test]
fn second_scan_reuses_every_hash_and_keeps_the_state_file() {
    let dir = tree();
    let store = tempfile::tempdir().expect("store");
    let state = store.path().join("context/key.idx");
    settle();
    let (first, stats) = scan(dir.path(), &DockerIgnore::empty(), &state);
    assert_eq!(stats.hashed, 4);
    let written = fs::metadata(&state).expect("state written");
    let (second, stats) = scan(dir.path(), &DockerIgnore::empty(), &state);
    assert_eq!(stats.hashed, 0, "{:?}", stats.hashed_paths);
    assert_eq!(first.digest(""), second.digest(""));
    assert_eq!(first.get("a/one.txt"), second.get("a/one.txt"));
    let again = fs::metadata(&state).expect("state");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&written),
        std::os::unix::fs::MetadataExt::ino(&again),
        "a no-op scan must not rewrite the state"
    );
}

#[test]
fn one_edit_rehashes_exactly_that_file() {
    let dir = tree();
    let store = tempfile::tempdir().expect("store");
    let state = store.path().join("key.idx");
    settle();
    let (before, _) = scan(dir.path(), &DockerIgnore::empty(), &state);
    write(dir.path(), "b/c/three.txt", "THREE\n");
    settle();
    let (after, stats) = scan(dir.path(), &DockerIgnore::empty(), &state);
    assert_eq!(stats.hashed_paths, ["b/c/three.txt"]);
    assert_eq!(stats.hashed, 1);
    assert_ne!(before.digest(""), after.digest(""));
    assert_ne!(before.digest("b"), after.digest("b"));
    assert_eq!(before.digest("a"), after.digest("a"));
    let (_, stats) = scan(dir.path(), &DockerIgnore::empty(), &state);
    assert_eq!(stats.hashed, 0);
}

#[test]
fn on_hash_hears_of_each_file_hashed_and_of_nothing_else() {
    let dir = tree();
    let store = tempfile::tempdir().expect("store");
    let state = store.path().join("key.idx");
    let heard = std::sync::atomic::AtomicUsize::new(0);
    let counted = || {
        heard.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    };
    let scan_counting = || {
        heard.store(0, std::sync::atomic::Ordering::SeqCst);
        let (_, stats, write) =
            ContextIndex::scan_deferred(dir.path(), &DockerIgnore::empty(), Some(&state), &counted)
                .expect("scan");
        if let Some(w) = write {
            w.write().expect("state");
        }
        (
            heard.load(std::sync::atomic::Ordering::SeqCst),
            stats.hashed,
        )
    };
    settle();
    assert_eq!(scan_counting(), (4, 4), "a first scan hashes every file");
    assert_eq!(
        scan_counting(),
        (0, 0),
        "an unchanged context hashes nothing"
    );
    write(dir.path(), "a/two.txt", "TWO\n");
    settle();
    assert_eq!(scan_counting(), (1, 1), "one edit");
}

#[test]
fn edit_with_restored_mtime_is_noticed_through_ctime() {
    // moby/buildkit#4817: an edit that keeps size and mtime went unnoticed.
    let dir = tree();
    let store = tempfile::tempdir().expect("store");
    let state = store.path().join("key.idx");
    settle();
    let (before, _) = scan(dir.path(), &DockerIgnore::empty(), &state);
    let path = dir.path().join("a/one.txt");
    let mtime = fs::metadata(&path)
        .expect("stat")
        .modified()
        .expect("mtime");
    fs::write(&path, "ONE\n").expect("edit");
    set_mtime(&path, mtime);
    assert_eq!(
        fs::metadata(&path)
            .expect("stat")
            .modified()
            .expect("mtime"),
        mtime
    );
    let (after, stats) = scan(dir.path(), &DockerIgnore::empty(), &state);
    assert_eq!(stats.hashed_paths, ["a/one.txt"]);
    assert_ne!(before.digest("a/one.txt"), after.digest("a/one.txt"));
}

#[test]
fn touch_rehashes_but_keeps_the_digest() {
    let dir = tree();
    let store = tempfile::tempdir().expect("store");
    let state = store.path().join("key.idx");
    settle();
    let (before, _) = scan(dir.path(), &DockerIgnore::empty(), &state);
    set_mtime(
        &dir.path().join("top.txt"),
        std::time::SystemTime::now() + Duration::from_secs(3600),
    );
    let (after, stats) = scan(dir.path(), &DockerIgnore::empty(), &state);
    assert_eq!(stats.hashed_paths, ["top.txt"]);
    assert_ne!(
        before.get("top.txt").expect("top").mtime_ns,
        after.get("top.txt").expect("top").mtime_ns
    );
    assert_eq!(before.digest("top.txt"), after.digest("top.txt"));
    assert_eq!(before.digest(""), after.digest(""));
}

#[test]
fn mode_and_owner_change_the_digest() {
    let dir = tree();
    let path = dir.path().join("a/two.txt");
    let (before, _) = ContextIndex::scan(dir.path(), &DockerIgnore::empty(), None).expect("scan");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    let (chmodded, _) = ContextIndex::scan(dir.path(), &DockerIgnore::empty(), None).expect("scan");
    assert_eq!(chmodded.get("a/two.txt").expect("entry").mode, 0o755);
    assert_ne!(before.digest("a/two.txt"), chmodded.digest("a/two.txt"));
    assert_ne!(before.digest("a"), chmodded.digest("a"));
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&path, Some(1234), Some(5678)).expect("chown");
        let (owned, _) =
            ContextIndex::scan(dir.path(), &DockerIgnore::empty(), None).expect("scan");
        let entry = owned.get("a/two.txt").expect("entry");
        assert_eq!((entry.uid, entry.gid), (1234, 5678));
        assert_ne!(owned.digest("a/two.txt"), chmodded.digest("a/two.txt"));
    }
}

#[test]
fn digests_cover_content_and_names_not_times() {
    let one = tree();
    let two = tree();
    let (a, _) = ContextIndex::scan(one.path(), &DockerIgnore::empty(), None).expect("scan");
    let (b, _) = ContextIndex::scan(two.path(), &DockerIgnore::empty(), None).expect("scan");
    // Different inodes, ctimes and (likely) mtimes: same digest.
    assert_eq!(a.digest(""), b.digest(""));
    // A file and a symlink with the same bytes differ; so do two names for one content.
    fs::rename(two.path().join("a/two.txt"), two.path().join("a/zwei.txt")).expect("rename");
    let (c, _) = ContextIndex::scan(two.path(), &DockerIgnore::empty(), None).expect("scan");
    assert_ne!(a.digest("a"), c.digest("a"));
    assert_eq!(a.digest("a/two.txt"), c.digest("a/zwei.txt"));
    assert!(a.digest("nope").is_none());
}

#[test]
fn stamps_cover_times_too_and_only_plain_trees_have_one() {
    let dir = tree();
    let scan = || {
        ContextIndex::scan(dir.path(), &DockerIgnore::empty(), None)
            .expect("scan")
            .0
    };
    let before = scan();
    assert!(before.stamp("a").is_some() && before.stamp("b").is_some());
    assert_eq!(before.stamp("a"), scan().stamp("a"), "nothing changed");
    assert!(before.stamp("nope").is_none());
    // A later mtime deep down: the same digests, other stamps up to the root.
    set_mtime(
        &dir.path().join("b/c/three.txt"),
        std::time::SystemTime::now() + Duration::from_secs(3600),
    );
    let touched = scan();
    assert_eq!(before.digest("b"), touched.digest("b"));
    for rel in ["b/c/three.txt", "b/c", "b", ""] {
        assert_ne!(before.stamp(rel), touched.stamp(rel), "{rel}");
    }
    assert_eq!(before.stamp("a"), touched.stamp("a"));
    // A symlink or a second name below: no stamp, there and above.
    symlink("one.txt", dir.path().join("a/link")).expect("symlink");
    fs::hard_link(dir.path().join("top.txt"), dir.path().join("b/c/top")).expect("link");
    let linked = scan();
    for rel in ["a", "a/link", "b", "b/c", "top.txt", ""] {
        assert_eq!(linked.stamp(rel), None, "{rel}");
    }
    assert!(linked.stamp("a/one.txt").is_some());
}

#[test]
fn content_outside_the_selection_does_not_matter() {
    let dir = tree();
    let (before, _) = ContextIndex::scan(dir.path(), &DockerIgnore::empty(), None).expect("scan");
    write(dir.path(), "top.txt", "changed\n");
    let (after, _) = ContextIndex::scan(dir.path(), &DockerIgnore::empty(), None).expect("scan");
    assert_eq!(before.digest("a"), after.digest("a"));
    assert_ne!(before.digest(""), after.digest(""));
}

#[test]
fn excluded_entries_are_absent_and_reincluded_parents_present() {
    let dir = tree();
    write(dir.path(), "logs/x.log", "x");
    write(dir.path(), "docs/keep.md", "keep");
    write(dir.path(), "docs/drop.md", "drop");
    write(dir.path(), "docs/sub/deep.md", "deep");
    let ignore = DockerIgnore::parse("logs\ndocs\n!docs/keep.md\n*.txt\n", "f").expect("parse");
    let (index, stats) = ContextIndex::scan(dir.path(), &ignore, None).expect("scan");
    for gone in ["logs", "logs/x.log", "top.txt", "docs/drop.md", "docs/sub"] {
        assert!(index.get(gone).is_none(), "{gone} must be excluded");
    }
    assert!(
        index.get("a").is_some(),
        "`*.txt` only excludes top-level files"
    );
    assert_eq!(index.get("docs").map(|e| e.kind), Some(Kind::Dir));
    let kids: Vec<&str> = index.children("docs").into_iter().map(|(p, _)| p).collect();
    assert_eq!(kids, ["docs/keep.md"]);
    assert!(!stats.hashed_paths.iter().any(|p| p.ends_with(".log")));
    assert_eq!(index.glob("docs/*").expect("glob"), ["docs/keep.md"]);
}

#[test]
fn resolve_stays_in_the_root() {
    let dir = tree();
    let ctx = dir.path();
    symlink("/a", ctx.join("abs")).expect("symlink");
    symlink("../../../../a/one.txt", ctx.join("b/c/up")).expect("symlink");
    symlink("loop2", ctx.join("loop1")).expect("symlink");
    symlink("loop1", ctx.join("loop2")).expect("symlink");
    symlink("nowhere", ctx.join("dangling")).expect("symlink");
    symlink("c", ctx.join("b/rel")).expect("symlink");
    let (index, _) = ContextIndex::scan(ctx, &DockerIgnore::empty(), None).expect("scan");
    let r = |rel: &str, follow: bool| index.resolve(rel, follow).expect("resolve");
    assert_eq!(r("abs/one.txt", false).as_deref(), Some("a/one.txt"));
    assert_eq!(r("abs", false).as_deref(), Some("abs"));
    assert_eq!(r("abs", true).as_deref(), Some("a"));
    assert_eq!(r("b/c/up", true).as_deref(), Some("a/one.txt"));
    assert_eq!(r("../../a/./two.txt", false).as_deref(), Some("a/two.txt"));
    assert_eq!(
        r("b/rel/three.txt", false).as_deref(),
        Some("b/c/three.txt")
    );
    assert_eq!(r("b/rel/../../top.txt", false).as_deref(), Some("top.txt"));
    assert_eq!(r("", false).as_deref(), Some(""));
    assert_eq!(r("dangling", false).as_deref(), Some("dangling"));
    assert_eq!(r("dangling", true), None);
    assert_eq!(r("top.txt/x", false), None);
    assert_eq!(r("missing/x", true), None);
    assert!(matches!(
        index.resolve("loop1", true),
        Err(Error::SymlinkLoop { .. })
    ));
    assert_eq!(r("loop1", false).as_deref(), Some("loop1"));
    assert!(index.resolve("loop1/x", false).is_err());
}

#[test]
fn glob_follows_go_filepath_match() {
    let dir = tree();
    let ctx = dir.path();
    write(ctx, "a/.hidden", "h");
    write(ctx, "a/x[1].txt", "x");
    write(ctx, "b/c/four.md", "four");
    symlink("b", ctx.join("bee")).expect("symlink");
    let (index, _) = ContextIndex::scan(ctx, &DockerIgnore::empty(), None).expect("scan");
    let g = |p: &str| index.glob(p).expect("glob");
    assert_eq!(g("a/*.txt"), ["a/one.txt", "a/two.txt", "a/x[1].txt"]);
    assert_eq!(
        g("a/*"),
        ["a/.hidden", "a/one.txt", "a/two.txt", "a/x[1].txt"]
    );
    // Like Go's Glob, a symlinked directory is listed through.
    assert_eq!(
        g("*/c/*"),
        [
            "b/c/four.md",
            "b/c/three.txt",
            "bee/c/four.md",
            "bee/c/three.txt"
        ]
    );
    assert_eq!(g("bee/c/*.md"), ["bee/c/four.md"]);
    assert_eq!(g("a/t?o.txt"), ["a/two.txt"]);
    assert_eq!(g("a/[ot]*"), ["a/one.txt", "a/two.txt"]);
    assert_eq!(g("a/[^o]*.txt"), ["a/two.txt", "a/x[1].txt"]);
    assert_eq!(g("a/x\\[1\\].txt"), ["a/x[1].txt"]);
    assert_eq!(g("*"), ["a", "b", "bee", "top.txt"]);
    assert_eq!(g("*.txt"), ["top.txt"]);
    assert_eq!(g("/../top.txt"), ["top.txt"]);
    assert_eq!(g("a/*/x"), Vec::<String>::new());
    assert_eq!(g("nothing"), Vec::<String>::new());
    assert_eq!(g("."), [""]);
    assert!(matches!(index.glob("a/[x"), Err(Error::BadPattern { .. })));
}

#[test]
fn filtered_digest_equals_the_digest_of_what_is_copied() {
    let full = tree();
    write(full.path(), "a/debug.log", "noise");
    write(full.path(), "a/sub/trace.log", "noise");
    write(full.path(), "a/sub/keep.log", "kept");
    let bare = tree();
    write(bare.path(), "a/sub/keep.log", "kept");
    // Same directory modes in both trees.
    for root in [full.path(), bare.path()] {
        fs::set_permissions(root.join("a/sub"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let (f, _) = ContextIndex::scan(full.path(), &DockerIgnore::empty(), None).expect("scan");
    let (b, _) = ContextIndex::scan(bare.path(), &DockerIgnore::empty(), None).expect("scan");
    let exclude = DockerIgnore::from_patterns(&["**/*.log", "!sub/keep.log"]).expect("patterns");
    assert_ne!(f.digest("a"), b.digest("a"));
    assert_eq!(f.digest_filtered("a", &exclude), b.digest("a"));
    assert_eq!(
        f.digest_filtered("a", &DockerIgnore::empty()),
        f.digest("a")
    );
    let only = DockerIgnore::from_patterns(&["*.log"]).expect("patterns");
    assert_ne!(
        f.digest_filtered("a/debug.log", &only),
        f.digest("a/debug.log")
    );
    assert_eq!(f.digest_filtered("a/one.txt", &only), f.digest("a/one.txt"));
    assert!(f.digest_filtered("missing", &only).is_none());
}

#[test]
fn corrupt_or_foreign_state_is_ignored_and_rewritten() {
    let dir = tree();
    let store = tempfile::tempdir().expect("store");
    let state = store.path().join("key.idx");
    settle();
    scan(dir.path(), &DockerIgnore::empty(), &state);
    let good = fs::read(&state).expect("state");

    let mut flipped = good.clone();
    flipped[40] ^= 0xff;
    for bad in [
        b"garbage".to_vec(),
        Vec::new(),
        good[..good.len() / 2].to_vec(),
        flipped,
    ] {
        fs::write(&state, &bad).expect("corrupt");
        let (_, stats) = scan(dir.path(), &DockerIgnore::empty(), &state);
        assert_eq!(stats.hashed, 4, "a bad state means hashing everything");
        assert_eq!(fs::read(&state).expect("state"), good, "and rewriting it");
    }
    // Another version is ignored too.
    let mut other = good.clone();
    other[8] = 99;
    fs::write(&state, &other).expect("write");
    assert_eq!(scan(dir.path(), &DockerIgnore::empty(), &state).1.hashed, 4);
    // A state of another context is not reused.
    let elsewhere = tree();
    settle();
    assert_eq!(
        scan(elsewhere.path(), &DockerIgnore::empty(), &state)
            .1
            .hashed,
        4
    );
}

#[test]
fn special_files_are_recorded_not_read() {
    let dir = tree();
    nix::unistd::mkfifo(
        &dir.path().join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    let (index, _) = ContextIndex::scan(dir.path(), &DockerIgnore::empty(), None).expect("scan");
    assert_eq!(index.get("pipe").expect("pipe").kind, Kind::Fifo);
}

#[test]
fn a_file_is_not_a_context() {
    let dir = tree();
    let err = ContextIndex::scan(&dir.path().join("top.txt"), &DockerIgnore::empty(), None);
    assert!(err.is_err());
}

#[test]
fn names_sorting_before_slash_keep_lookups_and_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    for rel in ["a/x", "a-b", "a.b/y", "a0", "a/x.d/z", "a/x-d"] {
        write(dir.path(), rel, rel);
    }
    let store = tempfile::tempdir().expect("store");
    let state = store.path().join("key.idx");
    settle();
    let (index, _) = scan(dir.path(), &DockerIgnore::empty(), &state);
    for rel in [
        "a", "a/x", "a-b", "a.b", "a.b/y", "a0", "a/x.d", "a/x.d/z", "a/x-d",
    ] {
        assert!(index.get(rel).is_some(), "{rel}");
    }
    let top: Vec<&str> = index.children("").into_iter().map(|(p, _)| p).collect();
    assert_eq!(top, ["a", "a-b", "a.b", "a0"]);
    let sub: Vec<&str> = index.children("a").into_iter().map(|(p, _)| p).collect();
    assert_eq!(sub, ["a/x", "a/x-d", "a/x.d"]);
    // The state round-trips in this order.
    assert_eq!(scan(dir.path(), &DockerIgnore::empty(), &state).1.hashed, 0);
}
