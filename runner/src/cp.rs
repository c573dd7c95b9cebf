//! `strata cp`: copying between a container's file system and the host (or a tar stream).
//!
//! Like docker, the two sides exchange a tar stream. The container side runs in a forked
//! child whose root directory *is* the container's root, so every path it resolves (symlinks,
//! absolute or relative, and `..`) stays inside the container:
//! - a running container: the child opens `/proc/<pid>/ns/mnt` and `/proc/<pid>/root` (then
//!   checks the pid still is the container's by its start time), `setns`es into the mount
//!   namespace and `chroot`s to that root: volumes and binds are seen as the container sees
//!   them;
//! - a stopped one: the child unshares a private mount namespace, mounts the container's
//!   overlay exactly as its start spec describes it (the sandbox's annotations),
//!   binds the spec's bind mounts (volumes) inside it, and `chroot`s there. The mounts die with
//!   the child.
//!
//! The host side extracts with every entry's parent resolved inside the destination
//! ([`strata_sys::resolve_in_root`]), never writing through a symlink the archive made, and
//! never overwriting through an existing symlink (it is replaced).
//!
//! docker's placement rules ([`extract`] with [`Placement::Named`]): a file lands at `DEST`
//! or, if `DEST` is a directory, at `DEST/NAME`; a directory is copied as `DEST/NAME` when
//! `DEST` exists, as `DEST` when it does not, and its contents only with a `/.` source
//! suffix. A `-` source is a tar extracted as-is into the `DEST` directory.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _, symlink};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, chdir, chroot, fchdir, fork};
use strata_executor::sandbox::mounts::{overlay_data, rootfs};
use strata_executor::sandbox::runtime::Spec;
use strata_sys::{Create, resolve_in_root};

use crate::container::same_process;
use crate::error::{Error, Result};

/// The container side of a copy.
#[derive(Debug, Clone)]
pub enum Target {
    /// A running container: the host pid of its pid 1 and that process's start time.
    Running {
        /// Host pid.
        pid: i32,
        /// `/proc/<pid>/stat` field 22, so a reused pid is never entered.
        pid_start: u64,
    },
    /// A stopped (or created) container: the spec its next start would use (overlay
    /// annotations, mounts) and its bundle dir (`root.path` is relative to it).
    Stopped {
        /// The sandbox spec ([`crate::create::build_spec`]).
        spec: Box<Spec>,
        /// `ROOT/containers/<id>/bundle`.
        bundle: PathBuf,
    },
}

/// Options of a copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpOptions {
    /// `-L`: follow a symlink that is the source itself.
    pub follow_link: bool,
    /// `-a`: keep the archive's owners (else files are owned by the writer, root).
    pub archive: bool,
}

/// How [`extract`] places an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The archive holds one top entry (a file or a directory tree named after the source):
    /// docker's `cp` rules; `contents_only` for a `SRC/.` source.
    Named {
        /// Copy a directory's contents, not the directory itself.
        contents_only: bool,
    },
    /// Extract every entry as it is named into the destination directory (`cp - C:DIR`).
    AsIs,
}

fn cp_err(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

fn nix_io(p: &Path) -> impl Fn(nix::errno::Errno) -> Error + '_ {
    move |e| Error::io(p, io::Error::from(e))
}

/// Whether a `cp` path asks for a directory's contents (`dir/.`).
pub fn contents_only(path: &str) -> bool {
    path == "." || path.ends_with("/.")
}

/// Writes `path` (a file, symlink or directory tree) as a tar whose top entry is named after
/// the path's last component (`.` for `/`; a `/.` suffix does not change the name). A final symlink is archived as a link unless
/// `follow` (then its target is, resolved in the current root); symlinks below are never
/// followed.
///
/// # Errors
/// A missing path; I/O errors.
pub fn write_tar(path: &Path, follow: bool, out: impl Write) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            cp_err(format!(
                "Could not find the file {} in container",
                path.display()
            ))
        } else {
            Error::io(path, e)
        }
    })?;
    let real;
    let src = if follow && meta.file_type().is_symlink() {
        real = fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        real.as_path()
    } else {
        path
    };
    let name = path
        .components()
        .rev()
        .find_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .unwrap_or_else(|| ".".into());
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let werr = |e| Error::io(path, e);
    let m = fs::symlink_metadata(src).map_err(werr)?;
    if m.is_dir() {
        b.append_dir_all(&name, src).map_err(werr)?;
    } else {
        b.append_path_with_name(src, &name).map_err(werr)?;
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("<tar stream>", e))
}

