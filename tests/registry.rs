//! Registry acceptance tests: `pull`, `push`, `login`/`logout`, `search` and FROM pulls, against
//! Debian's real `docker-registry` (filesystem storage in a temp dir, 127.0.0.1 on a free port,
//! htpasswd Basic auth for the auth test) and against a small fake registry in this file that
//! misbehaves on purpose (bad blob, manifest digest mismatch, truncated body, 500 then success,
//! Bearer tokens with a redirect to another host). skopeo checks interop both ways.
//!
//! Every strata command gets its own credential files (`STRATA_AUTH_FILE`, `DOCKER_CONFIG`), so
//! the machine's logins are never read or written.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use strata_cas::Digest;

use crate::common::busybox::busybox_tar;
use crate::common::{fresh_dir, run, strata};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A test's credential files and store roots.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env { dir: fresh_dir() };
        fs::create_dir_all(env.path().join("docker")).expect("mkdir docker config dir");
        env
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn root(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    fn auth_file(&self) -> PathBuf {
        self.path().join("config/strata/auth.json")
    }

    /// `strata --root ROOT` with this test's credential files.
    fn cmd(&self, root: &str) -> Command {
        let mut c = strata(&self.root(root));
        c.env("STRATA_AUTH_FILE", self.auth_file())
            .env("DOCKER_CONFIG", self.path().join("docker"))
            .env_remove("XDG_CONFIG_HOME");
        c
    }

    /// Runs, asserts success, returns (stdout, stderr).
    fn ok(&self, c: &mut Command) -> (String, String) {
        let (out, so, se) = run(c);
        assert!(
            out.status.success(),
            "{c:?} failed ({}):\nstdout:\n{so}\nstderr:\n{se}",
            out.status
        );
        (so, se)
    }

    /// Runs, asserts failure with exit code 1, returns stderr.
    fn fails(&self, c: &mut Command) -> String {
        let (out, so, se) = run(c);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{c:?} should fail:\nstdout:\n{so}\nstderr:\n{se}"
        );
        se
    }

    /// Imports the busybox base as `name` into `root`.
    fn busybox(&self, root: &str, name: &str) {
        let tar = self.path().join("busybox.tar");
        if !tar.exists() {
            busybox_tar(&tar);
        }
        self.ok(self.cmd(root).arg("import").arg(&tar).arg(name));
    }

    /// The image ID of `name` in `root`.
    fn id(&self, root: &str, name: &str) -> String {
        let (so, _) = self.ok(self.cmd(root).args(["inspect", name]));
        let v: Value = serde_json::from_str(&so).expect("inspect JSON");
        let v = if v.is_array() { v[0].clone() } else { v };
        v["Id"].as_str().expect("Id").to_string()
    }

    /// The store is consistent and holds no image.
    fn assert_clean_and_empty(&self, root: &str) {
        let (so, _) = self.ok(self.cmd(root).args(["system", "verify"]));
        assert!(so.contains("store is consistent"), "verify: {so}");
        let (so, _) = self.ok(self.cmd(root).args(["images", "-q"]));
        assert_eq!(so.trim(), "", "no image may be left behind");
    }
}

/// Debian's `docker-registry`, stopped when dropped.
struct RealRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RealRegistry {
    fn start(htpasswd: Option<(&str, &str)>) -> RealRegistry {
        RealRegistry::start_with(htpasswd, None)
    }

    /// With htpasswd users and/or TLS (certificate and key files, and the CA that client
    /// certificates must be signed by when the registry requires them).
    fn start_with(
        htpasswd: Option<(&str, &str)>,
        tls: Option<(&Path, &Path, Option<&Path>)>,
    ) -> RealRegistry {
        let dir = fresh_dir();
        let port = free_port();
        let mut auth = String::new();
        if let Some((user, password)) = htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let path = dir.path().join("htpasswd");
            fs::write(&path, &out.stdout).expect("write htpasswd");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                path.display()
            );
        }
        let tls = tls
            .map(|(cert, key, client_ca)| {
                let mut t = format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                );
                if let Some(ca) = client_ca {
                    t += &format!("    clientcas:\n      - {}\n", ca.display());
                }
                t
            })
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls}{auth}",
            dir.path().join("storage").display()
        );
        let cfg = dir.path().join("config.yml");
        fs::write(&cfg, config).expect("write registry config");
        let log = fs::File::create(dir.path().join("log")).expect("registry log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/docker-registry (package docker-registry)");
        let reg = RealRegistry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `skopeo copy FLAG SRC DST`, asserting success.
