//! Volumes: directories under `ROOT/volumes/<name>/_data` that outlive containers.
//!
//! Each volume is `ROOT/volumes/<name>/` holding `_data/` (the content containers see) and
//! `volume.json` (its [`Volume`] record). A volume is created whole in a temp dir
//! (`ROOT/volumes/.tmp-*`) and renamed into place, so a concurrent `create` of the same name
//! finds either nothing or a complete volume (creating an existing volume is a no-op, as in
//! docker). Removal renames it away first, so nobody mounts a half-deleted volume.
//!
//! [`prepare`] turns a container's [`MountRequest`]s and its image's `VOLUME` list into the
//! record's resolved [`MountSpec`]s: named volumes are created on demand, every image `VOLUME`
//! not covered by a mount gets an anonymous volume, and a new, empty volume is populated
//! from the image's content at its path (docker's copy-up: contents, modes, owners,
//! symlinks, devices; the path is resolved inside the image, read through the image's
//! layers with [`LayerView`]) unless `nocopy`. [`add_to_spec`] turns the resolved mounts into
//! sandbox mounts.
//!
//! A volume is *in use* when a container's record names it ([`in_use`]); `rm` refuses those
//! and `prune` skips them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_cas::Store;
use strata_cas::usage::{UsageRow, UsageSource};
use strata_executor::fs::{FileKind, LayerView, SourceTree, Stat, join_rel, resolve};
use strata_executor::sandbox::runtime::Spec;

use crate::container::{ContainerStore, MountSpec, new_id};
use crate::error::{Error, Result};
use crate::mounts::{MountRequest, valid_volume_name};

/// The label docker puts on anonymous volumes (what `volume prune` removes by default).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// A volume's record (`volume.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`; 64 hex for anonymous volumes).
    pub name: String,
    /// Always `local`.
    pub driver: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// User labels (`volume create --label`), plus [`ANONYMOUS_LABEL`] on anonymous ones.
    pub labels: BTreeMap<String, String>,
    /// Created for one container (an image `VOLUME` or `-v /path`); `rm -v` removes it.
    pub anonymous: bool,
    /// The host directory containers see (`ROOT/volumes/<name>/_data`).
    pub mountpoint: PathBuf,
}

