//! strata's kernel seam.
//!
//! Every system call whose ordering or failure matters for crash safety goes through the
//! [`Syscall`] trait, so tests can observe and break it:
//!
//! - [`RealSyscall`] performs the calls (through `nix` and `std`), one why-comment and man page
//!   link per call.
//! - [`RecordingSyscall`] logs every call as a typed [`Call`] in order, can be told to fail the
//!   Nth call of a [`CallKind`] with a chosen errno, and otherwise delegates to [`RealSyscall`],
//!   so it works on a real temporary directory.
//!
//! The sandbox's calls (mount, umount2, unshare, pivot_root, sethostname, the credential calls,
//! chown, mknod, chdir and bringing a link up) are in the trait too. [`RecordingSyscall`] only
//! records those (they would change the test process itself), so the mount and namespace sequence
//! of a sandbox has unit tests without root. [`resolve_in_root`] resolves and creates mount
//! targets inside a root without ever following a symlink out of it.

mod inroot;

pub use inroot::{Create, resolve_in_root};
pub use nix::mount::{MntFlags, MsFlags};
pub use nix::sched::CloneFlags;
pub use nix::sys::stat::SFlag;

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

/// A failed kernel call: which call, on which path(s), and the OS error (errno).
#[derive(Debug, thiserror::Error)]
#[error("{call} {}: {source}", display_paths(paths))]
pub struct Error {
    /// The call's name, as in its man page (`fsync`, `renameat2`, ...).
    pub call: &'static str,
    /// The path(s) the call was made on (source first for two-path calls).
    pub paths: Vec<PathBuf>,
    /// The OS error; [`Error::raw_errno`] extracts its number.
    #[source]
    pub source: io::Error,
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" -> ")
}

impl Error {
    fn new(call: &'static str, paths: &[&Path], source: io::Error) -> Self {
        Error {
            call,
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
            source,
        }
    }

    fn errno(call: &'static str, paths: &[&Path], errno: Errno) -> Self {
        Self::new(call, paths, io::Error::from_raw_os_error(errno as i32))
    }

    /// The errno of the failure, when the OS reported one.
    pub fn raw_errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// True when the call failed because the target already exists (`EEXIST`/`ENOTEMPTY`),
    /// which is how [`Syscall::rename_noreplace`] and [`Syscall::hard_link`] report "taken".
    pub fn is_already_exists(&self) -> bool {
        matches!(self.raw_errno(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY))
            || self.source.kind() == io::ErrorKind::AlreadyExists
    }

    /// True when the path (or its parent) does not exist (`ENOENT`).
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

/// The result type of the seam.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kernel seam: every durability- or ordering-relevant filesystem call.
pub trait Syscall: Send + Sync + fmt::Debug {
    /// Flushes a file's data and metadata to stable storage (fsync(2)).
    ///
    /// # Errors
    /// The OS error of `fsync`.
    fn fsync(&self, file: &File) -> Result<()>;
    /// Flushes a directory's entries (the names created/renamed in it) to stable storage.
    ///
    /// # Errors
    /// The OS error of `open` or `fsync`.
    fn fsync_dir(&self, dir: &Path) -> Result<()>;
    /// Flushes the whole filesystem holding `path` (syncfs(2)): one call instead of one fsync
    /// per file when a layer commits thousands of objects.
    ///
    /// # Errors
    /// The OS error of `open` or `syncfs`.
    fn syncfs(&self, path: &Path) -> Result<()>;
    /// Atomically replaces `to` with `from` (rename(2)).
    ///
    /// # Errors
    /// The OS error of `rename`.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Renames `from` to `to` only if `to` does not exist (renameat2(2) `RENAME_NOREPLACE`);
    /// an existing `to` fails with `EEXIST` ([`Error::is_already_exists`]).
    ///
    /// # Errors
    /// The OS error of `renameat2`.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<()>;
    /// Creates the hard link `link` to `original` (link(2)); `EEXIST` if `link` exists.
    ///
    /// # Errors
    /// The OS error of `link`.
    fn hard_link(&self, original: &Path, link: &Path) -> Result<()>;
    /// Removes a file (unlink(2)).
    ///
    /// # Errors
    /// The OS error of `unlink`.
    fn remove_file(&self, path: &Path) -> Result<()>;
    /// Removes a directory tree without following symlinks.
    ///
    /// # Errors
    /// The first OS error met.
    fn remove_dir_all(&self, path: &Path) -> Result<()>;
    /// Creates a directory and its missing parents (mkdir(2)); an existing directory is fine.
    ///
    /// # Errors
    /// The OS error of `mkdir`.
    fn create_dir_all(&self, path: &Path) -> Result<()>;