fn skopeo_copy(flags: &[&str], src: &str, dst: &str) {
    let out = Command::new("skopeo")
        .arg("copy")
        .args(flags)
        .args([src, dst])
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {src} {dst}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `Digest: sha256:...` of a pull, or the digest of a push's last line.
fn digest_in(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| {
            l.split_once(prefix)
                .map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"))
}

#[test]
fn build_push_rmi_pull_save_roundtrip_and_skopeo_reads_it() {
    let reg = RealRegistry::start(None);
    let host = reg.host();
    let env = Env::new();
    // The base lives only in the registry: the build must pull it.
    env.busybox("seed", &format!("{host}/base:1"));
    // In 64 KiB chunks (PATCH ... PUT).
    let (so, _) =
        env.ok(env
            .cmd("seed")
            .args(["push", "--chunk-size", "65536", &format!("{host}/base:1")]));
    assert!(so.contains("Pushed"), "{so}");

    let ctx = env.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir ctx");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {host}/base:1\nRUN echo built > /built\n"),
    )
    .expect("write Dockerfile");
    let app = format!("{host}/app:1");
    let (_, se) = env.ok(env
        .cmd("builder")
        .args(["build", "--progress", "plain", "-t", &app])
        .arg(&ctx));
    assert!(
        se.contains(&format!("Status: Downloaded newer image for {host}/base:1")),
        "the build pulls its missing base:\n{se}"
    );
    let id = env.id("builder", &app);

    let (so, _) = env.ok(env.cmd("builder").args(["push", &app]));
    assert!(
        so.contains(&format!("The push refers to repository [{host}/app]")),
        "{so}"
    );
    assert!(
        so.contains("Mounted from base"),
        "the base layer is mounted:\n{so}"
    );
    let pushed = digest_in(&so, "1: digest: ");
    // docker's RepoDigests and DIGEST column, after a push and after a pull.
    let repo_digests = |root: &str| -> Vec<String> {
        let (so, _) = env.ok(env.cmd(root).args(["inspect", &app]));
        let v: Value = serde_json::from_str(&so).expect("inspect JSON");
        v[0]["RepoDigests"]
            .as_array()
            .expect("RepoDigests")
            .iter()
            .map(|d| d.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let want = vec![format!("{host}/app@{pushed}")];
    assert_eq!(repo_digests("builder"), want);
    let (so, _) = env.ok(env.cmd("builder").args([
        "images",
        "--digests",
        "--format",
        "{{.Repository}} {{.Digest}}",
    ]));
    assert!(
        so.lines().any(|l| l == format!("{host}/app {pushed}")),
        "{so}"
    );
    // The pushed digest names the image, as in docker.
    assert_eq!(env.id("builder", &format!("{host}/app@{pushed}")), id);
    // A second push finds everything in place.
    let (so, _) = env.ok(env.cmd("builder").args(["push", &app]));
    assert!(so.contains("Layer already exists"), "{so}");
    assert_eq!(digest_in(&so, "1: digest: "), pushed);

    let (so, _) = env.ok(env.cmd("builder").args(["rmi", &app]));
    assert!(so.contains("Untagged"), "{so}");

    let (so, _) = env.ok(env.cmd("fresh").args(["pull", &app]));
    assert_eq!(digest_in(&so, "Digest: "), pushed, "{so}");
    assert!(
        so.contains(&format!("Status: Downloaded newer image for {app}")),
        "{so}"
    );
    assert_eq!(env.id("fresh", &app), id, "same config digest");
    assert_eq!(repo_digests("fresh"), want);
    // The stored manifest is the pushed one: same layer and config digests.
    let manifest_path = env
        .root("fresh")
        .join("blobs/sha256")
        .join(pushed.trim_start_matches("sha256:"));
    let manifest: Value =
        serde_json::from_slice(&fs::read(&manifest_path).expect("pulled manifest stored"))
            .expect("manifest JSON");
    assert_eq!(manifest["config"]["digest"].as_str(), Some(id.as_str()));
    let (so, _) = env.ok(env.cmd("fresh").args(["pull", &app]));
    assert!(
        so.contains(&format!("Status: Image is up to date for {app}")),
        "{so}"
    );
    let saved = env.path().join("saved.tar");
    env.ok(env.cmd("fresh").args(["save", "-o"]).arg(&saved).arg(&app));
    assert!(fs::metadata(&saved).expect("saved archive").len() > 0);
    let (so, _) = env.ok(env.cmd("fresh").args(["system", "verify"]));
    assert!(so.contains("store is consistent"), "{so}");
    // `run` pulls a missing image as docker does, then runs it.
    let (so, se) = env.ok(env
        .cmd("runner")
        .args(["run", "--rm", &app, "cat", "/built"]));
    assert_eq!(so, "built\n", "{se}");
    assert!(
        se.contains(&format!("Unable to find image '{app}' locally")),
        "{se}"
    );
    assert_eq!(env.id("runner", &app), id, "run pulled the same image");

    // `COPY --from=IMAGE` pulls a missing image too; `--pull` asks the registry again.
    let copy = env.path().join("copy");
    fs::create_dir_all(&copy).expect("mkdir copy ctx");
    fs::write(
        copy.join("Dockerfile"),
        format!("FROM scratch\nCOPY --from={host}/base:1 /bin/busybox /bb\n"),
    )
    .expect("write Dockerfile");
    let (_, se) = env.ok(env
        .cmd("copier")
        .args(["build", "--progress", "plain", "-t", "c:1"])
        .arg(&copy));
    assert!(
        se.contains(&format!("Status: Downloaded newer image for {host}/base:1")),
        "{se}"
    );
    let (_, se) = env.ok(env
        .cmd("copier")
        .args(["build", "--pull", "--progress", "plain", "-t", "c:1"])
        .arg(&copy));
    assert!(
        se.contains(&format!("Status: Image is up to date for {host}/base:1")),
        "{se}"
    );

    // skopeo reads what strata pushed, byte for byte.
    let layout = env.path().join("layout");
    skopeo_copy(
        &["--src-tls-verify=false"],
        &format!("docker://{app}"),
        &format!("oci:{}:app", layout.display()),
    );
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index JSON");
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(pushed.as_str())
    );

    // search lists the registry's catalog.
    let (so, _) = env.ok(env.cmd("fresh").args(["search", &format!("{host}/ap")]));
    assert!(so.contains(&format!("{host}/app")), "{so}");
    assert!(!so.contains(&format!("{host}/base")), "{so}");
}

fn write_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let d = Digest::of(bytes);
    fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).expect("write blob");
    (d.to_string(), bytes.len())
}

