//! Property tests: no input makes the parser or the word expander panic.
//!
//! Inputs are arbitrary byte vectors and Dockerfile-shaped text drawn from a small grammar of
//! the pieces that steer the parser (keywords, flags, quotes, escapes, brackets, `${`, heredoc
//! markers, continuations, CRLF, a BOM, directives). For every input:
//!
//! - `parse_bytes`, `parse` and `parse_dockerfile` return Ok or an error located inside the
//!   input;
//! - `parse` and `parse_bytes` agree on valid UTF-8;
//! - a successful parse dumps (and serializes) the same text every time.
//!
//! The case count is moderate so CI stays fast; `PROPTEST_CASES` raises it for a longer run.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::Config;
use strata_parser::shell::Lexer;
use strata_parser::{Error, parse, parse_bytes, parse_dockerfile};

/// The pieces Dockerfile-shaped text is made of.
const TOKENS: &[&str] = &[
    // Keywords, in both cases.
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "from",
    "run",
    "copy",
    "env",
    "arg",
    "onbuild",
    "healthcheck",
    "NONE",
    "AS",
    "as",
    // Flags.
    "--from=",
    "--from=base",
    "--mount=type=cache,target=/c",
    "--mount=type=secret,id=x",
    "--chown=1:1",
    "--chmod=755",
    "--link",
    "--platform=$BUILDPLATFORM",
    "--network=none",
    "--interval=5s",
    "--retries=3",
    "--keep-git-dir",
    "--",
    "--=",
    "-",
    "--parents",
    // Words.
    "scratch",
    "alpine:3.20",
    "s1",
    "/app",
    "a",
    "b=c",
    "k=v",
    "1",
    "80/tcp",
    "é",
    "日本",
    // Quotes, escapes and continuations.
    "\"",
    "'",
    "\\",
    "`",
    "\\\n",
    "`\n",
    "\\ \n",
    "\\\r\n",
    "\\\"",
    "\\'",
    "\\$",
    // Brackets and JSON.
    "[",
    "]",
    ",",
    "[\"a\", \"b\"]",
    "[\"sh\", \"-c\"]",
    "[]",
    "[\"\\u00e9\"]",
    "{",
    "}",
    // Expansion.
    "$",
    "${",
    "${a}",
    "${a:-b}",
    "${a:+b}",
    "${a:?err}",
    "${a#*}",
    "${a%%x}",
    "${a/x/y}",
    "$a",
    ":-",
    ":+",
    ":?",
    "#",
    "%",
    "/",
    // Heredocs.
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "<<\"EOF\"",
    "<<EOT",
    "<<",
    "EOF",
    "\tEOF",
    "EOT",
    // Comments and directives.
    "# comment",
    "# escape=`\n",
    "# escape=\\\n",
    "# syntax=docker/dockerfile:1\n",
    "# check=skip=all\n",
    "#escape=x\n",
    // Whitespace and line ends.
    " ",
    " ",
    " ",
    "\t",
    "\n",
    "\n",
    "\n",
    "\r\n",
    "\r",
    "\u{feff}",
    "\0",
    "=",
];

/// The pieces a word for the expander is made of.
const WORD_PIECES: &[&str] = &[
    "$", "${", "}", "{", "a", "b", "x", "${a}", "${b}", "$a", "$b", ":", "-", "+", "?", "#", "##",
    "%", "%%", "/", "//", "*", "\"", "'", "\\", "`", " ", "\t", "\n", "é", "${a:-", "${b:+",
    "${a:?", "${a#", "${a/", "${#a}", "$1", "$@", "$$",
];

/// Invalid UTF-8 sequences (when followed by ASCII or a lead byte).
const BAD_UTF8: &[&[u8]] = &[b"\xff", b"\xc3", b"\xe2\x82", b"\xc0\xaf", b"\x80"];

/// One piece of Dockerfile-shaped text: mostly grammar tokens, sometimes arbitrary text.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(TOKENS).prop_map(str::to_string),
        1 => "\\PC{0,6}",
    ]
}

/// Dockerfile-shaped text, optionally starting with a BOM.
fn dockerfile_text() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(token(), 0..96)).prop_map(|(bom, tokens)| {
        let mut s = String::from(if bom { "\u{feff}" } else { "" });
        s.extend(tokens);
        s
    })
}

/// Dockerfile-shaped text that starts like a real file, so the deeper parsers are reached.
fn dockerfile_with_from() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(token(), 0..8),
        prop::collection::vec(token(), 0..96),
    )
        .prop_map(|(head, tail)| {
            let mut s: String = head.concat();
            s.push_str("\nFROM scratch AS base\n");
            s.extend(tail);
            s
        })
}

