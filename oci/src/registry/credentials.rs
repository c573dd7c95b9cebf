//! Registry credentials: strata's own file, docker's `config.json`, and credential helpers.
//!
//! - **strata's file** (`login` writes it, `logout` edits it): `$STRATA_AUTH_FILE`, else
//!   `$XDG_CONFIG_HOME/strata/auth.json`, else `~/.config/strata/auth.json`. Same layout as
//!   docker's (`{"auths":{"HOST":{"auth":"base64(user:password)"}}}`), written atomically with
//!   mode 0600 in a 0700 directory.
//! - **docker's file** (read only): `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`:
//!   `auths` entries, `credHelpers` (per registry) and `credsStore` (default helper), which run
//!   `docker-credential-NAME get` with the server address on stdin.
//!
//! Lookup order: strata's file, then docker's `credHelpers`, `auths`, `credsStore`. Keys are
//! compared by host (`https://index.docker.io/v1/` is Docker Hub, `docker.io`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{Error, Result};

/// Docker Hub's key in credential files and helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or identity token, with user name `<token>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            B64.encode(format!("{}:{}", self.username, self.secret))
        )
    }
}

/// Where credentials are read from and written to.
#[derive(Debug, Clone)]
pub struct AuthFiles {
    /// strata's own file.
    pub strata: PathBuf,
    /// docker's `config.json` (read only).
    pub docker: Option<PathBuf>,
}

fn env_path(k: &str) -> Option<PathBuf> {
    std::env::var_os(k)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The canonical host of a credential key: scheme and path dropped, Docker Hub's aliases
/// mapped to `docker.io`.
pub fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        h => h.to_string(),
    }
}

/// The key strata writes (and helpers get) for a registry domain.
fn key_for(domain: &str) -> String {
    if normalize_key(domain) == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        domain.to_string()
    }
}

fn decode_auth(what: &str, auth: &str) -> Result<Credential> {
    let bad = |m: &str| Error::Registry {
        context: what.to_string(),
        message: m.to_string(),
    };
    let raw = B64
        .decode(auth.trim())
        .map_err(|_| bad("invalid base64 in \"auth\""))?;
    let text = String::from_utf8(raw).map_err(|_| bad("\"auth\" is not UTF-8"))?;
    let (u, p) = text
        .split_once(':')
        .ok_or_else(|| bad("\"auth\" is not user:password"))?;
    Ok(Credential {
        username: u.to_string(),
        secret: p.to_string(),
    })
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::json(path.display().to_string(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()))(e)),
    }
}

/// The credential of `domain` in a file's `auths`.
fn from_auths(path: &Path, doc: &serde_json::Value, domain: &str) -> Result<Option<Credential>> {
    let want = normalize_key(domain);
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for (k, v) in auths {
        if normalize_key(k) != want {
            continue;
        }
        let what = format!("{} (auths.{k})", path.display());
        if let Some(token) = v.get("identitytoken").and_then(|t| t.as_str())
            && !token.is_empty()
        {
            return Ok(Some(Credential {
                username: "<token>".into(),
                secret: token.into(),
            }));
        }
        if let Some(a) = v.get("auth").and_then(|a| a.as_str())
            && !a.is_empty()
        {
            return decode_auth(&what, a).map(Some);
        }
        if let (Some(u), Some(p)) = (
            v.get("username").and_then(|x| x.as_str()),
            v.get("password").and_then(|x| x.as_str()),
        ) {
            return Ok(Some(Credential {
                username: u.into(),
                secret: p.into(),
            }));
        }
    }
    Ok(None)
}

