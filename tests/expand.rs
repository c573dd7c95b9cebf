//! Word expansion (`strata_parser::shell::Lexer`) against our own hand-written table.
//!
//! The table lives in `tests/fixtures/expand/cases` and the environment it runs in in
//! `tests/fixtures/expand/env`; `tests/fixtures/expand/README.md` documents the format. Every
//! case is run and every failure collected, so one run shows the whole picture; the test then
//! panics once with a list of `line: input / expected / actual`.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use strata_parser::shell::{Expansion, Lexer};

use crate::common::repo_root;

/// A whole column that means "the empty string" (or "no fields" in an `S` case).
const EMPTY: &str = "∅";

/// What a case runs and how its expected columns are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `process_word` with the escape character `\`.
    Word,
    /// `process_word` with the escape character `` ` ``.
    Backtick,
    /// `process_words` with `\`: one expected column per field.
    Words,
    /// `process_word` and `process_words` with `\` must both fail.
    Error,
    /// As [`Mode::Error`] with `` ` ``.
    ErrorBacktick,
}

impl Mode {
    fn parse(tag: &str) -> Option<Mode> {
        match tag {
            "W" => Some(Mode::Word),
            "B" => Some(Mode::Backtick),
            "S" => Some(Mode::Words),
            "E" => Some(Mode::Error),
            "EB" => Some(Mode::ErrorBacktick),
            _ => None,
        }
    }

    fn escape(self) -> char {
        match self {
            Mode::Backtick | Mode::ErrorBacktick => '`',
            Mode::Word | Mode::Words | Mode::Error => '\\',
        }
    }

    fn is_error(self) -> bool {
        matches!(self, Mode::Error | Mode::ErrorBacktick)
    }
}

/// One row of the table, with markers already decoded.
#[derive(Debug, Clone)]
struct Case {
    line: usize,
    mode: Mode,
    input: String,
    expected: Vec<String>,
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/expand").join(name)
}

