//! Acceptance tests of `strata build`, run for real as a user runs it (root, busybox-static at
//! /bin/busybox, podman and skopeo for interop): caching (`--progress=json` cache and context
//! events), parallel stages proven by a rendezvous, the sandbox's security boundaries (each
//! denial next to a positive control), exit codes and messages, every `--output` type, interop
//! with podman and skopeo, `kill -9` in the middle of a RUN, and pruning.
//!
//! Every test imports the deterministic busybox base (tests/common/busybox.rs) into its own
//! store. The base links only a few applets; the others are run as `busybox APPLET`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::common::busybox::busybox_tar;
use crate::common::{
    fresh_dir, pids_with_argv, podman, processes_mentioning, run, strata, wait_until,
};

/// The base image every Dockerfile here starts from.
const BASE: &str = "strata-test/busybox:latest";

/// A work dir with a store root holding the busybox base image.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = fresh_dir();
        let tar = dir.path().join("busybox.tar");
        busybox_tar(&tar);
        let env = Env { dir };
        env.ok(strata(&env.root()).arg("import").arg(&tar).arg(BASE));
        env
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    /// A context dir `name` holding `Dockerfile` (with `FROM BASE` prepended) and `files`.
    fn context(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.path().join(name);
        fs::create_dir_all(&ctx).expect("mkdir context");
        fs::write(ctx.join("Dockerfile"), format!("FROM {BASE}\n{dockerfile}"))
            .expect("write Dockerfile");
        for (p, content) in files {
            let f = ctx.join(p);
            fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            fs::write(f, content).expect("write context file");
        }
        ctx
    }

    /// `strata --root ROOT build ARGS... CTX`.
    fn build(&self, ctx: &Path, args: &[&str]) -> Command {
        let mut c = strata(&self.root());
        c.arg("build").args(args).arg(ctx);
        c
    }

    /// A `--progress=json` build that must succeed; returns its events.
    fn build_json(&self, ctx: &Path, args: &[&str]) -> Events {
        let (_, _, stderr) = self.ok(self.build(ctx, args).arg("--progress=json"));
        Events::parse(&stderr)
    }

    /// Runs a command that must succeed.
    fn ok(&self, cmd: &mut Command) -> (Output, String, String) {
        let (out, so, se) = run(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} failed ({:?}):\nstdout: {so}\nstderr: {se}",
            out.status
        );
        (out, so, se)
    }

    /// `strata --root ROOT ARGS...` that must succeed; returns stdout.
    fn st(&self, args: &[&str]) -> String {
        self.ok(strata(&self.root()).args(args)).1
    }
}

/// The `--progress=json` events of one build.
struct Events(Vec<Value>);

impl Events {
    fn parse(stderr: &str) -> Self {
        Events(
            stderr
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect(),
        )
    }

    fn of(&self, kind: &str) -> impl Iterator<Item = &Value> {
        self.0.iter().filter(move |e| e["event"] == kind)
    }

    /// `(step name, hit)` of every cache event, in order.
    fn cache(&self) -> Vec<(String, bool)> {
        let names: BTreeMap<u64, String> = self
            .of("start")
            .map(|e| {
                (
                    e["id"].as_u64().expect("id"),
                    e["name"].as_str().expect("name").to_string(),
                )
            })
            .collect();
        self.of("cache")
            .map(|e| {
                let id = e["id"].as_u64().expect("id");
                (
                    names.get(&id).cloned().unwrap_or_default(),
                    e["hit"].as_bool().expect("hit"),
                )
            })
            .collect()
    }

    /// Whether the cache step whose name contains `needle` hit.
    fn hit(&self, needle: &str) -> bool {
        let found: Vec<bool> = self
            .cache()
            .into_iter()
            .filter(|(n, _)| n.contains(needle))
            .map(|(_, h)| h)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one step named {needle:?} in {:?}",
            self.cache()
        );
        found[0]
    }

    /// The context event's `hashed_paths`.
    fn hashed_paths(&self) -> Vec<String> {
        let ctx: Vec<&Value> = self.of("context").collect();
        assert_eq!(ctx.len(), 1, "one context event");
        ctx[0]["hashed_paths"]
            .as_array()
            .expect("hashed_paths")
            .iter()
            .map(|p| p.as_str().expect("path").to_string())
            .collect()
    }

    /// Everything the RUN steps printed.
    fn output(&self) -> String {
        self.of("output")
            .map(|e| e["text"].as_str().unwrap_or_default())
            .collect()
    }

    /// The built image ID.
    fn image(&self) -> String {
        let f: Vec<&Value> = self.of("finished").collect();
        assert_eq!(f.len(), 1, "one finished event");
        f[0]["image"].as_str().expect("image").to_string()
    }
}

/// Lets context edits age past the scan's racy window (two ticks of the coarse clock inode
/// times are stamped with): a file changed within it is re-hashed by the next build too, as
/// git re-checks racily clean entries. Tests that count re-hashed files wait this long first.
fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------------------
// Caching

#[test]
fn identical_rebuild_is_fully_cached_with_the_same_image_id() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        "COPY a /a\nRUN date +%s%N > /t\nRUN cat /a /t\n",
        &[("a", "hello\n")],
    );
    settle();
    let first = env.build_json(&ctx, &["-t", "c:1"]);
    let cache = first.cache();
    assert_eq!(cache.len(), 3, "{cache:?}");
    assert!(cache.iter().all(|(_, hit)| !hit), "fresh store: {cache:?}");

    let second = env.build_json(&ctx, &["-t", "c:1"]);
    let cache = second.cache();
    assert_eq!(cache.len(), 3, "{cache:?}");
    assert!(cache.iter().all(|(_, hit)| *hit), "all cached: {cache:?}");
    assert_eq!(second.image(), first.image());
    assert_eq!(second.output(), "", "a cached RUN does not run");
    // Nothing changed in the context: nothing is re-hashed.
    assert_eq!(second.hashed_paths(), Vec::<String>::new());

    let (_, id, _) = env.ok(&mut env.build(&ctx, &["-q", "-t", "c:1"]));
    assert_eq!(id.trim(), first.image(), "-q prints the same image ID");
}

/// 200 dirs x 100 small files.
fn big_context(env: &Env, dockerfile: &str) -> PathBuf {
    let ctx = env.context("big", dockerfile, &[]);
    for d in 0..200 {
        let dir = ctx.join(format!("d{d:03}"));
        fs::create_dir(&dir).expect("mkdir");
        for f in 0..100 {
            fs::write(dir.join(format!("f{f:03}")), format!("{d}/{f}\n")).expect("write");
        }
    }
    ctx
}

