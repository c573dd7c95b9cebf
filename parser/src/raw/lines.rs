//! The line walker: BuildKit's `Parse` loop over physical lines.
//!
//! For each logical line it records the comments before it, feeds the directive parser, joins
//! continuation lines (skipping comment lines and noting empty ones), builds the node, then
//! reads the bodies of its heredocs.

use crate::ast::{Heredoc, Node, RawDockerfile, Warning};
use crate::error::{Error, Location};

use super::directives::{DirectiveParser, LineKind};
use super::dispatch::{can_contain_heredoc, node_from_line};
use super::flags::is_go_space;
use super::heredoc::{Marker, markers};

/// Physical lines, each with its line ending (BuildKit's `scanLines`).
struct PhysicalLines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for PhysicalLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(line)
    }
}

/// `bytes.TrimRight(line, "\r\n")`.
fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// BuildKit's `isComment`: `#` after leading whitespace.
fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_go_space).starts_with('#')
}

/// Removes a trailing line-continuation escape: the escape character, then only spaces and
/// tabs, not itself preceded by the escape character. Returns the line and whether the
/// logical line ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// The state of one parse.
struct Walker<'a> {
    lines: PhysicalLines<'a>,
    /// Physical lines consumed so far (BuildKit's `currentLine`).
    line_no: usize,
    directives: DirectiveParser,
    comments: Vec<String>,
    nodes: Vec<Node>,
    warnings: Vec<Warning>,
}

/// Parses `src` (BOM already removed).
pub(super) fn parse_text(src: &str) -> Result<RawDockerfile, Error> {
    let mut w = Walker {
        lines: PhysicalLines { rest: src },
        line_no: 0,
        directives: DirectiveParser::default(),
        comments: Vec::new(),
        nodes: Vec::new(),
        warnings: Vec::new(),
    };
    while let Some(raw) = w.lines.next() {
        w.logical_line(raw)?;
    }
    if w.nodes.is_empty() {
        return Err(Error::syntax(
            Location::new(1, 1, 1),
            "file with no instructions",
        ));
    }
    Ok(RawDockerfile {
        directives: w.directives.directives,
        nodes: w.nodes,
        warnings: w.warnings,
    })
}

impl Walker<'_> {
    fn escape(&self) -> char {
        self.directives.directives.escape
    }

    /// Records a comment line as BuildKit does: the text after the first byte, trimmed; an
    /// empty comment clears the list.
    fn note_comment(&mut self, raw: &str) {
        if !is_comment(raw) {
            return;
        }
        let bytes = raw.as_bytes();
        let text = String::from_utf8_lossy(&bytes[1.min(bytes.len())..]);
        let text = text.trim_matches(is_go_space);
        if text.is_empty() {
            self.comments.clear();
        } else {
            self.comments.push(text.to_string());
        }
    }

    /// Handles the logical line starting at physical line `raw`.
    fn logical_line(&mut self, raw: &str) -> Result<(), Error> {
        self.note_comment(raw);
        let token = trim_newline(raw);
        let stripped = token.trim_start_matches(is_go_space);
        let col = token[..token.len() - stripped.len()].chars().count() + 1;
        match self.directives.parse_line(stripped) {
            Ok(LineKind::Directive) => {
                self.comments.pop();
            }
            Ok(LineKind::NotDirective) => {}
            Err(message) => {
                return Err(Error::syntax(
                    Location::new(self.line_no + 1, 1, 1),
                    message,
                ));
            }
        }
        self.line_no += 1;
        let start_line = self.line_no;
        let first = if is_comment(stripped) { "" } else { stripped };
        let (first, mut end_of_line) = trim_continuation(first, self.escape());
        if end_of_line && first.is_empty() {
            return Ok(());
        }
        let mut line = first.to_string();
        let mut has_empty = false;
        while !end_of_line {
            let Some(next) = self.lines.next() else { break };
            self.line_no += 1;
            if is_comment(next) {
                continue;
            }
            let token = trim_newline(next);
            if token.trim_start_matches(is_go_space).is_empty() {
                has_empty = true;
                continue;
            }
            let (part, eol) = trim_continuation(token, self.escape());
            line.push_str(part);
            end_of_line = eol;
        }
        if has_empty {
            self.warnings.push(Warning {
                rule: "NoEmptyContinuation".to_string(),
                message: format!("Empty continuation line found in: {line}"),
                loc: Location::new(self.line_no, 1, 1),
            });
        }
        let keyword_loc = Location::new(start_line, col, 1);
        let mut node = node_from_line(&line, self.escape()).map_err(|message| {
            let len = line
                .split_whitespace()
                .next()
                .map_or(1, |k| k.chars().count());
            Error::syntax(Location::new(start_line, col, len), message)
        })?;
        if can_contain_heredoc(&node) {
            let found = markers(&line).map_err(|m| Error::syntax(keyword_loc, m))?;
            for marker in found {
                let heredoc = self.read_heredoc(marker).ok_or_else(|| {
                    let len = node.keyword.chars().count();
                    Error::syntax(Location::new(start_line, col, len), "unterminated heredoc")
                })?;
                node.heredocs.push(heredoc);
            }
        }
        node.start_line = start_line;
        node.end_line = self.line_no;
        node.col = col;
        node.prev_comments = std::mem::take(&mut self.comments);
        if let Some(sub) = node.sub.as_deref_mut() {
            sub.start_line = start_line;
            sub.end_line = self.line_no;
            sub.col = col;
        }
        self.nodes.push(node);
        Ok(())
    }

    /// Reads a heredoc body up to its terminator line; `None` at end of file.
    fn read_heredoc(&mut self, marker: Marker) -> Option<Heredoc> {
        let mut content = String::new();
        loop {
            let raw = self.lines.next()?;
            self.line_no += 1;
            let mut candidate = trim_newline(raw);
            if marker.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == marker.name {
                break;
            }
            if marker.chomp {
                content.push_str(raw.trim_start_matches('\t'));
            } else {
                content.push_str(raw);
            }
        }
        Some(Heredoc {
            name: marker.name,
            content,
            expand: marker.expand,
            chomp: marker.chomp,
        })
    }
}