#[test]
fn a_multi_arch_index_pushed_by_skopeo_is_pulled_for_the_platform_and_runs() {
    let reg = RealRegistry::start(None);
    let host = reg.host();
    let env = Env::new();
    env.busybox("seed", &format!("{host}/src:1"));
    env.ok(env.cmd("seed").args(["push", &format!("{host}/src:1")]));
    let layout = env.path().join("layout");
    skopeo_copy(
        &["--src-tls-verify=false"],
        &format!("docker://{host}/src:1"),
        &format!("oci:{}:src", layout.display()),
    );

    // By hand: an arm64 twin (another config) and an index of both.
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index"))
        .expect("index JSON");
    let amd_manifest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let read = |d: &str| -> Value {
        serde_json::from_slice(
            &fs::read(
                layout
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .expect("blob"),
        )
        .expect("blob JSON")
    };
    let manifest = read(&amd_manifest);
    let amd_config = manifest["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string();
    let mut config = read(&amd_config);
    config["architecture"] = json!("arm64");
    config["variant"] = json!("v8");
    let (arm_config, arm_config_size) =
        write_blob(&layout, &serde_json::to_vec(&config).expect("config bytes"));
    let mut arm = manifest.clone();
    arm["config"]["digest"] = json!(arm_config);
    arm["config"]["size"] = json!(arm_config_size);
    let amd_bytes = fs::read(
        layout
            .join("blobs/sha256")
            .join(amd_manifest.trim_start_matches("sha256:")),
    )
    .expect("manifest");
    let (arm_manifest, arm_size) =
        write_blob(&layout, &serde_json::to_vec(&arm).expect("manifest bytes"));
    let idx = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm_manifest, "size": arm_size,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": OCI_MANIFEST, "digest": amd_manifest, "size": amd_bytes.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    });
    let (idx_digest, idx_size) = write_blob(&layout, &serde_json::to_vec(&idx).expect("index"));
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_INDEX, "digest": idx_digest, "size": idx_size,
                       "annotations": {"org.opencontainers.image.ref.name": "multi"}}],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&top).expect("top"),
    )
    .expect("write");
    let multi = format!("{host}/multi:1");
    skopeo_copy(
        &["--all", "--dest-tls-verify=false"],
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{multi}"),
    );

    let (so, _) = env.ok(env
        .cmd("arm")
        .args(["pull", "--platform", "linux/arm64", &multi]));
    assert_eq!(
        digest_in(&so, "Digest: "),
        idx_digest,
        "docker prints the index digest"
    );
    assert_eq!(env.id("arm", &multi), arm_config);
    env.ok(env
        .cmd("amd")
        .args(["pull", "--platform", "linux/amd64", &multi]));
    assert_eq!(env.id("amd", &multi), amd_config);
    // Pinned by the index digest.
    let pinned = format!("{host}/multi@{idx_digest}");
    env.ok(env
        .cmd("amd")
        .args(["pull", "--platform", "linux/amd64", &pinned]));
    assert_eq!(env.id("amd", &pinned), amd_config);
    let se = env.fails(
        env.cmd("none")
            .args(["pull", "--platform", "linux/s390x", &multi]),
    );
    assert!(se.contains("no matching manifest for linux/s390x"), "{se}");
    env.assert_clean_and_empty("none");

    // Docker schema 2 media types (skopeo converts).
    let v2s2 = format!("{host}/v2s2:1");
    skopeo_copy(
        &[
            "--format",
            "v2s2",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ],
        &format!("docker://{host}/src:1"),
        &format!("docker://{v2s2}"),
    );
    let (so, _) = env.ok(env.cmd("amd").args(["pull", &v2s2]));
    let docker_manifest = digest_in(&so, "Digest: ");
    let stored = env
        .root("amd")
        .join("blobs/sha256")
        .join(docker_manifest.trim_start_matches("sha256:"));
    let m: Value = serde_json::from_slice(&fs::read(stored).expect("manifest")).expect("JSON");
    assert_eq!(
        m["mediaType"].as_str(),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    assert_eq!(
        env.id("amd", &v2s2),
        env.id("seed", &format!("{host}/src:1"))
    );

    // The pulled image runs (a RUN step on it).
    let ctx = env.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {multi}\nRUN echo ran > /ran && cat /ran\n"),
    )
    .expect("Dockerfile");
    env.ok(env
        .cmd("amd")
        .args(["build", "--progress", "plain", "-t", "ran:1"])
        .arg(&ctx));
}

