//! COPY / ADD / WORKDIR tests: tempdirs act as contexts and layer stacks.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::sys::time::TimeSpec;
use strata_cas::{PendingLayer, Store};

use super::*;

struct Env {
    dir: tempfile::TempDir,
    store: Store,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    Env { dir, store }
}

impl Env {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A context dir with files (`path` -> content; a trailing `/` makes a directory).
    fn ctx(&self, files: &[(&str, &str)]) -> PathBuf {
        let root = self.path("ctx");
        fs::create_dir_all(&root).unwrap();
        for (p, c) in files {
            let full = root.join(p);
            if p.ends_with('/') {
                fs::create_dir_all(&full).unwrap();
            } else {
                fs::create_dir_all(full.parent().unwrap()).unwrap();
                fs::write(&full, c).unwrap();
                set_mtime(&full, 1_000_000);
            }
        }
        root
    }

    /// An image layer dir.
    fn layer(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        fs::create_dir_all(&p).unwrap();
        p
    }
}

fn set_mtime(p: &Path, secs: i64) {
    let t = TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn run(
    e: &Env,
    req: &CopyRequest<'_>,
    view: &LayerView,
) -> (Result<CopyStats>, PendingLayer<'static>) {
    // The store outlives the test body; leak it (and the lease) for a 'static pending layer.
    let store: &'static Store = Box::leak(Box::new(e.store.clone()));
    let lease = Box::leak(Box::new(store.lease().unwrap()));
    let pending = store.begin_layer(lease).unwrap();
    let r = copy(req, view, &pending, store);
    (r, pending)
}

fn req<'a>(src: &'a dyn SourceTree, sources: &[&str], dest: &str) -> CopyRequest<'a> {
    CopyRequest::new(src, sources.iter().map(|s| s.to_string()).collect(), dest)
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

/// Source hardlinks: names copied together stay one inode; a file whose other names are
/// outside the copy is an ordinary object link, not a private copy.
#[test]
fn hardlinks_within_the_copy_only() {
    let e = env();
    let ctx = e.ctx(&[("a/x", "shared-out"), ("a/p", "pair"), ("b/", "")]);
    fs::hard_link(ctx.join("a/x"), ctx.join("b/y")).unwrap();
    fs::hard_link(ctx.join("a/p"), ctx.join("a/q")).unwrap();
    let src = DirTree::with_hashes(&ctx).unwrap();
    // The first copy stores the objects; the second finds them.
    for round in 0..2u64 {
        let (r, p) = run(&e, &req(&src, &["a/"], "/dst/"), &LayerView::empty());
        let st = r.unwrap();
        let root = p.rootfs();
        let (x, pm, q) = (
            fs::metadata(root.join("dst/x")).unwrap(),
            fs::metadata(root.join("dst/p")).unwrap(),
            fs::metadata(root.join("dst/q")).unwrap(),
        );
        assert_eq!(pm.ino(), q.ino(), "round {round}: p and q stay one inode");
        assert_eq!(pm.nlink(), 2, "round {round}: p and q only");
        assert_eq!(read(&root.join("dst/x")), "shared-out");
        // x is the store's object itself: its name there, dst/x here and in the layers
        // committed by earlier rounds.
        assert_eq!(x.nlink(), 2 + round, "round {round}: x is an object link");
        if round == 1 {
            assert_eq!(st.linked, 1, "{st:?}");
            assert_eq!(st.copied_bytes, 4, "only the pair is written: {st:?}");
        }
        let info = p.commit().unwrap();
        assert_eq!(info.entries, 4, "dst/, p, q (a tar hardlink), x");
    }
}

/// A tree whose files named `bad` cannot be opened.
struct Unreadable(DirTree);

impl SourceTree for Unreadable {
    fn lstat(&self, rel: &str) -> Result<Option<Stat>> {
        self.0.lstat(rel)
    }
    fn read_dir(&self, rel: &str) -> Result<Vec<String>> {
        self.0.read_dir(rel)
    }
    fn read_link(&self, rel: &str) -> Result<PathBuf> {
        self.0.read_link(rel)
    }
    fn open(&self, rel: &str) -> Result<fs::File> {
        if rel.ends_with("/bad") {
            return Err(Error::Copy(format!("cannot read {rel}")));
        }
        self.0.open(rel)
    }
    fn keeps_owner(&self) -> bool {
        false
    }
}