    /// Mounts `source` on `target` (mount(2)); `data` is the filesystem's option string.
    ///
    /// # Errors
    /// The OS error of `mount`.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()>;
    /// Unmounts `target` (umount2(2)).
    ///
    /// # Errors
    /// The OS error of `umount2`.
    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<()>;
    /// Moves the calling process into new namespaces (unshare(2)).
    ///
    /// # Errors
    /// The OS error of `unshare`.
    fn unshare(&self, flags: CloneFlags) -> Result<()>;
    /// Makes `new_root` the root mount and puts the old root on `put_old` (pivot_root(2)).
    ///
    /// # Errors
    /// The OS error of `pivot_root`.
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()>;
    /// Sets the host name of the UTS namespace (sethostname(2)).
    ///
    /// # Errors
    /// The OS error of `sethostname`.
    fn sethostname(&self, name: &str) -> Result<()>;
    /// Sets the real, effective and saved user id (setresuid(2)).
    ///
    /// # Errors
    /// The OS error of `setresuid`.
    fn setresuid(&self, uid: u32) -> Result<()>;
    /// Sets the real, effective and saved group id (setresgid(2)).
    ///
    /// # Errors
    /// The OS error of `setresgid`.
    fn setresgid(&self, gid: u32) -> Result<()>;
    /// Sets the supplementary groups (setgroups(2)).
    ///
    /// # Errors
    /// The OS error of `setgroups`.
    fn setgroups(&self, gids: &[u32]) -> Result<()>;
    /// Changes the owner of `path` without following a final symlink (lchown(2)).
    ///
    /// # Errors
    /// The OS error of `lchown`.
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> Result<()>;
    /// Creates a device node (mknod(2)); `kind` is `S_IFCHR` or `S_IFBLK`.
    ///
    /// # Errors
    /// The OS error of `mknod`.
    fn mknod(&self, path: &Path, kind: SFlag, perm: u32, major: u64, minor: u64) -> Result<()>;
    /// Changes the working directory (chdir(2)).
    ///
    /// # Errors
    /// The OS error of `chdir`.
    fn chdir(&self, path: &Path) -> Result<()>;
    /// Sets `IFF_UP` on the network interface `name` (netdevice(7) `SIOCSIFFLAGS`).
    ///
    /// # Errors
    /// The OS error of `socket` or `ioctl`.
    fn set_link_up(&self, name: &str) -> Result<()>;
}

/// The real implementation of the seam.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSyscall;

/// The path an open file descriptor refers to, for logs and error messages.
fn fd_path(file: &File) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .unwrap_or_else(|_| PathBuf::from(format!("<fd {}>", file.as_raw_fd())))
}

/// Opens a directory for fsync/syncfs.
///
/// Why not `O_PATH`: fsync(2) and syncfs(2) use `fdget()`, which rejects `O_PATH` descriptors
/// with `EBADF`, so the fd must be a real (read-only) open. `O_DIRECTORY` makes a non-directory
/// fail instead of being synced by mistake; `O_CLOEXEC` keeps the fd out of children; `O_NOCTTY`
/// is irrelevant for directories. See <https://man7.org/linux/man-pages/man2/open.2.html>.
fn open_dir(call: &'static str, dir: &Path) -> Result<std::os::fd::OwnedFd> {
    open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::errno(call, &[dir], e))
}

