//! The build engine: runs a [`Plan`] into an image.
//!
//! Data flow: the build context is scanned on a thread of its own while the planner's stages
//! (needed ones only) run on threads, each as soon as the stages it depends on are done, at
//! most `jobs` at a time. A step that reads the context waits for the scan there
//! ([`Shared::context`]): what comes before it (the base image, the layer a COPY is built over,
//! steps and stages that never read the context) overlaps the scan. A stage starts from its
//! base (an image of the store, an earlier stage, or scratch), runs the ONBUILD triggers of that
//! base, then its instructions in order:
//!
//! - metadata instructions change the config and add a history entry ([`meta`]);
//! - RUN, COPY, ADD and WORKDIR are *layer steps*: each has a cache key ([`KeyBuilder`]) made
//!   of the previous layer step's key and everything that determines its result; a key found in
//!   the [`BuildCache`] (with its layer still in the store) is reused, otherwise the step runs
//!   ([`run`] in the sandbox, [`fsops`] for files) into a [`strata_cas::PendingLayer`], which
//!   becomes the layer (or nothing, for an empty diff).
//!
//! History timestamps come from the cache records, so a fully cached rebuild reproduces the
//! same config bytes and the same image ID. The target stage's config and layers are stored
//! as an image ([`Images::commit`]) and tagged.

mod fsops;
pub mod meta;
mod run;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use strata_cas::lease::Lease;
use strata_cas::{Digest, Reference, Store};
use strata_oci::Images;
use strata_oci::service::ImageSummary;
use strata_parser::shell::Lexer;
use strata_parser::{Dockerfile, Instruction, Location};
use strata_planner::context::ContextIndex;
use strata_planner::dockerignore::DockerIgnore;
use strata_planner::plan::arg_value;
use strata_planner::{Base, BuildOptions, CacheKey, KeyBuilder, Plan, PlannedStage};

use crate::cache::{BuildCache, LayerRef, Record};
use crate::error::{Error, Result};
use crate::events::{Event, EventSink};
use crate::image_config::{HISTORY_COMMENT, HistoryEntry, ImageConfig};

pub(crate) use fsops::farm_tree;
pub use run::NetworkMode;

/// Everything a build needs besides the store.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The parsed Dockerfile.
    pub dockerfile: Dockerfile,
    /// The Dockerfile's name for messages (`Dockerfile`, `-`, `ci/Dockerfile.prod`).
    pub dockerfile_name: String,
    /// The context directory (`None`: no context; COPY from it fails).
    pub context: Option<PathBuf>,
    /// Keep the context's stat index in the store for the next build (false for a context
    /// that only lives for this build, such as a tar read from stdin).
    pub keep_context_index: bool,
    /// The `.dockerignore` in effect.
    pub ignore: DockerIgnore,
    /// Build args, target, platform.
    pub options: BuildOptions,
    /// Names to tag the result with.
    pub tags: Vec<Reference>,
    /// `--label`s, added to the final config.
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (names or indexes) built without the cache.
    pub no_cache_filter: Vec<String>,
    /// `--network` for RUN steps without their own `--network`.
    pub network: NetworkMode,
    /// `--allow security.insecure`.
    pub allow_insecure: bool,
    /// `--allow network.host`.
    pub allow_network_host: bool,
    /// `--secret` values by id.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--ssh` agent sockets by id ([`crate::ssh::SshAgents::sockets`]).
    pub ssh: BTreeMap<String, PathBuf>,
    /// The strata binary (the sandbox's init is `strata __sandbox-init`).
    pub helper_exe: PathBuf,
    /// How many stages may run at once.
    pub jobs: usize,
    /// Fetches FROM / `--from` images the store lacks (and, with `pull_always`, every named
    /// one); `None`: a missing image fails the build.
    pub puller: Option<Arc<dyn ImagePuller>>,
    /// `--pull`: ask the registry for a newer image even when the store has one.
    pub pull_always: bool,
}

/// Where a build gets the base images the store lacks: the CLI hands in `strata pull`'s
/// machinery, so the executor itself never talks to registries.
pub trait ImagePuller: Send + Sync + std::fmt::Debug {
    /// Pulls `name` (an image reference) into the store.
    ///
    /// # Errors
    ///
    /// A message saying why the image could not be pulled.
    fn pull(&self, name: &str) -> std::result::Result<(), String>;
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The stored image.
    pub image: ImageSummary,
    /// Its config.
    pub config: ImageConfig,
    /// Its layers, base first.
    pub layers: Vec<LayerRef>,
}

