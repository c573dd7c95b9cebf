//! One small parser per family of instructions, as BuildKit's `line_parsers.go` defines them.
//! Each takes the arguments (flags already removed, trimmed) and the escape character, and
//! returns the node's argument list (BuildKit's `Next` chain) or an error message.

use nom::{
    IResult, Parser,
    bytes::complete::{take_till1, take_while1},
    multi::separated_list1,
};

use super::flags::{is_go_space, is_token_space};
use super::json::{JsonArray, parse_array};

/// The arguments of one instruction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Args {
    pub values: Vec<String>,
    pub json: bool,
}

impl Args {
    fn plain(values: Vec<String>) -> Self {
        Args {
            values,
            json: false,
        }
    }
}

/// The message of BuildKit's `errDockerfileNotStringArray`.
const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// Unknown keywords: BuildKit keeps one empty value, which dumps as `""`.
pub(super) fn ignore(_rest: &str, _escape: char) -> Result<Args, String> {
    Ok(Args::plain(vec![String::new()]))
}

/// USER, WORKDIR, STOPSIGNAL, MAINTAINER: the whole rest as one value.
pub(super) fn string(rest: &str, _escape: char) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    Ok(Args::plain(vec![rest.to_string()]))
}

/// Splits on `[\t\v\f\r ]+` like Go's `regexp.Split(s, -1)`.
fn split_token_space(rest: &str) -> Vec<String> {
    let r: IResult<&str, Vec<&str>> = separated_list1(
        take_while1(is_token_space),
        nom::bytes::complete::take_while(|c| !is_token_space(c)),
    )
    .parse(rest);
    match r {
        Ok((_, parts)) => parts.into_iter().map(String::from).collect(),
        Err(_) => vec![rest.to_string()],
    }
}

/// FROM, EXPOSE (and the fallback of ADD/COPY/VOLUME): whitespace-delimited words.
pub(super) fn whitespace_delimited(rest: &str, _escape: char) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    Ok(Args::plain(split_token_space(rest)))
}

/// Reads `rest` as a JSON array: `Ok(Some)` for strings, `Ok(None)` when it is not JSON.
fn json(rest: &str) -> Result<Option<Args>, String> {
    match parse_array(rest.trim_start_matches(is_go_space)) {
        JsonArray::Strings(values) => Ok(Some(Args { values, json: true })),
        JsonArray::NotStrings => Err(NOT_STRING_ARRAY.to_string()),
        JsonArray::Invalid => Ok(None),
    }
}

/// RUN, CMD, ENTRYPOINT, SHELL: a JSON array, or else the whole rest as one value.
pub(super) fn maybe_json(rest: &str, _escape: char) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    Ok(json(rest)?.unwrap_or_else(|| Args::plain(vec![rest.to_string()])))
}

/// ADD, COPY, VOLUME: a JSON array, or else whitespace-delimited words.
pub(super) fn maybe_json_to_list(rest: &str, escape: char) -> Result<Args, String> {
    match json(rest)? {
        Some(args) => Ok(args),
        None => whitespace_delimited(rest, escape),
    }
}

/// HEALTHCHECK: a type word (`NONE`, `CMD`, ...) then a JSON-or-shell command.
pub(super) fn health_config(rest: &str, escape: char) -> Result<Args, String> {
    // BuildKit tests single bytes with unicode.IsSpace, so 0x85 and 0xA0 count as spaces.
    let is_space = |b: &u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0);
    let bytes = rest.as_bytes();
    let sep = bytes.iter().position(is_space).unwrap_or(bytes.len());
    if sep == 0 {
        return Ok(Args::default());
    }
    let next = bytes[sep..]
        .iter()
        .position(|b| !is_space(b))
        .map_or(bytes.len(), |i| sep + i);
    let typ = String::from_utf8_lossy(&bytes[..sep]).into_owned();
    let cmd = String::from_utf8_lossy(&bytes[next..]);
    let cmd = maybe_json(&cmd, escape)?;
    let mut values = vec![typ];
    values.extend(cmd.values);
    Ok(Args {
        values,
        json: cmd.json,
    })
}

/// ARG: the words, each `name` or `name=value`.
pub(super) fn name_or_name_val(rest: &str, escape: char) -> Result<Args, String> {
    Ok(Args::plain(parse_words(rest, escape)))
}

/// ENV: see [`name_val`].
pub(super) fn env(rest: &str, escape: char) -> Result<Args, String> {
    name_val(rest, "ENV", escape)
}

/// LABEL: see [`name_val`].
pub(super) fn label(rest: &str, escape: char) -> Result<Args, String> {
    name_val(rest, "LABEL", escape)
}

/// `KEY name value` (legacy) or `KEY a=b c=d ...`: key, value and separator triples.
fn name_val(rest: &str, key: &str, escape: char) -> Result<Args, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Args::default());
    };
    if !first.contains('=') {
        let r: IResult<&str, (&str, &str)> =
            (take_till1(is_token_space), take_while1(is_token_space))
                .map(|(k, _)| k)
                .and(nom::combinator::rest)
                .parse(rest);
        return match r {
            Ok((_, (k, v))) => Ok(Args::plain(vec![
                k.to_string(),
                v.to_string(),
                String::new(),
            ])),
            Err(_) => Err(format!("{key} must have two arguments")),
        };
    }
    let mut values = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                crate::goquote::quote(word)
            ));
        };
        values.push(k.to_string());
        values.push(v.to_string());
        values.push("=".to_string());
    }
    Ok(Args::plain(values))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// BuildKit's `parseWords`: whitespace-separated words; quotes and escapes are kept.
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        let at_end = chars.peek().is_none();
        if phase == Phase::Spaces {
            if is_go_space(ch) {
                continue;
            }
            phase = Phase::Word;
        }
        if phase == Phase::Word {
            if is_go_space(ch) {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            let mut ch = ch;
            if ch == escape {
                if at_end {
                    continue;
                }
                word.push(ch);
                ch = chars.next().unwrap_or(ch);
            }
            word.push(ch);
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        let mut ch = ch;
        if ch == escape && quote != '\'' {
            if at_end {
                phase = Phase::Word;
                continue;
            }
            word.push(ch);
            ch = chars.next().unwrap_or(ch);
        }
        word.push(ch);
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}
