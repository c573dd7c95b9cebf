//! From an image and `run`/`create` flags to a container record ([`create`]) and, at each
//! start, to the OCI runtime spec that drives the sandbox ([`build_spec`]).
//!
//! ENTRYPOINT and CMD combine as docker does ([`command_of`]): `--entrypoint` replaces the
//! image's entrypoint and drops its CMD; arguments after IMAGE replace CMD. The environment is
//! the image's, then `--env-file` lines, then `-e` (later wins, in place). The spec is
//! [`sandbox::default_spec`] (docker's default profile) with the overlay root (the image's
//! layer dirs + the sandbox's stub dir as lower, the container's `upper/` and `work/`), the
//! container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, its mounts, resources and
//! capability flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use strata_cas::{Digest, Store};
use strata_executor::fs::LayerView;
use strata_executor::image_config::ImageConfig;
use strata_executor::sandbox::{self, Overlay};
use strata_oci::Images;

use crate::container::{Container, ContainerStore, RunConfig, State, new_id};
use crate::error::{Error, Result};
use crate::mounts::MountRequest;
use crate::net::{NetworkMode, PortBinding};
use crate::volume::Volumes;

/// The flags of `run`/`create` that shape a container (already parsed by the CLI).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The image as typed.
    pub image: String,
    /// The arguments after IMAGE.
    pub args: Vec<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `-e K=V` / `-e K` (taken from strata's environment when set).
    pub env: Vec<String>,
    /// The lines of each `--env-file`, in order.
    pub env_files: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--entrypoint` (`Some("")` clears the image's).
    pub entrypoint: Option<String>,
    /// `-h`.
    pub hostname: Option<String>,
    /// `-l K=V`.
    pub labels: Vec<String>,
    /// `-v`, `--mount`, `--tmpfs`, parsed ([`crate::mounts`]).
    pub mounts: Vec<MountRequest>,
    /// `-p`, parsed ([`crate::net::parse_publish`]); `-P` is `config.publish_all`.
    pub publish: Vec<PortBinding>,
    /// The rest of the record's configuration: tty, stdin, rm, network, ports, mounts,
    /// resources, capabilities, stop signal/timeout. Fields set here are kept as they are;
    /// entrypoint/cmd/env/working_dir/user/hostname/labels are filled from the flags above.
    pub config: RunConfig,
}

/// Docker's ENTRYPOINT/CMD combination: returns `(entrypoint, cmd)` in effect.
pub fn command_of(
    image_entrypoint: &[String],
    image_cmd: &[String],
    flag_entrypoint: Option<&str>,
    args: &[String],
) -> (Vec<String>, Vec<String>) {
    match flag_entrypoint {
        Some(e) => {
            let ep = if e.is_empty() {
                Vec::new()
            } else {
                vec![e.to_string()]
            };
            (ep, args.to_vec())
        }
        None => {
            let cmd = if args.is_empty() {
                image_cmd.to_vec()
            } else {
                args.to_vec()
            };
            (image_entrypoint.to_vec(), cmd)
        }
    }
}

/// Sets `KEY=V` in `env`, replacing an existing `KEY` in place.
fn set_env(env: &mut Vec<String>, kv: String) {
    let key = kv
        .split_once('=')
        .map_or(kv.as_str(), |(k, _)| k)
        .to_string();
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(slot) => *slot = kv,
        None => env.push(kv),
    }
}

/// One `-e`/`--env-file` entry: `K=V` as is; a bare `K` takes strata's own value (dropped
/// when unset, as docker does).
fn env_entry(entry: &str) -> Result<Option<String>> {
    if entry.is_empty() || entry.starts_with('=') {
        return Err(Error::Invalid(format!(
            "invalid environment variable: {entry:?}"
        )));
    }
    if entry.contains('=') {
        return Ok(Some(entry.to_string()));
    }
    Ok(std::env::var(entry).ok().map(|v| format!("{entry}={v}")))
}

/// Parses an `--env-file`: `K=V` or `K` per line; `#` comments and blank lines skipped.
///
/// # Errors
/// [`Error::Invalid`] for a line with an empty name (naming `source` and the line).
pub fn parse_env_file(source: &str, text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry =
            env_entry(line).map_err(|e| Error::Invalid(format!("{source}:{}: {e}", n + 1)))?;
        out.extend(entry);
    }
    Ok(out)
}