/// The clean relative components of an archive path (`..` refused, leading `/` dropped).
fn entry_components(p: &Path) -> Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(cp_err(format!(
                    "unsafe archive entry {:?}: it leaves the destination",
                    p.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Where the archive's entries go: under `base` (an existing directory), the top entry
/// renamed to `top` (or dropped, its contents merged into `base`, when `None`).
struct Dest {
    base: PathBuf,
    top: Option<std::ffi::OsString>,
    strip: bool,
    /// The archive's top entry is `.` (a tar of `/`): no component to strip.
    top_dot: bool,
    /// The process's root is the container's (a `chroot`): plain resolution can't leave it,
    /// and `/proc/self` (which [`resolve_in_root`] needs) is not there.
    confined: bool,
}

impl Dest {
    /// The directory `base/rel`, created when missing; resolved inside `base` unless the
    /// process is confined to the container's root anyway.
    fn parent(&self, rel: &Path) -> Result<PathBuf> {
        if self.confined {
            let p = self.base.join(rel);
            fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            return Ok(p);
        }
        resolve_in_root(&self.base, rel, Create::Dir)
            .map_err(|e| cp_err(format!("{}: {e}", self.base.join(rel).display())))
    }

    /// The path of an entry relative to `base`; `None` to skip it.
    fn rel(&self, comps: &[&OsStr]) -> Option<PathBuf> {
        if !self.strip {
            return (!comps.is_empty()).then(|| comps.iter().collect());
        }
        let rest = if self.top_dot {
            comps
        } else {
            comps.get(1..).unwrap_or(&[])
        };
        let mut p = PathBuf::new();
        match &self.top {
            Some(t) => p.push(t),
            None if rest.is_empty() => return None,
            None => {}
        }
        p.extend(rest);
        Some(p)
    }
}

fn decide(dest: &Path, dest_text: &str, placement: Placement, top_is_dir: bool) -> Result<Dest> {
    let stat = fs::metadata(dest);
    let exists_dir = stat.as_ref().is_ok_and(|m| m.is_dir());
    let contents = match placement {
        Placement::AsIs => {
            if !exists_dir {
                return Err(cp_err(format!(
                    "destination \"{dest_text}\" must be a directory"
                )));
            }
            return Ok(Dest {
                base: dest.to_path_buf(),
                top: None,
                strip: false,
                top_dot: false,
                confined: false,
            });
        }
        Placement::Named { contents_only } => contents_only,
    };
    match stat {
        // Into an existing directory: the contents merged (`SRC/.`), else under its own name.
        Ok(m) if m.is_dir() => Ok(Dest {
            base: dest.to_path_buf(),
            top: None,
            strip: top_is_dir && contents,
            top_dot: false,
            confined: false,
        }),
        Ok(_) => {
            if top_is_dir {
                return Err(cp_err(format!(
                    "cannot copy a directory to a file: \"{dest_text}\" is not a directory"
                )));
            }
            split_dest(dest, dest_text)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !top_is_dir && (dest_text.ends_with('/') || dest_text.ends_with("/.")) {
                return Err(cp_err(format!(
                    "destination directory \"{dest_text}\" does not exist"
                )));
            }
            split_dest(dest, dest_text)
        }
        Err(e) => Err(Error::io(dest, e)),
    }
}

fn split_dest(dest: &Path, dest_text: &str) -> Result<Dest> {
    let name = dest
        .file_name()
        .ok_or_else(|| cp_err(format!("invalid destination \"{dest_text}\"")))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !fs::metadata(&parent).is_ok_and(|m| m.is_dir()) {
        return Err(cp_err(format!(
            "destination directory \"{}\" does not exist",
            parent.display()
        )));
    }
    Ok(Dest {
        base: parent,
        top: Some(name.to_os_string()),
        strip: true,
        top_dot: false,
        confined: false,
    })
}

/// Extracts a tar at `dest` (a path in the current root) with docker's `cp` placement rules
/// (see the module docs). `dest_text` is the destination as the user wrote it (its trailing
/// `/` matters). Owners are kept only with `keep_owner`. `confined`: the process's root is
/// the container's own (the entries' parents are then resolved by the kernel's plain path
/// walk, which can't leave it); otherwise each parent is resolved inside `dest`.
///
/// # Errors
/// Docker's placement errors; an unsafe entry (`..`); I/O errors.
pub fn extract(
    input: impl Read,
    dest: &Path,
    dest_text: &str,
    placement: Placement,
    keep_owner: bool,
    confined: bool,
) -> Result<()> {
    let mut ar = tar::Archive::new(input);
    let mut entries = ar
        .entries()
        .map_err(|e| Error::io("<tar stream>", e))?
        .peekable();
    let (top_is_dir, top_dot) = match entries.peek_mut() {
        None => return Err(cp_err("the archive is empty")),
        Some(Err(_)) => (false, false),
        Some(Ok(e)) => {
            let dot = e
                .path()
                .map(|p| entry_components(&p).is_ok_and(|c| c.is_empty()))
                .unwrap_or(false);
            (e.header().entry_type() == tar::EntryType::Directory, dot)
        }
    };
    let mut d = decide(dest, dest_text, placement, top_is_dir)?;
    d.confined = confined;
    d.top_dot = top_dot;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("<tar stream>", e))?;
        let path = entry
            .path()
            .map_err(|e| Error::io("<tar stream>", e))?
            .into_owned();
        let comps = entry_components(&path)?;
        let Some(rel) = d.rel(&comps) else { continue };
        place(&mut entry, &d, &rel, keep_owner)?;
    }
    Ok(())
}

/// Creates one entry at `base/rel`, its parent resolved inside `base`.
fn place<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    d: &Dest,
    rel: &Path,
    keep_owner: bool,
) -> Result<()> {
    let name = rel
        .file_name()
        .ok_or_else(|| cp_err(format!("bad entry {}", rel.display())))?;
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent = d.parent(parent_rel)?;
    let target = parent.join(name);
    let h = entry.header().clone();
    let kind = h.entry_type();
    let existing = fs::symlink_metadata(&target).ok();
    let ioe = |e| Error::io(&target, e);
    if let Some(m) = &existing {
        if m.is_dir() && kind != tar::EntryType::Directory {
            return Err(cp_err(format!(
                "cannot overwrite directory \"{}\" with non-directory",
                target.display()
            )));
        }
        if !m.is_dir() {
            fs::remove_file(&target).map_err(ioe)?;
        }
    }
    let mode = h.mode().unwrap_or(0o644) & 0o7777;
    match kind {
        tar::EntryType::Directory => {
            if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                fs::create_dir(&target).map_err(ioe)?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            // Why O_EXCL|O_NOFOLLOW: never write through a name someone made a symlink.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(0o600)
                .open(&target)
                .map_err(ioe)?;
            io::copy(entry, &mut f).map_err(ioe)?;
        }
        tar::EntryType::Symlink => {
            let link = entry
                .link_name()
                .map_err(ioe)?
                .ok_or_else(|| cp_err(format!("symlink {} has no target", rel.display())))?;
            symlink(&link, &target).map_err(ioe)?;
        }
        tar::EntryType::Link => {
            let link = entry
                .link_name()
                .map_err(ioe)?
                .ok_or_else(|| cp_err(format!("hardlink {} has no target", rel.display())))?
                .into_owned();
            let comps = entry_components(&link)?;
            let Some(lrel) = d.rel(&comps) else {
                return Ok(());
            };
            let lparent = d.parent(lrel.parent().unwrap_or(Path::new("")))?;
            let lname = lrel.file_name().unwrap_or_default();
            fs::hard_link(lparent.join(lname), &target).map_err(ioe)?;
            return Ok(());
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let sflag = match kind {
                tar::EntryType::Char => SFlag::S_IFCHR,
                tar::EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            let major = u64::from(h.device_major().ok().flatten().unwrap_or(0));
            let minor = u64::from(h.device_minor().ok().flatten().unwrap_or(0));
            let dev = nix::sys::stat::makedev(major, minor);
            mknod(&target, sflag, Mode::from_bits_truncate(0o600), dev).map_err(nix_io(&target))?;
        }
        // pax/gnu metadata is consumed by the tar reader; anything else is skipped.
        _ => return Ok(()),
    }
    if keep_owner {
        let uid = u32::try_from(h.uid().unwrap_or(0)).unwrap_or(0);
        let gid = u32::try_from(h.gid().unwrap_or(0)).unwrap_or(0);
        std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).map_err(ioe)?;
    }
    if kind != tar::EntryType::Symlink {
        fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(ioe)?;
    }
    let mtime = i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(0);
    let t = TimeSpec::new(mtime, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        &target,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(nix_io(&target))?;
    Ok(())
}

/// In the forked child: makes the container's root the child's root directory.
fn enter(target: &Target) -> Result<()> {
    match target {
        Target::Running { pid, pid_start } => {
            let ns_path = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
            let root_path = PathBuf::from(format!("/proc/{pid}/root"));
            let ns = nix::fcntl::open(&ns_path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(nix_io(&ns_path))?;
            let root = nix::fcntl::open(
                &root_path,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(nix_io(&root_path))?;
            // Both handles are held: if the pid is still the container's now, they are its.
            if !same_process(*pid, *pid_start) {
                return Err(Error::Conflict("the container is not running".into()));
            }
            // Why setns + fchdir + chroot: the mount namespace gives the container's mounts
            // (volumes), the root fd makes its root ours, so nothing resolves outside it.
            // https://man7.org/linux/man-pages/man2/setns.2.html
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNS).map_err(nix_io(&ns_path))?;
            fchdir(&root).map_err(nix_io(&root_path))?;
            chroot(".").map_err(nix_io(&root_path))?;
            chdir("/").map_err(nix_io(&root_path))?;
            Ok(())
        }
        Target::Stopped { spec, bundle } => {
            let root = rootfs(spec, bundle)?;
            fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
            let empty = Default::default();
            let ann = spec.annotations().as_ref().unwrap_or(&empty);
            // Why a new mount namespace: the overlay and binds vanish with this child.
            // https://man7.org/linux/man-pages/man2/unshare.2.html
            unshare(CloneFlags::CLONE_NEWNS).map_err(nix_io(bundle))?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(nix_io(Path::new("/")))?;
            match overlay_data(ann)? {
                Some((data, dir)) => {
                    if let Some(dir) = dir {
                        chdir(&dir).map_err(nix_io(&dir))?;
                    }
                    mount(
                        Some("overlay"),
                        &root,
                        Some("overlay"),
                        MsFlags::empty(),
                        Some(data.as_str()),
                    )
                    .map_err(nix_io(&root))?;
                }
                None => return Err(cp_err("the container's bundle has no overlay root")),
            }
            for m in spec.mounts().iter().flatten() {
                if m.typ().as_deref() != Some("bind") {
                    continue;
                }
                let Some(src) = m.source() else { continue };
                let is_dir = fs::metadata(src).is_ok_and(|x| x.is_dir());
                let create = if is_dir { Create::Dir } else { Create::File };
                let dst = resolve_in_root(&root, m.destination(), create)
                    .map_err(|e| cp_err(format!("{}: {e}", m.destination().display())))?;
                mount(
                    Some(src.as_path()),
                    &dst,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(nix_io(&dst))?;
                let ro = m.options().iter().flatten().any(|o| o == "ro");
                if ro {
                    mount(
                        None::<&str>,
                        &dst,
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None::<&str>,
                    )
                    .map_err(nix_io(&dst))?;
                }
            }
            chdir(&root).map_err(nix_io(&root))?;
            chroot(".").map_err(nix_io(&root))?;
            chdir("/").map_err(nix_io(&root))?;
            Ok(())
        }
    }
}

/// Runs `child` in a forked child inside the container's root (given its end of a pipe)
/// and `parent` here (given the other end); the child's error wins over the parent's.
fn with_child(
    target: &Target,
    child_writes: bool,
    child: impl FnOnce(File) -> Result<()>,
    parent: impl FnOnce(File) -> Result<()>,
) -> Result<()> {
    let pipe = |what: &str| {
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io(what, io::Error::from(e)))
    };
    let (data_r, data_w) = pipe("<data pipe>")?;
    let (err_r, err_w) = pipe("<error pipe>")?;
    let (child_end, parent_end): (OwnedFd, OwnedFd) = if child_writes {
        (data_w, data_r)
    } else {
        (data_r, data_w)
    };
    // SAFETY: the child only runs this function's code and leaves with _exit; the CLI that
    // calls this is single-threaded, so no lock is held by a thread that does not exist there.
    match unsafe { fork() }.map_err(|e| Error::io("fork", io::Error::from(e)))? {
        ForkResult::Child => {
            drop(parent_end);
            drop(err_r);
            let r = enter(target).and_then(|()| child(File::from(child_end)));
            let code = match r {
                Ok(()) => 0,
                Err(e) => {
                    let mut w = File::from(err_w);
                    let msg = e.to_string();
                    let _ = w.write_all(&msg.as_bytes()[..msg.len().min(4096)]);
                    1
                }
            };
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child: pid } => {
            drop(child_end);
            drop(err_w);
            let presult = parent(File::from(parent_end));
            let status =
                waitpid(pid, None).map_err(|e| Error::io("waitpid", io::Error::from(e)))?;
            let mut msg = String::new();
            let _ = File::from(err_r).read_to_string(&mut msg);
            match status {
                WaitStatus::Exited(_, 0) => presult,
                _ if !msg.is_empty() => Err(cp_err(msg)),
                other => Err(cp_err(format!("the copy process failed: {other:?}"))),
            }
        }
    }
}

/// Where a copy out of a container goes.
pub enum Sink<'a> {
    /// A host path (docker's placement rules).
    Host(&'a Path),
    /// A tar stream (`cp C:PATH -`).
    Stream(&'a mut dyn Write),
}

/// Where a copy into a container comes from.
pub enum Source<'a> {
    /// A host path.
    Host(&'a Path),
    /// A tar stream (`cp - C:DIR`), extracted as-is.
    Stream(&'a mut dyn Read),
}

/// `cp C:SRC DEST`: copies `src` (a path in the container, `/.` suffix for a directory's
/// contents) to the host or a stream.
///
/// # Errors
/// A missing source; placement errors; entering the container; I/O errors.
pub fn copy_from(target: &Target, src: &str, sink: Sink<'_>, opts: CpOptions) -> Result<()> {
    let src_path = PathBuf::from(if src.starts_with('/') {
        src.to_string()
    } else {
        format!("/{src}")
    });
    let follow = opts.follow_link;
    let child = move |w: File| write_tar(&src_path, follow, io::BufWriter::new(w));
    match sink {
        Sink::Stream(out) => with_child(target, true, child, |mut r| {
            io::copy(&mut r, out).map_err(|e| Error::io("<stdout>", e))?;
            Ok(())
        }),
        Sink::Host(dest) => {
            let dest_text = dest.to_string_lossy().into_owned();
            let placement = Placement::Named {
                contents_only: contents_only(src),
            };
            with_child(target, true, child, |r| {
                extract(
                    io::BufReader::new(r),
                    dest,
                    &dest_text,
                    placement,
                    opts.archive,
                    false,
                )
            })
        }
    }
}

/// `cp SRC C:DEST`: copies a host path (or a tar stream) into the container at `dest`.
///
/// # Errors
/// A missing source; placement errors inside the container; I/O errors.
pub fn copy_to(target: &Target, source: Source<'_>, dest: &str, opts: CpOptions) -> Result<()> {
    let dest_text = dest.to_string();
    let dest_path = PathBuf::from(if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("/{dest}")
    });
    match source {
        Source::Stream(input) => with_child(
            target,
            false,
            |r| {
                extract(
                    io::BufReader::new(r),
                    &dest_path,
                    &dest_text,
                    Placement::AsIs,
                    true,
                    true,
                )
            },
            |mut w| {
                io::copy(input, &mut w).map_err(|e| Error::io("<stdin>", e))?;
                Ok(())
            },
        ),
        Source::Host(src) => {
            if fs::symlink_metadata(src).is_err() {
                return Err(cp_err(format!(
                    "lstat {}: no such file or directory",
                    src.display()
                )));
            }
            let placement = Placement::Named {
                contents_only: contents_only(&src.to_string_lossy()),
            };
            let keep = opts.archive;
            with_child(
                target,
                false,
                move |r| {
                    extract(
                        io::BufReader::new(r),
                        &dest_path,
                        &dest_text,
                        placement,
                        keep,
                        true,
                    )
                },
                |w| write_tar(src, opts.follow_link, io::BufWriter::new(w)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(d: &Path) -> PathBuf {
        let src = d.join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a"), "a").unwrap();
        fs::write(src.join("sub/b"), "b").unwrap();
        symlink("a", src.join("link")).unwrap();
        src
    }

    fn tar_of(p: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        write_tar(p, false, &mut out).unwrap();
        out
    }

    fn named(contents_only: bool) -> Placement {
        Placement::Named { contents_only }
    }

    #[test]
    fn dockers_placement_rules() {
        let d = tempfile::tempdir().unwrap();
        let src = tree(d.path());
        let t = tar_of(&src);
        // A directory onto a missing path: created with the contents.
        let dst = d.path().join("new");
        extract(&t[..], &dst, "new", named(false), false, false).unwrap();
        assert_eq!(fs::read_to_string(dst.join("sub/b")).unwrap(), "b");
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), PathBuf::from("a"));
        // Onto an existing directory: under its own name.
        extract(&t[..], &dst, "new", named(false), false, false).unwrap();
        assert!(dst.join("src/sub/b").is_file());
        // `src/.` onto an existing directory: the contents merge.
        let merged = d.path().join("merged");
        fs::create_dir(&merged).unwrap();
        extract(&t[..], &merged, "merged", named(true), false, false).unwrap();
        assert!(merged.join("a").is_file() && !merged.join("src").exists());
        // A file: to the name given, into a directory, not into a missing `dir/`.
        let f = tar_of(&src.join("a"));
        extract(
            &f[..],
            &d.path().join("renamed"),
            "renamed",
            named(false),
            false,
            false,
        )
        .unwrap();
        assert_eq!(fs::read_to_string(d.path().join("renamed")).unwrap(), "a");
        extract(&f[..], &merged, "merged", named(false), false, false).unwrap();
        let e = extract(
            &f[..],
            &d.path().join("nodir/"),
            "nodir/",
            named(false),
            false,
            false,
        );
        assert!(e.is_err());
        // A directory onto a file is refused.
        let e = extract(
            &t[..],
            &d.path().join("renamed"),
            "renamed",
            named(false),
            false,
            false,
        );
        assert!(e.unwrap_err().to_string().contains("directory to a file"));
        // A missing source names the file.
        let e = write_tar(&d.path().join("missing"), false, Vec::new()).unwrap_err();
        assert!(e.to_string().contains("Could not find"), "{e}");
    }

    #[test]
    fn archives_cannot_write_through_their_own_symlinks_or_climb() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let dest = d.path().join("dest");
        fs::create_dir(&dest).unwrap();
        // top/evil -> ../../outside, then top/evil/pwned
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "top", io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "top/evil", outside.to_str().unwrap())
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "top/evil/pwned", &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let _ = extract(&t[..], &dest, "dest", Placement::AsIs, false, false);
        assert!(!outside.join("pwned").exists());
        // An existing symlink at a file's name is replaced, not written through.
        let target = outside.join("victim");
        fs::write(&target, "safe").unwrap();
        symlink(&target, dest.join("f")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "f", &b"new"[..]).unwrap();
        let t = b.into_inner().unwrap();
        extract(&t[..], &dest, "dest", Placement::AsIs, false, false).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "safe");
        assert_eq!(fs::read_to_string(dest.join("f")).unwrap(), "new");
    }
}