#[test]
fn basic_auth_wrong_password_fails_with_401_then_login_pull_logout() {
    let reg = RealRegistry::start(Some(("tester", "s3cret")));
    let host = reg.host();
    let env = Env::new();
    let image = format!("{host}/private:1");
    env.busybox("seed", &image);
    let se = env.fails(env.cmd("seed").args(["push", &image]));
    assert!(
        se.contains("unauthorized") && se.contains("strata login"),
        "{se}"
    );

    let login = |password: &str| {
        let mut c = env.cmd("seed");
        c.args(["login", "-u", "tester", "--password-stdin", &host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn login");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write password");
        child.wait_with_output().expect("login output")
    };
    let out = login("wrong");
    assert_eq!(out.status.code(), Some(1));
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(se.contains("401"), "{se}");
    assert!(!env.auth_file().exists(), "a refused login stores nothing");

    let out = login("s3cret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));
    let mode = fs::metadata(env.auth_file())
        .expect("auth file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    env.ok(env.cmd("seed").args(["push", &image]));
    env.ok(env.cmd("fresh").args(["pull", &image]));
    let (so, _) = env.ok(env.cmd("seed").args(["logout", &host]));
    assert!(
        so.contains(&format!("Removing login credentials for {host}")),
        "{so}"
    );

    // docker's config.json is read: a wrong password there fails with a 401...
    let b64 = base64::engine::general_purpose::STANDARD;
    let docker_config = env.path().join("docker/config.json");
    fs::write(
        &docker_config,
        json!({"auths": {host.clone(): {"auth": b64.encode("tester:wrong")}}}).to_string(),
    )
    .expect("write docker config");
    let se = env.fails(env.cmd("again").args(["pull", &image]));
    assert!(se.contains("401"), "{se}");
    env.assert_clean_and_empty("again");
    // ...and login (strata's own file comes first) then pull succeeds.
    assert!(login("s3cret").status.success());
    env.ok(env.cmd("again").args(["pull", &image]));
    env.ok(env.cmd("seed").args(["logout", &host]));

    // A credential helper named by credHelpers.
    let bin = env.path().join("bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    let helper = bin.join("docker-credential-strata-test");
    fs::write(
        &helper,
        "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"tester\\\",\\\"Secret\\\":\\\"s3cret\\\"}\"\n",
    )
    .expect("write helper");
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).expect("chmod helper");
    fs::write(
        &docker_config,
        json!({"credHelpers": {host.clone(): "strata-test"}}).to_string(),
    )
    .expect("write docker config");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.ok(env.cmd("helper").env("PATH", path).args(["pull", &image]));
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test PKI in `dir`: a CA (`ca.crt`), a server certificate for 127.0.0.1 (`srv.crt`,
/// `srv.key`) and a client certificate (`client.cert`, `client.key`), both signed by the CA.
fn make_pki(dir: &Path) {
    fs::create_dir_all(dir).expect("mkdir pki");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=strata-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    for (name, cn, ext) in [
        (
            "srv",
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "/CN=strata-test-client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        let (key, csr, cnf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.cnf"),
        );
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", cn, "-keyout", &key, "-out", &csr,
            ],
        );
        fs::write(dir.join(&cnf), ext).expect("write extensions");
        let out = if name == "srv" {
            "srv.crt"
        } else {
            "client.cert"
        };
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &cnf,
                "-out",
                out,
            ],
        );
    }
}

