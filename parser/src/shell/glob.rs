//! Shell patterns for `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}` and `${V//p/r}`.
//!
//! BuildKit turns the pattern into a Go regular expression (`*` becomes `.*` or `.*?`, `?`
//! becomes `.`, everything else is literal) and searches it with leftmost-first semantics. This
//! module compiles the same language into a token list and runs it as a position-set automaton,
//! so time is bounded by text length times pattern length and never backtracks. It returns what
//! Go's regexp returns:
//!
//! - `*` and `?` do not match a newline (Go's `.` without the `s` flag);
//! - with greedy stars the leftmost-first match is the longest match from the leftmost start,
//!   with lazy stars (anchored only) it is the shortest one;
//! - the `\` escape is always a backslash, whatever the Dockerfile escape character: `\*`, `\?`
//!   and `\\` are literal, `\}` and `\/` drop the backslash, any other escape is an error;
//! - `${V//p/r}` follows Go's `ReplaceAllString`, including its `$0`/`${0}` template in `r`.

use crate::shell::chars::is_name_char;

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// A character matched as is.
    Lit(char),
    /// `?`: any character but a newline.
    Any,
    /// `*`: any run of characters without a newline. Never two in a row.
    Star,
}

/// A compiled shell pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
    /// No token matches a newline, so star dominance holds (see [`Pattern::prune`]).
    prunable: bool,
}

impl Pattern {
    /// Compiles `pattern`; the error is the reason BuildKit gives (`invalid escape '\x'`).
    pub(crate) fn compile(pattern: &str) -> Result<Self, String> {
        let mut chars = pattern.chars().peekable();
        // Go's text/scanner drops a byte-order mark at the very start.
        if chars.peek() == Some(&'\u{feff}') {
            chars.next();
        }
        let mut toks = Vec::new();
        while let Some(c) = chars.next() {
            let tok = match c {
                '*' if toks.last() == Some(&Tok::Star) => continue,
                '*' => Tok::Star,
                '?' => Tok::Any,
                '\\' => match chars.peek() {
                    Some('}' | '/') => continue,
                    _ => match chars.next() {
                        Some(e @ ('*' | '?' | '\\')) => Tok::Lit(e),
                        other => {
                            return Err(format!(
                                "invalid escape '\\{}'",
                                other.unwrap_or('\u{fffd}')
                            ));
                        }
                    },
                },
                c => Tok::Lit(c),
            };
            toks.push(tok);
        }
        let prunable = !toks.contains(&Tok::Lit('\n'));
        Ok(Pattern { toks, prunable })
    }

    /// The end of the longest (`longest`) or shortest match that starts at 0.
    pub(crate) fn anchored_end(&self, text: &[char], longest: bool) -> Option<usize> {
        let accept = self.toks.len();
        let mut cur = Threads::new(accept + 1);
        let mut next = Threads::new(accept + 1);
        self.add(&mut cur, 0, 0);
        let mut best = None;
        for pos in 0..=text.len() {
            if cur.start_of(accept).is_some() {
                best = Some(pos);
                if !longest {
                    break;
                }
            }
            match text.get(pos) {
                Some(&c) if !cur.active.is_empty() => {
                    self.step(&cur, c, usize::MAX, &mut next);
                    std::mem::swap(&mut cur, &mut next);
                }
                _ => break,
            }
        }
        best
    }

    /// The leftmost match starting at or after `from`, longest for that start, as char offsets.
    pub(crate) fn find(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        let accept = self.toks.len();
        let mut cur = Threads::new(accept + 1);
        let mut next = Threads::new(accept + 1);
        let mut best: Option<(usize, usize)> = None;
        let mut pos = from;
        loop {
            if best.is_none() {
                self.add(&mut cur, 0, pos);
            }
            if let Some(start) = cur.start_of(accept) {
                let better = match best {
                    None => true,
                    Some((s, e)) => start < s || (start == s && pos > e),
                };
                if better {
                    best = Some((start, pos));
                }
            }
            let Some(&c) = text.get(pos) else { break };
            if best.is_some() && cur.active.is_empty() {
                break;
            }
            let limit = best.map_or(usize::MAX, |(s, _)| s);
            self.step(&cur, c, limit, &mut next);
            std::mem::swap(&mut cur, &mut next);
            pos += 1;
        }
        best
    }

