//! The container record and its store under `ROOT/containers/`.
//!
//! Layout (see DESIGN-5): `ROOT/containers/<id>/container.json` is the record, replaced
//! atomically (temp file + rename) while `ROOT/containers/<id>/lock` is held with `flock`;
//! `ROOT/containers/names/<name>` holds the id of the container that owns the name and is
//! created with `O_CREAT|O_EXCL`, so two processes can never take the same name.
//!
//! References: a container is found by its name, its full 64-hex id, or any unique id prefix
//! ([`ContainerStore::resolve`]). Without `--name`, a docker-style `adjective_surname` name is
//! drawn ([`random_name`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The time docker records for "never".
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// A container's lifecycle status (docker's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started (or being started).
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Frozen (not produced by strata yet; kept for docker's vocabulary).
    Paused,
    /// Being restarted.
    Restarting,
    /// Its process ended.
    Exited,
    /// Its supervisor vanished while it was running, or removal failed.
    Dead,
}

impl Status {
    /// Docker's lowercase name (`created`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// The runtime state of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Lifecycle status.
    pub status: Status,
    /// Host pid of the container's pid 1 (0 when not running).
    pub pid: i32,
    /// `/proc/<pid>/stat` field 22 of `pid`, so a reused pid is never signalled.
    pub pid_start: u64,
    /// Host pid of the supervisor (0 when none).
    pub supervisor_pid: i32,
    /// `/proc/<pid>/stat` field 22 of `supervisor_pid`.
    pub supervisor_start: u64,
    /// The exit code of the last run (128 + signal when killed).
    pub exit_code: i32,
    /// Whether the kernel's OOM killer ended the last run.
    pub oom_killed: bool,
    /// Why the container could not start (empty when it did).
    pub error: String,
    /// RFC 3339 time of the last start, [`NEVER`] when never.
    pub started_at: String,
    /// RFC 3339 time of the last exit, [`NEVER`] when never.
    pub finished_at: String,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            pid_start: 0,
            supervisor_pid: 0,
            supervisor_start: 0,
            exit_code: 0,
            oom_killed: false,
            error: String::new(),
            started_at: NEVER.into(),
            finished_at: NEVER.into(),
        }
    }
}

/// A mount of a container, resolved from `-v`/`--mount`/`--volumes-from` and the image's
/// `VOLUME`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountSpec {
    /// A host path bound in.
    Bind {
        /// Absolute host path.
        source: PathBuf,
        /// Absolute path in the container.
        destination: String,
        /// Read-only.
        readonly: bool,
    },
    /// A named or anonymous volume.
    Volume {
        /// The volume's name.
        name: String,
        /// Absolute path in the container.
        destination: String,
        /// Read-only.
        readonly: bool,
        /// Anonymous (created for this container; removed by `rm -v`).
        anonymous: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        destination: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
}

pub use crate::net::PortBinding;

/// Everything a container was created with: the flags merged with the image's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunConfig {
    /// `K=V` environment (image's, then `--env-file`, then `-e`).
    pub env: Vec<String>,
    /// The working directory (absolute; `/` when none).
    pub working_dir: String,
    /// `USER[:GROUP]` as given or from the image (empty: root).
    pub user: String,
    /// The host name.
    pub hostname: String,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
    /// The entrypoint in effect (image's, or `--entrypoint`).
    pub entrypoint: Vec<String>,
    /// The command in effect (the arguments after IMAGE, or the image's CMD).
    pub cmd: Vec<String>,
    /// Labels (the image's plus `--label`).
    pub labels: BTreeMap<String, String>,
    /// `--stop-signal` (the image's STOPSIGNAL, default `SIGTERM`).
    pub stop_signal: String,
    /// `--stop-timeout` seconds (default 10).
    pub stop_timeout: Option<u32>,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--network`: `bridge`, `none` or `host`.
    pub network_mode: String,
    /// `-p` (and `-P`) bindings.
    pub port_bindings: Vec<PortBinding>,
    /// `-P`.
    pub publish_all: bool,
    /// The image's `ExposedPorts` (`8080/tcp`).
    pub exposed_ports: Vec<String>,
    /// Mounts, resolved.
    pub mounts: Vec<MountSpec>,
    /// `--volumes-from` as given.
    pub volumes_from: Vec<String>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--privileged`.
    pub privileged: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `--init`.
    pub init: bool,
    /// `-m` in bytes.
    pub memory: Option<i64>,
    /// `--cpus` in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
}

