//! The mount namespace of a sandbox: overlay root, the spec's mounts, devices, masked and
//! read-only paths, pivot_root and the host name. Every kernel call goes through
//! [`Syscall`], so the sequence has unit tests with [`strata_sys::RecordingSyscall`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};
use strata_sys::{CloneFlags, Create, MntFlags, MsFlags, SFlag, Syscall, resolve_in_root};

use crate::error::{Error, Result};

/// Annotation: the overlay's lower dirs, colon-separated, top first.
pub const ANN_LOWER: &str = "org.strata.overlay.lowerdir";
/// Annotation: the overlay's upper dir (the new layer).
pub const ANN_UPPER: &str = "org.strata.overlay.upperdir";
/// Annotation: the overlay's work dir.
pub const ANN_WORK: &str = "org.strata.overlay.workdir";
/// Annotation: the directory relative lower dirs are resolved from.
pub const ANN_CHDIR: &str = "org.strata.overlay.chdir";

/// The overlay options strata always passes: no features that would write overlay-private
/// metadata (xattrs, an index) into the layer.
pub const OVERLAY_FIXED_OPTIONS: &str = "redirect_dir=off,metacopy=off,index=off";

/// A character device every sandbox gets on its `/dev` tmpfs: (name, major, minor).
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The symlinks of a container's `/dev` (as runc creates them).
const DEV_SYMLINKS: [(&str, &str); 6] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

/// The rootfs directory of a spec: `root.path`, relative to the bundle unless absolute.
///
/// # Errors
/// A spec without `root`.
pub fn rootfs(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::Sandbox("the spec has no root".into()))?;
    Ok(bundle.join(root.path()))
}

/// The namespaces the spec asks for, as clone flags.
///
/// # Errors
/// Joining an existing namespace (`path`), or user and time namespaces (not supported).
pub fn namespace_flags(spec: &Spec) -> Result<CloneFlags> {
    let mut flags = CloneFlags::empty();
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    for ns in namespaces.into_iter().flatten() {
        if ns.path().is_some() {
            return Err(Error::Sandbox(format!(
                "joining an existing {} namespace is not supported",
                ns.typ()
            )));
        }
        flags |= match ns.typ() {
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::User | LinuxNamespaceType::Time => {
                return Err(Error::Sandbox(format!(
                    "{} namespaces are not supported",
                    ns.typ()
                )));
            }
        };
    }
    Ok(flags)
}