impl Volume {
    /// docker's `volume inspect` object.
    pub fn inspect_json(&self) -> Value {
        json!({
            "CreatedAt": self.created,
            "Driver": self.driver,
            "Labels": if self.labels.is_empty() { Value::Null } else { json!(self.labels) },
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": Value::Null,
            "Scope": "local",
        })
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Names of the removed volumes.
    pub deleted: Vec<String>,
    /// Bytes their content took.
    pub reclaimed: u64,
}

/// The volumes under `ROOT/volumes`.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

fn no_such(name: &str) -> Error {
    Error::NoSuchVolume(name.to_string())
}

fn rand_suffix() -> Result<String> {
    Ok(new_id()?[..16].to_string())
}

impl Volumes {
    /// The volumes of the store at `root` (nothing is created until a volume is).
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("volumes"),
        }
    }

    /// `ROOT/volumes`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn vol_dir(&self, name: &str) -> Result<PathBuf> {
        if !valid_volume_name(name) {
            return Err(no_such(name));
        }
        Ok(self.dir.join(name))
    }

    /// Creates the volume `name` (a random name when `None`), or returns the existing one:
    /// like docker, creating a volume that exists is not an error (its labels stay).
    ///
    /// # Errors
    /// An invalid name ([`Error::Invalid`]); I/O errors.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume> {
        let name = match name {
            Some(n) if valid_volume_name(n) => n.to_string(),
            Some(n) => {
                return Err(Error::Invalid(format!(
                    "{n:?} includes invalid characters for a local volume name, only \
                     \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed (at least two characters)"
                )));
            }
            None => new_id()?,
        };
        let final_dir = self.dir.join(&name);
        if final_dir.exists() {
            return self.get(&name);
        }
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let tmp = self.dir.join(format!(".tmp-{}", rand_suffix()?));
        let result = (|| {
            let data = tmp.join("_data");
            fs::create_dir_all(&data).map_err(|e| Error::io(&data, e))?;
            let mut labels = labels;
            if anonymous {
                labels.insert(ANONYMOUS_LABEL.into(), String::new());
            }
            let v = Volume {
                name: name.clone(),
                driver: "local".into(),
                created: strata_oci::image::now_rfc3339(),
                labels,
                anonymous,
                mountpoint: final_dir.join("_data"),
            };
            let json = serde_json::to_vec_pretty(&v)
                .map_err(|e| Error::Invalid(format!("volume record: {e}")))?;
            let rec = tmp.join("volume.json");
            fs::write(&rec, json).map_err(|e| Error::io(&rec, e))?;
            Ok(v)
        })();
        let v = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        // rename(2) onto an existing non-empty directory fails: whoever renamed first wins.
        match fs::rename(&tmp, &final_dir) {
            Ok(()) => Ok(v),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                let _ = fs::remove_dir_all(&tmp);
                self.get(&name)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(Error::io(&final_dir, e))
            }
        }
    }

    /// The volume `name`.
    ///
    /// # Errors
    /// [`Error::NoSuchVolume`]; a corrupt record.
    pub fn get(&self, name: &str) -> Result<Volume> {
        let rec = self.vol_dir(name)?.join("volume.json");
        let bytes = match fs::read(&rec) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(no_such(name)),
            Err(e) => return Err(Error::io(&rec, e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::io(&rec, io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    /// Every volume, sorted by name.
    ///
    /// # Errors
    /// Reading the directory or a record.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&self.dir, e))?;
            let Some(name) = ent.file_name().to_str().map(String::from) else {
                continue;
            };
            if !valid_volume_name(&name) {
                continue; // temp and trash dirs
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                Err(Error::NoSuchVolume(_)) => {} // removed meanwhile
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes the volume `name`. `in_use` holds the names of volumes containers use
    /// ([`in_use`]); such a volume is refused unless `force` (docker's `volume rm -f` still
    /// refuses in-use volumes; `force` is for `rm -v` of the container that used it).
    ///
    /// # Errors
    /// [`Error::NoSuchVolume`]; [`Error::Conflict`] for a volume in use; I/O errors.
    pub fn remove(&self, name: &str, in_use: &BTreeSet<String>, force: bool) -> Result<u64> {
        let dir = self.vol_dir(name)?;
        self.get(name)?;
        if !force && in_use.contains(name) {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use by a container"
            )));
        }
        let size = dir_size(&dir.join("_data"));
        let trash = self.dir.join(format!(".rm-{}", rand_suffix()?));
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(no_such(name)),
            Err(e) => return Err(Error::io(&dir, e)),
        }
        fs::remove_dir_all(&trash).map_err(|e| Error::io(&trash, e))?;
        Ok(size)
    }

    /// Removes the anonymous volumes among `mounts` (`rm -v`), ignoring those already gone
    /// and those another container still uses (`in_use` must not count the removed
    /// container).
    ///
    /// # Errors
    /// I/O errors.
    pub fn remove_anonymous(&self, mounts: &[MountSpec], in_use: &BTreeSet<String>) -> Result<()> {
        for m in mounts {
            if let MountSpec::Volume {
                name,
                anonymous: true,
                ..
            } = m
            {
                match self.remove(name, in_use, false) {
                    Ok(_) | Err(Error::NoSuchVolume(_) | Error::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Removes unused volumes: anonymous ones only, or every unused one with `all` (docker's
    /// `volume prune [-a]`). `filter_labels` keeps only volumes carrying each `key[=value]`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn prune(
        &self,
        all: bool,
        in_use: &BTreeSet<String>,
        filter_labels: &[String],
    ) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        self.remove_leftovers()?;
        for v in self.list()? {
            if in_use.contains(&v.name) || !(all || v.anonymous) {
                continue;
            }
            if !filter_labels.iter().all(|f| match f.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                None => v.labels.contains_key(f),
            }) {
                continue;
            }
            match self.remove(&v.name, in_use, false) {
                Ok(size) => {
                    report.reclaimed += size;
                    report.deleted.push(v.name);
                }
                Err(Error::NoSuchVolume(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Removes what crashed processes left: `.rm-*` (volumes renamed away for removal) and
    /// `.tmp-*` dirs (volumes being created) untouched for an hour.
    fn remove_leftovers(&self) -> Result<()> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let name = name.to_string_lossy();
            let stale = name.starts_with(".rm-")
                || (name.starts_with(".tmp-")
                    && ent
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age.as_secs() > 3600));
            if stale {
                let p = ent.path();
                match fs::remove_dir_all(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&p, e)),
                }
            }
        }
        Ok(())
    }

    /// The apparent size of a volume's content (each inode once).
    pub fn size(&self, v: &Volume) -> u64 {
        dir_size(&v.mountpoint)
    }
}

/// Apparent size of the files under `dir`, each inode once, never following symlinks;
/// unreadable parts count as 0.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut BTreeSet<(u64, u64)>, total: &mut u64) {
        let Ok(rd) = fs::read_dir(p) else { return };
        for ent in rd.flatten() {
            let Ok(m) = ent.metadata() else { continue };
            if m.is_dir() {
                walk(&ent.path(), seen, total);
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                *total += m.len();
            }
        }
    }
    let mut total = 0;
    walk(dir, &mut BTreeSet::new(), &mut total);
    total
}

/// The names of the volumes that containers' records use.
///
/// # Errors
/// Reading the container records.
pub fn in_use(containers: &ContainerStore) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for c in containers.list()? {
        for m in &c.config.mounts {
            if let MountSpec::Volume { name, .. } = m {
                out.insert(name.clone());
            }
        }
    }
    Ok(out)
}

