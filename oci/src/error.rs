//! The crate's error type, [`Error`]: store errors pass through unchanged (`#[from]`), format
//! and lookup errors name the archive entry, image or media type they are about. Messages follow
//! docker's wording where a user sees them (`No such image: NAME`).

/// Everything that can go wrong in image formats, compression and the image service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the content-addressed store.
    #[error(transparent)]
    Cas(#[from] strata_cas::Error),
    /// An I/O error while reading or writing a stream (archive, layer, output).
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A malformed archive entry (docker-archive or OCI layout), named.
    #[error("invalid archive entry {entry:?}: {reason}")]
    BadEntry {
        /// The entry's path inside the archive.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An archive that is neither a docker-archive nor an OCI layout, or misses required parts.
    #[error("invalid archive: {0}")]
    BadArchive(String),
    /// An image that is not in the store (docker's wording).
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// A short image ID that matches more than one image.
    #[error("ambiguous image ID {prefix:?}: matches {count} images")]
    AmbiguousId {
        /// The prefix given.
        prefix: String,
        /// How many images it matched.
        count: usize,
    },
    /// A media type strata does not handle.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// Image JSON (config, manifest, index) that cannot be parsed or built.
    #[error("invalid {what}: {reason}")]
    BadJson {
        /// Which document (`image config sha256:...`, `manifest.json`, ...).
        what: String,
        /// The parser's message.
        reason: String,
    },
    /// A `--change` line that is not a supported Dockerfile instruction.
    #[error("invalid --change {change:?}: {reason}")]
    BadChange {
        /// The line given.
        change: String,
        /// Why it is refused.
        reason: String,
    },
    /// Content whose digest or size does not match the descriptor that announced it.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The entry or blob.
        what: String,
        /// The announced digest.
        expected: String,
        /// The computed digest.
        actual: String,
    },
    /// A decompressed stream larger than the configured bound.
    #[error("decompressed size exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// An image reference or tag that is not valid.
    #[error("invalid reference format: {0}")]
    BadReference(String),
    /// `rmi` of an image with several tags, given by ID, without `--force`.
    #[error(
        "conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories"
    )]
    Conflict {
        /// The short image ID.
        id: String,
    },
    /// A registry request that failed: what was asked of which registry, and why.
    #[error("{context}: {message}")]
    Registry {
        /// The registry and operation (`pulling 127.0.0.1:5000/x:latest`).
        context: String,
        /// What went wrong (status, registry error text).
        message: String,
    },
    /// Credentials missing or refused by a registry (HTTP 401/403).
    #[error("{context}: unauthorized: {message}")]
    Unauthorized {
        /// The registry and operation.
        context: String,
        /// The registry's own message, or the status.
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`] with a context string: `.map_err(Error::io("writing manifest.json"))`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// An [`Error::BadJson`] for a document.
    pub(crate) fn json(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::BadJson {
            what: what.into(),
            reason: e.to_string(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
