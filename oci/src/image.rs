//! Image JSON: building and parsing image configs, manifests and indexes with `oci-spec`.
//!
//! - Reading accepts both OCI and docker schema2 media types (manifest, index/manifest list,
//!   config, layers); [`layer_compression`] maps a layer media type to its compression.
//! - Writing uses OCI media types. Documents are serialised through `serde_json::Value`, whose
//!   maps are sorted, so equal content gives equal bytes (and equal digests) even though
//!   `oci-spec` keeps labels and ports in hash maps.
//! - Docker extensions that `oci-spec`'s `Config` does not model (`OnBuild`, `Healthcheck`,
//!   `Shell`) are kept as raw JSON in the serialised config ([`ConfigExtras`]).
//! - [`apply_changes`] applies `docker import --change` lines: each line is parsed with
//!   strata-parser as a Dockerfile instruction (after a `FROM scratch`), expanded with the
//!   config's environment like docker's `BuildFromConfig`, and mapped onto the config.
//! - [`now_rfc3339`] formats the current time the way docker writes `created`.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{
    Arch, Config, Descriptor, History, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
    Os, RootFs,
};
use serde::Serialize;
use strata_cas::{Compression, Digest};
use strata_parser::Instruction;
use strata_parser::shell::Lexer;

use crate::error::{Error, Result};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer media type.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer media type.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer media type.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer media type.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer media type (docker's containerd store uses it for loaded images).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// The annotation naming an image in an OCI index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation holding the full image name in an OCI index.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// The compression of a layer media type (OCI and docker, including non-distributable ones).
///
/// # Errors
///
/// [`Error::UnsupportedMediaType`] for anything that is not a tar layer.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    match media_type {
        OCI_LAYER | DOCKER_LAYER | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
            Ok(Compression::None)
        }
        OCI_LAYER_GZIP
        | DOCKER_LAYER_GZIP
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => Ok(Compression::Gzip),
        OCI_LAYER_ZSTD
        | "application/vnd.docker.image.rootfs.diff.tar.zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Ok(Compression::Zstd),
        other => Err(Error::UnsupportedMediaType(other.to_string())),
    }
}

/// The OCI layer media type for a compression.
pub fn layer_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => OCI_LAYER,
        Compression::Gzip => OCI_LAYER_GZIP,
        Compression::Zstd => OCI_LAYER_ZSTD,
    }
}

/// Serialises a document with sorted keys (deterministic bytes).
///
/// # Errors
///
/// [`Error::BadJson`] when the value cannot be serialised.
pub fn canonical_json<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(v).map_err(|e| Error::json(what, e))?;
    serde_json::to_vec(&value).map_err(|e| Error::json(what, e))
}

/// A parsed manifest-like document.
#[derive(Debug, Clone)]
pub enum Document {
    /// An image manifest (OCI or docker schema2).
    Manifest(Box<ImageManifest>),
    /// An index (OCI index or docker manifest list).
    Index(Box<ImageIndex>),
}

/// Parses a manifest or index, telling them apart by `mediaType` (or by the presence of
/// `manifests` when it is absent).
///
/// # Errors
///
/// [`Error::BadJson`] for malformed JSON, [`Error::UnsupportedMediaType`] for other documents.
pub fn parse_document(what: &str, bytes: &[u8]) -> Result<Document> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))?;
    let mt = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    let is_index = match mt {
        OCI_INDEX | DOCKER_MANIFEST_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" => v.get("manifests").is_some(),
        other => return Err(Error::UnsupportedMediaType(other.to_string())),
    };
    if is_index {
        let idx: ImageIndex = serde_json::from_value(v).map_err(|e| Error::json(what, e))?;
        Ok(Document::Index(Box::new(idx)))
    } else {
        let m: ImageManifest = serde_json::from_value(v).map_err(|e| Error::json(what, e))?;
        Ok(Document::Manifest(Box::new(m)))
    }
}

/// Parses a manifest (not an index).
///
/// # Errors
///
/// As [`parse_document`], and [`Error::UnsupportedMediaType`] for an index.
pub fn parse_manifest(what: &str, bytes: &[u8]) -> Result<ImageManifest> {
    match parse_document(what, bytes)? {
        Document::Manifest(m) => Ok(*m),
        Document::Index(_) => Err(Error::UnsupportedMediaType(format!(
            "{what}: an index where a manifest was expected"
        ))),
    }
}

/// Parses an image config (OCI or docker).
///
/// # Errors
///
/// [`Error::BadJson`].
pub fn parse_config(what: &str, bytes: &[u8]) -> Result<ImageConfiguration> {
    serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))
}