    /// Adds `state` and, when it is a star (which may match nothing), the state after it.
    fn add(&self, threads: &mut Threads, state: usize, start: usize) {
        threads.add(state, start);
        if self.toks.get(state) == Some(&Tok::Star) {
            threads.add(state + 1, start);
        }
    }

    /// Advances every thread of `cur` (whose start is at most `limit`) over `c` into `next`.
    fn step(&self, cur: &Threads, c: char, limit: usize, next: &mut Threads) {
        next.clear();
        for &state in &cur.active {
            let start = cur.start[state];
            if start > limit {
                continue;
            }
            match self.toks.get(state) {
                Some(Tok::Lit(x)) if *x == c => self.add(next, state + 1, start),
                Some(Tok::Any) if c != '\n' => self.add(next, state + 1, start),
                Some(Tok::Star) if c != '\n' => self.add(next, state, start),
                _ => {}
            }
        }
        if self.prunable {
            self.prune(next);
        }
    }

    /// Drops threads that a star further on already covers: a thread in state `j` is
    /// redundant when a star state `i > j` is active with a start no later than `j`'s, because
    /// every path from `j` goes through `i` and the star can consume whatever `j` consumes on
    /// the way (no token of a prunable pattern matches a newline, the only thing a star
    /// cannot consume). This keeps the active set at about one segment's length.
    fn prune(&self, threads: &mut Threads) {
        if threads.active.len() < 2 {
            return;
        }
        threads.active.sort_unstable_by(|a, b| b.cmp(a));
        let mut star_start = usize::MAX;
        let mut kept = 0;
        for idx in 0..threads.active.len() {
            let state = threads.active[idx];
            let start = threads.start[state];
            if start < star_start {
                threads.active[kept] = state;
                kept += 1;
            } else {
                // Forget it entirely, so a later `add` re-inserts it.
                threads.member[state] = 0;
            }
            if self.toks.get(state) == Some(&Tok::Star) {
                star_start = star_start.min(start);
            }
        }
        threads.active.truncate(kept);
    }
}

/// A set of automaton states, each with the earliest start position that reached it.
#[derive(Debug)]
struct Threads {
    /// States in the set, in insertion order.
    active: Vec<usize>,
    /// Earliest start per state; meaningful only where `member` is `generation`.
    start: Vec<usize>,
    member: Vec<u64>,
    generation: u64,
}

impl Threads {
    fn new(states: usize) -> Self {
        Threads {
            active: Vec::new(),
            start: vec![0; states],
            member: vec![0; states],
            generation: 1,
        }
    }

    fn clear(&mut self) {
        self.active.clear();
        self.generation += 1;
    }

    fn add(&mut self, state: usize, start: usize) {
        if self.member[state] == self.generation {
            self.start[state] = self.start[state].min(start);
        } else {
            self.member[state] = self.generation;
            self.start[state] = start;
            self.active.push(state);
        }
    }

    fn start_of(&self, state: usize) -> Option<usize> {
        (self.member[state] == self.generation).then(|| self.start[state])
    }
}

