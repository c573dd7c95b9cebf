//! Image references with docker's normalisation rules (distribution/reference `ParseNormalizedNamed`).
//!
//! - The first `/`-separated component is a registry domain when it contains `.` or `:`, is
//!   `localhost`, or has an uppercase letter; otherwise the domain is `docker.io`
//!   (`index.docker.io` is rewritten to `docker.io`).
//! - A single-component name on `docker.io` gets `library/` (`busybox` ->
//!   `docker.io/library/busybox`).
//! - Repository components are lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
//! - Tags match `[\w][\w.-]{0,127}`; an optional `@sha256:<hex>` digest follows.
//! - Without tag and digest the tag is `latest`.
//!
//! [`Reference`] displays in full (`docker.io/library/busybox:latest`, the form stored in
//! `refs.json`); [`Reference::familiar`] is how docker prints it (`busybox:latest`).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Docker Hub's canonical domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's legacy domain, normalised to [`DEFAULT_DOMAIN`].
const LEGACY_DOMAIN: &str = "index.docker.io";
/// The namespace of official images on Docker Hub.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository name (domain + path) docker accepts.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Clone)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
    /// The full string form, cached for Display/Ord/Hash.
    full: String,
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        input: input.chars().take(300).collect(),
        reason: reason.into(),
    }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
}

/// `host[:port]` where host is dotted domain components or a bracketed IPv6 address.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.split('.').all(valid_domain_component)
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

impl Reference {
    /// Parses and normalises `s` as docker does.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] naming the input when docker would reject it.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(invalid(
                s,
                "repository name must have at least one component",
            ));
        }
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(
                s,
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|e| invalid(s, format!("invalid digest: {e}")))?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => {
                if !valid_tag(tag) {
                    return Err(invalid(s, format!("invalid tag {tag:?}")));
                }
                (name, Some(tag.to_string()))
            }
            _ => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid(
                s,
                "repository name must have at least one component",
            ));
        }
        // splitDockerDomain
        let (mut domain, mut path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if domain == LEGACY_DOMAIN {
            domain = DEFAULT_DOMAIN.to_string();
        }
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_REPO_PREFIX}{path}");
        }
        if path.to_lowercase() != path {
            return Err(invalid(
                s,
                format!("repository name ({domain}/{path}) must be lowercase"),
            ));
        }
        if !valid_domain(&domain) {
            return Err(invalid(s, format!("invalid domain {domain:?}")));
        }
        if let Some(bad) = path.split('/').find(|c| !valid_path_component(c)) {
            return Err(invalid(
                s,
                format!("invalid repository path component {bad:?}"),
            ));
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(
                s,
                format!("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"),
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (t, _) => t,
        };
        Ok(Self::build(domain, path, tag, digest))
    }

    fn build(domain: String, path: String, tag: Option<String>, digest: Option<Digest>) -> Self {
        let mut full = format!("{domain}/{path}");
        if let Some(t) = &tag {
            full.push(':');
            full.push_str(t);
        }
        if let Some(d) = &digest {
            full.push('@');
            full.push_str(&d.to_string());
        }
        Reference {
            domain,
            path,
            tag,
            digest,
            full,
        }
    }

    /// The registry domain (`docker.io`, `localhost:5000`, ...).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name (`docker.io/library/busybox`), as docker's `Name()`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as docker shows it in `docker images` (`busybox`, `myorg/app`,
    /// `localhost:5000/x`), i.e. `FamiliarName`.
    pub fn repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                .filter(|p| !p.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The tag, if any (`latest` when the input named neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag (and no digest).
    ///
    /// # Errors
    /// [`Error::InvalidReference`] when `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        if !valid_tag(tag) {
            return Err(invalid(tag, format!("invalid tag {tag:?}")));
        }
        Ok(Self::build(
            self.domain.clone(),
            self.path.clone(),
            Some(tag.to_string()),
            None,
        ))
    }

    /// The same repository pinned to `digest` (no tag).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self::build(self.domain.clone(), self.path.clone(), None, Some(digest))
    }

    /// How docker displays the reference: `busybox:latest`, `myorg/app:1`, `localhost:5000/x:y`.
    pub fn familiar(&self) -> String {
        let mut s = self.repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The full string form (same as Display).
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.full)
    }
}

impl PartialEq for Reference {
    fn eq(&self, other: &Self) -> bool {
        self.full == other.full
    }
}

impl Eq for Reference {}

impl Hash for Reference {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.full.hash(state);
    }
}