/// A cert dir holding `files` of the PKI at `pki`.
fn cert_dir(env: &Env, name: &str, pki: &Path, files: &[&str]) -> PathBuf {
    let dir = env.path().join(name);
    fs::create_dir_all(&dir).expect("mkdir cert dir");
    for f in files {
        fs::copy(pki.join(f), dir.join(f)).expect("copy PKI file");
    }
    dir
}

#[test]
fn tls_registry_trusted_through_a_cert_dir() {
    let env = Env::new();
    let pki = env.path().join("pki");
    make_pki(&pki);
    let trust = cert_dir(&env, "trust", &pki, &["ca.crt"]);
    let reg = RealRegistry::start_with(
        None,
        Some((&pki.join("srv.crt"), &pki.join("srv.key"), None)),
    );
    let image = format!("{}/tls:1", reg.host());
    env.busybox("seed", &image);
    env.ok(env
        .cmd("seed")
        .arg("push")
        .arg("--cert-dir")
        .arg(&trust)
        .arg(&image));
    let se = env.fails(env.cmd("untrusted").args(["pull", &image]));
    assert!(se.contains("certificate"), "{se}");
    env.assert_clean_and_empty("untrusted");
    env.ok(env
        .cmd("trusted")
        .arg("pull")
        .arg("--cert-dir")
        .arg(&trust)
        .arg(&image));
    assert_eq!(env.id("trusted", &image), env.id("seed", &image));
}

/// A registry that requires client certificates (docker-registry's `clientcas`): refused
/// without one, and a `.cert` without its `.key` is named; with the pair (docker's certs.d
/// layout) push and pull work.
#[test]
fn tls_registry_with_client_certificates() {
    let env = Env::new();
    let pki = env.path().join("pki");
    make_pki(&pki);
    let ca = pki.join("ca.crt");
    let reg = RealRegistry::start_with(
        None,
        Some((&pki.join("srv.crt"), &pki.join("srv.key"), Some(&ca))),
    );
    let image = format!("{}/mtls:1", reg.host());
    env.busybox("seed", &image);
    let no_client = cert_dir(&env, "no-client", &pki, &["ca.crt"]);
    let se = env.fails(
        env.cmd("seed")
            .arg("push")
            .arg("--cert-dir")
            .arg(&no_client)
            .arg(&image),
    );
    assert!(se.contains("client certificate"), "{se}");
    let no_key = cert_dir(&env, "no-key", &pki, &["ca.crt", "client.cert"]);
    let se = env.fails(
        env.cmd("seed")
            .arg("push")
            .arg("--cert-dir")
            .arg(&no_key)
            .arg(&image),
    );
    assert!(
        se.contains("missing key") && se.contains("client.key"),
        "{se}"
    );
    let full = cert_dir(&env, "full", &pki, &["ca.crt", "client.cert", "client.key"]);
    env.ok(env
        .cmd("seed")
        .arg("push")
        .arg("--cert-dir")
        .arg(&full)
        .arg(&image));
    let se = env.fails(
        env.cmd("pulled")
            .arg("pull")
            .arg("--cert-dir")
            .arg(&no_client)
            .arg(&image),
    );
    assert!(se.contains("client certificate"), "{se}");
    env.assert_clean_and_empty("pulled");
    env.ok(env
        .cmd("pulled")
        .arg("pull")
        .arg("--cert-dir")
        .arg(&full)
        .arg(&image));
    assert_eq!(env.id("pulled", &image), env.id("seed", &image));
}

// ---------------------------------------------------------------------------------------------
// The fake registry.

/// One request the fake registry saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
}

/// A response; `short` cuts the body after that many bytes (Content-Length stays full), and
/// `stall` then keeps the connection open, silent, that long before closing it.
#[derive(Debug, Clone, Default)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    short: Option<usize>,
    stall: Option<Duration>,
}

impl Reply {
    fn new(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            body: body.to_vec(),
            ..Default::default()
        }
    }

    fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A minimal HTTP/1.1 server: one request per connection, answered by the handler (given the
/// request and how many earlier requests had the same path).
struct Fake {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        headers,
    })
}