fn read_fixture(name: &str) -> String {
    let path = fixture(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Decodes the visible markers of the fixture format: `␠` space, `␉` TAB, `␤` newline, and a
/// whole field `∅` for the empty string.
fn decode(field: &str) -> String {
    if field == EMPTY {
        return String::new();
    }
    field
        .replace('␠', " ")
        .replace('␉', "\t")
        .replace('␤', "\n")
}

/// Lines that carry data, numbered from 1: comments (`#` first) and blank lines are skipped.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// The fixed environment of the table.
fn load_env() -> HashMap<String, String> {
    let text = read_fixture("env");
    let mut env = HashMap::new();
    for (line, entry) in data_lines(&text) {
        let (name, value) = entry
            .split_once('=')
            .unwrap_or_else(|| panic!("env:{line}: no '=' in {entry:?}"));
        env.insert(name.to_string(), decode(value));
    }
    env
}

/// Parses one data line; the error says what is wrong with its shape.
fn parse_case(line: usize, text: &str) -> Result<Case, String> {
    let mut columns = text.split('\t');
    let tag = columns.next().unwrap_or_default();
    let mode = Mode::parse(tag).ok_or_else(|| format!("unknown mode {tag:?}"))?;
    let input = columns
        .next()
        .map(decode)
        .ok_or_else(|| "no input column".to_string())?;
    let raw: Vec<&str> = columns.collect();
    if raw.is_empty() {
        return Err("no expected column".to_string());
    }
    if mode != Mode::Words && raw.len() != 1 {
        return Err(format!(
            "{tag} takes exactly one expected column, got {}",
            raw.len()
        ));
    }
    let expected = if mode == Mode::Words && raw == [EMPTY] {
        Vec::new()
    } else if mode == Mode::Words && raw.contains(&EMPTY) {
        return Err("∅ in an S case must be the only expected column".to_string());
    } else {
        raw.into_iter().map(decode).collect()
    };
    Ok(Case {
        line,
        mode,
        input,
        expected,
    })
}

/// All cases of the table. Malformed lines make the test fail with their line numbers.
fn load_cases() -> Vec<Case> {
    let text = read_fixture("cases");
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    for (line, row) in data_lines(&text) {
        match parse_case(line, row) {
            Ok(case) => cases.push(case),
            Err(why) => problems.push(format!("cases:{line}: {why}: {row:?}")),
        }
    }
    assert!(
        problems.is_empty(),
        "malformed table rows:\n{}",
        problems.join("\n")
    );
    cases
}

/// Runs one case; `Err` describes the mismatch (without the line header).
fn check(case: &Case, env: &HashMap<String, String>) -> Result<(), String> {
    let lexer = Lexer::new(case.mode.escape());
    match case.mode {
        Mode::Word | Mode::Backtick => check_word(&lexer, case, env),
        Mode::Words => check_words(&lexer, case, env),
        Mode::Error | Mode::ErrorBacktick => check_error(&lexer, case, env),
    }
}

fn check_word(lexer: &Lexer, case: &Case, env: &HashMap<String, String>) -> Result<(), String> {
    let expected = &case.expected[0];
    match lexer.process_word(&case.input, env) {
        Ok(actual) if actual == *expected => {}
        Ok(actual) => return Err(mismatch(expected, &format!("{actual:?}"))),
        Err(e) => return Err(mismatch(expected, &format!("error: {e}"))),
    }
    match lexer.process_word_with_matches(&case.input, env) {
        Ok(Expansion { result, .. }) if result == *expected => Ok(()),
        Ok(Expansion { result, .. }) => Err(mismatch(
            expected,
            &format!("{result:?} from process_word_with_matches"),
        )),
        Err(e) => Err(mismatch(
            expected,
            &format!("error from process_word_with_matches: {e}"),
        )),
    }
}

fn check_words(lexer: &Lexer, case: &Case, env: &HashMap<String, String>) -> Result<(), String> {
    match lexer.process_words(&case.input, env) {
        Ok(actual) if actual == case.expected => Ok(()),
        Ok(actual) => Err(mismatch(&case.expected, &format!("{actual:?}"))),
        Err(e) => Err(mismatch(&case.expected, &format!("error: {e}"))),
    }
}

fn check_error(lexer: &Lexer, case: &Case, env: &HashMap<String, String>) -> Result<(), String> {
    let wanted = &case.expected[0];
    let want = if wanted == "error" {
        "an error".to_string()
    } else {
        format!("an error containing {wanted:?}")
    };
    let outcomes = [
        (
            "process_word",
            lexer
                .process_word(&case.input, env)
                .map(|s| format!("{s:?}")),
        ),
        (
            "process_words",
            lexer
                .process_words(&case.input, env)
                .map(|w| format!("{w:?}")),
        ),
    ];
    for (function, outcome) in outcomes {
        match outcome {
            Ok(value) => return Err(mismatch_text(&want, &format!("{function} gave {value}"))),
            Err(e) if wanted == "error" || e.to_string().contains(wanted.as_str()) => {}
            Err(e) => {
                return Err(mismatch_text(
                    &want,
                    &format!("{function} failed with: {e}"),
                ));
            }
        }
    }
    Ok(())
}

fn mismatch(expected: &impl std::fmt::Debug, actual: &str) -> String {
    mismatch_text(&format!("{expected:?}"), actual)
}

fn mismatch_text(expected: &str, actual: &str) -> String {
    format!("    expected: {expected}\n    actual:   {actual}")
}

fn mode_tag(mode: Mode) -> &'static str {
    match mode {
        Mode::Word => "W",
        Mode::Backtick => "B",
        Mode::Words => "S",
        Mode::Error => "E",
        Mode::ErrorBacktick => "EB",
    }
}

#[test]
fn table() {
    let env = load_env();
    let cases = load_cases();
    let mut report = String::new();
    let mut failed = 0;
    for case in &cases {
        if let Err(why) = check(case, &env) {
            failed += 1;
            let _ = writeln!(
                report,
                "cases:{} {} {:?}\n{why}",
                case.line,
                mode_tag(case.mode),
                case.input
            );
        }
    }
    assert!(
        failed == 0,
        "{failed} of {} expansion cases failed (tests/fixtures/expand/cases):\n{report}",
        cases.len()
    );
}

#[test]
fn table_is_big_enough() {
    let cases = load_cases();
    let errors = cases.iter().filter(|c| c.mode.is_error()).count();
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    assert!(errors >= 25, "only {errors} error cases");
    for mode in [
        Mode::Word,
        Mode::Backtick,
        Mode::Words,
        Mode::Error,
        Mode::ErrorBacktick,
    ] {
        assert!(
            cases.iter().any(|c| c.mode == mode),
            "no {} case",
            mode_tag(mode)
        );
    }
}

#[test]
fn env_fixture_has_the_documented_shapes() {
    let env = load_env();
    assert_eq!(env.get("E").map(String::as_str), Some(""), "empty value");
    assert_eq!(env.get("SP").map(String::as_str), Some("  two  spaces "));
    assert_eq!(env.get("TABS").map(String::as_str), Some("x\ty"));
    assert_eq!(env.get("NL").map(String::as_str), Some("l1\nl2"));
    assert_eq!(env.get("BS").map(String::as_str), Some("C:\\dir\\file"));
    for unset in ["U", "U2", "V", "1", "$", "#", "-"] {
        assert!(!env.contains_key(unset), "{unset} must stay unset");
    }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Hand cases for `process_word_with_matches`: (input, result, matched, unmatched).
const MATCH_CASES: &[(&str, &str, &[&str], &[&str])] = &[
    ("$A ${U} ${E:-x}", "apple  x", &["A", "E"], &["U"]),
    // quoted or escaped references are never looked up
    ("'$A' \\$B \"\\${V}\"", "$A $B ${V}", &[], &[]),
    ("plain", "plain", &[], &[]),
    // both the variable and the names in its word are looked up
    ("${U:-$A}", "apple", &["A"], &["U"]),
    // the word is expanded even when its value is not used
    ("${A:-$U2}", "apple", &["A"], &["U2"]),
    ("${A:+$U}", "", &["A"], &["U"]),
    (
        "${A#a}${B/ /_}${U2+x}",
        "pplebanana_split",
        &["A", "B"],
        &["U2"],
    ),
    // special and positional parameters are names like any other
    ("$1$$", "", &[], &["$", "1"]),
    ("$ÉTÉ/$日", "summer/", &["ÉTÉ"], &["日"]),
    // a name used twice is reported once
    ("$A$A$U$U", "appleapple", &["A"], &["U"]),
];

#[test]
fn matches_report_found_and_missing_names() {
    let env = load_env();
    let lexer = Lexer::new('\\');
    let mut report = String::new();
    for &(input, result, matched, unmatched) in MATCH_CASES {
        let want = Expansion {
            result: result.to_string(),
            matched: names(matched),
            unmatched: names(unmatched),
        };
        match lexer.process_word_with_matches(input, &env) {
            Ok(got) if got == want => {}
            Ok(got) => {
                let _ = writeln!(
                    report,
                    "{input:?}\n    expected: {want:?}\n    actual:   {got:?}"
                );
            }
            Err(e) => {
                let _ = writeln!(
                    report,
                    "{input:?}\n    expected: {want:?}\n    actual:   {e}"
                );
            }
        }
    }
    assert!(report.is_empty(), "process_word_with_matches:\n{report}");
}

#[test]
fn matches_fail_like_process_word() {
    let env = load_env();
    let lexer = Lexer::new('\\');
    for input in ["${U:?gone}", "${A:-${V?x}}", "${}", "'open"] {
        let Err(e) = lexer.process_word_with_matches(input, &env) else {
            panic!("{input:?} should fail");
        };
        let plain = lexer.process_word(input, &env);
        assert_eq!(plain, Err(e), "{input:?}");
    }
}
