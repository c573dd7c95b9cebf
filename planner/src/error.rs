//! The crate's error type, shared by every planner module. Add variants by appending; keep
//! messages lowercase, naming the path, file or pattern they are about.

use std::path::PathBuf;

/// Everything that can go wrong while planning a build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `.dockerignore` line that Docker would reject (`file:line: message`).
    #[error("{file}:{line}: {message}")]
    DockerIgnore {
        file: String,
        line: usize,
        message: String,
    },
    /// A malformed wildcard pattern (Go `path/filepath.Match` syntax).
    #[error("bad pattern {pattern:?}: {message}")]
    BadPattern { pattern: String, message: String },
    /// A symlink chain that does not end (more than 40 links, like the kernel's ELOOP).
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    /// The build context cannot be used as it is.
    #[error("build context: {message}")]
    Context { message: String },
    /// A Dockerfile error found while planning (expansion, stage references), at a location.
    #[error(transparent)]
    Dockerfile(#[from] strata_parser::Error),
    /// An error at a Dockerfile location that is not the parser's (e.g. an unknown stage).
    #[error("{loc}: {message}")]
    At {
        loc: strata_parser::Location,
        message: String,
    },
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found; the stages are: {}", stages.join(", "))]
    UnknownTarget { target: String, stages: Vec<String> },
    /// A bad build option (platform, build arg).
    #[error("{0}")]
    Option(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error: `.map_err(io_err(&path))`.
pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// Attaches a path to a failed kernel call made through `nix`.
pub fn errno_err(path: impl Into<PathBuf>) -> impl FnOnce(nix::errno::Errno) -> Error {
    let path = path.into();
    move |errno| Error::Io {
        path,
        source: std::io::Error::from(errno),
    }
}