/// A finished stage.
#[derive(Debug, Clone)]
struct StageResult {
    config: ImageConfig,
    layers: Vec<LayerRef>,
    key: CacheKey,
}

/// The build context's index, filled by its scan while the stages run.
struct ContextSlot {
    /// Whether the build has a context at all.
    given: bool,
    /// Set once the scan ends: `None` if it failed (its error is the build's).
    index: OnceLock<Option<ContextIndex>>,
    /// The scan hashed a file (see [`ContextSlot::changed`]).
    hashed: AtomicBool,
    /// Wakes [`ContextSlot::changed`] when `hashed` or `index` is set.
    news: Mutex<()>,
    heard: Condvar,
}

impl ContextSlot {
    fn new(given: bool) -> Self {
        Self {
            given,
            index: OnceLock::new(),
            hashed: AtomicBool::new(false),
            news: Mutex::new(()),
            heard: Condvar::new(),
        }
    }

    /// Ends the scan, with its index or without one (it failed); steps waiting for it go on.
    fn finish(&self, index: Option<ContextIndex>) {
        // The first call wins: the guard's `finish(None)` after a scan that ended well is a no-op.
        let _ = self.index.set(index);
        self.tell();
    }

    /// Called by the scan before it hashes each file: only the first one takes the lock.
    fn hashing(&self) {
        if !self.hashed.swap(true, Ordering::SeqCst) {
            self.tell();
        }
    }

    fn tell(&self) {
        // Taken so that a waiter is either before its check or inside its wait.
        drop(self.news.lock().unwrap_or_else(PoisonError::into_inner));
        self.heard.notify_all();
    }

    /// Whether the context changed since the last build's scan of it: waits until the scan
    /// hashes a file (new, edited or touched since) or ends without hashing any. A COPY from
    /// an unchanged context most likely hits its cache; one from a changed context may miss,
    /// and this tells so at the first changed file, before the scan ends.
    fn changed(&self) -> bool {
        if !self.given {
            return false;
        }
        let news = self.news.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            self.heard
                .wait_while(news, |()| {
                    !self.hashed.load(Ordering::SeqCst) && self.index.get().is_none()
                })
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.hashed.load(Ordering::SeqCst)
    }
}

/// State shared by the stage threads.
struct Shared<'a> {
    images: &'a Images,
    store: &'a Store,
    cache: BuildCache,
    req: &'a BuildRequest,
    plan: Plan,
    events: EventSink,
    lease: Lease,
    context: ContextSlot,
    next_id: AtomicUsize,
    results: Mutex<HashMap<usize, Result<StageResult, String>>>,
    done: Condvar,
    running: Mutex<usize>,
    slot: Condvar,
    failed: AtomicBool,
    stub_lower: PathBuf,
    started: Instant,
}

impl Shared<'_> {
    fn emit(&self, e: Event) {
        (self.events)(&e);
    }

    /// The build context's index, once its scan is done (`None` for a build without context).
    fn context(&self) -> Result<Option<&ContextIndex>> {
        if !self.context.given {
            return Ok(None);
        }
        match self.context.index.wait() {
            Some(index) => Ok(Some(index)),
            None => Err(Error::Denied(
                "cancelled: the build context could not be read".into(),
            )),
        }
    }

    fn new_id(&self) -> usize {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Waits for stage `i`'s result.
    fn wait_stage(&self, i: usize) -> Result<StageResult> {
        let mut results = self
            .results
            .lock()
            .map_err(|_| Error::Sandbox("stage results lock poisoned".into()))?;
        loop {
            if let Some(r) = results.get(&i) {
                return r.clone().map_err(|_| {
                    Error::Denied(format!("stage {} failed", self.plan.stages[i].label()))
                });
            }
            results = self
                .done
                .wait(results)
                .map_err(|_| Error::Sandbox("stage results lock poisoned".into()))?;
        }
    }

    fn acquire_slot(&self) {
        let Ok(mut n) = self.running.lock() else {
            return;
        };
        while *n >= self.req.jobs.max(1) {
            n = match self.slot.wait(n) {
                Ok(n) => n,
                Err(_) => return,
            };
        }
        *n += 1;
    }

    fn release_slot(&self) {
        if let Ok(mut n) = self.running.lock() {
            *n = n.saturating_sub(1);
        }
        self.slot.notify_all();
    }

    fn no_cache_for(&self, ps: &PlannedStage) -> bool {
        self.req.no_cache
            || self.req.no_cache_filter.iter().any(|f| {
                ps.stage
                    .name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(f))
                    || *f == ps.index.to_string()
            })
    }

    /// The directories of `layers`, top first (see [`crate::export::layer_dirs`]).
    fn layer_dirs(&self, layers: &[LayerRef]) -> Result<Vec<PathBuf>> {
        crate::export::layer_dirs(self.store, layers)
    }
}