#[test]
fn editing_one_file_of_20000_rehashes_only_that_file() {
    let env = Env::new();
    let ctx = big_context(&env, "COPY d007 /d007\nRUN cat /d007/f042\n");
    settle();
    let first = env.build_json(&ctx, &[]);
    let ctx_event = first.of("context").next().expect("context event").clone();
    assert_eq!(ctx_event["hashed"], 20_001, "every file and the Dockerfile");

    // Unchanged: nothing re-hashed, all hits.
    let again = env.build_json(&ctx, &[]);
    assert_eq!(again.hashed_paths(), Vec::<String>::new());
    assert!(again.cache().iter().all(|(_, h)| *h), "{:?}", again.cache());

    // One edit: exactly that file re-hashed, and the COPY that selects it misses.
    fs::write(ctx.join("d007/f042"), "edited\n").expect("edit");
    settle();
    let edited = env.build_json(&ctx, &[]);
    assert_eq!(edited.hashed_paths(), ["d007/f042"]);
    assert_eq!(edited.of("context").next().expect("context")["hashed"], 1);
    assert!(!edited.hit("COPY d007 /d007"));
    assert_eq!(edited.output(), "edited\n");

    // An edit outside what COPY selects: re-hashed, but every step hits.
    fs::write(ctx.join("d150/f000"), "not copied\n").expect("edit");
    settle();
    let other = env.build_json(&ctx, &[]);
    assert_eq!(other.hashed_paths(), ["d150/f000"]);
    assert!(other.cache().iter().all(|(_, h)| *h), "{:?}", other.cache());
    assert_eq!(other.image(), edited.image());
}

/// The diffID of layer `i` of image `name` in `env`'s store.
fn layer_of(env: &Env, name: &str, i: usize) -> String {
    let inspect: Value = serde_json::from_str(&env.st(&["inspect", name])).expect("inspect JSON");
    diff_ids(&inspect[0]["RootFS"]["Layers"])[i].clone()
}

/// The base a layer of `env`'s store is stored over, if it is a delta.
fn base_of(env: &Env, diff_id: &str) -> Option<String> {
    let hex = diff_id.strip_prefix("sha256:").expect("sha256 diff id");
    fs::read_to_string(env.root().join("layers/sha256").join(hex).join("base"))
        .ok()
        .map(|b| b.trim().to_string())
}

/// Sets the mtime of `path` (not following a final symlink's target) `hours` from now.
fn set_mtime_later(path: &Path, hours: u64) {
    fs::File::options()
        .read(true)
        .open(path)
        .expect("open")
        .set_modified(SystemTime::now() + Duration::from_secs(3600 * hours))
        .expect("set mtime");
}

/// A context dir `ctx` of `files` whose Dockerfile is `copy` (a COPY into /tmp, which is in
/// the base: the layer holds only what the context gives, no "now" mtimes), then a RUN that
/// writes the sums of every file under /tmp to /sums.
fn sums_context(env: &Env, copy: &str, files: &[(String, String)]) -> PathBuf {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    env.context(
        "ctx",
        &format!(
            "{copy}\nRUN busybox find /tmp -type f | busybox sort | busybox xargs busybox sha256sum > /sums\n"
        ),
        &refs,
    )
}

/// Builds `ctx` as `tag` in `env`'s store: the diffID of its COPY's layer and its /sums.
fn layer_and_sums(env: &Env, ctx: &Path, tag: &str) -> (String, String) {
    env.ok(&mut env.build(ctx, &["-q", "-t", tag]));
    let sums = env.st(&["run", "--rm", tag, "cat", "/sums"]);
    (layer_of(env, tag, 1), sums)
}

