//! Containers as GC roots and as a `system df` row.
//!
//! A container keeps its image alive for the store's prune: its image config blob and the
//! layers its overlay mounts ([`Containers`] implements [`GcRoots`]), even after `rmi -f`
//! untagged the image. `system df` gets a "Containers" row: every container, the running
//! ones active, the size of their upper dirs (what they wrote), reclaimable for the stopped
//! ones. Volumes have their own row ([`crate::volume::VolumeUsage`]).

use std::path::{Path, PathBuf};

use strata_cas::gc::{GcRoots, Roots};
use strata_cas::usage::{UsageRow, UsageSource};
use strata_cas::{Digest, Store};

use crate::container::{Container, ContainerStore, Status};
use crate::error::Error;

/// The containers under `ROOT/containers`, for the GC and `df`.
#[derive(Debug, Clone)]
pub struct Containers {
    root: PathBuf,
}

impl Containers {
    /// The containers of the store at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn list(&self) -> strata_cas::Result<(ContainerStore, Vec<Container>)> {
        let dir = self.root.join("containers");
        let to_cas = |e: Error| strata_cas::Error::Corrupt {
            path: dir.clone(),
            message: e.to_string(),
        };
        let cs = ContainerStore::open(&self.root).map_err(to_cas)?;
        let list = cs.list().map_err(to_cas)?;
        Ok((cs, list))
    }
}

fn digest(what: &str, s: &str, dir: &Path) -> strata_cas::Result<Digest> {
    s.parse().map_err(|_| strata_cas::Error::Corrupt {
        path: dir.to_path_buf(),
        message: format!("bad {what} {s:?} in a container record"),
    })
}

impl GcRoots for Containers {
    fn name(&self) -> &str {
        "containers"
    }

    fn roots(&self, _store: &Store) -> strata_cas::Result<Roots> {
        let (cs, list) = self.list()?;
        let mut roots = Roots::default();
        for c in list {
            let dir = cs.container_dir(&c.id);
            roots.blobs.insert(digest("image ID", &c.image_id, &dir)?);
            for l in &c.layers {
                roots.layers.insert(digest("layer", l, &dir)?);
            }
        }
        Ok(roots)
    }
}

impl UsageSource for Containers {
    fn name(&self) -> &str {
        "containers"
    }

    fn rows(&self, _store: &Store) -> strata_cas::Result<Vec<UsageRow>> {
        let (cs, list) = self.list()?;
        let mut row = UsageRow {
            kind: "Containers".into(),
            total: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
        };
        for c in list {
            let size = crate::volume::dir_size(&cs.container_dir(&c.id).join("upper"));
            row.total += 1;
            row.size += size;
            if matches!(c.state.status, Status::Running | Status::Paused) {
                row.active += 1;
            } else {
                row.reclaimable += size;
            }
        }
        Ok(vec![row])
    }
}