/// Builds the image (see the module docs).
///
/// # Errors
/// Planning errors, a failing step ([`Error::Step`] with its location and output), store and
/// sandbox errors.
pub fn build(images: &Images, req: &BuildRequest, events: EventSink) -> Result<BuildOutcome> {
    let started = Instant::now();
    let store = images.store();
    let plan = strata_planner::plan(&req.dockerfile, &req.options)?;
    for w in &req.dockerfile.warnings {
        events(&Event::Warning {
            message: format!(
                "{}: {} ({}:{})",
                w.rule, w.message, req.dockerfile_name, w.loc
            ),
        });
    }
    if !plan.unused_build_args.is_empty() {
        events(&Event::Warning {
            message: format!(
                "One or more build-args [{}] were not consumed",
                plan.unused_build_args.join(" ")
            ),
        });
    }
    let lease = store.lease()?;
    let stub_lower = crate::sandbox::stub_lower(&store.root().join("sandbox"))?;
    let shared = Shared {
        images,
        store,
        cache: BuildCache::new(store.root()),
        req,
        plan,
        events,
        lease,
        context: ContextSlot::new(req.context.is_some()),
        next_id: AtomicUsize::new(0),
        results: Mutex::new(HashMap::new()),
        done: Condvar::new(),
        running: Mutex::new(0),
        slot: Condvar::new(),
        failed: AtomicBool::new(false),
        stub_lower,
        started,
    };
    let order = shared.plan.order.clone();
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let scanned = std::thread::scope(|s| {
        let scan = req.context.as_ref().map(|dir| {
            // Its events come first, as its scan does.
            let id = shared.new_id();
            shared.emit(Event::Start {
                id,
                name: "[internal] load build context".into(),
            });
            let shared = &shared;
            s.spawn(move || -> Result<()> {
                let _unblock = EndOnDrop(&shared.context);
                let (index, write) = scan_context(shared, id, dir).inspect_err(|e| {
                    shared.failed.store(true, Ordering::SeqCst);
                    shared.emit(Event::Error {
                        id,
                        message: e.to_string(),
                    });
                })?;
                shared.context.finish(Some(index));
                // The stat index is written while the steps run (it is for the next build).
                write.map_or(Ok(()), |w| w.write().map_err(Error::from))
            })
        });
        for &i in &order {
            let shared = &shared;
            let first_error = &first_error;
            s.spawn(move || {
                let r = run_stage(shared, i);
                let stored = match r {
                    Ok(res) => Ok(res),
                    Err(e) => {
                        let msg = e.to_string();
                        shared.failed.store(true, Ordering::SeqCst);
                        if let Ok(mut fe) = first_error.lock()
                            && fe.is_none()
                        {
                            *fe = Some(e);
                        }
                        Err(msg)
                    }
                };
                if let Ok(mut results) = shared.results.lock() {
                    results.insert(i, stored);
                }
                shared.done.notify_all();
            });
        }
        scan.map_or(Ok(()), |h| -> Result<()> {
            h.join()
                .map_err(|_| Error::Sandbox("the context scan panicked".into()))?
        })
    });
    // A failed scan is the build's error, before the steps it cancelled.
    let no_index = shared.context.index.get().is_some_and(Option::is_none);
    match (scanned, first_error.into_inner().ok().flatten()) {
        (Err(e), _) if no_index => return Err(e),
        (_, Some(e)) | (Err(e), None) => return Err(e),
        (Ok(()), None) => {}
    }
    let target = shared.wait_stage(shared.plan.target)?;
    finish(&shared, target)
}

/// Lets the steps waiting for the context index go (as cancelled) when its scan ends without
/// one, by an error or a panic.
struct EndOnDrop<'s>(&'s ContextSlot);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finish(None);
    }
}

