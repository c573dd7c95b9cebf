//! Build conformance: every case under `tests/fixtures/build/<case>/` is a Dockerfile and its
//! context, built on the busybox base (tests/common/busybox.rs). Its expectation was recorded
//! with real BuildKit (`scripts/record-build-fixtures.sh`, the ignored `record` test) and
//! normalised by tests/common/snapshot.rs; `cases` builds the same case with strata, normalises
//! strata's `save` output with the same code and compares.
//!
//! A case directory holds the context files plus these, which are not part of the context:
//! - `build.args`: extra build arguments, one per line (`--build-arg`, `X=1`, `--target`, `a`);
//! - `prepare.sh`: run with `sh` inside the temp copy of the context before the build, for what
//!   git cannot store (hardlinks, modes, owners, empty dirs, archives);
//! - `expected.txt`: the snapshot, or `expected-error.txt`: the exit code of a failed build on
//!   its first line, then BuildKit's error message as a `# BuildKit:` note.
//!
//! `STRATA_CONFORMANCE_CASES=a,b` selects cases, for both tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::busybox::busybox_tar;
use crate::common::snapshot::snapshot_docker_archive;
use crate::common::{fresh_dir, repo_root, run, strata};

/// The name every case's base image is imported under, by docker and by strata.
const BASE: &str = "strata-test/busybox:latest";

/// Files of a case directory that are not copied into the build context.
const META: &[&str] = &[
    "build.args",
    "prepare.sh",
    "expected.txt",
    "expected-error.txt",
];

/// Cases where strata deliberately does what the issue asks instead of what the recorded
/// BuildKit 0.8 does: `cases` skips them and prints the reason. Their recorded expectation stays
/// as BuildKit made it.
const DEVIATIONS: &[(&str, &str)] = &[
    (
        "copy-multi-needs-slash",
        "the issue's COPY rule fails several sources without a trailing `/` (\"When using COPY \
         with more than one source file, the destination must be a directory and end with a /\", \
         the classic builder's error); BuildKit writes the last source to the file /dest",
    ),
    (
        "copy-outside-context",
        "the issue makes sources outside the context (`../x`) an error (\"forbidden path outside \
         the build context\"); BuildKit 0.8 cleans `../../etc/passwd` to <context>/etc/passwd",
    ),
];

/// One conformance case.
struct Case {
    name: String,
    dir: PathBuf,
    args: Vec<String>,
}

impl Case {
    fn tag(&self) -> String {
        format!("conf/{}:latest", self.name)
    }
}

fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/build")
}

