//! The planner's error type.

use std::io;
use std::path::PathBuf;

use strata_parser::Location;

/// Everything the planner can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A malformed `.dockerignore` line.
    #[error("{file}:{line}: {message}")]
    DockerIgnore {
        file: String,
        line: usize,
        message: String,
    },
    /// The build context cannot be read as asked.
    #[error("{message}")]
    Context { message: String },
    /// A Dockerfile error found while planning (expansion, stage references), at a location.
    #[error(transparent)]
    Dockerfile(#[from] strata_parser::Error),
    /// An error at a Dockerfile location that is not the parser's (e.g. an unknown stage).
    #[error("{loc}: {message}")]
    At { loc: Location, message: String },
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found; the stages are: {}", stages.join(", "))]
    UnknownTarget { target: String, stages: Vec<String> },
    /// A bad build option (platform, build arg).
    #[error("{0}")]
    Option(String),
}

/// Shorthand for planner results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
