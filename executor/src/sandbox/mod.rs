//! The sandbox that runs every RUN step and every container of `strata run`.
//!
//! It is driven by an OCI runtime spec written as `BUNDLE/config.json` and obeys it the way
//! `runc` does: process args/env/cwd/user/terminal, host name, mounts, namespaces (no `network`
//! entry means the host's network), capabilities, masked and read-only paths, devices, rlimits,
//! `noNewPrivileges`, seccomp, `root.readonly`, and cgroups from `linux.resources` /
//! `linux.cgroupsPath` ([`cgroup`]). [`default_spec`] builds Docker's default profile;
//! [`adjust_capabilities`], [`make_privileged`] and [`set_resources`] apply docker's flags.
//!
//! Process model (like `runc create`/`start`): [`create`] makes the cgroup and spawns the
//! strata binary as `strata __sandbox-init BUNDLE` ([`init_main`]), already in the cgroup, with
//! the caller's stdio, a sync pipe (fd 3) and a start barrier (fd 4). The init sets
//! `PR_SET_PDEATHSIG`, unshares pid/uts/ipc(/net), forks and reports the child's host pid; the
//! child, pid 1 of the new pid namespace, unshares the mount namespace, mounts the overlay
//! named by the spec's `org.strata.overlay.*` annotations (so a killed sandbox never leaves a
//! mount behind), the spec's mounts, pivots, masks, closes every fd but 0-2 and the two pipes,
//! drops capabilities, installs seccomp, changes user, says "ready" and blocks, non-dumpable,
//! on the barrier. [`Created::start`] releases it: it closes the barrier and execs (the sync
//! pipe is close-on-exec). The outer init forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT and exits
//! like its child ([`Running::wait`]). [`exec`] starts `strata __sandbox-exec PID`
//! ([`exec_main`]), which joins a running container's cgroups and namespaces and runs the same
//! finishing code. Setup errors come back through the sync pipe as [`Error::Sandbox`]; the
//! command's own status as [`ExitStatus`]. [`run`] is create + start + wait.
//!
//! [`stub_lower`] provides the mount point stubs (`/dev`, `/proc`, `/sys`, `/etc/hosts`, ...)
//! as the lowest overlay layer, so they never land in the upper dir (the new layer).

mod capabilities;
pub mod cgroup;
mod exec;
mod init;
mod lifecycle;
pub mod mounts;
pub mod seccomp;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

pub use capabilities::{adjust_capabilities, make_privileged};
pub use cgroup::{Resources, set_resources};
pub use exec::exec_main;
pub use init::init_main;
pub use lifecycle::{Created, ExecError, Outcome, Running, create, exec, process_start_time};
pub use mounts::{ANN_CHDIR, ANN_LOWER, ANN_UPPER, ANN_WORK};
pub use oci_spec::runtime;

use crate::error::{Error, Result};

/// The network of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace with only `lo` (up).
    None,
    /// The host's network (`default` and `host` in Docker's terms).
    Host,
}

/// Docker's 14 default capabilities (`CapBnd 00000000a80425fb`).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// moby's masked paths.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// moby's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The PATH a process gets when its env has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn spec_err(e: oci_spec::OciSpecError) -> Error {
    Error::Sandbox(format!("spec: {e}"))
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_err)
}

/// Docker's default profile as an OCI spec: namespaces (mount, pid, uts, ipc, + network for
/// [`Network::None`]), the 14 default capabilities (effective and permitted only for uid 0,
/// as Docker does; inheritable and ambient empty), masked and read-only paths, the default
/// mounts (`/proc`, `/dev` tmpfs, `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys` read-only) and
/// the default seccomp profile. `root` is the rootfs mount point.
///
/// # Errors
/// oci-spec's builder validation.
#[allow(clippy::too_many_arguments)]
pub fn default_spec(
    root: &Path,
    args: Vec<String>,
    env: Vec<String>,
    cwd: &str,
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
    hostname: &str,
    network: Network,
) -> Result<Spec> {
    let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let granted = if uid == 0 {
        caps.clone()
    } else {
        Default::default()
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps)
        .effective(granted.clone())
        .permitted(granted)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()
        .map_err(spec_err)?;
    let user = UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(additional_gids)
        .build()
        .map_err(spec_err)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(false)
        .build()
        .map_err(spec_err)?;
    let mut kinds = vec![
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
    ];
    if network == Network::None {
        kinds.push(LinuxNamespaceType::Network);
    }
    let namespaces = kinds
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(spec_err)?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(READONLY_PATHS.map(String::from).to_vec())
        .seccomp(seccomp::docker_default()?)
        .build()
        .map_err(spec_err)?;
    let mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    ];
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(root)
                .readonly(false)
                .build()
                .map_err(spec_err)?,
        )
        .hostname(hostname)
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(spec_err)
}

/// An overlay root: `lower` top first; relative lower dirs are resolved from `chdir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The lower dirs, top first (the [`stub_lower`] dir last).
    pub lower: Vec<PathBuf>,
    /// The upper dir: the new layer.
    pub upper: PathBuf,
    /// overlayfs's work dir (same filesystem as `upper`).
    pub work: PathBuf,
    /// The directory the sandbox mounts from, so `lowerdir=` stays short with many layers.
    pub chdir: Option<PathBuf>,
}