/// Mount options split into flags, propagation flags and the filesystem's data string.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount itself (or the bind remount).
    pub flags: MsFlags,
    /// `private`, `rslave`, ...: applied with a separate call.
    pub propagation: MsFlags,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind` was given.
    pub recursive: bool,
    /// Everything else, comma-joined (`mode=755,size=65536k`).
    pub data: String,
}

/// Parses fstab-style options the way runc does.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        bind: false,
        recursive: false,
        data: String::new(),
    };
    let mut data = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            prop @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                o.propagation |= match prop.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if prop.starts_with('r') {
                    o.propagation |= MsFlags::MS_REC;
                }
                continue;
            }
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
    }
    o.data = data.join(",");
    o
}

/// The overlay described by a spec's annotations, as mount data (`lowerdir=...`) and the
/// directory to mount from.
///
/// # Errors
/// Incomplete annotations, or a path holding `,` or `:` (they would split the option).
pub fn overlay_data(
    annotations: &HashMap<String, String>,
) -> Result<Option<(String, Option<PathBuf>)>> {
    let Some(lower) = annotations.get(ANN_LOWER) else {
        return Ok(None);
    };
    let (Some(upper), Some(work)) = (annotations.get(ANN_UPPER), annotations.get(ANN_WORK)) else {
        return Err(Error::Sandbox(format!(
            "{ANN_LOWER} needs {ANN_UPPER} and {ANN_WORK}"
        )));
    };
    if lower.is_empty() {
        return Err(Error::Sandbox("the overlay has no lower dir".into()));
    }
    for p in lower.split(':').chain([upper.as_str(), work.as_str()]) {
        if p.is_empty() || p.contains(',') || p.contains(':') {
            return Err(Error::Sandbox(format!("bad overlay path {p:?}")));
        }
    }
    let data = format!("lowerdir={lower},upperdir={upper},workdir={work},{OVERLAY_FIXED_OPTIONS}");
    Ok(Some((data, annotations.get(ANN_CHDIR).map(PathBuf::from))))
}

/// Builds the sandbox's mount namespace and switches into its root: unshare(CLONE_NEWNS),
/// `/` rprivate, the overlay (or a bind of the rootfs), the spec's mounts in order, devices,
/// read-only and masked paths, pivot_root, a read-only root if asked, the host name.
///
/// Mount targets are created inside the root ([`resolve_in_root`]), never through a symlink
/// out of it.
///
/// # Errors
/// The first failed call, with its path.
pub fn setup_rootfs(sys: &dyn Syscall, spec: &Spec, bundle: &Path) -> Result<()> {
    let ns = namespace_flags(spec)?;
    if !ns.contains(CloneFlags::CLONE_NEWNS) {
        return Err(Error::Sandbox(
            "the spec must ask for a mount namespace".into(),
        ));
    }
    sys.unshare(CloneFlags::CLONE_NEWNS)?;
    // Nothing mounted from here on may propagate back to the host.
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let root = rootfs(spec, bundle)?;
    let empty = HashMap::new();
    let annotations = spec.annotations().as_ref().unwrap_or(&empty);
    match overlay_data(annotations)? {
        Some((data, chdir)) => {
            if let Some(dir) = &chdir {
                sys.chdir(dir)?;
            }
            sys.mount(
                Some(Path::new("overlay")),
                &root,
                Some("overlay"),
                MsFlags::empty(),
                Some(&data),
            )?;
        }
        // pivot_root needs the new root to be a mount point.
        None => sys.mount(
            Some(&root),
            &root,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?,
    }
    refuse_symlinked_api_dirs(&root)?;
    let mut dev_tmpfs = false;
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination();
        let typ = m.typ().as_deref().unwrap_or("none");
        let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
        if opts.bind || typ == "bind" {
            let source = bundle.join(
                m.source()
                    .as_ref()
                    .ok_or_else(|| Error::Sandbox(format!("bind to {dest:?} has no source")))?,
            );
            let kind = if source.is_dir() {
                Create::Dir
            } else {
                Create::File
            };
            let target = resolve_in_root(&root, dest, kind)?;
            let mut flags = MsFlags::MS_BIND;
            if opts.recursive {
                flags |= MsFlags::MS_REC;
            }
            sys.mount(Some(&source), &target, None, flags, None)?;
            if !opts.flags.is_empty() {
                sys.mount(
                    None,
                    &target,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | opts.flags,
                    None,
                )?;
            }
            if !opts.propagation.is_empty() {
                sys.mount(None, &target, None, opts.propagation, None)?;
            }
        } else {
            let target = resolve_in_root(&root, dest, Create::Dir)?;
            let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
            let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
            sys.mount(Some(&source), &target, Some(typ), opts.flags, data)?;
            if !opts.propagation.is_empty() {
                sys.mount(None, &target, None, opts.propagation, None)?;
            }
            if dest == Path::new("/dev") && typ == "tmpfs" {
                dev_tmpfs = true;
            }
        }
    }
    if dev_tmpfs {
        create_default_devices(sys, &root)?;
    }
    create_spec_devices(sys, spec, &root)?;
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly_path(sys, &root, p)?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(sys, &root, p)?;
    }
    // pivot_root(".", "."): the old root ends up stacked under the new one and is detached
    // right away, so no path leads back to the host.
    sys.chdir(&root)?;
    sys.pivot_root(Path::new("."), Path::new("."))?;
    sys.umount2(Path::new("."), MntFlags::MNT_DETACH)?;
    sys.chdir(Path::new("/"))?;
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None,
        )?;
    }
    if let Some(name) = spec.hostname()
        && ns.contains(CloneFlags::CLONE_NEWUTS)
    {
        sys.sethostname(name)?;
    }
    Ok(())
}

/// Refuses an image whose `/proc`, `/sys` or `/dev` is a symlink: the kernel filesystems
/// mounted there must be where the masked and read-only paths say they are.
fn refuse_symlinked_api_dirs(root: &Path) -> Result<()> {
    for name in ["proc", "sys", "dev"] {
        let path = root.join(name);
        if path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(Error::Sandbox(format!(
                "/{name} is a symlink in the image: refused (it must be a directory)"
            )));
        }
    }
    Ok(())
}

/// The parent directory of `path` inside `root` (created) and the final name.
fn parent_in_root(root: &Path, path: &Path) -> Result<(PathBuf, PathBuf)> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Sandbox(format!("bad path {path:?}")))?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dir = resolve_in_root(root, parent, Create::Dir)?;
    Ok((dir.clone(), dir.join(name)))
}

fn create_default_devices(sys: &dyn Syscall, root: &Path) -> Result<()> {
    let dev = resolve_in_root(root, Path::new("/dev"), Create::Dir)?;
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = dev.join(name);
        sys.mknod(&path, SFlag::S_IFCHR, 0o666, major, minor)?;
        sys.lchown(&path, 0, 0)?;
    }
    for (name, target) in DEV_SYMLINKS {
        let link = dev.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, &link).map_err(|e| Error::io(&link, e))?;
        }
    }
    for dir in ["pts", "shm"] {
        resolve_in_root(root, &Path::new("/dev").join(dir), Create::Dir)?;
    }
    Ok(())
}

fn create_spec_devices(sys: &dyn Syscall, spec: &Spec, root: &Path) -> Result<()> {
    let devices = spec.linux().as_ref().and_then(|l| l.devices().as_ref());
    for d in devices.into_iter().flatten() {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::Sandbox(format!(
                    "device {:?}: type 'a' can't be created",
                    d.path()
                )));
            }
        };
        let (_, path) = parent_in_root(root, d.path())?;
        if path.symlink_metadata().is_ok() {
            continue;
        }
        let major = u64::try_from(d.major()).unwrap_or(0);
        let minor = u64::try_from(d.minor()).unwrap_or(0);
        sys.mknod(&path, kind, d.file_mode().unwrap_or(0o666), major, minor)?;
        sys.lchown(&path, d.uid().unwrap_or(0), d.gid().unwrap_or(0))?;
    }
    Ok(())
}

/// Resolves an existing path for masking; `None` when it doesn't exist.
fn existing(root: &Path, path: &str) -> Result<Option<PathBuf>> {
    match resolve_in_root(root, Path::new(path), Create::Nothing) {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Makes `path` read-only: a bind of itself, remounted read-only with its other flags kept.
fn readonly_path(sys: &dyn Syscall, root: &Path, path: &str) -> Result<()> {
    let Some(target) = existing(root, path)? else {
        return Ok(());
    };
    sys.mount(
        Some(&target),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let keep = current_flags(&target);
    sys.mount(
        None,
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
        None,
    )?;
    Ok(())
}

/// The nosuid/nodev/noexec flags of the mount holding `path` (a bind remount must keep them).
fn current_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let mut out = MsFlags::empty();
    // Why: a read-only bind remount that would clear nosuid/nodev/noexec is refused (EPERM) on
    // locked mounts. https://man7.org/linux/man-pages/man3/statvfs.3.html
    if let Ok(st) = statvfs(path) {
        let f = st.flags();
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ] {
            if f.contains(fs) {
                out |= ms;
            }
        }
    }
    out
}

/// Hides `path`: a read-only empty tmpfs over a directory, `/dev/null` over anything else.
fn mask_path(sys: &dyn Syscall, root: &Path, path: &str) -> Result<()> {
    let Some(target) = existing(root, path)? else {
        return Ok(());
    };
    if target.is_dir() {
        sys.mount(
            Some(Path::new("tmpfs")),
            &target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )?;
    } else {
        null_device_is_real()?;
        sys.mount(
            Some(Path::new("/dev/null")),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    Ok(())
}

/// The host's `/dev/null` must be the null device (char 1:3) before it is bound over a masked
/// path: a regular file left in its place would show the container whatever the host wrote to
/// "/dev/null", and take the container's writes.
fn null_device_is_real() -> Result<()> {
    let st = nix::sys::stat::stat("/dev/null")
        .map_err(|e| Error::Sandbox(format!("stat /dev/null: {e}")))?;
    let is_char = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    if is_char && st.st_rdev == nix::sys::stat::makedev(1, 3) {
        Ok(())
    } else {
        Err(Error::Sandbox(
            "/dev/null on this host is not the null device (char 1:3); refusing to mask paths \
             with it (recreate it with `mknod -m 666 /dev/null c 1 3`)"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use strata_sys::{Call, CallKind, RecordingSyscall};

    use super::*;
    use crate::sandbox::{Network, Overlay, add_bind, default_spec, set_overlay};

    fn spec_in(dir: &Path, network: Network) -> Result<Spec, Box<dyn std::error::Error>> {
        let root = dir.join("rootfs");
        std::fs::create_dir_all(&root)?;
        let mut spec = default_spec(
            &root,
            vec!["true".into()],
            vec![],
            "/",
            0,
            0,
            vec![],
            "box",
            network,
        )?;
        set_overlay(
            &mut spec,
            &Overlay {
                lower: vec!["l1".into(), "l2".into()],
                upper: dir.join("up"),
                work: dir.join("work"),
                chdir: Some(dir.join("links")),
            },
        );
        Ok(spec)
    }

    #[test]
    fn default_spec_mounts_in_order_then_pivots() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut spec = spec_in(dir.path(), Network::None)?;
        let src = dir.path().join("ctx");
        std::fs::create_dir_all(&src)?;
        add_bind(&mut spec, &src, "/mnt/ctx", true);
        // A masked directory and a masked file, so both kinds of masking show up.
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("proc/acpi"))?;
        std::fs::write(root.join("proc/kcore"), b"")?;
        let sys = RecordingSyscall::new();
        setup_rootfs(&sys, &spec, dir.path())?;
        let real = std::fs::canonicalize(&root)?;
        let calls = sys.calls();
        assert_eq!(calls[0], Call::Unshare(CloneFlags::CLONE_NEWNS));
        assert_eq!(
            calls[1],
            Call::Mount {
                source: None,
                target: "/".into(),
                fstype: None,
                flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                data: None,
            }
        );
        assert_eq!(calls[2], Call::Chdir(dir.path().join("links")));
        let Call::Mount {
            target,
            fstype,
            data,
            ..
        } = &calls[3]
        else {
            panic!("not the overlay: {:?}", calls[3]);
        };
        assert_eq!((target, fstype.as_deref()), (&root, Some("overlay")));
        assert_eq!(
            data.as_deref(),
            Some(
                format!(
                    "lowerdir=l1:l2,upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
                    dir.path().join("up").display(),
                    dir.path().join("work").display()
                )
                .as_str()
            )
        );
        let targets: Vec<(PathBuf, Option<String>)> = calls[4..]
            .iter()
            .filter_map(|c| match c {
                Call::Mount { target, fstype, .. } => Some((target.clone(), fstype.clone())),
                _ => None,
            })
            .collect();
        let t = |p: &str| real.join(p);
        let expected: Vec<(PathBuf, Option<String>)> = vec![
            (t("proc"), Some("proc".into())),
            (t("dev"), Some("tmpfs".into())),
            (t("dev/pts"), Some("devpts".into())),
            (t("dev/shm"), Some("tmpfs".into())),
            (t("dev/mqueue"), Some("mqueue".into())),
            (t("sys"), Some("sysfs".into())),
            (t("mnt/ctx"), None),
            (t("mnt/ctx"), None),
            (t("proc/acpi"), Some("tmpfs".into())),
            (t("proc/kcore"), None),
        ];
        assert_eq!(targets, expected);
        // The bind target was created inside the root, as a directory.
        assert!(root.join("mnt/ctx").is_dir());
        let mknods: Vec<PathBuf> = sys
            .calls_of(&[CallKind::Mknod])
            .into_iter()
            .filter_map(|c| match c {
                Call::Mknod { path, .. } => Some(path),
                _ => None,
            })
            .collect();
        assert_eq!(mknods.len(), 6);
        assert_eq!(mknods[0], t("dev/null"));
        let tail: Vec<Call> = sys.calls_of(&[
            CallKind::PivotRoot,
            CallKind::Umount2,
            CallKind::Chdir,
            CallKind::Sethostname,
        ]);
        assert_eq!(
            tail[1..],
            [
                Call::Chdir(root.clone()),
                Call::PivotRoot(".".into(), ".".into()),
                Call::Umount2(".".into(), MntFlags::MNT_DETACH),
                Call::Chdir("/".into()),
                Call::Sethostname("box".into()),
            ]
        );
        let pivot = calls
            .iter()
            .position(|c| c.kind() == CallKind::PivotRoot)
            .ok_or("no pivot")?;
        assert!(
            calls[pivot..].iter().all(|c| c.kind() != CallKind::Mount),
            "every mount happens before pivot_root"
        );
        Ok(())
    }

    #[test]
    fn failures_are_reported_with_the_path() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let spec = spec_in(dir.path(), Network::Host)?;
        let sys = RecordingSyscall::new();
        sys.fail_next(CallKind::PivotRoot, libc::EINVAL);
        let e = setup_rootfs(&sys, &spec, dir.path())
            .err()
            .ok_or("pivot_root failure ignored")?;
        assert_eq!(
            e.to_string(),
            "pivot_root . -> .: Invalid argument (os error 22)"
        );
        assert!(sys.calls_of(&[CallKind::Umount2]).is_empty(), "stopped");

        let sys = RecordingSyscall::new();
        sys.fail_nth(CallKind::Mount, 3, libc::EPERM);
        let e = setup_rootfs(&sys, &spec, dir.path())
            .err()
            .ok_or("mount failure ignored")?;
        let proc = std::fs::canonicalize(dir.path().join("rootfs"))?.join("proc");
        assert_eq!(
            e.to_string(),
            format!(
                "mount proc -> {}: Operation not permitted (os error 1)",
                proc.display()
            )
        );
        Ok(())
    }

    #[test]
    fn symlinked_api_dirs_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let spec = spec_in(dir.path(), Network::Host)?;
        std::os::unix::fs::symlink("/", dir.path().join("rootfs/dev"))?;
        let sys = RecordingSyscall::new();
        let e = setup_rootfs(&sys, &spec, dir.path())
            .err()
            .ok_or("a symlinked /dev was accepted")?;
        assert_eq!(
            e.to_string(),
            "sandbox: /dev is a symlink in the image: refused (it must be a directory)"
        );
        assert!(
            sys.calls_of(&[CallKind::Mount]).len() <= 2,
            "nothing mounted over it"
        );
        Ok(())
    }

    #[test]
    fn namespaces_follow_the_network_and_options_parse() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let none = namespace_flags(&spec_in(dir.path(), Network::None)?)?;
        let host = namespace_flags(&spec_in(dir.path(), Network::Host)?)?;
        assert!(none.contains(CloneFlags::CLONE_NEWNET));
        assert!(!host.contains(CloneFlags::CLONE_NEWNET));
        let base = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC;
        assert_eq!(host, base);
        let o = parse_options(&[
            "rbind".into(),
            "ro".into(),
            "nosuid".into(),
            "rslave".into(),
            "mode=755".into(),
            "size=1k".into(),
        ]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(o.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(o.data, "mode=755,size=1k");
        let bad: HashMap<String, String> = [(ANN_LOWER.to_string(), "a,b".to_string())]
            .into_iter()
            .collect();
        assert!(overlay_data(&bad).is_err());
        Ok(())
    }
}
