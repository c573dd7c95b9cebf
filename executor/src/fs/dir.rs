//! [`DirTree`]: a plain host directory as a [`SourceTree`] (a build context read directly).
//!
//! Files read from it are owned `0:0` when copied, as BuildKit resets the owner of context files.
//! [`DirTree::with_hashes`] hashes every regular file up front (in parallel), as the context
//! index does once and keeps in the store; COPY then names objects without reading files.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{FileKind, SourceTree, Stat};
use crate::error::{Error, Result, io_err};

/// A host directory read as a source tree; see the module docs.
#[derive(Debug, Clone)]
pub struct DirTree {
    root: PathBuf,
    hashes: HashMap<String, [u8; 32]>,
}

impl DirTree {
    /// The directory `root`, without known content hashes.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            hashes: HashMap::new(),
        }
    }

    /// The directory `root` with the blake3 hash of every regular file computed now.
    ///
    /// # Errors
    /// I/O errors walking or reading the tree.
    pub fn with_hashes(root: &Path) -> Result<Self> {
        let mut files = Vec::new();
        for ent in walkdir::WalkDir::new(root).follow_links(false) {
            let ent = ent.map_err(|e| Error::Io {
                path: e.path().unwrap_or(root).to_path_buf(),
                source: e.into(),
            })?;
            if ent.file_type().is_file() {
                let rel = ent
                    .path()
                    .strip_prefix(root)
                    .map_err(|_| Error::Copy(format!("{}: outside root", ent.path().display())))?
                    .to_str()
                    .ok_or_else(|| {
                        Error::Copy(format!("{}: file name is not UTF-8", ent.path().display()))
                    })?
                    .to_owned();
                files.push(rel);
            }
        }
        let hashes = files
            .into_par_iter()
            .map(|rel| {
                let p = root.join(&rel);
                let f = File::open(&p).map_err(io_err(&p))?;
                let h = hash_reader(f).map_err(io_err(&p))?;
                Ok((rel, h))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self {
            root: root.to_path_buf(),
            hashes,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// The blake3 hash of everything `r` yields.
///
/// # Errors
/// Read errors.
pub fn hash_reader(mut r: impl Read) -> io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

impl SourceTree for DirTree {
    fn lstat(&self, rel: &str) -> Result<Option<Stat>> {
        let p = self.path(rel);
        match fs::symlink_metadata(&p) {
            Ok(m) => {
                let mut st = Stat::from_metadata(&m);
                if st.kind == FileKind::File {
                    st.hash = self.hashes.get(rel).copied();
                }
                Ok(Some(st))
            }
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

    fn read_dir(&self, rel: &str) -> Result<Vec<String>> {
        let p = self.path(rel);
        let mut out = Vec::new();
        for ent in fs::read_dir(&p).map_err(io_err(&p))? {
            let ent = ent.map_err(io_err(&p))?;
            out.push(ent.file_name().into_string().map_err(|n| {
                Error::Copy(format!("{}: file name is not UTF-8", p.join(n).display()))
            })?);
        }
        out.sort();
        Ok(out)
    }

    fn read_link(&self, rel: &str) -> Result<PathBuf> {
        let p = self.path(rel);
        fs::read_link(&p).map_err(io_err(p))
    }

    fn open(&self, rel: &str) -> Result<File> {
        let p = self.path(rel);
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&p)
            .map_err(io_err(p))
    }

    fn keeps_owner(&self) -> bool {
        false
    }
}
