//! The image commands as a user runs them, checked against the real interop tools: a busybox
//! rootfs (from Debian's busybox-static) is imported, listed, saved in both formats, read by
//! `skopeo`, unpacked by `umoci` (the tree must equal the input: modes, owners, symlinks,
//! hardlinks, content) and loaded by `podman`; archives written by `skopeo` load and re-save
//! with the same diffIDs; then tag, rmi, inspect, history, system df, prune and verify.
//!
//! The tools are required, not optional: when one is missing the test fails and says how to
//! install it (`.ci/run` does, in CI). The tests run as root (ownership, umoci, podman).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{fresh_dir, podman, run, strata};

/// The tools these tests drive, as `.ci/run` installs them (package, binary).
const TOOLS: [(&str, &str); 4] = [
    ("busybox-static", "/bin/busybox"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("podman", "podman"),
];

/// Fails (never skips) when a required tool is not installed.
fn require_tools() {
    for (package, bin) in TOOLS {
        let found = if bin.starts_with('/') {
            Path::new(bin).exists()
        } else {
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
                .unwrap_or(false)
        };
        assert!(
            found,
            "{bin} (Debian package {package}) is missing: run the install step of .ci/run \
             (apt-get install -y busybox-static skopeo umoci podman); CI installs them"
        );
    }
}

/// Runs a command that must succeed; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// `strata --root ROOT ARGS...`, which must succeed; returns its stdout.
fn st(root: &Path, args: &[&str]) -> String {
    ok(strata(root).args(args))
}

/// Builds a busybox root filesystem: the binary, a symlink per applet, a hardlink, and files
/// and directories with assorted modes and owners.
fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "etc", "home/user", "tmp", "usr/bin", "var/empty"] {
        fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy busybox");
    chmod(&dir.join("bin/busybox"), 0o755);
    let list = ok(Command::new("/bin/busybox").arg("--list"));
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let link = dir.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", &link).expect("applet symlink");
        }
    }
    symlink("../../bin/busybox", dir.join("usr/bin/env-link")).expect("symlink");
    symlink("/nonexistent/target", dir.join("usr/bin/dangling")).expect("symlink");
    fs::hard_link(
        dir.join("bin/busybox"),
        dir.join("usr/bin/busybox-hardlink"),
    )
    .expect("link");
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
    )
    .expect("write");
    chmod(&dir.join("etc/passwd"), 0o644);
    fs::write(dir.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").expect("write");
    chmod(&dir.join("etc/shadow"), 0o640);
    chown(&dir.join("etc/shadow"), 0, 42);
    fs::write(dir.join("home/user/notes.txt"), "hello\n").expect("write");
    chmod(&dir.join("home/user/notes.txt"), 0o600);
    chown(&dir.join("home/user/notes.txt"), 1000, 1000);
    chmod(&dir.join("home/user"), 0o750);
    chown(&dir.join("home/user"), 1000, 1000);
    fs::write(dir.join("home/user/empty"), "").expect("write");
    chown(&dir.join("home/user/empty"), 1000, 100);
    fs::write(dir.join("usr/bin/setuid-tool"), "#!/bin/sh\necho hi\n").expect("write");
    chmod(&dir.join("usr/bin/setuid-tool"), 0o4755);
    chmod(&dir.join("tmp"), 0o1777);
    chmod(&dir.join("var/empty"), 0o555);
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).expect("chown (tests run as root)");
}

/// What matters about one entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Symlink target or file content hash (sha256 via the file bytes' length + a checksum).
    detail: String,
}

/// Walks a tree: path -> entry, and the hardlink groups (sets of paths sharing an inode).
fn snapshot(root: &Path) -> (BTreeMap<String, Entry>, Vec<Vec<String>>) {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort();
        for name in names {
            let rel_path = rel.join(&name);
            let path = root.join(&rel_path);
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let key = rel_path.to_string_lossy().into_owned();
            let ft = meta.file_type();
            let (kind, detail) = if ft.is_symlink() {
                let target = fs::read_link(&path).expect("readlink");
                ("symlink", target.to_string_lossy().into_owned())
            } else if ft.is_dir() {
                stack.push(rel_path.clone());
                ("dir", String::new())
            } else if ft.is_file() {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(key.clone());
                let bytes = fs::read(&path).expect("read");
                ("file", content_id(&bytes))
            } else {
                ("other", format!("rdev {}", meta.rdev()))
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                meta.mode() & 0o7777
            };
            entries.insert(
                key,
                Entry {
                    kind,
                    mode,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    detail,
                },
            );
        }
    }
    let mut groups: Vec<Vec<String>> = inodes
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    (entries, groups)
}

