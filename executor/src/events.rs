//! Build progress as data: the engine emits [`Event`]s, the binary renders them (plain, tty,
//! json or quiet). The library never prints.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One thing that happened during a build. Steps are numbered from 1 in the order they start
/// (`#N` in BuildKit's plain output).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A warning (undeclared build arg, deprecated instruction, ...).
    Warning { message: String },
    /// The context was scanned.
    Context {
        id: usize,
        entries: u64,
        hashed: u64,
        hashed_bytes: u64,
        hashed_paths: Vec<String>,
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
    /// A step (or a FROM / context load) starts.
    Start {
        id: usize,
        /// `[stage i/n] INSTRUCTION` as BuildKit names the vertex.
        name: String,
    },
    /// The step's cache key, whether it hit, and every input the key was made of.
    Cache {
        id: usize,
        key: String,
        hit: bool,
        inputs: Vec<(String, String)>,
    },
    /// Output of a RUN step.
    Output {
        id: usize,
        stream: Stream,
        text: String,
    },
    /// The step finished.
    Done {
        id: usize,
        cached: bool,
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
    /// The step failed.
    Error { id: usize, message: String },
    /// The build finished; `image` is the image ID.
    Finished {
        image: String,
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Where events go; called from the engine's threads.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;
