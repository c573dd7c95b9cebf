//! A small, deterministic busybox root filesystem for build tests, made from Debian's
//! busybox-static (`/bin/busybox`). The same bytes every time: sorted entries, one fixed mtime,
//! numeric owners only, no user or group names in the headers.

use std::path::Path;

/// The mtime of every entry (2023-11-14T22:13:20Z).
const MTIME: u64 = 1_700_000_000;

/// Where the statically linked busybox is taken from.
pub const BUSYBOX: &str = "/bin/busybox";

/// The applets linked as `/bin/<name> -> busybox`.
const APPLETS: &[&str] = &[
    "[",
    "awk",
    "basename",
    "bunzip2",
    "bzip2",
    "cat",
    "chgrp",
    "chmod",
    "chown",
    "cmp",
    "cp",
    "cut",
    "date",
    "dd",
    "diff",
    "dirname",
    "du",
    "echo",
    "env",
    "expr",
    "false",
    "find",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "hostname",
    "id",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mkfifo",
    "mknod",
    "mktemp",
    "mv",
    "printf",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sha256sum",
    "sh",
    "sleep",
    "sort",
    "stat",
    "tail",
    "tar",
    "tee",
    "test",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "unxz",
    "wc",
    "whoami",
    "xargs",
    "xz",
    "zcat",
];

/// One entry of the rootfs.
enum Node {
    Dir(u32, u64, u64),
    File(u32, u64, u64, Vec<u8>),
    Symlink(&'static str),
}

/// Writes the busybox rootfs tar to `path`.
///
/// Layout: `/bin/busybox` and its applet symlinks; `/etc/passwd` (root, `user` 1000:1000,
/// `nobody`), `/etc/group` (root, `staff` gid 50 with `user` as supplementary member, `user`
/// 1000, `nogroup`); `/root` (0700), `/home/user` (owned by 1000), `/tmp` (1777), empty `/dev`,
/// `/proc`, `/sys`, `/usr/local/bin`, `/var`; and `/base` with files for deletion and whiteout
/// tests: `/base/keep`, `/base/gone`, `/base/dir/{a,sub/b}`, `/base/link -> keep` and the
/// group-owned `/base/staff.txt` (0:50, 0640).
pub fn busybox_tar(path: &Path) {
    let busybox = std::fs::read(BUSYBOX).expect("read /bin/busybox (install busybox-static)");
    let file = |mode, data: &str| Node::File(mode, 0, 0, data.as_bytes().to_vec());
    let dir = |mode| Node::Dir(mode, 0, 0);
    let mut nodes: Vec<(String, Node)> = vec![
        ("base".into(), dir(0o755)),
        ("base/dir".into(), dir(0o755)),
        ("base/dir/a".into(), file(0o644, "a\n")),
        ("base/dir/sub".into(), dir(0o700)),
        ("base/dir/sub/b".into(), file(0o600, "b\n")),
        ("base/gone".into(), file(0o644, "gone\n")),
        ("base/keep".into(), file(0o644, "keep\n")),
        ("base/link".into(), Node::Symlink("keep")),
        (
            "base/staff.txt".into(),
            Node::File(0o640, 0, 50, b"staff\n".to_vec()),
        ),
        ("bin".into(), dir(0o755)),
        ("bin/busybox".into(), Node::File(0o755, 0, 0, busybox)),
        ("dev".into(), dir(0o755)),
        ("etc".into(), dir(0o755)),
        (
            "etc/group".into(),
            file(
                0o644,
                "root:x:0:\nstaff:x:50:user\nuser:x:1000:\nnogroup:x:65534:\n",
            ),
        ),
        (
            "etc/passwd".into(),
            file(
                0o644,
                "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            ),
        ),
        ("home".into(), dir(0o755)),
        ("home/user".into(), Node::Dir(0o755, 1000, 1000)),
        ("proc".into(), dir(0o755)),
        ("root".into(), dir(0o700)),
        ("sys".into(), dir(0o755)),
        ("tmp".into(), dir(0o1777)),
        ("usr".into(), dir(0o755)),
        ("usr/local".into(), dir(0o755)),
        ("usr/local/bin".into(), dir(0o755)),
        ("var".into(), dir(0o755)),
    ];
    for applet in APPLETS {
        nodes.push((format!("bin/{applet}"), Node::Symlink("busybox")));
    }
    nodes.sort_by(|a, b| a.0.cmp(&b.0));

    let out = std::fs::File::create(path).expect("create busybox tar");
    let mut builder = tar::Builder::new(std::io::BufWriter::new(out));
    for (name, node) in &nodes {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(MTIME);
        match node {
            Node::Dir(mode, uid, gid) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(0);
                builder
                    .append_data(&mut h, format!("{name}/"), std::io::empty())
                    .expect("append dir");
            }
            Node::File(mode, uid, gid, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(data.len() as u64);
                builder
                    .append_data(&mut h, name, data.as_slice())
                    .expect("append file");
            }
            Node::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                builder
                    .append_link(&mut h, name, target)
                    .expect("append symlink");
            }
        }
    }
    builder
        .into_inner()
        .expect("finish busybox tar")
        .into_inner()
        .expect("flush busybox tar")
        .sync_all()
        .expect("sync busybox tar");
}

/// Fills `rootfs` with a plain busybox tree for sandbox tests: `/bin/busybox`, one symlink per
/// applet it lists, and empty `/etc` and `/tmp`.
pub fn busybox_rootfs(rootfs: &Path) {
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("applet link");
        }
    }
}