#[test]
fn a_rebuilt_copy_is_stored_as_a_delta_and_is_the_layer_a_full_build_makes() {
    let env = Env::new();
    let mut files: Vec<(String, String)> = Vec::new();
    for d in 0..20 {
        for f in 0..30 {
            files.push((format!("src/d{d:02}/f{f:02}"), format!("{d}/{f}\n")));
        }
    }
    for s in 0..4 {
        files.push((format!("src/d01/sub/s{s}"), format!("sub {s}\n")));
    }
    let ctx = sums_context(&env, "COPY src/ /tmp/", &files);
    // What a build of the context as it is now makes in a store of its own.
    let full = |tag: &str| layer_and_sums(&Env::new(), &ctx, tag);
    let build = |tag: &str| layer_and_sums(&env, &ctx, tag);
    let (first, _) = build("delta/t:1");
    assert_eq!(
        base_of(&env, &first),
        None,
        "a first build has nothing to build on"
    );
    // The lineage hint keeps the stamps of the source directories: the next build copies an
    // unchanged one as the base has it, without a walk.
    let hints: Vec<String> = fs::read_dir(env.root().join("buildcache/lineage"))
        .expect("lineage hints")
        .map(|e| fs::read_to_string(e.expect("hint").path()).expect("hint"))
        .collect();
    assert!(
        hints.iter().any(|h| h.starts_with(&format!("{first}\n"))
            && h.contains("\"tmp/d01/sub\"")
            && h.contains("\"tmp/d19\"")),
        "{hints:?}"
    );
    // mtime alone changes what is copied (not the key): with an edit elsewhere, the delta
    // must still take it.
    let later = |rel: &str, hours: u64| set_mtime_later(&ctx.join(rel), hours);
    later("src/d07/f02", 1);
    later("src/d08", 1);
    later("src/d01/sub/s2", 1);

    // An edited file, a new file in a new directory, a mode change: a delta over the first.
    fs::write(ctx.join("src/d03/f07"), "edited\n").expect("edit");
    fs::create_dir(ctx.join("src/new")).expect("mkdir");
    fs::write(ctx.join("src/new/x"), "new\n").expect("add");
    fs::set_permissions(
        ctx.join("src/d05/f01"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let (second, sums) = build("delta/t:2");
    assert_eq!(base_of(&env, &second).as_deref(), Some(first.as_str()));
    assert_eq!((second.clone(), sums.clone()), full("delta/full:2"));
    assert_eq!(sums.lines().count(), 605, "{sums}");
    assert!(
        sums.contains("/tmp/new/x") && sums.contains("/tmp/d03/f07"),
        "{sums}"
    );
    // Only what changed is in the delta's own tree.
    let own = env
        .root()
        .join("layers/sha256")
        .join(second.trim_start_matches("sha256:"))
        .join("rootfs/tmp");
    let mut names: Vec<String> = fs::read_dir(&own)
        .expect("delta tree")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["d01", "d03", "d05", "d07", "d08", "new"]);

    // A removed file cannot be a delta over a layer that has it: the layer is built whole.
    fs::remove_file(ctx.join("src/d09/f09")).expect("rm");
    let (third, sums) = build("delta/t:3");
    assert_eq!(base_of(&env, &third), None);
    assert_eq!((third.clone(), sums.clone()), full("delta/full:3"));
    assert!(!sums.contains("/tmp/d09/f09"), "{sums}");

    // And the next edit is a delta over that one.
    fs::write(ctx.join("src/d00/f00"), "edited again\n").expect("edit");
    later("src/d01/sub", 2);
    later("src/d07/f02", 2);
    let (fourth, sums) = build("delta/t:4");
    assert_eq!(base_of(&env, &fourth).as_deref(), Some(third.as_str()));
    assert_eq!((fourth.clone(), sums), full("delta/full:4"));
    // A miss though the scan hashed nothing (the base is read only on the miss then): the same
    // delta. The warm build first re-hashes the files edited just before the last scan.
    settle();
    env.ok(&mut env.build(&ctx, &["-q", "-t", "delta/t:4"]));
    let fifth = env.build_json(&ctx, &["--no-cache", "-t", "delta/t:5"]);
    assert_eq!(fifth.of("context").next().expect("context")["hashed"], 0);
    assert!(!fifth.hit("COPY src/ /tmp/"));
    assert_eq!(layer_of(&env, "delta/t:5", 1), fourth);

    // The base lives as long as the delta: no prune takes it while an image uses the delta.
    env.st(&["rmi", "delta/t:3"]);
    env.st(&["builder", "prune", "-a", "-f"]);
    env.st(&["system", "prune", "-f"]);
    assert_eq!(base_of(&env, &fourth).as_deref(), Some(third.as_str()));
    assert!(
        env.root()
            .join("layers/sha256")
            .join(third.trim_start_matches("sha256:"))
            .join("rootfs/tmp/d00/f01")
            .exists()
    );
    assert!(
        env.st(&[
            "run",
            "--rm",
            "delta/t:4",
            "cat",
            "/tmp/d00/f00",
            "/tmp/d00/f01"
        ])
        .starts_with("edited again\n0/1\n")
    );
    let (_, verify, _) = env.ok(strata(&env.root()).args(["system", "verify"]));
    assert!(verify.contains("consistent"), "{verify}");
    let saved = env.path().join("t4.tar");
    env.st(&["save", "-o", &saved.display().to_string(), "delta/t:4"]);
    let transport = format!("docker-archive:{}", saved.display());
    let (_, cfg, _) = env.ok(Command::new("skopeo").args(["inspect", "--config", &transport]));
    let cfg: Value = serde_json::from_str(&cfg).expect("skopeo config JSON");
    assert_eq!(diff_ids(&cfg["rootfs"]["diff_ids"])[1], fourth);
}

#[test]
fn an_excluding_copy_rebuilt_as_a_delta_is_the_layer_a_full_build_makes() {
    let env = Env::new();
    let mut files: Vec<(String, String)> = Vec::new();
    for d in 0..5 {
        for f in 0..20 {
            files.push((format!("src/d{d}/f{f:02}"), format!("{d}/{f}\n")));
        }
        files.push((format!("src/d{d}/skip.tmp"), "excluded\n".into()));
        files.push((format!("src/d{d}/deep/g"), format!("deep {d}\n")));
    }
    let ctx = sums_context(&env, "COPY --exclude=**/*.tmp src/ /tmp/", &files);
    let layer = |env: &Env, tag: &str| layer_and_sums(env, &ctx, tag);
    let (first, sums) = layer(&env, "x/t:1");
    assert_eq!(sums.lines().count(), 105, "{sums}");
    assert!(!sums.contains(".tmp"), "{sums}");

    // An edit in d0, an excluded file added in d1 (a new mtime for d1), a later mtime in d2's
    // deep: a delta over the first, the layer a fresh store makes of the context.
    fs::write(ctx.join("src/d0/f00"), "edited\n").expect("edit");
    fs::write(ctx.join("src/d1/new.tmp"), "excluded too\n").expect("add");
    set_mtime_later(&ctx.join("src/d2/deep/g"), 1);
    let (second, sums) = layer(&env, "x/t:2");
    assert_eq!(base_of(&env, &second).as_deref(), Some(first.as_str()));
    assert_eq!((second, sums), layer(&Env::new(), "x/full:2"));

    // A hint as an earlier version wrote it (no stamps): the next layer is built whole, and
    // the one after is a delta over it again.
    for hint in fs::read_dir(env.root().join("buildcache/lineage")).expect("hints") {
        let path = hint.expect("hint").path();
        let text = fs::read_to_string(&path).expect("hint");
        fs::write(&path, format!("{}\n", text.lines().next().expect("line"))).expect("hint");
    }
    fs::write(ctx.join("src/d3/f01"), "edited\n").expect("edit");
    let (third, sums) = layer(&env, "x/t:3");
    assert_eq!(base_of(&env, &third), None);
    assert_eq!((third.clone(), sums), layer(&Env::new(), "x/full:3"));
    fs::write(ctx.join("src/d4/f02"), "edited\n").expect("edit");
    let (fourth, sums) = layer(&env, "x/t:4");
    assert_eq!(base_of(&env, &fourth).as_deref(), Some(third.as_str()));
    assert_eq!((fourth, sums), layer(&Env::new(), "x/full:4"));
}

#[test]
fn touching_a_copied_file_is_a_hit_and_changing_an_uncopied_file_is_a_hit() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        "COPY a /a\nRUN cat /a\n",
        &[("a", "copied\n"), ("b", "not copied\n")],
    );
    let first = env.build_json(&ctx, &[]);
    assert_eq!(first.output(), "copied\n");

    // mtime only.
    set_mtime_later(&ctx.join("a"), 1);
    let touched = env.build_json(&ctx, &[]);
    assert!(touched.hit("COPY a /a"), "{:?}", touched.cache());
    assert!(touched.hit("RUN cat /a"));
    assert_eq!(touched.image(), first.image());

    // Content of a file no COPY selects.
    fs::write(ctx.join("b"), "changed, still not copied\n").expect("edit b");
    let other = env.build_json(&ctx, &[]);
    assert!(other.cache().iter().all(|(_, h)| *h), "{:?}", other.cache());
    assert_eq!(other.image(), first.image());

    // Positive control: the copied file's content.
    fs::write(ctx.join("a"), "copied, v2\n").expect("edit a");
    let changed = env.build_json(&ctx, &[]);
    assert!(!changed.hit("COPY a /a"));
    assert!(!changed.hit("RUN cat /a"));
    assert_eq!(changed.output(), "copied, v2\n");
}

#[test]
fn a_changed_build_arg_misses_from_the_step_that_uses_it() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        "RUN echo before > /before\nARG V\nRUN echo \"v=$V\" > /v\nRUN cat /v\n",
        &[],
    );
    let a = env.build_json(&ctx, &["--build-arg", "V=one"]);
    assert_eq!(a.output(), "v=one\n");
    let same = env.build_json(&ctx, &["--build-arg", "V=one"]);
    assert!(same.cache().iter().all(|(_, h)| *h), "{:?}", same.cache());

    let b = env.build_json(&ctx, &["--build-arg", "V=two"]);
    assert_eq!(
        b.cache().iter().map(|(_, h)| *h).collect::<Vec<_>>(),
        [true, false, false],
        "{:?}",
        b.cache()
    );
    assert_eq!(b.output(), "v=two\n");
    assert_ne!(b.image(), a.image());
}

