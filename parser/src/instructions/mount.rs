//! `RUN --mount=<csv>` parsing with BuildKit's rules.
//!
//! The value is a CSV record of `key=value` fields (and the bare keys `ro`/`readonly`,
//! `rw`/`readwrite`, `required`). Keys are case-insensitive; `type` defaults to `bind`.
//! Aliases: `src` = `source`; `dst`, `destination` = `target`; `ro` = `readonly`; `rw` is the
//! inverse of `readonly`. Checks, in BuildKit's order: known keys, `required` only after
//! `type=secret|ssh`, `size` only after `type=tmpfs`, `mode`/`uid`/`gid` only for secret, ssh
//! and cache mounts, the secret-specific rules, and `sharing` only for cache mounts. Unless
//! `ro`/`rw` is given, bind, secret and ssh mounts are read-only; cache and tmpfs are writable.
//!
//! At parse time, values containing `$` are not yet known: `from` with a variable is rejected
//! (BuildKit: "define alias stage instead"), other such values are kept verbatim and checked
//! when the instruction is expanded (a full re-parse of [`Mount::spec`] with the expander).

use serde::Serialize;

use super::suggest::did_you_mean;

/// `type=` of a mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    #[default]
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    /// The lower-case name used in Dockerfiles.
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }

    fn parse(s: &str) -> Option<MountType> {
        Some(match s {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareMode {
    Shared,
    Private,
    Locked,
}

/// One `RUN --mount`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// The flag value as written (what expansion re-parses).
    pub spec: String,
    #[serde(rename = "type")]
    pub kind: MountType,
    /// `from=`: a stage, image or named context to mount from.
    pub from: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
    pub read_only: bool,
    /// `size=` of a tmpfs mount, in bytes (`64m`, `1g`, binary units).
    pub size_limit: Option<i64>,
    /// `id=`: cache id, or secret/ssh id.
    pub id: Option<String>,
    pub sharing: Option<ShareMode>,
    /// `required` for secret and ssh mounts.
    pub required: bool,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    /// `mode=` (octal) for secret, ssh and cache mounts.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Every key BuildKit accepts, for suggestions.
const ALL_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Expands one mount value; `None` means "parse time" (no expansion available).
pub(crate) type Expander<'a> = Option<&'a dyn Fn(&str) -> Result<String, MountError>>;

/// Why a mount could not be parsed: a message, or an expansion failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountError {
    Invalid(String),
    Expand(crate::shell::ExpandError),
}

impl From<String> for MountError {
    fn from(s: String) -> Self {
        MountError::Invalid(s)
    }
}

/// Parses a `--mount` value. With `expander == None` (parse time), values containing `$` are
/// kept verbatim and unchecked; with an expander every value is expanded, then checked.
pub(crate) fn parse_mount(spec: &str, expander: Expander<'_>) -> Result<Mount, MountError> {
    let fields = csv_fields(spec).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
    let mut m = Mount {
        spec: spec.to_string(),
        ..Mount::default()
    };
    let mut ro_auto = true;
    let mut deferred = false;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), v),
            None => {
                bare_key(&mut m, &field.to_lowercase(), field, &mut ro_auto)?;
                continue;
            }
        };
        let value = match expander {
            Some(expand) => expand(value)?,
            None if key == "from" => {
                check_from_literal(value)?;
                value.to_string()
            }
            None if value.contains('$') => {
                deferred |= keep_verbatim(&mut m, &key, value);
                continue;
            }
            None => value.to_string(),
        };
        set_key(&mut m, &key, &value, field, &mut ro_auto)?;
    }
    if deferred {
        // A typed field is not known yet: cross-field checks wait for expansion.
        return Ok(m);
    }
    finish(m, ro_auto)
}

/// BuildKit refuses a variable in `from=` (a `$` that is not the last character).
fn check_from_literal(value: &str) -> Result<(), MountError> {
    match value.find('$') {
        Some(i) if i + 1 != value.len() => Err(MountError::Invalid(
            "'from' doesn't support variable expansion, define alias stage instead".into(),
        )),
        _ => Ok(()),
    }
}

/// Stores a not-yet-expanded value; returns true when a typed field had to be deferred.
fn keep_verbatim(m: &mut Mount, key: &str, value: &str) -> bool {
    let v = Some(value.to_string());
    match key {
        "source" | "src" => m.source = v,
        "target" | "dst" | "destination" => m.target = v,
        "id" => m.id = v,
        "env" => m.env = v,
        _ => return true,
    }
    false
}

/// A field without `=`.
fn bare_key(m: &mut Mount, key: &str, field: &str, ro_auto: &mut bool) -> Result<(), MountError> {
    match key {
        "readonly" | "ro" => {
            m.read_only = true;
            *ro_auto = false;
        }
        "readwrite" | "rw" => {
            m.read_only = false;
            *ro_auto = false;
        }
        "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = true,
        "required" => return Err(unexpected_for_type(key, m.kind)),
        _ => {
            return Err(MountError::Invalid(format!(
                "invalid field '{field}' must be a key=value pair"
            )));
        }
    }
    Ok(())
}

