//! File steps of the build engine (COPY, ADD, WORKDIR), user resolution, and the materialised
//! trees behind `RUN --mount=type=bind`, on top of [`crate::fs`].

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_parser::{Instruction, Location};
use strata_planner::context::{ContextIndex, Kind};
use strata_planner::{CacheKey, FromRef, KeyBuilder};

use super::StageRun;
use crate::cache::LayerRef;
use crate::error::{Error, Result};
use crate::fs::copy::{Chmod, CopyRequest, DirStamps, copy, mkdir_p, sources_digest};
use crate::fs::pattern::Excluder;
use crate::fs::user::{resolve_chown, resolve_user as user_of};
use crate::fs::view::LayerView;
use crate::fs::{FileKind, SourceTree, Stat};

/// The build context as a COPY source: the index's entries (so excluded files do not exist)
/// with their known content hashes; files are read from the context directory through a
/// directory fd with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so a component swapped for a
/// symlink after the scan can never lead outside the context.
pub struct ContextTree<'a> {
    index: &'a ContextIndex,
    root: std::os::fd::OwnedFd,
}

impl<'a> ContextTree<'a> {
    /// Opens the context directory of `index`.
    ///
    /// # Errors
    /// The context directory cannot be opened.
    pub fn new(index: &'a ContextIndex) -> Result<Self> {
        let path = index.root();
        let root = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::io(path, e.into()))?;
        Ok(Self { index, root })
    }
}

fn kind(k: Kind) -> FileKind {
    match k {
        Kind::File => FileKind::File,
        Kind::Dir => FileKind::Dir,
        Kind::Symlink => FileKind::Symlink,
        Kind::Fifo => FileKind::Fifo,
        Kind::CharDevice => FileKind::Char,
        Kind::BlockDevice => FileKind::Block,
        Kind::Socket => FileKind::Socket,
    }
}

impl SourceTree for ContextTree<'_> {
    fn lstat(&self, rel: &str) -> Result<Option<Stat>> {
        Ok(self.index.get(rel).map(|e| Stat {
            kind: kind(e.kind),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            mtime: (
                e.mtime_ns.div_euclid(1_000_000_000),
                u32::try_from(e.mtime_ns.rem_euclid(1_000_000_000)).unwrap_or(0),
            ),
            rdev: 0,
            hash: (e.kind == Kind::File).then_some(e.hash),
            link_id: (e.kind == Kind::File && e.nlink > 1).then_some((e.dev, e.ino)),
        }))
    }

    fn read_dir(&self, rel: &str) -> Result<Vec<String>> {
        Ok(self
            .index
            .children(rel)
            .into_iter()
            .map(|(p, _)| crate::fs::base_name(p).to_string())
            .collect())
    }

    fn read_link(&self, rel: &str) -> Result<PathBuf> {
        let e = self
            .index
            .get(rel)
            .ok_or_else(|| Error::Copy(format!("{rel}: not found in the build context")))?;
        let link = e
            .link
            .clone()
            .ok_or_else(|| Error::Copy(format!("{rel}: not a symbolic link")))?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(link)))
    }

    fn open(&self, rel: &str) -> Result<File> {
        use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        // Why: the index saw plain directories and a regular file here; openat2 refuses any
        // symlink on the way (and `..`), so nothing outside the context can be read.
        // https://man7.org/linux/man-pages/man2/openat2.2.html
        let fd = openat2(&self.root, rel, how)
            .map_err(|e| Error::io(self.index.root().join(rel), e.into()))?;
        Ok(File::from(fd))
    }

    fn keeps_owner(&self) -> bool {
        false
    }

    fn selection_digest(&self, rel: &str, exclude: &Excluder) -> Option<[u8; 32]> {
        self.index.digest_filtered(rel, exclude.patterns())
    }

    fn stamp(&self, rel: &str) -> Option<[u8; 32]> {
        self.index.stamp(rel)
    }
}

use std::os::unix::ffi::OsStringExt;

/// The view of the stage's current layers (with a layer still being committed on top).
fn view(st: &StageRun<'_, '_>) -> Result<LayerView> {
    Ok(LayerView::new(st.lower_dirs()?))
}

/// USER resolved in the image: (uid, gid, supplementary gids). No USER is root.
pub(super) fn resolve_user(st: &StageRun<'_, '_>, loc: Location) -> Result<(u32, u32, Vec<u32>)> {
    let user = st.config.config.user.clone().unwrap_or_default();
    if user.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    user_of(&view(st)?, &user).map_err(|e| Error::Step {
        loc,
        message: e.to_string(),
        output: Vec::new(),
    })
}