impl Fake {
    fn start(handler: Arc<Handler>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake registry");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                // A TLS probe never sends a request line: give up on it.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let handler = handler.clone();
                let log = log.clone();
                thread::spawn(move || {
                    // TLS probes and garbage get no answer: the connection just closes.
                    let Some(req) = read_request(&mut stream) else {
                        return;
                    };
                    let n = {
                        let mut l = log.lock().expect("log");
                        let n = l.iter().filter(|s| s.path == req.path).count();
                        l.push(req.clone());
                        n
                    };
                    let reply = handler(&req, n);
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (k, v) in &reply.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes());
                    if req.method != "HEAD" {
                        let end = reply.short.unwrap_or(reply.body.len());
                        let _ = stream.write_all(&reply.body[..end]);
                    }
                    let _ = stream.flush();
                    if let Some(d) = reply.stall {
                        thread::sleep(d);
                    }
                });
            }
        });
        Fake { port, seen }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

/// A one-layer image: (gzip layer, config, manifest).
struct FakeImage {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

impl FakeImage {
    fn new() -> FakeImage {
        FakeImage::with_diff_id(None)
    }

    /// With the config naming `diff_id` instead of the layer's real one.
    fn with_diff_id(diff_id: Option<Digest>) -> FakeImage {
        let mut tar = tar::Builder::new(Vec::new());
        let data = b"hello from the fake registry\n";
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, "hello", &data[..])
            .expect("tar entry");
        let tar = tar.into_inner().expect("tar");
        let diff_id = diff_id.unwrap_or_else(|| Digest::of(&tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let layer = gz.finish().expect("gzip");
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        }))
        .expect("config");
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::of(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": Digest::of(&layer).to_string(), "size": layer.len()}],
        }))
        .expect("manifest");
        FakeImage {
            layer,
            config,
            manifest,
        }
    }

    /// The registry's normal answer to a request for `img`.
    fn serve(&self, req: &Seen) -> Reply {
        let blob = |b: &[u8]| format!("/v2/img/blobs/{}", Digest::of(b));
        if req.path == "/v2/" {
            Reply::new(200, b"{}")
        } else if req.path.starts_with("/v2/img/manifests/") {
            Reply::new(200, &self.manifest).header("Content-Type", OCI_MANIFEST)
        } else if req.path == blob(&self.config) {
            Reply::new(200, &self.config)
        } else if req.path == blob(&self.layer) {
            Reply::new(200, &self.layer)
        } else {
            Reply::new(
                404,
                br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}"#,
            )
        }
    }

    fn layer_path(&self) -> String {
        format!("/v2/img/blobs/{}", Digest::of(&self.layer))
    }
}

#[test]
fn fake_registry_bad_blob_digest_fails_and_leaves_nothing() {
    let img = Arc::new(FakeImage::new());
    let i = img.clone();
    let fake = Fake::start(Arc::new(move |req: &Seen, _| {
        let mut r = i.serve(req);
        if req.path == i.layer_path() {
            // Same length, other bytes.
            r.body.iter_mut().rev().take(8).for_each(|b| *b ^= 0xff);
        }
        r
    }));
    let env = Env::new();
    let se = env.fails(
        env.cmd("r")
            .args(["pull", &format!("{}/img:1", fake.host())]),
    );
    assert!(se.contains("digest mismatch"), "{se}");
    assert!(
        se.contains(&Digest::of(&img.layer).to_string()),
        "names the blob: {se}"
    );
    env.assert_clean_and_empty("r");
}

#[test]
fn fake_registry_manifest_not_matching_the_pinned_digest_fails() {
    let img = Arc::new(FakeImage::new());
    let i = img.clone();
    let fake = Fake::start(Arc::new(move |req: &Seen, _| i.serve(req)));
    let env = Env::new();
    let other = Digest::of(b"another manifest");
    let se = env.fails(
        env.cmd("r")
            .args(["pull", &format!("{}/img@{other}", fake.host())]),
    );
    assert!(se.contains("digest mismatch"), "{se}");
    assert!(se.contains(&other.to_string()), "{se}");
    env.assert_clean_and_empty("r");
}

#[test]
fn fake_registry_layer_not_matching_the_config_diff_id_fails() {
    let bogus = Digest::of(b"not the layer");
    let img = Arc::new(FakeImage::with_diff_id(Some(bogus)));
    let i = img.clone();
    let fake = Fake::start(Arc::new(move |req: &Seen, _| i.serve(req)));
    let env = Env::new();
    let se = env.fails(
        env.cmd("r")
            .args(["pull", &format!("{}/img:1", fake.host())]),
    );
    assert!(
        se.contains("diff ID") && se.contains(&bogus.to_string()),
        "{se}"
    );
    env.assert_clean_and_empty("r");
}

