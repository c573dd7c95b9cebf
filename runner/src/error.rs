//! The runner's error type.

use std::io;
use std::path::PathBuf;

/// Everything the runner can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed on `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path the operation was made on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Cas(#[from] strata_cas::Error),
    /// The image service failed.
    #[error(transparent)]
    Oci(#[from] strata_oci::Error),
    /// The sandbox failed.
    #[error(transparent)]
    Executor(#[from] strata_executor::Error),
    /// No container matches the name or ID prefix.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// An ID prefix matches several containers.
    #[error("multiple containers match the prefix {0:?}; give more of the ID")]
    Ambiguous(String),
    /// A name or request conflicts with the current state (name in use, container running, ...).
    #[error("{0}")]
    Conflict(String),
    /// A flag or value the user gave is invalid (docker's exit 125).
    #[error("{0}")]
    Invalid(String),
    /// No volume has this name.
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    /// A container could not be started (the supervisor's report): docker's exit code (125,
    /// or 127/126 when its command could not be exec'd) and why.
    #[error("{message}")]
    StartFailed { code: i32, message: String },
    /// A container is not running (for kill, exec, attach).
    #[error("container {0} is not running")]
    NotRunning(String),
    /// `--network` names a mode strata does not support.
    #[error("invalid --network {0:?}: strata supports none, host and bridge (default)")]
    NetworkMode(String),
    /// A `-p`/`--publish` value (or an image's exposed port) is malformed.
    #[error("invalid port specification {spec:?}: {reason}")]
    PortSpec {
        /// The value as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A published host port cannot be bound (in use, or an address the host lacks).
    #[error("cannot publish {addr}/{proto}: {source}")]
    PortBind {
        /// `IP:PORT` on the host.
        addr: String,
        /// `tcp` or `udp`.
        proto: String,
        /// The OS error (address in use, ...).
        #[source]
        source: io::Error,
    },
    /// Setting up a container's network failed (`what` says which step).
    #[error("network: {what}: {source}")]
    Net {
        /// The step that failed.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `slirp4netns` failed to configure the container's network.
    #[error("slirp4netns failed: {0}")]
    Slirp(String),
}

impl Error {
    /// An [`Error::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The runner's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
