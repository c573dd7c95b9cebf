//! The crate's error type. Helpers: add variants by appending; keep messages lowercase, naming the path or digest.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A kernel call through the syscall seam failed.
    #[error(transparent)]
    Sys(#[from] strata_sys::Error),
    /// A digest string that is not `sha256:<64 lowercase hex>`.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },
    /// A platform is not `os/arch[/variant]`.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64")]
    InvalidPlatform(String),
    /// An image reference that docker would not accept.
    #[error("invalid reference format {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },
    /// Content whose digest is not the one it was stored or announced under.
    #[error("{}: digest mismatch: expected {expected}, got {actual}", path.display())]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// Content whose size is not the announced one.
    #[error("{}: size mismatch: expected {expected} bytes, got {actual}", path.display())]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// A blob that is not in the store.
    #[error("blob {0} not found")]
    BlobNotFound(String),
    /// A layer that is not in the store.
    #[error("layer {0} not found")]
    LayerNotFound(String),
    /// A tar entry that would escape its root or is otherwise unsafe.
    #[error("unsafe archive entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    /// A truncated or malformed archive.
    #[error("invalid archive: {0}")]
    Archive(String),
    /// Store metadata that cannot be parsed or is inconsistent.
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error: `.map_err(io_err(&path))`.
pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