/// The files of a single source are placed while it is walked, by several threads: every
/// file lands with its content; a file that cannot be read fails the copy with its own error
/// even when the queue to the placing threads is long full (the walk then neither hangs nor
/// hides the error).
#[test]
fn files_placed_during_the_walk_and_their_failures() {
    let e = env();
    let root = e.path("ctx");
    // Twice the batches the queue holds (a batch is one directory of 100 files here).
    const { assert!(copy::EARLY_BATCH >= 100) };
    let n = 2 * copy::EARLY_QUEUE * 100;
    for d in 0..n / 100 {
        let dir = root.join(format!("d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("f{f:02}")), format!("{d}/{f}")).unwrap();
        }
    }
    let src = DirTree::new(&root);
    let (r, p) = run(&e, &req(&src, &["."], "/app/"), &LayerView::empty());
    let st = r.unwrap();
    assert_eq!(st.files, (n / 100 * 100) as u64, "{st:?}");
    for (d, f) in [(0, 0), (n / 200, 50), (n / 100 - 1, 99)] {
        assert_eq!(
            read(&p.rootfs().join(format!("app/d{d:03}/f{f:02}"))),
            format!("{d}/{f}")
        );
    }

    fs::write(root.join("d001/bad"), "x").unwrap();
    let bad = Unreadable(DirTree::new(&root));
    let (r, _p) = run(&e, &req(&bad, &["."], "/app/"), &LayerView::empty());
    let err = r.unwrap_err().to_string();
    assert!(err.contains("cannot read d001/bad"), "{err}");
}

#[test]
fn file_and_dir_destination_rules() {
    let e = env();
    let ctx = e.ctx(&[
        ("a.txt", "A"),
        ("b.txt", "B"),
        ("dir/x", "X"),
        ("dir/sub/y", "Y"),
    ]);
    fs::set_permissions(ctx.join("a.txt"), fs::Permissions::from_mode(0o751)).unwrap();
    let src = DirTree::new(&ctx);
    let img = e.layer("img");
    fs::create_dir_all(img.join("existing")).unwrap();
    fs::set_permissions(img.join("existing"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(img.join("existing"), Some(7), Some(8)).unwrap();
    set_mtime(&img.join("existing"), 42);
    let view = LayerView::new(vec![img]);

    // A file to a trailing-slash dest, to an existing dir, to a new name, relative to WORKDIR.
    let (r, p) = run(&e, &req(&src, &["a.txt"], "/new/"), &view);
    r.unwrap();
    let f = p.rootfs().join("new/a.txt");
    let m = fs::metadata(&f).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o751, 0, 0));
    assert_eq!(m.mtime(), 1_000_000);
    // the created parent: 0755 root
    let pm = fs::metadata(p.rootfs().join("new")).unwrap();
    assert_eq!(pm.mode() & 0o7777, 0o755);

    let (r, p) = run(&e, &req(&src, &["a.txt"], "/existing"), &view);
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("existing/a.txt")), "A");
    // copied up with its own metadata
    let m = fs::metadata(p.rootfs().join("existing")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o700, 7, 8, 42)
    );

    let mut rq = req(&src, &["a.txt"], "renamed");
    rq.workdir = "/work/dir".into();
    let (r, p) = run(&e, &rq, &view);
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("work/dir/renamed")), "A");

    let mut rq = req(&src, &["a.txt"], ".");
    rq.workdir = "/w".into();
    let (r, p) = run(&e, &rq, &view);
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("w/a.txt")), "A");

    // A directory's contents, with or without the slash.
    for dest in ["/app", "/app/"] {
        let (r, p) = run(&e, &req(&src, &["dir"], dest), &view);
        let st = r.unwrap();
        assert_eq!(st.files, 2);
        assert_eq!(read(&p.rootfs().join("app/x")), "X");
        assert_eq!(read(&p.rootfs().join("app/sub/y")), "Y");
        assert!(!p.rootfs().join("app/dir").exists());
        assert!(p.commit().is_ok());
    }

    // Several sources need a slash.
    let (r, _p) = run(&e, &req(&src, &["a.txt", "b.txt"], "/multi"), &view);
    assert_eq!(
        r.unwrap_err().to_string(),
        "When using COPY with more than one source file, the destination must be a directory and end with a /"
    );
    let (r, _p) = run(&e, &req(&src, &["*.txt"], "/multi"), &view);
    assert!(r.is_err());
    let (r, p) = run(&e, &req(&src, &["*.txt"], "/multi/"), &view);
    assert_eq!(r.unwrap().files, 2);
    assert_eq!(read(&p.rootfs().join("multi/b.txt")), "B");
    // A wildcard that matches nothing copies nothing (BuildKit).
    let (r, p) = run(&e, &req(&src, &["*.none"], "/z/"), &view);
    assert_eq!(r.unwrap().files, 0);
    assert!(p.is_empty().unwrap());
    // Missing and escaping sources.
    let (r, _p) = run(&e, &req(&src, &["missing"], "/"), &view);
    assert_eq!(r.unwrap_err().to_string(), "\"/missing\": not found");
    let (r, _p) = run(&e, &req(&src, &["../etc/passwd"], "/"), &view);
    assert_eq!(
        r.unwrap_err().to_string(),
        "forbidden path outside the build context: ../etc/passwd"
    );
}

