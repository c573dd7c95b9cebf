//! Docker's mount flags, parsed into typed [`MountRequest`]s.
//!
//! Two spellings reach the same requests:
//! - `-v SRC:DST[:OPTS]` / `-v DST` ([`parse_volume_flag`]): an absolute `SRC` is a bind of a
//!   host path, any other `SRC` a named volume, no `SRC` an anonymous volume. `OPTS` is a
//!   comma list of `ro`/`rw`, SELinux labels (`z`, `Z`, accepted and ignored), `nocopy` and a
//!   bind propagation (`rprivate`, `shared`, ...).
//! - `--mount type=bind|volume|tmpfs,source=...,target=...,...` ([`parse_mount_flag`]), with
//!   docker's keys and aliases (`src`, `dst`/`destination`, `ro`/`readonly[=bool]`,
//!   `bind-propagation`, `volume-nocopy`, `tmpfs-size`, `tmpfs-mode`).
//! - `--tmpfs DST[:OPTS]` ([`parse_tmpfs_flag`]).
//!
//! The requests are stored in the container record (serde) and turned into sandbox mounts by
//! [`crate::volume::prepare`]. Nothing here touches the filesystem.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bind propagation of a bind mount (`mount(8)` shared subtrees).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// `private`
    Private,
    /// `rprivate` (docker's default)
    Rprivate,
    /// `shared`
    Shared,
    /// `rshared`
    Rshared,
    /// `slave`
    Slave,
    /// `rslave`
    Rslave,
}

impl Propagation {
    /// The propagation named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "private" => Self::Private,
            "rprivate" => Self::Rprivate,
            "shared" => Self::Shared,
            "rshared" => Self::Rshared,
            "slave" => Self::Slave,
            "rslave" => Self::Rslave,
            _ => return None,
        })
    }

    /// The name, as `mount(8)` and the OCI spec spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Rprivate => "rprivate",
            Self::Shared => "shared",
            Self::Rshared => "rshared",
            Self::Slave => "slave",
            Self::Rslave => "rslave",
        }
    }
}

/// One mount a container asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountRequest {
    /// A host file or directory bound into the container.
    Bind {
        /// Absolute host path.
        source: String,
        /// Absolute path in the container.
        target: String,
        /// Mounted read-only.
        readonly: bool,
        /// Bind propagation, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        propagation: Option<Propagation>,
        /// Create a missing host directory (`-v` does, `--mount` refuses a missing source).
        #[serde(default)]
        create_missing: bool,
    },
    /// A volume under `ROOT/volumes/`.
    Volume {
        /// The volume's name; `None` for an anonymous volume (named when the container is
        /// created, see [`crate::volume::prepare`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Absolute path in the container.
        target: String,
        /// Mounted read-only.
        readonly: bool,
        /// Don't copy the image's content at `target` into a new empty volume.
        nocopy: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes (`None`: the kernel's default, half of RAM).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// Mode of the tmpfs root (`None`: 1777, as docker does).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
}

impl MountRequest {
    /// The path in the container.
    pub fn target(&self) -> &str {
        match self {
            Self::Bind { target, .. }
            | Self::Volume { target, .. }
            | Self::Tmpfs { target, .. } => target,
        }
    }

    /// Whether the mount is read-only.
    pub fn readonly(&self) -> bool {
        match self {
            Self::Bind { readonly, .. } | Self::Volume { readonly, .. } => *readonly,
            Self::Tmpfs { .. } => false,
        }
    }

    /// Docker's `Type` word (`bind`, `volume`, `tmpfs`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "bind",
            Self::Volume { .. } => "volume",
            Self::Tmpfs { .. } => "tmpfs",
        }
    }
}

/// Whether `name` is a valid volume name (docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn valid_volume_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn invalid(flag: &str, spec: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("invalid {flag} {spec:?}: {why}"))
}

