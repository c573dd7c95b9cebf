//! strata's container runtime: containers made from images, kept under `ROOT/containers/`,
//! run in the executor's sandbox (the same one RUN steps use), watched by a per-container
//! supervisor; named and anonymous volumes under `ROOT/volumes/`.

pub mod error;
pub mod net;

pub use error::{Error, Result};