/// Every case, sorted by name, limited to `STRATA_CONFORMANCE_CASES` when set.
fn selected_cases() -> Vec<Case> {
    let only: Option<Vec<String>> = std::env::var("STRATA_CONFORMANCE_CASES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|c| c.trim().to_string()).collect());
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(fixtures()).expect("read tests/fixtures/build") {
        let dir = entry.expect("fixture entry").path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir
            .file_name()
            .expect("case name")
            .to_string_lossy()
            .into_owned();
        if only.as_ref().is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let args = match std::fs::read_to_string(dir.join("build.args")) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        };
        cases.push(Case { name, dir, args });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(only) = &only {
        for want in only {
            assert!(
                cases.iter().any(|c| &c.name == want),
                "no conformance case named {want:?}"
            );
        }
    }
    cases
}

/// Copies `src` into `dst` (created), keeping symlinks as symlinks and permission bits.
fn copy_tree(src: &Path, dst: &Path, top: bool) {
    std::fs::create_dir_all(dst).expect("create context dir");
    for entry in std::fs::read_dir(src).expect("read case dir") {
        let entry = entry.expect("case entry");
        let name = entry.file_name();
        if top && META.iter().any(|m| name == *m) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let ty = entry.file_type().expect("file type");
        if ty.is_symlink() {
            let target = std::fs::read_link(&from).expect("read symlink");
            std::os::unix::fs::symlink(target, &to).expect("copy symlink");
        } else if ty.is_dir() {
            copy_tree(&from, &to, false);
        } else {
            std::fs::copy(&from, &to).expect("copy file");
        }
    }
}

/// A fresh copy of the case's context under `work`, after its `prepare.sh`.
fn prepare(case: &Case, work: &Path) -> PathBuf {
    let ctx = work.join(format!("ctx-{}", case.name));
    copy_tree(&case.dir, &ctx, true);
    let script = case.dir.join("prepare.sh");
    if script.exists() {
        let (out, so, se) = run(Command::new("sh").arg(&script).current_dir(&ctx));
        assert!(
            out.status.success(),
            "{}: prepare.sh failed:\n{so}\n{se}",
            case.name
        );
    }
    ctx
}

/// The snapshot with the hash of the local `/bin/busybox` written as `<busybox>`, so that the
/// expectations do not depend on the version of Debian's busybox-static that made the base.
fn portable(snapshot: &str) -> String {
    let data = std::fs::read(crate::common::busybox::BUSYBOX).expect("read /bin/busybox");
    snapshot.replace(&strata_cas::Digest::of(&data).hex(), "<busybox>")
}

/// What the case must produce: a snapshot, or a failed build with this exit code.
enum Expected {
    Snapshot(String),
    Error(i32),
}

fn expected(case: &Case) -> Expected {
    if let Ok(text) = std::fs::read_to_string(case.dir.join("expected.txt")) {
        return Expected::Snapshot(text);
    }
    let text = std::fs::read_to_string(case.dir.join("expected-error.txt")).unwrap_or_else(|_| {
        panic!(
            "{}: neither expected.txt nor expected-error.txt (run scripts/record-build-fixtures.sh)",
            case.name
        )
    });
    let code = text.lines().next().unwrap_or("").trim();
    Expected::Error(
        code.parse()
            .expect("exit code on the first line of expected-error.txt"),
    )
}

/// A line diff by longest common subsequence, showing only the changed lines (`-` expected,
/// `+` actual) with the line number of the expected side.
fn changed_lines(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0u32; a.len() + 1]; e.len() + 1];
    for i in (0..e.len()).rev() {
        for j in (0..a.len()).rev() {
            lcs[i][j] = if e[i] == a[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < e.len() || j < a.len() {
        if i < e.len() && j < a.len() && e[i] == a[j] {
            i += 1;
            j += 1;
        } else if j < a.len() && (i == e.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("{:>4} + {}\n", i + 1, a[j]));
            j += 1;
        } else {
            out.push_str(&format!("{:>4} - {}\n", i + 1, e[i]));
            i += 1;
        }
    }
    out
}

/// Builds one case with strata and returns a description of any mismatch.
fn check(case: &Case, root: &Path, work: &Path) -> Option<String> {
    let ctx = prepare(case, work);
    let (out, _so, se) = run(strata(root)
        .current_dir(&ctx)
        .args(["build", "--network", "none"])
        .args(&case.args)
        .args(["-t", &case.tag(), "."]));
    let code = out.status.code().unwrap_or(-1);
    match expected(case) {
        Expected::Error(want) => {
            if code == want {
                None
            } else {
                Some(format!(
                    "BuildKit fails with exit code {want}, strata exits {code}\n{se}"
                ))
            }
        }
        Expected::Snapshot(want) => {
            if code != 0 {
                return Some(format!("strata build failed (exit {code}):\n{se}"));
            }
            let archive = work.join(format!("{}.tar", case.name));
            let (out, _, se) = run(strata(root)
                .arg("save")
                .arg("-o")
                .arg(&archive)
                .arg(case.tag()));
            if !out.status.success() {
                return Some(format!("strata save failed:\n{se}"));
            }
            let got = portable(&snapshot_docker_archive(&archive));
            if got == want {
                None
            } else {
                Some(format!(
                    "snapshot differs (- BuildKit, + strata):\n{}",
                    changed_lines(&want, &got)
                ))
            }
        }
    }
}

/// Builds every case with strata and compares with what BuildKit produced.
#[test]
fn cases() {
    let cases = selected_cases();
    assert!(!cases.is_empty(), "no conformance cases found");
    let work = fresh_dir();
    let root = work.path().join("root");
    let base = work.path().join("busybox.tar");
    busybox_tar(&base);
    let (out, _, se) = run(strata(&root).arg("import").arg(&base).arg(BASE));
    assert!(
        out.status.success(),
        "strata import of the busybox base failed:\n{se}"
    );

    let mut failures = Vec::new();
    let archive = work.path().join("base.tar");
    let (out, _, se) = run(strata(&root).arg("save").arg("-o").arg(&archive).arg(BASE));
    assert!(
        out.status.success(),
        "strata save of the base failed:\n{se}"
    );
    let want = std::fs::read_to_string(fixtures().join("base-expected.txt"))
        .expect("read tests/fixtures/build/base-expected.txt");
    let got = portable(&snapshot_docker_archive(&archive));
    if got != want {
        failures.push(format!(
            "=== (the imported base) ===\nsnapshot differs (- docker import, + strata import):\n{}",
            changed_lines(&want, &got)
        ));
    }
    for case in &cases {
        if let Some((_, why)) = DEVIATIONS.iter().find(|(name, _)| *name == case.name) {
            println!("{}: skipped, deliberate deviation: {why}", case.name);
            continue;
        }
        if let Some(msg) = check(case, &root, work.path()) {
            failures.push(format!("=== {} ===\n{msg}", case.name));
        }
    }
    let skipped = cases
        .iter()
        .filter(|c| DEVIATIONS.iter().any(|(name, _)| *name == c.name))
        .count();
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases differ from BuildKit ({skipped} deviations skipped):\n\n{}",
        failures.len(),
        cases.len() - skipped,
        failures.join("\n")
    );
}

