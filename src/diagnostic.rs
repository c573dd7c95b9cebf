//! rustc-style diagnostics for Dockerfile errors and warnings:
//!
//! ```text
//! Dockerfile:3:1: error: unknown instruction: FOO
//!   |
//! 3 | FOO bar
//!   | ^^^
//! ```

use std::fmt::Write as _;

use strata_parser::Location;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Renders `FILE:LINE:COL: severity: message`, then the source line with a caret under
/// `loc` (as many carets as `loc.len`, clipped to the line). `src` is the whole file.
pub fn render(file: &str, src: &str, loc: Location, severity: Severity, message: &str) -> String {
    let mut out = format!("{file}:{loc}: {}: {message}\n", severity.label());
    let Some(line) = source_line(src, loc.line) else {
        return out;
    };
    let number = loc.line.to_string();
    let gutter = " ".repeat(number.len());
    let _ = writeln!(out, "{gutter} |");
    let _ = writeln!(out, "{number} | {line}");
    // Copy tabs from the text before the column so the caret lines up whatever the tab width.
    let pad: String = line
        .chars()
        .take(loc.col.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let available = line
        .chars()
        .count()
        .saturating_sub(loc.col.saturating_sub(1));
    let carets = "^".repeat(loc.len.min(available).max(1));
    let _ = writeln!(out, "{gutter} | {pad}{carets}");
    out
}

/// Line `n` (1-based) of `src`, without its line ending or a leading byte-order mark.
fn source_line(src: &str, n: usize) -> Option<&str> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let line = src.split('\n').nth(n.checked_sub(1)?)?;
    Some(line.strip_suffix('\r').unwrap_or(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_the_span() {
        let src = "FROM scratch\nFOO bar\n";
        let got = render(
            "Dockerfile",
            src,
            Location::new(2, 1, 3),
            Severity::Error,
            "boom",
        );
        assert_eq!(
            got,
            "Dockerfile:2:1: error: boom\n  |\n2 | FOO bar\n  | ^^^\n"
        );
    }

    #[test]
    fn caret_follows_tabs_and_unicode() {
        let src = "\tRÜN x";
        let got = render("f", src, Location::new(1, 6, 1), Severity::Warning, "w");
        assert_eq!(got, "f:1:6: warning: w\n  |\n1 | \tRÜN x\n  | \t    ^\n");
    }

    #[test]
    fn crlf_and_bom_are_not_shown() {
        let src = "\u{feff}FROM a\r\nRUN b\r\n";
        let got = render("f", src, Location::new(1, 1, 4), Severity::Error, "e");
        assert!(got.contains("1 | FROM a\n"), "{got}");
    }

    #[test]
    fn line_past_the_end_has_no_snippet() {
        let got = render("f", "x", Location::new(9, 1, 1), Severity::Error, "e");
        assert_eq!(got, "f:9:1: error: e\n");
    }

    #[test]
    fn long_span_is_clipped_to_the_line() {
        let got = render("f", "ab", Location::new(1, 2, 50), Severity::Error, "e");
        assert!(got.ends_with("1 | ab\n  |  ^\n"), "{got}");
    }
}
