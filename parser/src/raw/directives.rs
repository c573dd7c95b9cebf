//! Parser directives (`# syntax=`, `# escape=`, `# check=`), as BuildKit's `DirectiveParser`
//! reads them.
//!
//! Every line goes through [`DirectiveParser::parse_line`] until the first line that is not a
//! directive: an instruction, a comment that does not match `#key=value`, a directive with an
//! unknown name, or an empty line. Keys are case-insensitive and each may appear once.

use std::collections::HashSet;

use nom::{
    IResult, Parser,
    bytes::complete::{tag, take_while, take_while1},
    character::complete::satisfy,
    combinator::recognize,
    sequence::pair,
};

use crate::ast::Directives;

/// The directives BuildKit knows; any other name ends the directive section.
const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// What [`DirectiveParser::parse_line`] found on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LineKind {
    /// The section is over (or just ended on this line).
    NotDirective,
    /// A valid directive, already recorded.
    Directive,
}

/// The directive section's state.
#[derive(Debug, Default)]
pub(super) struct DirectiveParser {
    done: bool,
    seen: HashSet<String>,
    pub directives: Directives,
}

impl DirectiveParser {
    /// Looks at one line (line ending removed). Returns the error message for a repeated
    /// directive or an invalid escape character.
    pub fn parse_line(&mut self, line: &str) -> Result<LineKind, String> {
        if self.done {
            return Ok(LineKind::NotDirective);
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(LineKind::NotDirective);
        };
        let key = key.to_ascii_lowercase();
        if !KNOWN.contains(&key.as_str()) {
            self.done = true;
            return Ok(LineKind::NotDirective);
        }
        if !self.seen.insert(key.clone()) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        match key.as_str() {
            "escape" => {
                self.directives.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(format!(
                            "invalid escape token '{value}' does not match ` or \\"
                        ));
                    }
                };
            }
            "syntax" => self.directives.syntax = Some(value),
            _ => self.directives.check = Some(value),
        }
        Ok(LineKind::Directive)
    }
}

/// RE2's `\s`: `[\t\n\f\r ]`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `#`, Unicode whitespace, then `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn directive(line: &str) -> Option<(&str, String)> {
    let r: IResult<&str, &str> = (
        tag("#"),
        take_while(char::is_whitespace),
        recognize(pair(
            satisfy(|c: char| c.is_ascii_alphabetic()),
            take_while(|c: char| c.is_ascii_alphanumeric()),
        )),
        take_while(is_re_space),
        tag("="),
    )
        .map(|(_, _, key, _, _)| key)
        .parse(line);
    let (rest, key) = r.ok()?;
    directive_value(rest).map(|v| (key, v))
}

/// The `\s*(.+?)\s*$` part: leading and trailing `\s` removed; a value made only of `\s`
/// keeps its last character, as the lazy group forces one character to match.
fn directive_value(rest: &str) -> Option<String> {
    if rest.contains('\n') {
        return None;
    }
    let r: IResult<&str, &str> = take_while1(is_re_space).parse(rest);
    let body = match r {
        Ok((body, _)) => body,
        Err(_) => rest,
    };
    let value = body.trim_end_matches(is_re_space);
    if !value.is_empty() {
        return Some(value.to_string());
    }
    rest.chars().last().map(String::from)
}
