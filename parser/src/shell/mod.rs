//! Word expansion with the semantics of BuildKit's shell lexer (`frontend/dockerfile/shell`).
//!
//! The planner hands each expandable word of an instruction to a [`Lexer`] together with the
//! ARG/ENV variables in effect (anything implementing [`Env`]) and gets back the expanded text:
//!
//! - quotes: `'...'` is literal; `"..."` expands `$` and lets the escape character escape `"`,
//!   `$` and itself; quotes are removed;
//! - the escape character (`\` or `` ` ``, from the `escape` directive) makes the next character
//!   literal, and is dropped at the very end of the word;
//! - `$NAME`, `${NAME}`, positional (`$1`, `${10}`) and special (`$@ $* $# $? $- $$ $! $0`)
//!   parameters, which are simply looked up like any other name;
//! - `${V:-w} ${V-w} ${V:+w} ${V+w} ${V:?msg} ${V?msg}`, with `w` expanded only as needed by
//!   the result but always parsed;
//! - `${V#p} ${V##p} ${V%p} ${V%%p} ${V/p/r} ${V//p/r}` with shell patterns (module `glob`).
//!
//! [`Lexer::process_word`] returns one string, [`Lexer::process_words`] splits it into words on
//! unquoted whitespace the way BuildKit's `ProcessWords` does, and
//! [`Lexer::process_word_with_matches`] also reports which names were found and which were not.
//! Errors are [`ExpandError`]s whose messages follow BuildKit's
//! (`failed to process "${}": syntax error: bad substitution`).
//!
//! Deliberate differences: `${NAME` at the end of the word reports a missing `}` where BuildKit
//! prints "unsupported modifier (\u{fffd})"; `${` nested more than 100 deep is an error instead of
//! unbounded recursion; letters outside ASCII follow Rust's `Alphabetic` (see `chars`).

mod chars;
mod env;
mod glob;
mod lexer;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use crate::goquote::quote;
use crate::shell::lexer::Fault;

pub use env::Env;

/// The longest word, in characters, that an error message quotes in full.
const MAX_SHOWN: usize = 200;

/// The word as an error message shows it: Go-quoted, and cut short past [`MAX_SHOWN`]
/// characters so a huge adversarial word doesn't become a huge message.
fn shown(word: &str) -> String {
    match word.char_indices().nth(MAX_SHOWN) {
        None => quote(word),
        Some((cut, _)) => quote(&format!("{}...", &word[..cut])),
    }
}

/// Why a word could not be expanded. Every variant carries the original word; the message is
/// BuildKit's: `failed to process "<word>": <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${}`, `${:...}` or `${{...`.
    #[error("failed to process {}: syntax error: bad substitution", shown(.word))]
    BadSubstitution { word: String },
    /// A `${` without its closing `}`.
    #[error("failed to process {}: syntax error: missing '}}'", shown(.word))]
    MissingBrace { word: String },
    /// `${V/pattern` without the `/` that ends the pattern.
    #[error("failed to process {}: syntax error: missing '/' in ${{}}", shown(.word))]
    MissingSlash { word: String },
    /// A `'` without its closing quote.
    #[error(
        "failed to process {}: unexpected end of statement while looking for matching single-quote",
        shown(.word)
    )]
    UnterminatedSingleQuote { word: String },
    /// A `"` without its closing quote.
    #[error(
        "failed to process {}: unexpected end of statement while looking for matching double-quote",
        shown(.word)
    )]
    UnterminatedDoubleQuote { word: String },
    /// The input ended while looking for `stop`.
    #[error(
        "failed to process {}: unexpected end of statement while looking for matching {stop}",
        shown(.word)
    )]
    Unterminated { word: String, stop: char },
    /// `${V<op>...}` with an operator BuildKit does not support (`:=`, `=`, `:x`, ...).
    #[error("failed to process {}: unsupported modifier ({modifier}) in substitution", shown(.word))]
    UnsupportedModifier { word: String, modifier: String },
    /// `${V:?msg}` / `${V?msg}` on an unset (or, with `:`, empty) variable.
    #[error("failed to process {}: {name}: {message}", shown(.word))]
    Required {
        word: String,
        name: String,
        message: String,
    },
    /// A pattern with an escape other than `\*`, `\?`, `\\`, `\}` or `\/`.
    #[error(
        "failed to process {}: invalid pattern ({pattern}) in substitution: {reason}",
        shown(.word)
    )]
    InvalidPattern {
        word: String,
        pattern: String,
        reason: String,
    },
    /// `${...}` nested more deeply than the expander allows.
    #[error("failed to process {}: expansion nested too deeply", shown(.word))]
    TooDeep { word: String },
}

