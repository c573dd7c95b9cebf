//! Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`) on RUN, COPY and ADD lines, found the way
//! BuildKit's `heredocsFromLine` and `ParseHeredoc` find them.
//!
//! BuildKit splits the line into words with its shell lexer in "raw" mode (quotes and escapes
//! kept, unset variables left as written), then matches each word against
//! `^(\d*)<<(-?)([^<]*)$`. The delimiter word is then lexed twice, with and without raw quotes:
//! if the quote counts differ, part of it was quoted and the body is not expanded. The words
//! come from the crate's own shell lexer (`crate::shell`) in that mode, always with `\` as
//! escape, as BuildKit does.

use crate::shell::{ExpandError, Lexer};

/// A heredoc marker found on an instruction line; the body is read by the line walker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Marker {
    pub name: String,
    pub expand: bool,
    pub chomp: bool,
}

/// The heredoc markers of `line`, in order. A line the lexer cannot split has none.
///
/// Returns an error message when a marker's delimiter word cannot be lexed.
pub(super) fn markers(line: &str) -> Result<Vec<Marker>, String> {
    if !line.contains("<<") {
        return Ok(Vec::new());
    }
    let Ok(words) = lex_words(line, true, true) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for word in words {
        if let Some(m) = marker(&word)? {
            out.push(m);
        }
    }
    Ok(out)
}

/// `^(\d*)<<(-?)([^<]*)$` and the delimiter checks of BuildKit's `heredocFromMatch`.
fn marker(word: &str) -> Result<Option<Marker>, String> {
    let after_fd = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(after) = after_fd.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let words = lex_words(rest, false, false).map_err(|e| lex_error(&e))?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = lex_words(rest, true, false).map_err(|e| lex_error(&e))?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Marker {
        expand: quotes(&words[0]) == quotes(&raw[0]),
        name: words.into_iter().next().unwrap_or_default(),
        chomp,
    }))
}

fn lex_error(err: &ExpandError) -> String {
    err.to_string()
}

/// Splits `src` into words like BuildKit's `Lex.ProcessWords` with `\` as escape, an empty
/// environment and `SkipUnsetEnv` (so `$x` and `${x...}` stay as written), keeping quotes
/// and escapes as asked.
fn lex_words(src: &str, raw_quotes: bool, raw_escapes: bool) -> Result<Vec<String>, ExpandError> {
    let lexer = Lexer {
        raw_quotes,
        raw_escapes,
        ..Lexer::raw('\\')
    };
    lexer.process_words(src, &NO_VARIABLES)
}

/// The empty environment: every variable is unset.
const NO_VARIABLES: [(&str, &str); 0] = [];
