//! strata's executor: runs the planner's steps.
//!
//! RUN steps execute in [`sandbox`] (namespaces, overlayfs whose upper dir is the new layer,
//! Docker's default capabilities and seccomp profile); COPY and ADD write layers directly
//! ([`fs`]); [`build`] drives a whole Dockerfile, with the [`cache`] of step results; [`ssh`]
//! forwards SSH agents to `RUN --mount=type=ssh`.

pub mod build;
pub mod cache;
pub mod error;
pub mod events;
pub mod export;
pub mod fs;
pub mod image_config;
pub mod sandbox;
pub mod ssh;

pub use error::{Error, Result};