/// Re-records the expectations with docker + BuildKit (see scripts/record-build-fixtures.sh):
/// imports the busybox base into docker, builds each case with
/// `DOCKER_BUILDKIT=1 docker build --network=none --no-cache`, saves and snapshots it, and
/// writes `expected.txt` (or `expected-error.txt`). `STRATA_DOCKER` names the docker client.
#[test]
#[ignore = "records with docker: scripts/record-build-fixtures.sh"]
fn record() {
    assert_eq!(
        std::env::var("STRATA_RECORD").as_deref(),
        Ok("1"),
        "set STRATA_RECORD=1 to re-record the build fixtures with docker"
    );
    let docker = std::env::var("STRATA_DOCKER").unwrap_or_else(|_| "docker".into());
    let work = fresh_dir();
    let base = work.path().join("busybox.tar");
    busybox_tar(&base);
    let (out, _, se) = run(Command::new(&docker).arg("import").arg(&base).arg(BASE));
    assert!(out.status.success(), "docker import failed:\n{se}");
    let archive = work.path().join("base.tar");
    let (out, _, se) = run(Command::new(&docker)
        .arg("save")
        .arg("-o")
        .arg(&archive)
        .arg(BASE));
    assert!(
        out.status.success(),
        "docker save of the base failed:\n{se}"
    );
    let snapshot = portable(&snapshot_docker_archive(&archive));
    std::fs::write(fixtures().join("base-expected.txt"), snapshot)
        .expect("write base-expected.txt");

    for case in selected_cases() {
        let ctx = prepare(&case, work.path());
        let (out, _, se) = run(Command::new(&docker)
            .env("DOCKER_BUILDKIT", "1")
            .current_dir(&ctx)
            .args(["build", "--network=none", "--no-cache", "--progress=plain"])
            .args(&case.args)
            .args(["-t", &case.tag(), "."]));
        let ok_path = case.dir.join("expected.txt");
        let err_path = case.dir.join("expected-error.txt");
        if !out.status.success() {
            let code = out.status.code().unwrap_or(-1);
            println!("{}: build fails with exit code {code}\n{se}", case.name);
            // The exit code, then BuildKit's message as a note for whoever matches it.
            let reason = se
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            std::fs::write(&err_path, format!("{code}\n# BuildKit: {reason}\n"))
                .expect("write expected-error.txt");
            let _ = std::fs::remove_file(&ok_path);
            continue;
        }
        let archive = work.path().join(format!("{}.tar", case.name));
        let (out, _, se) = run(Command::new(&docker)
            .arg("save")
            .arg("-o")
            .arg(&archive)
            .arg(case.tag()));
        assert!(
            out.status.success(),
            "{}: docker save failed:\n{se}",
            case.name
        );
        let snapshot = portable(&snapshot_docker_archive(&archive));
        std::fs::write(&ok_path, snapshot).expect("write expected.txt");
        let _ = std::fs::remove_file(&err_path);
        println!("{}: recorded", case.name);
        let _ = run(Command::new(&docker).arg("rmi").arg(case.tag()));
    }
}