/// The home directory of `uid` in the image's `/etc/passwd` (`/root` when unknown, as runc).
pub(super) fn home_of(st: &StageRun<'_, '_>, uid: u32) -> String {
    view(st)
        .ok()
        .and_then(|v| v.read_file("etc/passwd").ok().flatten())
        .and_then(|b| {
            crate::fs::user::parse_passwd(&String::from_utf8_lossy(&b))
                .into_iter()
                .find(|p| p.uid == uid)
                .map(|p| p.home)
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".into())
}

/// WORKDIR: creates the directory (owned by USER) in a new layer.
pub(super) fn workdir(
    st: &mut StageRun<'_, '_>,
    path: &str,
    loc: Location,
) -> Result<Option<LayerRef>> {
    let (uid, gid, _) = resolve_user(st, loc)?;
    let shared = st.shared;
    let pending = shared.store.begin_layer(&shared.lease)?;
    mkdir_p(&view(st)?, &pending, shared.store, path, uid, gid)?;
    commit(pending)
}

/// Commits a pending layer (`None` when the step changed nothing).
pub(super) fn commit(pending: strata_cas::PendingLayer<'_>) -> Result<Option<LayerRef>> {
    if pending.is_empty()? {
        return Ok(None);
    }
    let info = pending.commit()?;
    Ok(Some(LayerRef {
        diff_id: info.diff_id,
        size: info.size,
    }))
}

/// Where a COPY reads from.
pub(super) enum CopySource {
    Context,
    Layers(Vec<PathBuf>),
}

/// The base layer a COPY's layer is built over on a miss (see [`place_copy`]).
enum BaseLoad {
    /// Being read ([`strata_cas::Store::load_base`]) on its own thread.
    Reading(std::thread::JoinHandle<strata_cas::Result<Option<strata_cas::LayerBase>>>),
    /// Read on a miss only: the step copies from a context that did not change since the last
    /// build's scan, so it most likely hits its cache, and reading the base meanwhile would only
    /// take CPU from the scan.
    OnMiss(strata_cas::Digest),
}

/// A COPY/ADD ready to run.
pub(super) struct CopyOp {
    pub key: CacheKey,
    /// The key without the sources' content (see [`crate::cache::BuildCache::lineage`]).
    pub lineage: CacheKey,
    /// The base for the layer, being read (see [`place_copy`]).
    base: Mutex<Option<BaseLoad>>,
    /// The lineage hint the base comes from, with the stamps of the walk that made it.
    anchor: Option<crate::cache::Lineage>,
    /// The stamps of the last walk of this COPY ([`crate::fs::CopyStats::stamps`]).
    walked: Mutex<Vec<(String, [u8; 32])>>,
    pub inputs: Vec<(String, String)>,
    pub history: String,
    loc: Location,
    source: CopySource,
    sources: Vec<String>,
    contents: Vec<(String, String)>,
    dest: String,
    workdir: String,
    chown: Option<(u32, u32)>,
    chmod: Option<Chmod>,
    link: bool,
    parents: bool,
    exclude: Vec<String>,
    is_add: bool,
    checksum: Option<String>,
    unpack: bool,
}

fn located(loc: Location) -> impl Fn(Error) -> Error {
    move |e| match e {
        e @ Error::Step { .. } => e,
        e => Error::Step {
            loc,
            message: e.to_string(),
            output: Vec::new(),
        },
    }
}

/// Expands nothing (the instruction is expanded already); resolves the source, the owner and
/// the key.
pub(super) fn prepare_copy(st: &mut StageRun<'_, '_>, ins: &Instruction) -> Result<CopyOp> {
    let shared = st.shared;
    let (
        is_add,
        loc,
        sources,
        contents,
        dest,
        from,
        chown,
        chmod,
        link,
        parents,
        exclude,
        checksum,
        unpack,
    ) = match ins {
        Instruction::Copy(c) => (
            false,
            c.loc,
            c.sources.clone(),
            c.contents.clone(),
            c.dest.clone(),
            c.from.clone(),
            c.chown.clone(),
            c.chmod.clone(),
            c.link,
            c.parents,
            c.excludes.clone(),
            None,
            true,
        ),
        Instruction::Add(a) => (
            true,
            a.loc,
            a.sources.clone(),
            a.contents.clone(),
            a.dest.clone(),
            None,
            a.chown.clone(),
            a.chmod.clone(),
            a.link,
            false,
            a.excludes.clone(),
            a.checksum.clone(),
            a.unpack.unwrap_or(true),
        ),
        _ => return Err(Error::Copy("not a COPY or ADD".into())),
    };
    let err = located(loc);
    let workdir = st
        .config
        .config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    let chown_ids = match &chown {
        Some(spec) => Some(resolve_chown(&view(st)?, spec).map_err(&err)?),
        None => None,
    };
    let chmod_parsed = match &chmod {
        Some(spec) => Some(Chmod::parse(spec).map_err(&err)?),
        None => None,
    };
    let tag = if is_add {
        "strata.add.v1"
    } else {
        "strata.copy.v1"
    };
    let mut k = KeyBuilder::new(tag);
    k.digest("parent", &st.key.0);
    k.list("sources", &sources);
    k.field("dest", &dest);
    k.field("workdir", &workdir);
    k.field("chown", &format!("{chown_ids:?}"));
    k.field("chmod", chmod.as_deref().unwrap_or(""));
    k.field("link", &link.to_string());
    k.field("parents", &parents.to_string());
    k.list("exclude", &exclude);
    k.field("checksum", checksum.as_deref().unwrap_or(""));
    k.field("unpack", &unpack.to_string());
    let contents: Vec<(String, String)> = contents
        .iter()
        .map(|c| (c.path.clone(), c.data.clone()))
        .collect();
    for (name, data) in &contents {
        k.field("content", &format!("{name}\n{data}"));
    }
    // The step without its sources' content: the same COPY of an edited context. On a miss its
    // layer is built over the layer that step made last (see `place_copy`), read meanwhile
    // (see `BaseLoad`).
    let mut lineage = k.clone();
    lineage.field("lineage", "strata.copy-lineage.v1");
    let lineage = lineage.finish().0;
    let one_source = !is_add && !parents && sources.len() == 1 && contents.is_empty();
    // A hint without its stamps (an earlier version's) is not built over: the layer is made
    // whole once, and its hint then has the stamps that spare the next builds the walk of
    // unchanged directories.
    let anchor = match shared.cache.lineage(shared.store, &lineage)? {
        Some(a) if one_source && a.stamped => Some(a),
        _ => None,
    };
    // The sources read from the context (a COPY/ADD without --from; URLs are downloaded).
    let local: Vec<String> = if from.is_some() {
        Vec::new()
    } else {
        sources
            .iter()
            .filter(|s| !crate::fs::add::is_url(s))
            .cloned()
            .collect()
    };
    let base = anchor.as_ref().map(|a| {
        if !local.is_empty() && !shared.context.changed() {
            return BaseLoad::OnMiss(a.layer);
        }
        let (store, lease, d) = (shared.store.clone(), shared.lease.handle(), a.layer);
        BaseLoad::Reading(std::thread::spawn(move || store.load_base(&lease, &d)))
    });
    let source = match &from {
        Some(f) => match shared.plan.resolve_from(f, st.ps.index, loc)? {
            FromRef::Stage(i) => {
                let r = shared.wait_stage(i)?;
                k.digest("from", &r.key.0);
                CopySource::Layers(shared.layer_dirs(&r.layers)?)
            }
            FromRef::Image(name) => {
                let (_, r) = super::image_base(shared, &name, loc)?;
                k.digest("from", &r.key.0);
                CopySource::Layers(shared.layer_dirs(&r.layers)?)
            }
        },
        None => {
            if !local.is_empty() {
                let index = shared.context()?.ok_or_else(|| {
                    err(Error::Copy(
                        "COPY/ADD from the context needs a build context".into(),
                    ))
                })?;
                let digest =
                    sources_digest(&ContextTree::new(index)?, &local, &exclude).map_err(&err)?;
                k.digest("context", &digest);
            }
            CopySource::Context
        }
    };
    let (key, inputs) = k.finish();
    // BuildKit records sources and dest (expanded), without the flags.
    let mut shown = String::from(if is_add { "ADD" } else { "COPY" });
    for s in sources.iter().chain(contents.iter().map(|(n, _)| n)) {
        shown.push(' ');
        shown.push_str(s);
    }
    shown.push(' ');
    shown.push_str(&dest);
    Ok(CopyOp {
        key,
        lineage,
        base: Mutex::new(base),
        anchor,
        walked: Mutex::new(Vec::new()),
        inputs,
        history: format!("{shown} # buildkit"),
        loc,
        source,
        sources,
        contents,
        dest,
        workdir,
        chown: chown_ids,
        chmod: chmod_parsed,
        link,
        parents,
        exclude,
        is_add,
        checksum,
        unpack,
    })
}

/// Runs a prepared COPY/ADD into a new layer.
pub(super) fn execute_copy(st: &mut StageRun<'_, '_>, op: &CopyOp) -> Result<Option<LayerRef>> {
    let pending = place_copy(st, op)?;
    let layer = commit(pending)?;
    if let Some(l) = &layer {
        note_lineage(st, op, l);
    }
    Ok(layer)
}

/// Places a prepared COPY/ADD's files into a new pending layer (not committed yet).
///
/// When the same step made a layer in an earlier build (its lineage), the new layer is built
/// as a delta over that one: what it has as it is now is neither linked nor created again (see
/// strata_cas::commit). If the delta turns out not to be the layer (a source file removed since,
/// say), the layer is built again, whole.
pub(super) fn place_copy<'s>(
    st: &StageRun<'s, '_>,
    op: &CopyOp,
) -> Result<strata_cas::PendingLayer<'s>> {
    let shared = st.shared;
    let load = op
        .base
        .lock()
        .map_err(|_| Error::Copy("base lock poisoned".into()))?
        .take();
    let base = match load {
        Some(BaseLoad::Reading(h)) => h
            .join()
            .map_err(|_| Error::Copy("the base reader panicked".into()))??,
        Some(BaseLoad::OnMiss(d)) => shared.store.load_base(&shared.lease.handle(), &d)?,
        None => None,
    };
    if let Some(base) = base {
        let mut pending = shared.store.begin_layer(&shared.lease)?;
        pending.set_base(base);
        copy_into(st, op, &pending)?;
        if pending.settle_base()? {
            return Ok(pending);
        }
    }
    let pending = shared.store.begin_layer(&shared.lease)?;
    copy_into(st, op, &pending)?;
    Ok(pending)
}

