//! Go's `filepath.Match` (COPY wildcards) and BuildKit's `--exclude` patterns.
//!
//! `matches` follows Go exactly: `*` matches any run of non-`/` characters, `?` one non-`/`
//! character, `[...]` a class (`^` negates, `a-z` ranges), `\` escapes; a malformed pattern is
//! an error ("syntax error in pattern"). [`Excluder`] applies `--exclude` patterns the way
//! `.dockerignore` does: per component with `**` spanning any number of components, a match on a
//! directory covers everything below it, and `!pattern` re-includes (the last match wins).

use crate::error::{Error, Result};

fn bad() -> Error {
    Error::Copy("syntax error in pattern".into())
}

/// Whether `s` contains a wildcard character (`*`, `?`, `[`, `\`).
pub fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

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
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_at(&p, &n)
}

fn match_at(p: &[char], n: &[char]) -> Result<bool> {
    // Iterative matcher with one backtrack point for the last `*` (classic glob algorithm);
    // classes and escapes are validated as they are met, and the rest of the pattern is
    // validated when the name runs out, as Go reports syntax errors.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    while pi < p.len() && p[pi] == '*' {
                        pi += 1;
                    }
                    star = Some((pi, ni));
                    continue;
                }
                c if ni < n.len() => {
                    let (ok, len) = match c {
                        '?' => (n[ni] != '/', 1),
                        '[' => class(&p[pi..], n[ni])?,
                        '\\' => {
                            let e = *p.get(pi + 1).ok_or_else(bad)?;
                            (e == n[ni], 2)
                        }
                        c => (c == n[ni], 1),
                    };
                    if ok {
                        pi += len;
                        ni += 1;
                        continue;
                    }
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Ok(true);
        }
        // Mismatch: backtrack to the last star, which may not swallow a '/'.
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => {
                validate(&p[pi.min(p.len())..])?;
                return Ok(false);
            }
        }
    }
}

/// Checks the syntax of the rest of a pattern.
fn validate(p: &[char]) -> Result<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '[' => i += class(&p[i..], 'a')?.1,
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(bad());
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Matches `c` against the class at the start of `p` (`[...]`); returns (matched, length).
fn class(p: &[char], c: char) -> Result<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = match p.get(i) {
            None => return Err(bad()),
            Some(']') if !first => {
                i += 1;
                break;
            }
            Some('\\') => {
                i += 2;
                *p.get(i - 1).ok_or_else(bad)?
            }
            Some('-') | Some(']') if first => return Err(bad()),
            Some(&ch) => {
                i += 1;
                ch
            }
        };
        first = false;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            hi = match p.get(i + 1) {
                None | Some(']') => return Err(bad()),
                Some('\\') => {
                    i += 3;
                    *p.get(i - 1).ok_or_else(bad)?
                }
                Some(&ch) => {
                    i += 2;
                    ch
                }
            };
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Ok((matched != negate && c != '/', i))
}

/// One `--exclude` pattern, split into components.
#[derive(Debug, Clone)]
struct Rule {
    comps: Vec<String>,
    negate: bool,
}

/// A list of `--exclude` patterns matched against paths relative to the copy source.
#[derive(Debug, Clone, Default)]
pub struct Excluder {
    rules: Vec<Rule>,
}

impl Excluder {
    /// Parses the patterns (`!` re-includes).
    ///
    /// # Errors
    /// A malformed pattern.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut rules = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            let (negate, p) = match p.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, p),
            };
            let clean = super::clamp_rel(p);
            if clean.is_empty() {
                continue;
            }
            let comps: Vec<String> = clean.split('/').map(str::to_owned).collect();
            for c in &comps {
                if c != "**" {
                    validate(&c.chars().collect::<Vec<_>>())?;
                }
            }
            rules.push(Rule { comps, negate });
        }
        Ok(Self { rules })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `rel` (relative to the copy source) is excluded.
    pub fn is_excluded(&self, rel: &str) -> bool {
        if self.rules.is_empty() || rel.is_empty() {
            return false;
        }
        let path: Vec<&str> = rel.split('/').collect();
        let mut excluded = false;
        for r in &self.rules {
            if r.negate == excluded && prefix_match(&r.comps, &path) {
                excluded = !r.negate;
            }
        }
        excluded
    }
}

/// Whether the pattern matches `path` or one of its parents.
fn prefix_match(pat: &[String], path: &[&str]) -> bool {
    (1..=path.len()).any(|n| comps_match(pat, &path[..n]))
}

fn comps_match(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| comps_match(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, more)) => matches(first, name).unwrap_or(false) && comps_match(rest, more),
            None => false,
        },
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