fn unexpected_for_type(key: &str, kind: MountType) -> MountError {
    MountError::Invalid(format!(
        "unexpected key '{key}' for mount type '{}'",
        kind.as_str()
    ))
}

fn invalid_value(key: &str, value: &str) -> MountError {
    MountError::Invalid(format!("invalid value for {key}: {value}"))
}

/// Applies one `key=value` field (value already expanded).
fn set_key(
    m: &mut Mount,
    key: &str,
    value: &str,
    field: &str,
    ro_auto: &mut bool,
) -> Result<(), MountError> {
    let v = Some(value.to_string());
    match key {
        "type" => {
            let lower = value.to_lowercase();
            m.kind = MountType::parse(&lower).ok_or_else(|| {
                let types = ["bind", "cache", "tmpfs", "secret", "ssh"];
                with_suggestion(format!("unsupported mount type {value:?}"), &lower, &types)
            })?;
        }
        "from" => m.from = v,
        "source" | "src" => m.source = v,
        "target" | "dst" | "destination" => m.target = v,
        "readonly" | "ro" => {
            m.read_only = go_bool(value).ok_or_else(|| invalid_value(key, value))?;
            *ro_auto = false;
        }
        "readwrite" | "rw" => {
            m.read_only = !go_bool(value).ok_or_else(|| invalid_value(key, value))?;
            *ro_auto = false;
        }
        "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
            m.required = go_bool(value).ok_or_else(|| invalid_value(key, value))?;
        }
        "size" if m.kind == MountType::Tmpfs => {
            m.size_limit = Some(ram_in_bytes(value).ok_or_else(|| invalid_value(key, value))?);
        }
        "required" | "size" => return Err(unexpected_for_type(key, m.kind)),
        "id" => m.id = v,
        "sharing" => {
            m.sharing = Some(match value.to_lowercase().as_str() {
                "shared" => ShareMode::Shared,
                "private" => ShareMode::Private,
                "locked" => ShareMode::Locked,
                other => {
                    return Err(with_suggestion(
                        format!("unsupported sharing value {value:?}"),
                        other,
                        &["shared", "private", "locked"],
                    ));
                }
            });
        }
        "mode" => {
            let mode = u32::from_str_radix(value, 8)
                .map_err(|_| MountError::Invalid(format!("invalid value {value} for mode")))?;
            m.mode = Some(mode);
        }
        "uid" => m.uid = Some(parse_id(value, "uid")?),
        "gid" => m.gid = Some(parse_id(value, "gid")?),
        "env" => m.env = v,
        _ => {
            return Err(with_suggestion(
                format!("unexpected key '{key}' in '{field}'"),
                key,
                ALL_KEYS,
            ));
        }
    }
    Ok(())
}

fn parse_id(value: &str, what: &str) -> Result<u32, MountError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|_| !value.starts_with('+'))
        .ok_or_else(|| MountError::Invalid(format!("invalid value {value} for {what}")))
}

fn with_suggestion(msg: String, word: &str, candidates: &[&str]) -> MountError {
    match did_you_mean(word, candidates) {
        Some(best) if best != word => MountError::Invalid(format!("{msg} (did you mean {best}?)")),
        _ => MountError::Invalid(msg),
    }
}

/// The checks that need the whole mount, then the read-only default.
fn finish(mut m: Mount, ro_auto: bool) -> Result<Mount, MountError> {
    let invalid = |s: String| Err(MountError::Invalid(s));
    let kind = m.kind.as_str();
    if !matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        if m.mode.is_some() {
            return invalid(format!("mode not allowed for {kind:?} type mounts"));
        }
        if m.uid.is_some() {
            return invalid(format!("uid not allowed for {kind:?} type mounts"));
        }
        if m.gid.is_some() {
            return invalid(format!("gid not allowed for {kind:?} type mounts"));
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.as_deref().is_some_and(|f| !f.is_empty()) {
            return invalid("secret mount should not have a from".into());
        }
        if m.sharing.is_some() {
            return invalid("secret mount should not define sharing".into());
        }
        let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
        if !set(&m.source) && !set(&m.target) && !set(&m.id) {
            return invalid("invalid secret mount. one of source, target required".into());
        }
        if set(&m.source) && set(&m.id) {
            return invalid("both source and id can't be set".into());
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return invalid(format!("invalid cache sharing set for {kind} mount"));
    }
    Ok(m)
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker's `units.RAMInBytes`: `<number>[ ][k|m|g|t|p][i][b]`, binary multiples, any case.
fn ram_in_bytes(s: &str) -> Option<i64> {
    let num_len = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (num, rest) = s.split_at(num_len);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest).to_ascii_lowercase();
    let mut chars = rest.chars().peekable();
    let exp = match chars.peek() {
        Some('k') => 1,
        Some('m') => 2,
        Some('g') => 3,
        Some('t') => 4,
        Some('p') => 5,
        _ => 0,
    };
    if exp > 0 {
        chars.next();
    }
    if chars.peek() == Some(&'i') {
        chars.next();
    }
    if chars.peek() == Some(&'b') {
        chars.next();
    }
    if chars.next().is_some() {
        return None;
    }
    let bytes = value * 1024f64.powi(exp);
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return None;
    }
    // Truncation toward zero is what Go's int64 conversion does.
    #[allow(clippy::cast_possible_truncation)]
    Some(bytes as i64)
}

