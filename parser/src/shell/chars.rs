//! Character classes with Go's `unicode` semantics, as BuildKit's lexer uses them.
//!
//! Go's `unicode.IsDigit` is the general category Nd and `unicode.IsLetter` is L*. Rust's
//! standard library exposes neither, so digits come from a table of the Nd runs (each is ten
//! code points from a zero) and letters are approximated by `Alphabetic` without numeric
//! letters. The approximation differs from Go only for combining marks that Unicode counts as
//! alphabetic (`Other_Alphabetic`); variable names practically never contain those.

/// The first code point (the digit zero) of every run of ten decimal digits (category Nd),
/// Unicode 15.0 as in Go's `unicode` package. The mathematical digits U+1D7CE..=U+1D7FF are
/// five consecutive runs.
const DIGIT_ZEROS: &[u32] = &[
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80,
    0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
    0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60,
    0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0,
    0x1E950, 0x1FBF0,
];

/// Go's `unicode.IsDigit`: a decimal digit of any script.
pub(crate) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    let cp = u32::from(c);
    let idx = DIGIT_ZEROS.partition_point(|&zero| zero <= cp);
    idx > 0 && cp - DIGIT_ZEROS[idx - 1] < 10
}

/// Go's `unicode.IsLetter` (see the module notes for the approximation outside ASCII).
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    c.is_alphabetic() && !c.is_numeric()
}

/// Go's `unicode.IsSpace`, which for valid code points is the `White_Space` property.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// A character that may continue a variable name: letter, digit or `_`.
pub(crate) fn is_name_char(c: char) -> bool {
    c == '_' || is_letter(c) || is_digit(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_are_numeric() {
        for &zero in DIGIT_ZEROS {
            for cp in zero..zero + 10 {
                let c = char::from_u32(cp).expect("valid code point");
                assert!(c.is_numeric(), "U+{cp:04X}");
                assert!(is_digit(c), "U+{cp:04X}");
            }
        }
    }

    #[test]
    fn classes() {
        assert!(is_digit('7') && is_digit('٣') && !is_digit('²') && !is_digit('a'));
        assert!(is_letter('한') && is_letter('é') && !is_letter('Ⅻ') && !is_letter('_'));
        assert!(is_space('\u{85}') && is_space('\u{a0}') && is_space('\u{3000}'));
        assert!(!is_space('x'));
    }
}