impl PartialOrd for Reference {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Reference {
    fn cmp(&self, other: &Self) -> Ordering {
        self.full.cmp(&other.full)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Result<Reference> {
        s.parse()
    }

    #[test]
    fn classic_cases() -> Result<()> {
        let cases = [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/library/busybox:x",
                "docker.io/library/busybox:x",
                "busybox:x",
            ),
            ("myorg/app:1", "docker.io/myorg/app:1", "myorg/app:1"),
            (
                "myorg/sub/app",
                "docker.io/myorg/sub/app:latest",
                "myorg/sub/app:latest",
            ),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            (
                "localhost:5000/x:y",
                "localhost:5000/x:y",
                "localhost:5000/x:y",
            ),
            (
                "quay.io/a/b:v1.2-rc_3",
                "quay.io/a/b:v1.2-rc_3",
                "quay.io/a/b:v1.2-rc_3",
            ),
            (
                "Example.com/a",
                "Example.com/a:latest",
                "Example.com/a:latest",
            ),
            ("[::1]:5000/a", "[::1]:5000/a:latest", "[::1]:5000/a:latest"),
            (
                "a__b/c.d/e--f",
                "docker.io/a__b/c.d/e--f:latest",
                "a__b/c.d/e--f:latest",
            ),
            (
                "localhost:5000",
                "docker.io/library/localhost:5000",
                "localhost:5000",
            ),
        ];
        for (input, full, familiar) in cases {
            let re = r(input)?;
            assert_eq!(re.to_string(), full, "{input}");
            assert_eq!(re.familiar(), familiar, "{input}");
            assert_eq!(r(full)?, re, "full form reparses: {input}");
        }
        let b = r("busybox")?;
        assert_eq!(b.repository(), "busybox");
        assert_eq!(b.name(), "docker.io/library/busybox");
        assert_eq!(b.domain(), "docker.io");
        assert_eq!(b.path(), "library/busybox");
        assert_eq!(b.tag(), Some("latest"));
        assert_eq!(b.digest(), None);
        assert_eq!(r("library/x/y")?.repository(), "library/x/y");
        Ok(())
    }

    #[test]
    fn digests() -> Result<()> {
        let d = Digest::of(b"m");
        let re = r(&format!("busybox@{d}"))?;
        assert_eq!(re.tag(), None);
        assert_eq!(re.digest(), Some(&d));
        assert_eq!(re.to_string(), format!("docker.io/library/busybox@{d}"));
        assert_eq!(re.familiar(), format!("busybox@{d}"));
        let both = r(&format!("localhost:5000/x:1@{d}"))?;
        assert_eq!(both.tag(), Some("1"));
        assert_eq!(both.familiar(), format!("localhost:5000/x:1@{d}"));
        assert!(r("busybox@sha256:abc").is_err());
        assert!(r("busybox@sha256:../../x").is_err());
        assert_eq!(
            re.with_tag("v2")?.to_string(),
            "docker.io/library/busybox:v2"
        );
        assert_eq!(b_with_digest(&d)?.digest(), Some(&d));
        Ok(())
    }

    fn b_with_digest(d: &Digest) -> Result<Reference> {
        Ok(r("busybox:1")?.with_digest(*d))
    }

    #[test]
    fn invalid_names_are_rejected_naming_the_input() {
        let long_tag = format!("a:{}", "t".repeat(129));
        let long_name = format!("a/{}", "b".repeat(260));
        let hex64 = "a".repeat(64);
        let bad = [
            "",
            ":tag",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox:.x",
            "bu$ybox",
            "a//b",
            "a/",
            "/a",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "_a",
            "a b",
            "localhost:abc/x",
            "exa_mple.com/a",
            "myorg/App",
            long_tag.as_str(),
            long_name.as_str(),
            hex64.as_str(),
            "a@",
            "a:b:c",
            "docker.io/library/Busybox",
        ];
        for input in bad {
            match r(input) {
                Ok(v) => panic!("accepted {input:?} as {v}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("{input:?}")), "{msg}");
                }
            }
        }
        let ok_tag = format!("a:{}", "t".repeat(128));
        assert!(r(&ok_tag).is_ok());
    }

    #[test]
    fn order_eq_serde() -> Result<()> {
        let a = r("alpine")?;
        let b = r("busybox")?;
        assert!(a < b);
        assert_eq!(r("busybox:latest")?, b);
        let json = serde_json::to_string(&b).map_err(|e| Error::Archive(e.to_string()))?;
        assert_eq!(json, "\"docker.io/library/busybox:latest\"");
        let back: Reference =
            serde_json::from_str(&json).map_err(|e| Error::Archive(e.to_string()))?;
        assert_eq!(back, b);
        assert!(serde_json::from_str::<Reference>("\"Bad Name\"").is_err());
        let mut set = std::collections::HashSet::new();
        set.insert(b.clone());
        assert!(set.contains(&r("docker.io/library/busybox")?));
        Ok(())
    }
}
