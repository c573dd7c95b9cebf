//! `.dockerignore` with Docker's exact semantics (not gitignore's).
//!
//! Reading follows `moby/patternmatcher/ignorefile.ReadAll`: a UTF-8 BOM is dropped, a line that
//! starts with `#` in column 1 is a comment, lines are trimmed, a leading `!` re-includes, every
//! pattern is `filepath.Clean`ed and a leading `/` is dropped. Matching follows
//! BuildKit's context walker (fsutil, `patternmatcher.MatchesUsingParentResults` level by level):
//! patterns are anchored at the context root, `*` and `?` never cross `/`, `**` spans any number
//! of directories, a match on a parent directory counts and the last matching pattern wins. Each pattern is translated the way Docker translates it
//! (exact, prefix, suffix or regular-expression match, with the same quirks, e.g. `**.go` is a
//! suffix match).
//!
//! The module also carries the two path helpers every context reader needs: [`clean`] (Go's
//! `filepath.Clean`) and [`path_match`] (Go's `filepath.Match`).

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use regex::Regex;

use crate::error::{Error, Result, errno_err, io_err};

/// A parsed `.dockerignore` (or a list of `COPY --exclude` patterns).
#[derive(Clone, Debug, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    cleaned: String,
    exclusion: bool,
    kind: MatchKind,
    /// Per-component glob tokens, for [`DockerIgnore::may_reinclude_under`].
    components: Vec<Vec<Tok>>,
    /// Whether some component holds `**` (it may then span any depth).
    any_depth: bool,
}

/// Docker's four match strategies; which one applies changes the semantics in corner cases.
#[derive(Clone, Debug)]
enum MatchKind {
    Exact,
    /// `foo**` and `foo/**`: a plain prefix test on the text before `**`.
    Prefix,
    /// A pattern starting with `**` with no other metacharacter: a plain suffix test.
    Suffix,
    Regex(Regex),
    /// A character class that can match nothing (a reversed range only).
    Never,
}

