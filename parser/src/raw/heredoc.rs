//! Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`) on RUN, COPY and ADD lines, found the way
//! BuildKit's `heredocsFromLine` and `ParseHeredoc` find them.
//!
//! BuildKit splits the line into words with its shell lexer in "raw" mode (quotes and escapes
//! kept, unset variables left as written), then matches each word against
//! `^(\d*)<<(-?)([^<]*)$`. The delimiter word is then lexed twice, with and without raw quotes:
//! if the quote counts differ, part of it was quoted and the body is not expanded. The small
//! lexer here reproduces that word splitting; it always uses `\` as escape, as BuildKit does.

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
    let words = lex_words(rest, false, false).map_err(|e| lex_error(&e, rest))?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = lex_words(rest, true, false).map_err(|e| lex_error(&e, rest))?;
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

fn lex_error(message: &str, source: &str) -> String {
    format!(
        "failed to process {}: {message}",
        crate::goquote::quote(source)
    )
}

/// BuildKit's word accumulator: whitespace from unquoted text splits words.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

/// Splits `src` into words like BuildKit's `Lex.ProcessWords` with an empty environment and
/// `SkipUnsetEnv` (so `$x` and `${x...}` stay as written).
fn lex_words(src: &str, raw_quotes: bool, raw_escapes: bool) -> Result<Vec<String>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut w = Words::default();
    while i < chars.len() {
        match chars[i] {
            '\'' => {
                let (s, next) = single_quote(&chars, i, raw_quotes)?;
                w.add_raw_str(&s);
                i = next;
            }
            '"' => {
                let (s, next) = double_quote(&chars, i, raw_quotes, raw_escapes)?;
                w.add_raw_str(&s);
                i = next;
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                let (s, next) = braced_var(&chars, i)?;
                for c in s.chars() {
                    w.add_char(c);
                }
                i = next;
            }
            '\\' => {
                if raw_escapes {
                    w.add_raw_char('\\');
                }
                match chars.get(i + 1) {
                    Some(&c) => w.add_raw_char(c),
                    None => break,
                }
                i += 2;
            }
            c => {
                w.add_char(c);
                i += 1;
            }
        }
    }
    Ok(w.finish())
}

/// `'...'`, starting at the opening quote; returns the text and the index after it.
fn single_quote(chars: &[char], start: usize, raw: bool) -> Result<(String, usize), String> {
    let mut out = String::new();
    if raw {
        out.push('\'');
    }
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(
                    "unexpected end of statement while looking for matching single-quote".into(),
                );
            }
            Some('\'') => {
                if raw {
                    out.push('\'');
                }
                return Ok((out, i + 1));
            }
            Some(&c) => out.push(c),
        }
        i += 1;
    }
}

/// `"..."`, starting at the opening quote.
fn double_quote(
    chars: &[char],
    start: usize,
    raw: bool,
    raw_escapes: bool,
) -> Result<(String, usize), String> {
    let mut out = String::new();
    if raw {
        out.push('"');
    }
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(
                    "unexpected end of statement while looking for matching double-quote".into(),
                );
            }
            Some('"') => {
                if raw {
                    out.push('"');
                }
                return Ok((out, i + 1));
            }
            Some('$') if chars.get(i + 1) == Some(&'{') => {
                let (s, next) = braced_var(chars, i)?;
                out.push_str(&s);
                i = next;
            }
            Some('\\') => {
                if raw_escapes {
                    out.push('\\');
                }
                match chars.get(i + 1) {
                    None => i += 1,
                    Some(&c @ ('"' | '$' | '\\')) => {
                        out.push(c);
                        i += 2;
                    }
                    Some(_) => {
                        out.push('\\');
                        i += 1;
                    }
                }
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// `${...}` starting at `$`: with no variable set, BuildKit writes it back as it was. Nested
/// `${` and quotes inside are skipped over; returns the text and the index after `}`.
fn braced_var(chars: &[char], start: usize) -> Result<(String, usize), String> {
    match chars.get(start + 2) {
        None => return Err("syntax error: missing '}'".into()),
        Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
        Some(_) => {}
    }
    let mut depth = 0usize;
    let mut i = start;
    let mut quote: Option<char> = None;
    while let Some(&c) = chars.get(i) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => i += 1,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => i += 1,
            (None, '$') if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 1;
            }
            (None, '}') => {
                depth -= 1;
                if depth == 0 {
                    return Ok((chars[start..=i].iter().collect(), i + 1));
                }
            }
            (None, _) => {}
        }
        i += 1;
    }
    Err("syntax error: missing '}'".into())
}