/// Checks and cleans a container path: absolute, not `/`, `.`/`..`-free after cleaning.
fn clean_target(flag: &str, spec: &str, target: &str) -> Result<String> {
    if target.is_empty() {
        return Err(invalid(flag, spec, "missing the container path (target)"));
    }
    if !target.starts_with('/') {
        return Err(invalid(
            flag,
            spec,
            format!("the container path {target:?} is not absolute"),
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(invalid(flag, spec, "the container path can't be '/'"));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Checks a bind source: an absolute host path (kept as given, minus trailing slashes).
fn clean_source(flag: &str, spec: &str, source: &str) -> Result<String> {
    if !source.starts_with('/') {
        return Err(invalid(
            flag,
            spec,
            format!("the bind source {source:?} is not an absolute host path"),
        ));
    }
    let trimmed = source.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_string())
}

/// Parses `-v`/`--volume`: `SRC:DST[:OPTS]` or `DST` (an anonymous volume).
///
/// An absolute `SRC` is a host path (bind); otherwise `SRC` must be a valid volume name (a
/// relative host path like `./data` is refused with a hint, as docker does).
///
/// # Errors
/// [`Error::Invalid`] naming the flag and what is wrong.
pub fn parse_volume_flag(spec: &str) -> Result<MountRequest> {
    const FLAG: &str = "-v";
    if spec.is_empty() {
        return Err(invalid(FLAG, spec, "empty volume specification"));
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [dst] => (None, *dst, None),
        // `/dst:ro`: an anonymous volume with options.
        [a, b] if a.starts_with('/') && !b.starts_with('/') => (None, *a, Some(*b)),
        [a, b] => (Some(*a), *b, None),
        [a, b, c] => (Some(*a), *b, Some(*c)),
        _ => return Err(invalid(FLAG, spec, "too many ':'-separated fields")),
    };
    let target = clean_target(FLAG, spec, target)?;
    let mut readonly = false;
    let mut nocopy = false;
    let mut propagation = None;
    let mut seen_mode = false;
    for opt in opts.into_iter().flat_map(|o| o.split(',')) {
        match opt {
            "ro" | "rw" => {
                if seen_mode {
                    return Err(invalid(FLAG, spec, "both 'ro' and 'rw' given"));
                }
                seen_mode = true;
                readonly = opt == "ro";
            }
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            "nocopy" => nocopy = true,
            "" => return Err(invalid(FLAG, spec, "empty option")),
            p => match Propagation::parse(p) {
                Some(p) => propagation = Some(p),
                None => return Err(invalid(FLAG, spec, format!("unknown option {p:?}"))),
            },
        }
    }
    if propagation.is_some() && !source.is_some_and(|src| src.starts_with('/')) {
        return Err(invalid(
            FLAG,
            spec,
            "a propagation option needs a host path",
        ));
    }
    match source {
        None => Ok(MountRequest::Volume {
            name: None,
            target,
            readonly,
            nocopy,
        }),
        Some(src) if src.starts_with('/') => {
            if nocopy {
                return Err(invalid(
                    FLAG,
                    spec,
                    "'nocopy' applies to volumes, not binds",
                ));
            }
            Ok(MountRequest::Bind {
                source: clean_source(FLAG, spec, src)?,
                target,
                readonly,
                propagation,
                create_missing: true,
            })
        }
        Some(src) => {
            if !valid_volume_name(src) {
                return Err(invalid(
                    FLAG,
                    spec,
                    format!(
                        "{src:?} includes invalid characters for a local volume name, only \
                         \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a \
                         host directory, use an absolute path"
                    ),
                ));
            }
            Ok(MountRequest::Volume {
                name: Some(src.to_string()),
                target,
                readonly,
                nocopy,
            })
        }
    }
}

/// Splits a `--mount` value into fields the way docker's CSV reader does: commas separate,
/// a double-quoted field may contain commas, `""` inside quotes is a quote.
fn split_csv(spec: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = spec.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' => quoted = true,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(invalid("--mount", spec, "unterminated quote"));
    }
    fields.push(cur);
    Ok(fields)
}

fn parse_bool(flag: &str, spec: &str, key: &str, value: Option<&str>) -> Result<bool> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(v) => Err(invalid(
            flag,
            spec,
            format!("invalid value {v:?} for {key}: want true or false"),
        )),
    }
}

/// Parses a size like docker's `RAMInBytes`: a number with an optional `b`, `k`, `m`, `g`,
/// `t` suffix (`kb`, `mib`, ... accepted), binary multiples.
///
/// # Errors
/// [`Error::Invalid`] for anything else.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        _ => return Err(Error::Invalid(format!("invalid size: {s:?}"))),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid size: {s:?}")))?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(Error::Invalid(format!("invalid size: {s:?}")));
    }
    Ok(bytes as u64)
}

