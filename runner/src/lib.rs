//! strata's container runtime: containers made from images, kept under `ROOT/containers/`,
//! run in the executor's sandbox (the same one RUN steps use), watched by a per-container
//! supervisor; named and anonymous volumes under `ROOT/volumes/`.

pub mod attach;
pub mod container;
pub mod create;
pub mod error;
pub mod exec;
pub mod lifecycle;
pub mod logs;
pub mod net;
pub mod supervisor;
pub mod tty;

pub use error::{Error, Result};
pub mod commit;
pub mod cp;
pub mod gc;
pub mod mounts;
pub mod volume;