/// Runs `docker-credential-<helper> get` for `domain`.
fn from_helper(helper: &str, domain: &str) -> Result<Option<Credential>> {
    let exe = format!("docker-credential-{helper}");
    let fail = |m: String| Error::Registry {
        context: format!("credential helper {exe}"),
        message: m,
    };
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(fail("invalid helper name".into()));
    }
    let mut child = Command::new(&exe)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE: its exit status tells the rest.
        let _ = stdin.write_all(key_for(domain).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!(
            "{} {}",
            out.status,
            format!("{} {}", stdout.trim(), stderr.trim()).trim()
        )));
    }
    let v: serde_json::Value =
        serde_json::from_str(&stdout).map_err(|e| fail(format!("invalid output: {e}")))?;
    let u = v.get("Username").and_then(|x| x.as_str()).unwrap_or("");
    let s = v.get("Secret").and_then(|x| x.as_str()).unwrap_or("");
    if s.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential {
        username: u.into(),
        secret: s.into(),
    }))
}

impl AuthFiles {
    /// The default locations (see the module docs).
    pub fn from_env() -> AuthFiles {
        let home = env_path("HOME");
        let strata = env_path("STRATA_AUTH_FILE").unwrap_or_else(|| {
            env_path("XDG_CONFIG_HOME")
                .or_else(|| home.as_ref().map(|h| h.join(".config")))
                .unwrap_or_else(|| PathBuf::from("/root/.config"))
                .join("strata/auth.json")
        });
        let docker = env_path("DOCKER_CONFIG")
            .or_else(|| home.map(|h| h.join(".docker")))
            .map(|d| d.join("config.json"));
        AuthFiles { strata, docker }
    }

    /// The credential for a registry domain, if any source has one.
    ///
    /// # Errors
    ///
    /// Unreadable or malformed files, a failing credential helper.
    pub fn get(&self, domain: &str) -> Result<Option<Credential>> {
        if let Some(doc) = read_json(&self.strata)?
            && let Some(c) = from_auths(&self.strata, &doc, domain)?
        {
            return Ok(Some(c));
        }
        let Some(path) = &self.docker else {
            return Ok(None);
        };
        let Some(doc) = read_json(path)? else {
            return Ok(None);
        };
        let want = normalize_key(domain);
        if let Some(helpers) = doc.get("credHelpers").and_then(|h| h.as_object()) {
            for (k, v) in helpers {
                if normalize_key(k) == want
                    && let Some(h) = v.as_str()
                {
                    return from_helper(h, domain);
                }
            }
        }
        if let Some(c) = from_auths(path, &doc, domain)? {
            return Ok(Some(c));
        }
        if let Some(h) = doc.get("credsStore").and_then(|h| h.as_str())
            && !h.is_empty()
        {
            return from_helper(h, domain);
        }
        Ok(None)
    }

    fn write(&self, doc: &serde_json::Value) -> Result<()> {
        // A symlinked auth file (dotfiles kept elsewhere) is replaced at its target, as
        // docker's CLI does: the link stays.
        let resolved = fs::canonicalize(&self.strata).ok();
        let path = resolved.as_ref().unwrap_or(&self.strata);
        let ctx = |what: &str| format!("{what} {}", path.display());
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(Error::io(ctx("creating the directory of")))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(doc).map_err(|e| Error::json(ctx(""), e))?;
        let res = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(Error::io(ctx("writing")))
    }

    fn load_own(
        &self,
    ) -> Result<(
        serde_json::Value,
        serde_json::Map<String, serde_json::Value>,
    )> {
        let doc = read_json(&self.strata)?.unwrap_or_else(|| serde_json::json!({}));
        let auths = doc
            .get("auths")
            .and_then(|a| a.as_object())
            .cloned()
            .unwrap_or_default();
        Ok((doc, auths))
    }

    /// Stores a credential in strata's file (mode 0600), replacing the registry's entry.
    ///
    /// # Errors
    ///
    /// Unreadable or malformed file, write errors.
    pub fn store(&self, domain: &str, cred: &Credential) -> Result<()> {
        let (mut doc, mut auths) = self.load_own()?;
        let want = normalize_key(domain);
        auths.retain(|k, _| normalize_key(k) != want);
        auths.insert(
            key_for(domain),
            serde_json::json!({"auth": B64.encode(format!("{}:{}", cred.username, cred.secret))}),
        );
        set_auths(&mut doc, auths);
        self.write(&doc)
    }

