//! The executor's error type.

use std::io;
use std::path::PathBuf;

use strata_parser::Location;

/// Everything the executor can fail with.
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
    /// A kernel call through the seam failed.
    #[error(transparent)]
    Sys(#[from] strata_sys::Error),
    /// The sandbox could not be set up or run (a bad spec, a failed setup step in the init).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The store failed.
    #[error(transparent)]
    Cas(#[from] strata_cas::Error),
    /// The image service failed.
    #[error(transparent)]
    Oci(#[from] strata_oci::Error),
    /// Planning failed (stages, ARGs, context).
    #[error(transparent)]
    Planner(#[from] strata_planner::Error),
    /// A Dockerfile error found while executing (expansion of an instruction).
    #[error(transparent)]
    Dockerfile(#[from] strata_parser::Error),
    /// COPY/ADD could not do what was asked (missing source, bad destination, ...).
    #[error("{0}")]
    Copy(String),
    /// A user or group could not be resolved in the image.
    #[error("{0}")]
    User(String),
    /// A step failed; `loc` is its instruction, `message` says why (for RUN: the command and
    /// its exit code), `output` holds the last lines it printed.
    #[error("{loc}: {message}")]
    Step {
        loc: Location,
        message: String,
        output: Vec<String>,
    },
    /// The build was asked for something it may not do (an entitlement not allowed, a missing
    /// required secret, ...).
    #[error("{0}")]
    Denied(String),
    /// An `--ssh` source could not be used (a bad path, an agent that would not start, a key
    /// `ssh-add` refused).
    #[error("ssh: {0}")]
    Ssh(String),
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

/// The executor's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error: `.map_err(io_err(&path))`.
pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
