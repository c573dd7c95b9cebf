//! Unit tests for word expansion, on inputs of our own.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;

const ENV: [(&str, &str); 5] = [
    ("HOME", "/root"),
    ("EMPTY", ""),
    ("PATH_LIST", "/usr/local/bin:/usr/bin:/bin"),
    ("FILE", "archive.tar.gz"),
    ("SPACED", "  one   two  "),
];

fn word(input: &str) -> Result<String, ExpandError> {
    Lexer::new('\\').process_word(input, &ENV)
}

fn ok(input: &str) -> String {
    word(input).unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

fn words(input: &str) -> Vec<String> {
    Lexer::new('\\')
        .process_words(input, &ENV)
        .unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

#[test]
fn plain_variables() {
    assert_eq!(ok("$HOME/bin"), "/root/bin");
    assert_eq!(ok("${HOME}bin"), "/rootbin");
    assert_eq!(ok("a$MISSING-b"), "a-b");
    assert_eq!(ok("cost: $"), "cost: $");
    assert_eq!(ok("$-x$@y$#z"), "xyz");
    assert_eq!(ok("$12ab"), "ab");
    assert_eq!(ok("$HOME_x"), "");
}

#[test]
fn quotes_and_escapes() {
    assert_eq!(ok("'$HOME' \"$HOME\""), "$HOME /root");
    assert_eq!(ok(r#""a\"b\$c\\d\e""#), r#"a"b$c\d\e"#);
    assert_eq!(ok(r"\$HOME\ x\\"), r"$HOME x\");
    assert_eq!(ok("trailing\\"), "trailing");
    assert_eq!(ok("'it''s'"), "its");
    assert_eq!(ok("$'x'"), "$x");
}

#[test]
fn backtick_escape() {
    let lex = Lexer::new('`');
    assert_eq!(
        lex.process_word(r"C:\dir\`$HOME", &ENV),
        Ok(r"C:\dir\$HOME".into())
    );
    assert_eq!(lex.process_word("\"a`\"b\"", &ENV), Ok("a\"b".into()));
    // The pattern escape is always a backslash.
    assert_eq!(
        lex.process_word(r"${FILE%\*}", &ENV),
        Ok("archive.tar.gz".into())
    );
}

#[test]
fn default_and_alternative() {
    assert_eq!(
        ok("${EMPTY:-d} ${EMPTY-d} ${NOPE-d} ${HOME:-d}"),
        "d  d /root"
    );
    assert_eq!(ok("${EMPTY:+a}|${EMPTY+a}|${NOPE+a}|${HOME:+a}"), "|a||a");
    assert_eq!(ok("${NOPE:-${ALSO:-$HOME}}"), "/root");
    assert_eq!(ok("${NOPE:-a}}"), "a}");
    assert_eq!(ok("${NOPE:-'}'}"), "}");
    assert_eq!(ok("${NOPE:-\\}}"), "}");
}

#[test]
fn required_variables() {
    assert_eq!(ok("${HOME:?x}"), "/root");
    assert_eq!(ok("${EMPTY?x}"), "");
    let err = word("${EMPTY:?must be set}").expect_err("empty");
    assert_eq!(
        err.to_string(),
        r#"failed to process "${EMPTY:?must be set}": EMPTY: must be set"#
    );
    assert_eq!(
        word("${NOPE?}").map_err(|e| e.to_string()),
        Err(r#"failed to process "${NOPE?}": NOPE: is not allowed to be unset"#.into())
    );
    assert_eq!(
        word("${EMPTY:?}").map_err(|e| e.to_string()),
        Err(r#"failed to process "${EMPTY:?}": EMPTY: is not allowed to be empty"#.into())
    );
}

#[test]
fn prefix_and_suffix_removal() {
    assert_eq!(ok("${FILE#*.}"), "tar.gz");
    assert_eq!(ok("${FILE##*.}"), "gz");
    assert_eq!(ok("${FILE%.*}"), "archive.tar");
    assert_eq!(ok("${FILE%%.*}"), "archive");
    assert_eq!(ok("${FILE#nomatch}"), "archive.tar.gz");
    assert_eq!(ok("${PATH_LIST##*:}"), "/bin");
    assert_eq!(ok("${PATH_LIST%%:*}"), "/usr/local/bin");
    assert_eq!(ok("${FILE#a?c}"), "hive.tar.gz");
    assert_eq!(ok("${NOPE%%x}"), "");
}

#[test]
fn replacement() {
    assert_eq!(ok("${PATH_LIST/:/;}"), "/usr/local/bin;/usr/bin:/bin");
    assert_eq!(ok("${PATH_LIST//:/;}"), "/usr/local/bin;/usr/bin;/bin");
    assert_eq!(ok("${PATH_LIST//\\/usr/}"), "/local/bin:/bin:/bin");
    assert_eq!(ok("${FILE/.*/}"), "archive");
    assert_eq!(ok("${FILE//a/<$HOME>}"), "</root>rchive.t</root>r.gz");
    // Go's ReplaceAllString template: `$0` is the match (escaped so the lexer keeps the `$`).
    assert_eq!(ok("${FILE//tar/[\\$0]}"), r"archive.[\tar].gz");
    // Empty pattern: an insertion at the start, or between every character.
    assert_eq!(ok("${HOME/$EMPTY/>}"), ">/root");
    assert_eq!(ok("${HOME//$EMPTY/.}"), "./.r.o.o.t.");
}

#[test]
fn stars_do_not_cross_newlines() {
    let env = [("V", "one\ntwo")];
    let lex = Lexer::new('\\');
    assert_eq!(lex.process_word("${V#*o}", &env), Ok("ne\ntwo".into()));
    assert_eq!(lex.process_word("${V##*o}", &env), Ok("ne\ntwo".into()));
    assert_eq!(lex.process_word("${V%%o*}", &env), Ok("one\ntw".into()));
    assert_eq!(lex.process_word("${V//?/x}", &env), Ok("xxx\nxxx".into()));
}

#[test]
fn word_splitting() {
    assert_eq!(words("a  b\tc"), ["a", "b", "c"]);
    assert_eq!(words("x$SPACED'y'"), ["x", "one", "two", "y"]);
    assert_eq!(words("\"$SPACED\""), ["  one   two  "]);
    assert_eq!(words(r"a\ b 'c d'"), ["a b", "c d"]);
    assert_eq!(words("\"\" ''"), Vec::<String>::new());
    assert_eq!(words("a\"\"b"), ["ab"]);
    assert_eq!(words("   "), Vec::<String>::new());
}

#[test]
fn syntax_errors() {
    let cases = [
        ("${}", "syntax error: bad substitution"),
        ("x${:-a}", "syntax error: bad substitution"),
        ("${{a}}", "syntax error: bad substitution"),
        ("${", "syntax error: missing '}'"),
        ("${HOME", "syntax error: missing '}'"),
        ("${HOME:-x", "syntax error: missing '}'"),
        ("${HOME/x", "syntax error: missing '/' in ${}"),
        ("${HOME/x/y", "syntax error: missing '}'"),
        (
            "'open",
            "unexpected end of statement while looking for matching single-quote",
        ),
        (
            "\"open",
            "unexpected end of statement while looking for matching double-quote",
        ),
        ("${HOME:=x}", "unsupported modifier (:=) in substitution"),
        ("${HOME=x}", "unsupported modifier (=) in substitution"),
        ("${HOME:#x}", "unsupported modifier (:#) in substitution"),
        ("${HOME:%x", "unsupported modifier (:%) in substitution"),
        ("${HOME.}", "unsupported modifier (.) in substitution"),
        (
            "${HOME#\\x}",
            "invalid pattern (\\x) in substitution: invalid escape '\\x'",
        ),
        ("${NOPE:-${}}", "syntax error: bad substitution"),
    ];
    for (input, reason) in cases {
        let err = word(input).expect_err(input);
        assert_eq!(
            err.to_string(),
            format!(
                "failed to process {}: {reason}",
                crate::goquote::quote(input)
            ),
            "{input}"
        );
        assert_eq!(err.word(), input);
    }
}

#[test]
fn matched_and_unmatched_names() {
    let env: HashMap<String, String> = [("A", "1"), ("B", "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let got = Lexer::default()
        .process_word_with_matches("$A ${B:-x} ${C+y} '$D' \\$E ${F#*}", &env)
        .expect("expands");
    assert_eq!(got.result, "1 x  $D $E ");
    assert_eq!(got.matched.into_iter().collect::<Vec<_>>(), ["A", "B"]);
    assert_eq!(got.unmatched.into_iter().collect::<Vec<_>>(), ["C", "F"]);
}

#[test]
fn env_impls_last_wins() {
    let pairs = vec![
        ("A".to_string(), "1".to_string()),
        ("A".to_string(), "2".to_string()),
    ];
    assert_eq!(Lexer::default().process_word("$A", &pairs), Ok("2".into()));
    let tree: BTreeMap<String, String> = [("a".to_string(), "lower".to_string())].into();
    assert_eq!(
        Lexer::default().process_word("$a$A", &tree),
        Ok("lower".into())
    );
    let slice: &[(&str, &str)] = &[("X", "1"), ("X", "3")];
    assert_eq!(Lexer::default().process_word("$X", &slice), Ok("3".into()));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = 100_000;
    let input = format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
    let err = word(&input).expect_err("too deep");
    assert!(matches!(err, ExpandError::TooDeep { .. }), "{err:?}");
    assert!(err.to_string().ends_with("expansion nested too deeply"));
    let fine = format!("{}x{}", "${a:-".repeat(50), "}".repeat(50));
    assert_eq!(word(&fine), Ok("x".into()));
}

#[test]
fn large_inputs_are_fast() {
    let value = "ab".repeat(50_000);
    let env = [("V", value.as_str())];
    let lex = Lexer::default();
    let got = lex.process_word("${V//a*b/x}", &env).expect("expands");
    assert_eq!(got, "x");
    let got = lex.process_word("${V//b/}", &env).expect("expands");
    assert_eq!(got.len(), 50_000);
    let pattern = "?*".repeat(5_000);
    let got = lex
        .process_word(&format!("${{V%%{pattern}c}}"), &env)
        .expect("expands");
    assert_eq!(got.len(), 100_000);
}

proptest! {
    #[test]
    fn never_panics(input in "[$\\\\{}:?#%/*'\"a-c ` -]{0,40}") {
        let _ = Lexer::new('\\').process_word(&input, &ENV);
        let _ = Lexer::new('`').process_words(&input, &ENV);
    }

    #[test]
    fn plain_text_is_unchanged(input in "[a-zA-Z0-9_./:+=-]{0,40}") {
        prop_assert_eq!(word(&input), Ok(input.clone()));
    }
}

// Regression: a 100,000-deep `${a:-${a:-...}}` word used to be quoted whole in its error
// message (half a megabyte of text); messages now show at most 200 characters of the word.
#[test]
fn error_messages_cut_long_words() {
    let word = "${a:-".repeat(100_000);
    let err = Lexer::new('\\')
        .process_word(&word, &Vec::<(String, String)>::new())
        .expect_err("nested too deeply");
    let msg = err.to_string();
    assert!(msg.len() < 400, "{} bytes", msg.len());
    assert!(msg.contains("...\""), "{msg}");
}

#[test]
fn raw_lexer_keeps_quotes_escapes_and_unset_variables() {
    let none: [(&str, &str); 0] = [];
    let raw = Lexer::raw('\\');
    let got = raw
        .process_words(r#"cat <<"EOF" 'a b' c\ d $UNSET ${UNSET:-x} ${U?}"#, &none)
        .expect("lexes");
    assert_eq!(
        got,
        [
            "cat",
            r#"<<"EOF""#,
            "'a b'",
            r"c\ d",
            "$UNSET",
            "${UNSET:-x}",
            "${U?}"
        ]
    );
    // A set variable still expands.
    let env = [("SET", "v")];
    assert_eq!(raw.process_word("${SET}-$SET", &env).expect("ok"), "v-v");
}

#[test]
fn heredoc_lexer_leaves_quotes_alone() {
    let env = [("NAME", "world")];
    let body = "echo \"hello $NAME\" 'it''s' \\$NAME\n";
    let got = Lexer::heredoc().process_word(body, &env).expect("ok");
    assert_eq!(got, "echo \"hello world\" 'it''s' $NAME\n");
    // An unbalanced quote is text, not an error.
    assert_eq!(
        Lexer::heredoc().process_word("don't", &env).expect("ok"),
        "don't"
    );
}