/// Every case has a context to build and exactly one recorded expectation, and every deviation
/// names a case.
#[test]
fn fixtures_are_complete() {
    for (name, why) in DEVIATIONS {
        assert!(
            fixtures().join(name).is_dir(),
            "DEVIATIONS names {name:?}, no such case"
        );
        assert!(!why.trim().is_empty(), "{name}: deviation without a reason");
    }
    let cases = selected_cases();
    assert!(cases.len() >= 30, "only {} conformance cases", cases.len());
    for case in &cases {
        let has_f = case
            .args
            .iter()
            .any(|a| a == "-f" || a.starts_with("--file"));
        assert!(
            has_f || case.dir.join("Dockerfile").is_file(),
            "{}: no Dockerfile",
            case.name
        );
        let ok = case.dir.join("expected.txt").is_file();
        let err = case.dir.join("expected-error.txt").is_file();
        assert!(ok != err, "{}: needs exactly one expected file", case.name);
        if let Expected::Snapshot(text) = expected(case) {
            assert!(text.contains("\nlayers: "), "{}: not a snapshot", case.name);
        }
    }
}

/// The busybox base is the same bytes every time (docker and strata import identical input).
#[test]
fn busybox_base_is_deterministic() {
    let dir = fresh_dir();
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    busybox_tar(&a);
    busybox_tar(&b);
    let (a, b) = (
        std::fs::read(a).expect("read a"),
        std::fs::read(b).expect("read b"),
    );
    assert_eq!(a, b);
    let mut archive = tar::Archive::new(a.as_slice());
    let names: Vec<String> = archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    for want in [
        "bin/busybox",
        "bin/sh",
        "etc/passwd",
        "etc/group",
        "tmp/",
        "base/gone",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}

/// Writes a docker-archive with the given layers (each a list of tar entries) and config.
fn write_archive(path: &Path, config: &serde_json::Value, layers: &[Vec<LayerEntry>]) {
    let file = std::fs::File::create(path).expect("create archive");
    let mut outer = tar::Builder::new(file);
    let mut layer_names = Vec::new();
    for (i, entries) in layers.iter().enumerate() {
        let mut inner = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(0);
            h.set_mtime(1);
            match &e.kind {
                Kind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    inner
                        .append_data(&mut h, e.path, std::io::empty())
                        .expect("dir");
                }
                Kind::File(data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    inner.append_data(&mut h, e.path, *data).expect("file");
                }
                Kind::Symlink(t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    inner.append_link(&mut h, e.path, t).expect("symlink");
                }
                Kind::Hardlink(t) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    inner.append_link(&mut h, e.path, t).expect("hardlink");
                }
            }
        }
        let mut data = inner.into_inner().expect("layer tar");
        if i % 2 == 1 {
            // Odd layers gzip-compressed: the snapshot reads both.
            let mut gz = gzip_with_busybox(&data);
            std::mem::swap(&mut data, &mut gz);
        }
        let name = format!("layer{i}/layer.tar");
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        outer
            .append_data(&mut h, &name, data.as_slice())
            .expect("layer");
        layer_names.push(name);
    }
    let config = serde_json::to_vec(config).expect("config json");
    let mut h = tar::Header::new_gnu();
    h.set_size(config.len() as u64);
    h.set_mode(0o644);
    outer
        .append_data(&mut h, "cfg.json", config.as_slice())
        .expect("config");
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": "cfg.json", "RepoTags": ["x:latest"], "Layers": layer_names}
    ]))
    .expect("manifest json");
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest.len() as u64);
    h.set_mode(0o644);
    outer
        .append_data(&mut h, "manifest.json", manifest.as_slice())
        .expect("manifest");
    outer.finish().expect("finish archive");
}

