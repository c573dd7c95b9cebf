//! The executor's error type.

use std::io;
use std::path::PathBuf;

/// Everything the executor can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed on `path`.
    #[error("{path}: {source}")]
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
