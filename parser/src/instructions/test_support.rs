//! Builds raw [`Node`]s directly, so typed-layer tests do not depend on the raw parser.

use crate::ast::{Heredoc, Node};

/// A node under construction: `n("copy").flags(&["--from=a"]).args(&["a", "b"]).build()`.
pub(crate) struct N(Node);

/// Starts a node with `keyword` at line 1, column 1; `original` is `KEYWORD` for now and is
/// rebuilt from flags and args by [`N::build`] unless set explicitly.
pub(crate) fn n(keyword: &str) -> N {
    N(Node {
        keyword: keyword.to_string(),
        flags: Vec::new(),
        args: Vec::new(),
        sub: None,
        json: false,
        heredocs: Vec::new(),
        original: String::new(),
        start_line: 1,
        end_line: 1,
        col: 1,
        prev_comments: Vec::new(),
    })
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl N {
    pub(crate) fn flags(mut self, f: &[&str]) -> N {
        self.0.flags = strings(f);
        self
    }

    pub(crate) fn args(mut self, a: &[&str]) -> N {
        self.0.args = strings(a);
        self
    }

    /// Exec (JSON) form arguments.
    pub(crate) fn json(mut self, a: &[&str]) -> N {
        self.0.args = strings(a);
        self.0.json = true;
        self
    }

    pub(crate) fn heredoc(mut self, name: &str, content: &str, expand: bool) -> N {
        self.0.heredocs.push(Heredoc {
            name: name.to_string(),
            content: content.to_string(),
            expand,
            chomp: false,
        });
        self
    }

    pub(crate) fn sub(mut self, sub: N) -> N {
        let sub = sub.build();
        self.0.args = Vec::new();
        self.0.sub = Some(Box::new(sub));
        self
    }

    pub(crate) fn at(mut self, line: usize, col: usize) -> N {
        self.0.start_line = line;
        self.0.end_line = line;
        self.0.col = col;
        self
    }

    pub(crate) fn original(mut self, o: &str) -> N {
        self.0.original = o.to_string();
        self
    }

    pub(crate) fn comments(mut self, c: &[&str]) -> N {
        self.0.prev_comments = strings(c);
        self
    }

    pub(crate) fn build(mut self) -> Node {
        if self.0.original.is_empty() {
            let mut parts = vec![self.0.keyword.to_uppercase()];
            parts.extend(self.0.flags.iter().cloned());
            if let Some(sub) = &self.0.sub {
                parts.push(sub.original.clone());
            }
            parts.extend(self.0.args.iter().cloned());
            self.0.original = parts.join(" ");
        }
        self.0
    }
}
