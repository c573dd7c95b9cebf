//! The expansion state machine: BuildKit's `shellWord` (quotes, escapes, `$` forms).
//!
//! One [`ShellWord`] walks the characters of a word once. `${...}` bodies are read by a nested
//! call that stops on `}` (or `/` for the pattern of `${V/p/r}`), so the recursion depth is the
//! brace nesting depth, capped at [`MAX_DEPTH`].

use std::collections::BTreeSet;

use crate::shell::Lexer;
use crate::shell::chars::{is_digit, is_name_char, is_space};
use crate::shell::env::Env;
use crate::shell::glob::{Pattern, expand_template, reverse_pattern};

/// How deeply `${...}` may nest before expansion gives up.
pub(crate) const MAX_DEPTH: usize = 100;

/// What went wrong, before the word is attached (see [`crate::shell::ExpandError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    BadSubstitution,
    MissingBrace,
    MissingSlash,
    UnterminatedSingleQuote,
    UnterminatedDoubleQuote,
    Unterminated(char),
    UnsupportedModifier(String),
    Required { name: String, message: String },
    InvalidPattern { pattern: String, reason: String },
    TooDeep,
}

/// The result of walking a whole word.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub result: String,
    pub words: Vec<String>,
    pub matched: BTreeSet<String>,
    pub unmatched: BTreeSet<String>,
}

/// Reads characters the way Go's `text/scanner` does with `Peek`/`Next`: a byte-order mark at
/// the very start is skipped.
#[derive(Debug)]
struct Scanner {
    chars: Vec<char>,
    pos: usize,
}

