//! The raw layer's output: one [`Node`] per instruction, as BuildKit's `parser.Node` holds it,
//! plus the directives and warnings of the file.
//!
//! A node keeps its keyword, flags, arguments (BuildKit's `Next` chain), heredocs, original text,
//! line range and the comments before it. [`RawDockerfile::dump`] prints exactly what BuildKit's
//! `parser.Parse(...).AST.Dump()` prints, which makes golden tests against BuildKit possible.

use serde::Serialize;

use crate::error::Location;

/// The parser directives at the top of a Dockerfile (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=...`, the frontend image reference (recorded, not acted upon).
    pub syntax: Option<String>,
    /// The escape character: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=...`, the build-check configuration (recorded verbatim).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A heredoc attached to an instruction (`RUN <<EOF ... EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, without quotes.
    pub name: String,
    /// The body, with its final newline; leading tabs already stripped for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): no variable expansion.
    pub expand: bool,
    /// True for `<<-EOF`.
    pub chomp: bool,
}

/// A warning found while parsing; returned as data, never printed by the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// A short, stable rule name, e.g. `EmptyContinuationLine` or `MaintainerDeprecated`.
    pub rule: String,
    pub message: String,
    pub loc: Location,
}

/// One instruction of the raw layer. It accepts any keyword and any flags; validation is the
/// typed layer's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The keyword, lowercased (`run`, `copy`, ...).
    pub keyword: String,
    /// The flags before the arguments, as written (`--from=build`, `--link`).
    pub flags: Vec<String>,
    /// The arguments: BuildKit's `Next` chain of values. ENV and LABEL give key, value and
    /// separator triples; the JSON form gives one value per element; a shell form gives one
    /// value holding the rest of the line.
    pub args: Vec<String>,
    /// ONBUILD's wrapped instruction.
    pub sub: Option<Box<Node>>,
    /// The arguments came from the JSON (exec) form.
    pub json: bool,
    /// Heredocs attached to this instruction, in order.
    pub heredocs: Vec<Heredoc>,
    /// The logical line after continuations are joined, as BuildKit's `Node.Original`.
    pub original: String,
    /// 1-based line where the instruction starts.
    pub start_line: usize,
    /// 1-based line where it ends (including continuation lines and heredoc bodies).
    pub end_line: usize,
    /// 1-based column of the keyword on `start_line`.
    pub col: usize,
    /// Comment lines directly before the instruction, without the leading `#`, trimmed.
    pub prev_comments: Vec<String>,
}

impl Node {
    /// Where the keyword is: used for errors about the whole instruction.
    pub fn location(&self) -> Location {
        Location::new(self.start_line, self.col, self.keyword.chars().count())
    }

    /// BuildKit's `Node.Dump()` for this node (without the surrounding parentheses that the
    /// file-level dump adds).
    pub fn dump(&self) -> String {
        let mut s = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            s.push_str(" [");
            for (i, f) in self.flags.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(&crate::goquote::quote(f));
            }
            s.push(']');
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&crate::goquote::quote(a));
        }
        if let Some(sub) = &self.sub {
            s.push_str(" (");
            s.push_str(&sub.dump());
            s.push(')');
        }
        s.trim().to_string()
    }
}

/// The raw parse of a whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawDockerfile {
    pub directives: Directives,
    pub nodes: Vec<Node>,
    pub warnings: Vec<Warning>,
}

impl RawDockerfile {
    /// BuildKit's `AST.Dump()`: one `(instruction ...)` per line, no trailing newline.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push('(');
            out.push_str(&n.dump());
            out.push_str(")\n");
        }
        out.trim().to_string()
    }
}