fn parse_labels(labels: &[String]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// Docker's `-m` (`RAMInBytes`): a number with an optional `b`, `k`, `m`, `g`, `t` suffix
/// (1024-based, optionally followed by `b`).
///
/// # Errors
/// [`Error::Invalid`] for anything else, or below docker's 6 MiB minimum.
pub fn parse_memory(s: &str) -> Result<i64> {
    let bad = || Error::Invalid(format!("invalid memory size {s:?} (expected e.g. 64m, 1g)"));
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    let bytes = (n * mult as f64) as i64;
    if bytes < 6 * 1024 * 1024 {
        return Err(Error::Invalid(format!(
            "minimum memory limit allowed is 6MB (got {s:?})"
        )));
    }
    Ok(bytes)
}

/// Docker's `--cpus` in billionths of a CPU.
///
/// # Errors
/// [`Error::Invalid`] for a value that is not a positive number.
pub fn parse_cpus(s: &str) -> Result<i64> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid --cpus value {s:?}")))?;
    if !n.is_finite() || n <= 0.0 || n > 1e6 {
        return Err(Error::Invalid(format!("invalid --cpus value {s:?}")));
    }
    Ok((n * 1e9) as i64)
}

/// Reads an image's config by id.
///
/// # Errors
/// A missing or corrupt config.
pub fn image_config(images: &Images, image_id: &str) -> Result<ImageConfig> {
    let id: Digest = image_id
        .parse()
        .map_err(|_| Error::Invalid(format!("bad image id {image_id:?}")))?;
    let (bytes, _) = images.config(&id)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("config of image {image_id}: {e}")))
}

/// Creates a container: resolves the image, merges its config with the flags, takes the
/// name, writes the record and makes `upper/` and `work/`. Nothing is left behind on failure.
///
/// # Errors
/// [`Error::Oci`] for an unknown image, [`Error::Invalid`] for bad flags (no command, a
/// relative `-w`), [`Error::Conflict`] for a taken name.
pub fn create(root: &Path, opts: CreateOptions) -> Result<Container> {
    let store = Store::open(root)?;
    let images = Images::new(store);
    let resolved = images.resolve(&opts.image)?;
    let image_id = resolved.id.to_string();
    let img = image_config(&images, &image_id)?;
    let ic = &img.config;
    let (entrypoint, cmd) = command_of(
        ic.entrypoint.as_deref().unwrap_or_default(),
        ic.cmd.as_deref().unwrap_or_default(),
        opts.entrypoint.as_deref(),
        &opts.args,
    );
    let mut argv: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
    if argv.is_empty() {
        return Err(Error::Invalid(
            "no command specified: the image has no ENTRYPOINT or CMD".into(),
        ));
    }
    let path = argv.remove(0);

    let mut env = ic.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={}", sandbox::DEFAULT_PATH));
    }
    for line in &opts.env_files {
        set_env(&mut env, line.clone());
    }
    for e in &opts.env {
        if let Some(kv) = env_entry(e)? {
            set_env(&mut env, kv);
        }
    }
    let working_dir = match opts.workdir.as_deref().filter(|w| !w.is_empty()) {
        Some(w) if !w.starts_with('/') => {
            return Err(Error::Invalid(format!(
                "the working directory '{w}' is invalid, it needs to be an absolute path"
            )));
        }
        Some(w) => w.to_string(),
        None => ic
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
    };
    let id = new_id()?;
    let mut config = opts.config;
    config.env = env;
    config.working_dir = working_dir;
    config.user = opts
        .user
        .clone()
        .unwrap_or_else(|| ic.user.clone().unwrap_or_default());
    config.hostname = opts
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| id[..12].to_string());
    config.entrypoint = entrypoint;
    config.cmd = cmd;
    let mut labels = ic.labels.clone().unwrap_or_default();
    labels.extend(parse_labels(&opts.labels));
    config.labels = labels;
    if !config.stop_signal.is_empty() {
        crate::lifecycle::parse_signal(&config.stop_signal)?;
    }
    if config.stop_signal.is_empty() {
        config.stop_signal = ic.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into());
    }
    if config.network_mode.is_empty() {
        config.network_mode = "bridge".into();
    }
    let mode: NetworkMode = config.network_mode.parse()?;
    config.network_mode = mode.as_str().into();
    config.exposed_ports = ic
        .exposed_ports
        .as_ref()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    config.port_bindings = opts.publish.clone();
    if config.publish_all {
        config
            .port_bindings
            .extend(crate::net::publish_all(&config.exposed_ports)?);
    }
    let mut image_layers: Vec<PathBuf> = Vec::new();
    for d in img.rootfs.diff_ids.iter().rev() {
        let diff = d
            .parse::<Digest>()
            .map_err(|_| Error::Invalid(format!("bad layer id {d:?} in the image")))?;
        image_layers.extend(images.store().layer_dirs(&diff)?);
    }
    let cstore = ContainerStore::open(root)?;
    // --volumes-from: the other containers' mounts (not owned: never removed by rm -v). They
    // cover the image's VOLUMEs; a flag on the same target wins (docker's order).
    let mut inherited = Vec::new();
    for spec in &config.volumes_from {
        inherited.extend(crate::volume::volumes_from(&cstore, spec)?);
    }
    let image_volumes: Vec<String> = ic
        .volumes
        .as_ref()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let volumes = Volumes::new(root);
    let mounts = crate::volume::prepare_with(
        &volumes,
        &LayerView::new(image_layers),
        &image_volumes,
        &opts.mounts,
        &inherited,
    )?;
    config.mounts = mounts;
    let config_mounts = config.mounts.clone();
    let c = Container {
        id,
        name: String::new(),
        created: strata_oci::image::now_rfc3339(),
        image: opts.image.clone(),
        image_id,
        path,
        args: argv,
        layers: img.rootfs.diff_ids.clone(),
        config,
        state: State::default(),
    };
    let c = match cstore.create(c, opts.name.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // The anonymous volumes made for it go again.
            let _ = volumes.remove_anonymous(&config_mounts, &Default::default());
            return Err(e);
        }
    };
    let dir = cstore.container_dir(&c.id);
    for d in ["upper", "work", "etc", "bundle", "bundle/rootfs"] {
        let p = dir.join(d);
        if let Err(e) = std::fs::create_dir(&p) {
            let _ = cstore.remove(&c);
            return Err(Error::io(&p, e));
        }
    }
    Ok(c)
}