/// The container record (`ROOT/containers/<id>/container.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// 64 lowercase hex.
    pub id: String,
    /// The name, without docker's leading `/`.
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The image as the user typed it.
    pub image: String,
    /// `sha256:<config digest>`.
    pub image_id: String,
    /// The command's program (entrypoint and cmd combined).
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The image's layers (diff IDs, base first): the overlay's lower dirs and GC roots.
    #[serde(default)]
    pub layers: Vec<String>,
    /// Flags merged with the image's config.
    pub config: RunConfig,
    /// Runtime state.
    #[serde(default)]
    pub state: State,
}

impl Container {
    /// The 12-hex short id.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// Docker's `inspect` JSON of the container; `dir` is its directory.
    pub fn inspect_json(&self, dir: &Path) -> serde_json::Value {
        let st = &self.state;
        let cfg = &self.config;
        let running = st.status == Status::Running;
        let cmd = if cfg.cmd.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(cfg.cmd)
        };
        let entrypoint = if cfg.entrypoint.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(cfg.entrypoint)
        };
        let ports = crate::net::inspect_ports(&cfg.port_bindings, &cfg.exposed_ports);
        let bindings = crate::net::inspect_ports(&cfg.port_bindings, &[]);
        let mounts: Vec<serde_json::Value> = cfg
            .mounts
            .iter()
            .map(|m| match m {
                MountSpec::Bind {
                    source,
                    destination,
                    readonly,
                } => serde_json::json!({
                    "Type": "bind", "Source": source, "Destination": destination,
                    "Mode": "", "RW": !readonly, "Propagation": "rprivate"}),
                MountSpec::Volume {
                    name,
                    destination,
                    readonly,
                    ..
                } => serde_json::json!({
                    "Type": "volume", "Name": name, "Destination": destination,
                    "Driver": "local", "Mode": "", "RW": !readonly, "Propagation": ""}),
                MountSpec::Tmpfs { destination, .. } => serde_json::json!({
                    "Type": "tmpfs", "Source": "", "Destination": destination,
                    "Mode": "", "RW": true, "Propagation": ""}),
            })
            .collect();
        let etc = dir.join("etc");
        serde_json::json!({
            "Id": self.id,
            "Created": self.created,
            "Path": self.path,
            "Args": self.args,
            "State": {
                "Status": st.status.as_str(),
                "Running": running,
                "Paused": st.status == Status::Paused,
                "Restarting": st.status == Status::Restarting,
                "OOMKilled": st.oom_killed,
                "Dead": st.status == Status::Dead,
                "Pid": if running { st.pid } else { 0 },
                "ExitCode": st.exit_code,
                "Error": st.error,
                "StartedAt": st.started_at,
                "FinishedAt": st.finished_at,
            },
            "Image": self.image_id,
            "ResolvConfPath": etc.join("resolv.conf"),
            "HostnamePath": etc.join("hostname"),
            "HostsPath": etc.join("hosts"),
            "LogPath": dir.join(format!("{}-json.log", self.id)),
            "Name": format!("/{}", self.name),
            "RestartCount": 0,
            "Driver": "overlay",
            "Platform": "linux",
            "HostConfig": {
                "AutoRemove": cfg.auto_remove,
                "NetworkMode": cfg.network_mode,
                "PortBindings": bindings,
                "PublishAllPorts": cfg.publish_all,
                "VolumesFrom": cfg.volumes_from,
                "CapAdd": cfg.cap_add,
                "CapDrop": cfg.cap_drop,
                "Privileged": cfg.privileged,
                "ReadonlyRootfs": cfg.read_only,
                "Init": cfg.init,
                "Memory": cfg.memory.unwrap_or(0),
                "NanoCpus": cfg.nano_cpus.unwrap_or(0),
                "PidsLimit": cfg.pids_limit,
                "LogConfig": {"Type": "json-file", "Config": {}},
            },
            "GraphDriver": {
                "Name": "overlay",
                "Data": {"UpperDir": dir.join("upper"), "WorkDir": dir.join("work")},
            },
            "Mounts": mounts,
            "Config": {
                "Hostname": cfg.hostname,
                "User": cfg.user,
                "Tty": cfg.tty,
                "OpenStdin": cfg.open_stdin,
                "Env": cfg.env,
                "Cmd": cmd,
                "Image": self.image,
                "WorkingDir": cfg.working_dir,
                "Entrypoint": entrypoint,
                "Labels": cfg.labels,
                "StopSignal": cfg.stop_signal,
                "StopTimeout": cfg.stop_timeout,
            },
            "NetworkSettings": {"Ports": ports},
        })
    }
}