/// Writes the overlay annotations the sandbox mounts its root from.
pub fn set_overlay(spec: &mut Spec, overlay: &Overlay) {
    let mut ann = spec.annotations().clone().unwrap_or_default();
    let lower: Vec<String> = overlay
        .lower
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    ann.insert(ANN_LOWER.into(), lower.join(":"));
    ann.insert(ANN_UPPER.into(), overlay.upper.display().to_string());
    ann.insert(ANN_WORK.into(), overlay.work.display().to_string());
    match &overlay.chdir {
        Some(d) => ann.insert(ANN_CHDIR.into(), d.display().to_string()),
        None => ann.remove(ANN_CHDIR),
    };
    spec.set_annotations(Some(ann));
}

fn push_mount(spec: &mut Spec, m: Mount) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(m);
    spec.set_mounts(Some(mounts));
}

/// Adds a bind mount of `source` (file or directory) at `destination` (`rbind`, plus `ro`).
pub fn add_bind(spec: &mut Spec, source: &Path, destination: &str, readonly: bool) {
    let mut options = vec!["rbind".to_string()];
    if readonly {
        options.push("ro".into());
    }
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some("bind".into()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options));
    push_mount(spec, m);
}

/// Adds a tmpfs at `destination` (`nosuid,nodev`, and `size=` when given).
pub fn add_tmpfs(spec: &mut Spec, destination: &str, size: Option<u64>) {
    let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
    if let Some(s) = size {
        options.push(format!("size={s}"));
    }
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some("tmpfs".into()));
    m.set_source(Some(PathBuf::from("tmpfs")));
    m.set_options(Some(options));
    push_mount(spec, m);
}

/// Writes `hosts` (as BuildKit does, naming the spec's host name) and `resolv.conf` (the
/// host's) in `dir` and binds them read-only at `/etc/hosts` and `/etc/resolv.conf`. Like
/// BuildKit, no `/etc/hostname` is provided (the UTS namespace carries the name).
///
/// # Errors
/// Writing the files.
pub fn add_etc_files(spec: &mut Spec, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let hostname = spec
        .hostname()
        .clone()
        .unwrap_or_else(|| "buildkitsandbox".into());
    let hosts =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let resolv = match std::fs::read("/etc/resolv.conf") {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("/etc/resolv.conf", e)),
    };
    for (name, content) in [("hosts", hosts.into_bytes()), ("resolv.conf", resolv)] {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
        add_bind(spec, &path, &format!("/etc/{name}"), true);
    }
    Ok(())
}

/// The name of the stub tree under [`stub_lower`]'s `dir` (versioned: a new layout gets a new
/// name).
const STUB_NAME: &str = "sandbox-stubs-v2";

/// Creates (once, atomically: temp dir + rename) the tiny tree of mount point stubs the
/// sandbox needs (`dev/`, `proc/`, `sys/`, `etc/hosts`, `etc/resolv.conf`; all
/// empty, 0755/0644, root-owned when run as root) and returns its path. Pass it as the lowest
/// overlay lower dir.
///
/// # Errors
/// Creating the tree.
pub fn stub_lower(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(STUB_NAME);
    if path.is_dir() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".sandbox-stubs-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = fill_stubs(&tmp);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, &path) {
        Ok(()) => Ok(path),
        // Another process committed the same tree first.
        Err(_) if path.is_dir() => {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            Ok(path)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(Error::io(&path, e))
        }
    }
}

fn fill_stubs(tmp: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let as_root = nix::unistd::geteuid().is_root();
    let set = |p: &Path, mode: u32| -> Result<()> {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(p, e))?;
        if as_root {
            std::os::unix::fs::lchown(p, Some(0), Some(0)).map_err(|e| Error::io(p, e))?;
        }
        Ok(())
    };
    for d in ["dev", "proc", "sys", "etc"] {
        let p = tmp.join(d);
        std::fs::create_dir(&p).map_err(|e| Error::io(&p, e))?;
        set(&p, 0o755)?;
    }
    for f in ["etc/hosts", "etc/resolv.conf"] {
        let p = tmp.join(f);
        std::fs::write(&p, b"").map_err(|e| Error::io(&p, e))?;
        set(&p, 0o644)?;
    }
    set(tmp, 0o755)
}

/// The caller's ends of the command's stdio; `stdin: None` means `/dev/null`.
#[derive(Debug)]
pub struct Stdio {
    /// The command's stdin.
    pub stdin: Option<OwnedFd>,
    /// The command's stdout.
    pub stdout: OwnedFd,
    /// The command's stderr.
    pub stderr: OwnedFd,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code (127: not found, 126: not executable).
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// The shell-style code: the exit code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// The fd of the sync pipe the init and exec helpers talk to the caller on (close-on-exec):
/// `P<host pid>\n` (the container process's pid), `R\n` (ready, blocked before exec), `E<message>`
/// (a setup failure); EOF after the exec.
pub(crate) const SYNC_FD: i32 = 3;
/// The fd of the start barrier (init: a pipe the caller writes one byte on to start; exec
/// helper: the pipe carrying its JSON config).
pub(crate) const START_FD: i32 = 4;
/// The env var carrying the pid of the process that ran [`create`].
pub(crate) const PARENT_ENV: &str = "STRATA_SANDBOX_PARENT";

/// Writes `BUNDLE/config.json` and runs it to completion: [`create`], [`Created::start`],
/// [`Running::wait`]; blocks. `helper_exe` is the strata binary (it runs
/// `strata __sandbox-init BUNDLE`).
///
/// # Errors
/// Writing the bundle, spawning the helper, or a setup failure reported by the init (a failed
/// mount, a bad cwd, ...). The command's own failure is an [`ExitStatus`].
pub fn run(helper_exe: &Path, bundle: &Path, spec: &Spec, stdio: Stdio) -> Result<ExitStatus> {
    create(helper_exe, bundle, spec, stdio)?.start()?.wait()
}