impl Syscall for RealSyscall {
    fn fsync(&self, file: &File) -> Result<()> {
        // Why: a blob/ref temp file must be on disk before it is renamed into place, otherwise a
        // crash can leave a committed name pointing at empty or partial data.
        // https://man7.org/linux/man-pages/man2/fsync.2.html
        nix::unistd::fsync(file).map_err(|e| Error::errno("fsync", &[&fd_path(file)], e))
    }

    fn fsync_dir(&self, dir: &Path) -> Result<()> {
        // Why: a rename is only durable once the directory holding the new name is fsynced.
        // https://man7.org/linux/man-pages/man2/fsync.2.html (NOTES: "fsync() on a file
        // descriptor for the directory is also needed").
        let fd = open_dir("open", dir)?;
        nix::unistd::fsync(&fd).map_err(|e| Error::errno("fsync", &[dir], e))
    }

    fn syncfs(&self, path: &Path) -> Result<()> {
        // Why: a layer commits thousands of objects; one syncfs before the layer's commit record
        // replaces one fsync per object. https://man7.org/linux/man-pages/man2/syncfs.2.html
        let fd = open_dir("open", path)?;
        nix::unistd::syncfs(&fd).map_err(|e| Error::errno("syncfs", &[path], e))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        // Why: rename is the atomic commit step (readers see the old or the new file, never a
        // mix). https://man7.org/linux/man-pages/man2/rename.2.html
        std::fs::rename(from, to).map_err(|e| Error::new("rename", &[from, to], e))
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<()> {
        // Why: content-addressed names are never overwritten; RENAME_NOREPLACE makes "somebody
        // committed the same content first" an EEXIST instead of a silent replace of a file that
        // may be hardlinked into layers. https://man7.org/linux/man-pages/man2/rename.2.html
        renameat2_noreplace(from, to).map_err(|e| Error::errno("renameat2", &[from, to], e))
    }

    fn hard_link(&self, original: &Path, link: &Path) -> Result<()> {
        // Why: layer trees are hardlinks to deduplicated objects.
        // https://man7.org/linux/man-pages/man2/link.2.html
        std::fs::hard_link(original, link).map_err(|e| Error::new("link", &[original, link], e))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        // Why: GC and cleanup of temp files. https://man7.org/linux/man-pages/man2/unlink.2.html
        std::fs::remove_file(path).map_err(|e| Error::new("unlink", &[path], e))
    }

    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        // Why: GC of layer trees and ingest dirs. std's implementation walks with
        // openat/unlinkat and never follows symlinks.
        // https://man7.org/linux/man-pages/man2/unlinkat.2.html
        std::fs::remove_dir_all(path).map_err(|e| Error::new("remove_dir_all", &[path], e))
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        // Why: store layout creation. https://man7.org/linux/man-pages/man2/mkdir.2.html
        std::fs::create_dir_all(path).map_err(|e| Error::new("mkdir", &[path], e))
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        // Why: the sandbox builds its root (overlay, /proc, /dev, binds) in its own mount
        // namespace. https://man7.org/linux/man-pages/man2/mount.2.html
        nix::mount::mount(source, target, fstype, flags, data).map_err(|e| {
            let mut paths = Vec::new();
            if let Some(s) = source {
                paths.push(s);
            }
            paths.push(target);
            Error::errno("mount", &paths, e)
        })
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<()> {
        // Why: detaches the old root after pivot_root.
        // https://man7.org/linux/man-pages/man2/umount2.2.html
        nix::mount::umount2(target, flags).map_err(|e| Error::errno("umount2", &[target], e))
    }

    fn unshare(&self, flags: CloneFlags) -> Result<()> {
        // Why: the sandbox's private mount, pid, uts, ipc and net namespaces.
        // https://man7.org/linux/man-pages/man2/unshare.2.html
        nix::sched::unshare(flags).map_err(|e| Error::errno("unshare", &[], e))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()> {
        // Why: unlike chroot, pivot_root leaves no path back to the host's root once the old
        // root is unmounted. https://man7.org/linux/man-pages/man2/pivot_root.2.html
        nix::unistd::pivot_root(new_root, put_old)
            .map_err(|e| Error::errno("pivot_root", &[new_root, put_old], e))
    }

    fn sethostname(&self, name: &str) -> Result<()> {
        // Why: the sandbox's own UTS namespace gets the spec's host name.
        // https://man7.org/linux/man-pages/man2/sethostname.2.html
        nix::unistd::sethostname(name).map_err(|e| Error::errno("sethostname", &[], e))
    }

    fn setresuid(&self, uid: u32) -> Result<()> {
        // Why: the step runs as its USER; all three ids so it can't switch back.
        // https://man7.org/linux/man-pages/man2/setresuid.2.html
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u).map_err(|e| Error::errno("setresuid", &[], e))
    }

    fn setresgid(&self, gid: u32) -> Result<()> {
        // Why: as setresuid, for the group. https://man7.org/linux/man-pages/man2/setresgid.2.html
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g).map_err(|e| Error::errno("setresgid", &[], e))
    }

