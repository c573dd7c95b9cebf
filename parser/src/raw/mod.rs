//! The raw layer: Dockerfile text in, [`RawDockerfile`] out, with BuildKit's exact rules.
//!
//! Data flows through four steps:
//!
//! 1. [`lines`] walks the physical lines: it strips the UTF-8 BOM and line endings, reads the
//!    parser directives at the top ([`directives`]), collects the comments before each
//!    instruction, joins continuation lines and reads heredoc bodies ([`heredoc`]).
//! 2. [`flags`] splits each logical line into keyword, `--flags` and the rest, as BuildKit's
//!    `splitCommand` and `extractBuilderFlags` do.
//! 3. [`dispatch`] picks the argument parser for the keyword; each family of instructions has a
//!    small nom parser in [`line_parsers`] (JSON-or-shell via [`json`], key=value pairs, words).
//! 4. The result is one [`crate::ast::Node`] per instruction; its `dump()` prints exactly what
//!    BuildKit's `parser.Parse(r).AST.Dump()` prints.
//!
//! Everything is linear in the input and iterative (no recursion proportional to the input).

mod directives;
mod dispatch;
mod flags;
mod heredoc;
mod json;
mod line_parsers;
mod lines;
#[cfg(test)]
mod tests;

use crate::ast::RawDockerfile;
use crate::error::{Error, Location};

/// Parses a Dockerfile the way BuildKit's `parser.Parse` does.
///
/// A leading UTF-8 byte-order mark is ignored and `\r\n` line endings are accepted.
///
/// # Errors
///
/// [`Error::Syntax`] for a repeated or invalid parser directive, an unterminated heredoc, a
/// malformed ENV/LABEL, a JSON array holding something other than strings, or a file without
/// any instruction.
pub fn parse(src: &str) -> Result<RawDockerfile, Error> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    lines::parse_text(src)
}

/// Like [`parse`], for bytes that may not be valid UTF-8.
///
/// # Errors
///
/// Everything [`parse`] reports, plus [`Error::Syntax`] ("invalid UTF-8") at the line and
/// column of the first byte that is not valid UTF-8.
pub fn parse_bytes(src: &[u8]) -> Result<RawDockerfile, Error> {
    match std::str::from_utf8(src) {
        Ok(text) => parse(text),
        Err(e) => Err(invalid_utf8(src, e.valid_up_to())),
    }
}

/// Builds the error for the first invalid byte at `offset`.
fn invalid_utf8(src: &[u8], offset: usize) -> Error {
    // The prefix up to `offset` is valid UTF-8 by construction.
    let prefix = std::str::from_utf8(&src[..offset]).unwrap_or_default();
    let prefix = prefix.strip_prefix('\u{feff}').unwrap_or(prefix);
    let line = prefix.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = prefix.rfind('\n').map_or(0, |i| i + 1);
    let col = prefix[line_start..].chars().count() + 1;
    Error::syntax(Location::new(line, col, 1), "invalid UTF-8")
}
