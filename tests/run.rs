//! `strata run` and the container lifecycle, for real (root, namespaces): an image built by
//! `strata build` from the busybox base (`strata import`), then run in the foreground and
//! detached, listed, logged, stopped, started, waited for and removed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::busybox::busybox_tar;
use crate::common::{fresh_dir, run, strata};

/// A store with `app`: the busybox base plus a file, a label, ENV and CMD, built by strata.
struct Env {
    dir: tempfile::TempDir,
}

const IMAGE: &str = "app";

impl Env {
    fn new() -> Self {
        let dir = fresh_dir();
        let env = Env { dir };
        let tar = env.path().join("busybox.tar");
        busybox_tar(&tar);
        env.ok(env
            .strata()
            .arg("import")
            .arg(&tar)
            .arg("strata-test/busybox:latest"));
        let ctx = env.path().join("ctx");
        std::fs::create_dir_all(&ctx).expect("mkdir ctx");
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM strata-test/busybox:latest\nENV GREETING=hello\n\
             RUN echo built > /built.txt && ln -sf busybox /bin/httpd && ln -sf busybox /bin/tty && mkdir /www && echo hello-web > /www/index.html\nWORKDIR /srv\nCMD [\"sh\", \"-c\", \"echo $GREETING\"]\n",
        )
        .expect("write Dockerfile");
        env.ok(env.strata().args(["build", "-q", "-t", IMAGE]).arg(&ctx));
        env
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    fn strata(&self) -> Command {
        strata(&self.root())
    }

    /// Runs `strata ARGS`; returns (exit code, stdout, stderr).
    fn cmd(&self, args: &[&str]) -> (i32, String, String) {
        let (out, so, se) = run(self.strata().args(args));
        (out.status.code().unwrap_or(-1), so, se)
    }

    fn ok(&self, cmd: &mut Command) -> String {
        let (out, so, se) = run(cmd);
        assert!(out.status.success(), "{cmd:?} failed:\n{so}\n{se}");
        so
    }

    /// `strata ARGS` must succeed; returns stdout.
    fn ok_args(&self, args: &[&str]) -> String {
        self.ok(self.strata().args(args))
    }

    /// Polls `strata inspect -f '{{.State.Status}}' C` until it equals `want` (no timing
    /// assert: the deadline only turns a hang into a failure).
    fn wait_status(&self, c: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.ok_args(&["inspect", "-f", "{{.State.Status}}", c]);
            if s.trim() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{c} never became {want} (is {s})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Env {
    /// A failed test leaves no container running (supervisors outlive the test otherwise).
    fn drop(&mut self) {
        let Ok(out) = self
            .strata()
            .args(["ps", "-a", "-q", "--no-trunc"])
            .output()
        else {
            return;
        };
        let ids = String::from_utf8_lossy(&out.stdout).into_owned();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = self.strata().args(["rm", "-f"]).args(&ids).output();
        }
    }
}

impl Env {
    /// Polls `strata logs C` until it equals `want`.
    fn wait_for_log(&self, c: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.ok_args(&["logs", c]);
            if log == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "log of {c} never became {want:?}: {log:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn run_rm_echo_prints_hi_and_leaves_nothing() {
    let env = Env::new();
    let (code, so, se) = env.cmd(&["run", "--rm", IMAGE, "echo", "hi"]);
    assert_eq!((code, so.as_str()), (0, "hi\n"), "{se}");
    assert_eq!(env.ok_args(&["ps", "-a", "-q"]), "");
}

#[test]
fn exit_codes_are_the_containers() {
    let env = Env::new();
    let (code, _, se) = env.cmd(&["run", "--rm", IMAGE, "sh", "-c", "exit 7"]);
    assert_eq!(code, 7, "{se}");
    let (code, _, se) = env.cmd(&["run", "--rm", IMAGE, "no-such-command"]);
    assert_eq!(code, 127, "{se}");
    assert!(se.contains("not found"), "{se}");
    let (code, _, se) = env.cmd(&["run", "--rm", IMAGE, "/etc/passwd"]);
    assert_eq!(code, 126, "{se}");
    // Detached, as docker: the exec failure is the exit code of `run -d` itself, no ID printed.
    let (code, so, se) = env.cmd(&["run", "-d", "--name", "nocmd", IMAGE, "no-such-command"]);
    assert_eq!((code, so.as_str()), (127, ""), "{se}");
    assert!(
        se.contains("no-such-command") && se.contains("not found"),
        "{se}"
    );
    let (code, _, se) = env.cmd(&["run", "-d", IMAGE, "/etc/passwd"]);
    assert_eq!(code, 126, "{se}");
    let (code, _, se) = env.cmd(&["run", "-d", IMAGE, "sh", "-c", "exit 7"]);
    assert_eq!(
        code, 0,
        "a command that runs and fails is not a start failure: {se}"
    );
    let (code, _, se) = env.cmd(&["run", "--rm", "no-such-image"]);
    assert_eq!(code, 125, "{se}");
    let (code, _, se) = env.cmd(&["run", "--rm", "-w", "relative", IMAGE, "true"]);
    assert_eq!(code, 125, "{se}");
}

#[test]
fn image_config_and_flags_combine_like_docker() {
    let env = Env::new();
    // The image's CMD, ENV and WORKDIR.
    assert_eq!(env.ok_args(&["run", "--rm", IMAGE]), "hello\n");
    assert_eq!(env.ok_args(&["run", "--rm", IMAGE, "pwd"]), "/srv\n");
    // -e overrides, -w, -u, -h, --entrypoint.
    let out = env.ok_args(&[
        "run",
        "--rm",
        "-e",
        "GREETING=bye",
        "-w",
        "/tmp",
        "-u",
        "user",
        "-h",
        "box",
        IMAGE,
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -u):$(id -g) $(hostname) $HOME",
    ]);
    assert_eq!(out, "bye /tmp 1000:1000 box /home/user\n");
    let out = env.ok_args(&["run", "--rm", "--entrypoint", "echo", IMAGE, "a", "b"]);
    assert_eq!(out, "a b\n");
    // The file from the RUN step is there; /etc/hostname names the container.
    let out = env.ok_args(&["run", "--rm", "--name", "named", IMAGE, "cat", "/built.txt"]);
    assert_eq!(out, "built\n");
    let env_file = env.path().join("envfile");
    std::fs::write(&env_file, "# comment\nFROM_FILE=1\n").expect("write env file");
    let out = env.ok_args(&[
        "run",
        "--rm",
        "--env-file",
        env_file.to_str().expect("utf-8"),
        IMAGE,
        "sh",
        "-c",
        "echo $FROM_FILE; cat /etc/hostname",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1");
    assert_eq!(
        lines[1].len(),
        12,
        "default host name is the short id: {out}"
    );
}

#[test]
fn detached_lifecycle_ps_logs_stop_start_rm() {
    let env = Env::new();
    let script = "echo started; trap 'echo stopping; exit 3' TERM; \
                  while true; do sleep 0.1; done";
    let id = env.ok_args(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", script]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    env.wait_status("web", "running");
    // ps: docker's columns; the short ID, name and "Up".
    let ps = env.ok_args(&["ps"]);
    let mut lines = ps.lines();
    let header = lines.next().expect("header");
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().expect("a row");
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(row.contains("Up "), "{row}");
    assert!(row.ends_with("web"), "{row}");
    // Names, short IDs and prefixes resolve.
    assert_eq!(
        env.ok_args(&["ps", "-q", "-f", "name=web"]).trim(),
        &id[..12]
    );
    assert_eq!(
        env.ok_args(&["inspect", "-f", "{{.Id}}", &id[..5]]).trim(),
        id
    );
    // The log has the first line.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env.ok_args(&["logs", "web"]).contains("started") {
        assert!(Instant::now() < deadline, "no log line");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A running container can't be removed without -f; the name is taken.
    let (code, _, _) = env.cmd(&["rm", "web"]);
    assert_ne!(code, 0);
    let (code, _, se) = env.cmd(&["run", "-d", "--name", "web", IMAGE, "true"]);
    assert_eq!(code, 125, "{se}");
    // stop: SIGTERM runs the trap, the code is recorded.
    assert_eq!(env.ok_args(&["stop", "web"]).trim(), "web");
    let st = env.ok_args(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "web",
    ]);
    assert_eq!(st.trim(), "exited 3");
    assert_eq!(env.ok_args(&["logs", "web"]), "started\nstopping\n");
    assert_eq!(env.ok_args(&["logs", "--tail", "1", "web"]), "stopping\n");
    assert!(env.ok_args(&["ps"]).lines().count() == 1, "only the header");
    let all = env.ok_args(&["ps", "-a"]);
    assert!(all.contains("Exited (3)"), "{all}");
    // start again: same container, same upper dir.
    env.ok_args(&["start", "web"]);
    env.wait_status("web", "running");
    // rm -f kills and removes.
    assert_eq!(env.ok_args(&["rm", "-f", "web"]).trim(), "web");
    assert_eq!(env.ok_args(&["ps", "-a", "-q"]), "");
    let (code, _, _) = env.cmd(&["inspect", "web"]);
    assert_ne!(code, 0);
}

#[test]
fn stop_timeout_falls_back_to_sigkill_and_upper_survives() {
    let env = Env::new();
    // pid 1 without a TERM handler ignores SIGTERM: stop must SIGKILL it after -t.
    let script = "cat /state 2>/dev/null; echo x > /state; echo ready; sleep 1000";
    let id = env.ok_args(&["run", "-d", IMAGE, "sh", "-c", script]);
    let id = id.trim();
    env.wait_for_log(id, "ready\n");
    env.ok_args(&["stop", "-t", "1", id]);
    let st = env.ok_args(&["inspect", "-f", "{{.State.ExitCode}}", id]);
    assert_eq!(st.trim(), "137");
    let upper = env.root().join("containers").join(id).join("upper/state");
    assert_eq!(std::fs::read_to_string(upper).expect("upper file"), "x\n");
    // The container's changes survive stop/start: the second run prints the first's file.
    env.ok_args(&["start", id]);
    env.wait_for_log(id, "ready\nx\nready\n");
    env.ok_args(&["kill", id]);
    env.wait_status(id, "exited");
    env.ok_args(&["rm", id]);
    assert!(!env.root().join("containers").join(id).exists());
}

#[test]
fn wait_prints_the_exit_code() {
    let env = Env::new();
    let id = env.ok_args(&["run", "-d", IMAGE, "sh", "-c", "sleep 0.2; exit 5"]);
    assert_eq!(env.ok_args(&["wait", id.trim()]), "5\n");
    // start -a streams and exits with the code.
    let (code, so, _) = env.cmd(&["start", "-a", id.trim()]);
    assert_eq!(code, 5);
    assert_eq!(so, "");
}

#[test]
fn rmi_refuses_an_image_in_use() {
    let env = Env::new();
    let id = env.ok_args(&["create", IMAGE, "true"]);
    let (code, _, se) = env.cmd(&["rmi", IMAGE]);
    assert_ne!(code, 0);
    assert!(se.contains("is using"), "{se}");
    env.ok_args(&["rm", id.trim()]);
    env.ok_args(&["rmi", IMAGE]);
}

/// `system prune` removes the stopped containers first, then the images no remaining container
/// uses: a running container keeps its image even with `-a`; once it is gone, the image goes.
#[test]
fn system_prune_removes_stopped_containers_and_keeps_images_in_use() {
    let env = Env::new();
    let created = env.ok_args(&["create", IMAGE, "true"]);
    let exited = env.ok_args(&["run", "-d", IMAGE, "true"]);
    env.wait_status(exited.trim(), "exited");
    let running = env.ok_args(&["run", "-d", IMAGE, "sleep", "60"]);
    let out = env.ok_args(&["system", "prune", "-a", "-f"]);
    let deleted: Vec<&str> = out
        .strip_prefix("Deleted Containers:\n")
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("no deleted containers in {out}"))
        .lines()
        .collect();
    let mut want = vec![created.trim(), exited.trim()];
    want.sort_unstable();
    let mut got = deleted.clone();
    got.sort_unstable();
    assert_eq!(got, want, "{out}");
    // The base image no container uses goes; the running container's image stays.
    assert!(
        out.contains("\n\nDeleted Images:\nuntagged: strata-test/busybox:latest\n"),
        "{out}"
    );
    assert!(!out.contains("untagged: app:latest"), "{out}");
    assert_eq!(
        env.ok_args(&["ps", "-a", "-q", "--no-trunc"]).trim(),
        running.trim()
    );
    let kept = env.ok_args(&["images", "--format", "{{.Repository}}"]);
    assert!(kept.lines().any(|l| l == IMAGE), "{kept}");

    env.ok_args(&["rm", "-f", running.trim()]);
    let out = env.ok_args(&["system", "prune", "-a", "-f"]);
    assert!(
        out.starts_with("Deleted Images:\nuntagged: app:latest\n"),
        "{out}"
    );
    assert_eq!(env.ok_args(&["images", "-q"]), "");
    assert_eq!(
        env.ok_args(&["system", "verify"]).trim(),
        "store is consistent"
    );
}

#[test]
fn exec_enters_every_namespace_of_the_container() {
    let env = Env::new();
    let id = env.ok_args(&["run", "-d", IMAGE, "sleep", "1000"]);
    let id = id.trim();
    env.wait_status(id, "running");
    // Inside the container, readlink of the exec'd process's and pid 1's namespaces.
    let script = "for n in mnt pid uts ipc net cgroup; do \
                  echo $n $(readlink /proc/self/ns/$n) $(readlink /proc/1/ns/$n); done";
    let out = env.ok_args(&["exec", id, "sh", "-c", script]);
    assert_eq!(out.lines().count(), 6, "{out}");
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 3, "{line}");
        assert_eq!(f[1], f[2], "{line}");
    }
    // And pid 1 as the host sees it is the recorded pid: same namespaces from outside.
    let pid = env.ok_args(&["inspect", "-f", "{{.State.Pid}}", id]);
    let host_mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", pid.trim())).expect("ns");
    let inside = out.lines().next().expect("mnt line");
    assert!(
        inside.ends_with(host_mnt.to_str().expect("utf-8")),
        "{inside} {host_mnt:?}"
    );
    // -e, -w, -u; exit codes.
    let out = env.ok_args(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "-u",
        "user",
        id,
        "sh",
        "-c",
        "echo $X $(pwd) $(id -u)",
    ]);
    assert_eq!(out, "1 /tmp 1000\n");
    let (code, _, _) = env.cmd(&["exec", id, "sh", "-c", "exit 4"]);
    assert_eq!(code, 4);
    let (code, _, _) = env.cmd(&["exec", id, "no-such-command"]);
    assert_eq!(code, 127);
    env.ok_args(&["rm", "-f", id]);
    let (code, _, _) = env.cmd(&["exec", id, "true"]);
    assert_ne!(code, 0);
}