    /// Removes a registry's entry from strata's file; returns whether there was one.
    ///
    /// # Errors
    ///
    /// Unreadable or malformed file, write errors.
    pub fn remove(&self, domain: &str) -> Result<bool> {
        let (mut doc, mut auths) = self.load_own()?;
        let want = normalize_key(domain);
        let before = auths.len();
        auths.retain(|k, _| normalize_key(k) != want);
        if auths.len() == before {
            return Ok(false);
        }
        set_auths(&mut doc, auths);
        self.write(&doc)?;
        Ok(true)
    }
}

fn set_auths(doc: &mut serde_json::Value, auths: serde_json::Map<String, serde_json::Value>) {
    if !doc.is_object() {
        *doc = serde_json::Value::Object(Default::default());
    }
    if let Some(o) = doc.as_object_mut() {
        o.insert("auths".into(), serde_json::Value::Object(auths));
    }
}

/// Reads `{"insecure-registries": [...]}` from a JSON file (strata's `registries.json`, next to
/// the auth file); missing file: none.
///
/// # Errors
///
/// Unreadable or malformed file.
pub fn insecure_from_file(path: &Path) -> Result<Vec<String>> {
    let Some(doc) = read_json(path)? else {
        return Ok(Vec::new());
    };
    Ok(doc
        .get("insecure-registries")
        .and_then(|l| l.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("http://localhost:5000"), "localhost:5000");
        assert_eq!(normalize_key("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn store_get_remove_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = AuthFiles {
            strata: dir.path().join("cfg/strata/auth.json"),
            docker: Some(dir.path().join("docker/config.json")),
        };
        let c = Credential {
            username: "u".into(),
            secret: "p:w".into(),
        };
        files.store("127.0.0.1:5000", &c).unwrap();
        let mode = fs::metadata(&files.strata).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(files.get("127.0.0.1:5000").unwrap(), Some(c));
        assert_eq!(files.get("other").unwrap(), None);
        assert!(files.remove("127.0.0.1:5000").unwrap());
        assert!(!files.remove("127.0.0.1:5000").unwrap());
        assert_eq!(files.get("127.0.0.1:5000").unwrap(), None);
    }

    #[test]
    fn a_symlinked_auth_file_keeps_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/auth.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        fs::write(&real, b"{}").unwrap();
        let link = dir.path().join("auth.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let files = AuthFiles {
            strata: link.clone(),
            docker: None,
        };
        let c = Credential {
            username: "u".into(),
            secret: "s".into(),
        };
        files.store("127.0.0.1:5000", &c).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert!(
            fs::read_to_string(&real)
                .unwrap()
                .contains("127.0.0.1:5000")
        );
        assert_eq!(files.get("127.0.0.1:5000").unwrap(), Some(c));
    }

    #[test]
    fn insecure_registries_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("registries.json");
        assert!(insecure_from_file(&f).unwrap().is_empty());
        fs::write(
            &f,
            r#"{"insecure-registries":["reg.lan:5000", 7, "10.0.0.2"]}"#,
        )
        .unwrap();
        assert_eq!(
            insecure_from_file(&f).unwrap(),
            ["reg.lan:5000", "10.0.0.2"]
        );
        fs::write(&f, "{").unwrap();
        assert!(insecure_from_file(&f).is_err());
    }

    #[test]
    fn docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
                B64.encode("me:secret")
            ),
        )
        .unwrap();
        let files = AuthFiles {
            strata: dir.path().join("none.json"),
            docker: Some(docker),
        };
        let c = files.get("docker.io").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.secret.as_str()), ("me", "secret"));
    }
}
