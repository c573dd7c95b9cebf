//! Splitting a logical line into keyword, builder flags and arguments, as BuildKit's
//! `splitCommand` and `extractBuilderFlags` do.
//!
//! BuildKit reads flags byte by byte and turns each byte into a character, so a non-ASCII byte
//! inside a flag becomes its Latin-1 character (`é` turns into `Ã©`); this module does the
//! same, which keeps dumps identical.

use nom::{IResult, Parser, bytes::complete::take_while1};

/// The keyword (lowercased), the flags and the trimmed rest of a logical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Command<'a> {
    pub keyword: String,
    pub flags: Vec<String>,
    pub args: std::borrow::Cow<'a, str>,
}

/// Go's `unicode.IsSpace`; the same set as Rust's `char::is_whitespace`.
pub(super) fn is_go_space(c: char) -> bool {
    c.is_whitespace()
}

/// The class `[\t\v\f\r ]` of BuildKit's `reWhitespace`.
pub(super) fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits `line` like BuildKit's `splitCommand`: trim, keyword up to the first whitespace run,
/// then builder flags, then the arguments (trimmed).
pub(super) fn split_command(line: &str, escape: char) -> Command<'_> {
    let trimmed = line.trim_matches(is_go_space);
    let (word, rest) = match keyword_and_rest(trimmed) {
        Ok((_, (w, r))) => (w, r),
        Err(_) => (trimmed, None),
    };
    let keyword = go_lower(word);
    let Some(rest) = rest else {
        return Command {
            keyword,
            flags: Vec::new(),
            args: "".into(),
        };
    };
    let (args, flags) = extract_builder_flags(rest, escape);
    let args = match args {
        std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.trim_matches(is_go_space)),
        std::borrow::Cow::Owned(s) => {
            std::borrow::Cow::Owned(s.trim_matches(is_go_space).to_string())
        }
    };
    Command {
        keyword,
        flags,
        args,
    }
}

/// The keyword and, when a `[\t\v\f\r ]+` run follows it, everything after that run.
fn keyword_and_rest(input: &str) -> IResult<&str, (&str, Option<&str>)> {
    let (input, word) = take_while1(|c| !is_token_space(c)).parse(input)?;
    let sep: IResult<&str, &str> = take_while1(is_token_space).parse(input);
    match sep {
        Ok((rest, _)) => Ok(("", (word, Some(rest)))),
        Err(_) => Ok((input, (word, None))),
    }
}

/// Go's `strings.ToLower`, which maps each character to one character.
pub(super) fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| {
            if c == '\u{130}' {
                'i'
            } else {
                c.to_lowercase().next().unwrap_or(c)
            }
        })
        .collect()
}

/// Go's `unicode.IsSpace(rune(b))` for a single byte.
fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// Returns the rest of the line after the leading `--flags`, and the flags.
pub(super) fn extract_builder_flags(
    line: &str,
    escape: char,
) -> (std::borrow::Cow<'_, str>, Vec<String>) {
    // BuildKit compares single bytes with the escape rune; both escapes are ASCII.
    let esc = u8::try_from(escape).unwrap_or(b'\\');
    let bytes = line.as_bytes();
    let mut words: Vec<String> = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut pos = 0;
    let mut ch = 0u8;
    while pos <= bytes.len() {
        if pos != bytes.len() {
            ch = bytes[pos];
        }
        if phase == Phase::Spaces {
            if pos == bytes.len() {
                break;
            }
            if is_space_byte(ch) {
                pos += 1;
                continue;
            }
            let starts_flag = ch == b'-' && bytes.get(pos + 1) == Some(&b'-');
            if !starts_flag {
                return (rest_from(line, pos), words);
            }
            phase = Phase::Word;
        }
        if pos == bytes.len() {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        if phase == Phase::Word {
            if is_space_byte(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (rest_from(line, pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(word.clone());
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == esc {
                if pos + 1 == bytes.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = bytes[pos];
            }
            word.push(char::from(ch));
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == esc {
            if pos + 1 == bytes.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = bytes[pos];
        }
        word.push(char::from(ch));
        pos += 1;
    }
    ("".into(), words)
}

/// `line[pos..]`; lossy when `pos` falls inside a character (BuildKit slices bytes there).
fn rest_from(line: &str, pos: usize) -> std::borrow::Cow<'_, str> {
    match line.get(pos..) {
        Some(s) => s.into(),
        None => String::from_utf8_lossy(&line.as_bytes()[pos..])
            .into_owned()
            .into(),
    }
}
