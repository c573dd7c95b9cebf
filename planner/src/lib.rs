//! strata's build planner.
//!
//! Data enters as the parser's typed stages plus the build options (build args, target) and the
//! context directory; it leaves as a DAG of stages whose steps carry typed, versioned cache keys.
//! The context is read through [`context`]'s stat index (kept in the store), filtered by
//! [`dockerignore`].

pub mod args;
pub mod context;
pub mod dockerignore;
pub mod error;
pub mod key;
pub mod plan;

pub use error::{Error, Result};
pub use key::{CacheKey, KeyBuilder};
pub use plan::{Base, BuildOptions, FromRef, Plan, PlannedStage, plan};