/// The config's `rootfs.diff_ids` as validated digests.
///
/// # Errors
///
/// [`Error::BadJson`] when one is not a valid sha256 digest.
pub fn diff_ids(what: &str, config: &ImageConfiguration) -> Result<Vec<Digest>> {
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse::<Digest>().map_err(|e| Error::json(what, e)))
        .collect()
}

/// Converts an `oci-spec` digest into a store digest (sha256 only).
///
/// # Errors
///
/// [`Error::BadJson`] for other algorithms or malformed values.
pub fn to_digest(what: &str, d: &oci_spec::image::Digest) -> Result<Digest> {
    d.to_string()
        .parse::<Digest>()
        .map_err(|e| Error::json(what, e))
}

/// Checks that `what` has the digest it should.
///
/// # Errors
///
/// [`Error::DigestMismatch`] naming both digests.
pub fn expect_digest(what: &str, expected: &Digest, actual: &Digest) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(Error::DigestMismatch {
        what: what.to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

/// Converts a store digest into an `oci-spec` digest.
///
/// # Errors
///
/// [`Error::BadJson`] if `oci-spec` refuses it (it should not).
pub fn from_digest(d: &Digest) -> Result<oci_spec::image::Digest> {
    d.to_string()
        .parse::<oci_spec::image::Digest>()
        .map_err(|e| Error::json("digest", e))
}

/// A descriptor with the given media type, digest and size.
///
/// # Errors
///
/// As [`from_digest`].
pub fn descriptor(media_type: &str, d: &Digest, size: u64) -> Result<Descriptor> {
    Ok(Descriptor::new(
        MediaType::from(media_type),
        size,
        from_digest(d)?,
    ))
}

/// Builds an OCI manifest for a config and layer descriptors.
///
/// # Errors
///
/// [`Error::BadJson`] if the builder refuses the parts.
pub fn build_manifest(config: Descriptor, layers: Vec<Descriptor>) -> Result<ImageManifest> {
    oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| Error::json("manifest", e))
}

/// Docker extensions of the config that `oci-spec` does not model, kept as raw JSON and merged
/// into the `config` object when serialising.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigExtras {
    /// `OnBuild` triggers.
    pub on_build: Vec<String>,
    /// `Healthcheck`, as docker writes it.
    pub healthcheck: Option<serde_json::Value>,
    /// Top-level `comment` (docker's image comment).
    pub comment: Option<String>,
}

/// Serialises an image config with sorted keys, merging [`ConfigExtras`].
///
/// # Errors
///
/// [`Error::BadJson`].
pub fn config_bytes(config: &ImageConfiguration, extras: &ConfigExtras) -> Result<Vec<u8>> {
    let mut v = serde_json::to_value(config).map_err(|e| Error::json("image config", e))?;
    if let Some(obj) = v.as_object_mut() {
        if let Some(c) = &extras.comment {
            obj.insert("comment".into(), c.clone().into());
        }
        if !extras.on_build.is_empty() || extras.healthcheck.is_some() {
            let cfg = obj
                .entry("config")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let Some(cfg) = cfg.as_object_mut() {
                if !extras.on_build.is_empty() {
                    cfg.insert("OnBuild".into(), extras.on_build.clone().into());
                }
                if let Some(h) = &extras.healthcheck {
                    cfg.insert("Healthcheck".into(), h.clone());
                }
            }
        }
    }
    serde_json::to_vec(&v).map_err(|e| Error::json("image config", e))
}

/// The current time as RFC 3339 with nanoseconds in UTC (`2024-05-01T12:00:00.123456789Z`).
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_nanos())
}

/// Formats seconds since the epoch plus nanoseconds as RFC 3339 UTC.
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Builds the config of an imported image: one layer, linux/amd64, created now, one history
/// entry whose comment is `message` (docker: `Imported from -`), with `--change` lines applied.
///
/// # Errors
///
/// [`Error::BadChange`] for an invalid or unsupported change line.
pub fn import_config(
    diff_id: &Digest,
    created: &str,
    changes: &[String],
    message: &str,
) -> Result<(ImageConfiguration, ConfigExtras)> {
    let mut config = Config::default();
    let mut extras = ConfigExtras {
        comment: Some(message.to_string()),
        ..ConfigExtras::default()
    };
    apply_changes(&mut config, &mut extras, changes)?;
    let history = History::default();
    let mut history = history;
    history.set_created(Some(created.to_string()));
    history.set_comment(Some(message.to_string()));
    let mut rootfs = RootFs::default();
    rootfs.set_diff_ids(vec![diff_id.to_string()]);
    let mut ic = ImageConfiguration::default();
    ic.set_created(Some(created.to_string()));
    ic.set_architecture(Arch::Amd64);
    ic.set_os(Os::Linux);
    ic.set_config(Some(config));
    ic.set_rootfs(rootfs);
    ic.set_history(Some(vec![history]));
    Ok((ic, extras))
}