impl DockerIgnore {
    /// A matcher that excludes nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses `.dockerignore` text. `file` is for messages only (`.dockerignore:3: ...`).
    ///
    /// # Errors
    ///
    /// [`Error::DockerIgnore`] for a lone `!` or a malformed pattern, naming the line.
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let mut patterns = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let mut line = raw.strip_suffix('\r').unwrap_or(raw);
            if index == 0 {
                line = line.strip_prefix('\u{feff}').unwrap_or(line);
            }
            // Comments only start in column 1: "  # x" is a pattern named "# x".
            if line.starts_with('#') {
                continue;
            }
            let mut text = line.trim();
            if text.is_empty() {
                continue;
            }
            let invert = text.starts_with('!');
            if invert {
                text = text[1..].trim();
            }
            let mut normalized = String::new();
            if !text.is_empty() {
                normalized = clean(text);
                if normalized.len() > 1 && normalized.starts_with('/') {
                    normalized.remove(0);
                }
            }
            if invert {
                normalized.insert(0, '!');
            }
            let pattern = Pattern::new(&normalized).map_err(|message| Error::DockerIgnore {
                file: file.to_owned(),
                line: index + 1,
                message,
            })?;
            patterns.extend(pattern);
        }
        Ok(Self { patterns })
    }

    /// Builds a matcher from patterns given one by one (`COPY --exclude=...`), with
    /// `patternmatcher.New`'s processing: trimmed, cleaned, `!` re-includes.
    ///
    /// # Errors
    ///
    /// [`Error::BadPattern`] for a lone `!` or a malformed pattern.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut parsed = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let compiled = Pattern::new(pattern).map_err(|message| Error::BadPattern {
                pattern: pattern.to_owned(),
                message,
            })?;
            parsed.extend(compiled);
        }
        Ok(Self { patterns: parsed })
    }

    /// Reads `<dockerfile>.dockerignore` next to the Dockerfile if present (the Dockerfile may
    /// be outside the context), else `<context>/.dockerignore` (resolved inside the context),
    /// else returns the empty matcher.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a file exists but cannot be read, [`Error::DockerIgnore`] when it does
    /// not parse.
    pub fn load(context: &Path, dockerfile: &Path) -> Result<Self> {
        if let Some(name) = dockerfile.file_name() {
            let mut specific = name.to_os_string();
            specific.push(".dockerignore");
            let specific = dockerfile.with_file_name(specific);
            match std::fs::read(&specific) {
                Ok(bytes) => {
                    let name = specific.file_name().map_or_else(
                        || specific.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    return Self::parse(&String::from_utf8_lossy(&bytes), &name);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&specific)(e)),
            }
        }
        let root = File::open(context).map_err(io_err(context))?;
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let path = context.join(".dockerignore");
        // openat2(2) with RESOLVE_IN_ROOT: a `.dockerignore` symlink is resolved with the
        // context as its root, so it can never read a file outside the context.
        // https://man7.org/linux/man-pages/man2/openat2.2.html
        let fd: OwnedFd = match nix::fcntl::openat2(&root, ".dockerignore", how) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(Self::empty()),
            Err(e) => return Err(errno_err(&path)(e)),
        };
        let mut bytes = Vec::new();
        File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        Self::parse(&String::from_utf8_lossy(&bytes), ".dockerignore")
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some pattern starts with `!`.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `rel` (a cleaned, '/'-separated path relative to the context root, no leading
    /// '/') is excluded, as BuildKit's context walker (fsutil) decides: each directory level is
    /// matched with `MatchesUsingParentResults`, so a pattern that matched a parent directory
    /// applies to everything below it and the last matching pattern wins. The root never is.
    ///
    /// This differs from the classic builder's `MatchesOrParentMatches` only in a corner case:
    /// with `x`, `!x/keep`, `x`, BuildKit sends `x/keep` (the third pattern was skipped for `x`
    /// because `x` was already excluded, so it is not inherited); see [`Self::is_excluded_classic`].
    pub fn is_excluded(&self, rel: &str) -> bool {
        if rel.is_empty() || rel == "." || self.patterns.is_empty() {
            return false;
        }
        let mut inherited = vec![false; self.patterns.len()];
        let mut matched = false;
        let ends = rel
            .match_indices('/')
            .map(|(pos, _)| pos)
            .chain(std::iter::once(rel.len()));
        for end in ends {
            let path = &rel[..end];
            matched = false;
            for (pattern, parent_hit) in self.patterns.iter().zip(inherited.iter_mut()) {
                if !*parent_hit {
                    // An inclusion only matters while not matched, a re-inclusion only once
                    // matched; a skipped pattern is not recorded for the children.
                    if pattern.exclusion != matched {
                        continue;
                    }
                    *parent_hit = pattern.matches(path);
                }
                if *parent_hit {
                    matched = !pattern.exclusion;
                }
            }
        }
        matched
    }

    /// The classic builder's `MatchesOrParentMatches`: the path and each of its parents are
    /// matched against every pattern, the last matching pattern wins.
    pub fn is_excluded_classic(&self, rel: &str) -> bool {
        if rel.is_empty() || rel == "." {
            return false;
        }
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches(rel)
                || rel
                    .match_indices('/')
                    .any(|(pos, _)| pattern.matches(&rel[..pos]));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether the walker must still descend into the excluded directory `rel`: some `!`
    /// pattern could match `rel` or something below it. Conservative: `true` may mean a walk
    /// that finds nothing, `false` is always safe to prune.
    pub fn may_reinclude_under(&self, rel: &str) -> bool {
        let parts: Vec<&str> = if rel.is_empty() {
            Vec::new()
        } else {
            rel.split('/').collect()
        };
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| p.may_match_under(&parts))
    }
}

impl DockerIgnore {
    /// Whether any pattern (of either sign) could match `rel`, an ancestor or a descendant:
    /// when not, every path under `rel` keeps the verdict `rel` has.
    pub(crate) fn may_affect_under(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        self.patterns.iter().any(|p| p.may_match_under(&parts))
    }
}

impl Pattern {
    /// `patternmatcher.New` for one pattern: `Ok(None)` for a blank one.
    fn new(raw: &str) -> std::result::Result<Option<Self>, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let mut cleaned = clean(trimmed);
        let exclusion = cleaned.starts_with('!');
        if exclusion {
            if cleaned.len() == 1 {
                return Err("illegal exclusion pattern: \"!\"".to_owned());
            }
            cleaned.remove(0);
        }
        // Docker rejects what `filepath.Match` rejects.
        tokenize(&cleaned)?;
        let kind = compile(&cleaned)?;
        let mut components = Vec::new();
        let mut any_depth = false;
        for part in cleaned.split('/') {
            any_depth |= part.contains("**");
            components.push(tokenize(part)?);
        }
        Ok(Some(Self {
            cleaned,
            exclusion,
            kind,
            components,
            any_depth,
        }))
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.cleaned,
            MatchKind::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchKind::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchKind::Regex(re) => re.is_match(path),
            MatchKind::Never => false,
        }
    }

    /// Whether this pattern could match `parts` joined, an ancestor of it, or a descendant.
    fn may_match_under(&self, parts: &[&str]) -> bool {
        if self.any_depth {
            return true;
        }
        parts
            .iter()
            .zip(&self.components)
            .all(|(name, tokens)| match_tokens(tokens, name))
    }
}

