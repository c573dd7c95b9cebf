//! `--output type=tar|local`: an image's root filesystem, flattened (whiteouts applied).

use std::io::Write;
use std::path::{Path, PathBuf};

use strata_cas::Store;

use crate::build::farm_tree;
use crate::cache::LayerRef;
use crate::error::{Error, Result};
use crate::fs::view::LayerView;
use crate::fs::{FileKind, SourceTree};

/// The directories of `layers` (bottom first), top first: each layer's, then its base's for a
/// layer stored as a delta (for views and overlay lower dirs).
///
/// # Errors
/// An unreadable base of a layer.
pub(crate) fn layer_dirs(store: &Store, layers: &[LayerRef]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::with_capacity(layers.len());
    for l in layers.iter().rev() {
        dirs.extend(store.layer_dirs(&l.diff_id)?);
    }
    Ok(dirs)
}

fn view(store: &Store, layers: &[LayerRef]) -> Result<LayerView> {
    Ok(LayerView::new(layer_dirs(store, layers)?))
}

/// Writes the flattened root filesystem into `dest` (created if missing).
///
/// # Errors
/// I/O errors.
pub fn rootfs_dir(store: &Store, layers: &[LayerRef], dest: &Path) -> Result<()> {
    let v = view(store, layers)?;
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    for name in v.read_dir("")? {
        farm_tree(&v, &name, &dest.join(&name))?;
    }
    Ok(())
}

/// Writes the flattened root filesystem as a tar stream.
///
/// # Errors
/// I/O errors.
pub fn rootfs_tar(store: &Store, layers: &[LayerRef], out: impl Write) -> Result<()> {
    let v = view(store, layers)?;
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Complete);
    for name in v.read_dir("")? {
        tar_tree(&v, &name, &mut b)?;
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("<tar output>", e))
}

fn tar_tree<W: Write>(v: &LayerView, rel: &str, b: &mut tar::Builder<W>) -> Result<()> {
    let Some(st) = v.lstat(rel)? else {
        return Ok(());
    };
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.mode);
    h.set_uid(u64::from(st.uid));
    h.set_gid(u64::from(st.gid));
    h.set_mtime(u64::try_from(st.mtime.0).unwrap_or(0));
    let werr = |e| Error::io(format!("<tar output>/{rel}"), e);
    match st.kind {
        FileKind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{rel}/"), std::io::empty())
                .map_err(werr)?;
            for name in v.read_dir(rel)? {
                tar_tree(v, &crate::fs::join_rel(rel, &name), b)?;
            }
        }
        FileKind::File => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(st.size);
            let f = v.open(rel)?;
            b.append_data(&mut h, rel, f).map_err(werr)?;
        }
        FileKind::Symlink => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let target = v.read_link(rel)?;
            b.append_link(&mut h, rel, target).map_err(werr)?;
        }
        _ => {}
    }
    Ok(())
}