fn bad_change(change: &str, reason: impl Into<String>) -> Error {
    Error::BadChange {
        change: change.to_string(),
        reason: reason.into(),
    }
}

/// The shell docker prepends to shell-form CMD/ENTRYPOINT.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

fn exec_form(cmd_line: &[String], prepend_shell: bool) -> Vec<String> {
    if prepend_shell {
        let mut v: Vec<String> = DEFAULT_SHELL.iter().map(|s| s.to_string()).collect();
        v.push(cmd_line.join(" "));
        v
    } else {
        cmd_line.to_vec()
    }
}

/// Applies `--change` Dockerfile lines to a config, as `docker import --change` does: CMD,
/// ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR.
///
/// # Errors
///
/// [`Error::BadChange`] for a line that does not parse or is another instruction.
pub fn apply_changes(
    config: &mut Config,
    extras: &mut ConfigExtras,
    changes: &[String],
) -> Result<()> {
    let lexer = Lexer::new('\\');
    for change in changes {
        let src = format!("FROM scratch\n{change}\n");
        let df =
            strata_parser::parse_dockerfile(&src).map_err(|e| bad_change(change, e.to_string()))?;
        let instructions: Vec<&Instruction> = df
            .stages
            .iter()
            .flat_map(|s| s.instructions.iter())
            .collect();
        if df.stages.len() != 1 {
            return Err(bad_change(change, "FROM is not allowed"));
        }
        for ins in instructions {
            let env: BTreeMap<String, String> = config
                .env()
                .iter()
                .flatten()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let ins = ins
                .expand(&lexer, &env)
                .map_err(|e| bad_change(change, e.to_string()))?;
            apply_one(config, extras, change, &ins)?;
        }
    }
    Ok(())
}

fn apply_one(
    config: &mut Config,
    extras: &mut ConfigExtras,
    change: &str,
    ins: &Instruction,
) -> Result<()> {
    match ins {
        Instruction::Cmd(c) => {
            config.set_cmd(Some(exec_form(&c.cmd_line, c.prepend_shell)));
        }
        Instruction::Entrypoint(c) => {
            config.set_entrypoint(Some(exec_form(&c.cmd_line, c.prepend_shell)));
        }
        Instruction::Env(e) => {
            let mut env: Vec<String> = config.env().clone().unwrap_or_default();
            for kv in &e.vars {
                let prefix = format!("{}=", kv.key);
                let entry = format!("{}={}", kv.key, kv.value);
                match env.iter_mut().find(|x| x.starts_with(&prefix)) {
                    Some(slot) => *slot = entry,
                    None => env.push(entry),
                }
            }
            config.set_env(Some(env));
        }
        Instruction::Expose(e) => {
            let mut ports = config.exposed_ports().clone().unwrap_or_default();
            for p in &e.ports {
                let p = if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                };
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
            ports.sort();
            config.set_exposed_ports(Some(ports));
        }
        Instruction::Label(l) => {
            let mut labels: HashMap<String, String> = config.labels().clone().unwrap_or_default();
            for kv in &l.labels {
                labels.insert(kv.key.clone(), kv.value.clone());
            }
            config.set_labels(Some(labels));
        }
        Instruction::User(u) => {
            config.set_user(Some(u.user.clone()));
        }
        Instruction::Volume(v) => {
            let mut vols = config.volumes().clone().unwrap_or_default();
            for p in &v.volumes {
                if !vols.contains(p) {
                    vols.push(p.clone());
                }
            }
            vols.sort();
            config.set_volumes(Some(vols));
        }
        Instruction::Workdir(w) => {
            // Relative paths are relative to the previous WORKDIR, as in a build.
            let path = if w.path.starts_with('/') {
                w.path.clone()
            } else {
                let base = config.working_dir().clone().unwrap_or_else(|| "/".into());
                format!("{}/{}", base.trim_end_matches('/'), w.path)
            };
            config.set_working_dir(Some(path));
        }
        Instruction::StopSignal(s) => {
            config.set_stop_signal(Some(s.signal.clone()));
        }
        Instruction::Onbuild(o) => extras.on_build.push(o.expression.trim().to_string()),
        Instruction::Healthcheck(h) => {
            let mut v = serde_json::Map::new();
            v.insert("Test".into(), h.test.clone().into());
            let nanos = |d: &Option<std::time::Duration>| {
                d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            };
            for (k, d) in [
                ("Interval", &h.interval),
                ("Timeout", &h.timeout),
                ("StartPeriod", &h.start_period),
                ("StartInterval", &h.start_interval),
            ] {
                if let Some(n) = nanos(d) {
                    v.insert(k.into(), n.into());
                }
            }
            if let Some(r) = h.retries {
                v.insert("Retries".into(), r.into());
            }
            extras.healthcheck = Some(serde_json::Value::Object(v));
        }
        other => {
            return Err(bad_change(
                change,
                format!("{} is not supported by import", other.keyword()),
            ));
        }
    }
    Ok(())
}