#[test]
fn no_cache_rebuilds_everything_and_an_edit_with_restored_mtime_is_noticed() {
    let env = Env::new();
    let ctx = env.context("ctx", "COPY a /a\nRUN cat /a\n", &[("a", "AAAA\n")]);
    let first = env.build_json(&ctx, &[]);
    let hit = env.build_json(&ctx, &[]);
    assert!(hit.cache().iter().all(|(_, h)| *h));

    let nocache = env.build_json(&ctx, &["--no-cache"]);
    let cache = nocache.cache();
    assert!(
        !cache.is_empty() && cache.iter().all(|(_, h)| !h),
        "{cache:?}"
    );
    assert_eq!(nocache.output(), "AAAA\n", "the RUN ran again");

    // Same size, same mtime (as `touch -r` restores it), different content: ctime tells.
    let a = ctx.join("a");
    let mtime = fs::metadata(&a).expect("stat").modified().expect("mtime");
    fs::write(&a, "BBBB\n").expect("edit");
    fs::File::options()
        .write(true)
        .open(&a)
        .expect("open")
        .set_modified(mtime)
        .expect("restore mtime");
    assert_eq!(
        fs::metadata(&a).expect("stat").modified().expect("mtime"),
        mtime
    );
    settle();
    let edited = env.build_json(&ctx, &[]);
    assert_eq!(edited.hashed_paths(), ["a"]);
    assert!(!edited.hit("COPY a /a"));
    assert_eq!(edited.output(), "BBBB\n");
    assert_ne!(edited.image(), first.image());
}

// ---------------------------------------------------------------------------------------------
// Parallel stages

#[test]
fn independent_stages_run_at_the_same_time() {
    let env = Env::new();
    // Each stage leaves its marker in the shared cache mount, then waits (at most 30 s) for the
    // other's: the build only succeeds when both RUNs are alive at once.
    let stage = |me: &str, other: &str| {
        format!(
            "FROM {BASE} AS {me}\n\
             RUN --mount=type=cache,id=rv,target=/rv touch /rv/{me} && i=0 && \
             while [ ! -e /rv/{other} ]; do i=$((i+1)); \
             if [ $i -gt 300 ]; then echo {me} waited in vain; exit 7; fi; sleep 0.1; done && \
             echo {me} > /{me}\n"
        )
    };
    let ctx = env.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "{}{}FROM {BASE}\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nRUN cat /a /b\n",
            stage("a", "b"),
            stage("b", "a")
        ),
    )
    .expect("Dockerfile");
    let started = Instant::now();
    let ev = env.build_json(&ctx, &[]);
    assert_eq!(ev.output(), "a\nb\n");
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ---------------------------------------------------------------------------------------------
// Security

#[test]
fn copy_cannot_reach_outside_the_context() {
    let env = Env::new();
    fs::write(env.path().join("x"), "outside the context\n").expect("write");
    let bad = env.context("bad", "COPY ../x /x\n", &[("x", "inside\n")]);
    let (out, _, se) = run(&mut env.build(&bad, &[]));
    assert_eq!(out.status.code(), Some(1), "{se}");
    assert!(se.contains("../x"), "the message names the path: {se}");

    // Positive control: the same file name inside the context.
    let good = env.context("good", "COPY x /x\nRUN cat /x\n", &[("x", "inside\n")]);
    assert_eq!(env.build_json(&good, &[]).output(), "inside\n");
}

#[test]
fn an_absolute_context_symlink_resolves_inside_the_context() {
    let env = Env::new();
    let host = read(Path::new("/etc/passwd"));
    let ctx = env.context(
        "ctx",
        "COPY link /got\nRUN cat /got\n",
        &[("etc/passwd", "the context's passwd\n")],
    );
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("link")).expect("symlink");
    let out_dir = env.path().join("out");
    let ev = env.build_json(
        &ctx,
        &[
            "--output",
            &format!("type=local,dest={}", out_dir.display()),
        ],
    );
    assert_eq!(ev.output(), "the context's passwd\n");
    let got = read(&out_dir.join("got"));
    assert_eq!(got, "the context's passwd\n");
    assert_ne!(got, host);

    // Without <context>/etc/passwd the COPY fails instead of reading the host's.
    let missing = env.context("missing", "COPY link /got\nRUN cat /got\n", &[]);
    std::os::unix::fs::symlink("/etc/passwd", missing.join("link")).expect("symlink");
    let (out, so, se) = run(&mut env.build(&missing, &["--progress=plain"]));
    assert_eq!(out.status.code(), Some(1), "{so}\n{se}");
    assert!(!se.contains(host.lines().next().unwrap_or("root:")), "{se}");
}

/// Kills and reaps a child on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_sees_no_host_process_and_cannot_mount_or_unshare() {
    let env = Env::new();
    let marker = Reaped(
        Command::new("sleep")
            .arg("4242")
            .spawn()
            .expect("spawn sleep"),
    );
    let ctx = env.context(
        "ctx",
        "RUN echo pids: $(ls /proc | grep -c '^[0-9]*$') && busybox ps -o pid,args\n\
         RUN busybox mount -t tmpfs x /mnt; echo mount=$?\n\
         RUN busybox unshare -m true; echo unshare=$?\n\
         RUN echo uid=$(id -u) && mkdir -p /mnt && touch /mnt/ok && echo write=$?\n",
        &[],
    );
    let ev = env.build_json(&ctx, &[]);
    let out = ev.output();
    // The host marker is alive but invisible.
    assert!(
        Path::new(&format!("/proc/{}", marker.0.id())).exists(),
        "host marker running"
    );
    assert!(!out.contains("4242"), "host process visible:\n{out}");
    let pids: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("pids: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid count in:\n{out}"));
    assert!(
        (1..=8).contains(&pids),
        "{pids} pids in the sandbox:\n{out}"
    );
    // Positive control: ps works and sees itself.
    assert!(out.contains("ps -o pid,args"), "{out}");

    assert!(out.contains("mount=1"), "{out}");
    // busybox reports EPERM from mount(2) as "permission denied (are you root?)".
    assert!(
        out.contains("mount: permission denied") || out.contains("Operation not permitted"),
        "mount must fail with EPERM:\n{out}"
    );
    assert!(out.contains("unshare=1"), "{out}");
    assert!(
        out.contains("unshare(0x20000): Operation not permitted"),
        "unshare -m must fail with EPERM:\n{out}"
    );
    // Positive control: the denials are not for lack of root or a read-only root.
    assert!(out.contains("uid=0\nwrite=0\n"), "{out}");
}

/// A TCP server on the host's 127.0.0.1 answering `pong` to every connection.
fn pong_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"pong\n");
        }
    });
    port
}

#[test]
fn network_none_cannot_reach_the_host_and_default_can() {
    let env = Env::new();
    let port = pong_server();
    let ctx = env.context(
        "ctx",
        "ARG PORT\nRUN busybox nc -w 5 127.0.0.1 $PORT; echo nc=$?\n",
        &[],
    );
    let port_arg = format!("PORT={port}");
    let none = env.build_json(&ctx, &["--network", "none", "--build-arg", &port_arg]);
    let out = none.output();
    assert!(!out.contains("pong"), "{out}");
    assert!(out.contains("nc=1"), "{out}");

    let default = env.build_json(&ctx, &["--network", "default", "--build-arg", &port_arg]);
    assert_eq!(default.output(), "pong\nnc=0\n");
}