/// Resolves a new container's mounts: `requests` (from `-v`/`--mount`/`--tmpfs`, in order)
/// plus an anonymous volume for each of the image's `VOLUME`s (`image_volumes`) that no
/// request covers. Named volumes are created when missing; a volume that is empty when the
/// container is created gets the image's content at its target (unless `nocopy`), read
/// through `image` (the image's layers). Returns the mounts for the container record,
/// sorted so a parent mounts before what is inside it.
///
/// # Errors
/// A bind source that does not exist, two mounts on one target ([`Error::Invalid`]); copy-up
/// and I/O errors (volumes created here are removed again).
pub fn prepare(
    volumes: &Volumes,
    image: &LayerView,
    image_volumes: &[String],
    requests: &[MountRequest],
) -> Result<Vec<MountSpec>> {
    prepare_with(volumes, image, image_volumes, requests, &[])
}

/// [`prepare`] plus mounts inherited from other containers (`--volumes-from`, see
/// [`volumes_from`]): explicit requests win over an inherited mount of the same target, and
/// inherited mounts cover image `VOLUME`s.
///
/// # Errors
/// As [`prepare`].
pub fn prepare_with(
    volumes: &Volumes,
    image: &LayerView,
    image_volumes: &[String],
    requests: &[MountRequest],
    inherited: &[MountSpec],
) -> Result<Vec<MountSpec>> {
    let mut created: Vec<String> = Vec::new();
    let result = prepare_inner(
        volumes,
        image,
        image_volumes,
        requests,
        inherited,
        &mut created,
    );
    if result.is_err() {
        for name in created {
            let _ = volumes.remove(&name, &BTreeSet::new(), true);
        }
    }
    result
}

