//! Volumes, `commit` and `cp`, for real (root; busybox-static at /bin/busybox), on an image
//! built by `strata build` from a busybox base: named volumes outlive containers, `:ro` is
//! read-only, a `VOLUME` is pre-populated from the image, `volume ls/inspect/rm/prune` print
//! docker's output, `commit` makes an image whose run shows the change, `cp` copies both ways
//! (running and stopped containers, `-` tar streams) and never follows a symlink out of the
//! container.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::busybox::busybox_tar;
use crate::common::{fresh_dir, run, strata};

/// The image every test runs: busybox plus a `VOLUME /seed` holding content, and a symlink
/// `/escape` pointing far out of the root.
const IMAGE: &str = "voltest:latest";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = fresh_dir();
        let tar = dir.path().join("busybox.tar");
        busybox_tar(&tar);
        let env = Env { dir };
        env.ok(env.cmd().arg("import").arg(&tar).arg("voltest/base:latest"));
        let ctx = env.path().join("ctx");
        fs::create_dir_all(&ctx).expect("mkdir ctx");
        fs::write(
            ctx.join("Dockerfile"),
            "FROM voltest/base:latest\n\
             RUN mkdir -p /seed/sub && echo seeded > /seed/file && ln -s file /seed/link \
             && chown 1000:1000 /seed && chmod 0750 /seed \
             && ln -s ../../../../../../../../tmp /escape\n\
             VOLUME /seed\n",
        )
        .expect("write Dockerfile");
        env.ok(env.cmd().args(["build", "-q", "-t", IMAGE]).arg(&ctx));
        env
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    fn cmd(&self) -> Command {
        let mut c = strata(&self.root());
        c.stdin(Stdio::null());
        c
    }

    /// Runs `strata args...`, asserts success, returns stdout.
    fn ok(&self, cmd: &mut Command) -> String {
        let (out, so, se) = run(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} failed ({:?}):\nstdout: {so}\nstderr: {se}",
            out.status
        );
        so
    }

    fn strata(&self, args: &[&str]) -> String {
        self.ok(self.cmd().args(args))
    }

    /// Runs `strata args...` expecting failure; returns (code, stderr).
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let (out, so, se) = run(self.cmd().args(args));
        assert!(!out.status.success(), "{args:?} succeeded: {so}");
        (out.status.code().unwrap_or(-1), se)
    }

    fn volumes(&self) -> Vec<String> {
        self.strata(&["volume", "ls", "-q"])
            .lines()
            .map(String::from)
            .collect()
    }
}

