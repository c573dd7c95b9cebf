//! Fuzz target: arbitrary bytes through the raw layer (`parse_bytes`) and, when they are UTF-8,
//! through `parse` and the typed layer (`parse_dockerfile`).
//!
//! Besides "never panic", it checks that `parse` and `parse_bytes` agree, that a successful
//! parse dumps deterministically, and that error locations point inside the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_parser::{Error, parse, parse_bytes, parse_dockerfile};

/// Panics (a fuzzer finding) when an error points outside the input.
fn check_location(err: &Error, src: &[u8]) {
    let loc = err.location();
    let lines = src.iter().filter(|&&b| b == b'\n').count() + 1;
    assert!(loc.line >= 1 && loc.col >= 1 && loc.len >= 1, "{err:?}");
    assert!(loc.line <= lines, "line {} of {lines}: {err:?}", loc.line);
}

fuzz_target!(|data: &[u8]| {
    let raw = parse_bytes(data);
    match &raw {
        Ok(raw) => assert_eq!(raw.dump(), raw.clone().dump()),
        Err(err) => check_location(err, data),
    }
    let Ok(src) = std::str::from_utf8(data) else {
        assert!(raw.is_err(), "invalid UTF-8 accepted");
        return;
    };
    assert_eq!(raw, parse(src), "parse and parse_bytes disagree");
    match parse_dockerfile(src) {
        Ok(df) => assert!(
            raw.is_ok(),
            "typed Ok but raw {raw:?} ({} stages)",
            df.stages.len()
        ),
        Err(err) => check_location(&err, data),
    }
});