/// Imports `name`: busybox plus the host's `ssh-add` and the libraries it loads (as `ldd`
/// lists them), so a RUN can speak the agent protocol.
fn import_ssh_tools(env: &Env, name: &str) {
    let rootfs = env.path().join("ssh-tools");
    crate::common::busybox::busybox_rootfs(&rootfs);
    let ldd = Command::new("ldd")
        .arg("/usr/bin/ssh-add")
        .output()
        .expect("ldd /usr/bin/ssh-add (install openssh-client)");
    assert!(ldd.status.success(), "ldd /usr/bin/ssh-add failed");
    let libs = String::from_utf8_lossy(&ldd.stdout).into_owned();
    let files = libs
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .chain(["/usr/bin/ssh-add"]);
    for file in files {
        let dest = rootfs.join(file.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        fs::copy(file, &dest).unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    let tar = env.path().join("ssh-tools.tar");
    let mut builder = tar::Builder::new(fs::File::create(&tar).expect("create tar"));
    builder.follow_symlinks(false);
    builder.append_dir_all(".", &rootfs).expect("tar the tools");
    builder.finish().expect("finish the tar");
    env.st(&["import", tar.to_str().expect("utf-8"), name]);
}

/// An `ssh-agent` of the test's own, holding `key`; killed on drop.
struct TestAgent {
    child: std::process::Child,
    socket: PathBuf,
}

impl TestAgent {
    fn start(dir: &Path, key: &Path) -> Self {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("start ssh-agent (install openssh-client)");
        let agent = TestAgent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&agent.socket).is_err() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (out, _, se) = run(Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &agent.socket));
        assert!(out.status.success(), "ssh-add: {se}");
        agent
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ssh_mounts_reach_the_agent_given_by_socket_or_by_key_file() {
    let env = Env::new();
    import_ssh_tools(&env, "strata-test/ssh-tools:latest");
    let key = env.path().join("id_ed25519");
    let (out, _, se) = run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "strata-ssh-test",
            "-f",
        ])
        .arg(&key));
    assert!(out.status.success(), "ssh-keygen: {se}");
    let (_, fingerprint, _) = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")));
    assert!(fingerprint.contains("(ED25519)"), "{fingerprint}");
    let agent = TestAgent::start(env.path(), &key);

    let ctx = env.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM strata-test/ssh-tools:latest\n\
         RUN --mount=type=ssh ssh-add -l > /default.txt && stat -c '%F %a %u %g' \"$SSH_AUTH_SOCK\" > /default-stat.txt\n\
         RUN --mount=type=ssh,id=keys,target=/tmp/a.sock,uid=1000,gid=1000,mode=0660 ssh-add -l > /keys.txt && stat -c '%F %a %u %g' /tmp/a.sock > /keys-stat.txt\n",
    )
    .expect("write Dockerfile");
    // strata's temp dirs (its own agent, the forwarded sockets) go here, to check they go.
    let tmp = env.path().join("tmp");
    fs::create_dir_all(&tmp).expect("mkdir");
    let dest = env.path().join("out");
    let keys = format!("keys={}", key.display());
    let local = format!("type=local,dest={}", dest.display());
    env.ok(env
        .build(
            &ctx,
            &["--ssh", "default", "--ssh", &keys, "--output", &local],
        )
        .env("SSH_AUTH_SOCK", &agent.socket)
        .env("TMPDIR", &tmp));

    // Both agents answered with the key: the one given by socket, and strata's own.
    assert_eq!(read(&dest.join("default.txt")), fingerprint);
    assert_eq!(read(&dest.join("keys.txt")), fingerprint);
    assert_eq!(read(&dest.join("default-stat.txt")), "socket 600 0 0\n");
    assert_eq!(read(&dest.join("keys-stat.txt")), "socket 660 1000 1000\n");
    // No socket or stub in the image, no temp dir or agent left behind.
    assert!(!dest.join("run/buildkit/ssh_agent.0").exists());
    assert!(!dest.join("tmp/a.sock").exists());
    let left: Vec<_> = fs::read_dir(&tmp).expect("read tmp").flatten().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    assert_eq!(
        processes_mentioning(&tmp.display().to_string()),
        Vec::<String>::new()
    );

    // A key file that is not a key: ssh-add's refusal, exit 1, and still nothing left.
    let junk = env.path().join("junk");
    fs::write(&junk, "not a key\n").expect("write junk");
    let (out, _, se) = run(env
        .build(&ctx, &["--ssh", &format!("keys={}", junk.display())])
        .env("SSH_AUTH_SOCK", &agent.socket)
        .env("TMPDIR", &tmp));
    assert_eq!(out.status.code(), Some(1), "{se}");
    assert!(
        se.contains("ssh-add could not load") && se.contains("junk"),
        "{se}"
    );
    assert!(fs::read_dir(&tmp).expect("read tmp").next().is_none());
    // kill -9 in the middle of a step: the build's own agent goes too (its watchdog sees
    // strata die), and so does the step.
    let ctx_kill = env.path().join("ctx-kill");
    fs::create_dir_all(&ctx_kill).expect("mkdir");
    fs::write(
        ctx_kill.join("Dockerfile"),
        "FROM strata-test/ssh-tools:latest\nRUN --mount=type=ssh,id=keys sleep 67\n",
    )
    .expect("write Dockerfile");
    let mut build = env
        .build(&ctx_kill, &["--ssh", &keys])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the build");
    let tmp_text = tmp.display().to_string();
    let step_started = wait_until(Duration::from_secs(30), || {
        !pids_with_argv(&["sleep", "67"]).is_empty()
    });
    assert!(step_started, "the step did not start");
    assert!(
        processes_mentioning(&tmp_text)
            .iter()
            .any(|p| p.starts_with("ssh-agent")),
        "the build's agent runs during the step"
    );
    build.kill().expect("kill -9 the build");
    build.wait().expect("reap the build");
    let all_gone = wait_until(Duration::from_secs(10), || {
        processes_mentioning(&tmp_text).is_empty() && pids_with_argv(&["sleep", "67"]).is_empty()
    });
    assert!(
        all_gone,
        "left running: {:?}",
        processes_mentioning(&tmp_text)
    );

    // A path that does not exist, and no socket at all: usage errors.
    let (out, _, se) = run(&mut env.build(&ctx, &["--ssh", "keys=/nonexistent/key"]));
    assert_eq!(out.status.code(), Some(125), "{se}");
    assert!(se.contains("/nonexistent/key"), "{se}");
    let (out, _, se) = run(env
        .build(&ctx, &["--ssh", "default"])
        .env_remove("SSH_AUTH_SOCK"));
    assert_eq!(out.status.code(), Some(125), "{se}");
    assert!(se.contains("SSH_AUTH_SOCK is not set"), "{se}");
}