/// Splits one CSV record (Go `encoding/csv` rules): comma-separated fields; a field starting
/// with `"` is quoted, `""` inside it is a literal quote; a `"` inside an unquoted field is an
/// error.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    let mut col = 1usize;
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            col += 1;
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "parse error on line 1, column {col}: extraneous or missing \" in quoted-field"
                        ));
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        col += 2;
                        field.push('"');
                    }
                    Some('"') => {
                        col += 1;
                        break;
                    }
                    Some(c) => {
                        col += 1;
                        field.push(c);
                    }
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {
                    col += 1;
                    fields.push(field);
                    continue;
                }
                Some(_) => {
                    return Err(format!(
                        "parse error on line 1, column {col}: extraneous or missing \" in quoted-field"
                    ));
                }
            }
        }
        loop {
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {
                    col += 1;
                    fields.push(field);
                    break;
                }
                Some('"') => {
                    return Err(format!(
                        "parse error on line 1, column {col}: bare \" in non-quoted-field"
                    ));
                }
                Some(c) => {
                    col += 1;
                    field.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<Mount, String> {
        parse_mount(spec, None).map_err(|e| match e {
            MountError::Invalid(s) => s,
            MountError::Expand(e) => e.to_string(),
        })
    }

    fn err(spec: &str) -> String {
        parse(spec).unwrap_err()
    }

    #[test]
    fn default_is_read_only_bind() {
        let m = parse("target=/src").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert_eq!(m.target.as_deref(), Some("/src"));
        assert!(m.read_only);
        assert_eq!(m.spec, "target=/src");
    }

    #[test]
    fn bind_with_aliases_and_rw() {
        let m = parse("type=bind,src=/a,dst=/b,from=build,rw").unwrap();
        assert_eq!(m.source.as_deref(), Some("/a"));
        assert_eq!(m.target.as_deref(), Some("/b"));
        assert_eq!(m.from.as_deref(), Some("build"));
        assert!(!m.read_only);
        let m = parse("type=bind,destination=/b,readwrite=true").unwrap();
        assert_eq!(m.target.as_deref(), Some("/b"));
        assert!(!m.read_only);
        let m = parse("type=bind,target=/b,ro=false").unwrap();
        assert!(!m.read_only);
    }

    #[test]
    fn cache_mount_fields() {
        let m = parse(
            "type=cache,target=/root/.cache,id=pip,sharing=LOCKED,mode=0755,uid=1000,gid=1000",
        )
        .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.id.as_deref(), Some("pip"));
        assert_eq!(m.sharing, Some(ShareMode::Locked));
        assert_eq!(m.mode, Some(0o755));
        assert_eq!(m.uid, Some(1000));
        assert_eq!(m.gid, Some(1000));
        assert!(!m.read_only);
    }

    #[test]
    fn type_and_keys_are_case_insensitive() {
        let m = parse("TYPE=Cache,Target=/x").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/x"));
    }

    #[test]
    fn tmpfs_size() {
        let m = parse("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(m.size_limit, Some(64 * 1024 * 1024));
        assert!(!m.read_only);
        assert_eq!(
            parse("type=tmpfs,target=/t,size=1GiB").unwrap().size_limit,
            Some(1 << 30)
        );
        assert_eq!(
            parse("type=tmpfs,target=/t,size=100").unwrap().size_limit,
            Some(100)
        );
        assert_eq!(
            err("type=tmpfs,target=/t,size=lots"),
            "invalid value for size: lots"
        );
        assert_eq!(
            err("type=cache,target=/t,size=1m"),
            "unexpected key 'size' for mount type 'cache'"
        );
    }

    #[test]
    fn secret_and_ssh() {
        let m = parse("type=secret,id=tok,required,env=TOKEN").unwrap();
        assert_eq!(m.kind, MountType::Secret);
        assert!(m.required);
        assert!(m.read_only);
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        let m = parse("type=ssh,required=false,mode=0600").unwrap();
        assert_eq!(m.kind, MountType::Ssh);
        assert!(!m.required);
        assert_eq!(m.mode, Some(0o600));
    }

    #[test]
    fn required_needs_secret_or_ssh_first() {
        assert_eq!(
            err("required,type=secret,id=a"),
            "unexpected key 'required' for mount type 'bind'"
        );
        assert_eq!(
            err("type=cache,required=true"),
            "unexpected key 'required' for mount type 'cache'"
        );
        assert_eq!(
            err("type=secret,id=a,required=maybe"),
            "invalid value for required: maybe"
        );
    }

    #[test]
    fn validation_errors() {
        assert_eq!(err("type=foo"), "unsupported mount type \"foo\"");
        assert_eq!(
            err("type=cahce"),
            "unsupported mount type \"cahce\" (did you mean cache?)"
        );
        assert_eq!(
            err("type=cache,sharing=everyone"),
            "unsupported sharing value \"everyone\""
        );
        assert_eq!(err("type=cache,mode=999"), "invalid value 999 for mode");
        assert_eq!(err("type=cache,uid=-1"), "invalid value -1 for uid");
        assert_eq!(err("type=cache,gid=x"), "invalid value x for gid");
        assert_eq!(
            err("type=bind,mode=0644"),
            "mode not allowed for \"bind\" type mounts"
        );
        assert_eq!(
            err("type=tmpfs,uid=1"),
            "uid not allowed for \"tmpfs\" type mounts"
        );
        assert_eq!(
            err("type=bind,gid=1"),
            "gid not allowed for \"bind\" type mounts"
        );
        assert_eq!(
            err("type=bind,sharing=shared"),
            "invalid cache sharing set for bind mount"
        );
        assert_eq!(
            err("type=secret,id=a,from=x"),
            "secret mount should not have a from"
        );
        assert_eq!(
            err("type=secret,id=a,sharing=locked"),
            "secret mount should not define sharing"
        );
        assert_eq!(
            err("type=secret"),
            "invalid secret mount. one of source, target required"
        );
        assert_eq!(
            err("type=secret,id=a,source=b"),
            "both source and id can't be set"
        );
        assert_eq!(err("type=bind,ro=maybe"), "invalid value for ro: maybe");
        assert_eq!(
            err("type=bind,foo"),
            "invalid field 'foo' must be a key=value pair"
        );
        assert_eq!(
            err("type=bind,tagret=/x"),
            "unexpected key 'tagret' in 'tagret=/x' (did you mean target?)"
        );
    }

    #[test]
    fn from_with_variable_is_rejected() {
        assert_eq!(
            err("type=bind,from=$STAGE,target=/x"),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert!(parse("type=bind,from=a$,target=/x").is_ok());
    }

    #[test]
    fn variables_are_deferred_at_parse_time() {
        let m = parse("type=cache,target=$DIR,id=$ID").unwrap();
        assert_eq!(m.target.as_deref(), Some("$DIR"));
        assert_eq!(m.id.as_deref(), Some("$ID"));
        // A typed value with a variable defers all cross-field checks.
        let m = parse("type=$T,sharing=locked,target=/x").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert_eq!(m.sharing, Some(ShareMode::Locked));
    }

    #[test]
    fn expander_is_applied_to_every_value() {
        let expand = |s: &str| -> Result<String, MountError> {
            Ok(s.replace("$T", "cache").replace("$DIR", "/cache"))
        };
        let m = parse_mount("type=$T,target=$DIR", Some(&expand)).unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/cache"));
        assert_eq!(m.spec, "type=$T,target=$DIR");
    }

    #[test]
    fn csv_quoting() {
        let m = parse("type=bind,\"target=/a,b\",source=x").unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
        let m = parse("\"target=/say \"\"hi\"\"\"").unwrap();
        assert_eq!(m.target.as_deref(), Some("/say \"hi\""));
        assert!(err("target=/a\"b").starts_with("failed to parse csv mounts: "));
        assert!(err("\"target=/a").starts_with("failed to parse csv mounts: "));
        assert!(err("\"target=/a\"x").starts_with("failed to parse csv mounts: "));
    }

    #[test]
    fn empty_fields() {
        assert_eq!(err(""), "invalid field '' must be a key=value pair");
        assert_eq!(
            err("target=/x,"),
            "invalid field '' must be a key=value pair"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(go_bool("T"), Some(true));
        assert_eq!(go_bool("0"), Some(false));
        assert_eq!(go_bool("yes"), None);
        assert_eq!(ram_in_bytes("1.5k"), Some(1536));
        assert_eq!(ram_in_bytes("2 MB"), Some(2 << 20));
        assert_eq!(ram_in_bytes("1kx"), None);
        assert_eq!(ram_in_bytes(".5k"), None);
        assert_eq!(ram_in_bytes("99999999999999999999p"), None);
    }
}
