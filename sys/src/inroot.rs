//! Resolving (and creating) paths inside a root directory without ever leaving it.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::sys::stat::{Mode, mkdirat};

use crate::{Error, Result};

/// What [`resolve_in_root`] creates when the path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing path is `ENOENT`.
    Nothing,
    /// The missing directories (mode 0755).
    Dir,
    /// The missing parent directories (0755) and an empty file (0644) at the end.
    File,
}

/// Resolves `path` as if `root` were `/` (symlinks, absolute or not, and `..` stay inside
/// `root`; `/proc` magic links are refused), optionally creating what is missing, and returns
/// the real path of the result, which always lies under the real path of `root`.
///
/// # Errors
/// `openat2`, `mkdirat` or `openat` failures (`ENOENT` for a missing path with
/// [`Create::Nothing`], `ELOOP` for a magic link, `EXDEV` if the result is outside `root`).
pub fn resolve_in_root(root: &Path, path: &Path, create: Create) -> Result<PathBuf> {
    // Why O_PATH: the root is only a handle for the *at calls, never read.
    // https://man7.org/linux/man-pages/man2/open.2.html
    let root_fd = open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::errno("open", &[root], e))?;
    let real_root = fd_path(&root_fd).map_err(|e| Error::new("readlink", &[root], e))?;
    let comps: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(OsStr::new("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    let rel: PathBuf = comps.iter().collect();
    let err = |call, e| Error::errno(call, &[root, path], e);
    match open_in(&root_fd, &rel) {
        Ok(fd) => return finish(&fd, &real_root, root, path),
        Err(Errno::ENOENT) if create != Create::Nothing => {}
        Err(e) => return Err(err("openat2", e)),
    }
    let mut prefix = PathBuf::new();
    for (i, name) in comps.iter().enumerate() {
        let parent = if prefix.as_os_str().is_empty() {
            root_fd
                .try_clone()
                .map_err(|e| Error::new("dup", &[root], e))?
        } else {
            open_in(&root_fd, &prefix).map_err(|e| err("openat2", e))?
        };
        prefix.push(name);
        match open_in(&root_fd, &prefix) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(err("openat2", e)),
        }
        let last = i + 1 == comps.len();
        let made = if last && create == Create::File {
            // Why O_EXCL|O_NOFOLLOW: create exactly this name in the resolved parent, never
            // through a dangling symlink. https://man7.org/linux/man-pages/man2/openat.2.html
            openat(
                &parent,
                *name,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
            .map_err(|e| err("openat", e))
        } else {
            // Why mkdirat on the resolved parent fd: the name is created where resolution
            // inside the root led, not wherever the host path would lead.
            // https://man7.org/linux/man-pages/man2/mkdirat.2.html
            mkdirat(&parent, *name, Mode::from_bits_truncate(0o755)).map_err(|e| err("mkdirat", e))
        };
        match made {
            Ok(()) => {}
            // Somebody created it meanwhile: the next resolution decides.
            Err(e) if e.raw_errno() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    let fd = open_in(&root_fd, &rel).map_err(|e| err("openat2", e))?;
    finish(&fd, &real_root, root, path)
}

/// `openat2(root, rel, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
fn open_in(root_fd: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    // Why openat2: RESOLVE_IN_ROOT makes the kernel treat `root_fd` as `/` for every symlink
    // and `..` (no TOCTOU walk in user space); RESOLVE_NO_MAGICLINKS refuses /proc/*/fd/*.
    // https://man7.org/linux/man-pages/man2/openat2.2.html
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root_fd.as_fd(), rel, how)
}

fn fd_path(fd: &OwnedFd) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn finish(fd: &OwnedFd, real_root: &Path, root: &Path, path: &Path) -> Result<PathBuf> {
    let real = fd_path(fd).map_err(|e| Error::new("readlink", &[root, path], e))?;
    if real.starts_with(real_root) {
        Ok(real)
    } else {
        Err(Error::errno("openat2", &[root, path], Errno::EXDEV))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_stay_inside_and_targets_are_created() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&outside)?;
        symlink("/", root.join("up"))?;
        symlink("../../outside", root.join("rel"))?;
        let real_root = std::fs::canonicalize(&root)?;

        let got = resolve_in_root(&root, Path::new("/up/outside/x"), Create::Dir)?;
        assert_eq!(got, real_root.join("outside/x"));
        assert!(!outside.join("x").exists());
        let got = resolve_in_root(&root, Path::new("rel/y"), Create::File)?;
        assert_eq!(got, real_root.join("outside/y"));
        assert!(root.join("outside/y").is_file());
        let got = resolve_in_root(&root, Path::new("../../.."), Create::Nothing)?;
        assert_eq!(got, real_root);
        let e = resolve_in_root(&root, Path::new("missing"), Create::Nothing)
            .err()
            .ok_or("missing path resolves")?;
        assert!(e.is_not_found(), "{e}");
        Ok(())
    }

    #[test]
    fn magic_links_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        symlink("/proc/self/cwd", dir.path().join("cwd"))?;
        // `/proc/self/cwd` resolves to `<root>/proc/self/cwd`, which does not exist in the root.
        let e = resolve_in_root(dir.path(), Path::new("cwd"), Create::Nothing)
            .err()
            .ok_or("resolved")?;
        assert!(e.is_not_found(), "{e}");
        let e = resolve_in_root(Path::new("/"), Path::new("/proc/self/cwd"), Create::Nothing)
            .err()
            .ok_or("magic link resolved")?;
        assert_eq!(e.raw_errno(), Some(libc::ELOOP), "{e}");
        Ok(())
    }
}