/// The containers under `ROOT/containers/`.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    dir: PathBuf,
}

/// A held `flock` on a container's `lock` file; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `n` random bytes from the kernel.
fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // Why getrandom: the kernel's CSPRNG without opening a file.
        // https://man7.org/linux/man-pages/man2/getrandom.2.html
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("getrandom", e));
        }
        filled += n.unsigned_abs();
    }
    Ok(buf)
}

/// A fresh random container id (64 hex, never all digits so it can't look like a number).
///
/// # Errors
/// The kernel's random source failing.
pub fn new_id() -> Result<String> {
    loop {
        let bytes: [u8; 32] = random_bytes()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if !id[..12].bytes().all(|b| b.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

const ADJECTIVES: [&str; 32] = [
    "admiring", "agitated", "amazing", "angry", "awesome", "blissful", "bold", "brave", "busy",
    "charming", "clever", "cool", "dazzling", "eager", "ecstatic", "elegant", "epic", "festive",
    "focused", "gallant", "gifted", "happy", "hungry", "jolly", "keen", "laughing", "loving",
    "modest", "nifty", "quirky", "relaxed", "serene",
];
const SURNAMES: [&str; 32] = [
    "albattani",
    "babbage",
    "bell",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "fermat",
    "galileo",
    "goldberg",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "mccarthy",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wozniak",
    "wright",
];

/// A docker-style random name (`adjective_surname`, with a digit appended after a collision:
/// `attempt > 0`).
///
/// # Errors
/// The kernel's random source failing.
pub fn random_name(attempt: u32) -> Result<String> {
    let r: [u8; 3] = random_bytes()?;
    let base = format!(
        "{}_{}",
        ADJECTIVES[usize::from(r[0]) % ADJECTIVES.len()],
        SURNAMES[usize::from(r[1]) % SURNAMES.len()]
    );
    Ok(if attempt == 0 {
        base
    } else {
        format!("{base}{}", r[2] % 10)
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

impl ContainerStore {
    /// The store under `root/containers` (created when missing).
    ///
    /// # Errors
    /// Creating the directories.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("containers");
        let names = dir.join("names");
        std::fs::create_dir_all(&names).map_err(|e| Error::io(&names, e))?;
        Ok(ContainerStore { dir })
    }

    /// `ROOT/containers`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ROOT/containers/<id>`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(id).join("container.json")
    }

    fn name_path(&self, name: &str) -> PathBuf {
        self.dir.join("names").join(name)
    }

    /// Takes `name` for `id` (`O_CREAT|O_EXCL`).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name, [`Error::Conflict`] when another container has it.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        if !valid_name(name) {
            return Err(Error::Invalid(format!(
                "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let path = self.name_path(name);
        let mut retried = false;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => return f.write_all(id.as_bytes()).map_err(|e| Error::io(&path, e)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if !retried && self.stale_name(&path) {
                        // A create that crashed between taking the name and writing the
                        // record: the name is free again.
                        let _ = std::fs::remove_file(&path);
                        retried = true;
                        continue;
                    }
                    return Err(self.name_conflict(name, &path));
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }

    /// Whether the name file at `path` belongs to no container and is older than a create
    /// takes (a minute), i.e. left by a crashed create.
    fn stale_name(&self, path: &Path) -> bool {
        let owner = std::fs::read_to_string(path).unwrap_or_default();
        let old = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        old && !(valid_id(owner.trim()) && self.record_path(owner.trim()).exists())
    }

    fn name_conflict(&self, name: &str, path: &Path) -> Error {
        let owner = std::fs::read_to_string(path).unwrap_or_default();
        Error::Conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use by container \
             \"{owner}\". You have to remove (or rename) that container to be able to reuse \
             that name."
        ))
    }

    /// Creates the record of a new container: takes its name (a random one when `name` is
    /// `None`), creates `ROOT/containers/<id>/` and writes `container.json`. On failure
    /// nothing is left behind.
    ///
    /// # Errors
    /// A taken or invalid name, or the filesystem.
    pub fn create(&self, mut c: Container, name: Option<&str>) -> Result<Container> {
        match name {
            Some(n) => self.reserve_name(n, &c.id)?,
            None => {
                let mut attempt = 0;
                loop {
                    let n = random_name(attempt)?;
                    match self.reserve_name(&n, &c.id) {
                        Ok(()) => {
                            c.name = n;
                            break;
                        }
                        Err(Error::Conflict(_)) if attempt < 50 => attempt += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        if let Some(n) = name {
            c.name = n.to_string();
        }
        let dir = self.container_dir(&c.id);
        let made = std::fs::create_dir(&dir)
            .map_err(|e| Error::io(&dir, e))
            .and_then(|()| {
                let lock = dir.join("lock");
                File::create(&lock).map_err(|e| Error::io(&lock, e))?;
                self.save(&c)
            });
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(self.name_path(&c.name));
            return Err(e);
        }
        Ok(c)
    }

    /// Takes the container's lock (exclusive `flock`), blocking.
    ///
    /// # Errors
    /// [`Error::NoSuchContainer`] when it is gone, or the filesystem.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        let path = self.dir.join(id).join("lock");
        let file = File::open(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::NoSuchContainer(id.to_string()),
            _ => Error::io(&path, e),
        })?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(Lock { _file: file })
    }

    /// Writes the record atomically (callers hold the lock or own a fresh container).
    ///
    /// # Errors
    /// The filesystem.
    pub fn save(&self, c: &Container) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(c)
            .map_err(|e| Error::Invalid(format!("cannot serialize the container record: {e}")))?;
        write_atomic(&self.record_path(&c.id), &bytes)
    }

    /// Reads a record by full id.
    ///
    /// # Errors
    /// [`Error::NoSuchContainer`] when missing, [`Error::Invalid`] for a corrupt record.
    pub fn load(&self, id: &str) -> Result<Container> {
        if !valid_id(id) {
            return Err(Error::NoSuchContainer(id.to_string()));
        }
        let path = self.record_path(id);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::NoSuchContainer(id.to_string()),
            _ => Error::io(&path, e),
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("{}: corrupt record: {e}", path.display())))
    }

    /// Changes a record under its lock: loads it, applies `f`, saves it and returns it.
    ///
    /// # Errors
    /// Those of [`Self::lock`], [`Self::load`], [`Self::save`] and `f`'s.
    pub fn update<F>(&self, id: &str, f: F) -> Result<Container>
    where
        F: FnOnce(&mut Container) -> Result<()>,
    {
        let _lock = self.lock(id)?;
        let mut c = self.load(id)?;
        f(&mut c)?;
        self.save(&c)?;
        Ok(c)
    }

    /// Every container's id (unordered).
    ///
    /// # Errors
    /// Reading the directory.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut ids = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            if let Some(name) = entry.file_name().to_str()
                && valid_id(name)
            {
                ids.push(name.to_string());
            }
        }
        Ok(ids)
    }

    /// Every container, newest first. Records that vanish meanwhile (a concurrent `rm`) or
    /// are half-created are skipped.
    ///
    /// # Errors
    /// Reading the directory or a corrupt record.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            match self.load(&id) {
                Ok(c) => out.push(c),
                Err(Error::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Finds a container by name, full id, or unique id prefix; returns its full id.
    ///
    /// # Errors
    /// [`Error::NoSuchContainer`], or [`Error::Ambiguous`] for a prefix of several ids.
    pub fn resolve(&self, reference: &str) -> Result<String> {
        let r = reference.strip_prefix('/').unwrap_or(reference);
        if r.is_empty() {
            return Err(Error::NoSuchContainer(reference.to_string()));
        }
        if valid_id(r) && self.record_path(r).exists() {
            return Ok(r.to_string());
        }
        if valid_name(r) {
            let path = self.name_path(r);
            match std::fs::read_to_string(&path) {
                Ok(id) if valid_id(id.trim()) && self.record_path(id.trim()).exists() => {
                    return Ok(id.trim().to_string());
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        let lower = r.to_ascii_lowercase();
        if !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NoSuchContainer(reference.to_string()));
        }
        let matches: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|id| id.starts_with(&lower))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::NoSuchContainer(reference.to_string())),
            _ => Err(Error::Ambiguous(reference.to_string())),
        }
    }

    /// Resolves and loads.
    ///
    /// # Errors
    /// Those of [`Self::resolve`] and [`Self::load`].
    pub fn get(&self, reference: &str) -> Result<Container> {
        self.load(&self.resolve(reference)?)
    }

    /// Deletes a container's directory and releases its name. The caller made sure it is
    /// not running (and unmounted nothing: the sandbox's mounts die with its namespace).
    ///
    /// # Errors
    /// The filesystem.
    pub fn remove(&self, c: &Container) -> Result<()> {
        let dir = self.container_dir(&c.id);
        // The record goes first, so a crash midway leaves no half-container that `ps` shows.
        let record = self.record_path(&c.id);
        match std::fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&record, e)),
        }
        let name = self.name_path(&c.name);
        if std::fs::read_to_string(&name).is_ok_and(|owner| owner.trim() == c.id) {
            let _ = std::fs::remove_file(&name);
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&dir, e)),
        }
    }
}