impl Scanner {
    fn new(text: &str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Scanner {
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// The text read since position `start`, as written.
    fn since(&self, start: usize) -> String {
        self.chars[start..self.pos].iter().collect()
    }
}

/// BuildKit's `wordsStruct`: splits on unquoted whitespace as characters arrive.
#[derive(Debug, Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    /// A character subject to splitting.
    fn add_char(&mut self, c: char) {
        if is_space(c) {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    /// A quoted or escaped character.
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    /// The value of a `$` expansion: split like unquoted text.
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    /// The content of a quoted string: kept whole.
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

/// Expands `word`; see [`crate::shell::Lexer`].
pub(crate) fn walk(word: &str, lexer: &Lexer, env: &dyn Env) -> Result<Walk, Fault> {
    let mut sw = ShellWord {
        scanner: Scanner::new(word),
        env,
        escape: lexer.escape,
        raw_quotes: lexer.raw_quotes,
        raw_escapes: lexer.raw_escapes,
        skip_process_quotes: lexer.skip_process_quotes,
        skip_unset_env: lexer.skip_unset_env,
        depth: 0,
        matched: BTreeSet::new(),
        unmatched: BTreeSet::new(),
    };
    let (result, words) = sw.process_stop_on(None, lexer.raw_escapes)?;
    Ok(Walk {
        result,
        words: words.finish(),
        matched: sw.matched,
        unmatched: sw.unmatched,
    })
}

/// BuildKit's `shellWord`.
struct ShellWord<'a> {
    scanner: Scanner,
    env: &'a dyn Env,
    escape: char,
    /// Keep quote characters in the output ([`Lexer::raw_quotes`]).
    raw_quotes: bool,
    /// Keep escape characters in the output ([`Lexer::raw_escapes`], and always while reading
    /// patterns and replacements).
    raw_escapes: bool,
    /// Quotes are ordinary characters ([`Lexer::skip_process_quotes`]).
    skip_process_quotes: bool,
    /// Unset variables stay as written ([`Lexer::skip_unset_env`]).
    skip_unset_env: bool,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl ShellWord<'_> {
    /// Reads until `stop` (consumed) or the end of the word when `stop` is `None`.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Words), Fault> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.stop_on(stop);
        self.raw_escapes = saved;
        out
    }

    fn stop_on(&mut self, stop: Option<char>) -> Result<(String, Words), Fault> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.scanner.peek() {
            if Some(c) == stop {
                self.scanner.next();
                return Ok((result, words));
            }
            match c {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '\'' | '"' if !self.skip_process_quotes => {
                    let value = if c == '\'' {
                        self.process_single_quote()?
                    } else {
                        self.process_double_quote()?
                    };
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.scanner.next();
                    if c != self.escape {
                        words.add_char(c);
                        result.push(c);
                        continue;
                    }
                    if self.raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    // The escape character at the very end is dropped.
                    let Some(escaped) = self.scanner.next() else {
                        break;
                    };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                }
            }
        }
        match stop {
            Some(stop) => Err(Fault::Unterminated(stop)),
            None => Ok((result, words)),
        }
    }

    /// `'...'`: everything literal, no escapes.
    fn process_single_quote(&mut self) -> Result<String, Fault> {
        self.scanner.next();
        let mut result = String::new();
        if self.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.scanner.next() {
                None => return Err(Fault::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// `"..."`: `$` expands; the escape character escapes only `"`, `$` and itself.
    fn process_double_quote(&mut self) -> Result<String, Fault> {
        self.scanner.next();
        let mut result = String::new();
        if self.raw_quotes {
            result.push('"');
        }
        loop {
            match self.scanner.peek() {
                None => return Err(Fault::UnterminatedDoubleQuote),
                Some('"') => {
                    self.scanner.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut c) => {
                    self.scanner.next();
                    if c == self.escape {
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.scanner.peek() {
                            // An escape right before the end: the loop reports the quote.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.scanner.next();
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    /// `$name`, `${name}` and `${name<modifier>...}`, at a `$`.
    fn process_dollar(&mut self) -> Result<String, Fault> {
        let start = self.scanner.pos;
        self.scanner.next();
        if self.scanner.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            let (value, set) = self.lookup(&name);
            if !set && self.skip_unset_env {
                return Ok(self.scanner.since(start));
            }
            return Ok(value);
        }
        self.scanner.next();
        match self.scanner.peek() {
            None => return Err(Fault::MissingBrace),
            Some('{' | '}' | ':') => return Err(Fault::BadSubstitution),
            Some(_) => {}
        }
        if self.depth >= MAX_DEPTH {
            return Err(Fault::TooDeep);
        }
        self.depth += 1;
        let out = self.process_braced();
        self.depth -= 1;
        match out? {
            (_, false) if self.skip_unset_env => Ok(self.scanner.since(start)),
            (value, _) => Ok(value),
        }
    }

    /// The part of `${...}` after the `{`; also says whether the variable is set.
    fn process_braced(&mut self) -> Result<(String, bool), Fault> {
        let name = self.process_name();
        let set = self.env.get(&name).is_some();
        self.process_braced_op(&name).map(|value| (value, set))
    }

    /// The part of `${name...}` after the name.
    fn process_braced_op(&mut self, name: &str) -> Result<String, Fault> {
        let Some(c) = self.scanner.next() else {
            // BuildKit reports "unsupported modifier (\u{fffd})" here; a missing brace is what
            // actually went wrong.
            return Err(Fault::MissingBrace);
        };
        match c {
            '}' => Ok(self.lookup(name).0),
            ':' => {
                let op = self.scanner.next();
                self.process_modifier(name, true, op)
            }
            '+' | '-' | '?' | '#' | '%' => self.process_modifier(name, false, Some(c)),
            '/' => self.process_substitution(name),
            other => Err(Fault::UnsupportedModifier(other.to_string())),
        }
    }

    /// `${name[:]op word}` for `-`, `+`, `?`, `#`, `%` (and errors for any other `op`).
    fn process_modifier(
        &mut self,
        name: &str,
        null_is_unset: bool,
        op: Option<char>,
    ) -> Result<String, Fault> {
        let raw = matches!(op, Some('#' | '%'));
        if null_is_unset && raw {
            // `${V:#p}` and `${V:%p}` are rejected before the pattern is read.
            return Err(unsupported(null_is_unset, op));
        }
        let word = self.read_until('}', raw || self.raw_escapes, Fault::MissingBrace)?;
        let (value, set) = self.lookup(name);
        let missing = !set || (null_is_unset && value.is_empty());
        match op {
            Some('-') => Ok(if missing { word } else { value }),
            Some('+') => Ok(if missing { String::new() } else { word }),
            // With `skip_unset_env`, an unset variable is left as written rather than an error.
            Some('?') if missing && (set || !self.skip_unset_env) => {
                let message = if !word.is_empty() {
                    word
                } else if !set {
                    "is not allowed to be unset".to_string()
                } else {
                    "is not allowed to be empty".to_string()
                };
                Err(Fault::Required {
                    name: name.to_string(),
                    message,
                })
            }
            Some('?') => Ok(value),
            Some(op @ ('#' | '%')) => {
                let (pattern, greedy) = match word.strip_prefix(op) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                if op == '%' {
                    trim_suffix(pattern, &value, greedy)
                } else {
                    trim_prefix(pattern, &value, greedy)
                }
            }
            _ => Err(unsupported(null_is_unset, op)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`, after the first `/`.
    fn process_substitution(&mut self, name: &str) -> Result<String, Fault> {
        let all = self.scanner.peek() == Some('/');
        if all {
            self.scanner.next();
        }
        let pattern = self.read_until('/', true, Fault::MissingSlash)?;
        let replacement = self.read_until('}', true, Fault::MissingBrace)?;
        let (value, _) = self.lookup(name);
        let compiled = Pattern::compile(&pattern).map_err(|reason| Fault::InvalidPattern {
            pattern: pattern.clone(),
            reason,
        })?;
        let text: Vec<char> = value.chars().collect();
        if all {
            return Ok(replace_all(&compiled, &text, &replacement));
        }
        Ok(match compiled.find(&text, 0) {
            Some((start, end)) => {
                let mut out: String = text[..start].iter().collect();
                out.push_str(&replacement);
                out.extend(&text[end..]);
                out
            }
            None => value,
        })
    }

    /// A nested word up to `stop`; a failure at the end of the input becomes `at_end`.
    fn read_until(&mut self, stop: char, raw: bool, at_end: Fault) -> Result<String, Fault> {
        match self.process_stop_on(Some(stop), raw) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.scanner.peek().is_none() => Err(at_end),
            Err(err) => Err(err),
        }
    }

    /// A variable name: letters, digits and `_`, or a run of digits, or one special parameter.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.scanner.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(d) = self.scanner.peek().filter(|&d| is_digit(d)) {
                    self.scanner.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(c) {
                self.scanner.next();
                return c.to_string();
            }
            if !is_name_char(c) {
                break;
            }
            self.scanner.next();
            name.push(c);
        }
        name
    }

    /// The value of `name` (empty when unset) and whether it is set; records the name as
    /// matched or unmatched.
    fn lookup(&mut self, name: &str) -> (String, bool) {
        match self.env.get(name) {
            Some(value) => {
                self.matched.insert(name.to_string());
                (value.to_string(), true)
            }
            None => {
                self.unmatched.insert(name.to_string());
                (String::new(), false)
            }
        }
    }
}

/// The "unsupported modifier" fault for `op` (with its `:` when there was one).
fn unsupported(null_is_unset: bool, op: Option<char>) -> Fault {
    let mut modifier = String::from(if null_is_unset { ":" } else { "" });
    modifier.push(op.unwrap_or('\u{fffd}'));
    Fault::UnsupportedModifier(modifier)
}

/// POSIX special parameters (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`).
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// `${V#p}` / `${V##p}`: drops the shortest / longest prefix matching `pattern`.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, Fault> {
    let compiled = Pattern::compile(pattern).map_err(|reason| Fault::InvalidPattern {
        pattern: pattern.to_string(),
        reason,
    })?;
    let text: Vec<char> = value.chars().collect();
    Ok(match compiled.anchored_end(&text, greedy) {
        Some(end) => text[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// `${V%p}` / `${V%%p}`: reverses pattern and value and trims a prefix, as BuildKit does.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, Fault> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Go's `Regexp.ReplaceAllString`: every leftmost-longest match, scanning on after each one,
/// with no replacement for an empty match right after the previous match.
fn replace_all(pattern: &Pattern, text: &[char], template: &str) -> String {
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= text.len() {
        let Some((start, end)) = pattern.find(text, search) else {
            break;
        };
        out.extend(&text[last_end..start]);
        if end > last_end || start == 0 {
            expand_template(&mut out, template, &text[start..end]);
        }
        last_end = end;
        search = if search + 1 > end { search + 1 } else { end };
    }
    out.extend(&text[last_end..]);
    out
}
