//! Dockerfile front end for strata.
//!
//! Text enters through [`parse`] (the raw layer) or [`parse_dockerfile`] (raw plus typed layer)
//! and leaves as data:
//!
//! 1. [`raw`] splits the file into logical lines (directives, escape character, continuations,
//!    heredocs, comments) and parses each with a small nom parser chosen by keyword. The result,
//!    [`RawDockerfile`], is what BuildKit's parser produces and dumps the same way. It accepts
//!    unknown keywords and flags.
//! 2. [`instructions`] turns each raw [`Node`] into a typed [`Instruction`] with per-instruction
//!    validation, and groups them into [`Stage`]s. Words are kept unexpanded; each instruction
//!    documents which of its words the planner expands.
//! 3. [`shell`] is the word expander (the semantics of BuildKit's shell lexer) that the planner
//!    calls with the ARG/ENV environment in effect.
//!
//! Errors carry a [`Location`]; warnings are returned as data, never printed.

pub mod ast;
pub mod error;
pub mod goquote;
pub mod instructions;
pub mod raw;
pub mod shell;

pub use ast::{Directives, Heredoc, Node, RawDockerfile, Warning};
pub use error::{Error, Location};
pub use instructions::{Dockerfile, Instruction, Stage, parse_dockerfile};
pub use raw::{parse, parse_bytes};