#[test]
fn symlinks_in_sources_and_destinations() {
    let e = env();
    let ctx = e.ctx(&[("real/f", "F"), ("t.txt", "T"), ("tree/", "")]);
    symlink("/real", ctx.join("abs-link")).unwrap();
    symlink("../../../../t.txt", ctx.join("climb")).unwrap();
    symlink("nowhere", ctx.join("dangling")).unwrap();
    symlink("../t.txt", ctx.join("tree/inner-link")).unwrap();
    let src = DirTree::new(&ctx);

    let img = e.layer("img");
    fs::create_dir_all(img.join("target/deep")).unwrap();
    symlink("/target", img.join("linkdir")).unwrap();
    symlink("../../../../target/deep", img.join("climbdir")).unwrap();
    let view = LayerView::new(vec![img]);

    // A named symlink is followed inside the source root; its name is kept.
    let (r, p) = run(&e, &req(&src, &["abs-link/f", "climb"], "/out/"), &view);
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("out/f")), "F");
    assert_eq!(read(&p.rootfs().join("out/climb")), "T");
    let (r, _p) = run(&e, &req(&src, &["dangling"], "/out/"), &view);
    assert!(r.unwrap_err().to_string().contains("not found"));
    // Links inside a copied directory are copied as links.
    let (r, p) = run(&e, &req(&src, &["tree"], "/tree/"), &view);
    r.unwrap();
    assert_eq!(
        fs::read_link(p.rootfs().join("tree/inner-link")).unwrap(),
        PathBuf::from("../t.txt")
    );
    // The destination resolves inside the image.
    let (r, p) = run(&e, &req(&src, &["t.txt"], "/linkdir/"), &view);
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("target/t.txt")), "T");
    assert!(fs::symlink_metadata(p.rootfs().join("linkdir")).is_err());
    let (r, p) = run(&e, &req(&src, &["t.txt"], "/climbdir/"), &view);
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("target/deep/t.txt")), "T");
    // --link: the image is not looked at; /linkdir is a fresh directory.
    let mut rq = req(&src, &["t.txt"], "/linkdir/");
    rq.link = true;
    let (r, p) = run(&e, &rq, &view);
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("linkdir/t.txt")), "T");
    assert!(!p.rootfs().join("target").exists());
    // A source directory over an image symlink is BuildKit's error.
    let (r, _p) = run(&e, &req(&src, &["real"], "/"), &{
        let l = e.layer("img2");
        symlink("/x", l.join("f")).unwrap();
        fs::create_dir_all(l.join("x")).unwrap();
        LayerView::new(vec![l])
    });
    // "real" holds a file f; the image has a symlink f: the file replaces the link.
    r.unwrap();
    let l3 = e.layer("img3");
    symlink("/x", l3.join("real")).unwrap();
    let ctx2 = e.path("ctx2");
    fs::create_dir_all(ctx2.join("top/real")).unwrap();
    let src2 = DirTree::new(&ctx2);
    let (r, _p) = run(&e, &req(&src2, &["top"], "/"), &LayerView::new(vec![l3]));
    assert_eq!(
        r.unwrap_err().to_string(),
        "cannot copy to non-directory: /real"
    );
}

