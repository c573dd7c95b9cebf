//! Image platforms (`os/arch[/variant]`), as `--platform`, image indexes and the build's
//! platform args name them.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An OCI platform: `linux/amd64`, `linux/arm64/v8`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ... (Go's names, as in image configs).
    pub arch: String,
    /// `v8`, `v7`, ... when given.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform strata runs on.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            arch: go_arch(std::env::consts::ARCH),
            variant: None,
        }
    }

    /// Whether an image index entry's platform fits this one (no variant asked: any variant;
    /// `arm64/v8` also takes an `arm64` entry without a variant).
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        os == self.os
            && arch == self.arch
            && match (&self.variant, variant) {
                (Some(want), Some(got)) => want == got,
                (Some(want), None) => self.arch == "arm64" && want == "v8",
                (None, _) => true,
            }
    }
}

/// Go's name of an architecture, from Rust's or uname's (`x86_64` -> `amd64`).
fn go_arch(arch: &str) -> String {
    match arch {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "x86" | "i386" | "i686" => "386".into(),
        "powerpc64" => "ppc64le".into(),
        other => other.to_lowercase(),
    }
}

impl Default for Platform {
    fn default() -> Self {
        Self::host()
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parses `os/arch[/variant]` (case-insensitive; `x86_64` and `aarch64` are taken for
    /// `amd64` and `arm64`).
    fn from_str(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(Error::InvalidPlatform(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_lowercase(),
            arch: go_arch(parts[1]),
            variant: parts.get(2).map(|v| v.to_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_normalises_and_prints() {
        let p: Platform = "Linux/x86_64".parse().expect("valid");
        assert_eq!(p.to_string(), "linux/amd64");
        let p: Platform = "linux/arm64/v8".parse().expect("valid");
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "a/b/c/d",
            "linux/am d64",
            "linux/../x",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_index_entries() {
        let amd: Platform = "linux/amd64".parse().expect("valid");
        assert!(amd.matches("linux", "amd64", None));
        assert!(amd.matches("linux", "amd64", Some("v3")));
        assert!(!amd.matches("linux", "arm64", None));
        let v8: Platform = "linux/arm64/v8".parse().expect("valid");
        assert!(v8.matches("linux", "arm64", None));
        assert!(!v8.matches("linux", "arm64", Some("v7")));
    }
}
