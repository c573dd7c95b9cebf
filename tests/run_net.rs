//! Container networking for real (root): a busybox `httpd` in a private network namespace
//! (`strata debug sandbox --network none`), and `strata debug net` setting up what the
//! supervisor sets up for it: the port proxy (`-p`, `-P`, port 0, host port in use) and
//! slirp4netns (`tap0` with 10.0.2.100, the default route, outbound to the host's address but
//! not its loopback, gone with the handle); `none` reaches nothing on the host.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{fresh_dir, run, strata};

/// How long a test waits for something that takes milliseconds before giving up (failing),
/// generous so that a loaded machine never fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// A sandbox running `busybox httpd` on port 8080 in a new network namespace, serving
/// `/www/index.html` (a few hundred KB) and `/www/small.txt`.
struct Web {
    dir: tempfile::TempDir,
    sandbox: Child,
    /// The host pid of the container's pid 1 (httpd).
    pid: i32,
    index: Vec<u8>,
}

impl Web {
    fn start() -> Web {
        let dir = fresh_dir();
        let rootfs = dir.path().join("rootfs");
        for d in [
            rootfs.join("bin"),
            rootfs.join("www"),
            dir.path().join("up"),
            dir.path().join("work"),
        ] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        // Not a multiple of any buffer size, and not all one byte.
        let index: Vec<u8> = (0..300_001u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(rootfs.join("www/index.html"), &index).expect("index");
        std::fs::write(rootfs.join("www/small.txt"), "hello from the container\n").expect("small");
        let sandbox = strata(&dir.path().join("store"))
            .args(["debug", "sandbox", "--network", "none", "--lower"])
            .arg(&rootfs)
            .arg("--upper")
            .arg(dir.path().join("up"))
            .arg("--work")
            .arg(dir.path().join("work"))
            .args([
                "--",
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
                "8080",
                "-h",
                "/www",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the sandbox");
        let mut web = Web {
            dir,
            pid: 0,
            sandbox,
            index,
        };
        web.pid = web.find_httpd();
        web
    }

    /// The descendant of the sandbox process that runs busybox (after the exec).
    fn find_httpd(&mut self) -> i32 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut stack = vec![self.sandbox.id()];
            while let Some(pid) = stack.pop() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "busybox" {
                    return i32::try_from(pid).expect("pid");
                }
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default();
                stack.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
            if let Ok(Some(status)) = self.sandbox.try_wait() {
                panic!("the sandbox exited: {status}");
            }
            assert!(Instant::now() < deadline, "httpd never started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `cmd` (a host binary) run in the container's network namespace.
    fn in_netns(&self, cmd: &[&str]) -> (i32, String, String) {
        let (out, so, se) = run(Command::new("nsenter")
            .arg("-t")
            .arg(self.pid.to_string())
            .arg("-n")
            .args(cmd)
            .stdin(Stdio::null()));
        (out.status.code().unwrap_or(-1), so, se)
    }

    /// The network interfaces of the container's namespace, sorted.
    fn links(&self) -> Vec<String> {
        let (code, so, se) = self.in_netns(&["/bin/busybox", "cat", "/proc/net/dev"]);
        assert_eq!(code, 0, "{se}");
        let mut names: Vec<String> = so
            .lines()
            .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
            .collect();
        names.sort();
        names
    }

    /// `strata debug net --pid PID ARGS...`, up once it printed `ready`.
    fn net(&self, args: &[&str]) -> Net {
        self.net_with(args, |_| {})
    }

    fn net_with(&self, args: &[&str], tweak: impl FnOnce(&mut Command)) -> Net {
        let mut cmd = strata(&self.dir.path().join("store"));
        cmd.args(["debug", "net", "--pid", &self.pid.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tweak(&mut cmd);
        let mut child = cmd.spawn().expect("start debug net");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read debug net");
            if line == "ready" {
                break;
            }
            lines.push(line);
        }
        let stdin = child.stdin.take();
        Net {
            child,
            stdin,
            lines,
        }
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.sandbox.kill();
        let _ = self.sandbox.wait();
    }
}

/// A running `strata debug net`.
struct Net {
    child: Child,
    stdin: Option<ChildStdin>,
    /// What it printed before `ready`.
    lines: Vec<String>,
}

impl Net {
    /// The host port published for `container_port/tcp` on `ip`.
    fn port(&self, ip: &str, container_port: u16) -> u16 {
        let prefix = format!("{container_port}/tcp -> {ip}:");
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {:?}", self.lines))
    }

    fn slirp_pid(&self) -> Option<u32> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix("slirp4netns "))
            .and_then(|p| p.parse().ok())
    }

    /// Closes its stdin and returns (exit code, stderr).
    fn stop(mut self) -> (i32, String) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait debug net");
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut stderr).expect("read stderr");
        }
        (status.code().unwrap_or(-1), stderr)
    }
}