fn parse_mode(flag: &str, spec: &str, value: &str) -> Result<u32> {
    u32::from_str_radix(value, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            invalid(
                flag,
                spec,
                format!("invalid tmpfs mode {value:?}: want octal"),
            )
        })
}

/// Parses `--mount` (docker's keys: `type`, `source`/`src`, `target`/`dst`/`destination`,
/// `readonly`/`ro`, `bind-propagation`, `volume-nocopy`, `tmpfs-size`, `tmpfs-mode`;
/// `consistency`, `bind-recursive=enabled`, `volume-driver=local` accepted). `type` defaults
/// to `volume`, as in docker.
///
/// # Errors
/// [`Error::Invalid`] naming the key and what is wrong (unknown key, missing target, relative
/// bind source, option of another mount type, ...).
pub fn parse_mount_flag(spec: &str) -> Result<MountRequest> {
    const FLAG: &str = "--mount";
    let mut kind = "volume".to_string();
    let mut source: Option<String> = None;
    let mut target: Option<String> = None;
    let mut readonly = false;
    let mut propagation = None;
    let mut nocopy = None;
    let mut size = None;
    let mut mode = None;
    for field in split_csv(spec)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: &Option<String>| -> Result<String> {
            v.clone()
                .ok_or_else(|| invalid(FLAG, spec, format!("{key} needs a value ({key}=...)")))
        };
        match key.as_str() {
            "type" => kind = need(&value)?,
            "source" | "src" => source = Some(need(&value)?),
            "target" | "dst" | "destination" => target = Some(need(&value)?),
            "readonly" | "ro" => readonly = parse_bool(FLAG, spec, &key, value.as_deref())?,
            "bind-propagation" => {
                let v = need(&value)?;
                propagation = Some(Propagation::parse(&v).ok_or_else(|| {
                    invalid(FLAG, spec, format!("invalid bind-propagation {v:?}"))
                })?);
            }
            "volume-nocopy" => nocopy = Some(parse_bool(FLAG, spec, &key, value.as_deref())?),
            "tmpfs-size" => size = Some(parse_size(&need(&value)?)?),
            "tmpfs-mode" => mode = Some(parse_mode(FLAG, spec, &need(&value)?)?),
            "consistency" => {}
            "bind-recursive" if value.as_deref() == Some("enabled") => {}
            "volume-driver" if value.as_deref() == Some("local") => {}
            "volume-driver" => {
                return Err(invalid(
                    FLAG,
                    spec,
                    "only the \"local\" volume driver exists",
                ));
            }
            "" => return Err(invalid(FLAG, spec, "empty field")),
            other => return Err(invalid(FLAG, spec, format!("unknown key {other:?}"))),
        }
    }
    let target_raw = target.ok_or_else(|| invalid(FLAG, spec, "target is required"))?;
    let target = clean_target(FLAG, spec, &target_raw)?;
    let not_for = |what: &str| invalid(FLAG, spec, format!("{what} is not valid for type={kind}"));
    match kind.as_str() {
        "bind" => {
            if nocopy.is_some() {
                return Err(not_for("volume-nocopy"));
            }
            if size.is_some() || mode.is_some() {
                return Err(not_for("tmpfs-size/tmpfs-mode"));
            }
            let source =
                source.ok_or_else(|| invalid(FLAG, spec, "source is required for a bind"))?;
            Ok(MountRequest::Bind {
                source: clean_source(FLAG, spec, &source)?,
                target,
                readonly,
                propagation,
                create_missing: false,
            })
        }
        "volume" => {
            if propagation.is_some() {
                return Err(not_for("bind-propagation"));
            }
            if size.is_some() || mode.is_some() {
                return Err(not_for("tmpfs-size/tmpfs-mode"));
            }
            let name = match source.filter(|s| !s.is_empty()) {
                Some(s) if valid_volume_name(&s) => Some(s),
                Some(s) => {
                    return Err(invalid(
                        FLAG,
                        spec,
                        format!("{s:?} is not a valid volume name (use type=bind for a host path)"),
                    ));
                }
                None => None,
            };
            Ok(MountRequest::Volume {
                name,
                target,
                readonly,
                nocopy: nocopy.unwrap_or(false),
            })
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(not_for("source"));
            }
            if propagation.is_some() {
                return Err(not_for("bind-propagation"));
            }
            if nocopy.is_some() {
                return Err(not_for("volume-nocopy"));
            }
            if readonly {
                return Err(not_for("readonly"));
            }
            Ok(MountRequest::Tmpfs { target, size, mode })
        }
        other => Err(invalid(
            FLAG,
            spec,
            format!("unknown mount type {other:?} (want bind, volume or tmpfs)"),
        )),
    }
}

