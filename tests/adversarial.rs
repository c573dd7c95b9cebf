//! Adversarial inputs for the parser: binary garbage, invalid UTF-8, NUL bytes, huge lines,
//! huge continuation chains, deep nesting, thousands of stages, heredoc floods and flag floods.
//!
//! Every input is built in memory. Each test asserts the *outcome* (a value, or a clean
//! [`Error`] with a sensible location) and never a time. The tests run on the default test
//! thread stack (2 MiB): the parser must not need a bigger one, so a recursion that grows with
//! the input shows up here as a stack overflow.

use std::collections::HashMap;

use strata_parser::shell::Lexer;
use strata_parser::{Error, RawDockerfile, parse, parse_bytes, parse_dockerfile};

/// Linear congruential generator (Knuth's MMIX constants): reproducible "random" bytes without
/// a dependency.
struct Lcg(u64);

impl Lcg {
    fn next_byte(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 56) as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_byte()).collect()
    }
}

/// The number of lines an error location may point at: every `\n` starts a new line.
fn line_count(src: &[u8]) -> usize {
    src.iter().filter(|&&b| b == b'\n').count() + 1
}

/// Asserts that an error points inside the input (1-based line and column, a line that exists).
fn assert_clean_error(err: &Error, src: &[u8], what: &str) {
    let loc = err.location();
    assert!(loc.line >= 1, "{what}: line 0 in {err}");
    assert!(loc.col >= 1, "{what}: column 0 in {err}");
    assert!(loc.len >= 1, "{what}: empty caret in {err}");
    let lines = line_count(src);
    assert!(
        loc.line <= lines,
        "{what}: error on line {} of a {lines}-line input: {err}",
        loc.line
    );
    assert!(!err.message().is_empty(), "{what}: empty message");
}

/// Asserts a clean outcome of the raw layer on bytes: Ok, or an error inside the input.
fn assert_clean_raw(src: &[u8], what: &str) -> Option<RawDockerfile> {
    match parse_bytes(src) {
        Ok(raw) => {
            // Dumping must not panic either, and must be deterministic.
            assert_eq!(raw.dump(), raw.dump(), "{what}: dump not deterministic");
            Some(raw)
        }
        Err(err) => {
            assert_clean_error(&err, src, what);
            None
        }
    }
}

/// Asserts a clean outcome of the typed layer.
fn assert_clean_typed(src: &str, what: &str) {
    if let Err(err) = parse_dockerfile(src) {
        assert_clean_error(&err, src.as_bytes(), what);
    }
}

/// The one node of a raw parse that must hold exactly one instruction.
fn single_node(raw: &RawDockerfile) -> &strata_parser::Node {
    assert_eq!(raw.nodes.len(), 1, "expected one node");
    &raw.nodes[0]
}

#[test]
fn binary_garbage_is_clean() {
    let mut rng = Lcg(0x5EED_0F57_4A7A);
    for size in [0usize, 1, 7, 64, 1024, 65_536, 1 << 20] {
        let bytes = rng.bytes(size);
        assert_clean_raw(&bytes, &format!("{size} random bytes"));
        let lossy = String::from_utf8_lossy(&bytes);
        assert_clean_typed(&lossy, &format!("{size} random bytes, lossy"));
    }
}

#[test]
fn binary_garbage_after_a_valid_prefix_is_clean() {
    let mut rng = Lcg(42);
    for i in 0..64 {
        let mut src = b"FROM scratch\nRUN echo ".to_vec();
        src.extend(rng.bytes(256 + i * 97));
        assert_clean_raw(&src, &format!("prefix + garbage #{i}"));
    }
}