/// Every path under `dir` (not following symlinks) whose file name is `name`.
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_name() == name {
            found.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(find_named(&p, name));
        }
    }
    found
}

#[test]
fn a_cache_mount_id_cannot_escape_the_cache_dir() {
    let env = Env::new();
    let name = format!("escaped-{}", std::process::id());
    let ctx = env.context(
        "ctx",
        &format!(
            "RUN --mount=type=cache,id=../../../../x,target=/c touch /c/{name}\n\
             RUN --mount=type=cache,id=/etc,target=/c touch /c/{name}\n"
        ),
        &[],
    );
    env.build_json(&ctx, &[]);
    let mounts = env.root().join("buildcache/mounts");
    let found = find_named(env.path(), &name);
    assert_eq!(found.len(), 2, "{found:?}");
    for f in &found {
        assert!(
            f.starts_with(&mounts),
            "{} outside {}",
            f.display(),
            mounts.display()
        );
    }
    for outside in ["/x", "/etc", "/tmp/x", "/tmp"] {
        assert!(!Path::new(outside).join(&name).exists(), "{outside}/{name}");
    }
}

#[test]
fn workdir_proc_self_fd_reaches_nothing_outside() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        "WORKDIR /proc/self/fd/5\nRUN ls -a . .. ../.. ; pwd\n",
        &[],
    );
    let (out, _, se) = run(&mut env.build(&ctx, &["--progress=json"]));
    let ev = Events::parse(&se);
    let listed = ev.output();
    // Names only the host or the store have; none may show up in the sandbox.
    let mut host_only: Vec<String> = Vec::new();
    for dir in [Path::new("/"), &env.root(), env.path()] {
        for e in fs::read_dir(dir).expect("read dir").flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if ![
                "bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr", "var",
            ]
            .contains(&n.as_str())
            {
                host_only.push(n);
            }
        }
    }
    for n in &host_only {
        assert!(
            !listed.lines().any(|l| l.trim() == n),
            "host entry {n:?} visible from the sandbox:\n{listed}"
        );
    }
    if out.status.success() {
        assert!(listed.contains("/proc/self/fd/5"), "{listed}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{se}");
    }
}

// ---------------------------------------------------------------------------------------------
// Exit codes and messages

#[test]
fn a_failed_run_exits_1_naming_the_line_exit_code_and_output() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        "RUN true\nRUN echo last words && exit 3\nRUN echo never\n",
        &[],
    );
    let (out, _, se) = run(&mut env.build(&ctx, &["--progress=plain"]));
    assert_eq!(out.status.code(), Some(1), "{se}");
    assert!(se.contains("Dockerfile:3"), "{se}");
    assert!(se.contains("exit code: 3"), "{se}");
    assert!(se.contains("last words"), "{se}");
    assert!(!se.contains("never\n"), "{se}");
}

#[test]
fn a_context_that_cannot_be_scanned_fails_the_build_with_its_own_error() {
    use std::os::unix::ffi::OsStrExt as _;
    let env = Env::new();
    // A stage that never reads the context may run while the context is scanned; the scan's
    // error is still the build's, the steps waiting for the context are cancelled, and nothing
    // is tagged.
    let ctx = env.context(
        "ctx",
        &format!("RUN echo other > /o\nFROM {BASE}\nCOPY --from=0 /o /o\nCOPY . /c\n"),
        &[("sub/ok", "ok")],
    );
    let bad = ctx
        .join("sub")
        .join(std::ffi::OsStr::from_bytes(b"bad\xff"));
    fs::write(&bad, "x").expect("non-UTF-8 name");
    let (out, _, se) = run(&mut env.build(&ctx, &["-t", "scanfail", "--progress=plain"]));
    assert_eq!(out.status.code(), Some(1), "{se}");
    assert!(
        se.contains("#1 ERROR: build context: sub: a name in this directory is not UTF-8"),
        "{se}"
    );
    assert!(
        se.ends_with("error: build context: sub: a name in this directory is not UTF-8\n"),
        "{se}"
    );
    let (_, images, _) = env.ok(strata(&env.root()).arg("images"));
    assert!(!images.contains("scanfail"), "{images}");
    // Without the bad name, the same build succeeds.
    fs::remove_file(&bad).expect("rm");
    env.ok(&mut env.build(&ctx, &["-t", "scanfail"]));
}

#[test]
fn unknown_target_bad_flag_and_unconsumed_build_arg() {
    let env = Env::new();
    let ctx = env.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {BASE} AS first\nRUN true\nFROM {BASE} AS second\nRUN true\n"),
    )
    .expect("Dockerfile");
    let (out, _, se) = run(&mut env.build(&ctx, &["--target", "nosuch"]));
    assert_ne!(out.status.code(), Some(0), "{se}");
    assert!(se.contains("nosuch"), "{se}");
    assert!(
        se.contains("first") && se.contains("second"),
        "lists the stages: {se}"
    );
    env.ok(&mut env.build(&ctx, &["--target", "first"]));

    let (out, _, se) = run(&mut env.build(&ctx, &["--no-such-flag"]));
    assert_eq!(out.status.code(), Some(125), "{se}");

    let (_, _, se) = env.ok(&mut env.build(&ctx, &["--build-arg", "UNUSED=1"]));
    assert!(
        se.contains("One or more build-args [UNUSED] were not consumed"),
        "{se}"
    );
}

#[test]
fn run_network_host_needs_the_entitlement() {
    let env = Env::new();
    let ctx = env.context("ctx", "RUN --network=host echo on-host\n", &[]);
    let (out, _, se) = run(&mut env.build(&ctx, &["--progress=plain"]));
    assert_ne!(out.status.code(), Some(0), "{se}");
    assert!(se.contains("network.host"), "names the entitlement: {se}");
    let ev = env.build_json(&ctx, &["--allow", "network.host"]);
    assert_eq!(ev.output(), "on-host\n");
}

#[test]
fn run_security_insecure_needs_the_entitlement_and_is_privileged() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        "RUN --security=insecure grep CapEff /proc/self/status && mkdir -p /m && \
         busybox mount -t tmpfs x /m && echo mounted\n",
        &[],
    );
    let (out, _, se) = run(&mut env.build(&ctx, &["--progress=plain"]));
    assert_ne!(out.status.code(), Some(0), "{se}");
    assert!(
        se.contains("security.insecure"),
        "names the entitlement: {se}"
    );
    let ev = env.build_json(&ctx, &["--allow", "security.insecure"]);
    let output = ev.output();
    assert!(output.ends_with("mounted\n"), "{output}");
    // Every capability strata holds, not Docker's default 14 (positive control: a plain RUN).
    assert!(!output.contains("00000000a80425fb"), "{output}");
    let plain = env.context("plain", "RUN grep CapEff /proc/self/status\n", &[]);
    let ev = env.build_json(&plain, &[]);
    assert!(ev.output().contains("00000000a80425fb"), "{}", ev.output());
}