/// The COPY/ADD of `op` into `pending`.
fn copy_into(
    st: &StageRun<'_, '_>,
    op: &CopyOp,
    pending: &strata_cas::PendingLayer<'_>,
) -> Result<()> {
    let shared = st.shared;
    let err = located(op.loc);
    let dest_view = view(st)?;
    // Heredoc sources are files of a small tree of their own.
    let heredocs = if op.contents.is_empty() {
        None
    } else {
        let dir = pending.tmp_dir().join("heredocs");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for (name, data) in &op.contents {
            let p = dir.join(name);
            fs::write(&p, data).map_err(|e| Error::io(&p, e))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io(&p, e))?;
        }
        Some(dir)
    };
    let context_tree;
    let layer_tree;
    let dir_tree;
    let (tree, sources): (&dyn SourceTree, Vec<String>) = match (&op.source, &heredocs) {
        (_, Some(dir)) => {
            dir_tree = crate::fs::dir::DirTree::new(dir);
            (
                &dir_tree,
                op.contents.iter().map(|(n, _)| n.clone()).collect(),
            )
        }
        (CopySource::Context, None) => {
            let index = shared
                .context()?
                .ok_or_else(|| err(Error::Copy("no build context".into())))?;
            context_tree = ContextTree::new(index)?;
            (&context_tree, op.sources.clone())
        }
        (CopySource::Layers(layers), None) => {
            layer_tree = LayerView::new(layers.clone());
            (&layer_tree, op.sources.clone())
        }
    };
    let mut req = CopyRequest::new(tree, sources, &op.dest);
    req.workdir = op.workdir.clone();
    req.chown = op.chown;
    req.chmod = op.chmod.clone();
    req.link = op.link;
    req.parents = op.parents;
    req.exclude = op.exclude.clone();
    req.is_add = op.is_add;
    req.checksum = op.checksum.clone();
    req.unpack = op.unpack;
    req.base_stamps = op.anchor.as_ref().map(|a| &a.stamps);
    let stats = copy(&req, &dest_view, pending, shared.store).map_err(&err)?;
    if let Ok(mut walked) = op.walked.lock() {
        *walked = stats.stamps;
    }
    if let Some(dir) = heredocs {
        fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// Remembers the layer a COPY/ADD produced for the next build of the same step (see
/// [`crate::cache::BuildCache::lineage`]): the layer itself, or the base it is stored over.
/// Best effort: a hint that cannot be written only costs the next build its delta.
/// The stamps go with the layer the walk made (a delta's base keeps its own).
pub(super) fn note_lineage(st: &StageRun<'_, '_>, op: &CopyOp, layer: &LayerRef) {
    let anchor = op.anchor.as_ref();
    let _ = match st.shared.store.layer_base(&layer.diff_id) {
        // A delta over the hint's own layer: the hint says it all already.
        Ok(Some(base)) if anchor.is_some_and(|a| a.layer == base) => Ok(()),
        Ok(Some(base)) => st
            .shared
            .cache
            .set_lineage(&op.lineage, &base, &DirStamps::default()),
        Ok(None) => {
            // A layer of its own, or the base itself again (a copy that changed nothing the
            // layer holds): the stamps of this walk, over the base's for what it left to it.
            let mut stamps = match anchor {
                Some(a) if a.layer == layer.diff_id => a.stamps.clone(),
                _ => DirStamps::default(),
            };
            if let Ok(walked) = op.walked.lock() {
                stamps.extend(walked.iter().cloned());
            }
            st.shared
                .cache
                .set_lineage(&op.lineage, &layer.diff_id, &stamps)
        }
        Err(_) => return,
    };
}

/// Materialises the context subtree `src` (only what `.dockerignore` keeps) at `farm`, for a
/// bind mount: directories are created, files hardlinked (copied across file systems),
/// symlinks recreated.
pub(super) fn farm_context(index: &ContextIndex, src: &str, farm: &Path) -> Result<()> {
    let rel = super::clean_path(src).trim_start_matches('/').to_string();
    let resolved = index
        .resolve(&rel, true)?
        .ok_or_else(|| Error::Copy(format!("{src}: not found in the build context")))?;
    farm_entry(index, &resolved, farm)
}

fn farm_entry(index: &ContextIndex, rel: &str, to: &Path) -> Result<()> {
    let Some(e) = index.get(rel) else {
        return Ok(());
    };
    match e.kind {
        Kind::Dir => {
            fs::create_dir_all(to).map_err(|x| Error::io(to, x))?;
            for (child, _) in index.children(rel) {
                farm_entry(index, child, &to.join(crate::fs::base_name(child)))?;
            }
            fs::set_permissions(to, fs::Permissions::from_mode(e.mode))
                .map_err(|x| Error::io(to, x))?;
        }
        Kind::File => {
            let from = index.root().join(rel);
            match fs::hard_link(&from, to) {
                Ok(()) => {}
                Err(x) if x.raw_os_error() == Some(libc::EXDEV) => {
                    fs::copy(&from, to).map_err(|x| Error::io(to, x))?;
                }
                Err(x) => return Err(Error::io(to, x)),
            }
        }
        Kind::Symlink => {
            if let Some(l) = &e.link {
                symlink(std::ffi::OsString::from_vec(l.clone()), to)
                    .map_err(|x| Error::io(to, x))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Materialises `src` of a stage's or image's layers at `farm` (a copy: the layers' files are
/// store objects, which a bind mount must never expose for writing).
pub(super) fn farm_layers(layers: &[PathBuf], src: &str, farm: &Path) -> Result<()> {
    let view = LayerView::new(layers.to_vec());
    let rel = super::clean_path(src).trim_start_matches('/').to_string();
    let resolved = crate::fs::resolve(&view, &rel, true)?;
    farm_tree(&view, &resolved, farm)
}

pub(crate) fn farm_tree(tree: &dyn SourceTree, rel: &str, to: &Path) -> Result<()> {
    let Some(st) = tree.lstat(rel)? else {
        return Err(Error::Copy(format!("/{rel}: not found")));
    };
    match st.kind {
        FileKind::Dir => {
            fs::create_dir_all(to).map_err(|x| Error::io(to, x))?;
            for name in tree.read_dir(rel)? {
                farm_tree(tree, &crate::fs::join_rel(rel, &name), &to.join(&name))?;
            }
            std::os::unix::fs::lchown(to, Some(st.uid), Some(st.gid))
                .map_err(|x| Error::io(to, x))?;
            fs::set_permissions(to, fs::Permissions::from_mode(st.mode))
                .map_err(|x| Error::io(to, x))?;
        }
        FileKind::File => {
            let mut from = tree.open(rel)?;
            let mut out = File::create(to).map_err(|x| Error::io(to, x))?;
            io::copy(&mut from, &mut out).map_err(|x| Error::io(to, x))?;
            std::os::unix::fs::lchown(to, Some(st.uid), Some(st.gid))
                .map_err(|x| Error::io(to, x))?;
            fs::set_permissions(to, fs::Permissions::from_mode(st.mode))
                .map_err(|x| Error::io(to, x))?;
        }
        FileKind::Symlink => {
            symlink(tree.read_link(rel)?, to).map_err(|x| Error::io(to, x))?;
        }
        _ => {}
    }
    Ok(())
}