#[test]
fn named_volume_outlives_its_container_and_ro_is_read_only() {
    let env = Env::new();
    env.strata(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data1:/data",
        IMAGE,
        "sh",
        "-c",
        "echo persisted > /data/f",
    ]);
    env.strata(&["rm", "writer"]);
    let out = env.strata(&["run", "--rm", "-v", "data1:/data", IMAGE, "cat", "/data/f"]);
    assert_eq!(out, "persisted\n");
    // :ro (and --mount readonly) can read but not write.
    let out = env.strata(&[
        "run",
        "--rm",
        "-v",
        "data1:/data:ro",
        IMAGE,
        "sh",
        "-c",
        "cat /data/f; echo x > /data/g && echo wrote || echo refused",
    ]);
    assert_eq!(out, "persisted\nrefused\n");
    let out = env.strata(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=data1,dst=/data,readonly",
        IMAGE,
        "sh",
        "-c",
        "touch /data/g && echo wrote || echo refused",
    ]);
    assert_eq!(out, "refused\n");
    // A host bind, read-only and read-write.
    let host = env.path().join("hostdir");
    fs::create_dir_all(&host).expect("mkdir");
    fs::write(host.join("in"), "from host\n").expect("write");
    let bind = format!("{}:/h:ro", host.display());
    let out = env.strata(&[
        "run",
        "--rm",
        "-v",
        &bind,
        IMAGE,
        "sh",
        "-c",
        "cat /h/in; touch /h/new && echo wrote || echo refused",
    ]);
    assert_eq!(out, "from host\nrefused\n");
    let bind = format!("{}:/h", host.display());
    env.strata(&[
        "run",
        "--rm",
        "-v",
        &bind,
        IMAGE,
        "sh",
        "-c",
        "echo back > /h/out",
    ]);
    assert_eq!(
        fs::read_to_string(host.join("out")).expect("read"),
        "back\n"
    );
    // tmpfs mounts, by --tmpfs and --mount, with their size.
    let out = env.strata(&[
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m",
        "--mount",
        "type=tmpfs,dst=/t2",
        IMAGE,
        "sh",
        "-c",
        "grep -E ' /(scratch|t2) ' /proc/mounts | cut -d' ' -f2,3; df -k /scratch | tail -1",
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines[..2].sort();
    assert_eq!(lines[..2], ["/scratch tmpfs", "/t2 tmpfs"], "{out}");
    assert_eq!(lines[2].split_whitespace().nth(1), Some("1024"), "{out}");
    // -v makes a missing host directory; --mount refuses it.
    let made = env.path().join("made-by-v");
    let bind = format!("{}:/m", made.display());
    env.strata(&["run", "--rm", "-v", &bind, IMAGE, "touch", "/m/x"]);
    assert!(made.join("x").is_file());
    let spec = format!(
        "type=bind,src={},dst=/m",
        env.path().join("absent").display()
    );
    let (code, err) = env.fails(&["run", "--rm", "--mount", &spec, IMAGE, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    // Bad flags are strata's own errors: 125, with the reason.
    let (code, err) = env.fails(&["run", "--rm", "-v", "./rel:/x", IMAGE, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("absolute path"), "{err}");
    let (code, err) = env.fails(&["run", "--rm", "--mount", "type=bind,dst=/x", IMAGE, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("source is required"), "{err}");
}

#[test]
fn image_volume_is_prepopulated_and_anonymous_volumes_follow_rm_v() {
    let env = Env::new();
    let out = env.strata(&[
        "run",
        "--name",
        "c1",
        IMAGE,
        "sh",
        "-c",
        "cat /seed/file; readlink /seed/link; stat -c '%u:%g %a' /seed; echo more > /seed/new",
    ]);
    assert_eq!(out, "seeded\nfile\n1000:1000 750\n");
    let vols = env.volumes();
    assert_eq!(vols.len(), 1, "{vols:?}");
    let anon = &vols[0];
    assert_eq!(anon.len(), 64);
    let inspect: serde_json::Value =
        serde_json::from_str(&env.strata(&["volume", "inspect", anon])).expect("inspect JSON");
    let mountpoint = inspect[0]["Mountpoint"].as_str().expect("Mountpoint");
    assert_eq!(
        fs::read_to_string(Path::new(mountpoint).join("new")).expect("read"),
        "more\n"
    );
    // In use: neither rm nor prune touches it.
    let (_, err) = env.fails(&["volume", "rm", anon]);
    assert!(err.contains("in use"), "{err}");
    env.strata(&["volume", "prune", "-f"]);
    assert_eq!(env.volumes(), vols);
    // A named volume over the VOLUME path is populated too (it was empty).
    let out = env.strata(&[
        "run",
        "--rm",
        "-v",
        "named:/seed",
        IMAGE,
        "cat",
        "/seed/file",
    ]);
    assert_eq!(out, "seeded\n");
    // nocopy leaves a new volume empty.
    let out = env.strata(&[
        "run",
        "--rm",
        "-v",
        "empty1:/seed:nocopy",
        IMAGE,
        "ls",
        "/seed",
    ]);
    assert_eq!(out, "");
    // rm -v removes the anonymous volume; the named ones stay.
    env.strata(&["rm", "-v", "c1"]);
    let mut left = env.volumes();
    left.sort();
    assert_eq!(left, vec!["empty1".to_string(), "named".to_string()]);
    // run --rm removes its anonymous volume.
    env.strata(&["run", "--rm", IMAGE, "true"]);
    assert_eq!(env.volumes().len(), 2);
}

#[test]
fn volume_commands_print_dockers_output() {
    let env = Env::new();
    assert_eq!(env.strata(&["volume", "ls"]), "DRIVER    VOLUME NAME\n");
    assert_eq!(
        env.strata(&["volume", "create", "--label", "team=a", "vol-a"]),
        "vol-a\n"
    );
    // Creating an existing volume is fine (docker's behaviour).
    assert_eq!(env.strata(&["volume", "create", "vol-a"]), "vol-a\n");
    assert_eq!(env.strata(&["volume", "create", "vol.b"]), "vol.b\n");
    let random = env.strata(&["volume", "create"]);
    assert_eq!(random.trim().len(), 64);
    let ls = env.strata(&["volume", "ls"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines[0], "DRIVER    VOLUME NAME");
    assert!(lines.contains(&"local     vol-a"), "{ls}");
    assert!(lines.contains(&"local     vol.b"), "{ls}");
    assert_eq!(
        env.strata(&["volume", "ls", "-q", "-f", "label=team=a"]),
        "vol-a\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&env.strata(&["volume", "inspect", "vol-a"])).expect("JSON");
    assert_eq!(inspect[0]["Name"], "vol-a");
    assert_eq!(inspect[0]["Driver"], "local");
    assert_eq!(inspect[0]["Scope"], "local");
    assert_eq!(inspect[0]["Labels"]["team"], "a");
    assert_eq!(
        inspect[0]["Mountpoint"],
        env.root().join("volumes/vol-a/_data").display().to_string()
    );
    assert_eq!(
        env.strata(&["volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "vol.b"]),
        "vol.b local\n"
    );
    let (code, err) = env.fails(&["volume", "inspect", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such volume"), "{err}");
    let (_, err) = env.fails(&["volume", "create", "../x"]);
    assert!(err.contains("invalid characters"), "{err}");
    // Data for the df row and the prune report.
    fs::write(env.root().join("volumes/vol.b/_data/blob"), vec![7u8; 3000]).expect("write");
    let df = env.strata(&["system", "df"]);
    let row = df
        .lines()
        .find(|l| l.starts_with("Local Volumes"))
        .unwrap_or_else(|| panic!("no volume row in {df}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["Local", "Volumes", "3", "0", "3kB", "3kB", "(100%)"],
        "{df}"
    );
    assert_eq!(env.strata(&["volume", "rm", "vol-a"]), "vol-a\n");
    let (_, err) = env.fails(&["volume", "rm", "vol-a"]);
    assert!(err.contains("no such volume"), "{err}");
    env.strata(&["volume", "rm", "-f", "vol-a"]);
    // Prune without -a keeps named volumes; -a removes every unused one.
    assert_eq!(
        env.strata(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    let out = env.strata(&["volume", "prune", "-f", "-a"]);
    let mut expected = vec!["Deleted Volumes:", "vol.b"];
    expected.push(random.trim());
    let mut got: Vec<&str> = out.lines().collect();
    assert_eq!(got.pop(), Some("Total reclaimed space: 3kB"), "{out}");
    assert_eq!(got.pop(), Some(""), "{out}");
    got[1..].sort();
    expected[1..].sort();
    assert_eq!(got, expected, "{out}");
    assert!(env.volumes().is_empty());
}

#[test]
fn commit_makes_an_image_whose_run_shows_the_change() {
    let env = Env::new();
    env.strata(&[
        "run",
        "--name",
        "changer",
        "-e",
        "FOO=bar",
        IMAGE,
        "sh",
        "-c",
        "echo changed > /etc/motd && rm /base/gone && mkdir -p /made && echo v > /seed/not-in-image",
    ]);
    let id = env.strata(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/etc/motd\"]",
        "-c",
        "LABEL stage=committed",
        "-m",
        "my change",
        "-a",
        "tester",
        "changer",
        "committed:v1",
    ]);
    assert!(id.starts_with("sha256:") && id.trim().len() == 71, "{id}");
    assert_eq!(env.strata(&["run", "--rm", "committed:v1"]), "changed\n");
    let out = env.strata(&[
        "run",
        "--rm",
        "committed:v1",
        "sh",
        "-c",
        "test -e /base/gone && echo gone || echo no-gone; test -d /made && echo made; echo $FOO; \
         ls /seed",
    ]);
    // The deletion is a whiteout in the new layer; the volume's content is not in the image
    // (the new container's anonymous volume is populated from the image again).
    assert_eq!(out, "no-gone\nmade\nbar\nfile\nlink\nsub\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.strata(&["inspect", "committed:v1"])).expect("JSON");
    let img = &inspect[0];
    assert_eq!(img["Author"], "tester");
    assert_eq!(img["Comment"], "my change");
    assert_eq!(img["Config"]["Labels"]["stage"], "committed");
    let history = env.strata(&["history", "--no-trunc", "committed:v1"]);
    assert!(history.contains("my change"), "{history}");
    // A bad change line is a usage error, and nothing is stored.
    let before = env.strata(&["images", "-q"]);
    let (code, err) = env.fails(&["commit", "-c", "RUN true", "changer", "bad:v1"]);
    assert_eq!(code, 125, "{err}");
    assert_eq!(env.strata(&["images", "-q"]), before);
    let (_, err) = env.fails(&["commit", "nosuchcontainer"]);
    assert!(err.contains("No such container"), "{err}");
}

#[test]
fn cp_both_ways_on_running_and_stopped_containers() {
    let env = Env::new();
    let host = env.path().join("h");
    fs::create_dir_all(host.join("tree/sub")).expect("mkdir");
    fs::write(host.join("one.txt"), "one\n").expect("write");
    fs::write(host.join("tree/a"), "a\n").expect("write");
    fs::write(host.join("tree/sub/b"), "b\n").expect("write");
    std::os::unix::fs::symlink("a", host.join("tree/link")).expect("symlink");

    // Stopped (created, never started) container.
    env.strata(&["create", "--name", "stopped", IMAGE, "true"]);
    env.strata(&[
        "cp",
        host.join("one.txt").to_str().expect("utf8"),
        "stopped:/etc/",
    ]);
    env.strata(&[
        "cp",
        host.join("tree").to_str().expect("utf8"),
        "stopped:/opt",
    ]);
    env.strata(&[
        "cp",
        host.join("tree/.").to_str().expect("utf8"),
        "stopped:/base/",
    ]);
    let out_dir = env.path().join("out");
    fs::create_dir_all(&out_dir).expect("mkdir");
    env.strata(&[
        "cp",
        "stopped:/opt",
        out_dir.join("opt").to_str().expect("utf8"),
    ]);
    assert_eq!(
        fs::read_to_string(out_dir.join("opt/sub/b")).expect("b"),
        "b\n"
    );
    assert_eq!(
        fs::read_link(out_dir.join("opt/link")).expect("link"),
        PathBuf::from("a")
    );
    // The VOLUME's content is seen through the volume, file into an existing dir.
    env.strata(&["cp", "stopped:/seed/file", out_dir.to_str().expect("utf8")]);
    assert_eq!(
        fs::read_to_string(out_dir.join("file")).expect("file"),
        "seeded\n"
    );
    let out = env.strata(&[
        "run",
        "--rm",
        "--volumes-from",
        "stopped",
        IMAGE,
        "ls",
        "/seed",
    ]);
    assert_eq!(out, "file\nlink\nsub\n");

    // A running container.
    let id = env.strata(&["run", "-d", "--name", "live", IMAGE, "sleep", "60"]);
    let id = id.trim();
    env.strata(&[
        "cp",
        host.join("one.txt").to_str().expect("utf8"),
        "live:/seed/copied",
    ]);
    env.strata(&[
        "cp",
        "live:/seed/copied",
        out_dir.join("back").to_str().expect("utf8"),
    ]);
    assert_eq!(
        fs::read_to_string(out_dir.join("back")).expect("back"),
        "one\n"
    );
    // `-` streams a tar.
    let (o, tar_bytes, _) = {
        let o = env
            .cmd()
            .args(["cp", "live:/seed", "-"])
            .output()
            .expect("cp to stdout");
        (o.status, o.stdout, ())
    };
    assert!(o.success());
    let mut names: Vec<String> = tar::Archive::new(&tar_bytes[..])
        .entries()
        .expect("tar")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    assert!(names.contains(&"seed/copied".to_string()), "{names:?}");
    assert!(names.contains(&"seed/file".to_string()), "{names:?}");
    let mut child = env
        .cmd()
        .args(["cp", "-", "live:/seed"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("cp from stdin");
    {
        let mut b = tar::Builder::new(child.stdin.take().expect("stdin"));
        let mut h = tar::Header::new_gnu();
        h.set_size(7);
        h.set_mode(0o640);
        h.set_cksum();
        b.append_data(&mut h, "streamed.txt", &b"stream\n"[..])
            .expect("append");
        b.finish().expect("finish");
    }
    assert!(child.wait().expect("wait").success());
    let check = env.strata(&[
        "run",
        "--rm",
        "--volumes-from",
        "live",
        IMAGE,
        "sh",
        "-c",
        "cat /seed/streamed.txt; stat -c %a /seed/streamed.txt",
    ]);
    assert_eq!(check, "stream\n640\n");
    env.strata(&["rm", "-f", id]);
    // Errors: both sides local, a missing source, a file onto a missing dir.
    let (code, _) = env.fails(&["cp", "/a", "/b"]);
    assert_eq!(code, 125);
    let (_, err) = env.fails(&["cp", "stopped:/nope", out_dir.to_str().expect("utf8")]);
    assert!(err.contains("Could not find"), "{err}");
}

#[test]
fn cp_never_follows_a_symlink_out_of_the_container() {
    let env = Env::new();
    // /escape in the image points (relatively, far up) at /tmp: on the host that would be the
    // host's /tmp; in the container it must be the container's own /tmp.
    let marker = format!("strata-cp-escape-{}", std::process::id());
    let host_target = Path::new("/tmp").join(&marker);
    let _ = fs::remove_file(&host_target);
    let src = env.path().join(&marker);
    fs::write(&src, "inside\n").expect("write");
    env.strata(&["create", "--name", "stopped", IMAGE, "true"]);
    let id = env.strata(&["run", "-d", "--name", "live", IMAGE, "sleep", "60"]);
    for c in ["stopped", "live"] {
        env.strata(&[
            "cp",
            src.to_str().expect("utf8"),
            &format!("{c}:/escape/{marker}"),
        ]);
        assert!(
            !host_target.exists(),
            "{c}: cp wrote through the symlink to the host"
        );
        // Copying out through the same symlink reads the container's file, not the host's.
        let out = env.path().join(format!("out-{c}"));
        env.strata(&[
            "cp",
            &format!("{c}:/escape/{marker}"),
            out.to_str().expect("utf8"),
        ]);
        assert_eq!(fs::read_to_string(&out).expect("read"), "inside\n");
    }
    // An archive entry can't climb out either.
    let mut child = env
        .cmd()
        .args(["cp", "-", "live:/"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cp from stdin");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        {
            let gnu = h.as_gnu_mut().expect("gnu");
            let name = format!("../../../../tmp/{marker}");
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(b"x");
        data.resize(1024, 0);
        data.extend_from_slice(&[0u8; 1024]);
        std::io::Write::write_all(&mut stdin, &data).expect("write tar");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success());
    assert!(!host_target.exists());
    // Copying out of a container never writes through a symlink the archive made.
    env.strata(&[
        "run",
        "--name",
        "mk",
        IMAGE,
        "sh",
        "-c",
        "mkdir /x && ln -s /etc /x/etc",
    ]);
    let host_out = env.path().join("xout");
    env.strata(&["cp", "mk:/x", host_out.to_str().expect("utf8")]);
    assert_eq!(
        fs::read_link(host_out.join("etc")).expect("link"),
        PathBuf::from("/etc")
    );
    env.strata(&["rm", "-f", id.trim()]);
}

#[test]
fn containers_keep_their_image_through_rmi_and_prune_and_show_in_df() {
    let env = Env::new();
    env.strata(&[
        "run",
        "--name",
        "src",
        IMAGE,
        "sh",
        "-c",
        "echo only-in-this-layer > /unique",
    ]);
    env.strata(&["commit", "src", "gcimg:latest"]);
    env.strata(&["rm", "-v", "src"]);
    // A running container (prune removes stopped ones) keeps its image's layers through
    // `rmi -f` and `system prune -a`: its layers are GC roots.
    env.strata(&[
        "run",
        "-d",
        "--name",
        "holder",
        "gcimg:latest",
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; cat /unique",
    ]);
    env.strata(&["rmi", "-f", "gcimg:latest"]);
    env.strata(&["system", "prune", "-a", "-f"]);
    env.strata(&["exec", "holder", "touch", "/tmp/go"]);
    assert_eq!(env.strata(&["wait", "holder"]), "0\n");
    assert_eq!(env.strata(&["logs", "holder"]), "only-in-this-layer\n");
    // The layer the container runs on survived the prune: a new start mounts it again.
    let (out, so, se) = run(env.cmd().args(["start", "-a", "holder"]));
    assert!(out.status.success(), "{so}{se}");
    assert_eq!(so, "only-in-this-layer\n");
    let df = env.strata(&["system", "df"]);
    let row = df
        .lines()
        .find(|l| l.starts_with("Containers"))
        .unwrap_or_else(|| panic!("no container row in {df}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["Containers", "1", "0"], "{df}");
}