/// Invalid UTF-8 at a known place: a syntax error at that line and character column.
#[test]
fn invalid_utf8_reports_line_and_column() {
    let cases: [(&[u8], usize, usize); 6] = [
        (b"\xff", 1, 1),
        (b"FROM scratch\nRUN echo \xff\n", 2, 10),
        // Columns count characters: `é` is one column although it is two bytes.
        (b"FROM scratch\nRUN \xc3\xa9\xc3\xa9 \xc3\x28\n", 2, 8),
        // A truncated sequence at the very end of the file.
        (b"FROM scratch\n\xe2\x82", 2, 1),
        // An overlong encoding of `/` is invalid too.
        (b"FROM a\n\nCOPY x \xc0\xaf\n", 3, 8),
        // A lone continuation byte on a continuation line.
        (b"RUN a \\\n  b \x80 c\n", 2, 5),
    ];
    for (src, line, col) in cases {
        let what = format!("{:?}", String::from_utf8_lossy(src));
        match parse_bytes(src) {
            Ok(raw) => panic!("{what}: invalid UTF-8 accepted: {}", raw.dump()),
            Err(err) => {
                assert!(matches!(err, Error::Syntax { .. }), "{what}: {err:?}");
                let loc = err.location();
                assert_eq!((loc.line, loc.col), (line, col), "{what}: {err}");
            }
        }
    }
}

#[test]
fn nul_bytes_are_clean() {
    let inputs: [&[u8]; 6] = [
        b"\0",
        b"\0\0\0\n\0",
        b"FROM scratch\0\nRUN echo \0\0\0\n",
        b"FROM \0 AS \0\n",
        b"RUN [\"a\0\", \"\0\"]\n",
        b"ENV a\0=b\0 c=\0\n",
    ];
    for src in inputs {
        let what = format!("{src:?}");
        assert_clean_raw(src, &what);
        if let Ok(s) = std::str::from_utf8(src) {
            assert_clean_typed(s, &what);
        }
    }
    let mut big = b"RUN echo ".to_vec();
    big.extend(std::iter::repeat_n(0u8, 1 << 20));
    assert_clean_raw(&big, "1 MiB of NUL");
}

#[test]
fn ten_megabyte_single_line() {
    const N: usize = 10 * 1024 * 1024;
    let mut src = String::with_capacity(N + 32);
    src.push_str("FROM scratch\nRUN echo ");
    src.extend(std::iter::repeat_n('a', N));
    src.push('\n');
    let raw = parse(&src).expect("a long line is valid");
    assert_eq!(raw.nodes.len(), 2);
    let run = &raw.nodes[1];
    assert_eq!(run.keyword, "run");
    assert_eq!(run.args.len(), 1);
    assert_eq!(run.args[0].len(), "echo ".len() + N);
    assert!(run.args[0].starts_with("echo aaa"));
    assert_eq!((run.start_line, run.end_line), (2, 2));
    let df = parse_dockerfile(&src).expect("typed layer accepts it too");
    assert_eq!(df.stages.len(), 1);
}

#[test]
fn two_hundred_thousand_continuation_lines() {
    const LINES: usize = 200_000;
    let mut src = String::from("RUN echo \\\n");
    for _ in 0..LINES - 2 {
        src.push_str("  a \\\n");
    }
    src.push_str("  end\n");
    let raw = parse(&src).expect("continuations are valid");
    let node = single_node(&raw);
    assert_eq!(node.keyword, "run");
    assert_eq!((node.start_line, node.end_line), (1, LINES));
    let arg = &node.args[0];
    assert!(arg.starts_with("echo "), "{}", &arg[..20]);
    assert!(arg.ends_with("end"), "{}", &arg[arg.len() - 20..]);
    assert_eq!(arg.matches('a').count(), LINES - 2);
}

#[test]
fn continuation_at_end_of_file_is_clean() {
    let mut src = String::from("FROM scratch\nRUN echo \\\n");
    for _ in 0..100_000 {
        src.push_str("\\\n");
    }
    assert_clean_raw(src.as_bytes(), "trailing continuations");
    assert_clean_typed(&src, "trailing continuations");
}

