//! The registry client: `pull`, `push`, `login`/`logout` and `search` against registries that
//! speak the OCI distribution API (docker's registry, Docker Hub, ghcr.io, ...).
//!
//! - [`client`]: HTTP (reqwest, blocking, rustls) with auth challenges, redirects that never
//!   carry credentials to another host, retries with backoff, per-registry CA certificates.
//! - [`challenge`]: `WWW-Authenticate` parsing.
//! - [`credentials`]: strata's credential file, docker's `config.json` and credential helpers.
//! - [`pull`]: manifest resolution (index → platform), parallel verified layer downloads,
//!   commit of config, manifest and name last.
//! - [`push`]: HEAD checks, cross-repository mounts, monolithic or chunked uploads, config and
//!   manifest last.
//! - [`search`]: `_catalog` listing (and Docker Hub's search API for `docker.io`).
//!
//! Progress leaves the library as [`Event`]s; the CLI renders them.

pub mod challenge;
pub mod client;
pub mod credentials;
pub mod pull;
pub mod push;
pub mod search;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_cas::Digest;

pub use client::{Client, ClientConfig};
pub use credentials::{AuthFiles, Credential};
pub use pull::{PullOptions, Pulled, pull};
pub use push::{PushOptions, Pushed, push};

use crate::error::{Error, Result};

pub use strata_cas::Platform;

/// What happened to one blob during a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Queued.
    Waiting,
    /// The store (or the registry, on push) already has it.
    Exists,
    /// Bytes moved so far of the total.
    Progress {
        /// Bytes so far.
        done: u64,
        /// Total bytes.
        total: u64,
    },
    /// Downloaded and verified; now being unpacked.
    Extracting,
    /// Done (pulled, or pushed).
    Done,
    /// Mounted from another repository of the registry.
    Mounted(String),
    /// A transient failure; retrying.
    Retrying(String),
}

/// A progress event of a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The blob.
    pub blob: Digest,
    /// Its new status.
    pub status: Status,
}

/// The callback that receives events (called from download threads).
pub type Events<'a> = &'a (dyn Fn(Event) + Sync);

/// Registry clients by domain, with the credentials and settings they share.
#[derive(Debug)]
pub struct Registries {
    config: ClientConfig,
    auth: AuthFiles,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl Registries {
    /// Clients with `config`, credentials from `auth`.
    pub fn new(config: ClientConfig, auth: AuthFiles) -> Registries {
        Registries {
            config,
            auth,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The credential files.
    pub fn auth(&self) -> &AuthFiles {
        &self.auth
    }

    /// The (cached) client of a registry domain.
    ///
    /// # Errors
    ///
    /// Credential lookup and client setup errors.
    pub fn client(&self, domain: &str) -> Result<Arc<Client>> {
        if let Ok(c) = self.clients.lock()
            && let Some(c) = c.get(domain)
        {
            return Ok(c.clone());
        }
        let cred = self.auth.get(domain)?;
        let c = Arc::new(Client::new(domain, cred, self.config.clone())?);
        if let Ok(mut m) = self.clients.lock() {
            m.insert(domain.to_string(), c.clone());
        }
        Ok(c)
    }

    /// A fresh client with an explicit credential (login checks it before storing it).
    ///
    /// # Errors
    ///
    /// Client setup errors.
    pub fn client_with(&self, domain: &str, cred: Credential) -> Result<Client> {
        Client::new(domain, Some(cred), self.config.clone())
    }
}

/// Runs `f` on every item, `jobs` threads at a time; after a failure no new item starts, and
/// the failure of the earliest item is returned.
pub(crate) fn for_each_parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = Mutex::new(0usize);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let first: Mutex<Option<(usize, Error)>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 16).min(items.len().max(1)) {
            s.spawn(|| {
                while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                    let i = match next.lock() {
                        Ok(mut n) => {
                            *n += 1;
                            *n - 1
                        }
                        Err(_) => return,
                    };
                    let Some(item) = items.get(i) else {
                        return;
                    };
                    if let Err(e) = f(item) {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        if let Ok(mut slot) = first.lock()
                            && slot.as_ref().is_none_or(|(j, _)| i < *j)
                        {
                            *slot = Some((i, e));
                        }
                    }
                }
            });
        }
    });
    match first.into_inner().ok().flatten() {
        Some((_, e)) => Err(e),
        None if failed.load(std::sync::atomic::Ordering::Relaxed) => Err(Error::Registry {
            context: "parallel transfer".into(),
            message: "a worker thread failed".into(),
        }),
        None => Ok(()),
    }
}

/// The auth scope of a repository.
pub fn scope(repo: &str, push: bool) -> String {
    if push {
        format!("repository:{repo}:pull,push")
    } else {
        format!("repository:{repo}:pull")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches("linux", "arm64", None));
        assert!(!p.matches("linux", "amd64", None));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v1/x".parse::<Platform>().is_err());
        assert!("linux/../x".parse::<Platform>().is_err());
    }
}