/// Runs `cmd` with `input` on stdin; it must succeed; returns stdout.
fn ok_with_stdin(cmd: &mut Command, input: &[u8]) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread").expect("write stdin");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dockerfile_and_context_from_stdin_and_iidfile() {
    let env = Env::new();
    // -f -: the Dockerfile on stdin, the context a directory.
    let ctx = env.context("ctx", "", &[("a", "from dir\n")]);
    let iid = env.path().join("iid");
    let df = format!("FROM {BASE}\nCOPY a /a\nRUN cat /a\n");
    let id = ok_with_stdin(
        strata(&env.root())
            .args(["build", "-q", "-f", "-", "--iidfile"])
            .arg(&iid)
            .arg(&ctx),
        df.as_bytes(),
    );
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(read(&iid), id.trim());

    // -: the context as a tar on stdin, with its Dockerfile.
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [("Dockerfile", df.as_str()), ("a", "from tar\n")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data.as_bytes())
            .expect("append");
    }
    let bytes = tar.into_inner().expect("tar");
    let out_dir = env.path().join("out");
    let so = ok_with_stdin(
        strata(&env.root()).args([
            "build",
            "-q",
            "--output",
            &format!("type=local,dest={}", out_dir.display()),
            "-",
        ]),
        &bytes,
    );
    assert!(so.trim().starts_with("sha256:"), "{so}");
    assert_ne!(so.trim(), id.trim());
    assert_eq!(read(&out_dir.join("a")), "from tar\n");
}

/// Whether `archive` (a tar, maybe holding gzip'd or plain layer tars) has a regular file
/// `path` with `content`, directly or in a nested tar.
fn tar_has_file(bytes: &[u8], path: &str, content: &str, depth: u32) -> bool {
    let mut data = Vec::new();
    let Ok((_, mut decoded)) = strata_oci::compression::decompress(bytes, 1 << 30) else {
        return false;
    };
    if decoded.read_to_end(&mut data).is_err() {
        return false;
    }
    let mut ar = tar::Archive::new(data.as_slice());
    let Ok(entries) = ar.entries() else {
        return false;
    };
    for entry in entries {
        let Ok(mut entry) = entry else {
            return false;
        };
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
            .unwrap_or_default();
        let mut body = Vec::new();
        if entry.read_to_end(&mut body).is_err() {
            return false;
        }
        if name == path && body == content.as_bytes() {
            return true;
        }
        if depth > 0 && tar_has_file(&body, path, content, depth - 1) {
            return true;
        }
    }
    false
}

#[test]
fn every_output_type_writes_what_it_says() {
    let env = Env::new();
    let ctx = env.context("ctx", "RUN echo built > /built\n", &[]);
    let w = env.path();
    let (oci, docker, tar, local) = (
        w.join("o.tar"),
        w.join("d.tar"),
        w.join("t.tar"),
        w.join("local"),
    );
    for spec in [
        format!("type=oci,dest={}", oci.display()),
        format!("type=docker,dest={}", docker.display()),
        format!("type=tar,dest={}", tar.display()),
        format!("type=local,dest={}", local.display()),
    ] {
        env.ok(&mut env.build(&ctx, &["--output", &spec]));
    }
    assert_eq!(read(&local.join("built")), "built\n");
    assert!(local.join("bin/busybox").is_file());
    let tar_bytes = fs::read(&tar).expect("read tar");
    assert!(tar_has_file(&tar_bytes, "built", "built\n", 0));
    assert!(!tar_has_file(&tar_bytes, "manifest.json", "", 0));

    let oci_bytes = fs::read(&oci).expect("read oci");
    assert!(tar_has_file(
        &oci_bytes,
        "oci-layout",
        r#"{"imageLayoutVersion":"1.0.0"}"#,
        0
    ));
    assert!(
        tar_has_file(&oci_bytes, "built", "built\n", 1),
        "the layer holds /built"
    );
    let docker_bytes = fs::read(&docker).expect("read docker");
    assert!(
        tar_has_file(&docker_bytes, "built", "built\n", 1),
        "the layer holds /built"
    );
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(docker_bytes.as_slice());
    for e in ar.entries().expect("entries") {
        names.push(
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string(),
        );
    }
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    for out in ["oci", "docker"] {
        let p = w.join(format!("{}.tar", &out[..1]));
        let (o, _, se) = run(Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("{out}-archive:{}", p.display())));
        assert!(o.status.success(), "skopeo reads the {out} output: {se}");
    }
}

// ---------------------------------------------------------------------------------------------
// Interop

fn diff_ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|d| d.as_str().expect("diff id").to_string())
        .collect()
}

#[test]
fn a_built_image_loads_into_podman_and_skopeo_reads_it() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        "COPY a /a\nRUN echo two > /two\nENV X=1\nCMD [\"cat\", \"/a\"]\n",
        &[("a", "one\n")],
    );
    env.ok(&mut env.build(&ctx, &["-t", "interop/built:v1"]));
    let inspect: Value =
        serde_json::from_str(&env.st(&["inspect", "interop/built:v1"])).expect("inspect JSON");
    let want = diff_ids(&inspect[0]["RootFS"]["Layers"]);
    assert_eq!(want.len(), 3, "base + COPY + RUN: {want:?}");

    let archive = env.path().join("built.tar");
    env.st(&[
        "save",
        "-o",
        &archive.display().to_string(),
        "interop/built:v1",
    ]);
    let transport = format!("docker-archive:{}", archive.display());
    let (_, cfg, _) = env.ok(Command::new("skopeo").args(["inspect", "--config", &transport]));
    let cfg: Value = serde_json::from_str(&cfg).expect("skopeo config JSON");
    assert_eq!(diff_ids(&cfg["rootfs"]["diff_ids"]), want);
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["cat", "/a"]));

    let store = env.path().join("podman");
    let (_, loaded, _) = env.ok(podman(&store).arg("load").arg("-i").arg(&archive));
    assert!(loaded.contains("interop/built:v1"), "{loaded}");
    let (_, pi, _) = env.ok(podman(&store).args(["image", "inspect", "interop/built:v1"]));
    let pi: Value = serde_json::from_str(&pi).expect("podman inspect JSON");
    assert_eq!(diff_ids(&pi[0]["RootFS"]["Layers"]), want);
}

// ---------------------------------------------------------------------------------------------
// kill -9

