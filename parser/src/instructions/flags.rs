//! Instruction flags with BuildKit's `BFlags` semantics.
//!
//! Each instruction declares the flags it accepts ([`FlagSpec`]); [`parse_flags`] then reads the
//! raw words (`--from=build`, `--link`) in order:
//!
//! - a word that does not start with `--` is an error; a bare `--` ends the flags;
//! - `--name=value` splits at the first `=`;
//! - an undeclared name is an error naming the flag and the instruction;
//! - a bool flag accepts `--flag` (true), `--flag=true|false` (any case) and rejects `--flag=`;
//! - a string flag requires `=` (an empty value after `=` is allowed);
//! - a string-slice flag requires `=` and may repeat; any other flag may appear once.

use std::collections::BTreeMap;

use super::suggest::did_you_mean;

/// The type of a declared flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--link`, `--link=false`.
    Bool,
    /// `--from=build`; at most once.
    String,
    /// `--mount=...`; repeatable, values kept in order.
    Strings,
}

/// One declared flag: its name without the leading `--` and its type.
pub(crate) type FlagSpec = (&'static str, FlagKind);

/// The value a flag was given.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FlagValue {
    Bool(bool),
    String(String),
    Strings(Vec<String>),
}

/// The flags of one instruction after parsing; only flags that were used are present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ParsedFlags {
    used: BTreeMap<&'static str, FlagValue>,
}

