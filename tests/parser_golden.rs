//! Golden tests for the Dockerfile parser, driven by `tests/fixtures/parser/`.
//!
//! - `<case>/Dockerfile` + `<case>/expected`: the raw layer's dump
//!   ([`strata_parser::RawDockerfile::dump`]) must equal `expected` (both trimmed). Unless the
//!   case holds a `raw-only` marker file, the typed layer must accept the file too.
//! - `negative/<case>/Dockerfile` + `negative/<case>/error`: the typed layer must reject the file;
//!   `error` holds one line `LINE:COL substring`, and the error's location must be exactly
//!   `LINE:COL` and its message must contain `substring` (ASCII case-insensitive).
//!
//! The expectations were derived by hand from BuildKit's parser rules (see the fixtures'
//! README.md), never by running our parser. Every failing case is collected and reported in one
//! panic, so a single run shows the whole picture.

use std::fs;
use std::path::{Path, PathBuf};

/// The folder holding every parser fixture.
fn fixtures_root() -> PathBuf {
    crate::common::repo_root().join("tests/fixtures/parser")
}

/// The case folders directly under `dir` (those holding a `Dockerfile`), sorted by name.
fn case_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// The positive cases: every case folder except those under `negative/`.
fn positive_cases() -> Vec<PathBuf> {
    case_dirs(&fixtures_root())
}

/// The negative cases, under `negative/`.
fn negative_cases() -> Vec<PathBuf> {
    case_dirs(&fixtures_root().join("negative"))
}

/// The folder name of a case, for messages.
fn case_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_bytes(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn read_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Panics with every failure if there is any.
fn report(kind: &str, total: usize, failures: &[String]) {
    if !failures.is_empty() {
        panic!(
            "{} of {total} {kind} parser cases failed:\n\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// Checks one positive case; returns a description of what went wrong, if anything.
fn check_positive(dir: &Path) -> Option<String> {
    let name = case_name(dir);
    let bytes = read_bytes(&dir.join("Dockerfile"));
    let expected = read_text(&dir.join("expected"));
    let expected = expected.trim();
    let mut problems = Vec::new();

    match strata_parser::parse_bytes(&bytes) {
        Ok(raw) => {
            let dump = raw.dump();
            let actual = dump.trim();
            if actual != expected {
                problems.push(format!(
                    "raw dump differs (- expected, + actual):\n{}",
                    crate::common::line_diff(expected, actual)
                ));
            }
        }
        Err(e) => problems.push(format!("raw parse failed: {e}")),
    }

    if !dir.join("raw-only").exists() {
        match std::str::from_utf8(&bytes) {
            Ok(src) => {
                if let Err(e) = strata_parser::parse_dockerfile(src) {
                    problems.push(format!("typed parse failed: {e}"));
                }
            }
            Err(e) => problems.push(format!("fixture is not UTF-8: {e}")),
        }
    }

    if problems.is_empty() {
        None
    } else {
        Some(format!("--- {name}\n{}", problems.join("\n")))
    }
}

/// The contents of a negative case's `error` file: `LINE:COL substring`.
struct ExpectedError {
    line: usize,
    col: usize,
    substring: String,
}

fn parse_expected_error(text: &str) -> Result<ExpectedError, String> {
    let text = text.trim();
    let (loc, substring) = text
        .split_once(' ')
        .ok_or_else(|| format!("malformed error file {text:?}: want `LINE:COL substring`"))?;
    let (line, col) = loc
        .split_once(':')
        .ok_or_else(|| format!("malformed location {loc:?}: want LINE:COL"))?;
    let line = line
        .parse()
        .map_err(|e| format!("bad line in {loc:?}: {e}"))?;
    let col = col
        .parse()
        .map_err(|e| format!("bad col in {loc:?}: {e}"))?;
    Ok(ExpectedError {
        line,
        col,
        substring: substring.trim().to_string(),
    })
}

/// Parses a negative case with the typed layer. A file that is not UTF-8 can't reach
/// `parse_dockerfile`, so it goes through `parse_bytes`, which must reject it.
fn parse_negative(bytes: &[u8]) -> Result<(), strata_parser::Error> {
    match std::str::from_utf8(bytes) {
        Ok(src) => strata_parser::parse_dockerfile(src).map(|_| ()),
        Err(_) => strata_parser::parse_bytes(bytes).map(|_| ()),
    }
}

/// Checks one negative case; returns a description of what went wrong, if anything.
fn check_negative(dir: &Path) -> Option<String> {
    let name = case_name(dir);
    let want = match parse_expected_error(&read_text(&dir.join("error"))) {
        Ok(w) => w,
        Err(e) => return Some(format!("--- negative/{name}\n{e}")),
    };
    let bytes = read_bytes(&dir.join("Dockerfile"));
    let problem = match parse_negative(&bytes) {
        Ok(()) => Some(format!(
            "parsed without error; wanted {}:{} {:?}",
            want.line, want.col, want.substring
        )),
        Err(e) => {
            let loc = e.location();
            let message = e.message();
            let mut wrong = Vec::new();
            if (loc.line, loc.col) != (want.line, want.col) {
                wrong.push(format!(
                    "location {}:{}, wanted {}:{}",
                    loc.line, loc.col, want.line, want.col
                ));
            }
            if !message
                .to_ascii_lowercase()
                .contains(&want.substring.to_ascii_lowercase())
            {
                wrong.push(format!("message {message:?} lacks {:?}", want.substring));
            }
            if wrong.is_empty() {
                None
            } else {
                Some(wrong.join("; "))
            }
        }
    };
    problem.map(|p| format!("--- negative/{name}\n{p}"))
}

#[test]
fn positive_cases_match_their_dump() {
    let cases = positive_cases();
    let failures: Vec<String> = cases.iter().filter_map(|d| check_positive(d)).collect();
    report("positive", cases.len(), &failures);
}

#[test]
fn negative_cases_fail_where_expected() {
    let cases = negative_cases();
    let failures: Vec<String> = cases.iter().filter_map(|d| check_negative(d)).collect();
    report("negative", cases.len(), &failures);
}

#[test]
fn every_case_is_complete_and_counted() {
    let positive = positive_cases();
    let negative = negative_cases();
    for dir in &positive {
        assert!(
            dir.join("expected").is_file(),
            "{} has no `expected` file",
            dir.display()
        );
    }
    for dir in &negative {
        assert!(
            dir.join("error").is_file(),
            "{} has no `error` file",
            dir.display()
        );
    }
    assert!(
        positive.len() >= 40,
        "only {} positive parser fixtures; fixtures went missing?",
        positive.len()
    );
    assert!(
        negative.len() >= 10,
        "only {} negative parser fixtures; fixtures went missing?",
        negative.len()
    );
}