/// A content fingerprint (length + FNV-1a 64), enough to tell files apart in a test.
fn content_id(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}:{h:016x}", bytes.len())
}

/// The sha256 of a file, via coreutils' sha256sum.
fn sha256_file(p: &Path) -> String {
    let out = ok(Command::new("sha256sum").arg(p));
    format!(
        "sha256:{}",
        out.split_whitespace().next().unwrap_or_default()
    )
}

/// `rootfs.diff_ids` of an image as `strata inspect` reports it.
fn strata_diff_ids(root: &Path, image: &str) -> Vec<String> {
    let v = inspect_one(root, image);
    v["RootFS"]["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no RootFS.Layers in {v}"))
        .iter()
        .map(|d| d.as_str().unwrap_or_default().to_string())
        .collect()
}

fn inspect_one(root: &Path, image: &str) -> serde_json::Value {
    let out = st(root, &["inspect", image]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    let arr = v.as_array().expect("inspect prints an array");
    assert_eq!(arr.len(), 1, "{out}");
    arr[0].clone()
}

/// `rootfs.diff_ids` of an archive, as skopeo reads its config.
fn skopeo_diff_ids(transport: &str) -> Vec<String> {
    let out = ok(Command::new("skopeo").args(["inspect", "--config", transport]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo config JSON");
    v["rootfs"]["diff_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no rootfs.diff_ids in {v}"))
        .iter()
        .map(|d| d.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Splits a table line into its cells (docker separates columns by at least 3 spaces).
fn cells(line: &str) -> Vec<String> {
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Import, list, save in both formats; skopeo, umoci and podman read the archives; the
/// unpacked tree equals the input.
#[test]
fn busybox_round_trips_through_skopeo_umoci_and_podman() {
    require_tools();
    let work = fresh_dir();
    let w = work.path();
    let root = w.join("root");
    let rootfs = w.join("rootfs");
    busybox_rootfs(&rootfs);
    let tarball = w.join("rootfs.tar");
    ok(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));

    // import prints the image ID.
    let id = st(
        &root,
        &[
            "import",
            "-c",
            r#"CMD ["sh"]"#,
            "-m",
            "imported busybox",
            tarball.to_str().expect("utf-8 path"),
            "busybox:test",
        ],
    );
    let id = id.trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import printed {id:?}"
    );
    // The layer is the tarball byte for byte.
    assert_eq!(
        strata_diff_ids(&root, "busybox:test"),
        [sha256_file(&tarball)]
    );

    // images shows it, docker style.
    let listing = st(&root, &["images"]);
    let mut lines = listing.lines();
    assert_eq!(
        cells(lines.next().unwrap_or_default()),
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        "{listing}"
    );
    let row = cells(lines.next().unwrap_or_default());
    assert_eq!(row[0..3], ["busybox", "test", &id[7..19]], "{listing}");
    assert!(row[4].ends_with("MB"), "size column: {listing}");
    assert_eq!(st(&root, &["images", "-q"]).trim(), &id[7..19]);
    assert_eq!(st(&root, &["images", "-q", "--no-trunc"]).trim(), id);
    assert_eq!(
        st(
            &root,
            &["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]
        )
        .trim(),
        "busybox:test"
    );

    // save, both formats.
    let docker_tar = w.join("busybox-docker.tar");
    let oci_tar = w.join("busybox-oci.tar");
    st(
        &root,
        &[
            "save",
            "-o",
            docker_tar.to_str().expect("utf-8"),
            "busybox:test",
        ],
    );
    st(
        &root,
        &[
            "save",
            "--format",
            "oci",
            "-o",
            oci_tar.to_str().expect("utf-8"),
            "busybox:test",
        ],
    );
    // save to stdout (a pipe here) works too and gives the same archive.
    let out = strata(&root)
        .args(["save", "busybox:test"])
        .output()
        .expect("run strata save");
    assert!(out.status.success());
    assert_eq!(out.stdout, fs::read(&docker_tar).expect("read archive"));

    // skopeo reads both.
    let docker_transport = format!("docker-archive:{}", docker_tar.display());
    let oci_transport = format!("oci-archive:{}", oci_tar.display());
    let inspected = ok(Command::new("skopeo").args(["inspect", &docker_transport]));
    let v: serde_json::Value = serde_json::from_str(&inspected).expect("skopeo JSON");
    assert_eq!(v["Os"], "linux", "{inspected}");
    assert_eq!(v["Architecture"], "amd64", "{inspected}");
    assert_eq!(skopeo_diff_ids(&docker_transport), [sha256_file(&tarball)]);
    assert_eq!(skopeo_diff_ids(&oci_transport), [sha256_file(&tarball)]);
    let layout = w.join("layout");
    ok(Command::new("skopeo").args([
        "copy",
        &oci_transport,
        &format!("oci:{}:latest", layout.display()),
    ]));

    // strata loads the layout directory skopeo wrote.
    let from_layout = w.join("root3");
    let loaded = st(
        &from_layout,
        &["load", "-i", layout.to_str().expect("utf-8")],
    );
    assert!(loaded.starts_with("Loaded image"), "{loaded}");
    assert_eq!(
        st(&from_layout, &["images", "-q", "--no-trunc"]).trim(),
        id,
        "same config, same image ID"
    );

    // umoci unpacks the layout into the same tree.
    let bundle = w.join("bundle");
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle));
    let (want, want_links) = snapshot(&rootfs);
    let (got, got_links) = snapshot(&bundle.join("rootfs"));
    for (path, entry) in &want {
        assert_eq!(
            got.get(path),
            Some(entry),
            "{path} differs after umoci unpack"
        );
    }
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(extra.is_empty(), "unexpected entries: {extra:?}");
    assert_eq!(got_links, want_links, "hardlink groups");
    assert!(!want_links.is_empty(), "the fixture has a hardlink");

    // podman loads both archives.
    for (i, archive) in [&docker_tar, &oci_tar].into_iter().enumerate() {
        let store = w.join(format!("podman-{i}"));
        let out = ok(podman(&store).arg("load").arg("-i").arg(archive));
        assert!(out.contains("Loaded image"), "podman load said: {out}");
    }

    // Archives made by skopeo load, and re-save with the same diffIDs.
    let want_ids = strata_diff_ids(&root, "busybox:test");
    let sk_docker = w.join("skopeo-docker.tar");
    let sk_oci = w.join("skopeo-oci.tar");
    ok(Command::new("skopeo").args([
        "copy",
        &oci_transport,
        &format!("docker-archive:{}:skopeo/docker:v1", sk_docker.display()),
    ]));
    ok(Command::new("skopeo").args([
        "copy",
        &docker_transport,
        &format!("oci-archive:{}:v2", sk_oci.display()),
    ]));
    let other = w.join("root2");
    let loaded = st(&other, &["load", "-i", sk_docker.to_str().expect("utf-8")]);
    assert_eq!(loaded.trim(), "Loaded image: skopeo/docker:v1");
    assert_eq!(strata_diff_ids(&other, "skopeo/docker:v1"), want_ids);
    let loaded = ok(strata(&other)
        .args(["load"])
        .stdin(fs::File::open(&sk_oci).expect("open archive")));
    assert!(loaded.starts_with("Loaded image"), "{loaded}");
    for (format, name) in [("docker", "resaved-docker.tar"), ("oci", "resaved-oci.tar")] {
        let resaved = w.join(name);
        st(
            &other,
            &[
                "save",
                "--format",
                format,
                "-o",
                resaved.to_str().expect("utf-8"),
                "skopeo/docker:v1",
            ],
        );
        let transport = format!(
            "{}:{}",
            if format == "docker" {
                "docker-archive"
            } else {
                "oci-archive"
            },
            resaved.display()
        );
        assert_eq!(skopeo_diff_ids(&transport), want_ids, "{format}");
    }
    // zstd layers: skopeo reads them too.
    let zstd_tar = w.join("busybox-zstd.tar");
    st(
        &root,
        &[
            "save",
            "--format",
            "oci",
            "--compression",
            "zstd",
            "-o",
            zstd_tar.to_str().expect("utf-8"),
            "busybox:test",
        ],
    );
    assert_eq!(
        skopeo_diff_ids(&format!("oci-archive:{}", zstd_tar.display())),
        want_ids
    );
    assert_eq!(
        st(&root, &["system", "verify"]).trim(),
        "store is consistent"
    );
    assert_eq!(
        st(&other, &["system", "verify"]).trim(),
        "store is consistent"
    );
}

/// A small image from a few files (no tools needed).
fn small_image(root: &Path, work: &Path, name: &str, content: &str) -> String {
    let dir = work.join(format!("src-{}", name.replace([':', '/'], "_")));
    fs::create_dir_all(dir.join("etc")).expect("mkdir");
    fs::write(dir.join("etc/hello"), content).expect("write");
    fs::write(
        dir.join("etc/shared"),
        "the same in every image\n".repeat(1000),
    )
    .expect("write");
    let tarball = work.join(format!("{}.tar", name.replace([':', '/'], "_")));
    ok(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));
    st(root, &["import", tarball.to_str().expect("utf-8"), name])
        .trim()
        .to_string()
}

/// tag, rmi, inspect, history, filters and formats, df, prune, verify, exit codes.
#[test]
fn image_commands_behave_like_docker() {
    let work = fresh_dir();
    let w = work.path();
    let root = w.join("root");
    let a = small_image(&root, w, "alpha:1", "a\n");
    let b = small_image(&root, w, "myorg/beta:2", "b\n");

    // import from stdin, gzip-compressed.
    let gz = w.join("alpha.tar.gz");
    let gz_bytes = Command::new("gzip")
        .arg("-c")
        .arg(w.join("alpha_1.tar"))
        .output()
        .expect("run gzip")
        .stdout;
    fs::write(&gz, gz_bytes).expect("write gz");
    let from_stdin = ok(strata(&root)
        .args(["import", "-", "gz:1"])
        .stdin(fs::File::open(&gz).expect("open gz")));
    assert!(from_stdin.starts_with("sha256:"), "{from_stdin}");
    assert_eq!(
        strata_diff_ids(&root, "gz:1"),
        strata_diff_ids(&root, "alpha:1"),
        "the same tar, decompressed: the same layer"
    );
    assert_eq!(
        st(&root, &["rmi", "gz:1"]),
        format!("Untagged: gz:1\nDeleted: {}\n", from_stdin.trim())
    );

    // tag: both names list, the same ID.
    assert_eq!(st(&root, &["tag", "alpha:1", "alpha:latest"]), "");
    let names = st(
        &root,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    );
    for want in [
        format!("alpha:1 {}", &a[7..19]),
        format!("alpha:latest {}", &a[7..19]),
        format!("myorg/beta:2 {}", &b[7..19]),
    ] {
        assert!(names.lines().any(|l| l == want), "{want} not in:\n{names}");
    }

    // filters
    let refs = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
        v.extend_from_slice(args);
        let mut out: Vec<String> = st(&root, &v).lines().map(str::to_string).collect();
        out.sort();
        out
    };
    assert_eq!(
        refs(&["-f", "reference=alpha"]),
        ["alpha:1", "alpha:latest"]
    );
    assert_eq!(refs(&["-f", "reference=alpha:1"]), ["alpha:1"]);
    assert_eq!(refs(&["-f", "reference=*/*"]), ["myorg/beta:2"]);
    assert_eq!(refs(&["alpha"]), ["alpha:1", "alpha:latest"]);
    assert!(refs(&["-f", "dangling=true"]).is_empty());
    assert_eq!(refs(&["-f", "dangling=false"]).len(), 3);
    assert!(refs(&["-f", "label=nosuch"]).is_empty());
    let json = st(&root, &["images", "--format", "json", "alpha:1"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(v["Repository"], "alpha");
    assert_eq!(v["ID"], &a[7..19]);
    let digests = st(&root, &["images", "--digests"]);
    assert_eq!(
        cells(digests.lines().next().unwrap_or_default()),
        ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    );

    // inspect: a docker-shaped JSON array.
    let v = inspect_one(&root, "alpha:1");
    assert_eq!(v["Id"], a.as_str(), "{v}");
    let tags: Vec<&str> = v["RepoTags"]
        .as_array()
        .expect("RepoTags")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        tags.contains(&"alpha:1") && tags.contains(&"alpha:latest"),
        "{v}"
    );
    assert_eq!(v["Os"], "linux");
    assert_eq!(
        st(&root, &["inspect", "-f", "{{.Id}}", &a[7..19]]).trim(),
        a
    );
    let (out, stdout, stderr) = run(strata(&root).args(["inspect", "alpha:1", "nosuch:image"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout)
            .expect("JSON")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(stderr.contains("error:"), "{stderr}");

    // history
    let hist = st(&root, &["history", "alpha:1"]);
    assert_eq!(
        cells(hist.lines().next().unwrap_or_default()),
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        "{hist}"
    );
    assert!(hist.lines().count() >= 2, "{hist}");
    assert!(st(&root, &["history", "-q", "alpha:1"]).lines().count() >= 1);

    // rmi: untag while other tags remain, then delete by short ID.
    assert_eq!(
        st(&root, &["rmi", "alpha:latest"]),
        "Untagged: alpha:latest\n"
    );
    let removed = st(&root, &["rmi", &b[7..19]]);
    assert_eq!(
        removed.lines().take(2).collect::<Vec<_>>(),
        [
            "Untagged: myorg/beta:2".to_string(),
            format!("Deleted: {b}")
        ],
        "{removed}"
    );
    let (out, _, stderr) = run(strata(&root).args(["rmi", "nosuch:image"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");

    // df: docker's columns and the dedup line.
    let df = st(&root, &["system", "df"]);
    assert_eq!(
        cells(df.lines().next().unwrap_or_default()),
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{df}"
    );
    assert!(df.lines().any(|l| l.starts_with("Images ")), "{df}");
    assert!(df.contains("Deduplication saved"), "{df}");
    assert!(st(&root, &["system", "df", "-v"]).contains("alpha"));

    // prune: refuses without -f when not interactive; with -f it removes the dangling image
    // (an import that lost its name to a newer one) and reclaims the deleted one.
    let old = small_image(&root, w, "delta:1", "d1\n");
    let new = small_image(&root, w, "delta:1", "d2\n");
    assert_ne!(old, new);
    let dangling = st(
        &root,
        &["images", "-q", "--no-trunc", "-f", "dangling=true"],
    );
    assert_eq!(dangling.trim(), old, "the first delta:1 is dangling");
    let (out, _, stderr) = run(strata(&root).args(["system", "prune"]).stdin(Stdio::null()));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("all dangling images"), "{stderr}");
    let pruned = st(&root, &["system", "prune", "-f"]);
    assert!(
        pruned.starts_with(&format!("Deleted Images:\ndeleted: {old}\n")),
        "{pruned}"
    );
    assert!(
        pruned
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("Total reclaimed space: "),
        "{pruned}"
    );
    let mut left: Vec<String> = st(&root, &["images", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    left.sort();
    let mut want = vec![a[7..19].to_string(), new[7..19].to_string()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(st(&root, &["rmi", "delta:1"]).lines().count(), 2);
    assert_eq!(
        st(&root, &["system", "verify"]).trim(),
        "store is consistent"
    );
    let pruned = st(&root, &["system", "prune", "-a", "-f"]);
    assert!(pruned.contains("untagged: alpha:1"), "{pruned}");
    assert_eq!(st(&root, &["images", "-q"]), "");
    assert_eq!(
        st(&root, &["system", "verify"]).trim(),
        "store is consistent"
    );

    // usage errors exit 125; failures exit 1.
    for args in [
        &["images", "-f", "novalue"][..],
        &["images", "--format", "{{.ID"],
        &["save"],
        &["tag", "only-one"],
    ] {
        let (out, _, stderr) = run(strata(&root).args(args));
        assert_eq!(out.status.code(), Some(125), "{args:?}: {stderr}");
    }
    let (out, _, stderr) = run(strata(&root).args(["images", "-f", "bogus=1"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid filter 'bogus'"), "{stderr}");
}

/// verify reports a flipped byte with the blob's path and exits 1.
#[test]
fn verify_reports_corruption() {
    let work = fresh_dir();
    let w = work.path();
    let root = w.join("root");
    let id = small_image(&root, w, "gamma:1", "c\n");
    let blob = root.join("blobs/sha256").join(&id[7..]);
    let mut bytes = fs::read(&blob).expect("read config blob");
    bytes[0] ^= 1;
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&blob, &bytes).expect("corrupt");
    let (out, stdout, stderr) = run(strata(&root).args(["system", "verify"]));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(&id[7..]), "{stdout}");
}