#[test]
fn fake_registry_over_long_manifest_is_refused() {
    let img = Arc::new(FakeImage::new());
    let i = img.clone();
    let fake = Fake::start(Arc::new(move |req: &Seen, _| {
        let mut r = i.serve(req);
        if req.path.contains("/manifests/") {
            // Valid JSON padded past the 4 MiB limit.
            let mut body = i.manifest.clone();
            body.pop();
            body.extend_from_slice(b",\"x\":\"");
            body.extend(std::iter::repeat_n(b'a', 4 << 20));
            body.extend_from_slice(b"\"}");
            r.body = body;
        }
        r
    }));
    let env = Env::new();
    let se = env.fails(
        env.cmd("r")
            .args(["pull", &format!("{}/img:1", fake.host())]),
    );
    assert!(se.contains("more than the limit of 4194304"), "{se}");
    env.assert_clean_and_empty("r");
}

#[test]
fn fake_registry_truncated_body_fails_after_retries() {
    let img = Arc::new(FakeImage::new());
    let i = img.clone();
    let fake = Fake::start(Arc::new(move |req: &Seen, _| {
        let mut r = i.serve(req);
        if req.path == i.layer_path() {
            r.short = Some(r.body.len() / 2);
        }
        r
    }));
    let env = Env::new();
    let se = env.fails(
        env.cmd("r")
            .args(["pull", &format!("{}/img:1", fake.host())]),
    );
    assert!(se.contains("truncated body"), "{se}");
    assert!(
        fake.seen()
            .iter()
            .filter(|s| s.path == img.layer_path())
            .count()
            > 1,
        "the download is retried"
    );
    env.assert_clean_and_empty("r");
}

/// A fake registry serving `img` whose first answer for the layer is broken by `first`, and
/// which answers a `Range` request with the rest (206).
fn fake_resuming(img: &Arc<FakeImage>, first: fn(&mut Reply)) -> Fake {
    let i = img.clone();
    Fake::start(Arc::new(move |req: &Seen, n| {
        let mut r = i.serve(req);
        if req.path == i.layer_path() {
            if n == 0 {
                first(&mut r);
            } else if let Some(from) = req
                .headers
                .get("range")
                .and_then(|v| v.strip_prefix("bytes="))
                .and_then(|v| v.strip_suffix('-'))
                .and_then(|v| v.parse::<usize>().ok())
            {
                let total = r.body.len();
                r.status = 206;
                r.body = r.body[from..].to_vec();
                r.headers.push((
                    "Content-Range".into(),
                    format!("bytes {from}-{}/{total}", total - 1),
                ));
            }
        }
        r
    }))
}

/// The layer was asked for twice, the second time from the middle, and the image is complete.
fn assert_resumed_from_half(env: &Env, fake: &Fake, img: &FakeImage, name: &str) {
    let layer: Vec<Seen> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == img.layer_path())
        .collect();
    assert_eq!(
        layer.len(),
        2,
        "one broken download, one resumed: {layer:?}"
    );
    let half = img.layer.len() / 2;
    assert_eq!(
        layer[1].headers.get("range").map(String::as_str),
        Some(format!("bytes={half}-").as_str())
    );
    assert_eq!(env.id("r", name), Digest::of(&img.config).to_string());
    let (so, _) = env.ok(env.cmd("r").args(["system", "verify"]));
    assert!(so.contains("store is consistent"), "verify: {so}");
}

#[test]
fn fake_registry_broken_download_resumes_with_a_range_request() {
    let img = Arc::new(FakeImage::new());
    let fake = fake_resuming(&img, |r| r.short = Some(r.body.len() / 2));
    let env = Env::new();
    let name = format!("{}/img:1", fake.host());
    env.ok(env.cmd("r").args(["pull", &name]));
    assert_resumed_from_half(&env, &fake, &img, &name);
}

/// A registry that stops sending in the middle of a layer (the connection stays open) is a
/// transient failure after the read timeout: the download resumes with a range request, long
/// before the stalled connection would have closed.
#[test]
fn fake_registry_stalled_download_times_out_and_resumes() {
    let img = Arc::new(FakeImage::new());
    let fake = fake_resuming(&img, |r| {
        r.short = Some(r.body.len() / 2);
        r.stall = Some(Duration::from_secs(120));
    });
    let env = Env::new();
    let name = format!("{}/img:1", fake.host());
    let started = std::time::Instant::now();
    env.ok(env
        .cmd("r")
        .env("STRATA_REGISTRY_READ_TIMEOUT", "2")
        .args(["pull", &name]));
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "the pull waited for the stalled connection to close"
    );
    assert_resumed_from_half(&env, &fake, &img, &name);
}