/// Parses `--tmpfs DST[:OPTS]` (`size=`, `mode=`; the usual `rw`, `noexec`, `nosuid`,
/// `nodev`, `exec` flags are accepted).
///
/// # Errors
/// [`Error::Invalid`] for a bad path or option.
pub fn parse_tmpfs_flag(spec: &str) -> Result<MountRequest> {
    const FLAG: &str = "--tmpfs";
    let (dst, opts) = match spec.split_once(':') {
        Some((d, o)) => (d, Some(o)),
        None => (spec, None),
    };
    let target = clean_target(FLAG, spec, dst)?;
    let mut size = None;
    let mut mode = None;
    for opt in opts.into_iter().flat_map(|o| o.split(',')) {
        match opt.split_once('=') {
            Some(("size", v)) => size = Some(parse_size(v)?),
            Some(("mode", v)) => mode = Some(parse_mode(FLAG, spec, v)?),
            None if matches!(
                opt,
                "rw" | "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev"
            ) => {}
            _ => return Err(invalid(FLAG, spec, format!("unsupported option {opt:?}"))),
        }
    }
    Ok(MountRequest::Tmpfs { target, size, mode })
}

/// Parses every mount flag of `run`/`create`, in docker's order: `-v`, then `--mount`, then
/// `--tmpfs`.
///
/// # Errors
/// The first invalid flag.
pub fn parse_flags(
    volume: &[String],
    mount: &[String],
    tmpfs: &[String],
) -> Result<Vec<MountRequest>> {
    let mut out = Vec::with_capacity(volume.len() + mount.len() + tmpfs.len());
    for v in volume {
        out.push(parse_volume_flag(v)?);
    }
    for m in mount {
        out.push(parse_mount_flag(m)?);
    }
    for t in tmpfs {
        out.push(parse_tmpfs_flag(t)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: Option<&str>, target: &str, readonly: bool, nocopy: bool) -> MountRequest {
        MountRequest::Volume {
            name: name.map(String::from),
            target: target.into(),
            readonly,
            nocopy,
        }
    }

    #[test]
    fn volume_flag_forms() {
        assert_eq!(
            parse_volume_flag("/data").unwrap(),
            vol(None, "/data", false, false)
        );
        assert_eq!(
            parse_volume_flag("/data:ro").unwrap(),
            vol(None, "/data", true, false)
        );
        assert_eq!(
            parse_volume_flag("mydata:/var/lib/x/").unwrap(),
            vol(Some("mydata"), "/var/lib/x", false, false)
        );
        assert_eq!(
            parse_volume_flag("mydata:/x:ro,nocopy").unwrap(),
            vol(Some("mydata"), "/x", true, true)
        );
        assert_eq!(
            parse_volume_flag("/host/dir/:/x:ro,Z,rshared").unwrap(),
            MountRequest::Bind {
                source: "/host/dir".into(),
                target: "/x".into(),
                readonly: true,
                propagation: Some(Propagation::Rshared),
                create_missing: true,
            }
        );
        assert_eq!(
            parse_volume_flag("/h:/c").unwrap(),
            MountRequest::Bind {
                source: "/h".into(),
                target: "/c".into(),
                readonly: false,
                propagation: None,
                create_missing: true,
            }
        );
    }

    #[test]
    fn volume_flag_errors() {
        for bad in [
            "",
            "./data:/x",
            "data",
            "a:/x",
            "v:x",
            "/h:/",
            "/h:/x:bogus",
            "/h:/x:ro,rw",
            "/h:/x:nocopy",
            "v:/x:rshared",
            "/a:/b:ro:extra",
            "/h:relative",
            "/h:/x:",
        ] {
            let e = parse_volume_flag(bad);
            assert!(e.is_err(), "{bad:?} was accepted: {e:?}");
        }
        let msg = parse_volume_flag("./data:/x").unwrap_err().to_string();
        assert!(msg.contains("absolute path"), "{msg}");
    }

    #[test]
    fn mount_flag_forms() {
        assert_eq!(
            parse_mount_flag("type=bind,src=/h,dst=/c,readonly").unwrap(),
            MountRequest::Bind {
                source: "/h".into(),
                target: "/c".into(),
                readonly: true,
                propagation: None,
                create_missing: false,
            }
        );
        assert_eq!(
            parse_mount_flag("type=bind,source=/h,target=/c,ro=false,bind-propagation=rslave")
                .unwrap(),
            MountRequest::Bind {
                source: "/h".into(),
                target: "/c".into(),
                readonly: false,
                propagation: Some(Propagation::Rslave),
                create_missing: false,
            }
        );
        assert_eq!(
            parse_mount_flag("source=v1,destination=/d,volume-nocopy").unwrap(),
            vol(Some("v1"), "/d", false, true)
        );
        assert_eq!(
            parse_mount_flag("type=volume,target=/d").unwrap(),
            vol(None, "/d", false, false)
        );
        assert_eq!(
            parse_mount_flag("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap(),
            MountRequest::Tmpfs {
                target: "/t".into(),
                size: Some(64 << 20),
                mode: Some(0o1770),
            }
        );
        assert_eq!(
            parse_mount_flag("\"type=bind\",\"src=/a,b\",dst=/c").unwrap(),
            MountRequest::Bind {
                source: "/a,b".into(),
                target: "/c".into(),
                readonly: false,
                propagation: None,
                create_missing: false,
            }
        );
    }

    #[test]
    fn mount_flag_errors() {
        for bad in [
            "type=bind,src=/h",
            "type=bind,dst=/c",
            "type=bind,src=rel,dst=/c",
            "type=volume,src=./x,dst=/c",
            "type=tmpfs,src=x,dst=/c",
            "type=tmpfs,dst=/c,tmpfs-mode=9",
            "type=tmpfs,dst=/c,tmpfs-size=lots",
            "type=bind,src=/h,dst=/c,volume-nocopy",
            "type=volume,dst=/c,bind-propagation=shared",
            "type=nfs,dst=/c",
            "type=bind,src=/h,dst=/c,colour=blue",
            "type=bind,src=/h,dst=/c,ro=maybe",
            "type=bind,src=/h,dst=/",
            "type=bind,src=\"/h,dst=/c",
            "type,dst=/c",
            "",
        ] {
            let e = parse_mount_flag(bad);
            assert!(e.is_err(), "{bad:?} was accepted: {e:?}");
        }
    }

    #[test]
    fn tmpfs_flag() {
        assert_eq!(
            parse_tmpfs_flag("/run:rw,size=1g,mode=755,noexec").unwrap(),
            MountRequest::Tmpfs {
                target: "/run".into(),
                size: Some(1 << 30),
                mode: Some(0o755),
            }
        );
        assert!(parse_tmpfs_flag("run").is_err());
        assert!(parse_tmpfs_flag("/run:uid=5").is_err());
    }

    #[test]
    fn sizes_and_names() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1x").is_err());
        assert!(parse_size("").is_err());
        assert!(valid_volume_name("a1"));
        assert!(valid_volume_name("my_vol.2-x"));
        assert!(!valid_volume_name("a"));
        assert!(!valid_volume_name("_a"));
        assert!(!valid_volume_name("a/b"));
        assert!(!valid_volume_name("../x"));
    }

    #[test]
    fn serde_round_trip() {
        let reqs = vec![
            parse_volume_flag("/h:/c:ro").unwrap(),
            parse_volume_flag("v1:/d").unwrap(),
            parse_tmpfs_flag("/t:size=1k").unwrap(),
        ];
        let json = serde_json::to_string(&reqs).unwrap();
        assert!(json.contains("\"type\":\"bind\""), "{json}");
        let back: Vec<MountRequest> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, reqs);
    }
}