/// `GET /index.html` from 127.0.0.1:`port`: the body, or `None` while nothing answers.
fn http_get(port: u16) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

#[test]
fn web_server_published_then_ps_logs_stop_start_rm() {
    let env = Env::new();
    let id = env.ok_args(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "18080:8080",
        IMAGE,
        "httpd",
        "-f",
        "-v",
        "-p",
        "8080",
        "-h",
        "/www",
    ]);
    let id = id.trim().to_string();
    let fetch = || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(body) = http_get(18080) {
                return body;
            }
            if Instant::now() > deadline {
                let (_, ps, _) = env.cmd(&["ps", "-a"]);
                let (_, log, err) = env.cmd(&["logs", "web"]);
                panic!("nothing serves 127.0.0.1:18080:\n{ps}\n{log}\n{err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(fetch(), "hello-web\n");
    let ps = env.ok_args(&["ps"]);
    let row = ps.lines().nth(1).expect("a row");
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(row.contains("0.0.0.0:18080->8080/tcp"), "{row}");
    assert!(row.contains("\"httpd -f -v -p 8080…\""), "{row}");
    // httpd -v logs each request on stderr: the json-file log has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // httpd logs on stderr, which `logs` prints on stderr.
        let (_, out, log) = env.cmd(&["logs", "web"]);
        assert_eq!(out, "");
        if log.contains("response:200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request is not in the log: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // httpd as pid 1 ignores SIGTERM: SIGKILL after 1 s.
    env.ok_args(&["stop", "-t", "1", "web"]);
    assert!(http_get(18080).is_none(), "the port is closed after stop");
    let all = env.ok_args(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(all.starts_with("web Exited ("), "{all}");
    env.ok_args(&["start", "web"]);
    assert_eq!(fetch(), "hello-web\n");
    env.ok_args(&["rm", "-f", "web"]);
    assert!(http_get(18080).is_none(), "the port is closed after rm -f");
    assert_eq!(env.ok_args(&["ps", "-a", "-q"]), "");
}

#[test]
fn init_read_only_and_tty() {
    let env = Env::new();
    // --init: a static init is pid 1, the command its child.
    let out = env.ok_args(&[
        "run",
        "--rm",
        "--init",
        IMAGE,
        "sh",
        "-c",
        "echo $$; cat /proc/1/cmdline",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2"), "{out}");
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("/sbin/docker-init\0--\0sh")),
        "{out:?}"
    );
    // --read-only: the root can't be written, /etc/hostname is still there.
    let (code, so, se) = env.cmd(&[
        "run",
        "--rm",
        "--read-only",
        IMAGE,
        "sh",
        "-c",
        "touch /x || cat /etc/hostname",
    ]);
    assert_eq!(code, 0, "{se}");
    assert_eq!(so.trim().len(), 12, "{so}");
    assert!(se.contains("Read-only file system"), "{se}");
    // -t: the command's stdout is a terminal (its output comes through the pty: \r\n).
    let out = env.ok_args(&[
        "run",
        "--rm",
        "-t",
        IMAGE,
        "sh",
        "-c",
        "[ -t 1 ] && echo tty",
    ]);
    assert_eq!(out, "tty\r\n");
    // ... which ttyname() finds in the container's /dev, as with runc.
    assert_eq!(
        env.ok_args(&["run", "--rm", "-t", IMAGE, "tty"]),
        "/dev/console\r\n"
    );
}

#[test]
fn foreground_run_forwards_signals() {
    use std::io::BufRead as _;
    let env = Env::new();
    let script = "trap 'echo got; exit 9' TERM; echo started; while true; do sleep 0.1; done";
    let mut child = env
        .strata()
        .args(["run", "--rm", IMAGE, "sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn strata run");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("started")
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("got"));
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(9));
}

/// Unmounts the overlay it names when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn the_bundle_runs_the_same_under_runc() {
    let env = Env::new();
    let script = "grep -E '^(Cap|Seccomp:|NoNewPrivs)' /proc/self/status; hostname; id; \
                  cat /etc/hostname /etc/hosts; ls /; cat /built.txt; echo $GREETING; pwd";
    let id = env.ok_args(&["create", "-h", "refhost", IMAGE, "sh", "-c", script]);
    let id = id.trim();
    let (code, ours, se) = env.cmd(&["start", "-a", id]);
    assert_eq!(code, 0, "{se}");
    // The bundle strata ran: config.json names the overlay in its annotations (runc ignores
    // them), so mount that root for runc, with a fresh upper dir.
    let bundle = env.root().join("containers").join(id).join("bundle");
    let text = std::fs::read_to_string(bundle.join("config.json")).expect("config.json");
    let spec: serde_json::Value = serde_json::from_str(&text).expect("json");
    let ann = &spec["annotations"];
    let lower = ann["org.strata.overlay.lowerdir"]
        .as_str()
        .expect("lowerdir");
    let chdir = ann["org.strata.overlay.chdir"].as_str().expect("chdir");
    let rootfs = PathBuf::from(spec["root"]["path"].as_str().expect("root.path"));
    let (upper, work) = (env.path().join("runc-upper"), env.path().join("runc-work"));
    std::fs::create_dir_all(&upper).expect("mkdir");
    std::fs::create_dir_all(&work).expect("mkdir");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    env.ok(Command::new("mount")
        .current_dir(chdir)
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&rootfs));
    let _unmount = Unmount(rootfs);
    let state = env.path().join("runc-state");
    let theirs = env.ok(Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "-b"])
        .arg(&bundle)
        .arg(format!("strata-ref-{}", &id[..12])));
    assert_eq!(ours, theirs);
    assert!(
        ours.contains("CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb"),
        "{ours}"
    );
    assert!(ours.contains("refhost\nuid=0(root)"), "{ours}");
    assert!(ours.contains("built\nhello\n/srv\n"), "{ours}");
}