    fn setgroups(&self, gids: &[u32]) -> Result<()> {
        // Why: replaces the caller's supplementary groups with the step's.
        // https://man7.org/linux/man-pages/man2/setgroups.2.html
        let gids: Vec<Gid> = gids.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gids).map_err(|e| Error::errno("setgroups", &[], e))
    }

    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        // Why: ownership of created files (device nodes, directories); never through a symlink.
        // https://man7.org/linux/man-pages/man2/lchown.2.html
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| Error::new("lchown", &[path], e))
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: u32, major: u64, minor: u64) -> Result<()> {
        // Why: the sandbox's minimal /dev (null, zero, ...) lives on its own tmpfs.
        // https://man7.org/linux/man-pages/man2/mknod.2.html
        let dev = nix::sys::stat::makedev(major, minor);
        nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(perm), dev)
            .map_err(|e| Error::errno("mknod", &[path], e))
    }

    fn chdir(&self, path: &Path) -> Result<()> {
        // Why: pivot_root(".", ".") works on the cwd, and the command starts in its cwd.
        // https://man7.org/linux/man-pages/man2/chdir.2.html
        nix::unistd::chdir(path).map_err(|e| Error::errno("chdir", &[path], e))
    }

    fn set_link_up(&self, name: &str) -> Result<()> {
        set_link_up(name).map_err(|e| Error::errno("ioctl(SIOCSIFFLAGS)", &[Path::new(name)], e))
    }
}