/// Translates a cleaned Docker pattern the way `patternmatcher` does, choosing the same
/// strategy (exact, prefix, suffix, regex) because the strategies differ in corner cases.
fn compile(pattern: &str) -> std::result::Result<MatchKind, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let mut idx = 0;
    let mut step = 0usize;
    while idx < chars.len() {
        let ch = chars[idx];
        idx += 1;
        let first = step == 0;
        step += 1;
        match ch {
            '*' if chars.get(idx) == Some(&'*') => {
                idx += 1;
                // `**/` is `**`: eat the slash.
                if chars.get(idx) == Some(&'/') {
                    idx += 1;
                }
                if idx == chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    re.push_str("(?:.*/)?");
                    kind = Kind::Regex;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regex;
            }
            '\\' => match chars.get(idx) {
                Some(&next) => {
                    idx += 1;
                    push_literal(&mut re, next);
                    kind = Kind::Regex;
                }
                None => re.push_str("\\\\"),
            },
            '[' => {
                let (class, used) = parse_class(&chars[idx..])?;
                idx += used;
                kind = Kind::Regex;
                match class.to_regex() {
                    Some(text) => re.push_str(&text),
                    None => return Ok(MatchKind::Never),
                }
            }
            ']' => {
                push_literal(&mut re, ']');
                kind = Kind::Regex;
            }
            c => push_literal(&mut re, c),
        }
    }
    Ok(match kind {
        Kind::Exact => MatchKind::Exact,
        Kind::Prefix => MatchKind::Prefix,
        Kind::Suffix => MatchKind::Suffix,
        Kind::Regex => {
            re.push('$');
            MatchKind::Regex(Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

fn push_literal(re: &mut String, c: char) {
    let mut buf = [0u8; 4];
    re.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

/// One token of a Go `filepath.Match` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    Lit(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters other than `/`.
    Star,
    Class(Class),
}

/// `[...]`: Go syntax, `^` negates, `\` escapes, `lo-hi` ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }

    /// The class as a Rust regex, `None` if it can match nothing (Go accepts reversed ranges
    /// and they match nothing; Rust's regex syntax rejects them).
    fn to_regex(&self) -> Option<String> {
        let ranges: Vec<_> = self.ranges.iter().filter(|(lo, hi)| lo <= hi).collect();
        if ranges.is_empty() {
            return self.negated.then(|| "[\\x{0}-\\x{10FFFF}]".to_owned());
        }
        let mut out = String::from(if self.negated { "[^" } else { "[" });
        for (lo, hi) in ranges {
            out.push_str(&format!("\\x{{{:X}}}-\\x{{{:X}}}", *lo as u32, *hi as u32));
        }
        out.push(']');
        Some(out)
    }
}

/// Parses a class body (after `[`), returning it and the number of chars used incl. `]`.
fn parse_class(chars: &[char]) -> std::result::Result<(Class, usize), String> {
    let unclosed = || "unterminated character class".to_owned();
    let mut idx = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        idx += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(idx) {
            None => return Err(unclosed()),
            Some(']') if !ranges.is_empty() => return Ok((Class { negated, ranges }, idx + 1)),
            _ => {}
        }
        let lo = class_char(chars, &mut idx)?;
        let mut hi = lo;
        if chars.get(idx) == Some(&'-') {
            idx += 1;
            hi = class_char(chars, &mut idx)?;
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], idx: &mut usize) -> std::result::Result<char, String> {
    match chars.get(*idx) {
        None => Err("unterminated character class".to_owned()),
        Some('-' | ']') => Err("unescaped '-' or ']' in character class".to_owned()),
        Some('\\') => match chars.get(*idx + 1) {
            None => Err("unterminated escape in character class".to_owned()),
            Some(&c) => {
                *idx += 2;
                Ok(c)
            }
        },
        Some(&c) => {
            *idx += 1;
            Ok(c)
        }
    }
}

pub(crate) fn tokenize(pattern: &str) -> std::result::Result<Vec<Tok>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut idx = 0;
    while idx < chars.len() {
        let c = chars[idx];
        idx += 1;
        out.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            '\\' => match chars.get(idx) {
                Some(&next) => {
                    idx += 1;
                    Tok::Lit(next)
                }
                None => return Err("trailing backslash".to_owned()),
            },
            '[' => {
                let (class, used) = parse_class(&chars[idx..])?;
                idx += used;
                Tok::Class(class)
            }
            c => Tok::Lit(c),
        });
    }
    Ok(out)
}