#[test]
fn attach_sends_input_and_gets_output_and_code() {
    use std::io::Write as _;
    let env = Env::new();
    let id = env.ok_args(&["run", "-d", "-i", IMAGE, "sh"]);
    let id = id.trim();
    env.wait_status(id, "running");
    let mut child = env
        .strata()
        .args(["attach", id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn attach");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"echo hi from $GREETING; exit 3\n")
        .expect("write");
    let out = child.wait_with_output().expect("attach");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from hello\n");
    assert_eq!(out.status.code(), Some(3));
    // The attached output is in the log too.
    assert_eq!(env.ok_args(&["logs", id]), "hi from hello\n");
}

#[test]
fn restart_kill_signal_follow_and_ps_filters() {
    let env = Env::new();
    let script = "trap 'echo hup' HUP; echo up; while true; do sleep 0.1; done";
    let id = env.ok_args(&["run", "-d", "--name", "sig", IMAGE, "sh", "-c", script]);
    let id = id.trim();
    env.wait_for_log("sig", "up\n");
    // kill -s delivers the signal (the trap runs; the container keeps running).
    assert_eq!(env.ok_args(&["kill", "-s", "HUP", "sig"]), "sig\n");
    env.wait_for_log("sig", "up\nhup\n");
    // ps: filters, -l, --no-trunc, --format.
    let exited = env.ok_args(&["run", "-d", IMAGE, "true"]);
    env.ok_args(&["wait", exited.trim()]);
    assert_eq!(
        env.ok_args(&["ps", "-q", "--no-trunc", "-f", "status=running"])
            .trim(),
        id
    );
    assert_eq!(
        env.ok_args(&["ps", "-q", "--no-trunc", "-f", "status=exited"])
            .trim(),
        exited.trim()
    );
    assert_eq!(
        env.ok_args(&["ps", "-l", "--format", "{{.State}}"]),
        "exited\n"
    );
    // restart: a new run of the same container (the log grows), still running.
    assert_eq!(env.ok_args(&["restart", "-t", "1", "sig"]), "sig\n");
    env.wait_for_log("sig", "up\nhup\nup\n");
    env.wait_status("sig", "running");
    // logs -t prefixes RFC 3339 times; -f ends when the container does.
    let stamped = env.ok_args(&["logs", "-t", "sig"]);
    assert!(
        stamped.lines().all(|l| l.len() > 31 && &l[29..31] == "Z "),
        "{stamped}"
    );
    let follower = env
        .strata()
        .args(["logs", "-f", "sig"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    env.ok_args(&["kill", "sig"]);
    let out = follower.wait_with_output().expect("logs -f ends");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "up\nhup\nup\n");
    let code = env.ok_args(&["inspect", "-f", "{{.State.ExitCode}}", "sig"]);
    assert_eq!(code.trim(), "137");
}

/// Docker's default profile checked through `strata run` and `strata exec` (the checks of
/// tests/run_security.rs), on an image built by strata: the busybox base with every applet
/// and the static probe at /bin/probe.
struct StrataRun {
    env: Env,
}

const SEC_IMAGE: &str = "sec";

impl StrataRun {
    fn new() -> Self {
        let env = Env::new();
        let ctx = env.path().join("sec-ctx");
        std::fs::create_dir_all(&ctx).expect("mkdir");
        std::fs::copy(crate::run_security::probe(), ctx.join("probe")).expect("copy probe");
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM strata-test/busybox:latest\nRUN /bin/busybox --install -s /bin\n\
             COPY --chmod=0755 probe /bin/probe\n",
        )
        .expect("write Dockerfile");
        env.ok(env
            .strata()
            .args(["build", "-q", "-t", SEC_IMAGE])
            .arg(&ctx));
        StrataRun { env }
    }
}

impl crate::run_security::Runner for StrataRun {
    fn run(&self, flags: &[&str], cmd: &[&str]) -> (i32, String, String) {
        let (out, so, se) = run(self
            .env
            .strata()
            .args(["run", "--rm"])
            .args(flags)
            .arg(SEC_IMAGE)
            .args(cmd)
            .stdin(std::process::Stdio::null()));
        (out.status.code().unwrap_or(-1), so, se)
    }

    fn exec(&self, flags: &[&str], cmd: &[&str], script: &str) -> (i32, String, String) {
        let id = self.env.ok(self
            .env
            .strata()
            .args(["run", "-d"])
            .args(flags)
            .arg(SEC_IMAGE)
            .args(cmd));
        let id = id.trim();
        self.env.wait_status(id, "running");
        let (out, so, se) = run(self.env.strata().args(["exec", id, "sh", "-c", script]));
        self.env.ok_args(&["rm", "-f", id]);
        (out.status.code().unwrap_or(-1), so, se)
    }
}

#[test]
fn security_profile_through_strata_run() {
    use crate::run_security as sec;
    let r = StrataRun::new();
    sec::check_default_capabilities(&r);
    sec::check_cap_add_and_drop(&r);
    sec::check_denied_syscalls(&r);
    sec::check_masked_and_readonly_paths(&r);
    sec::check_host_invisible(&r);
    sec::check_network_none_cannot_reach_the_host(&r);
    sec::check_memory_limit(&r);
    sec::check_pids_limit(&r);
    sec::check_read_only_root(&r);
    sec::check_tty(&r);
    sec::check_exec_joins_every_namespace(&r);
    sec::check_exec_leaks_no_fd(&r);
}
