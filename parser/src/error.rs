//! The crate's error type. Every error carries the [`Location`] it refers to, so the binary can
//! print `FILE:LINE:COL: message` with the source line and a caret.

use std::fmt;

use serde::Serialize;

use crate::shell::ExpandError;

/// A place in the Dockerfile: 1-based line and column (columns count characters, not bytes),
/// and how many characters the caret should underline (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Location {
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Location {
    pub fn new(line: usize, col: usize, len: usize) -> Self {
        Location {
            line,
            col,
            len: len.max(1),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Everything that can go wrong while reading a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The raw layer could not split or parse the text (directives, continuations, heredocs,
    /// invalid UTF-8, ...).
    #[error("{loc}: {message}")]
    Syntax { loc: Location, message: String },
    /// A syntactically valid line that is not a valid instruction: unknown keyword, unknown or
    /// malformed flag, wrong number of arguments, bad duration, ...
    #[error("{loc}: {message}")]
    Instruction { loc: Location, message: String },
    /// Word expansion failed (malformed `${...}`, unterminated quote, `${V:?msg}`, ...).
    #[error("{loc}: {source}")]
    Expand {
        loc: Location,
        #[source]
        source: ExpandError,
    },
}

impl Error {
    pub fn syntax(loc: Location, message: impl Into<String>) -> Self {
        Error::Syntax {
            loc,
            message: message.into(),
        }
    }

    pub fn instruction(loc: Location, message: impl Into<String>) -> Self {
        Error::Instruction {
            loc,
            message: message.into(),
        }
    }

    /// Where the error is.
    pub fn location(&self) -> Location {
        match self {
            Error::Syntax { loc, .. }
            | Error::Instruction { loc, .. }
            | Error::Expand { loc, .. } => *loc,
        }
    }

    /// The message without the location prefix.
    pub fn message(&self) -> String {
        match self {
            Error::Syntax { message, .. } | Error::Instruction { message, .. } => message.clone(),
            Error::Expand { source, .. } => source.to_string(),
        }
    }
}