/// A word for the expander, drawn from the expansion-heavy part of the grammar.
fn shell_word() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        6 => prop::sample::select(WORD_PIECES).prop_map(str::to_string),
        1 => "\\PC{0,4}",
    ];
    prop::collection::vec(pieces, 0..48).prop_map(|v| v.concat())
}

/// The environment the expander sees.
fn env() -> HashMap<String, String> {
    HashMap::from([
        ("a".to_string(), "hello world".to_string()),
        ("b".to_string(), String::new()),
    ])
}

/// The config: moderate case count, no regression files written into the source tree.
fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// An error must point inside the input.
fn check_error(err: &Error, src: &[u8]) -> Result<(), TestCaseError> {
    let loc = err.location();
    let lines = src.iter().filter(|&&b| b == b'\n').count() + 1;
    prop_assert!(
        loc.line >= 1 && loc.col >= 1 && loc.len >= 1,
        "bad location in {err:?}"
    );
    prop_assert!(loc.line <= lines, "line {} of {lines}: {err:?}", loc.line);
    prop_assert!(!err.message().is_empty(), "empty message: {err:?}");
    Ok(())
}

/// Runs the raw layer on bytes and checks the outcome.
fn check_bytes(src: &[u8]) -> Result<(), TestCaseError> {
    match parse_bytes(src) {
        Ok(raw) => {
            let again = parse_bytes(src).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(raw.dump(), again.dump(), "dump not deterministic");
            prop_assert_eq!(&raw, &again);
        }
        Err(err) => {
            check_error(&err, src)?;
            prop_assert_eq!(Err(err), parse_bytes(src), "error not deterministic");
        }
    }
    Ok(())
}

/// Runs the raw and typed layers on text and checks the outcomes.
fn check_text(src: &str) -> Result<(), TestCaseError> {
    check_bytes(src.as_bytes())?;
    let raw = parse(src);
    prop_assert_eq!(
        &raw,
        &parse_bytes(src.as_bytes()),
        "parse and parse_bytes disagree"
    );
    match parse_dockerfile(src) {
        Ok(df) => {
            let json =
                serde_json::to_string(&df).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again = parse_dockerfile(src).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let json_again =
                serde_json::to_string(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(json, json_again, "typed JSON not deterministic");
            // What the typed layer accepts, the raw layer accepts.
            prop_assert!(raw.is_ok(), "typed Ok but raw {raw:?}");
        }
        Err(err) => check_error(&err, src.as_bytes())?,
    }
    Ok(())
}

/// Runs the expander with both escape characters and checks it is deterministic.
fn check_word(word: &str) -> Result<(), TestCaseError> {
    let env = env();
    for escape in ['\\', '`'] {
        let lexer = Lexer::new(escape);
        let one = lexer.process_word(word, &env);
        prop_assert_eq!(&one, &lexer.process_word(word, &env));
        let many = lexer.process_words(word, &env);
        prop_assert_eq!(&many, &lexer.process_words(word, &env));
        // Both entry points agree on whether the word is well-formed.
        prop_assert_eq!(one.is_ok(), many.is_ok(), "{:?} vs {:?}", one, many);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_bytes(&bytes)?;
        check_text(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn dockerfile_shaped_text_never_panics(src in dockerfile_text()) {
        check_text(&src)?;
    }

    #[test]
    fn dockerfile_after_from_never_panics(src in dockerfile_with_from()) {
        check_text(&src)?;
    }

    #[test]
    fn dockerfile_with_invalid_utf8_never_panics(
        src in dockerfile_text(),
        at in any::<prop::sample::Index>(),
        bad in prop::sample::select(BAD_UTF8),
    ) {
        let mut bytes = src.into_bytes();
        // Insert at a character boundary so the only invalid sequence is the inserted one.
        let mut i = at.index(bytes.len() + 1);
        while i < bytes.len() && (bytes[i] & 0xC0) == 0x80 {
            i += 1;
        }
        bytes.splice(i..i, bad.iter().copied());
        let err = parse_bytes(&bytes);
        prop_assert!(err.is_err(), "invalid UTF-8 accepted");
        check_bytes(&bytes)?;
    }

    #[test]
    fn expander_never_panics(word in shell_word()) {
        check_word(&word)?;
    }

    #[test]
    fn expander_on_arbitrary_text_never_panics(word in "\\PC{0,64}") {
        check_word(&word)?;
    }
}