/// `GET path` over HTTP/1.0 at `addr`, half-closing our side after the request: the body,
/// or None when the connection fails or closes without a response.
fn get(ip: &str, port: u16, path: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect((ip, port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    s.shutdown(Shutdown::Write).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let at = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    if !resp.starts_with(b"HTTP/1.") || !resp[..at].windows(5).any(|w| w == b" 200 ") {
        return None;
    }
    Some(resp[at + 4..].to_vec())
}

/// Retries `get` until httpd answers (it may still be starting).
fn get_eventually(ip: &str, port: u16, path: &str) -> Vec<u8> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(body) = get(ip, port, path) {
            return body;
        }
        assert!(Instant::now() < deadline, "no answer on {ip}:{port}{path}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP server on `ip` (port 0) answering `pong` to every connection; returns its port.
fn pong_server(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"pong\n");
        }
    });
    port
}

/// The host's first non-loopback IPv4 address.
fn host_ipv4() -> String {
    nix::ifaddrs::getifaddrs()
        .expect("getifaddrs")
        .filter_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|i| i.ip())))
        .find(|ip| !ip.is_loopback())
        .map(|ip| IpAddr::V4(ip).to_string())
        .expect("a non-loopback IPv4 address on the host")
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn published_ports_serve_the_container_and_stop_with_the_handle() {
    let web = Web::start();
    let net = web.net(&["-p", "127.0.0.1:0:8080", "-p", "127.0.0.1::8080/tcp"]);
    let a = net.port("127.0.0.1", 8080);
    assert_eq!(
        net.lines.len(),
        2 + usize::from(net.slirp_pid().is_some()),
        "{:?}",
        net.lines
    );
    assert_ne!(a, 0);
    // The whole file, byte for byte, through the proxy (with our side half-closed early).
    assert_eq!(get_eventually("127.0.0.1", a, "/index.html"), web.index);
    assert_eq!(
        get_eventually("127.0.0.1", a, "/small.txt"),
        b"hello from the container\n"
    );
    // Both bindings work, and several connections at once.
    let other: Vec<u16> = net
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("8080/tcp -> 127.0.0.1:"))
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(other.len(), 2, "{:?}", net.lines);
    let fetches: Vec<_> = (0..8)
        .map(|i| {
            let port = other[i % 2];
            std::thread::spawn(move || get("127.0.0.1", port, "/index.html"))
        })
        .collect();
    for f in fetches {
        assert_eq!(
            f.join().expect("fetch thread").as_deref(),
            Some(&web.index[..])
        );
    }
    let (code, se) = net.stop();
    assert_eq!(code, 0, "{se}");
    // Stopped: the host port is free again.
    assert!(TcpStream::connect(("127.0.0.1", a)).is_err());
    TcpListener::bind(("127.0.0.1", a)).expect("the port is free after the proxy stopped");
}