impl ExpandError {
    fn new(word: &str, fault: Fault) -> Self {
        let word = word.to_string();
        match fault {
            Fault::BadSubstitution => ExpandError::BadSubstitution { word },
            Fault::MissingBrace => ExpandError::MissingBrace { word },
            Fault::MissingSlash => ExpandError::MissingSlash { word },
            Fault::UnterminatedSingleQuote => ExpandError::UnterminatedSingleQuote { word },
            Fault::UnterminatedDoubleQuote => ExpandError::UnterminatedDoubleQuote { word },
            Fault::Unterminated(stop) => ExpandError::Unterminated { word, stop },
            Fault::UnsupportedModifier(modifier) => {
                ExpandError::UnsupportedModifier { word, modifier }
            }
            Fault::Required { name, message } => ExpandError::Required {
                word,
                name,
                message,
            },
            Fault::InvalidPattern { pattern, reason } => ExpandError::InvalidPattern {
                word,
                pattern,
                reason,
            },
            Fault::TooDeep => ExpandError::TooDeep { word },
        }
    }

    /// The word that failed to expand, as written.
    pub fn word(&self) -> &str {
        match self {
            ExpandError::BadSubstitution { word }
            | ExpandError::MissingBrace { word }
            | ExpandError::MissingSlash { word }
            | ExpandError::UnterminatedSingleQuote { word }
            | ExpandError::UnterminatedDoubleQuote { word }
            | ExpandError::Unterminated { word, .. }
            | ExpandError::UnsupportedModifier { word, .. }
            | ExpandError::Required { word, .. }
            | ExpandError::InvalidPattern { word, .. }
            | ExpandError::TooDeep { word } => word,
        }
    }
}

/// The outcome of [`Lexer::process_word_with_matches`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word (no field splitting).
    pub result: String,
    /// Names that were looked up and found.
    pub matched: BTreeSet<String>,
    /// Names that were looked up and not set.
    pub unmatched: BTreeSet<String>,
}

/// The word expander. `escape` is the Dockerfile escape character (`\` unless the `escape`
/// directive says `` ` ``). The four switches are BuildKit's `Lex` options, all off for
/// instruction arguments:
///
/// - the raw layer finds heredoc markers with `raw_quotes`, `raw_escapes` and `skip_unset_env`
///   on, so the words it sees are as written (`<<"EOF"` stays quoted);
/// - heredoc bodies expand with `skip_process_quotes` on, so quotes in a script are text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The character that escapes the next one.
    pub escape: char,
    /// Keep quote characters in the result instead of removing them.
    pub raw_quotes: bool,
    /// Keep escape characters in the result instead of removing them.
    pub raw_escapes: bool,
    /// Treat `'` and `"` as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave `$V`, `${V}` and `${V...}` as written when `V` is not set.
    pub skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer with the given escape character.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// The lexer the raw layer splits heredoc lines with: quotes, escapes and unset variables
    /// are kept as written.
    pub fn raw(escape: char) -> Self {
        Lexer {
            raw_quotes: true,
            raw_escapes: true,
            skip_unset_env: true,
            ..Lexer::new(escape)
        }
    }

    /// The lexer for ADD and COPY heredoc bodies: variables expand, quotes are plain text,
    /// and the escape character is always `\\` (as BuildKit's `ExpandRaw`), whatever the
    /// Dockerfile's `escape` directive says.
    pub fn heredoc() -> Self {
        Lexer {
            skip_process_quotes: true,
            ..Lexer::new('\\')
        }
    }

    /// Expands `word` into one string; whitespace is kept as it is.
    ///
    /// # Errors
    /// Malformed input (`${}`, an unterminated quote or `${`, an unsupported modifier, an
    /// invalid pattern), `${V:?msg}` on an unset or empty variable, or nesting too deep.
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        self.walk(word, env).map(|walk| walk.result)
    }

    /// Expands `word` and splits it on whitespace that is neither quoted nor escaped
    /// (whitespace produced by `$` expansion splits too). Empty words are dropped, so `""`
    /// yields no word at all, as in BuildKit.
    ///
    /// # Errors
    /// As [`Lexer::process_word`].
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        self.walk(word, env).map(|walk| walk.words)
    }

    /// Expands `word` like [`Lexer::process_word`] and also returns the names it looked up,
    /// split into those that were set and those that were not.
    ///
    /// # Errors
    /// As [`Lexer::process_word`].
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expansion, ExpandError> {
        self.walk(word, env).map(|walk| Expansion {
            result: walk.result,
            matched: walk.matched,
            unmatched: walk.unmatched,
        })
    }

    fn walk(&self, word: &str, env: &dyn Env) -> Result<lexer::Walk, ExpandError> {
        lexer::walk(word, self, env).map_err(|fault| ExpandError::new(word, fault))
    }
}