#[test]
fn hundred_thousand_brackets_fall_back_to_shell_form() {
    const N: usize = 100_000;
    let open = "[".repeat(N);
    let balanced = format!("{open}{}", "]".repeat(N));
    for (what, text) in [("open", &open), ("balanced", &balanced)] {
        let src = format!("RUN {text}\n");
        let raw = parse(&src).unwrap_or_else(|e| panic!("{what}: {e}"));
        let node = single_node(&raw);
        assert!(!node.json, "{what}: parsed as JSON");
        assert_eq!(node.args, vec![text.clone()], "{what}");
    }
    // The same inside a JSON-looking CMD and a nested string array.
    let nested = format!("CMD {}\"a\"{}\n", "[".repeat(N), "]".repeat(N));
    let raw = parse(&nested).expect("nested arrays are a shell form");
    assert!(!single_node(&raw).json);
}

#[test]
fn three_thousand_stages() {
    const STAGES: usize = 3_000;
    let mut src = String::new();
    for i in 0..STAGES {
        src.push_str(&format!("FROM scratch AS s{i}\nRUN echo {i}\n"));
    }
    let raw = parse(&src).expect("raw parse");
    assert_eq!(raw.nodes.len(), 2 * STAGES);
    let df = parse_dockerfile(&src).expect("typed parse");
    assert_eq!(df.stages.len(), STAGES);
}

/// Deeply nested `${a:-${a:-...}}`: the expander must not recurse once per level on the call
/// stack; past its nesting limit it returns a clean error.
#[test]
fn deeply_nested_expansion_is_clean() {
    const DEPTH: usize = 100_000;
    let env: HashMap<String, String> = HashMap::new();
    let lexer = Lexer::new('\\');
    let word = format!("{}x{}", "${a:-".repeat(DEPTH), "}".repeat(DEPTH));
    let err = lexer.process_word(&word, &env).expect_err("nesting limit");
    assert!(!err.to_string().is_empty());
    let err = lexer.process_words(&word, &env).expect_err("nesting limit");
    assert!(!err.to_string().is_empty());
    // A modest nesting is still expanded.
    let shallow = format!("{}x{}", "${a:-".repeat(8), "}".repeat(8));
    assert_eq!(lexer.process_word(&shallow, &env).as_deref(), Ok("x"));
    // Without the closing braces the word is malformed: always an error.
    let open = format!("{}x", "${a:-".repeat(DEPTH));
    assert!(lexer.process_word(&open, &env).is_err());
    assert!(lexer.process_words(&open, &env).is_err());
    // Deep quoting inside a default value.
    let quoted = format!("{}x{}", "${a:-\"".repeat(DEPTH), "\"}".repeat(DEPTH));
    let _ = lexer.process_word(&quoted, &env);
}

/// The same nesting inside an instruction, through the raw and typed layers.
#[test]
fn deeply_nested_expansion_in_a_dockerfile_is_clean() {
    const DEPTH: usize = 100_000;
    let word = format!("{}x{}", "${a:-".repeat(DEPTH), "}".repeat(DEPTH));
    let src = format!("FROM scratch\nARG a\nENV b={word}\nWORKDIR {word}\nCOPY {word} /\n");
    assert_clean_raw(src.as_bytes(), "nested expansion");
    assert_clean_typed(&src, "nested expansion");
}

#[test]
fn hundred_thousand_heredoc_instructions() {
    const N: usize = 100_000;
    let mut src = String::from("FROM scratch\n");
    for i in 0..N {
        src.push_str(&format!("RUN <<EOF\necho {i}\nEOF\n"));
    }
    let raw = parse(&src).expect("heredocs are valid");
    assert_eq!(raw.nodes.len(), N + 1);
    let last = &raw.nodes[N];
    assert_eq!(last.heredocs.len(), 1);
    assert_eq!(last.heredocs[0].content, format!("echo {}\n", N - 1));
    assert_eq!(last.end_line, 1 + 3 * N);
    let df = parse_dockerfile(&src).expect("typed parse");
    assert_eq!(df.stages.len(), 1);
}

