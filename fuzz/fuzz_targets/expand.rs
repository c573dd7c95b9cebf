//! Fuzz target: arbitrary text through the word expander (`Lexer::process_word` and
//! `Lexer::process_words`). The first byte picks the escape character; the rest is the word.
//!
//! Besides "never panic", it checks that both entry points agree on whether the word is
//! well-formed.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use strata_parser::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(word) = std::str::from_utf8(rest) else {
        return;
    };
    let escape = if first & 1 == 0 { '\\' } else { '`' };
    let env: HashMap<String, String> = HashMap::from([
        ("a".to_string(), "hello world".to_string()),
        ("b".to_string(), String::new()),
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
    ]);
    let lexer = Lexer::new(escape);
    let one = lexer.process_word(word, &env);
    let many = lexer.process_words(word, &env);
    assert_eq!(one.is_ok(), many.is_ok(), "{one:?} vs {many:?}");
});