/// Scans the context at `dir` for the step `id` (already started).
fn scan_context(
    shared: &Shared<'_>,
    id: usize,
    dir: &Path,
) -> Result<(ContextIndex, Option<strata_planner::context::StateWrite>)> {
    let t = Instant::now();
    let abs = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let state = shared.cache.context_index_path(&abs);
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let state = shared.req.keep_context_index.then_some(state.as_path());
    let (index, stats, write) =
        ContextIndex::scan_deferred(&abs, &shared.req.ignore, state, &|| {
            shared.context.hashing();
        })?;
    shared.emit(Event::Context {
        id,
        entries: stats.entries,
        hashed: stats.hashed,
        hashed_bytes: stats.hashed_bytes,
        hashed_paths: stats.hashed_paths.clone(),
        duration: stats.duration,
    });
    shared.emit(Event::Done {
        id,
        cached: false,
        duration: t.elapsed(),
    });
    Ok((index, write))
}

/// The final image: labels, created, rootfs; stored and tagged.
fn finish(shared: &Shared<'_>, mut target: StageResult) -> Result<BuildOutcome> {
    let config = &mut target.config;
    if !shared.req.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &shared.req.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    config.created = config.history.last().and_then(|h| h.created.clone());
    config.rootfs.diff_ids = target
        .layers
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    let bytes = config
        .to_bytes()
        .map_err(|e| Error::Sandbox(format!("image config: {e}")))?;
    let layers: Vec<(Digest, u64)> = target.layers.iter().map(|l| (l.diff_id, l.size)).collect();
    let image = shared
        .images
        .commit(&shared.lease, &bytes, &layers, &shared.req.tags)?;
    shared.emit(Event::Finished {
        image: image.id.to_string(),
        duration: shared.started.elapsed(),
    });
    Ok(BuildOutcome {
        image,
        config: target.config,
        layers: target.layers,
    })
}

/// The per-stage dispatch state.
struct StageRun<'s, 'a> {
    shared: &'s Shared<'a>,
    ps: &'s PlannedStage,
    config: ImageConfig,
    layers: Vec<LayerRef>,
    key: CacheKey,
    /// The created time of the last step (history timestamps).
    created: String,
    /// ARGs declared in this stage, in order, with their values.
    args: Vec<(String, Option<String>)>,
    /// ARG values in effect for expansion and RUN: a later ARG beats an earlier ENV of the
    /// same name, a later ENV beats an earlier ARG (BuildKit's dispatcher).
    arg_vals: BTreeMap<String, String>,
    /// Whether CMD or ENTRYPOINT was set in this stage (`ArgsEscaped`).
    cmd_or_entrypoint: bool,
    cmd_set: bool,
    /// Whether the last layer step made no layer (an empty diff).
    last_empty: bool,
    /// The tree of a COPY being committed while the next RUN already uses it (top lower).
    pending_top: Vec<PathBuf>,
    pos: usize,
    total: usize,
    no_cache: bool,
    lexer: Lexer,
}

fn run_stage(shared: &Shared<'_>, i: usize) -> Result<StageResult> {
    let ps = &shared.plan.stages[i];
    let mut deps = Vec::new();
    for &d in &ps.deps {
        deps.push(shared.wait_stage(d)?);
    }
    if shared.failed.load(Ordering::SeqCst) {
        return Err(Error::Denied("cancelled: another stage failed".into()));
    }
    shared.acquire_slot();
    let r = run_stage_inner(shared, ps);
    shared.release_slot();
    r
}