/// The mounts `--volumes-from C[:ro|:rw]` inherits: every mount of container `spec`'s
/// container (binds and volumes; not tmpfs), read-only with `:ro`, as they were otherwise.
/// Inherited volumes are never anonymous for the new container (its `rm -v` keeps them).
///
/// # Errors
/// An unknown container; a bad mode.
pub fn volumes_from(containers: &ContainerStore, spec: &str) -> Result<Vec<MountSpec>> {
    let (name, mode) = match spec.rsplit_once(':') {
        Some((n, m @ ("ro" | "rw"))) => (n, Some(m == "ro")),
        Some((_, m)) => {
            return Err(Error::Invalid(format!(
                "invalid --volumes-from {spec:?}: unknown mode {m:?} (want ro or rw)"
            )));
        }
        None => (spec, None),
    };
    let c = containers.get(name)?;
    let mut out = Vec::new();
    for m in c.config.mounts {
        match m {
            MountSpec::Bind {
                source,
                destination,
                readonly,
            } => out.push(MountSpec::Bind {
                source,
                destination,
                readonly: mode.unwrap_or(readonly),
            }),
            MountSpec::Volume {
                name,
                destination,
                readonly,
                ..
            } => out.push(MountSpec::Volume {
                name,
                destination,
                readonly: mode.unwrap_or(readonly),
                anonymous: false,
            }),
            MountSpec::Tmpfs { .. } => {}
        }
    }
    Ok(out)
}

fn clean_abs(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn prepare_inner(
    volumes: &Volumes,
    image: &LayerView,
    image_volumes: &[String],
    requests: &[MountRequest],
    inherited: &[MountSpec],
    created: &mut Vec<String>,
) -> Result<Vec<MountSpec>> {
    let mut targets = BTreeSet::new();
    let mut out = Vec::new();
    for r in requests {
        if !targets.insert(r.target().to_string()) {
            return Err(Error::Invalid(format!(
                "duplicate mount point: {}",
                r.target()
            )));
        }
    }
    for m in inherited {
        if targets.insert(mount_destination(m).to_string()) {
            out.push(m.clone());
        }
    }
    let mut wanted: Vec<(Option<String>, String, bool, bool)> = Vec::new();
    for r in requests {
        match r {
            MountRequest::Bind {
                source,
                target,
                readonly,
                create_missing,
                ..
            } => {
                if *create_missing && fs::symlink_metadata(source).is_err() {
                    // docker's `-v /host/path:/x` makes a missing host directory.
                    fs::create_dir_all(source).map_err(|e| Error::io(source, e))?;
                }
                if fs::symlink_metadata(source).is_err() {
                    return Err(Error::Invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                    )));
                }
                out.push(MountSpec::Bind {
                    source: PathBuf::from(source),
                    destination: target.clone(),
                    readonly: *readonly,
                });
            }
            MountRequest::Volume {
                name,
                target,
                readonly,
                nocopy,
            } => wanted.push((name.clone(), target.clone(), *readonly, *nocopy)),
            MountRequest::Tmpfs { target, size, .. } => out.push(MountSpec::Tmpfs {
                destination: target.clone(),
                size: *size,
            }),
        }
    }
    for iv in image_volumes {
        let t = clean_abs(iv);
        if t != "/" && targets.insert(t.clone()) {
            wanted.push((None, t, false, false));
        }
    }
    for (name, target, readonly, nocopy) in wanted {
        let anonymous = name.is_none();
        let existed = match &name {
            Some(n) => volumes.get(n).is_ok(),
            None => false,
        };
        let v = volumes.create(name.as_deref(), BTreeMap::new(), anonymous)?;
        if !existed {
            created.push(v.name.clone());
        }
        if !nocopy && is_empty_dir(&v.mountpoint)? {
            copy_up(image, &target, &v.mountpoint)?;
        }
        out.push(MountSpec::Volume {
            name: v.name,
            destination: target,
            readonly,
            anonymous,
        });
    }
    out.sort_by_key(|m| depth(mount_destination(m)));
    Ok(out)
}

fn depth(p: &str) -> usize {
    p.split('/').filter(|c| !c.is_empty()).count()
}

/// The container path of a resolved mount.
pub fn mount_destination(m: &MountSpec) -> &str {
    match m {
        MountSpec::Bind { destination, .. }
        | MountSpec::Volume { destination, .. }
        | MountSpec::Tmpfs { destination, .. } => destination,
    }
}

fn is_empty_dir(p: &Path) -> Result<bool> {
    let mut rd = fs::read_dir(p).map_err(|e| Error::io(p, e))?;
    Ok(rd.next().is_none())
}