/// The lines of /proc/self/mountinfo that mention `needle`.
fn mounts_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.display().to_string();
    read(Path::new("/proc/self/mountinfo"))
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn kill_9_during_run_leaves_no_process_or_mount_and_the_store_recovers() {
    let env = Env::new();
    // Not `sleep 1234`: tests/sandbox.rs runs that marker, maybe at the same time.
    let argv = ["sleep", "7341"];
    assert!(
        pids_with_argv(&argv).is_empty(),
        "a stray `sleep 7341` runs already"
    );
    let ctx = env.context("ctx", "COPY a /a\nRUN sleep 7341\n", &[("a", "a\n")]);
    let mut child = env
        .build(&ctx, &["--progress=plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn build");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids_with_argv(&argv).is_empty() {
        assert!(Instant::now() < deadline, "the RUN never started");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "build ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids_with_argv(&argv).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pids_with_argv(&argv),
        Vec::<u32>::new(),
        "sandbox outlived kill -9"
    );
    // No mount of this store (overlay or other) is left in the host's mount namespace.
    assert_eq!(mounts_mentioning(&env.root()), Vec::<String>::new());
    assert_eq!(mounts_mentioning(env.path()), Vec::<String>::new());
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {BASE}\nCOPY a /a\nRUN cat /a\n"),
    )
    .expect("Dockerfile");
    let ev = env.build_json(&ctx, &[]);
    assert_eq!(ev.output(), "a\n");
    env.st(&["system", "verify"]);
}

// ---------------------------------------------------------------------------------------------
// Pruning

/// The `Build Cache` row of `system df --format json`: (total count, size).
fn build_cache_row(env: &Env) -> (u64, String) {
    let out = env.st(&["system", "df", "--format", "json"]);
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).expect("df JSON line");
        if v["Type"] == "Build Cache" {
            let n = v["TotalCount"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .expect("TotalCount");
            return (n, v["Size"].as_str().expect("Size").to_string());
        }
    }
    panic!("no Build Cache row in:\n{out}")
}

#[test]
fn builder_prune_drops_the_build_cache_and_system_prune_keeps_images() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        "RUN --mount=type=cache,id=pm,target=/c echo data > /c/data\nRUN echo x > /x\n",
        &[],
    );
    env.ok(&mut env.build(&ctx, &["-t", "prune/me:v1"]));
    let mounts = env.root().join("buildcache/mounts");
    assert!(
        !find_named(&mounts, "data").is_empty(),
        "the cache mount holds data"
    );
    let (before, _) = build_cache_row(&env);
    assert!(
        before >= 4,
        "2 records, a cache mount and the context index: {before}"
    );
    let indexes = || {
        fs::read_dir(env.root().join("context"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    };
    assert_eq!(indexes(), 1, "the context's stat index");

    let out = env.st(&["builder", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted build cache records"), "{out}");
    assert!(out.contains("context indexes: 1"), "{out}");
    assert_eq!(indexes(), 0, "the context index is removed");
    let (after, size) = build_cache_row(&env);
    assert_eq!((after, size.as_str()), (0, "0B"));
    assert!(
        find_named(&mounts, "data").is_empty(),
        "cache mount removed"
    );

    // A rebuild runs again (no records), and system prune keeps what the image needs.
    let ev = env.build_json(&ctx, &["-t", "prune/me:v1"]);
    assert!(ev.cache().iter().all(|(_, h)| !h), "{:?}", ev.cache());
    env.st(&["system", "prune", "-f"]);
    env.st(&["system", "verify"]);
    let archive = env.path().join("after-prune.tar");
    env.st(&["save", "-o", &archive.display().to_string(), "prune/me:v1"]);
    assert!(tar_has_file(
        &fs::read(&archive).expect("read"),
        "x",
        "x\n",
        1
    ));
    let listed = env.st(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(listed.lines().any(|l| l == "prune/me:v1"), "{listed}");
}

#[test]
fn context_symlinks_to_dirs_resolve_inside_the_context() {
    let env = Env::new();
    fs::write(env.path().join("x"), "outside the context\n").expect("write");
    let ctx = env.context(
        "ctx",
        "COPY up/x /x\nCOPY etcl/passwd /p\nRUN cat /x /p\n",
        &[("x", "inside\n"), ("etc/passwd", "the context's passwd\n")],
    );
    // `up -> ..` is the context root, `etcl -> /etc` is <context>/etc.
    std::os::unix::fs::symlink("..", ctx.join("up")).expect("symlink");
    std::os::unix::fs::symlink("/etc", ctx.join("etcl")).expect("symlink");
    let ev = env.build_json(&ctx, &[]);
    assert_eq!(ev.output(), "inside\nthe context's passwd\n");

    // Through a symlink to a dir that only exists on the host: not found.
    fs::remove_dir_all(ctx.join("etc")).expect("rm etc");
    let (out, _, se) = run(&mut env.build(&ctx, &["--progress=plain"]));
    assert_eq!(out.status.code(), Some(1), "{se}");
    assert!(
        se.contains("etcl/passwd") && se.contains("not found"),
        "{se}"
    );
}

#[test]
fn copy_resolves_symlinks_in_the_image_inside_its_rootfs() {
    let env = Env::new();
    let name = format!("landed-{}", std::process::id());
    let host_dir = env.path().join("host-dir");
    fs::create_dir_all(&host_dir).expect("mkdir");
    let ctx = env.context(
        "ctx",
        &format!(
            "RUN ln -s /etc/passwd /l && ln -s ../../../../../../../tmp /out && ln -s {} /abs\n\
             COPY {name} /out/\n\
             COPY {name} /abs/\n\
             RUN cat /out/{name} /tmp/{name} /abs/{name}\n\
             FROM {BASE}\n\
             COPY --from=0 /l /got\n\
             RUN cat /got\n",
            host_dir.display()
        ),
        &[(name.as_str(), "from the context\n")],
    );
    let ev = env.build_json(&ctx, &[]);
    let want_passwd = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n\
                       nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    assert_eq!(
        ev.output(),
        format!("{}{want_passwd}", "from the context\n".repeat(3))
    );
    assert!(
        !Path::new("/tmp").join(&name).exists(),
        "landed in the host's /tmp"
    );
    assert!(!host_dir.join(&name).exists(), "landed in the host dir");
}

#[test]
fn cache_mount_symlinks_to_the_host_are_not_followed_by_df_or_prune() {
    let env = Env::new();
    let victim = env.path().join("victim");
    fs::create_dir_all(&victim).expect("mkdir");
    fs::write(victim.join("keep"), "precious\n").expect("write");
    fs::write(victim.join("big"), vec![7u8; 4 << 20]).expect("write");
    let ctx = env.context(
        "ctx",
        &format!(
            "RUN --mount=type=cache,id=v,target=/c ln -s {v} /c/dirlink && \
             ln -s {v}/keep /c/filelink\n",
            v = victim.display()
        ),
        &[],
    );
    env.build_json(&ctx, &[]);
    let (count, size) = build_cache_row(&env);
    assert!(count >= 2, "a record and a cache mount: {count}");
    assert!(
        !size.ends_with("MB") && !size.ends_with("GB"),
        "df followed a symlink out of the cache mount: {size}"
    );
    env.st(&["builder", "prune", "-a", "-f"]);
    assert_eq!(read(&victim.join("keep")), "precious\n");
    assert_eq!(
        fs::metadata(victim.join("big")).expect("stat").len(),
        4 << 20
    );
    assert_eq!(build_cache_row(&env).0, 0);
}
