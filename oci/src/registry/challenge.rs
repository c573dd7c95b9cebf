//! `WWW-Authenticate` challenges (RFC 7235 §4.1), as registries send them with a 401:
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="..."` or
//! `Basic realm="Registry Realm"`. Parameter values are tokens or quoted strings with `\`
//! escapes; several challenges may share one header, separated by commas.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// The parameters, names lowercased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/".contains(c)
}

/// A cursor over the header value.
struct Cursor<'a> {
    s: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        self.s = self.s.trim_start_matches([' ', '\t']);
    }

    fn token(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let mut end = self
            .s
            .find(|c: char| !is_token_char(c))
            .unwrap_or(self.s.len());
        // token68 padding: '='s that end the value (followed by nothing or a comma), unlike the
        // '=' between a parameter's name and value.
        let rest = &self.s[end..];
        let eqs = rest.len() - rest.trim_start_matches('=').len();
        let after = rest[eqs..].trim_start();
        if eqs > 0 && (after.is_empty() || after.starts_with(',')) {
            end += eqs;
        }
        let t = &self.s[..end];
        if t.is_empty() {
            return None;
        }
        self.s = &self.s[t.len()..];
        Some(t)
    }

    fn quoted(&mut self) -> Option<String> {
        let rest = self.s.strip_prefix('"')?;
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                '"' => {
                    self.s = &rest[i + 1..];
                    return Some(out);
                }
                c => out.push(c),
            }
        }
        None
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        match self.s.strip_prefix(c) {
            Some(r) => {
                self.s = r;
                true
            }
            None => false,
        }
    }
}

/// Parses a `WWW-Authenticate` value into its challenges; malformed parts end the parse (what
/// was parsed until then is returned).
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut cur = Cursor { s: header };
    loop {
        while cur.eat(',') {}
        let Some(scheme) = cur.token() else {
            return out;
        };
        let mut ch = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        // Parameters: name=value pairs separated by commas, until the next scheme.
        loop {
            let save = cur.s;
            while cur.eat(',') {}
            let Some(name) = cur.token() else {
                break;
            };
            if !cur.eat('=') {
                // The next challenge's scheme.
                cur.s = save;
                break;
            }
            cur.skip_ws();
            let value = if cur.s.starts_with('"') {
                match cur.quoted() {
                    Some(v) => v,
                    None => {
                        out.push(ch);
                        return out;
                    }
                }
            } else {
                cur.token().unwrap_or_default().to_string()
            };
            ch.params.insert(name.to_ascii_lowercase(), value);
        }
        // Each round consumed at least the scheme token: the loop ends.
        out.push(ch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn basic_and_escapes() {
        let c = parse(r#"Basic realm="a \"quoted\" realm", charset=UTF-8"#);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
        assert_eq!(c[0].param("charset"), Some("UTF-8"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [
            "",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            ",,,",
            "Bearer ,=,",
            "é=é",
        ] {
            let _ = parse(s);
        }
    }
}