pub(crate) fn match_tokens(tokens: &[Tok], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    // reach[j]: the tokens so far can consume exactly name[..j].
    let mut reach = vec![false; name.len() + 1];
    reach[0] = true;
    for tok in tokens {
        let mut next = vec![false; name.len() + 1];
        match tok {
            Tok::Star => {
                let mut on = false;
                for j in 0..=name.len() {
                    on = reach[j] || (on && j > 0 && name[j - 1] != '/');
                    next[j] = on;
                }
            }
            _ => {
                for j in 0..name.len() {
                    let ok = match tok {
                        Tok::Lit(c) => name[j] == *c,
                        Tok::One => name[j] != '/',
                        Tok::Class(class) => class.contains(name[j]),
                        Tok::Star => false,
                    };
                    next[j + 1] = reach[j] && ok;
                }
            }
        }
        reach = next;
        if !reach.contains(&true) {
            return false;
        }
    }
    reach[name.len()]
}

/// Go's `path/filepath.Match`: whether `name` matches the shell pattern `pattern` (`*` and `?`
/// never match `/`; `[...]` classes with `^` negation; `\` escapes).
///
/// # Errors
///
/// [`Error::BadPattern`] for a malformed pattern (unclosed class, trailing `\`, ...), whatever
/// `name` is.
pub fn path_match(pattern: &str, name: &str) -> Result<bool> {
    let tokens = tokenize(pattern).map_err(|message| Error::BadPattern {
        pattern: pattern.to_owned(),
        message,
    })?;
    Ok(match_tokens(&tokens, name))
}

