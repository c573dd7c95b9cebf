//! RUN steps: the command line, the environment, `--mount`s, the cache key, and the sandbox.
//!
//! The step's sandbox mounts overlayfs with the parent layers as lower dirs (short `l/` links
//! from the store root, then the sandbox's stub dir at the bottom) and the pending layer's
//! tree as the upper dir: what the command writes *is* the new layer. `--mount`s are added as
//! spec mounts; none of them ends up in the layer (their targets stay as empty directories, as
//! BuildKit leaves them).

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use strata_parser::Instruction;
use strata_parser::instructions::{
    MountType, NetworkMode as RunNetwork, Run, SecurityMode, ShareMode,
};
use strata_planner::args::is_proxy;
use strata_planner::{CacheKey, FromRef, KeyBuilder};

use super::{StageRun, fsops, meta};
use crate::cache::{LayerRef, Sharing};
use crate::error::{Error, Result};
use crate::events::{Event, Stream};
use crate::sandbox::{self, ExitStatus, Network, Overlay, Stdio};

/// `strata build --network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network (BuildKit's default for RUN).
    #[default]
    Default,
    /// Loopback only.
    None,
    /// The host's network, explicitly.
    Host,
}

/// How many output lines a failed step reports.
const TAIL_LINES: usize = 20;

/// Where a bind mount's content comes from.
#[derive(Debug, Clone)]
enum BindSource {
    /// The build context (only what `.dockerignore` keeps).
    Context,
    /// The final layers of a stage or an image, top first.
    Layers(Vec<PathBuf>),
}

/// A RUN step ready to run.
#[derive(Debug)]
pub(super) struct RunPlan {
    pub key: CacheKey,
    pub inputs: Vec<(String, String)>,
    pub argv: Vec<String>,
    pub history_args: Vec<String>,
    env: Vec<String>,
    network: Network,
    mounts: Vec<(strata_parser::instructions::Mount, Option<BindSource>)>,
    /// A shebang heredoc run as a script: (name, content), mounted at `/dev/pipes/<name>`.
    script: Option<(String, String)>,
}

/// The command as BuildKit builds it, including heredocs.
fn command(st: &StageRun<'_, '_>, r: &Run) -> (Vec<String>, Option<(String, String)>) {
    let mut script = None;
    let mut args = r.cmd_line.clone();
    if !r.heredocs.is_empty() && r.prepend_shell && args.len() == 1 {
        let first = &r.heredocs[0];
        let marker = args[0].trim();
        let simple = marker
            .strip_prefix("<<")
            .map(|m| {
                m.trim_start_matches('-')
                    .trim_matches(|c| c == '"' || c == '\'')
            })
            .is_some_and(|m| m == first.name);
        if simple {
            if first.content.starts_with("#!") {
                script = Some((first.name.clone(), first.content.clone()));
                args = vec![format!("/dev/pipes/{}", first.name)];
            } else {
                args = vec![first.content.clone()];
            }
        } else {
            let mut full = args[0].clone();
            for h in &r.heredocs {
                full.push('\n');
                full.push_str(&h.content);
                full.push_str(&h.name);
            }
            args = vec![full];
        }
    }
    (meta::exec_form(&st.config, &args, r.prepend_shell), script)
}