/// Sets `IFF_UP` on an interface through the classic ioctl pair on a datagram socket.
fn set_link_up(name: &str) -> nix::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let bytes = name.as_bytes();
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if bytes.len() >= req.ifr_name.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // Why: netdevice(7) ioctls need any socket of the namespace as a handle.
    // https://man7.org/linux/man-pages/man2/socket.2.html
    // SAFETY: plain syscall, the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let raw = Errno::result(raw)?;
    // SAFETY: `raw` is a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // Why: read the flags first so only IFF_UP changes.
    // https://man7.org/linux/man-pages/man7/netdevice.7.html
    // SAFETY: `req` is a valid ifreq that outlives the call.
    let res = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
    Errno::result(res)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as above.
    let res = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) };
    Errno::result(res).map(drop)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn renameat2_noreplace(from: &Path, to: &Path) -> nix::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn renameat2_noreplace(from: &Path, to: &Path) -> nix::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let from_c = CString::new(from.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let to_c = CString::new(to.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: both pointers are valid NUL-terminated strings living across the call.
    let res = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    Errno::result(res).map(drop)
}

/// One call through the seam, as [`RecordingSyscall`] logs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    /// `fsync` of a file, named by the path its fd refers to.
    Fsync(PathBuf),
    /// `fsync` of a directory.
    FsyncDir(PathBuf),
    /// `syncfs` of the filesystem holding a path.
    Syncfs(PathBuf),
    /// `rename(from, to)`.
    Rename(PathBuf, PathBuf),
    /// `renameat2(from, to, RENAME_NOREPLACE)`.
    RenameNoreplace(PathBuf, PathBuf),
    /// `link(original, link)`.
    HardLink(PathBuf, PathBuf),
    /// `unlink(path)`.
    RemoveFile(PathBuf),
    /// Recursive removal of a directory.
    RemoveDirAll(PathBuf),
    /// Recursive creation of a directory.
    CreateDirAll(PathBuf),
    /// `mount(source, target, fstype, flags, data)`.
    Mount {
        /// The source (device, directory or pseudo name).
        source: Option<PathBuf>,
        /// The mount point.
        target: PathBuf,
        /// The filesystem type.
        fstype: Option<String>,
        /// The mount flags.
        flags: MsFlags,
        /// The filesystem's option string.
        data: Option<String>,
    },
    /// `umount2(target, flags)`.
    Umount2(PathBuf, MntFlags),
    /// `unshare(flags)`.
    Unshare(CloneFlags),
    /// `pivot_root(new_root, put_old)`.
    PivotRoot(PathBuf, PathBuf),
    /// `sethostname(name)`.
    Sethostname(String),
    /// `setresuid(uid, uid, uid)`.
    Setresuid(u32),
    /// `setresgid(gid, gid, gid)`.
    Setresgid(u32),
    /// `setgroups(gids)`.
    Setgroups(Vec<u32>),
    /// `lchown(path, uid, gid)`.
    Lchown(PathBuf, u32, u32),
    /// `mknod(path, kind | perm, makedev(major, minor))`.
    Mknod {
        /// The node's path.
        path: PathBuf,
        /// `S_IFCHR` or `S_IFBLK`.
        kind: SFlag,
        /// The permission bits.
        perm: u32,
        /// The device's major number.
        major: u64,
        /// The device's minor number.
        minor: u64,
    },
    /// `chdir(path)`.
    Chdir(PathBuf),
    /// `IFF_UP` on an interface.
    SetLinkUp(String),
}

/// The kind of a [`Call`], for failure injection and filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// [`Call::Fsync`]
    Fsync,
    /// [`Call::FsyncDir`]
    FsyncDir,
    /// [`Call::Syncfs`]
    Syncfs,
    /// [`Call::Rename`]
    Rename,
    /// [`Call::RenameNoreplace`]
    RenameNoreplace,
    /// [`Call::HardLink`]
    HardLink,
    /// [`Call::RemoveFile`]
    RemoveFile,
    /// [`Call::RemoveDirAll`]
    RemoveDirAll,
    /// [`Call::CreateDirAll`]
    CreateDirAll,
    /// [`Call::Mount`]
    Mount,
    /// [`Call::Umount2`]
    Umount2,
    /// [`Call::Unshare`]
    Unshare,
    /// [`Call::PivotRoot`]
    PivotRoot,
    /// [`Call::Sethostname`]
    Sethostname,
    /// [`Call::Setresuid`]
    Setresuid,
    /// [`Call::Setresgid`]
    Setresgid,
    /// [`Call::Setgroups`]
    Setgroups,
    /// [`Call::Lchown`]
    Lchown,
    /// [`Call::Mknod`]
    Mknod,
    /// [`Call::Chdir`]
    Chdir,
    /// [`Call::SetLinkUp`]
    SetLinkUp,
}

impl Call {
    /// The call's kind.
    pub fn kind(&self) -> CallKind {
        match self {
            Call::Fsync(_) => CallKind::Fsync,
            Call::FsyncDir(_) => CallKind::FsyncDir,
            Call::Syncfs(_) => CallKind::Syncfs,
            Call::Rename(..) => CallKind::Rename,
            Call::RenameNoreplace(..) => CallKind::RenameNoreplace,
            Call::HardLink(..) => CallKind::HardLink,
            Call::RemoveFile(_) => CallKind::RemoveFile,
            Call::RemoveDirAll(_) => CallKind::RemoveDirAll,
            Call::CreateDirAll(_) => CallKind::CreateDirAll,
            Call::Mount { .. } => CallKind::Mount,
            Call::Umount2(..) => CallKind::Umount2,
            Call::Unshare(_) => CallKind::Unshare,
            Call::PivotRoot(..) => CallKind::PivotRoot,
            Call::Sethostname(_) => CallKind::Sethostname,
            Call::Setresuid(_) => CallKind::Setresuid,
            Call::Setresgid(_) => CallKind::Setresgid,
            Call::Setgroups(_) => CallKind::Setgroups,
            Call::Lchown(..) => CallKind::Lchown,
            Call::Mknod { .. } => CallKind::Mknod,
            Call::Chdir(_) => CallKind::Chdir,
            Call::SetLinkUp(_) => CallKind::SetLinkUp,
        }
    }