/// Whether `pattern` holds a `filepath.Match` metacharacter (`*`, `?`, `[`, `\`).
pub fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// Go's `path/filepath.Clean` on '/'-separated text: repeated slashes and `.` components go,
/// `..` removes the component before it (never climbing above a leading `/`), the result is
/// `.` when nothing is left.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &str, path: &str) -> bool {
        DockerIgnore::parse(patterns, ".dockerignore")
            .expect("parse")
            .is_excluded(path)
    }

    #[test]
    fn table() {
        // (dockerignore text, path, excluded?)
        let cases: &[(&str, &str, bool)] = &[
            // Anchored at the root after cleaning.
            ("foo", "foo", true),
            ("foo", "a/foo", false),
            ("/foo", "foo", true),
            ("./foo", "foo", true),
            ("a/../foo", "foo", true),
            ("foo/", "foo", true),
            ("**/foo", "a/foo", true),
            ("**/foo", "a/b/foo", true),
            ("**/foo", "foo", true),
            ("**/foo", "afoo", false),
            // `*` and `?` don't cross '/'.
            ("*.go", "main.go", true),
            ("*.go", "cmd/main.go", false),
            ("*/*.go", "cmd/main.go", true),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("a*", "a/b", true), // parent `a` matches
            ("*", "x/y/z", true),
            // `**` spans any number of directories, including none.
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "x/a/b", false),
            ("a/**", "a/b/c", true),
            ("a/**", "a", false),
            ("**", "anything/at/all", true),
            ("**/*.txt", "x/y/z.txt", true),
            ("**/*.txt", "z.txt", true),
            // Docker's suffix strategy: `**.go` is a plain suffix test.
            ("**.go", "a/b.go", true),
            // Parent-directory match counts.
            ("build", "build/out/x.o", true),
            ("b*d", "build/x", true),
            ("a/b", "a/b/c/d", true),
            ("a/b", "a/bc", false),
            // Last match wins.
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            ("!README.md\n*.md", "README.md", true),
            ("*.md\n!README.md\nREADME.md", "README.md", true),
            // `!` re-includes even inside an excluded directory.
            ("docs\n!docs/keep.md", "docs/keep.md", false),
            ("docs\n!docs/keep.md", "docs/other.md", true),
            ("docs\n!docs/keep.md", "docs", true),
            ("docs\n!docs/sub", "docs/sub/deep/x", false),
            (
                "**/node_modules\n!**/node_modules/keep",
                "a/node_modules/keep/x",
                false,
            ),
            // Comments only in column 1; lines are trimmed.
            ("#foo", "#foo", false),
            (" #foo", "#foo", true),
            ("  foo  ", "foo", true),
            ("\tfoo\r", "foo", true),
            ("\u{feff}foo", "foo", true),
            ("!  foo\nfoo\n! foo", "foo", false),
            // Regex metacharacters are literal.
            ("a.c", "abc", false),
            ("a.c", "a.c", true),
            ("a+(b)", "a+(b)", true),
            ("a(b)*", "a(b)x", true),
            ("f{1,2}*", "f{1,2}z", true),
            // Classes and escapes.
            ("[ab].txt", "b.txt", true),
            ("[^ab].txt", "b.txt", false),
            ("[a-c]x", "bx", true),
            ("\\*x", "*x", true),
            ("\\*x", "ax", false),
            ("[]a]", "]", false), // bad pattern in Go: checked below
            // The root is never excluded, `.` never matches.
            (".", "x", false),
        ];
        for (patterns, path, want) in cases {
            let parsed = DockerIgnore::parse(patterns, ".dockerignore");
            let Ok(ignore) = parsed else {
                assert_eq!(*patterns, "[]a]", "unexpected parse error for {patterns:?}");
                continue;
            };
            assert_eq!(
                ignore.is_excluded(path),
                *want,
                "patterns {patterns:?} path {path:?}"
            );
        }
        assert!(!excluded("*", ""));
    }

    #[test]
    fn buildkit_and_classic_differ_only_where_documented() {
        let ig = DockerIgnore::parse("x\n!x/keep\nx\n", "f").expect("parse");
        assert!(!ig.is_excluded("x/keep"), "BuildKit sends it");
        assert!(
            ig.is_excluded_classic("x/keep"),
            "the classic builder does not"
        );
        assert!(ig.is_excluded("x") && ig.is_excluded("x/other"));
    }

    #[test]
    fn bad_patterns_name_their_line() {
        let err = DockerIgnore::parse("ok\n\n!\n", ".dockerignore").unwrap_err();
        assert_eq!(
            err.to_string(),
            ".dockerignore:3: illegal exclusion pattern: \"!\""
        );
        let err = DockerIgnore::parse("# c\na[b\n", "x.dockerignore").unwrap_err();
        assert!(
            matches!(&err, Error::DockerIgnore { line: 2, file, .. } if file == "x.dockerignore"),
            "{err}"
        );
        assert!(DockerIgnore::parse("a\\", "f").is_err());
        assert!(DockerIgnore::parse("[]", "f").is_err());
        assert!(DockerIgnore::parse("[a-]", "f").is_err());
        assert!(DockerIgnore::parse("!   ", "f").is_err());
        // `!/` cleans to `!`: Docker rejects it too.
        assert!(DockerIgnore::parse("!/", "f").is_err());
    }

    #[test]
    fn reinclude_pruning() {
        let ig = DockerIgnore::parse("docs\n!docs/keep.md\nvendor", "f").expect("parse");
        assert!(ig.may_reinclude_under("docs"));
        assert!(!ig.may_reinclude_under("vendor"));
        assert!(!ig.may_reinclude_under("docs/sub"));
        let ig = DockerIgnore::parse("*\n!**/*.rs", "f").expect("parse");
        assert!(ig.may_reinclude_under("deep/dir"));
        let ig = DockerIgnore::parse("*\n!src/*/main.rs", "f").expect("parse");
        assert!(ig.may_reinclude_under("src"));
        assert!(ig.may_reinclude_under("src/bin"));
        assert!(!ig.may_reinclude_under("tests"));
        // A re-included directory re-includes what is below it (parent match).
        assert!(ig.may_reinclude_under("src/bin/main.rs/x/y"));
        assert!(!DockerIgnore::empty().may_reinclude_under("x"));
    }

    #[test]
    fn dockerfile_specific_ignore_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).expect("mkdir");
        let dockerfile = dir.path().join("app.Dockerfile");
        std::fs::write(&dockerfile, "FROM scratch\n").expect("write");
        assert!(
            DockerIgnore::load(&ctx, &dockerfile)
                .expect("load")
                .is_empty()
        );
        std::fs::write(ctx.join(".dockerignore"), "generic\n").expect("write");
        let ig = DockerIgnore::load(&ctx, &dockerfile).expect("load");
        assert!(ig.is_excluded("generic") && !ig.is_excluded("specific"));
        std::fs::write(dir.path().join("app.Dockerfile.dockerignore"), "specific\n")
            .expect("write");
        let ig = DockerIgnore::load(&ctx, &dockerfile).expect("load");
        assert!(!ig.is_excluded("generic") && ig.is_excluded("specific"));
        // Errors name the file they come from.
        std::fs::write(dir.path().join("app.Dockerfile.dockerignore"), "x\n!\n").expect("write");
        let err = DockerIgnore::load(&ctx, &dockerfile).unwrap_err();
        assert_eq!(
            err.to_string(),
            "app.Dockerfile.dockerignore:2: illegal exclusion pattern: \"!\""
        );
    }

    #[test]
    fn context_dockerignore_symlink_stays_in_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).expect("mkdir");
        std::fs::write(dir.path().join("outside"), "leaked\n").expect("write");
        std::fs::write(ctx.join("outside"), "inside\n").expect("write");
        std::os::unix::fs::symlink("/outside", ctx.join(".dockerignore")).expect("symlink");
        let ig = DockerIgnore::load(&ctx, &ctx.join("Dockerfile")).expect("load");
        assert!(ig.is_excluded("inside") && !ig.is_excluded("leaked"));
    }

    #[test]
    fn go_clean() {
        for (input, want) in [
            ("", "."),
            ("a//b/./c/", "a/b/c"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/b/../../c", "c"),
        ] {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn go_match() {
        for (pattern, name, want) in [
            ("*", "abc", true),
            ("*", "a/b", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("?", "/", false),
            ("[^a]", "b", true),
            ("[a-c]", "d", false),
            ("[\\]]", "]", true),
            ("\\[", "[", true),
            ("[z-a]", "m", false),
        ] {
            assert_eq!(
                path_match(pattern, name).expect("valid"),
                want,
                "{pattern} {name}"
            );
        }
        assert!(path_match("[", "x").is_err());
    }

    /// A reference implementation straight from Docker's description: translate to a regex
    /// for every pattern (no strategy shortcuts), check the path and each parent, last wins.
    fn reference(patterns: &[(bool, String)], path: &str) -> bool {
        let mut matched = false;
        for (exclusion, pattern) in patterns {
            let mut re = String::from("^");
            let chars: Vec<char> = pattern.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                if chars[i] == '*' && chars.get(i + 1) == Some(&'*') {
                    i += 2;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    re.push_str(if i == chars.len() { ".*" } else { "(?:.*/)?" });
                    continue;
                }
                match chars[i] {
                    '*' => re.push_str("[^/]*"),
                    '?' => re.push_str("[^/]"),
                    c => push_literal(&mut re, c),
                }
                i += 1;
            }
            re.push('$');
            let re = Regex::new(&re).expect("regex");
            let mut candidates = vec![path];
            candidates.extend(path.match_indices('/').map(|(p, _)| &path[..p]));
            if candidates.iter().any(|c| re.is_match(c)) {
                matched = !exclusion;
            }
        }
        matched
    }

    proptest::proptest! {
        #[test]
        fn matcher_agrees_with_reference(
            patterns in proptest::collection::vec(("!?", "(a|b|\\*|\\?|/|\\*\\*/)(a|b|\\*|\\?|/){0,4}[ab]"), 1..4),
            path in "[ab]{1,2}(/[ab]{1,2}){0,3}",
        ) {
            let text: String = patterns.iter().map(|(bang, p)| format!("{bang}{p}\n")).collect();
            let ignore = DockerIgnore::parse(&text, "f").expect("parse");
            let cleaned: Vec<(bool, String)> = ignore
                .patterns
                .iter()
                .map(|p| (p.exclusion, p.cleaned.clone()))
                .collect();
            // The suffix strategy differs from the regex on purpose (Docker's quirk): only
            // compare patterns that it does not apply to.
            proptest::prop_assume!(ignore.patterns.iter().all(|p| !matches!(p.kind, MatchKind::Suffix)));
            proptest::prop_assert_eq!(ignore.is_excluded_classic(&path), reference(&cleaned, &path));
        }
    }
}