/// Reads the docker extensions back from a serialised config.
pub fn config_extras(raw: &serde_json::Value) -> ConfigExtras {
    let cfg = raw.get("config");
    ConfigExtras {
        on_build: cfg
            .and_then(|c| c.get("OnBuild"))
            .and_then(|o| o.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        healthcheck: cfg.and_then(|c| c.get("Healthcheck")).cloned(),
        comment: raw
            .get("comment")
            .and_then(|c| c.as_str())
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_700_000_000, 0), "2023-11-14T22:13:20.000000000Z");
    }

    #[test]
    fn media_types() {
        assert_eq!(
            layer_compression(DOCKER_LAYER_GZIP).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            layer_compression(OCI_LAYER_ZSTD).unwrap(),
            Compression::Zstd
        );
        assert_eq!(layer_compression(OCI_LAYER).unwrap(), Compression::None);
        assert!(matches!(
            layer_compression("text/plain"),
            Err(Error::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn import_config_with_changes() {
        let changes: Vec<String> = [
            r#"CMD ["sh"]"#,
            "ENV A=1 B=$A",
            "EXPOSE 80 53/udp",
            "LABEL k=v",
            "USER nobody",
            "VOLUME /data",
            "WORKDIR /app",
            "WORKDIR sub",
            "STOPSIGNAL SIGKILL",
            "ONBUILD RUN echo hi",
            "ENTRYPOINT exec me",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (cfg, extras) =
            import_config(&d('a'), "2024-01-01T00:00:00Z", &changes, "Imported from -").unwrap();
        let bytes = config_bytes(&cfg, &extras).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let c = &v["config"];
        assert_eq!(c["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(c["Env"], serde_json::json!(["A=1", "B="]));
        assert_eq!(
            c["ExposedPorts"],
            serde_json::json!({"53/udp": {}, "80/tcp": {}})
        );
        assert_eq!(c["Labels"], serde_json::json!({"k": "v"}));
        assert_eq!(c["User"], "nobody");
        assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
        assert_eq!(c["WorkingDir"], "/app/sub");
        assert_eq!(c["StopSignal"], "SIGKILL");
        assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo hi"]));
        assert_eq!(
            c["Entrypoint"],
            serde_json::json!(["/bin/sh", "-c", "exec me"])
        );
        assert_eq!(v["architecture"], "amd64");
        assert_eq!(v["os"], "linux");
        assert_eq!(v["history"][0]["comment"], "Imported from -");
        assert_eq!(v["rootfs"]["diff_ids"][0], d('a').to_string());
        // Deterministic bytes.
        assert_eq!(bytes, config_bytes(&cfg, &extras).unwrap());
        let parsed = parse_config("c", &bytes).unwrap();
        assert_eq!(diff_ids("c", &parsed).unwrap(), vec![d('a')]);
        assert_eq!(config_extras(&v).on_build, vec!["RUN echo hi".to_string()]);
    }

    #[test]
    fn bad_changes_are_refused() {
        for bad in ["RUN true", "FROM x", "COPY a b", "NOPE x"] {
            let r = import_config(&d('a'), "t", &[bad.to_string()], "m");
            assert!(matches!(r, Err(Error::BadChange { .. })), "{bad}");
        }
    }

    #[test]
    fn documents_parse_both_flavours() {
        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":2,"digest":"{}"}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","size":3,"digest":"{}"}}]}}"#,
            d('b'),
            d('c')
        );
        let m = parse_manifest("m", docker.as_bytes()).unwrap();
        assert_eq!(to_digest("m", m.config().digest()).unwrap(), d('b'));
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","size":2,"digest":"{}"}}]}}"#,
            d('b')
        );
        assert!(matches!(
            parse_document("i", idx.as_bytes()).unwrap(),
            Document::Index(_)
        ));
        let built = build_manifest(
            descriptor(OCI_CONFIG, &d('b'), 2).unwrap(),
            vec![descriptor(OCI_LAYER_GZIP, &d('c'), 3).unwrap()],
        )
        .unwrap();
        let bytes = canonical_json("m", &built).unwrap();
        let back = parse_manifest("m", &bytes).unwrap();
        assert_eq!(back, built);
        assert!(parse_document("x", br#"{"mediaType":"text/plain"}"#).is_err());
    }
}
