//! COPY wildcards and `--exclude` patterns, on the planner's matchers (one implementation of
//! Go's `filepath.Match` and of Docker's pattern matcher for the whole project).
//!
//! [`matches`] is Go's `filepath.Match`: `*` matches any run of non-`/` characters, `?` one
//! non-`/` character, `[...]` a class (`^` negates, `a-z` ranges), `\` escapes; a malformed
//! pattern is an error. [`Excluder`] applies `--exclude` patterns with `.dockerignore`'s
//! semantics (BuildKit uses the same pattern matcher for both): `**` spans any number of
//! components, a match on a directory covers everything below it, `!pattern` re-includes and
//! the last match wins.

use strata_planner::dockerignore::{DockerIgnore, path_match};

pub use strata_planner::dockerignore::has_meta;

use crate::error::Result;

/// Removes the backslash escapes of a literal component.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Go's `filepath.Match(pattern, name)`.
///
/// # Errors
/// A malformed pattern.
pub fn matches(pattern: &str, name: &str) -> Result<bool> {
    Ok(path_match(pattern, name)?)
}

/// A list of `--exclude` patterns matched against paths relative to the copy source.
#[derive(Debug, Clone)]
pub struct Excluder(DockerIgnore);

impl Excluder {
    /// Parses the patterns (`!` re-includes).
    ///
    /// # Errors
    /// A malformed pattern.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        Ok(Self(DockerIgnore::from_patterns(patterns)?))
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patterns.
    pub fn patterns(&self) -> &DockerIgnore {
        &self.0
    }

    /// Whether `rel` (relative to the copy source) is excluded.
    pub fn is_excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && self.0.is_excluded(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_cases() {
        // Cases from Go's path/filepath match_test.go.
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("*x", "xxx", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(matches(p, n).unwrap(), *want, "{p} {n}");
        }
        for (p, n) in [
            ("[]a]", "]"),
            ("[-]", "-"),
            ("[x-]", "x"),
            ("[", "a"),
            ("[^", "a"),
            ("a[", "a"),
            ("*x\\", "xxx"),
        ] {
            assert!(matches(p, n).is_err(), "{p} {n}");
        }
    }

    #[test]
    fn exclude_rules() {
        let e = Excluder::new(&["*.txt", "sub/**/*.log", "!keep.txt", "build"]).unwrap();
        assert!(e.is_excluded("a.txt"));
        assert!(!e.is_excluded("d/a.txt"));
        assert!(!e.is_excluded("keep.txt"));
        assert!(e.is_excluded("sub/x.log"));
        assert!(e.is_excluded("sub/a/b/x.log"));
        assert!(e.is_excluded("build/deep/file"));
        assert!(!e.is_excluded("main.rs"));
        assert!(Excluder::new(&["[x-"]).is_err());
    }
}
