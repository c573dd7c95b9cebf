//! The crate's error type: module errors gathered with `#[from]`; messages lowercase unless they
//! reproduce Docker's own text.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while executing a step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An error from the content-addressed store.
    #[error(transparent)]
    Cas(#[from] strata_cas::Error),
    /// A COPY or ADD that cannot be carried out (the message is Docker's text where it has one).
    #[error("{0}")]
    Copy(String),
    /// A USER or `--chown` spec that cannot be resolved in the image.
    #[error("{0}")]
    User(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error: `.map_err(io_err(&path))`.
pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