impl ParsedFlags {
    /// The value of a string flag, `None` when not given.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        match self.used.get(name) {
            Some(FlagValue::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The value of a bool flag, `None` when not given.
    pub(crate) fn bool_opt(&self, name: &str) -> Option<bool> {
        match self.used.get(name) {
            Some(FlagValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The value of a bool flag, false when not given.
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.bool_opt(name).unwrap_or(false)
    }

    /// All values of a string-slice flag, in order.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        match self.used.get(name) {
            Some(FlagValue::Strings(v)) => v.clone(),
            _ => Vec::new(),
        }
    }
}

/// Parses `raw` flag words against the flags `instruction` (upper-case keyword) declares.
///
/// Returns the error message on failure; the caller attaches the location.
pub(crate) fn parse_flags(
    instruction: &str,
    raw: &[String],
    specs: &[FlagSpec],
) -> Result<ParsedFlags, String> {
    let mut parsed = ParsedFlags::default();
    for word in raw {
        let Some(body) = word.strip_prefix("--") else {
            return Err(format!("{instruction}: flag should start with --: {word}"));
        };
        if body.is_empty() {
            break;
        }
        let (name, value) = match body.find('=') {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let Some(&(spec_name, kind)) = specs.iter().find(|(n, _)| *n == name) else {
            return Err(unknown_flag(instruction, name, specs));
        };
        let previous = parsed.used.get(spec_name);
        if previous.is_some() && kind != FlagKind::Strings {
            return Err(format!(
                "duplicate flag specified: --{name} (on {instruction})"
            ));
        }
        let new_value = flag_value(instruction, name, kind, value, previous)?;
        parsed.used.insert(spec_name, new_value);
    }
    Ok(parsed)
}

/// Reads one occurrence of a declared flag.
fn flag_value(
    instruction: &str,
    name: &str,
    kind: FlagKind,
    value: Option<&str>,
    previous: Option<&FlagValue>,
) -> Result<FlagValue, String> {
    let missing = || format!("missing a value on flag --{name} (on {instruction})");
    match kind {
        FlagKind::Bool => match value {
            None => Ok(FlagValue::Bool(true)),
            Some("") => Err(missing()),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(FlagValue::Bool(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(FlagValue::Bool(false)),
            Some(v) => Err(format!(
                "expecting boolean value for flag --{name} (on {instruction}), not: {v}"
            )),
        },
        FlagKind::String => value
            .map(|v| FlagValue::String(v.to_string()))
            .ok_or_else(missing),
        FlagKind::Strings => {
            let v = value.ok_or_else(missing)?;
            let mut all = match previous {
                Some(FlagValue::Strings(old)) => old.clone(),
                _ => Vec::new(),
            };
            all.push(v.to_string());
            Ok(FlagValue::Strings(all))
        }
    }
}

/// The message for an undeclared flag, with the accepted ones and a suggestion.
fn unknown_flag(instruction: &str, name: &str, specs: &[FlagSpec]) -> String {
    let mut msg = format!("unknown flag --{name} for {instruction}");
    let names: Vec<&str> = specs.iter().map(|(n, _)| *n).collect();
    if let Some(best) = did_you_mean(name, &names) {
        msg.push_str(&format!(" (did you mean --{best}?)"));
    } else if names.is_empty() {
        msg.push_str(&format!(" ({instruction} takes no flags)"));
    } else {
        let list: Vec<String> = names.iter().map(|n| format!("--{n}")).collect();
        msg.push_str(&format!(" (accepted: {})", list.join(", ")));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[FlagSpec] = &[
        ("from", FlagKind::String),
        ("link", FlagKind::Bool),
        ("exclude", FlagKind::Strings),
    ];

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    fn parse(w: &[&str]) -> Result<ParsedFlags, String> {
        parse_flags("COPY", &words(w), SPECS)
    }

    #[test]
    fn string_flag_with_value() {
        let f = parse(&["--from=build"]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("build"));
        assert_eq!(f.string("chown"), None);
    }

    #[test]
    fn string_flag_empty_value_is_allowed() {
        let f = parse(&["--from="]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some(""));
    }

    #[test]
    fn string_flag_value_keeps_later_equals() {
        let f = parse(&["--from=a=b"]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a=b"));
    }

    #[test]
    fn string_flag_without_value_is_an_error() {
        let e = parse(&["--from"]).unwrap_err();
        assert!(e.contains("missing a value on flag --from"), "{e}");
        assert!(e.contains("COPY"), "{e}");
    }

    #[test]
    fn bool_flag_forms() {
        assert!(parse(&["--link"]).unwrap().bool("link"));
        assert!(parse(&["--link=true"]).unwrap().bool("link"));
        assert!(parse(&["--link=TRUE"]).unwrap().bool("link"));
        assert!(!parse(&["--link=false"]).unwrap().bool("link"));
        assert_eq!(
            parse(&["--link=False"]).unwrap().bool_opt("link"),
            Some(false)
        );
        assert_eq!(parse(&[]).unwrap().bool_opt("link"), None);
        assert!(!parse(&[]).unwrap().bool("link"));
    }

    #[test]
    fn bool_flag_empty_value_is_an_error() {
        let e = parse(&["--link="]).unwrap_err();
        assert!(e.contains("missing a value on flag --link"), "{e}");
    }

    #[test]
    fn bool_flag_bad_value_is_an_error() {
        let e = parse(&["--link=yes"]).unwrap_err();
        assert!(e.contains("expecting boolean value for flag --link"), "{e}");
        assert!(e.contains("yes"), "{e}");
    }

    #[test]
    fn strings_flag_repeats_in_order() {
        let f = parse(&["--exclude=a", "--exclude=b"]).unwrap();
        assert_eq!(f.strings("exclude"), vec!["a", "b"]);
        assert!(parse(&[]).unwrap().strings("exclude").is_empty());
    }

    #[test]
    fn strings_flag_without_value_is_an_error() {
        let e = parse(&["--exclude"]).unwrap_err();
        assert!(e.contains("missing a value on flag --exclude"), "{e}");
    }

    #[test]
    fn duplicate_single_flags_are_errors() {
        let e = parse(&["--from=a", "--from=b"]).unwrap_err();
        assert!(e.contains("duplicate flag specified: --from"), "{e}");
        let e = parse(&["--link", "--link=false"]).unwrap_err();
        assert!(e.contains("duplicate flag specified: --link"), "{e}");
    }

    #[test]
    fn unknown_flag_names_flag_and_instruction() {
        let e = parse(&["--frmo=x"]).unwrap_err();
        assert!(e.contains("unknown flag --frmo for COPY"), "{e}");
        assert!(e.contains("did you mean --from?"), "{e}");
        let e = parse(&["--zzzzzzzz"]).unwrap_err();
        assert!(e.contains("accepted: --from, --link, --exclude"), "{e}");
    }

    #[test]
    fn unknown_flag_on_flagless_instruction() {
        let e = parse_flags("USER", &words(&["--x=1"]), &[]).unwrap_err();
        assert_eq!(e, "unknown flag --x for USER (USER takes no flags)");
    }

    #[test]
    fn flags_are_case_sensitive() {
        assert!(parse(&["--FROM=x"]).is_err());
    }

    #[test]
    fn word_without_dashes_is_an_error() {
        let e = parse(&["-from=x"]).unwrap_err();
        assert!(e.contains("flag should start with --: -from=x"), "{e}");
    }

    #[test]
    fn double_dash_ends_flags() {
        let f = parse(&["--link", "--", "--bogus"]).unwrap();
        assert!(f.bool("link"));
    }
}