/// A gzip stream of `data` made with the `gzip` applet of busybox (no gzip crate in the tests).
fn gzip_with_busybox(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(crate::common::busybox::BUSYBOX)
        .args(["gzip", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn busybox gzip");
    child
        .stdin
        .take()
        .expect("gzip stdin")
        .write_all(data)
        .expect("write gzip input");
    let out = child.wait_with_output().expect("gzip output");
    assert!(out.status.success());
    out.stdout
}

enum Kind {
    Dir,
    File(&'static [u8]),
    Symlink(&'static str),
    Hardlink(&'static str),
}

struct LayerEntry {
    path: &'static str,
    mode: u32,
    uid: u64,
    kind: Kind,
}

fn entry(path: &'static str, mode: u32, kind: Kind) -> LayerEntry {
    LayerEntry {
        path,
        mode,
        uid: 0,
        kind,
    }
}

/// The normaliser applies whiteouts, opaque dirs and hardlinks, and prints config fields with
/// empty values as `-`.
#[test]
fn snapshot_applies_whiteouts_opaques_and_hardlinks() {
    let dir = fresh_dir();
    let path = dir.path().join("img.tar");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "WorkingDir": "",
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"b": "2", "a": "1"},
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5_000_000_000u64, "Retries": 0}
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:00", "sha256:11", "sha256:22"]},
        "history": [
            {"created_by": "base"},
            {"created_by": "ENV X=1", "empty_layer": true},
            {"created_by": "RUN x"},
            {"created_by": "RUN y"}
        ]
    });
    let layers = vec![
        vec![
            entry("d/", 0o755, Kind::Dir),
            entry("d/gone", 0o644, Kind::File(b"gone")),
            entry("d/keep", 0o644, Kind::File(b"keep")),
            entry("o/", 0o755, Kind::Dir),
            entry("o/old", 0o644, Kind::File(b"old")),
            entry("o/sub/", 0o700, Kind::Dir),
            entry("o/sub/deep", 0o600, Kind::File(b"deep")),
        ],
        vec![
            entry("d/.wh.gone", 0o644, Kind::File(b"")),
            entry("o/", 0o750, Kind::Dir),
            entry("o/.wh..wh..opq", 0o644, Kind::File(b"")),
            entry("o/new", 0o644, Kind::File(b"new")),
            entry("l", 0o777, Kind::Symlink("d/keep")),
        ],
        vec![
            LayerEntry {
                path: "h1",
                mode: 0o4755,
                uid: 1000,
                kind: Kind::File(b"same"),
            },
            entry("a-h2", 0o755, Kind::Hardlink("h1")),
        ],
    ];
    write_archive(&path, &config, &layers);
    let got = snapshot_docker_archive(&path);
    let h = |s: &[u8]| strata_cas::Digest::of(s).hex();
    let want = format!(
        "architecture: \"amd64\"
os: \"linux\"
author: -
config.User: -
config.Env: [\"PATH=/bin\"]
config.Entrypoint: -
config.Cmd: [\"sh\"]
config.WorkingDir: -
config.Labels: {{\"a\":\"1\",\"b\":\"2\"}}
config.ExposedPorts: {{\"80/tcp\":{{}}}}
config.Volumes: -
config.StopSignal: -
config.Healthcheck: {{\"Interval\":5000000000,\"Test\":[\"CMD\",\"true\"]}}
config.OnBuild: -
config.Shell: -
config.ArgsEscaped: -
history[0]: \"base\"
history[1]: \"ENV X=1\" (empty_layer)
history[2]: \"RUN x\"
history[3]: \"RUN y\"
layers: 3 (diff_ids: 3)
layer[0]: 7 entries
layer[1]: 3 entries
layer[1] opaque: /o
layer[1] whiteout: /d/gone
layer[2]: 2 entries
/a-h2 f 4755 1000 0 {same} \"same\"
/d d 0755 0 0 -
/d/keep f 0644 0 0 {keep} \"keep\"
/h1 f 4755 1000 0 =/a-h2
/l l 0777 0 0 ->d/keep
/o d 0750 0 0 -
/o/new f 0644 0 0 {new} \"new\"
",
        same = h(b"same"),
        keep = h(b"keep"),
        new = h(b"new"),
    );
    assert_text_eq!(want, got);
}

/// A layer that only touches mtimes (a parent directory copied up with the same mode and owner,
/// a `./` root entry) is shown like an empty layer; a layer with a real change counts only its
/// real changes; a whiteout-only layer stays a layer.
#[test]
fn snapshot_shows_mtime_only_layers_as_empty() {
    let dir = fresh_dir();
    let path = dir.path().join("img.tar");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:0", "sha256:1", "sha256:2", "sha256:3", "sha256:4"]},
        "history": [
            {"created_by": "base"},
            {"created_by": "RUN touch /d"},
            {"created_by": "ENV X=1", "empty_layer": true},
            {"created_by": "RUN new"},
            {"created_by": "RUN chmod"},
            {"created_by": "RUN rm"}
        ]
    });
    let layers = vec![
        vec![
            entry("d/", 0o755, Kind::Dir),
            entry("d/f", 0o644, Kind::File(b"f")),
            entry("e/", 0o755, Kind::Dir),
        ],
        vec![entry("./", 0o755, Kind::Dir), entry("d/", 0o755, Kind::Dir)],
        vec![
            entry("d/", 0o755, Kind::Dir),
            entry("d/new", 0o644, Kind::File(b"new")),
        ],
        vec![entry("e/", 0o700, Kind::Dir)],
        vec![entry("d/.wh.f", 0o644, Kind::File(b""))],
    ];
    write_archive(&path, &config, &layers);
    let got = snapshot_docker_archive(&path);
    let tail = &got[got.find("history[0]").expect("history in snapshot")..];
    let want = format!(
        "history[0]: \"base\"
history[1]: \"RUN touch /d\" (empty_layer)
history[2]: \"ENV X=1\" (empty_layer)
history[3]: \"RUN new\"
history[4]: \"RUN chmod\"
history[5]: \"RUN rm\"
layers: 4 (diff_ids: 4)
layer[0]: 3 entries
layer[1]: 1 entries
layer[2]: 1 entries
layer[3]: 0 entries
layer[3] whiteout: /d/f
/d d 0755 0 0 -
/d/new f 0644 0 0 {new} \"new\"
/e d 0700 0 0 -
",
        new = strata_cas::Digest::of(b"new").hex(),
    );
    assert_text_eq!(want, tail);
}

/// The changed-lines diff aligns on common lines instead of positions.
#[test]
fn changed_lines_shows_only_the_difference() {
    let d = changed_lines("a\nb\nc\nd\n", "a\nx\nb\nc\n");
    assert_eq!(d, "   2 + x\n   4 - d\n");
}