fn layer_step(ins: &Instruction) -> bool {
    matches!(
        ins,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}

fn run_stage_inner(shared: &Shared<'_>, ps: &PlannedStage) -> Result<StageResult> {
    let id = shared.new_id();
    let (base_name, base) = stage_base(shared, ps)?;
    let triggers = parse_triggers(&base.config, ps.stage.loc)?;
    let total = 1
        + ps.stage
            .instructions
            .iter()
            .filter(|i| layer_step(i))
            .count()
        + triggers.iter().filter(|i| layer_step(i)).count();
    let mut st = StageRun {
        shared,
        ps,
        config: base.config,
        layers: base.layers,
        key: base.key,
        created: String::new(),
        args: Vec::new(),
        arg_vals: BTreeMap::new(),
        cmd_or_entrypoint: false,
        cmd_set: false,
        last_empty: false,
        pending_top: Vec::new(),
        pos: 1,
        total,
        no_cache: shared.no_cache_for(ps),
        lexer: Lexer::new(shared.plan.escape),
    };
    let t = Instant::now();
    shared.emit(Event::Start {
        id,
        name: format!("{} FROM {base_name}", st.prefix()),
    });
    shared.emit(Event::Done {
        id,
        cached: false,
        duration: t.elapsed(),
    });
    st.created = st
        .config
        .history
        .last()
        .and_then(|h| h.created.clone())
        .or_else(|| st.config.created.clone())
        .unwrap_or_else(strata_oci::image::now_rfc3339);
    st.config.ensure_path();
    if !triggers.is_empty() {
        st.config.config.on_build = None;
        for t in &triggers {
            st.dispatch(t)?;
        }
    }
    let ins = &ps.stage.instructions;
    let mut i = 0;
    while i < ins.len() {
        if matches!(ins[i], Instruction::Copy(_) | Instruction::Add(_))
            && matches!(ins.get(i + 1), Some(Instruction::Run(_)))
        {
            st.copy_then_run(&ins[i], &ins[i + 1])?;
            i += 2;
        } else {
            st.dispatch(&ins[i])?;
            i += 1;
        }
    }
    if st.cmd_or_entrypoint {
        st.config.config.args_escaped = Some(true);
    }
    Ok(StageResult {
        config: st.config,
        layers: st.layers,
        key: st.key,
    })
}

/// Parses a base image's ONBUILD triggers (run right after FROM, in order).
fn parse_triggers(config: &ImageConfig, loc: Location) -> Result<Vec<Instruction>> {
    let mut out = Vec::new();
    for t in config.config.on_build.iter().flatten() {
        let df = strata_parser::parse_dockerfile(&format!("FROM scratch\n{t}\n")).map_err(|e| {
            Error::Step {
                loc,
                message: format!("invalid ONBUILD trigger {t:?} in the base image: {e}"),
                output: Vec::new(),
            }
        })?;
        out.extend(df.stages.into_iter().flat_map(|s| s.instructions));
    }
    Ok(out)
}

/// The base of a stage: its display name and starting state.
fn stage_base(shared: &Shared<'_>, ps: &PlannedStage) -> Result<(String, StageResult)> {
    let platform = &shared.req.options.platform;
    match &ps.base {
        Base::Scratch => {
            let mut k = KeyBuilder::new("strata.scratch.v1");
            k.field("platform", &platform.to_string());
            let config = ImageConfig {
                architecture: platform.arch.clone(),
                os: platform.os.clone(),
                variant: platform.variant.clone(),
                ..Default::default()
            };
            Ok((
                "scratch".into(),
                StageResult {
                    config,
                    layers: Vec::new(),
                    key: k.finish().0,
                },
            ))
        }
        Base::Stage(i) => {
            let r = shared.wait_stage(*i)?;
            Ok((shared.plan.stages[*i].label(), r))
        }
        Base::Image(name) => {
            let (shown, r) = image_base(shared, name, ps.stage.loc)?;
            Ok((shown, r))
        }
    }
}

/// An image of the store as a starting point (FROM, or `--from` sources).
fn image_base(shared: &Shared<'_>, name: &str, loc: Location) -> Result<(String, StageResult)> {
    let step_err = |message: String| Error::Step {
        loc,
        message,
        output: Vec::new(),
    };
    let pull =
        |p: &Arc<dyn ImagePuller>| p.pull(name).map_err(|m| step_err(format!("{name}: {m}")));
    let puller = shared.req.puller.as_ref();
    // `--pull` re-checks names, not image IDs.
    let is_name = name.parse::<Reference>().is_ok() && !name.starts_with("sha256:");
    if shared.req.pull_always
        && is_name
        && let Some(p) = puller
    {
        pull(p)?;
    }
    let resolved = match shared.images.resolve(name) {
        Ok(r) => r,
        Err(strata_oci::Error::NoSuchImage(_)) if is_name && puller.is_some() => {
            if let Some(p) = puller {
                pull(p)?;
            }
            shared
                .images
                .resolve(name)
                .map_err(|e| step_err(format!("{name}: {e}")))?
        }
        Err(e) => {
            let hint = if puller.is_none() {
                " (pulling is disabled)"
            } else {
                ""
            };
            return Err(step_err(format!("{name}: {e}{hint}")));
        }
    };
    let (bytes, _) = shared.images.config(&resolved.id)?;
    let config: ImageConfig = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Sandbox(format!("config of {name}: {e}")))?;
    let mut layers = Vec::new();
    for d in &config.rootfs.diff_ids {
        let diff: Digest = d.parse()?;
        let info = shared.store.layer(&diff)?.ok_or_else(|| {
            Error::Sandbox(format!("layer {diff} of {name} is missing from the store"))
        })?;
        // The build's lease keeps the base's layers even if the image is removed meanwhile.
        shared.lease.record_layer(&diff)?;
        layers.push(LayerRef {
            diff_id: diff,
            size: info.size,
        });
    }
    let mut k = KeyBuilder::new("strata.image.v1");
    k.field("image", &resolved.id.to_string());
    let shown = resolved
        .reference
        .map(|r| r.to_string())
        .unwrap_or_else(|| name.to_string());
    Ok((
        shown,
        StageResult {
            config,
            layers,
            key: k.finish().0,
        },
    ))
}

