//! Unit tests of the raw layer on small hand-written inputs.

use super::{parse, parse_bytes};
use crate::error::Error;

fn dump(src: &str) -> String {
    match parse(src) {
        Ok(raw) => raw.dump(),
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn err(src: &str) -> Error {
    match parse(src) {
        Ok(raw) => panic!("expected an error, got {}", raw.dump()),
        Err(e) => e,
    }
}

#[test]
fn directives_are_read_case_insensitively() {
    let raw = parse("# Syntax = docker/dockerfile:1\n#ESCAPE=`\n# check=skip=all\nFROM a\n")
        .expect("parses");
    assert_eq!(
        raw.directives.syntax.as_deref(),
        Some("docker/dockerfile:1")
    );
    assert_eq!(raw.directives.escape, '`');
    assert_eq!(raw.directives.check.as_deref(), Some("skip=all"));
    assert!(raw.nodes[0].prev_comments.is_empty());
}

#[test]
fn duplicate_directive_is_an_error_at_its_line() {
    let e = err("# escape=\\\n# escape=`\nFROM a\n");
    assert_eq!((e.location().line, e.location().col), (2, 1));
    assert_eq!(e.message(), "only one escape parser directive can be used");
}

#[test]
fn invalid_escape_is_an_error() {
    let e = err("# escape=x\nFROM a\n");
    assert_eq!(e.location().line, 1);
    assert_eq!(
        e.message(),
        "invalid escape token 'x' does not match ` or \\"
    );
}

#[test]
fn directive_section_ends_at_comment_empty_line_or_unknown_name() {
    for src in [
        "# hello\n# escape=`\nFROM a\n",
        "\n# escape=`\nFROM a\n",
        "# foo=bar\n# escape=`\nFROM a\n",
        "FROM a\n# escape=`\n",
    ] {
        let raw = parse(src).expect("parses");
        assert_eq!(raw.directives.escape, '\\', "{src:?}");
    }
}

#[test]
fn backtick_escape_continues_lines() {
    assert_eq!(
        dump("# escape=`\nRUN a `\n  b\nCOPY c:\\ d\\\n"),
        "(run \"a   b\")\n(copy \"c:\\\\\" \"d\\\\\")"
    );
}

#[test]
fn bom_crlf_and_leading_whitespace() {
    assert_eq!(
        dump("\u{feff}FROM a\r\n   RUN b \\\r\n c\r\n"),
        "(from \"a\")\n(run \"b  c\")"
    );
}

#[test]
fn comments_and_empty_lines_inside_continuations() {
    let raw = parse("RUN a \\\n# note\n\n  b\n").expect("parses");
    assert_eq!(raw.dump(), "(run \"a   b\")");
    assert_eq!(raw.warnings.len(), 1);
    assert_eq!(raw.warnings[0].rule, "NoEmptyContinuation");
    assert_eq!(raw.nodes[0].end_line, 4);
}

#[test]
fn continuation_at_eof_and_escaped_escape() {
    assert_eq!(dump("RUN a \\"), "(run \"a\")");
    assert_eq!(
        dump("RUN a \\\\\nRUN b"),
        "(run \"a \\\\\\\\\")\n(run \"b\")"
    );
    assert_eq!(dump("RUN a \\  \t\n b"), "(run \"a  b\")");
}

#[test]
fn prev_comments_follow_buildkit() {
    let raw = parse("# one\n#  two  \nFROM a\n# x\n#\n# y\nRUN b\n").expect("parses");
    assert_eq!(raw.nodes[0].prev_comments, vec!["one", "two"]);
    assert_eq!(raw.nodes[1].prev_comments, vec!["y"]);
}

#[test]
fn env_and_label_give_triples() {
    assert_eq!(
        dump("ENV a=b c=\"d e\"\nENV k v w\nLABEL x=y"),
        "(env \"a\" \"b\" \"=\" \"c\" \"\\\"d e\\\"\" \"=\")\n(env \"k\" \"v w\" \"\")\n(label \"x\" \"y\" \"=\")"
    );
    assert_eq!(err("ENV a").message(), "ENV must have two arguments");
    assert!(
        err("LABEL a=b c")
            .message()
            .contains("can't find = in \"c\"")
    );
}

#[test]
fn maybe_json_and_fallbacks() {
    assert_eq!(dump("CMD [\"a\", \"b\"]"), "(cmd \"a\" \"b\")");
    assert!(parse("CMD [\"a\"]").expect("parses").nodes[0].json);
    assert_eq!(dump("CMD ['a']"), "(cmd \"['a']\")");
    assert_eq!(dump("CMD [\"a\"] x"), "(cmd \"[\\\"a\\\"] x\")");
    assert_eq!(
        dump("COPY [\"a\" b\nVOLUME /a /b"),
        "(copy \"[\\\"a\\\"\" \"b\")\n(volume \"/a\" \"/b\")"
    );
    assert!(
        err("CMD [1]")
            .message()
            .contains("comprised of strings only")
    );
    let deep = format!("RUN {}", "[".repeat(100_000));
    assert!(!parse(&deep).expect("parses").nodes[0].json);
}

#[test]
fn words_strings_and_arg() {
    assert_eq!(
        dump("FROM a  AS\tb\nEXPOSE 1 2\nUSER  u g\nARG x y=\"1 2\""),
        "(from \"a\" \"AS\" \"b\")\n(expose \"1\" \"2\")\n(user \"u g\")\n(arg \"x\" \"y=\\\"1 2\\\"\")"
    );
}

#[test]
fn onbuild_healthcheck_and_unknown() {
    assert_eq!(dump("ONBUILD RUN x"), "(onbuild (run \"x\"))");
    assert_eq!(
        dump("HEALTHCHECK NONE\nHEALTHCHECK --interval=5s CMD [\"a\"]"),
        "(healthcheck \"NONE\")\n(healthcheck [\"--interval=5s\"] \"CMD\" \"a\")"
    );
    assert_eq!(dump("FOO bar"), "(foo \"\")");
}

#[test]
fn flags_like_extract_builder_flags() {
    assert_eq!(
        dump("COPY --from=a --chown=\"x y\" s d"),
        "(copy [\"--from=a\" \"--chown=x y\"] \"s\" \"d\")"
    );
    assert_eq!(dump("RUN --a b c"), "(run [\"--a\"] \"b c\")");
    assert_eq!(dump("RUN --a -- --b"), "(run [\"--a\"] \"--b\")");
    assert_eq!(dump("RUN --a=\\\"x"), "(run [\"--a=\\\"x\"])");
    assert_eq!(dump("# escape=`\nRUN --a=`\"x"), "(run [\"--a=\\\"x\"])");
    assert_eq!(dump("RUN -- --b"), "(run \"--b\")");
}

#[test]
fn heredocs() {
    let raw =
        parse("RUN <<EOF <<-'END' cat\nhello $x\nEOF\n\tbye\n\tEND\nRUN b\n").expect("parses");
    let n = &raw.nodes[0];
    assert_eq!(n.heredocs.len(), 2);
    assert_eq!(
        (n.heredocs[0].name.as_str(), n.heredocs[0].expand),
        ("EOF", true)
    );
    assert_eq!(n.heredocs[0].content, "hello $x\n");
    assert_eq!(n.heredocs[1].content, "bye\n");
    assert!(n.heredocs[1].chomp && !n.heredocs[1].expand);
    assert_eq!((n.start_line, n.end_line), (1, 5));
    assert_eq!(raw.nodes[1].start_line, 6);
    assert_eq!(raw.dump(), "(run \"<<EOF <<-'END' cat\")\n(run \"b\")");
    // Not for other instructions, JSON forms or quoted words.
    assert_eq!(parse("ENV a <<EOF\nFROM x").expect("parses").nodes.len(), 2);
    assert!(
        parse("RUN echo \"<<EOF\"\nFROM x").expect("parses").nodes[0]
            .heredocs
            .is_empty()
    );
}

#[test]
fn unterminated_heredoc_points_at_keyword() {
    let e = err("FROM a\n  COPY <<EOF /x\nbody\n");
    assert!(matches!(e, Error::Syntax { .. }));
    assert_eq!((e.location().line, e.location().col), (2, 3));
}

#[test]
fn empty_file_and_comment_only_file() {
    for src in ["", "# just a comment\n\n", "\u{feff}"] {
        let e = err(src);
        assert_eq!((e.location().line, e.location().col), (1, 1));
        assert_eq!(e.message(), "file with no instructions");
    }
}

#[test]
fn node_positions() {
    let raw = parse("\n  run a \\\n b\n").expect("parses");
    let n = &raw.nodes[0];
    assert_eq!(
        (n.keyword.as_str(), n.start_line, n.end_line, n.col),
        ("run", 2, 3, 3)
    );
    assert_eq!(n.original, "run a  b");
}

#[test]
fn invalid_utf8_is_located() {
    let e = match parse_bytes(b"FROM a\nRUN \xc3\xa9\xff\n") {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    };
    assert_eq!((e.location().line, e.location().col), (2, 6));
    assert_eq!(e.message(), "invalid UTF-8");
}

#[test]
fn garbage_never_panics() {
    let mut bytes = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..20_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        bytes.push((x >> 16) as u8);
    }
    let _ = parse_bytes(&bytes);
    let _ = parse(&String::from_utf8_lossy(&bytes));
    let _ = parse("RUN \0\0\0 [\"\0\"]\nHEALTHCHECK \u{a0}à CMD\nCOPY --x=\u{e0}\u{a0}\u{80} a");
}

#[test]
fn large_inputs_are_linear() {
    let long = format!("RUN {}\n", "x".repeat(10 << 20));
    assert_eq!(parse(&long).expect("parses").nodes.len(), 1);
    let cont = format!("RUN a \\\n{}b\n", " c \\\n".repeat(200_000));
    assert_eq!(parse(&cont).expect("parses").nodes[0].end_line, 200_002);
    let stages: String = (0..3000)
        .map(|i| format!("FROM s{i} AS n{i}\nRUN x\n"))
        .collect();
    assert_eq!(parse(&stages).expect("parses").nodes.len(), 6000);
}

/// Compares dumps with BuildKit's parser testfiles when `STRATA_BK_TESTFILES` names a folder
/// laid out as `testfiles/<case>/{Dockerfile,result}` and `testfiles-negative/<case>/Dockerfile`.
#[test]
fn buildkit_testfiles_when_present() {
    let Ok(root) = std::env::var("STRATA_BK_TESTFILES") else {
        return;
    };
    let root = std::path::Path::new(&root);
    let (mut total, mut ok) = (0, 0);
    if let Ok(dir) = std::fs::read_dir(root.join("testfiles")) {
        let mut cases: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        cases.sort();
        for case in cases {
            let (Ok(df), Ok(want)) = (
                std::fs::read(case.join("Dockerfile")),
                std::fs::read_to_string(case.join("result")),
            ) else {
                continue;
            };
            total += 1;
            let got = parse_bytes(&df).map(|r| (r.dump() + "\n", legacy_dump(&r) + "\n"));
            match got {
                Ok((got, legacy)) if got == want || legacy == want => ok += 1,
                Ok((got, _)) => eprintln!(
                    "MISMATCH {}\n--- want\n{want}--- got\n{got}",
                    case.display()
                ),
                Err(e) => eprintln!("ERROR {}: {e}", case.display()),
            }
        }
    }
    let (mut ntotal, mut nok) = (0, 0);
    if let Ok(dir) = std::fs::read_dir(root.join("testfiles-negative")) {
        for case in dir.flatten() {
            let Ok(df) = std::fs::read(case.path().join("Dockerfile")) else {
                continue;
            };
            ntotal += 1;
            if parse_bytes(&df).is_err() {
                nok += 1;
            } else {
                eprintln!("NEGATIVE ACCEPTED {}", case.path().display());
            }
        }
    }
    eprintln!("positive {ok}/{total}, negative {nok}/{ntotal}");
    assert_eq!((ok, nok), (total, ntotal));
}

/// The dump BuildKit printed before ENV and LABEL kept their separator (older result files):
/// every third value of those instructions dropped.
fn legacy_dump(raw: &crate::ast::RawDockerfile) -> String {
    let mut raw = raw.clone();
    for n in &mut raw.nodes {
        if n.keyword == "env" || n.keyword == "label" {
            n.args = n
                .args
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 3 != 2)
                .map(|(_, a)| a.clone())
                .collect();
        }
    }
    raw.dump()
}

#[test]
fn ten_thousand_lines() {
    let mut src = String::from("# syntax=docker/dockerfile:1\nFROM alpine AS base\n");
    for i in 0..10_000 {
        match i % 5 {
            0 => src.push_str(&format!("RUN echo {i} && \\\n  true\n")),
            1 => src.push_str(&format!("ENV K{i}=v{i} O{i}=\"a b\"\n")),
            2 => src.push_str(&format!("COPY --from=base /a{i} /b{i}\n")),
            3 => src.push_str(&format!("# comment {i}\nCMD [\"x\", \"{i}\"]\n")),
            _ => src.push_str(&format!("LABEL l{i}=x\n")),
        }
    }
    let start = std::time::Instant::now();
    let raw = parse(&src).expect("parses");
    eprintln!("10,000 instructions parsed in {:?}", start.elapsed());
    assert_eq!(raw.nodes.len(), 10_001);
}