#[test]
fn owners_modes_parents_exclude() {
    let e = env();
    let ctx = e.ctx(&[
        ("src/a/keep.rs", "k"),
        ("src/a/skip.log", "s"),
        ("src/b/c/deep.rs", "d"),
        ("x/y/z.txt", "z"),
    ]);
    fs::set_permissions(ctx.join("src/a/keep.rs"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(ctx.join("x/y"), fs::Permissions::from_mode(0o711)).unwrap();
    let src = DirTree::new(&ctx);
    let view = LayerView::empty();

    let mut rq = req(&src, &["src"], "/o/");
    rq.chown = Some((1000, 1001));
    rq.chmod = Some(Chmod::parse("u+x,g-r,o=").unwrap());
    rq.exclude = vec!["**/*.log".into()];
    let (r, p) = run(&e, &rq, &view);
    r.unwrap();
    let m = fs::metadata(p.rootfs().join("o/a/keep.rs")).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid(), m.gid()), (0o700, 1000, 1001));
    assert!(!p.rootfs().join("o/a/skip.log").exists());
    let pm = fs::metadata(p.rootfs().join("o")).unwrap();
    assert_eq!((pm.uid(), pm.gid()), (1000, 1001));
    let dm = fs::metadata(p.rootfs().join("o/b/c")).unwrap();
    assert_eq!(dm.mode() & 0o777, 0o710);

    let mut rq = req(&src, &["src"], "/o/");
    rq.chmod = Some(Chmod::parse("0640").unwrap());
    let (r, p) = run(&e, &rq, &view);
    r.unwrap();
    assert_eq!(
        fs::metadata(p.rootfs().join("o/b/c/deep.rs"))
            .unwrap()
            .mode()
            & 0o7777,
        0o640
    );
    assert!(Chmod::parse("u+q").is_err());
    assert!(Chmod::parse("17777").is_err());

    // --parents: the path is kept, below the /./ pivot when there is one.
    let mut rq = req(&src, &["x/y/z.txt", "./src/./b/c/deep.rs"], "/p/");
    rq.parents = true;
    let (r, p) = run(&e, &rq, &view);
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("p/x/y/z.txt")), "z");
    assert_eq!(
        fs::metadata(p.rootfs().join("p/x/y")).unwrap().mode() & 0o777,
        0o711
    );
    assert_eq!(read(&p.rootfs().join("p/b/c/deep.rs")), "d");
    assert!(!p.rootfs().join("p/src").exists());
}

#[test]
fn overwrite_and_replace_like_docker() {
    let e = env();
    let ctx = e.ctx(&[("n/f", "new"), ("n/d/inner", "i"), ("n/wasdir", "file now")]);
    let src = DirTree::new(&ctx);
    let img = e.layer("img");
    fs::create_dir_all(img.join("t/wasdir/old")).unwrap();
    fs::write(img.join("t/f"), "old").unwrap();
    fs::write(img.join("t/d"), "a file").unwrap();
    let view = LayerView::new(vec![img]);
    // n/d is a directory, /t/d a file: BuildKit refuses.
    let (r, _p) = run(&e, &req(&src, &["n"], "/t"), &view);
    assert_eq!(
        r.unwrap_err().to_string(),
        "cannot copy to non-directory: /t/d"
    );
    fs::remove_dir_all(ctx.join("n/d")).unwrap();
    let (r, p) = run(&e, &req(&src, &["n"], "/t"), &view);
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("t/f")), "new");
    // a file replaces a directory: the layer holds the file, hiding the image's dir
    assert_eq!(read(&p.rootfs().join("t/wasdir")), "file now");
    let info = p.commit().unwrap();
    let tree = e.store.layer_rootfs(&info.diff_id);
    let merged = LayerView::new(vec![tree, e.path("img")]);
    assert_eq!(merged.read_file("/t/f").unwrap().unwrap(), b"new");
    assert!(!merged.stat("t/wasdir").unwrap().unwrap().is_dir());
}