/// Expands, checks entitlements and computes the key of a RUN step.
pub(super) fn prepare(st: &mut StageRun<'_, '_>, r: &Run) -> Result<RunPlan> {
    let shared = st.shared;
    let env_pairs = st.expand_env();
    let Instruction::Run(r) = Instruction::Run(r.clone()).expand(&st.lexer, &env_pairs)? else {
        return Err(Error::Sandbox("RUN expanded to another instruction".into()));
    };
    let host = strata_planner::args::Platform::host();
    let target = &shared.req.options.platform;
    if (target.os.as_str(), target.arch.as_str()) != (host.os.as_str(), host.arch.as_str()) {
        return Err(Error::Denied(format!(
            "{}: RUN for platform {target} cannot execute on this {host} host (no emulation); \
             only FROM, COPY, ADD and metadata instructions build for other platforms",
            r.loc
        )));
    }
    if r.security == SecurityMode::Insecure && !shared.req.allow_insecure {
        return Err(Error::Denied(format!(
            "{}: RUN --security=insecure needs `--allow security.insecure` (entitlement \
             security.insecure is not allowed)",
            r.loc
        )));
    }
    if r.network == RunNetwork::Host && !shared.req.allow_network_host {
        return Err(Error::Denied(format!(
            "{}: RUN --network=host needs `--allow network.host` (entitlement network.host is \
             not allowed)",
            r.loc
        )));
    }
    let network = match (r.network, shared.req.network) {
        (RunNetwork::None, _) | (RunNetwork::Default, NetworkMode::None) => Network::None,
        _ => Network::Host,
    };
    let (argv, script) = command(st, &r);

    // The process environment: the image's Env with the ARG values in effect.
    let mut env: Vec<String> = env_pairs
        .iter()
        .filter(|(k, _)| !is_proxy(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();

    let mut k = KeyBuilder::new("strata.run.v1");
    k.digest("parent", &st.key.0);
    k.list("argv", &argv);
    k.list("env", &env);
    k.field("user", st.config.config.user.as_deref().unwrap_or(""));
    k.field(
        "workdir",
        st.config.config.working_dir.as_deref().unwrap_or("/"),
    );
    k.field(
        "network",
        match network {
            Network::None => "none",
            Network::Host => "host",
        },
    );
    k.field(
        "security",
        if r.security == SecurityMode::Insecure {
            "insecure"
        } else {
            "sandbox"
        },
    );
    if let Some((name, content)) = &script {
        k.field("script", &format!("{name}\n{content}"));
    }
    let mut mounts = Vec::new();
    let mut ssh_targets = Vec::new();
    for m in &r.mounts {
        let mut mount = m.clone();
        if mount.kind == MountType::Ssh {
            // BuildKit numbers the default targets over the step's ssh mounts.
            let target = mount
                .target
                .get_or_insert_with(|| format!("/run/buildkit/ssh_agent.{}", ssh_targets.len()));
            ssh_targets.push(target.clone());
        }
        let m = &mount;
        let target = m.target.clone().unwrap_or_default();
        let mut desc = format!(
            "type={} target={target} ro={} id={} sharing={:?} mode={:?} uid={:?} gid={:?} \
             env={:?} required={} size={:?} source={:?}",
            m.kind.as_str(),
            m.read_only,
            m.id.as_deref().unwrap_or(""),
            m.sharing,
            m.mode,
            m.uid,
            m.gid,
            m.env,
            m.required,
            m.size_limit,
            m.source
        );
        let source = match m.kind {
            MountType::Bind => {
                let src = m.source.clone().unwrap_or_default();
                match &m.from {
                    None => {
                        let index = shared.context()?.ok_or_else(|| {
                            Error::Copy(format!(
                                "{}: RUN --mount=type=bind needs a build context",
                                r.loc
                            ))
                        })?;
                        let rel = super::clean_path(&src).trim_start_matches('/').to_string();
                        let digest = index.digest(&rel).ok_or_else(|| {
                            Error::Copy(format!(
                                "{}: RUN --mount=type=bind,source={src}: not found in the build context",
                                r.loc
                            ))
                        })?;
                        desc.push_str(&format!(
                            " context={}",
                            digest
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<String>()
                        ));
                        Some(BindSource::Context)
                    }
                    Some(from) => {
                        let (key, layers) = from_layers(st, from, r.loc)?;
                        desc.push_str(&format!(" from={}", key.hex()));
                        Some(BindSource::Layers(layers))
                    }
                }
            }
            MountType::Cache if m.from.is_some() => {
                let from = m.from.clone().unwrap_or_default();
                let (key, layers) = from_layers(st, &from, r.loc)?;
                desc.push_str(&format!(" from={}", key.hex()));
                Some(BindSource::Layers(layers))
            }
            MountType::Ssh => {
                let id = ssh_id(m);
                if !shared.req.ssh.contains_key(&id) && m.required {
                    return Err(Error::Denied(format!(
                        "{}: ssh agent {id} is required but was not given (--ssh {id}[=SOCKET|KEY])",
                        r.loc
                    )));
                }
                None
            }
            MountType::Secret => {
                let id = secret_id(m);
                if !shared.req.secrets.contains_key(&id) && m.required {
                    return Err(Error::Denied(format!(
                        "{}: secret {id} is required but was not given (--secret id={id},src=...)",
                        r.loc
                    )));
                }
                None
            }
            _ => None,
        };
        k.field("mount", &desc);
        mounts.push((mount, source));
    }
    let (key, inputs) = k.finish();
    // As BuildKit: the first ssh mount is the step's agent unless its env names one (the
    // targets are in the key through the mounts).
    if let Some(first) = ssh_targets.first()
        && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK="))
    {
        env.push(format!("SSH_AUTH_SOCK={first}"));
    }
    // Proxy args reach the process but never the key.
    for (name, v) in &shared.req.options.build_args {
        if is_proxy(name) && !env.iter().any(|e| e.starts_with(&format!("{name}="))) {
            env.push(format!("{name}={v}"));
        }
    }
    Ok(RunPlan {
        key,
        inputs,
        history_args: argv.clone(),
        argv,
        env,
        network,
        mounts,
        script,
    })
}

/// An ssh mount's agent id: `id=`, else `default`.
fn ssh_id(m: &strata_parser::instructions::Mount) -> String {
    m.id.clone().unwrap_or_else(|| "default".into())
}

fn secret_id(m: &strata_parser::instructions::Mount) -> String {
    m.id.clone().unwrap_or_else(|| {
        m.target
            .as_deref()
            .and_then(|t| Path::new(t).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

/// The layers a `from=` names (a stage's or an image's), top first, with their key.
fn from_layers(
    st: &StageRun<'_, '_>,
    from: &str,
    loc: strata_parser::Location,
) -> Result<(CacheKey, Vec<PathBuf>)> {
    let shared = st.shared;
    match shared.plan.resolve_from(from, st.ps.index, loc)? {
        FromRef::Stage(i) => {
            let r = shared.wait_stage(i)?;
            Ok((r.key, shared.layer_dirs(&r.layers)?))
        }
        FromRef::Image(name) => {
            let (_, r) = super::image_base(shared, &name, loc)?;
            Ok((r.key, shared.layer_dirs(&r.layers)?))
        }
    }
}

/// Runs the step; returns its layer (`None` for an empty diff).
pub(super) fn execute(
    st: &mut StageRun<'_, '_>,
    id: usize,
    r: &Run,
    plan: &RunPlan,
) -> Result<Option<LayerRef>> {
    let shared = st.shared;
    let store = shared.store;
    let pending = store.begin_layer(&shared.lease)?;
    let work = pending.work_dir();
    let merged = work.join("merged");
    let ovl = work.join("ovl");
    for d in [&merged, &ovl] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let mut lower = Vec::new();
    lower.extend(st.pending_top.iter().cloned());
    for l in st.layers.iter().rev() {
        lower.extend(
            store
                .layer_short_links(&l.diff_id)?
                .into_iter()
                .map(PathBuf::from),
        );
    }
    lower.push(shared.stub_lower.clone());
    let (uid, gid, groups) = fsops::resolve_user(st, r.loc)?;
    let cwd = st
        .config
        .config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    let mut env = plan.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", fsops::home_of(st, uid)));
    }
    let mut spec = sandbox::default_spec(
        &merged,
        plan.argv.clone(),
        Vec::new(),
        &cwd,
        uid,
        gid,
        groups,
        "buildkitsandbox",
        plan.network,
    )?;
    if r.security == SecurityMode::Insecure {
        // Like BuildKit's insecure mode; namespaces and the overlay root stay.
        sandbox::make_privileged(&mut spec);
    }
    sandbox::set_overlay(
        &mut spec,
        &Overlay {
            lower,
            upper: pending.rootfs(),
            work: ovl,
            chdir: Some(store.root().to_path_buf()),
        },
    );
    sandbox::add_etc_files(&mut spec, &work.join("etc"))?;
    let _held = add_mounts(st, &mut spec, plan, &work, &mut env)?;
    if let Some((name, content)) = &plan.script {
        let dir = work.join("pipes");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(&path, e))?;
        sandbox::add_bind(&mut spec, &path, &format!("/dev/pipes/{name}"), true);
    }
    if let Some(p) = spec.process_mut() {
        p.set_env(Some(env));
    }

    let (out_r, out_w) = std::io::pipe().map_err(|e| Error::io("<pipe>", e))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| Error::io("<pipe>", e))?;
    let tail = std::sync::Mutex::new(std::collections::VecDeque::new());
    let status = std::thread::scope(|s| {
        for (reader, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
            let tail = &tail;
            s.spawn(move || {
                let mut lines = BufReader::new(reader);
                let mut buf = Vec::new();
                while lines.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Ok(mut t) = tail.lock() {
                        t.push_back(text.trim_end_matches('\n').to_string());
                        if t.len() > TAIL_LINES {
                            t.pop_front();
                        }
                    }
                    shared.emit(Event::Output { id, stream, text });
                    buf.clear();
                }
            });
        }
        let stdio = Stdio {
            stdin: None,
            stdout: OwnedFd::from(out_w),
            stderr: OwnedFd::from(err_w),
        };
        sandbox::run(&shared.req.helper_exe, &work.join("bundle"), &spec, stdio)
    })?;
    let code = match status {
        ExitStatus::Code(0) => None,
        ExitStatus::Code(c) => Some(format!("exit code: {c}")),
        ExitStatus::Signal(s) => Some(format!("killed by signal {s}")),
    };
    if let Some(why) = code {
        return Err(Error::Step {
            loc: r.loc,
            message: format!(
                "process \"{}\" did not complete successfully: {why}",
                plan.argv.join(" ")
            ),
            output: tail.into_inner().map(Vec::from).unwrap_or_default(),
        });
    }
    remove_file_stubs(st, plan, &pending.rootfs())?;
    if pending.is_empty()? {
        return Ok(None);
    }
    let info = pending.commit()?;
    Ok(Some(LayerRef {
        diff_id: info.diff_id,
        size: info.size,
    }))
}

/// Removes the empty files the sandbox created as mount points for secrets and ssh sockets
/// mounted at a file path: BuildKit leaves no such stub (directory targets stay, as it leaves
/// them).
fn remove_file_stubs(st: &StageRun<'_, '_>, plan: &RunPlan, upper: &Path) -> Result<()> {
    let view = crate::fs::view::LayerView::new(st.lower_dirs()?);
    let req = &st.shared.req;
    for (m, _) in &plan.mounts {
        let dest = match m.kind {
            MountType::Secret if req.secrets.contains_key(&secret_id(m)) => {
                if m.env.is_some() && m.target.is_none() {
                    continue;
                }
                secret_dest(st, m)
            }
            MountType::Ssh if req.ssh.contains_key(&ssh_id(m)) => {
                mount_dest(st, m.target.as_deref().unwrap_or_default())
            }
            _ => continue,
        };
        let rel = dest.trim_start_matches('/');
        let path = upper.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file() && meta.len() == 0 && view.stat(rel)?.is_none() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Where a secret mount goes: its target (relative to WORKDIR) or `/run/secrets/<id>`.
fn secret_dest(st: &StageRun<'_, '_>, m: &strata_parser::instructions::Mount) -> String {
    match &m.target {
        Some(t) => mount_dest(st, t),
        None => format!("/run/secrets/{}", secret_id(m)),
    }
}

/// A mount target as an absolute, clean path: relative ones are under WORKDIR.
fn mount_dest(st: &StageRun<'_, '_>, target: &str) -> String {
    if target.starts_with('/') {
        super::clean_path(target)
    } else {
        super::clean_path(&format!(
            "{}/{target}",
            st.config.config.working_dir.as_deref().unwrap_or("/")
        ))
    }
}

/// What a step's mounts need while it runs: the cache mounts' locks, the ssh agents' sockets.
struct HeldMounts {
    _locks: Vec<std::fs::File>,
    _forwards: Vec<crate::ssh::Forward>,
}

/// Adds the step's `--mount`s to the spec; returns what must live while the step runs.
fn add_mounts(
    st: &StageRun<'_, '_>,
    spec: &mut oci_spec::runtime::Spec,
    plan: &RunPlan,
    work: &Path,
    env: &mut Vec<String>,
) -> Result<HeldMounts> {
    let shared = st.shared;
    let mut locks = Vec::new();
    let mut forwards = Vec::new();
    for (n, (m, source)) in plan.mounts.iter().enumerate() {
        let target = m.target.clone().unwrap_or_default();
        let target = if target.starts_with('/') {
            target
        } else {
            mount_dest(st, &target)
        };
        match m.kind {
            MountType::Bind => {
                let src = m.source.clone().unwrap_or_default();
                let farm = work.join(format!("bind-{n}"));
                match source {
                    Some(BindSource::Context) => {
                        let index = shared.context()?.ok_or_else(|| {
                            Error::Copy("RUN --mount=type=bind needs a build context".into())
                        })?;
                        fsops::farm_context(index, &src, &farm)?;
                    }
                    Some(BindSource::Layers(layers)) => {
                        fsops::farm_layers(layers, &src, &farm)?;
                    }
                    None => {}
                }
                if m.read_only {
                    sandbox::add_bind(spec, &farm, &target, true);
                } else {
                    // Writes go to a throwaway upper dir.
                    let upper = work.join(format!("bind-{n}-upper"));
                    let wk = work.join(format!("bind-{n}-work"));
                    for d in [&upper, &wk] {
                        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
                    }
                    add_overlay_mount(spec, &target, &farm, &upper, &wk);
                }
            }
            MountType::Cache => {
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let sharing = match m.sharing {
                    Some(ShareMode::Private) => Sharing::Private,
                    Some(ShareMode::Locked) => Sharing::Locked,
                    _ => Sharing::Shared,
                };
                let (dir, lock, created) = shared.cache.mount_dir(
                    &id,
                    sharing,
                    m.mode.unwrap_or(0o755),
                    m.uid.unwrap_or(0),
                    m.gid.unwrap_or(0),
                )?;
                locks.push(lock);
                // `from=`/`source=` seed a new cache directory with a copy of that content.
                if created && let Some(BindSource::Layers(layers)) = source {
                    let src = m.source.clone().unwrap_or_else(|| "/".into());
                    fsops::farm_layers(layers, &src, &dir)?;
                }
                sandbox::add_bind(spec, &dir, &target, m.read_only);
            }
            MountType::Tmpfs => {
                sandbox::add_tmpfs(
                    spec,
                    &target,
                    m.size_limit.and_then(|s| u64::try_from(s).ok()),
                );
            }
            MountType::Secret => {
                let id = secret_id(m);
                let Some(value) = shared.req.secrets.get(&id) else {
                    continue; // not required and not given: no mount, as BuildKit
                };
                if let Some(var) = &m.env {
                    env.push(format!("{var}={}", String::from_utf8_lossy(value)));
                    if m.target.is_none() {
                        continue;
                    }
                }
                let dir = work.join("secrets");
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                let path = dir.join(format!("{n}"));
                std::fs::write(&path, value).map_err(|e| Error::io(&path, e))?;
                std::os::unix::fs::chown(&path, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
                    .map_err(|e| Error::io(&path, e))?;
                std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(m.mode.unwrap_or(0o400)),
                )
                .map_err(|e| Error::io(&path, e))?;
                sandbox::add_bind(spec, &path, &secret_dest(st, m), true);
            }
            MountType::Ssh => {
                let Some(agent) = shared.req.ssh.get(&ssh_id(m)) else {
                    continue; // not required and not given: no mount, as BuildKit
                };
                let forward = crate::ssh::Forward::start(
                    agent,
                    m.mode.unwrap_or(0o600),
                    m.uid.unwrap_or(0),
                    m.gid.unwrap_or(0),
                )?;
                sandbox::add_bind(spec, forward.path(), &target, true);
                forwards.push(forward);
            }
        }
    }
    Ok(HeldMounts {
        _locks: locks,
        _forwards: forwards,
    })
}

/// A throwaway-writes mount: overlayfs with `lower` read-only and writes going to `upper`.
fn add_overlay_mount(
    spec: &mut oci_spec::runtime::Spec,
    destination: &str,
    lower: &Path,
    upper: &Path,
    work: &Path,
) {
    let mut m = oci_spec::runtime::Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some("overlay".into()));
    m.set_source(Some(PathBuf::from("overlay")));
    m.set_options(Some(vec![
        format!("lowerdir={}", lower.display()),
        format!("upperdir={}", upper.display()),
        format!("workdir={}", work.display()),
        "redirect_dir=off".into(),
        "metacopy=off".into(),
        "index=off".into(),
    ]));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(m);
    spec.set_mounts(Some(mounts));
}