impl StageRun<'_, '_> {
    fn prefix(&self) -> String {
        if self.shared.plan.stages.len() > 1 {
            format!("[{} {}/{}]", self.ps.label(), self.pos, self.total)
        } else {
            format!("[{}/{}]", self.pos, self.total)
        }
    }

    /// The environment of expansion and RUN: the config's Env with the ARG values in effect
    /// applied (replacing a same-named variable in place, else appended).
    fn expand_env(&self) -> Vec<(String, String)> {
        let mut env = self.config.env_pairs();
        for (k, v) in &self.arg_vals {
            match env.iter_mut().find(|(e, _)| e == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        env
    }

    fn history(&mut self, created_by: String, empty_layer: bool) {
        self.config.history.push(HistoryEntry {
            created: Some(self.created.clone()),
            created_by: Some(created_by),
            author: None,
            comment: Some(HISTORY_COMMENT.into()),
            empty_layer,
        });
    }

    fn dispatch(&mut self, ins: &Instruction) -> Result<()> {
        let env = self.expand_env();
        let expanded = ins.expand(&self.lexer, &env)?;
        match &expanded {
            Instruction::Arg(a) => {
                let predefined = strata_planner::args::predefined(
                    &self.shared.req.options.platform,
                    &strata_planner::args::Platform::host(),
                );
                for def in &a.args {
                    let v = arg_value(def, &self.shared.req.options.build_args, &self.meta())
                        .or_else(|| {
                            predefined
                                .iter()
                                .find(|(k, _)| *k == def.key)
                                .map(|(_, v)| v.clone())
                        });
                    if let Some(v) = &v {
                        self.arg_vals.insert(def.key.clone(), v.clone());
                    }
                    self.args.push((def.key.clone(), v));
                }
                // History: the ARG line as written.
                if let Instruction::Arg(raw) = ins {
                    let words: Vec<String> = raw
                        .args
                        .iter()
                        .map(|d| match &d.value {
                            Some(v) => format!("{}={v}", d.key),
                            None => d.key.clone(),
                        })
                        .collect();
                    self.history(format!("ARG {}", words.join(" ")), true);
                }
                Ok(())
            }
            Instruction::Workdir(w) => self.workdir(&w.path, ins.original(), ins.loc()),
            Instruction::Run(r) => self.run(r, ins.original()),
            Instruction::Copy(_) | Instruction::Add(_) => self.copy(&expanded, ins.original()),
            Instruction::From(_) => Ok(()),
            other => {
                if let Instruction::Env(e) = other {
                    for kv in &e.vars {
                        self.arg_vals.remove(&kv.key);
                    }
                }
                if matches!(other, Instruction::Cmd(_) | Instruction::Entrypoint(_)) {
                    self.cmd_or_entrypoint = true;
                }
                if let Some(created_by) = meta::apply(&mut self.config, other, &mut self.cmd_set) {
                    self.history(created_by, true);
                }
                Ok(())
            }
        }
    }

    /// The directories of the current layers, top first (for views and overlay lowers).
    fn lower_dirs(&self) -> Result<Vec<PathBuf>> {
        let mut dirs = self.pending_top.clone();
        dirs.extend(self.shared.layer_dirs(&self.layers)?);
        Ok(dirs)
    }

    /// A COPY/ADD followed by a RUN. On a cache miss of the COPY, its layer is hashed and
    /// committed on another thread while the RUN already runs on top of its tree (the diffID of
    /// a large COPY is a long sequential sha256; the RUN does not need it). The result is the
    /// same as dispatching both in turn.
    fn copy_then_run(&mut self, copy_ins: &Instruction, run_ins: &Instruction) -> Result<()> {
        let env = self.expand_env();
        let expanded = copy_ins.expand(&self.lexer, &env)?;
        let (id, t) = self.start(copy_ins.original());
        let op = fsops::prepare_copy(self, &expanded).map_err(|e| self.fail(id, e))?;
        if self.try_cache(id, op.key, &op.inputs)? {
            self.history(op.history.clone(), self.last_empty);
            self.done(id, t, true);
            return self.dispatch(run_ins);
        }
        let pending = fsops::place_copy(self, &op).map_err(|e| self.fail(id, e))?;
        if pending.is_empty()? {
            drop(pending);
            self.record(op.key, None)?;
            self.history(op.history.clone(), true);
            self.done(id, t, false);
            return self.dispatch(run_ins);
        }
        let parent_key = self.key;
        self.key = op.key;
        self.pending_top = pending.dirs();
        let (hashed, ran) = std::thread::scope(|s| {
            let hasher = s.spawn(|| pending.hash(true));
            let ran = self.run_on_pending(run_ins);
            let hashed = hasher
                .join()
                .unwrap_or_else(|_| Err(strata_cas::Error::Archive("hasher panicked".into())));
            (hashed, ran)
        });
        self.pending_top = Vec::new();
        self.key = parent_key;
        // The COPY's layer, committed now that no sandbox uses its tree.
        let committed = hashed
            .and_then(|h| pending.finish(h))
            .map_err(|e| self.fail(id, e.into()))?;
        let layer = LayerRef {
            diff_id: committed.diff_id,
            size: committed.size,
        };
        fsops::note_lineage(self, &op, &layer);
        self.record(op.key, Some(layer))?;
        self.history(op.history.clone(), false);
        self.done(id, t, false);
        let (run_id, run_t, plan, outcome) = ran?;
        // Now the RUN, as `run` would have applied it.
        match outcome {
            RunOutcome::Hit => {
                // A record pruned since the lookup: run the step after all.
                if !self.try_cache(run_id, plan.key, &plan.inputs)?
                    && let Instruction::Run(r) = run_ins
                {
                    let layer =
                        run::execute(self, run_id, r, &plan).map_err(|e| self.fail(run_id, e))?;
                    self.record(plan.key, layer)?;
                }
            }
            RunOutcome::Ran(layer) => self.record(plan.key, layer)?,
        }
        let empty = self.last_empty;
        self.history(self.run_history(&plan.history_args), empty);
        self.done(run_id, run_t, matches!(outcome, RunOutcome::Hit));
        Ok(())
    }

    /// The RUN half of [`Self::copy_then_run`]: runs (or finds cached) the step on top of the
    /// pending COPY tree without applying its result yet.
    fn run_on_pending(
        &mut self,
        run_ins: &Instruction,
    ) -> Result<(usize, Instant, run::RunPlan, RunOutcome)> {
        let Instruction::Run(r) = run_ins else {
            return Err(Error::Sandbox("not a RUN".into()));
        };
        let (id, t) = self.start(run_ins.original());
        let plan = run::prepare(self, r).map_err(|e| self.fail(id, e))?;
        let hit = !self.no_cache
            && self
                .shared
                .cache
                .get(self.shared.store, &plan.key)?
                .is_some();
        if hit {
            return Ok((id, t, plan, RunOutcome::Hit));
        }
        self.shared.emit(Event::Cache {
            id,
            key: plan.key.hex(),
            hit: false,
            inputs: plan.inputs.clone(),
        });
        let layer = run::execute(self, id, r, &plan).map_err(|e| self.fail(id, e))?;
        Ok((id, t, plan, RunOutcome::Ran(layer)))
    }

    fn meta(&self) -> Vec<(String, Option<String>)> {
        self.shared.plan.meta_args.clone()
    }

    /// `RUN |N K=V ... cmd` as BuildKit writes it in the history: every declared ARG, in
    /// order, with its value in the RUN environment (or its declared value, or empty).
    fn run_history(&self, args: &[String]) -> String {
        let env = self.expand_env();
        let mut build: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.args {
            let shown = env
                .iter()
                .rev()
                .find(|(e, _)| e == k)
                .map(|(_, v)| v.clone())
                .or_else(|| v.clone())
                .unwrap_or_default();
            match build.iter_mut().find(|(b, _)| b == k) {
                Some(slot) => slot.1 = shown,
                None => build.push((k.clone(), shown)),
            }
        }
        let mut parts = Vec::new();
        if !build.is_empty() {
            parts.push(format!("|{}", build.len()));
            parts.extend(build.iter().map(|(k, v)| format!("{k}={v}")));
        }
        parts.extend(args.iter().cloned());
        format!("RUN {} # buildkit", parts.join(" "))
    }

    /// Looks the key up; on a hit applies the record and returns true.
    fn try_cache(&mut self, id: usize, key: CacheKey, inputs: &[(String, String)]) -> Result<bool> {
        let rec = if self.no_cache {
            None
        } else {
            self.shared.cache.get(self.shared.store, &key)?
        };
        self.shared.emit(Event::Cache {
            id,
            key: key.hex(),
            hit: rec.is_some(),
            inputs: inputs.to_vec(),
        });
        let Some(rec) = rec else { return Ok(false) };
        self.last_empty = rec.layer.is_none();
        if let Some(l) = rec.layer {
            self.shared.lease.record_layer(&l.diff_id)?;
            self.layers.push(l);
        }
        self.created = rec.created;
        self.key = key;
        Ok(true)
    }

    /// Records a step's result and applies it.
    fn record(&mut self, key: CacheKey, layer: Option<LayerRef>) -> Result<()> {
        let created = strata_oci::image::now_rfc3339();
        self.shared.cache.put(
            &key,
            &Record {
                layer,
                created: created.clone(),
                last_used: 0,
            },
        )?;
        self.last_empty = layer.is_none();
        if let Some(l) = layer {
            self.layers.push(l);
        }
        self.created = created;
        self.key = key;
        Ok(())
    }

    /// Starts a layer step's vertex; returns its id and start time.
    fn start(&mut self, original: &str) -> (usize, Instant) {
        self.pos += 1;
        let id = self.shared.new_id();
        self.shared.emit(Event::Start {
            id,
            name: format!("{} {original}", self.prefix()),
        });
        (id, Instant::now())
    }

    fn done(&self, id: usize, t: Instant, cached: bool) {
        self.shared.emit(Event::Done {
            id,
            cached,
            duration: t.elapsed(),
        });
    }

    fn fail(&self, id: usize, e: Error) -> Error {
        self.shared.emit(Event::Error {
            id,
            message: e.to_string(),
        });
        e
    }

    fn workdir(&mut self, path: &str, original: &str, loc: Location) -> Result<()> {
        let current = self.config.config.working_dir.clone().unwrap_or_default();
        let joined = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{path}", if current.is_empty() { "/" } else { &current })
        };
        let wd = clean_path(&joined);
        self.config.config.working_dir = Some(wd.clone());
        let (id, t) = self.start(original);
        let mut k = KeyBuilder::new("strata.workdir.v1");
        k.digest("parent", &self.key.0);
        k.field("path", &wd);
        k.field("user", self.config.config.user.as_deref().unwrap_or(""));
        let (key, inputs) = k.finish();
        let hit = self.try_cache(id, key, &inputs)?;
        if !hit {
            let layer = fsops::workdir(self, &wd, loc).map_err(|e| self.fail(id, e))?;
            self.record(key, layer)?;
        }
        let empty = self.last_empty;
        self.history(format!("WORKDIR {wd}"), empty);
        self.done(id, t, hit);
        Ok(())
    }

    fn run(&mut self, r: &strata_parser::instructions::Run, original: &str) -> Result<()> {
        let (id, t) = self.start(original);
        let plan = run::prepare(self, r).map_err(|e| self.fail(id, e))?;
        let hit = self.try_cache(id, plan.key, &plan.inputs)?;
        if !hit {
            let layer = run::execute(self, id, r, &plan).map_err(|e| self.fail(id, e))?;
            self.record(plan.key, layer)?;
        }
        let empty = self.last_empty;
        self.history(self.run_history(&plan.history_args), empty);
        self.done(id, t, hit);
        Ok(())
    }

    fn copy(&mut self, ins: &Instruction, original: &str) -> Result<()> {
        let (id, t) = self.start(original);
        let op = fsops::prepare_copy(self, ins).map_err(|e| self.fail(id, e))?;
        let hit = self.try_cache(id, op.key, &op.inputs)?;
        if !hit {
            let layer = fsops::execute_copy(self, &op).map_err(|e| self.fail(id, e))?;
            self.record(op.key, layer)?;
        }
        let empty = self.last_empty;
        self.history(op.history.clone(), empty);
        self.done(id, t, hit);
        Ok(())
    }
}

/// What the RUN of a COPY+RUN pair did.
enum RunOutcome {
    /// Its record exists (applied later, in order).
    Hit,
    /// It ran; its layer (none for an empty diff).
    Ran(Option<LayerRef>),
}

/// Cleans an absolute path like Go's `path.Clean`.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("/"), "/");
    }
}