#[test]
fn warm_copy_only_links_objects() {
    let e = env();
    let root = e.path("ctx");
    for d in 0..20 {
        fs::create_dir_all(root.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            fs::write(root.join(format!("d{d}/f{f}")), format!("{d}-{f}")).unwrap();
        }
    }
    let src = DirTree::with_hashes(&root).unwrap();
    let view = LayerView::empty();
    let (r, p) = run(&e, &req(&src, &["."], "/app/"), &view);
    let cold = r.unwrap();
    assert_eq!((cold.files, cold.linked, cold.new_objects), (2000, 0, 2000));
    p.commit().unwrap();
    let before = e.store.list_objects().unwrap().len();
    let (r, p) = run(&e, &req(&src, &["."], "/app/"), &view);
    let warm = r.unwrap();
    assert_eq!(
        (warm.files, warm.linked, warm.new_objects, warm.copied_bytes),
        (2000, 2000, 0, 0)
    );
    p.commit().unwrap();
    assert_eq!(e.store.list_objects().unwrap().len(), before);
    // A chown names other objects: they are written once.
    let mut rq = req(&src, &["."], "/app/");
    rq.chown = Some((1, 1));
    let (r, _p) = run(&e, &rq, &view);
    assert_eq!(r.unwrap().new_objects, 2000);
}