/// Adds a container's resolved mounts to its sandbox spec: binds (volumes as binds of their
/// `_data`) and tmpfs, in order.
///
/// # Errors
/// A volume that no longer exists ([`Error::NoSuchVolume`]).
pub fn add_to_spec(spec: &mut Spec, volumes: &Volumes, mounts: &[MountSpec]) -> Result<()> {
    use strata_executor::sandbox::{add_bind, add_tmpfs};
    for m in mounts {
        match m {
            MountSpec::Bind {
                source,
                destination,
                readonly,
            } => add_bind(spec, source, destination, *readonly),
            MountSpec::Volume {
                name,
                destination,
                readonly,
                ..
            } => {
                let v = volumes.get(name)?;
                add_bind(spec, &v.mountpoint, destination, *readonly);
            }
            MountSpec::Tmpfs { destination, size } => add_tmpfs(spec, destination, *size),
        }
    }
    Ok(())
}

/// Copies the image's content at `target` (resolved inside the image, symlinks included)
/// into the empty directory `dest`: a directory's contents plus its own mode and owner.
/// Nothing happens when the image has no directory there.
///
/// # Errors
/// Reading the image; writing `dest`.
pub fn copy_up(image: &LayerView, target: &str, dest: &Path) -> Result<()> {
    let rel = resolve(image, target, true)?;
    let Some(st) = image.lstat(&rel)? else {
        return Ok(());
    };
    if st.kind != FileKind::Dir {
        return Ok(());
    }
    for name in image.read_dir(&rel)? {
        copy_entry(image, &join_rel(&rel, &name), &dest.join(&name))?;
    }
    set_meta(dest, &st)
}

fn copy_entry(tree: &dyn SourceTree, rel: &str, to: &Path) -> Result<()> {
    let Some(st) = tree.lstat(rel)? else {
        return Ok(());
    };
    let ioe = |e| Error::io(to, e);
    match st.kind {
        FileKind::Dir => {
            fs::create_dir(to).map_err(ioe)?;
            for name in tree.read_dir(rel)? {
                copy_entry(tree, &join_rel(rel, &name), &to.join(&name))?;
            }
        }
        FileKind::File => {
            let mut from: File = tree.open(rel)?;
            // Why O_EXCL|O_NOFOLLOW: `to` is a fresh name in a directory only we write.
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(0o600)
                .open(to)
                .map_err(ioe)?;
            io::copy(&mut from, &mut out).map_err(ioe)?;
        }
        FileKind::Symlink => {
            symlink(tree.read_link(rel)?, to).map_err(ioe)?;
        }
        FileKind::Fifo | FileKind::Char | FileKind::Block => {
            let kind = match st.kind {
                FileKind::Fifo => SFlag::S_IFIFO,
                FileKind::Char => SFlag::S_IFCHR,
                _ => SFlag::S_IFBLK,
            };
            mknod(to, kind, Mode::from_bits_truncate(0o600), st.rdev)
                .map_err(|e| ioe(io::Error::from(e)))?;
        }
        FileKind::Socket => return Ok(()),
    }
    for (k, v) in tree.xattrs(rel)? {
        // Best effort, like cp -a: a filesystem without xattr support keeps the data.
        let _ = xattr_set(to, &k, &v);
    }
    set_meta(to, &st)
}

fn xattr_set(p: &Path, k: &str, v: &[u8]) -> io::Result<()> {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())?;
    let key = std::ffi::CString::new(k)?;
    // SAFETY: both strings are NUL-terminated and live across the call; v is a valid slice.
    let r = unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Owner, mode (not for symlinks) and mtime of a copied entry.
fn set_meta(p: &Path, st: &Stat) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(st.uid), Some(st.gid)).map_err(|e| Error::io(p, e))?;
    if st.kind != FileKind::Symlink {
        // chmod after chown: chown clears set-id bits.
        fs::set_permissions(p, fs::Permissions::from_mode(st.mode)).map_err(|e| Error::io(p, e))?;
    }
    let t = TimeSpec::new(st.mtime.0, i64::from(st.mtime.1));
    utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io(p, io::Error::from(e)))?;
    Ok(())
}