/// Docker's `/etc/hosts` for a container named `hostname`.
fn hosts_file(hostname: &str, network: &str) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    // slirp4netns gives the container 10.0.2.100; otherwise the name is a loopback address.
    let ip = if network == "bridge" {
        "10.0.2.100"
    } else {
        "127.0.1.1"
    };
    s.push_str(&format!("{ip}\t{hostname}\n"));
    s
}

/// Writes `hosts`, `hostname` and `resolv.conf` under `dir` and binds them into the spec.
fn etc_files(spec: &mut Spec, dir: &Path, c: &Container) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let host_resolv = match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("/etc/resolv.conf", e)),
    };
    let net = c.config.network_mode.as_str();
    let mode: NetworkMode = net.parse()?;
    let slirp = crate::net::slirp::find().is_some();
    let resolv = crate::net::resolv_conf(mode, slirp, &host_resolv);
    let hosts = if net == "host" {
        std::fs::read_to_string("/etc/hosts")
            .unwrap_or_else(|_| hosts_file(&c.config.hostname, net))
    } else {
        hosts_file(&c.config.hostname, net)
    };
    for (name, content) in [
        ("hosts", hosts),
        ("hostname", format!("{}\n", c.config.hostname)),
        ("resolv.conf", resolv),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
        sandbox::add_bind(spec, &path, &format!("/etc/{name}"), false);
    }
    Ok(())
}

/// Sets `linux.resources` from `-m`, `--cpus` and `--pids-limit` (the sandbox's cgroup then
/// applies them) and, when there is a limit, `linux.cgroupsPath`.
fn set_resources(spec: &mut Spec, c: &Container) -> Result<()> {
    let cfg = &c.config;
    let r = sandbox::Resources {
        memory: cfg.memory,
        nano_cpus: cfg.nano_cpus,
        pids_limit: cfg.pids_limit,
    };
    if r == sandbox::Resources::default() {
        return Ok(());
    }
    sandbox::set_resources(spec, &r)?;
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(format!("strata-{}", c.id))));
    }
    Ok(())
}

/// Where `--init`'s init is bound in the container (docker's path).
const INIT_PATH: &str = "/sbin/docker-init";