#[test]
fn layer_view_sources_keep_owners_and_whiteouts_hide() {
    let e = env();
    let base = e.layer("stage-base");
    fs::create_dir_all(base.join("out")).unwrap();
    fs::write(base.join("out/bin"), "elf").unwrap();
    fs::write(base.join("out/deleted"), "gone").unwrap();
    std::os::unix::fs::chown(base.join("out/bin"), Some(33), Some(44)).unwrap();
    let top = e.layer("stage-top");
    fs::create_dir_all(top.join("out")).unwrap();
    nix::sys::stat::mknod(
        &top.join("out/deleted"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .unwrap();
    let stage = LayerView::new(vec![top, base]);
    let (r, p) = run(
        &e,
        &req(&stage, &["/out"], "/usr/local/"),
        &LayerView::empty(),
    );
    assert_eq!(r.unwrap().files, 1);
    let m = fs::metadata(p.rootfs().join("usr/local/bin")).unwrap();
    assert_eq!((m.uid(), m.gid()), (33, 44));
    assert!(!p.rootfs().join("usr/local/deleted").exists());
}

#[test]
fn workdir_mkdir_p() {
    let e = env();
    let img = e.layer("img");
    fs::create_dir_all(img.join("srv")).unwrap();
    set_mtime(&img.join("srv"), 77);
    symlink("/srv", img.join("s")).unwrap();
    let view = LayerView::new(vec![img]);
    let store = e.store.clone();
    let lease = store.lease().unwrap();
    let p = store.begin_layer(&lease).unwrap();
    mkdir_p(&view, &p, &store, "/s/app/data", 5, 6).unwrap();
    let m = fs::metadata(p.rootfs().join("srv/app/data")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 5, 6));
    assert_eq!(fs::metadata(p.rootfs().join("srv")).unwrap().mtime(), 77);
    let p2 = store.begin_layer(&lease).unwrap();
    mkdir_p(&view, &p2, &store, "/srv", 0, 0).unwrap();
    assert!(p2.is_empty().unwrap());
    fs::write(e.path("img/file"), "").unwrap();
    assert!(mkdir_p(&view, &p2, &store, "/file/x", 0, 0).is_err());
}

#[test]
fn sources_digest_ignores_mtime_but_not_content() {
    let e = env();
    let ctx = e.ctx(&[("a/x", "1"), ("a/y.log", "2"), ("b", "3")]);
    let tree = DirTree::new(&ctx);
    let s = vec!["a".to_string()];
    let d1 = sources_digest(&tree, &s, &[]).unwrap();
    set_mtime(&ctx.join("a/x"), 5);
    assert_eq!(sources_digest(&tree, &s, &[]).unwrap(), d1);
    // outside the selection: no effect
    fs::write(ctx.join("b"), "changed").unwrap();
    assert_eq!(sources_digest(&tree, &s, &[]).unwrap(), d1);
    let ex = vec!["*.log".to_string()];
    let d2 = sources_digest(&tree, &s, &ex).unwrap();
    fs::write(ctx.join("a/y.log"), "changed").unwrap();
    assert_eq!(sources_digest(&tree, &s, &ex).unwrap(), d2);
    assert_ne!(sources_digest(&tree, &s, &[]).unwrap(), d1);
    fs::write(ctx.join("a/x"), "changed").unwrap();
    assert_ne!(sources_digest(&tree, &s, &ex).unwrap(), d2);
    assert!(sources_digest(&tree, &["nope".to_string()], &[]).is_err());
}

/// A tar with raw names (the `tar` crate refuses `..` when building headers).
fn raw_tar(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_mode(if *kind == b'5' { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(123);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn add_req<'a>(src: &'a dyn SourceTree, sources: &[&str], dest: &str) -> CopyRequest<'a> {
    let mut r = req(src, sources, dest);
    r.is_add = true;
    r
}

#[test]
fn add_extracts_compressed_archives_by_content() {
    let e = env();
    let ctx = e.ctx(&[]);
    let tar = raw_tar(&[
        ("dir/", b'5', "", b""),
        ("dir/file", b'0', "", b"content"),
        ("dir/hard", b'1', "dir/file", b""),
        ("dir/sym", b'2', "file", b""),
        ("/abs/inside", b'0', "", b"abs"),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    fs::write(ctx.join("archive.bin"), gz.finish().unwrap()).unwrap();
    fs::write(
        ctx.join("a.tar.zst"),
        zstd::encode_all(&tar[..], 1).unwrap(),
    )
    .unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&tar).unwrap();
    fs::write(ctx.join("a.txz"), xz.finish().unwrap()).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&tar).unwrap();
    fs::write(ctx.join("a.tbz"), bz.finish().unwrap()).unwrap();
    fs::write(ctx.join("plain.tar"), &tar).unwrap();
    fs::write(ctx.join("not-a-tar.gz"), "hello").unwrap();
    let src = DirTree::new(&ctx);
    for name in ["archive.bin", "a.tar.zst", "a.txz", "a.tbz", "plain.tar"] {
        let (r, p) = run(&e, &add_req(&src, &[name], "/x"), &LayerView::empty());
        let st = r.unwrap();
        assert_eq!(st.extracted, 5, "{name}");
        assert_eq!(read(&p.rootfs().join("x/dir/file")), "content");
        assert_eq!(read(&p.rootfs().join("x/dir/hard")), "content");
        assert_eq!(read(&p.rootfs().join("x/abs/inside")), "abs");
        assert_eq!(
            fs::read_link(p.rootfs().join("x/dir/sym")).unwrap(),
            PathBuf::from("file")
        );
        p.commit().unwrap();
    }
    let (r, p) = run(
        &e,
        &add_req(&src, &["not-a-tar.gz"], "/y/"),
        &LayerView::empty(),
    );
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("y/not-a-tar.gz")), "hello");
    // COPY never extracts.
    let (r, p) = run(&e, &req(&src, &["plain.tar"], "/z/"), &LayerView::empty());
    r.unwrap();
    assert!(p.rootfs().join("z/plain.tar").is_file());
    let mut rq = add_req(&src, &["plain.tar"], "/z/");
    rq.unpack = false;
    let (r, p) = run(&e, &rq, &LayerView::empty());
    r.unwrap();
    assert!(p.rootfs().join("z/plain.tar").is_file());
}