/// `system df`'s "Local Volumes" row: every volume, those containers use as active, the
/// unused ones' bytes reclaimable.
#[derive(Debug, Clone)]
pub struct VolumeUsage {
    volumes: Volumes,
    root: PathBuf,
}

impl VolumeUsage {
    /// The usage source for the store at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            volumes: Volumes::new(root),
            root: root.to_path_buf(),
        }
    }
}

impl UsageSource for VolumeUsage {
    fn name(&self) -> &str {
        "volumes"
    }

    fn rows(&self, _store: &Store) -> strata_cas::Result<Vec<UsageRow>> {
        let to_cas = |e: Error| strata_cas::Error::Corrupt {
            path: self.volumes.dir().to_path_buf(),
            message: e.to_string(),
        };
        let used = ContainerStore::open(&self.root)
            .and_then(|c| in_use(&c))
            .map_err(to_cas)?;
        let mut row = UsageRow {
            kind: "Local Volumes".into(),
            total: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
        };
        for v in self.volumes.list().map_err(to_cas)? {
            let size = self.volumes.size(&v);
            row.total += 1;
            row.size += size;
            if used.contains(&v.name) {
                row.active += 1;
            } else {
                row.reclaimable += size;
            }
        }
        Ok(vec![row])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn create_is_idempotent_and_validated() {
        let d = tempfile::tempdir().unwrap();
        let vs = Volumes::new(d.path());
        assert!(vs.list().unwrap().is_empty());
        let mut labels = BTreeMap::new();
        labels.insert("k".to_string(), "v".to_string());
        let a = vs.create(Some("data1"), labels, false).unwrap();
        assert_eq!(a.mountpoint, d.path().join("volumes/data1/_data"));
        assert!(a.mountpoint.is_dir());
        let again = vs.create(Some("data1"), BTreeMap::new(), false).unwrap();
        assert_eq!(again, a);
        for bad in ["x", "../up", "a/b", "-lead", ""] {
            assert!(
                vs.create(Some(bad), BTreeMap::new(), false).is_err(),
                "{bad}"
            );
            assert!(matches!(vs.get(bad), Err(Error::NoSuchVolume(_))), "{bad}");
        }
        let anon = vs.create(None, BTreeMap::new(), true).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.labels.contains_key(ANONYMOUS_LABEL));
        let names: Vec<_> = vs.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"data1".to_string()));
        let j = a.inspect_json();
        assert_eq!(j["Driver"], "local");
        assert_eq!(j["Scope"], "local");
        assert_eq!(j["Labels"]["k"], "v");
        // nothing left behind in the volumes dir but the two volumes
        assert_eq!(fs::read_dir(vs.dir()).unwrap().count(), 2);
    }

    #[test]
    fn remove_and_prune() {
        let d = tempfile::tempdir().unwrap();
        let vs = Volumes::new(d.path());
        vs.create(Some("keep"), BTreeMap::new(), false).unwrap();
        vs.create(Some("used"), BTreeMap::new(), false).unwrap();
        let anon = vs.create(None, BTreeMap::new(), true).unwrap();
        let anon_used = vs.create(None, BTreeMap::new(), true).unwrap();
        fs::write(anon.mountpoint.join("f"), vec![0u8; 1000]).unwrap();
        let used = set(&["used", &anon_used.name]);
        let e = vs.remove("used", &used, false).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        assert!(matches!(
            vs.remove("nope", &used, false),
            Err(Error::NoSuchVolume(_))
        ));
        fs::create_dir_all(vs.dir().join(".rm-crashed/_data")).unwrap();
        fs::create_dir_all(vs.dir().join(".tmp-inflight")).unwrap();
        let r = vs.prune(false, &used, &[]).unwrap();
        assert_eq!(r.deleted, vec![anon.name.clone()]);
        assert!(!vs.dir().join(".rm-crashed").exists());
        // a create in progress (fresh) is left alone
        assert!(vs.dir().join(".tmp-inflight").exists());
        assert_eq!(r.reclaimed, 1000);
        let r = vs.prune(true, &used, &["nolabel".to_string()]).unwrap();
        assert!(r.deleted.is_empty());
        let r = vs.prune(true, &used, &[]).unwrap();
        assert_eq!(r.deleted, vec!["keep".to_string()]);
        assert_eq!(vs.remove("used", &used, true).unwrap(), 0);
        let left: Vec<_> = vs.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(left, vec![anon_used.name]);
    }

    #[test]
    fn prepare_creates_and_copies_up() {
        let d = tempfile::tempdir().unwrap();
        let layer = d.path().join("layer");
        fs::create_dir_all(layer.join("srv/data/sub")).unwrap();
        fs::write(layer.join("srv/data/hello"), "from image").unwrap();
        fs::set_permissions(layer.join("srv/data"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::lchown(layer.join("srv/data"), Some(1000), Some(1001)).unwrap();
        symlink("hello", layer.join("srv/data/link")).unwrap();
        // A VOLUME whose path is a symlink out of the image resolves inside it.
        symlink("../../../../srv/data", layer.join("escape")).unwrap();
        let host = d.path().join("hostdir");
        fs::create_dir_all(&host).unwrap();
        let view = LayerView::new(vec![layer]);
        let vs = Volumes::new(&d.path().join("root"));
        let reqs = vec![
            crate::mounts::parse_volume_flag("named1:/srv/data").unwrap(),
            crate::mounts::parse_volume_flag(&format!("{}:/mnt/host:ro", host.display())).unwrap(),
            crate::mounts::parse_volume_flag("/empty:nocopy").unwrap(),
        ];
        let mounts = prepare(&vs, &view, &["/srv/data".into(), "/escape".into()], &reqs).unwrap();
        assert_eq!(mounts.len(), 4, "{mounts:?}");
        let named = vs.get("named1").unwrap();
        let data = &named.mountpoint;
        assert_eq!(
            fs::read_to_string(data.join("hello")).unwrap(),
            "from image"
        );
        assert_eq!(
            fs::read_link(data.join("link")).unwrap(),
            PathBuf::from("hello")
        );
        assert!(data.join("sub").is_dir());
        let m = fs::metadata(data).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o750, 1000, 1001));
        let anon: Vec<_> = mounts
            .iter()
            .filter_map(|m| match m {
                MountSpec::Volume {
                    name,
                    destination,
                    anonymous: true,
                    ..
                } => Some((name.clone(), destination.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(anon.len(), 2, "{anon:?}");
        for (name, dest) in &anon {
            let v = vs.get(name).unwrap();
            let content: Vec<_> = fs::read_dir(&v.mountpoint).unwrap().collect();
            match dest.as_str() {
                // the symlinked VOLUME got /srv/data's content from inside the image
                "/escape" => assert_eq!(content.len(), 3),
                "/empty" => assert!(content.is_empty()),
                other => panic!("unexpected {other}"),
            }
        }
        // A second container reuses the now non-empty named volume without copying again.
        fs::remove_file(data.join("hello")).unwrap();
        prepare(&vs, &view, &[], &reqs[..1]).unwrap();
        assert!(!data.join("hello").exists());
        // Missing bind sources and duplicate targets are refused, creating nothing.
        let before = vs.list().unwrap().len();
        let bad = vec![
            crate::mounts::parse_volume_flag("fresh1:/a").unwrap(),
            crate::mounts::parse_mount_flag("type=bind,src=/does/not/exist,dst=/b").unwrap(),
        ];
        assert!(prepare(&vs, &view, &[], &bad).is_err());
        let dup = vec![
            crate::mounts::parse_volume_flag("fresh1:/a").unwrap(),
            crate::mounts::parse_volume_flag("/a").unwrap(),
        ];
        assert!(prepare(&vs, &view, &[], &dup).is_err());
        assert_eq!(vs.list().unwrap().len(), before);
    }
}
