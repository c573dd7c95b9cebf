//! Keyword → argument parser table, and building a [`Node`] from one logical line (BuildKit's
//! `newNodeFromLine`). Unknown keywords are accepted; ONBUILD wraps another instruction.

use crate::ast::Node;

use super::flags::split_command;
use super::line_parsers::{self as lp, Args};

/// An argument parser: the arguments (flags removed, trimmed) and the escape character.
type LineParser = fn(&str, char) -> Result<Args, String>;

/// The parser for `keyword` (lowercase); `None` for ONBUILD, which nests a whole line.
fn parser_for(keyword: &str) -> Option<LineParser> {
    Some(match keyword {
        "add" | "copy" | "volume" => lp::maybe_json_to_list,
        "arg" => lp::name_or_name_val,
        "cmd" | "entrypoint" | "run" | "shell" => lp::maybe_json,
        "env" => lp::env,
        "label" => lp::label,
        "expose" | "from" => lp::whitespace_delimited,
        "healthcheck" => lp::health_config,
        "maintainer" | "stopsignal" | "user" | "workdir" => lp::string,
        "onbuild" => return None,
        _ => lp::ignore,
    })
}

/// How many ONBUILDs may wrap each other. BuildKit has no limit, but more than one level is
/// rejected by every later stage; the cap keeps work and nesting bounded.
const MAX_ONBUILD_DEPTH: usize = 8;

/// Builds the node for `line` (without position, comments or heredocs).
pub(super) fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    // ONBUILD chains are built iteratively: outermost first, then folded from the inside.
    let mut chain: Vec<Node> = Vec::new();
    let mut current = line.to_string();
    loop {
        let cmd = split_command(&current, escape);
        let mut node = empty_node(cmd.keyword, cmd.flags, current.clone());
        match parser_for(&node.keyword) {
            Some(parse) => {
                let args = parse(&cmd.args, escape)?;
                node.args = args.values;
                node.json = args.json;
                chain.push(node);
                break;
            }
            None => {
                let rest = cmd.args.into_owned();
                chain.push(node);
                if rest.is_empty() {
                    break;
                }
                if chain.len() > MAX_ONBUILD_DEPTH {
                    return Err("ONBUILD nested too deeply".to_string());
                }
                current = rest;
            }
        }
    }
    let mut inner = chain
        .pop()
        .unwrap_or_else(|| empty_node(String::new(), Vec::new(), String::new()));
    while let Some(mut outer) = chain.pop() {
        outer.sub = Some(Box::new(inner));
        inner = outer;
    }
    Ok(inner)
}

fn empty_node(keyword: String, flags: Vec<String>, original: String) -> Node {
    Node {
        keyword,
        flags,
        args: Vec::new(),
        sub: None,
        json: false,
        heredocs: Vec::new(),
        original,
        start_line: 0,
        end_line: 0,
        col: 1,
        prev_comments: Vec::new(),
    }
}

/// BuildKit's `canContainHeredoc`: RUN, COPY, ADD in shell form, possibly under ONBUILD.
pub(super) fn can_contain_heredoc(node: &Node) -> bool {
    let target = match (&node.keyword[..], &node.sub) {
        ("onbuild", Some(sub)) => sub,
        _ => node,
    };
    matches!(&target.keyword[..], "run" | "copy" | "add") && !target.json
}