/// Reverses a pattern but keeps each `\x` pair in order (`a\*c` becomes `c\*a`), as
/// BuildKit's `reversePattern` does to turn a suffix search into a prefix search.
pub(crate) fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = chars.clone();
    let last = chars.len().saturating_sub(1);
    let mut i = 0;
    while i < chars.len() {
        let mirror = last - i;
        if chars[i] == '\\' && i != last {
            // `mirror >= 1` because `i < last`.
            out[mirror - 1] = '\\';
            out[mirror] = chars[i + 1];
            i += 2;
        } else {
            out[mirror] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// Go's `Regexp.Expand` of `template` for a regexp without groups: `$0`/`${0}` is the match,
/// `$$` is `$`, other references expand to nothing, malformed ones stay literal.
pub(crate) fn expand_template(out: &mut String, template: &str, matched: &[char]) {
    let mut rest = template;
    while let Some(idx) = rest.find('$') {
        out.push_str(&rest[..idx]);
        rest = &rest[idx + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match extract_reference(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.extend(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Parses `name` or `{name}` at the start of `s`; returns the name and the rest.
fn extract_reference(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let rest = &body[len..];
    if braced {
        return rest.strip_prefix('}').map(|after| (name, after));
    }
    Some((name, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    fn find(p: &str, text: &str) -> Option<(usize, usize)> {
        Pattern::compile(p).expect("compiles").find(&chars(text), 0)
    }

    fn anchored(p: &str, text: &str, longest: bool) -> Option<usize> {
        Pattern::compile(p)
            .expect("compiles")
            .anchored_end(&chars(text), longest)
    }

    #[test]
    fn compile_errors() {
        assert_eq!(
            Pattern::compile("a\\x"),
            Err("invalid escape '\\x'".to_string())
        );
        assert!(Pattern::compile("\\").is_err());
        assert!(Pattern::compile("\\\\\\").is_err());
        assert!(Pattern::compile("\\*\\?\\\\\\}\\/").is_ok());
    }

    #[test]
    fn anchored_shortest_and_longest() {
        assert_eq!(anchored("*/", "usr/local/bin", false), Some(4));
        assert_eq!(anchored("*/", "usr/local/bin", true), Some(10));
        assert_eq!(anchored("x", "usr", true), None);
        assert_eq!(anchored("", "abc", true), Some(0));
        assert_eq!(anchored("*", "abc", true), Some(3));
        assert_eq!(anchored("*", "abc", false), Some(0));
        assert_eq!(anchored("?b", "abc", false), Some(2));
        // Stars and `?` stop at a newline.
        assert_eq!(anchored("*", "ab\ncd", true), Some(2));
        assert_eq!(anchored("a?c", "a\nc", true), None);
        assert_eq!(anchored("a\nc", "a\nc", true), Some(3));
    }

    #[test]
    fn find_is_leftmost_longest() {
        assert_eq!(find("b*d", "abcdbd"), Some((1, 6)));
        assert_eq!(find("o", "foo"), Some((1, 2)));
        assert_eq!(find("", "foo"), Some((0, 0)));
        assert_eq!(find("z", "foo"), None);
        assert_eq!(find("*", "ab\ncd"), Some((0, 2)));
        assert_eq!(find("b*", "ab\ncd"), Some((1, 2)));
    }

    #[test]
    fn many_stars_stay_fast() {
        let text: String = "a".repeat(20_000);
        let pattern = format!("{}b", "a*".repeat(2_000));
        assert_eq!(find(&pattern, &text), None);
    }

    #[test]
    fn reverse_keeps_escape_pairs() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("\\\\b"), "b\\\\");
        assert_eq!(reverse_pattern("x\\}y"), "y\\}x");
    }

    #[test]
    fn templates() {
        let m = chars("MID");
        let mut out = String::new();
        expand_template(&mut out, "<$0|${0}|$$|$1|$x|${x|$|$}>", &m);
        assert_eq!(out, "<MID|MID|$|||${x|$|$}>");
    }

    /// Go's leftmost-first backtracking order: greedy stars try the longest run first, lazy
    /// ones the shortest. Exponential, for tiny inputs only.
    fn backtrack(toks: &[Tok], text: &[char], pos: usize, greedy: bool) -> Option<usize> {
        let Some((tok, rest)) = toks.split_first() else {
            return Some(pos);
        };
        match tok {
            Tok::Lit(c) => (text.get(pos) == Some(c))
                .then(|| backtrack(rest, text, pos + 1, greedy))
                .flatten(),
            Tok::Any => (text.get(pos).is_some_and(|&c| c != '\n'))
                .then(|| backtrack(rest, text, pos + 1, greedy))
                .flatten(),
            Tok::Star => {
                let run = text[pos..].iter().take_while(|&&c| c != '\n').count();
                let mut lens: Vec<usize> = (0..=run).collect();
                if greedy {
                    lens.reverse();
                }
                lens.into_iter()
                    .find_map(|len| backtrack(rest, text, pos + len, greedy))
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_backtracking(p in "[ab*?\n]{0,7}", t in "[ab\n]{0,10}") {
            let pattern = Pattern::compile(&p).expect("no escapes");
            let text = chars(&t);
            for greedy in [true, false] {
                proptest::prop_assert_eq!(
                    pattern.anchored_end(&text, greedy),
                    backtrack(&pattern.toks, &text, 0, greedy)
                );
            }
            for from in 0..=text.len() {
                let expected = (from..=text.len())
                    .find_map(|s| backtrack(&pattern.toks, &text, s, true).map(|e| (s, e)));
                proptest::prop_assert_eq!(pattern.find(&text, from), expected);
            }
        }
    }
}
