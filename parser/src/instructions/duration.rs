//! Go's `time.ParseDuration`, for HEALTHCHECK's `--interval`, `--timeout`, `--start-period` and
//! `--start-interval`: a signed sequence of decimal numbers, each with an optional fraction and
//! a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), like `300ms`, `1h30m` or `-1.5h`.

use crate::goquote::quote;

/// Nanoseconds per unit, as Go defines them.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration into nanoseconds, with Go's error messages
/// (`time: invalid duration "x"`, `time: missing unit in duration "1"`, ...).
pub(crate) fn parse_go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let (value, rest) = component(s, orig).ok_or_else(invalid)??;
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i64::MAX as u128 + u128::from(neg) {
            return Err(invalid());
        }
        s = rest;
    }
    let total = i128::try_from(total).map_err(|_| invalid())?;
    let signed = if neg { -total } else { total };
    i64::try_from(signed).map_err(|_| invalid())
}

/// One `<number>[.<fraction>]<unit>` component at the start of `s`: its value in nanoseconds,
/// and the rest. `None` means a malformed number; `Some(Err)` a unit problem.
fn component<'a>(s: &'a str, orig: &str) -> Option<Result<(u128, &'a str), String>> {
    let first = s.chars().next()?;
    if first != '.' && !first.is_ascii_digit() {
        return None;
    }
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let int_digits = &s[..int_len];
    let mut rest = &s[int_len..];
    let mut frac_digits = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        frac_digits = &after_dot[..frac_len];
        rest = &after_dot[frac_len..];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let unit_len = rest
        .char_indices()
        .find(|(_, c)| *c == '.' || c.is_ascii_digit())
        .map_or(rest.len(), |(i, _)| i);
    let unit = &rest[..unit_len];
    let rest = &rest[unit_len..];
    if unit.is_empty() {
        return Some(Err(format!(
            "time: missing unit in duration {}",
            quote(orig)
        )));
    }
    let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return Some(Err(format!(
            "time: unknown unit {} in duration {}",
            quote(unit),
            quote(orig)
        )));
    };
    let value = scaled(int_digits, frac_digits, scale)?;
    Some(Ok((value, rest)))
}

/// `int.frac * scale` in whole nanoseconds (fraction truncated), `None` on overflow.
fn scaled(int_digits: &str, frac_digits: &str, scale: u128) -> Option<u128> {
    let int: u128 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().ok()?
    };
    let mut value = int.checked_mul(scale)?;
    // Digits past 30 cannot change the result at nanosecond precision.
    let frac = &frac_digits[..frac_digits.len().min(30)];
    if !frac.is_empty() {
        let num: u128 = frac.parse().ok()?;
        let den = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        value = value.checked_add(num.checked_mul(scale)? / den)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const S: i64 = 1_000 * MS;

    #[test]
    fn simple_units() {
        assert_eq!(parse_go_duration("30s"), Ok(30 * S));
        assert_eq!(parse_go_duration("500ms"), Ok(500 * MS));
        assert_eq!(parse_go_duration("1h"), Ok(3600 * S));
        assert_eq!(parse_go_duration("10us"), Ok(10_000));
        assert_eq!(parse_go_duration("10µs"), Ok(10_000));
        assert_eq!(parse_go_duration("7ns"), Ok(7));
    }

    #[test]
    fn compound_fraction_and_sign() {
        assert_eq!(parse_go_duration("1m30s"), Ok(90 * S));
        assert_eq!(parse_go_duration("1h30m"), Ok(5400 * S));
        assert_eq!(parse_go_duration("1.5s"), Ok(1500 * MS));
        assert_eq!(parse_go_duration(".5s"), Ok(500 * MS));
        assert_eq!(parse_go_duration("1.s"), Ok(S));
        assert_eq!(parse_go_duration("-1.5h"), Ok(-5400 * S));
        assert_eq!(parse_go_duration("+2s"), Ok(2 * S));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("-0"), Ok(0));
        assert_eq!(parse_go_duration("0s"), Ok(0));
    }

    #[test]
    fn errors_match_go() {
        assert_eq!(
            parse_go_duration("abc"),
            Err(r#"time: invalid duration "abc""#.to_string())
        );
        assert_eq!(
            parse_go_duration(""),
            Err(r#"time: invalid duration """#.to_string())
        );
        assert_eq!(
            parse_go_duration("10"),
            Err(r#"time: missing unit in duration "10""#.to_string())
        );
        assert_eq!(
            parse_go_duration("1d"),
            Err(r#"time: unknown unit "d" in duration "1d""#.to_string())
        );
        assert!(parse_go_duration(".s").is_err());
        assert!(parse_go_duration("1s2").is_err());
        assert!(parse_go_duration("-").is_err());
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(parse_go_duration("9999999999999999999h").is_err());
        assert!(parse_go_duration("3000000h").is_err());
        assert!(parse_go_duration("2000000h").is_ok());
    }
}
