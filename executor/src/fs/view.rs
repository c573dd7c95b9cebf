//! [`LayerView`]: a read-only merged view of a stack of unpacked layer directories.
//!
//! The layers are given top first, as overlayfs `lowerdir=` lists them, and are read with
//! overlay's rules without mounting anything: the topmost entry of a name wins; a whiteout (a 0/0
//! character device) hides the name in every lower layer; a directory merges with the
//! directories of the same name below it until a layer has a non-directory there, a whiteout, or
//! the directory itself is opaque (`trusted.overlay.opaque=y`); a non-directory hides everything
//! below it. An empty stack is the empty image (`FROM scratch`): just a root directory.
//!
//! A path inside one layer dir is only ever looked up when each of its parents was found to be a
//! real directory in that layer, so reading a layer never follows a symlink of the image.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{FileKind, SourceTree, Stat};
use crate::error::{Error, Result, io_err};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// A merged view of unpacked layers, top first; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct LayerView {
    layers: Vec<PathBuf>,
}

fn lstat_opt(p: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(io_err(p)(e)),
    }
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    matches!(xattr::get(p, OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
}

impl LayerView {
    /// A view of `layers`, top first (`store.layer_rootfs(diff_id)` of each layer).
    pub fn new(layers: Vec<PathBuf>) -> Self {
        Self { layers }
    }

    /// The empty image (`FROM scratch`).
    pub fn empty() -> Self {
        Self::default()
    }

    /// This view with `upper` (a layer being written) on top.
    pub fn with_upper(&self, upper: PathBuf) -> Self {
        let mut layers = Vec::with_capacity(self.layers.len() + 1);
        layers.push(upper);
        layers.extend(self.layers.iter().cloned());
        Self { layers }
    }

    /// The layer directories, top first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// The layers in which `rel` (clean) is a directory that takes part in the merge, top
    /// first. Empty when `rel` is not a directory of the view.
    fn dir_layers(&self, rel: &str) -> Result<Vec<usize>> {
        let mut cands: Vec<usize> = (0..self.layers.len()).collect();
        let mut prefix = String::new();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            prefix = super::join_rel(&prefix, comp);
            let mut next = Vec::new();
            for &l in &cands {
                let p = self.layers[l].join(&prefix);
                let Some(m) = lstat_opt(&p)? else { continue };
                if m.is_dir() {
                    next.push(l);
                    if is_opaque(&p) {
                        break;
                    }
                } else {
                    // A whiteout or a non-directory ends the merge here.
                    break;
                }
            }
            if next.is_empty() {
                return Ok(next);
            }
            cands = next;
        }
        Ok(cands)
    }

    /// The layer holding the visible entry at `rel`, with its metadata.
    fn find(&self, rel: &str) -> Result<Option<(usize, fs::Metadata)>> {
        let parent = super::parent_rel(rel);
        let name = super::base_name(rel);
        for l in self.dir_layers(parent)? {
            let p = self.layers[l].join(parent).join(name);
            if let Some(m) = lstat_opt(&p)? {
                if is_whiteout(&m) {
                    return Ok(None);
                }
                return Ok(Some((l, m)));
            }
        }
        Ok(None)
    }

    /// The host path of the visible entry at `rel`.
    fn host_path(&self, rel: &str) -> Result<PathBuf> {
        match self.find(rel)? {
            Some((l, _)) => Ok(self.layers[l].join(rel)),
            None => Err(not_found(rel)),
        }
    }

    /// `lstat` of `rel` (clean, relative to the image root).
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn stat(&self, rel: &str) -> Result<Option<Stat>> {
        if rel.is_empty() {
            for l in &self.layers {
                if let Some(m) = lstat_opt(l)? {
                    return Ok(Some(Stat::from_metadata(&m)));
                }
            }
            return Ok(Some(Stat {
                kind: FileKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: (0, 0),
                rdev: 0,
                hash: None,
                link_id: None,
            }));
        }
        Ok(self.find(rel)?.map(|(_, m)| Stat::from_metadata(&m)))
    }

    /// Reads a whole (small) file, following symlinks inside the view (`/etc/passwd`).
    /// `None` when it does not exist or is not a regular file.
    ///
    /// # Errors
    /// I/O errors; a symlink loop.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let rel = super::resolve(self, path, true)?;
        match self.stat(&rel)? {
            Some(st) if st.kind == FileKind::File => {}
            _ => return Ok(None),
        }
        let p = self.host_path(&rel)?;
        fs::read(&p).map(Some).map_err(io_err(p))
    }
}

fn not_found(rel: &str) -> Error {
    Error::Io {
        path: PathBuf::from(format!("/{rel}")),
        source: io::Error::from(io::ErrorKind::NotFound),
    }
}

impl SourceTree for LayerView {
    fn lstat(&self, rel: &str) -> Result<Option<Stat>> {
        self.stat(rel)
    }

    fn read_dir(&self, rel: &str) -> Result<Vec<String>> {
        // name -> visible (false: hidden by a whiteout in a higher layer)
        let mut names: std::collections::BTreeMap<String, bool> = Default::default();
        let layers = self.dir_layers(rel)?;
        if layers.is_empty() && !rel.is_empty() {
            return Err(Error::Io {
                path: PathBuf::from(format!("/{rel}")),
                source: io::Error::from(io::ErrorKind::NotADirectory),
            });
        }
        for l in layers {
            let dir = self.layers[l].join(rel);
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            for ent in rd {
                let ent = ent.map_err(io_err(&dir))?;
                let name = ent.file_name().into_string().map_err(|n| {
                    Error::Copy(format!("{}: file name is not UTF-8", dir.join(n).display()))
                })?;
                if names.contains_key(&name) {
                    continue;
                }
                let m = ent.metadata().map_err(io_err(dir.join(&name)))?;
                names.insert(name, !is_whiteout(&m));
            }
        }
        Ok(names
            .into_iter()
            .filter_map(|(n, visible)| visible.then_some(n))
            .collect())
    }