#[test]
fn nothing_listening_inside_closes_the_client() {
    let web = Web::start();
    let net = web.net(&["-p", "127.0.0.1:0:9999"]);
    let port = net.port("127.0.0.1", 9999);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the proxy accepts");
    let mut buf = Vec::new();
    // EOF or reset, never a hang and never data.
    let n = s.read_to_end(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    let (code, se) = net.stop();
    assert_eq!(code, 0, "{se}");
}

#[test]
fn a_host_port_in_use_is_a_clear_error_and_publish_all_picks_free_ports() {
    let web = Web::start();
    let busy = TcpListener::bind("127.0.0.1:0").expect("listen");
    let busy_port = busy.local_addr().expect("addr").port();
    let spec = format!("127.0.0.1:{busy_port}:8080");
    let net = web.net(&["-p", &spec]);
    let (code, se) = net.stop();
    assert_eq!(code, 125, "{se}");
    assert!(
        se.contains(&format!("cannot publish 127.0.0.1:{busy_port}/tcp")) && se.contains("in use"),
        "{se}"
    );
    // Bad flags: 125 with the value named.
    let (code, se) = web.net(&["-p", "8080:80:70:1"]).stop();
    assert_eq!(code, 125, "{se}");
    assert!(
        se.contains("invalid port specification \"8080:80:70:1\""),
        "{se}"
    );
    let (code, se) = web.net(&["--network", "mynet"]).stop();
    assert_eq!(code, 125, "{se}");
    assert!(se.contains("none, host and bridge"), "{se}");
    // -P: every exposed port on its own free port, on 0.0.0.0.
    let net = web.net(&["-P", "--expose", "8080/tcp", "--expose", "8081"]);
    let (p8080, p8081) = (net.port("0.0.0.0", 8080), net.port("0.0.0.0", 8081));
    assert!(
        p8080 != 0 && p8081 != 0 && p8080 != p8081,
        "{:?}",
        net.lines
    );
    assert_eq!(
        get_eventually("127.0.0.1", p8080, "/small.txt"),
        b"hello from the container\n"
    );
    let (code, se) = net.stop();
    assert_eq!(code, 0, "{se}");
}

#[test]
fn bridge_gets_slirp4netns_outbound_but_not_the_host_loopback() {
    let web = Web::start();
    let loopback_port = pong_server("127.0.0.1");
    let host_ip = host_ipv4();
    let outside_port = pong_server(&host_ip);
    // Before: only lo.
    assert_eq!(web.links(), ["lo"]);

    let net = web.net(&["--network", "bridge"]);
    assert_eq!(web.links(), ["lo", "tap0"]);
    let slirp = net
        .slirp_pid()
        .unwrap_or_else(|| panic!("no slirp4netns (install it): {:?}", net.lines));
    // In its own session: a terminal's Ctrl-C for a foreground run does not reach it.
    let stat = std::fs::read_to_string(format!("/proc/{slirp}/stat")).expect("slirp stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        fields.get(3).copied(),
        Some(slirp.to_string().as_str()),
        "{stat}"
    );
    let (code, so, se) = web.in_netns(&["/bin/busybox", "ip", "-4", "addr", "show", "tap0"]);
    assert_eq!(code, 0, "{se}");
    assert!(so.contains("inet 10.0.2.100/24"), "{so}");
    assert!(so.contains("mtu 65520"), "{so}");
    let (code, so, se) = web.in_netns(&["/bin/busybox", "ip", "route"]);
    assert_eq!(code, 0, "{se}");
    assert!(so.contains("default via 10.0.2.2 dev tap0"), "{so}");
    // Outbound: the host's own address, through slirp4netns.
    let target = format!("{host_ip}:{outside_port}");
    let (code, so, se) = web.in_netns(&[
        "/bin/busybox",
        "nc",
        "-w",
        "30",
        &host_ip,
        &outside_port.to_string(),
    ]);
    assert_eq!((code, so.as_str()), (0, "pong\n"), "{target}: {se}");
    // --disable-host-loopback: 10.0.2.2 is not the host's 127.0.0.1.
    let (code, so, _) = web.in_netns(&[
        "/bin/busybox",
        "nc",
        "-w",
        "30",
        "10.0.2.2",
        &loopback_port.to_string(),
    ]);
    assert!(code != 0 && so.is_empty(), "{code} {so}");

    let (code, se) = net.stop();
    assert_eq!(code, 0, "{se}");
    // slirp4netns died with the handle, and tap0 with it.
    assert!(!process_exists(slirp), "slirp4netns {slirp} still runs");
    assert_eq!(web.links(), ["lo"]);
}

#[test]
fn none_and_bridge_without_slirp4netns_reach_nothing_on_the_host() {
    let web = Web::start();
    let port = pong_server("127.0.0.1").to_string();
    // No slirp4netns on PATH: loopback only, with the warning.
    let net = web.net_with(&["--network", "bridge"], |c| {
        c.env("PATH", "/nonexistent");
    });
    assert_eq!(net.slirp_pid(), None);
    assert_eq!(web.links(), ["lo"]);
    let (code, se) = net.stop();
    assert_eq!(code, 0, "{se}");
    assert!(
        se.contains("WARNING: slirp4netns is not installed: the container has loopback only"),
        "{se}"
    );
    // `none`: published ports are discarded (with a warning); the host's 127.0.0.1 is not
    // reachable from the container's.
    let net = web.net(&["--network", "none", "-p", "127.0.0.1:0:8080"]);
    assert!(net.lines.is_empty(), "{:?}", net.lines);
    let (code, so, se) = web.in_netns(&["/bin/busybox", "nc", "127.0.0.1", &port]);
    assert!(code != 0 && so.is_empty(), "{code} {so} {se}");
    assert!(se.contains("Connection refused"), "{se}");
    let (code, se) = net.stop();
    assert_eq!(code, 0, "{se}");
    assert!(
        se.contains("WARNING: Published ports are discarded"),
        "{se}"
    );
    // Positive control: the host itself reaches it.
    let (out, so, _) = run(Command::new("/bin/busybox")
        .args(["nc", "127.0.0.1", &port])
        .stdin(Stdio::null()));
    assert!(out.status.success() && so == "pong\n", "{so}");
}

/// A UDP socket on `127.0.0.1:port` inside the network namespace of `pid`: made by a thread
/// that joins the namespace and then ends (the socket stays in the namespace it was made in,
/// which the proxy relies on too).
fn udp_socket_in(pid: i32, port: u16) -> std::net::UdpSocket {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open netns");
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        std::net::UdpSocket::bind(("127.0.0.1", port)).expect("bind inside")
    })
    .join()
    .expect("netns thread")
}

#[test]
fn udp_is_forwarded_per_client() {
    let web = Web::start();
    let echo = udp_socket_in(web.pid, 9999);
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = echo.send_to(&reply, from);
        }
    });
    let net = web.net(&["-p", "127.0.0.1:0:9999/udp"]);
    let port: u16 = net
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("9999/udp -> 127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no udp line in {:?}", net.lines));
    let clients: Vec<std::net::UdpSocket> = (0..2)
        .map(|_| {
            let c = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
            c.set_read_timeout(Some(PATIENCE)).expect("timeout");
            c.connect(("127.0.0.1", port)).expect("connect");
            c
        })
        .collect();
    for round in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            let msg = format!("client {i} round {round}");
            c.send(msg.as_bytes()).expect("send");
            let mut buf = [0u8; 2048];
            let n = c.recv(&mut buf).expect("a reply through the proxy");
            assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes());
        }
    }
    let (code, se) = net.stop();
    assert_eq!(code, 0, "{se}");
}