/// A statically linked init on the host for `--init` (tini as docker ships it, or podman's
/// catatonit); both take the command after `--`.
fn find_init() -> Option<PathBuf> {
    [
        "/usr/bin/docker-init",
        "/usr/bin/tini-static",
        "/usr/libexec/podman/catatonit",
        "/usr/bin/catatonit",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// The home of `uid` in the image's `/etc/passwd` (`/root` when unknown, as runc).
fn home_of(view: &LayerView, uid: u32) -> String {
    view.read_file("etc/passwd")
        .ok()
        .flatten()
        .and_then(|b| {
            strata_executor::fs::user::parse_passwd(&String::from_utf8_lossy(&b))
                .into_iter()
                .find(|p| p.uid == uid)
                .map(|p| p.home)
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".into())
}

/// The spec of a container's next start: docker's default profile on the overlay root,
/// with the container's command, user, env, cwd, host name, `/etc` files, mounts, resources
/// and capability flags. `extra_mounts` are binds decided by the caller (volumes).
///
/// # Errors
/// A missing layer, an unknown user, writing the `/etc` files.
pub fn build_spec(store: &Store, cstore: &ContainerStore, c: &Container) -> Result<Spec> {
    let dir = cstore.container_dir(&c.id);
    let mut lower = Vec::new();
    let mut view_dirs = Vec::new();
    for d in c.layers.iter().rev() {
        let diff: Digest = d
            .parse()
            .map_err(|_| Error::Invalid(format!("bad layer id {d:?} in the record")))?;
        if store.layer(&diff)?.is_none() {
            return Err(Error::Invalid(format!(
                "layer {diff} of image {} is missing from the store",
                c.image
            )));
        }
        lower.extend(
            store
                .layer_short_links(&diff)?
                .into_iter()
                .map(PathBuf::from),
        );
        view_dirs.extend(store.layer_dirs(&diff)?);
    }
    lower.push(sandbox::stub_lower(&store.root().join("sandbox"))?);
    let view = LayerView::new(view_dirs);
    let (uid, gid, groups) = if c.config.user.is_empty() {
        (0, 0, Vec::new())
    } else {
        strata_executor::fs::resolve_user(&view, &c.config.user)?
    };
    let mut env = c.config.env.clone();
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(1.min(env.len()), format!("HOSTNAME={}", c.config.hostname));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(&view, uid)));
    }
    if c.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let mut argv = vec![c.path.clone()];
    argv.extend(c.args.iter().cloned());
    let init = if c.config.init {
        let host = find_init().ok_or_else(|| {
            Error::Invalid(
                "--init needs a static init on the host: Debian's tini (/usr/bin/tini-static) \
                 or catatonit"
                    .into(),
            )
        })?;
        argv.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
        Some(host)
    } else {
        None
    };
    let mode: NetworkMode = c.config.network_mode.parse()?;
    let network = crate::net::netns_kinds(mode);
    let rootfs = dir.join("bundle").join("rootfs");
    let mut spec = sandbox::default_spec(
        &rootfs,
        argv,
        env,
        &c.config.working_dir,
        uid,
        gid,
        groups,
        &c.config.hostname,
        network,
    )?;
    sandbox::set_overlay(
        &mut spec,
        &Overlay {
            lower,
            upper: dir.join("upper"),
            work: dir.join("work"),
            chdir: Some(store.root().to_path_buf()),
        },
    );
    etc_files(&mut spec, &dir.join("etc"), c)?;
    if let Some(host) = &init {
        sandbox::add_bind(&mut spec, host, INIT_PATH, true);
    }
    crate::volume::add_to_spec(&mut spec, &Volumes::new(store.root()), &c.config.mounts)?;
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(c.config.tty));
    }
    if let Some(r) = spec.root_mut() {
        r.set_readonly(Some(c.config.read_only));
    }
    set_resources(&mut spec, c)?;
    if c.config.privileged {
        sandbox::make_privileged(&mut spec);
    }
    if !c.config.cap_add.is_empty() || !c.config.cap_drop.is_empty() {
        sandbox::adjust_capabilities(&mut spec, &c.config.cap_add, &c.config.cap_drop)?;
    }
    let mut ann = spec.annotations().clone().unwrap_or_default();
    ann.insert("org.strata.container.id".into(), c.id.clone());
    ann.insert("org.strata.container.name".into(), c.name.clone());
    spec.set_annotations(Some(ann));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_combine_like_docker() {
        let ep = v(&["/entry"]);
        let cmd = v(&["default"]);
        assert_eq!(command_of(&ep, &cmd, None, &[]), (ep.clone(), cmd.clone()));
        assert_eq!(
            command_of(&ep, &cmd, None, &v(&["x"])),
            (ep.clone(), v(&["x"]))
        );
        // --entrypoint drops the image's CMD.
        assert_eq!(
            command_of(&ep, &cmd, Some("sh"), &[]),
            (v(&["sh"]), Vec::new())
        );
        assert_eq!(
            command_of(&ep, &cmd, Some(""), &v(&["ls"])),
            (Vec::new(), v(&["ls"]))
        );
    }

    #[test]
    fn env_file_and_overrides() {
        let lines = parse_env_file("f", "# c\n\nA=1\nB=x=y\n").unwrap();
        assert_eq!(lines, v(&["A=1", "B=x=y"]));
        assert!(parse_env_file("f", "=bad\n").is_err());
        let mut env = v(&["PATH=/bin", "A=0"]);
        set_env(&mut env, "A=2".into());
        set_env(&mut env, "C=3".into());
        assert_eq!(env, v(&["PATH=/bin", "A=2", "C=3"]));
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5GB").unwrap(), 3 << 29);
        assert!(parse_memory("1k").is_err());
        assert!(parse_memory("x").is_err());
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert!(parse_cpus("-1").is_err());
    }
}