    fn read_link(&self, rel: &str) -> Result<PathBuf> {
        let p = self.host_path(rel)?;
        fs::read_link(&p).map_err(io_err(p))
    }

    fn open(&self, rel: &str) -> Result<File> {
        let p = self.host_path(rel)?;
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&p)
            .map_err(io_err(p))
    }

    fn xattrs(&self, rel: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let p = self.host_path(rel)?;
        let mut out = Vec::new();
        let names = match xattr::list(&p) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(out),
            Err(e) => return Err(io_err(p)(e)),
        };
        for name in names {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("trusted.overlay.")
                || name.starts_with("user.overlay.")
                || name == "security.selinux"
            {
                continue;
            }
            if let Some(v) = xattr::get(&p, name).map_err(io_err(&p))? {
                out.push((name.to_owned(), v));
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use nix::sys::stat::{Mode, SFlag, makedev, mknod};

    use super::*;
    use crate::fs::resolve;

    fn whiteout(p: &Path) {
        mknod(p, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).unwrap();
    }

    /// Three layers: base (bottom), mid, top.
    fn stack() -> (tempfile::TempDir, LayerView) {
        let d = tempfile::tempdir().unwrap();
        let (base, mid, top) = (d.path().join("b"), d.path().join("m"), d.path().join("t"));
        for l in [&base, &mid, &top] {
            fs::create_dir_all(l).unwrap();
        }
        fs::create_dir_all(base.join("etc/ssl")).unwrap();
        fs::write(base.join("etc/passwd"), "base").unwrap();
        fs::write(base.join("etc/ssl/cert"), "c").unwrap();
        fs::write(base.join("etc/gone"), "g").unwrap();
        fs::create_dir_all(base.join("opt/old")).unwrap();
        fs::write(base.join("opt/old/f"), "f").unwrap();
        fs::write(base.join("file-then-dir"), "x").unwrap();
        // mid: whiteout etc/gone, opaque opt, new file in opt
        fs::create_dir_all(mid.join("etc")).unwrap();
        whiteout(&mid.join("etc/gone"));
        fs::create_dir_all(mid.join("opt")).unwrap();
        xattr::set(mid.join("opt"), OPAQUE_XATTR, b"y").unwrap();
        fs::write(mid.join("opt/new"), "n").unwrap();
        fs::create_dir_all(mid.join("file-then-dir")).unwrap();
        fs::write(mid.join("file-then-dir/inner"), "i").unwrap();
        // top: overrides passwd, symlinks
        fs::create_dir_all(top.join("etc")).unwrap();
        fs::write(top.join("etc/passwd"), "top").unwrap();
        symlink("/etc/ssl", top.join("ssl")).unwrap();
        symlink("../../../../etc/passwd", top.join("escape")).unwrap();
        symlink("loop2", top.join("loop1")).unwrap();
        symlink("loop1", top.join("loop2")).unwrap();
        let v = LayerView::new(vec![top, mid, base]);
        (d, v)
    }

    #[test]
    fn overlay_rules() {
        let (_d, v) = stack();
        assert_eq!(v.read_file("/etc/passwd").unwrap().unwrap(), b"top");
        assert_eq!(
            v.read_dir("etc").unwrap(),
            vec!["passwd".to_string(), "ssl".to_string()]
        );
        assert!(v.stat("etc/gone").unwrap().is_none());
        // opaque dir: old content hidden
        assert_eq!(v.read_dir("opt").unwrap(), vec!["new".to_string()]);
        assert!(v.stat("opt/old").unwrap().is_none());
        // a dir over a file does not merge with it
        assert!(v.stat("file-then-dir").unwrap().unwrap().is_dir());
        assert_eq!(v.read_dir("file-then-dir").unwrap(), vec!["inner"]);
        let root = v.read_dir("").unwrap();
        assert_eq!(
            root,
            vec![
                "escape",
                "etc",
                "file-then-dir",
                "loop1",
                "loop2",
                "opt",
                "ssl"
            ]
        );
    }

    #[test]
    fn resolution_stays_in_root() {
        let (_d, v) = stack();
        assert_eq!(resolve(&v, "/ssl/cert", true).unwrap(), "etc/ssl/cert");
        assert_eq!(resolve(&v, "escape", true).unwrap(), "etc/passwd");
        assert_eq!(resolve(&v, "escape", false).unwrap(), "escape");
        assert_eq!(
            resolve(&v, "../../..//etc/./passwd", true).unwrap(),
            "etc/passwd"
        );
        assert_eq!(
            resolve(&v, "ssl/missing/x", true).unwrap(),
            "etc/ssl/missing/x"
        );
        let e = resolve(&v, "loop1", true).unwrap_err().to_string();
        assert!(e.contains("too many levels of symbolic links"), "{e}");
        assert_eq!(v.read_file("ssl/cert").unwrap().unwrap(), b"c");
        assert_eq!(v.read_file("escape").unwrap().unwrap(), b"top");
    }

    #[test]
    fn empty_stack_is_scratch() {
        let v = LayerView::empty();
        assert!(v.stat("").unwrap().unwrap().is_dir());
        assert!(v.read_dir("").unwrap().is_empty());
        assert!(v.stat("etc/passwd").unwrap().is_none());
        assert!(v.read_file("/etc/passwd").unwrap().is_none());
        assert_eq!(resolve(&v, "/a/../b", true).unwrap(), "b");
    }
}