#[test]
fn many_heredocs_on_one_instruction() {
    const N: usize = 10_000;
    let mut src = String::from("RUN cat");
    for i in 0..N {
        src.push_str(&format!(" <<E{i}"));
    }
    src.push('\n');
    for i in 0..N {
        src.push_str(&format!("body {i}\nE{i}\n"));
    }
    let raw = parse(&src).expect("many heredocs are valid");
    let node = single_node(&raw);
    assert_eq!(node.heredocs.len(), N);
    assert_eq!(node.heredocs[N - 1].name, format!("E{}", N - 1));
    assert_eq!(node.end_line, 1 + 2 * N);
}

#[test]
fn unterminated_heredoc_with_a_huge_body() {
    const LINES: usize = 1_000_000;
    let mut src = String::from("FROM scratch\nRUN <<EOF\n");
    for _ in 0..LINES {
        src.push_str("echo hello\n");
    }
    assert_clean_raw(src.as_bytes(), "unterminated heredoc");
    assert_clean_typed(&src, "unterminated heredoc");
    // Without a final newline, and with a chomped marker.
    let chomped = src.replacen("<<EOF", "<<-EOF", 1);
    let chomped = chomped.trim_end();
    assert_clean_raw(chomped.as_bytes(), "unterminated <<- heredoc");
}

#[test]
fn a_million_flags_on_one_line() {
    const N: usize = 1_000_000;
    let mut src = String::from("RUN");
    for _ in 0..N {
        src.push_str(" --flag");
    }
    src.push_str(" echo\n");
    let raw = parse(&src).expect("the raw layer accepts any flag");
    let node = single_node(&raw);
    assert_eq!(node.flags.len(), N);
    assert!(node.flags.iter().all(|f| f == "--flag"));
    assert_eq!(node.args, vec!["echo".to_string()]);
    // The typed layer rejects the unknown flag cleanly.
    let typed = format!("FROM scratch\n{src}");
    let err = parse_dockerfile(&typed).expect_err("--flag is not a RUN flag");
    assert_clean_error(&err, typed.as_bytes(), "a million flags");
    assert_eq!(err.location().line, 2);
}

#[test]
fn a_million_empty_and_comment_lines() {
    let mut src = String::from("# escape=`\n");
    for i in 0..1_000_000 {
        src.push_str(if i % 2 == 0 { "\n" } else { "# comment\n" });
    }
    src.push_str("FROM scratch\n");
    let raw = parse(&src).expect("comments and blank lines are valid");
    let node = single_node(&raw);
    assert_eq!(node.start_line, 1_000_002);
    assert_eq!(raw.directives.escape, '`');
}

#[test]
fn huge_keyword_and_huge_env_are_clean() {
    let keyword = "X".repeat(1 << 20);
    let src = format!("{keyword} y\n");
    assert_clean_raw(src.as_bytes(), "huge keyword");
    assert_clean_typed(&src, "huge keyword");

    let mut env = String::from("FROM scratch\nENV");
    for i in 0..100_000 {
        env.push_str(&format!(" k{i}=v{i}"));
    }
    env.push('\n');
    let raw = parse(&env).expect("many ENV pairs are valid");
    // Key, value and separator for each pair.
    assert_eq!(raw.nodes[1].args.len(), 3 * 100_000);
    assert_clean_typed(&env, "huge ENV");
}

#[test]
fn unbalanced_quotes_and_json_are_clean() {
    let inputs = [
        format!("RUN [\"{}\n", "a".repeat(1 << 20)),
        format!("ENV a=\"{}\n", "b".repeat(1 << 20)),
        format!("LABEL {}\n", "'".repeat(100_001)),
        format!("CMD [{}]\n", "\"a\",".repeat(100_000)),
        format!("SHELL [{}\"sh\"]\n", "\"\\u00e9\", ".repeat(100_000)),
        format!("ONBUILD {}RUN x\n", "ONBUILD ".repeat(10_000)),
    ];
    for src in &inputs {
        let what = &src[..src.len().min(24)];
        assert_clean_raw(src.as_bytes(), what);
        assert_clean_typed(src, what);
    }
}