/// `/proc/<pid>/stat` field 22 (start time in clock ticks since boot), or `None` when the
/// process is gone.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after comm start at field 3 (state); field 22 is index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` still is the process that started at `start` (not a reused pid).
pub fn same_process(pid: i32, start: u64) -> bool {
    start != 0 && proc_start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: String) -> Container {
        Container {
            id,
            name: String::new(),
            created: strata_oci::image::now_rfc3339(),
            image: "busybox".into(),
            image_id: "sha256:00".into(),
            path: "sh".into(),
            args: vec![],
            layers: vec![],
            config: RunConfig::default(),
            state: State::default(),
        }
    }

    #[test]
    fn names_are_unique_and_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(tmp.path()).unwrap();
        let a = store
            .create(sample(new_id().unwrap()), Some("web"))
            .unwrap();
        let err = store.create(sample(new_id().unwrap()), Some("web"));
        assert!(matches!(err, Err(Error::Conflict(_))));
        assert_eq!(store.ids().unwrap().len(), 1, "nothing left by the failure");
        assert_eq!(store.resolve("web").unwrap(), a.id);
        assert_eq!(store.resolve(&a.id[..12]).unwrap(), a.id);
        assert_eq!(store.resolve(&a.id[..3]).unwrap(), a.id);
        assert!(matches!(
            store.resolve("nope"),
            Err(Error::NoSuchContainer(_))
        ));
        let b = store.create(sample(new_id().unwrap()), None).unwrap();
        assert!(valid_name(&b.name));
        assert_eq!(store.resolve(&b.name).unwrap(), b.id);
        assert_eq!(store.list().unwrap().len(), 2);
        store.remove(&a).unwrap();
        assert!(matches!(
            store.resolve("web"),
            Err(Error::NoSuchContainer(_))
        ));
        store
            .create(sample(new_id().unwrap()), Some("web"))
            .unwrap();
    }

    #[test]
    fn a_name_left_by_a_crashed_create_is_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(tmp.path()).unwrap();
        let ghost = new_id().unwrap();
        let name = store.dir().join("names").join("ghost");
        std::fs::write(&name, &ghost).unwrap();
        // Fresh: maybe a create in progress, so still taken.
        assert!(matches!(
            store.create(sample(new_id().unwrap()), Some("ghost")),
            Err(Error::Conflict(_))
        ));
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        File::options()
            .write(true)
            .open(&name)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let c = store
            .create(sample(new_id().unwrap()), Some("ghost"))
            .unwrap();
        assert_eq!(store.resolve("ghost").unwrap(), c.id);
    }

    #[test]
    fn ambiguous_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(tmp.path()).unwrap();
        let mut one = "a".repeat(63);
        one.push('1');
        let mut two = "a".repeat(63);
        two.push('2');
        store.create(sample(one), Some("x1")).unwrap();
        store.create(sample(two), Some("x2")).unwrap();
        assert!(matches!(store.resolve("aaa"), Err(Error::Ambiguous(_))));
    }

    #[test]
    fn update_is_persisted() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(tmp.path()).unwrap();
        let c = store.create(sample(new_id().unwrap()), Some("u1")).unwrap();
        store
            .update(&c.id, |c| {
                c.state.status = Status::Running;
                Ok(())
            })
            .unwrap();
        assert_eq!(store.load(&c.id).unwrap().state.status, Status::Running);
    }

    #[test]
    fn bad_names_and_ids() {
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a"));
        assert!(valid_name("my_web.1-2"));
        let tmp = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(tmp.path()).unwrap();
        assert!(matches!(store.load("../x"), Err(Error::NoSuchContainer(_))));
        assert!(matches!(
            store.resolve("../../etc"),
            Err(Error::NoSuchContainer(_))
        ));
    }

    #[test]
    fn start_time_of_self() {
        let me = i32::try_from(std::process::id()).unwrap();
        let t = proc_start_time(me).unwrap();
        assert!(same_process(me, t));
        assert!(!same_process(me, t + 1));
    }
}