#[test]
fn fake_registry_broken_download_without_range_support_starts_over() {
    let img = Arc::new(FakeImage::new());
    let i = img.clone();
    let fake = Fake::start(Arc::new(move |req: &Seen, n| {
        let mut r = i.serve(req);
        if req.path == i.layer_path() && n == 0 {
            r.short = Some(r.body.len() / 2);
        }
        // Range headers are ignored: the whole blob again, 200.
        r
    }));
    let env = Env::new();
    let name = format!("{}/img:1", fake.host());
    env.ok(env.cmd("r").args(["pull", &name]));
    assert_eq!(env.id("r", &name), Digest::of(&img.config).to_string());
    let (so, _) = env.ok(env.cmd("r").args(["system", "verify"]));
    assert!(so.contains("store is consistent"), "{so}");
}

#[test]
fn fake_registry_500_then_success_is_retried() {
    let img = Arc::new(FakeImage::new());
    let i = img.clone();
    let fake = Fake::start(Arc::new(move |req: &Seen, n| {
        if n == 0 && (req.path.contains("/manifests/") || req.path == i.layer_path()) {
            return Reply::new(500, b"try again");
        }
        i.serve(req)
    }));
    let env = Env::new();
    let name = format!("{}/img:1", fake.host());
    let (so, _) = env.ok(env.cmd("r").args(["pull", &name]));
    assert!(
        so.contains(&format!("Digest: {}", Digest::of(&img.manifest))),
        "{so}"
    );
    assert_eq!(env.id("r", &name), Digest::of(&img.config).to_string());
    let (so, _) = env.ok(env.cmd("r").args(["system", "verify"]));
    assert!(so.contains("store is consistent"), "{so}");
}

#[test]
fn fake_registry_bearer_token_and_no_credentials_after_a_redirect_to_another_host() {
    let img = Arc::new(FakeImage::new());
    let i = img.clone();
    let port = Arc::new(Mutex::new(0u16));
    let p = port.clone();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bob:hunter2")
    );
    let want_basic = basic.clone();
    let fake = Fake::start(Arc::new(move |req: &Seen, _| {
        let port = *p.lock().expect("port");
        if req.path.starts_with("/token") {
            if req.headers.get("authorization") != Some(&want_basic) {
                return Reply::new(401, b"bad credentials");
            }
            return Reply::new(200, br#"{"token":"tok123"}"#);
        }
        if let Some(rest) = req.path.strip_prefix("/store/") {
            let _ = rest;
            return Reply::new(200, &i.layer);
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer tok123") {
            return Reply::new(401, br#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#)
                .header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:img:pull""#
                    ),
                );
        }
        if req.path == i.layer_path() {
            // To another host name (same server): credentials must not follow.
            return Reply::new(307, b"")
                .header("Location", &format!("http://localhost:{port}/store/layer"));
        }
        i.serve(req)
    }));
    *port.lock().expect("port") = fake.port;
    let env = Env::new();
    let host = fake.host();
    // Anonymous: the token server refuses.
    let se = env.fails(env.cmd("r").args(["pull", &format!("{host}/img:1")]));
    assert!(se.contains("unauthorized"), "{se}");
    env.assert_clean_and_empty("r");

    let mut c = env.cmd("r");
    c.args(["login", "-u", "bob", "-p", "hunter2", &host]);
    let (so, _) = env.ok(&mut c);
    assert!(so.contains("Login Succeeded"), "{so}");
    let (so, _) = env.ok(env.cmd("r").args(["pull", &format!("{host}/img:1")]));
    assert!(so.contains("Pull complete"), "{so}");
    let seen = fake.seen();
    let token = seen
        .iter()
        .find(|s| s.path.starts_with("/token"))
        .expect("a token request");
    assert!(
        token.path.contains("scope=repository%3Aimg%3Apull"),
        "{}",
        token.path
    );
    let store: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.starts_with("/store/"))
        .collect();
    assert!(!store.is_empty(), "the blob came through the redirect");
    for s in store {
        assert_eq!(
            s.headers.get("host").map(String::as_str),
            Some(format!("localhost:{}", fake.port).as_str())
        );
        assert!(
            !s.headers.contains_key("authorization"),
            "credentials leaked to another host: {s:?}"
        );
    }
    assert!(
        seen.iter()
            .filter(|s| s.path.starts_with("/v2/img/"))
            .any(|s| s.headers.get("authorization").map(String::as_str) == Some("Bearer tok123")),
        "the registry got the token"
    );
    let _ = basic;
}