#[test]
fn add_tar_bombs_never_write_outside() {
    let e = env();
    let ctx = e.ctx(&[]);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "dotdot",
            raw_tar(&[("../../escape", b'0', "", b"x")]),
            false,
        ),
        (
            "dotdot-mid",
            raw_tar(&[("a/../../escape", b'0', "", b"x")]),
            false,
        ),
        (
            "rel-symlink",
            raw_tar(&[("l", b'2', "../../..", b""), ("l/escape", b'0', "", b"x")]),
            false,
        ),
        (
            "hardlink-out",
            raw_tar(&[("h", b'1', "../../etc/passwd", b"")]),
            false,
        ),
        // Absolute names and absolute link targets stay inside the destination.
        (
            "abs-symlink",
            raw_tar(&[("l", b'2', "/", b""), ("l/escape", b'0', "", b"x")]),
            true,
        ),
        ("abs", raw_tar(&[("/escape", b'0', "", b"x")]), true),
        ("device", raw_tar(&[("dev", b'3', "", b"")]), false),
    ];
    for (name, data, ok) in cases {
        fs::write(ctx.join(format!("{name}.tar")), data).unwrap();
        let src = DirTree::new(&ctx);
        let (r, p) = run(
            &e,
            &add_req(&src, &[&format!("{name}.tar")], "/dst/sub"),
            &LayerView::empty(),
        );
        assert_eq!(r.is_ok(), ok, "{name}: {r:?}");
        let root = p.rootfs();
        assert!(!root.join("escape").exists(), "{name}");
        assert!(!root.join("dst/escape").exists(), "{name}");
        assert!(!e.path("escape").exists(), "{name}");
        if ok {
            assert_eq!(read(&root.join("dst/sub/escape")), "x", "{name}");
        }
    }
}

/// A one-shot HTTP server on localhost: answers every request with `status`, `headers`, `body`.
fn serve(status: &'static str, headers: &'static str, body: &'static [u8]) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_urls() {
    let e = env();
    let ctx = e.ctx(&[]);
    let src = DirTree::new(&ctx);
    let base = serve(
        "200 OK",
        "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n",
        b"payload",
    );
    let url = format!("{base}/files/tool.sh");
    let (r, p) = run(&e, &add_req(&src, &[&url], "/opt/"), &LayerView::empty());
    assert_eq!(r.unwrap().downloaded_bytes, 7);
    let f = p.rootfs().join("opt/tool.sh");
    let m = fs::metadata(&f).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o600, 1_445_412_480));
    assert_eq!(read(&f), "payload");
    // explicit file name, checksum ok
    let mut rq = add_req(&src, &[&url], "/opt/named");
    rq.checksum = Some(format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"payload"))
    ));
    let (r, p) = run(&e, &rq, &LayerView::empty());
    r.unwrap();
    assert_eq!(read(&p.rootfs().join("opt/named")), "payload");
    // checksum mismatch
    let mut rq = add_req(&src, &[&url], "/opt/");
    rq.checksum = Some(format!("sha256:{}", "0".repeat(64)));
    let (r, p) = run(&e, &rq, &LayerView::empty());
    assert!(r.unwrap_err().to_string().starts_with("digest mismatch"));
    assert!(p.is_empty().unwrap());
    // HTTP errors
    let missing = serve("404 Not Found", "", b"no");
    let (r, _p) = run(
        &e,
        &add_req(&src, &[&format!("{missing}/x")], "/"),
        &LayerView::empty(),
    );
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("invalid response status 404"), "{msg}");
}

/// Measures a COPY of `$STRATA_BENCH_SRC` (the bench's big/src) into a pending layer: cold
/// (objects missing), warm (objects present: hardlinks only) and the layer commit.
/// `STRATA_BENCH_SRC=/tmp/bench-copy/big/src cargo test --release -p strata-executor bench_copy -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: needs STRATA_BENCH_SRC"]
fn bench_copy() {
    let Ok(dir) = std::env::var("STRATA_BENCH_SRC") else {
        return;
    };
    let e = env();
    let t = std::time::Instant::now();
    let src = DirTree::with_hashes(Path::new(&dir)).unwrap();
    println!("index (hash all files): {:.3} s", t.elapsed().as_secs_f64());
    let view = LayerView::empty();
    for round in ["cold", "warm", "warm"] {
        let t = std::time::Instant::now();
        let (r, p) = run(&e, &req(&src, &["."], "/app/"), &view);
        let st = r.unwrap();
        let copy_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let info = p.commit().unwrap();
        println!(
            "{round}: copy {copy_s:.3} s, commit {:.3} s; files {} linked {} copied {} MB new objects {}; layer {} entries",
            t.elapsed().as_secs_f64(),
            st.files,
            st.linked,
            st.copied_bytes >> 20,
            st.new_objects,
            info.entries
        );
    }
}
