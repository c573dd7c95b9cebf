//! strata's executor: runs the planner's steps.
//!
//! RUN steps execute in [`sandbox`] (namespaces, overlayfs whose upper dir is the new layer,
//! Docker's default capabilities and seccomp profile); COPY and ADD write layers directly.

pub mod error;
pub mod fs;

pub use error::{Error, Result};
