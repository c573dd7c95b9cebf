//! The JSON (exec) form, decoded as Go's `json.Unmarshal` into `[]any` does.
//!
//! The scanner is iterative and enforces Go's nesting limit (10,000), so `[[[[...` of any
//! depth fails cleanly. The whole text is validated first, as Go does: any syntax error means
//! "not JSON" (the caller falls back to the shell form), while valid JSON whose top-level array
//! holds something other than strings is an error.

/// Go's `maxNestingDepth` in `encoding/json`.
const MAX_DEPTH: usize = 10_000;

/// The outcome of reading an argument string as a JSON array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JsonArray {
    /// A valid array of strings.
    Strings(Vec<String>),
    /// Valid JSON, but not an array of strings only.
    NotStrings,
    /// Not valid JSON (or not an array at all).
    Invalid,
}

/// Parses `text` (already trimmed on the left) as a JSON array of strings.
pub(super) fn parse_array(text: &str) -> JsonArray {
    if !text.starts_with('[') {
        return JsonArray::Invalid;
    }
    let mut s = Scanner {
        b: text.as_bytes(),
        pos: 0,
    };
    match s.document() {
        Some((strings, true)) => JsonArray::Strings(strings),
        Some((_, false)) => JsonArray::NotStrings,
        None => JsonArray::Invalid,
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The whole document: returns the top-level strings and whether all elements were
    /// strings, or `None` when the text is not valid JSON.
    fn document(&mut self) -> Option<(Vec<String>, bool)> {
        // `stack` holds b'[' or b'{' for each open container.
        let mut stack: Vec<u8> = Vec::new();
        let mut strings = Vec::new();
        let mut all_strings = true;
        self.skip_ws();
        // Expecting a value at the start.
        let mut want_value = true;
        loop {
            self.skip_ws();
            if want_value {
                let top_level_elem = stack.len() == 1;
                match self.peek()? {
                    b'[' | b'{' => {
                        let open = self.b[self.pos];
                        self.pos += 1;
                        if top_level_elem {
                            all_strings = false;
                        }
                        stack.push(open);
                        if stack.len() > MAX_DEPTH {
                            return None;
                        }
                        self.skip_ws();
                        let close = if open == b'[' { b']' } else { b'}' };
                        if self.peek() == Some(close) {
                            self.pos += 1;
                            stack.pop();
                            want_value = false;
                        } else if open == b'{' {
                            self.member_key()?;
                        }
                        if stack.is_empty() {
                            break;
                        }
                        continue;
                    }
                    b'"' => {
                        let s = self.string()?;
                        if top_level_elem {
                            strings.push(s);
                        }
                    }
                    _ => {
                        self.scalar()?;
                        if top_level_elem {
                            all_strings = false;
                        }
                    }
                }
                want_value = false;
                if stack.is_empty() {
                    break;
                }
                continue;
            }
            // After a value inside a container: `,` or the closing bracket.
            let top = *stack.last()?;
            match (top, self.peek()?) {
                (_, b',') => {
                    self.pos += 1;
                    if top == b'{' {
                        self.skip_ws();
                        self.member_key()?;
                    }
                    want_value = true;
                }
                (b'[', b']') | (b'{', b'}') => {
                    self.pos += 1;
                    stack.pop();
                    if stack.is_empty() {
                        break;
                    }
                }
                _ => return None,
            }
        }
        self.skip_ws();
        if self.pos != self.b.len() {
            return None;
        }
        Some((strings, all_strings))
    }

    /// `"key"` and `:` of an object member.
    fn member_key(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.skip_ws();
        if self.peek()? != b':' {
            return None;
        }
        self.pos += 1;
        Some(())
    }

    /// `true`, `false`, `null` or a number.
    fn scalar(&mut self) -> Option<()> {
        for lit in [&b"true"[..], b"false", b"null"] {
            if self.b[self.pos..].starts_with(lit) {
                self.pos += lit.len();
                return Some(());
            }
        }
        self.number()
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.pos..self.pos + 4)?;
        let s = std::str::from_utf8(h).ok()?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(s, 16).ok()
    }

    /// A string literal, decoded like Go (a lone surrogate becomes U+FFFD).
    fn string(&mut self) -> Option<String> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Only ASCII bytes stop the loop, so this slice is on character boundaries.
            out.push_str(std::str::from_utf8(&self.b[start..self.pos]).ok()?);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let e = self.peek()?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\x08'),
                        b'f' => out.push('\x0c'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => self.unicode_escape(&mut out)?,
                        _ => return None,
                    }
                }
                _ => return None, // control character
            }
        }
    }

    fn unicode_escape(&mut self, out: &mut String) -> Option<()> {
        let first = self.hex4()?;
        if (0xd800..0xdc00).contains(&first) && self.b[self.pos..].starts_with(b"\\u") {
            let save = self.pos;
            self.pos += 2;
            if let Some(second) = self.hex4()
                && (0xdc00..0xe000).contains(&second)
            {
                let c = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
                out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                return Some(());
            }
            self.pos = save;
        }
        out.push(char::from_u32(first).unwrap_or('\u{fffd}'));
        Some(())
    }
}