    fn name(&self) -> &'static str {
        match self.kind() {
            CallKind::Fsync | CallKind::FsyncDir => "fsync",
            CallKind::Syncfs => "syncfs",
            CallKind::Rename => "rename",
            CallKind::RenameNoreplace => "renameat2",
            CallKind::HardLink => "link",
            CallKind::RemoveFile => "unlink",
            CallKind::RemoveDirAll => "remove_dir_all",
            CallKind::CreateDirAll => "mkdir",
            CallKind::Mount => "mount",
            CallKind::Umount2 => "umount2",
            CallKind::Unshare => "unshare",
            CallKind::PivotRoot => "pivot_root",
            CallKind::Sethostname => "sethostname",
            CallKind::Setresuid => "setresuid",
            CallKind::Setresgid => "setresgid",
            CallKind::Setgroups => "setgroups",
            CallKind::Lchown => "lchown",
            CallKind::Mknod => "mknod",
            CallKind::Chdir => "chdir",
            CallKind::SetLinkUp => "ioctl(SIOCSIFFLAGS)",
        }
    }

    fn paths(&self) -> Vec<&Path> {
        match self {
            Call::Fsync(p)
            | Call::FsyncDir(p)
            | Call::Syncfs(p)
            | Call::RemoveFile(p)
            | Call::RemoveDirAll(p)
            | Call::CreateDirAll(p) => vec![p],
            Call::Rename(a, b)
            | Call::RenameNoreplace(a, b)
            | Call::HardLink(a, b)
            | Call::PivotRoot(a, b) => {
                vec![a, b]
            }
            Call::Mount { source, target, .. } => source
                .iter()
                .map(|p| p.as_path())
                .chain([target.as_path()])
                .collect(),
            Call::Umount2(p, _)
            | Call::Lchown(p, ..)
            | Call::Mknod { path: p, .. }
            | Call::Chdir(p) => {
                vec![p]
            }
            Call::SetLinkUp(name) => vec![Path::new(name)],
            Call::Unshare(_)
            | Call::Sethostname(_)
            | Call::Setresuid(_)
            | Call::Setresgid(_)
            | Call::Setgroups(_) => Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
struct RecState {
    calls: Vec<Call>,
    /// (kind, 1-based index among calls of that kind, errno)
    failures: Vec<(CallKind, usize, i32)>,
    /// (kind, errno): fail every call of that kind.
    fail_all: Vec<(CallKind, i32)>,
}

/// A test double: records every call in order and injects failures; otherwise performs the
/// filesystem calls through [`RealSyscall`]. The sandbox's calls (mount, unshare, pivot_root,
/// credentials, chown, mknod, chdir, link up) are only recorded, never performed: they would
/// change the test process or need root.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    real: RealSyscall,
    state: Mutex<RecState>,
}

impl RecordingSyscall {
    /// A recorder with an empty log and no injected failures.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecState> {
        // A panic while holding the lock only happens in a failing test; the log is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the `n`th call (1-based, counted over the whole log) of `kind` fail with `errno`
    /// instead of being performed.
    pub fn fail_nth(&self, kind: CallKind, n: usize, errno: i32) {
        self.lock().failures.push((kind, n, errno));
    }

    /// Makes the next call of `kind` (counted from now) fail with `errno`.
    pub fn fail_next(&self, kind: CallKind, errno: i32) {
        let mut st = self.lock();
        let n = st.calls.iter().filter(|c| c.kind() == kind).count() + 1;
        st.failures.push((kind, n, errno));
    }

    /// Makes every call of `kind` fail with `errno` until [`RecordingSyscall::clear_failures`].
    pub fn fail_all(&self, kind: CallKind, errno: i32) {
        self.lock().fail_all.push((kind, errno));
    }

    /// Removes every injected failure.
    pub fn clear_failures(&self) {
        let mut st = self.lock();
        st.failures.clear();
        st.fail_all.clear();
    }

    /// The calls made so far, in order (failed ones included).
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls made so far whose kind is in `kinds`, in order.
    pub fn calls_of(&self, kinds: &[CallKind]) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| kinds.contains(&c.kind()))
            .cloned()
            .collect()
    }

    /// Empties the log (injected failures stay).
    pub fn clear(&self) {
        self.lock().calls.clear();
    }

    /// Logs `call` and returns the injected error, if any.
    fn record(&self, call: Call) -> Result<()> {
        let mut st = self.lock();
        let kind = call.kind();
        let n = st.calls.iter().filter(|c| c.kind() == kind).count() + 1;
        let injected = st
            .failures
            .iter()
            .find(|(k, i, _)| *k == kind && *i == n)
            .map(|(_, _, e)| *e)
            .or_else(|| {
                st.fail_all
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, e)| *e)
            });
        let err = injected.map(|errno| {
            Error::new(
                call.name(),
                &call.paths(),
                io::Error::from_raw_os_error(errno),
            )
        });
        st.calls.push(call);
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Syscall for RecordingSyscall {
    fn fsync(&self, file: &File) -> Result<()> {
        self.record(Call::Fsync(fd_path(file)))?;
        self.real.fsync(file)
    }

    fn fsync_dir(&self, dir: &Path) -> Result<()> {
        self.record(Call::FsyncDir(dir.to_path_buf()))?;
        self.real.fsync_dir(dir)
    }

    fn syncfs(&self, path: &Path) -> Result<()> {
        self.record(Call::Syncfs(path.to_path_buf()))?;
        self.real.syncfs(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.record(Call::Rename(from.to_path_buf(), to.to_path_buf()))?;
        self.real.rename(from, to)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<()> {
        self.record(Call::RenameNoreplace(from.to_path_buf(), to.to_path_buf()))?;
        self.real.rename_noreplace(from, to)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> Result<()> {
        self.record(Call::HardLink(original.to_path_buf(), link.to_path_buf()))?;
        self.real.hard_link(original, link)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        self.record(Call::RemoveFile(path.to_path_buf()))?;
        self.real.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> Result<()> {
        self.record(Call::RemoveDirAll(path.to_path_buf()))?;
        self.real.remove_dir_all(path)
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.record(Call::CreateDirAll(path.to_path_buf()))?;
        self.real.create_dir_all(path)
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        self.record(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<()> {
        self.record(Call::Umount2(target.to_path_buf(), flags))
    }

    fn unshare(&self, flags: CloneFlags) -> Result<()> {
        self.record(Call::Unshare(flags))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()> {
        self.record(Call::PivotRoot(
            new_root.to_path_buf(),
            put_old.to_path_buf(),
        ))
    }

    fn sethostname(&self, name: &str) -> Result<()> {
        self.record(Call::Sethostname(name.to_string()))
    }

    fn setresuid(&self, uid: u32) -> Result<()> {
        self.record(Call::Setresuid(uid))
    }

    fn setresgid(&self, gid: u32) -> Result<()> {
        self.record(Call::Setresgid(gid))
    }

    fn setgroups(&self, gids: &[u32]) -> Result<()> {
        self.record(Call::Setgroups(gids.to_vec()))
    }

    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        self.record(Call::Lchown(path.to_path_buf(), uid, gid))
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: u32, major: u64, minor: u64) -> Result<()> {
        self.record(Call::Mknod {
            path: path.to_path_buf(),
            kind,
            perm,
            major,
            minor,
        })
    }

    fn chdir(&self, path: &Path) -> Result<()> {
        self.record(Call::Chdir(path.to_path_buf()))
    }

    fn set_link_up(&self, name: &str) -> Result<()> {
        self.record(Call::SetLinkUp(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn real_calls_work_on_a_temp_dir() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let sys = RealSyscall;
        let sub = dir.path().join("a/b");
        sys.create_dir_all(&sub)?;
        sys.create_dir_all(&sub)?;
        let f = dir.path().join("f");
        let mut file = File::create(&f)?;
        file.write_all(b"x")?;
        sys.fsync(&file)?;
        sys.fsync_dir(dir.path())?;
        sys.syncfs(dir.path())?;
        let g = dir.path().join("g");
        sys.hard_link(&f, &g)?;
        let e = sys.hard_link(&f, &g).err().ok_or("link over existing")?;
        assert!(e.is_already_exists(), "{e}");
        let h = dir.path().join("h");
        sys.rename_noreplace(&g, &h)?;
        sys.hard_link(&f, &g)?;
        let e = sys.rename_noreplace(&g, &h).err().ok_or("noreplace")?;
        assert!(e.is_already_exists(), "{e}");
        assert_eq!(e.call, "renameat2");
        assert_eq!(e.paths, vec![g.clone(), h.clone()]);
        sys.rename(&g, &h)?;
        sys.remove_file(&h)?;
        assert!(sys.remove_file(&h).err().ok_or("gone")?.is_not_found());
        sys.remove_dir_all(&dir.path().join("a"))?;
        assert!(!dir.path().join("a").exists());
        let e = sys.fsync_dir(&f).err().ok_or("fsync_dir on file")?;
        assert_eq!(e.raw_errno(), Some(libc::ENOTDIR));
        Ok(())
    }

    /// Why `open_dir` does not use `O_PATH`: fsync(2) and syncfs(2) reject such fds.
    #[test]
    fn o_path_fds_cannot_be_synced() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let fd = open(
            dir.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        assert_eq!(nix::unistd::fsync(&fd), Err(Errno::EBADF));
        assert_eq!(nix::unistd::syncfs(&fd), Err(Errno::EBADF));
        Ok(())
    }

    #[test]
    fn recording_logs_in_order_and_injects() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let sys = RecordingSyscall::new();
        let f = dir.path().join("f");
        let file = File::create(&f)?;
        sys.fsync(&file)?;
        sys.fail_next(CallKind::Fsync, libc::EIO);
        let e = sys.fsync(&file).err().ok_or("injected")?;
        assert_eq!(e.raw_errno(), Some(libc::EIO));
        assert!(e.to_string().contains("fsync"), "{e}");
        sys.fsync(&file)?;
        sys.rename(&f, &dir.path().join("g"))?;
        sys.fsync_dir(dir.path())?;
        let canon = std::fs::canonicalize(f.parent().ok_or("parent")?)?.join("f");
        assert_eq!(
            sys.calls(),
            vec![
                Call::Fsync(canon.clone()),
                Call::Fsync(canon.clone()),
                Call::Fsync(canon),
                Call::Rename(f.clone(), dir.path().join("g")),
                Call::FsyncDir(dir.path().to_path_buf()),
            ]
        );
        sys.fail_nth(CallKind::Rename, 2, libc::EXDEV);
        let e = sys
            .rename(&dir.path().join("g"), &f)
            .err()
            .ok_or("second rename fails")?;
        assert_eq!(e.raw_errno(), Some(libc::EXDEV));
        assert!(dir.path().join("g").exists(), "failed call not performed");
        sys.fail_all(CallKind::FsyncDir, libc::ENOSPC);
        assert!(sys.fsync_dir(dir.path()).is_err());
        assert!(sys.fsync_dir(dir.path()).is_err());
        sys.clear_failures();
        sys.fsync_dir(dir.path())?;
        assert_eq!(sys.calls_of(&[CallKind::Rename]).len(), 2);
        sys.clear();
        assert!(sys.calls().is_empty());
        Ok(())
    }
}
