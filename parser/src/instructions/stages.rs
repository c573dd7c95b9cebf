//! Grouping typed instructions into build stages: [`Dockerfile::from_raw`].

use std::collections::HashSet;

use serde::Serialize;

use super::Instruction;
use super::commands::{Arg, From};
use super::parse::parse_instruction_with_warnings;
use crate::ast::{Directives, RawDockerfile, Warning};
use crate::error::{Error, Location};
use crate::shell::{self, Lexer};

/// A typed Dockerfile: the directives, the ARGs before the first FROM, and the stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub directives: Directives,
    /// ARG instructions before the first FROM (usable in FROM lines).
    pub meta_args: Vec<Arg>,
    pub stages: Vec<Stage>,
    /// The raw layer's warnings followed by the typed layer's, in source order within each.
    pub warnings: Vec<Warning>,
}

/// One build stage: a FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The base image or stage, unexpanded.
    pub base: String,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
    /// The FROM keyword's location.
    pub loc: Location,
    /// The FROM line, trimmed.
    pub original: String,
    /// The comment line above FROM starting with `<name> ` (BuildKit's stage description).
    pub comment: Option<String>,
    /// All comment lines directly above FROM.
    pub comments: Vec<String>,
    /// The stage's instructions, FROM excluded.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    fn new(from: From, comments: Vec<String>) -> Stage {
        Stage {
            name: from.name,
            base: from.base,
            platform: from.platform,
            loc: from.loc,
            original: from.original,
            comment: from.comment,
            comments,
            instructions: Vec::new(),
        }
    }

    /// The stage's FROM instruction.
    pub fn from_instruction(&self) -> From {
        From {
            loc: self.loc,
            original: self.original.clone(),
            base: self.base.clone(),
            name: self.name.clone(),
            platform: self.platform.clone(),
            comment: self.comment.clone(),
        }
    }

    /// The FROM instruction with `base` and `--platform` expanded (normally with the meta
    /// ARGs).
    ///
    /// # Errors
    ///
    /// [`Error::Expand`] at the FROM's location.
    pub fn expand_from(&self, lexer: &Lexer, env: &dyn shell::Env) -> Result<From, Error> {
        self.from_instruction().expand(lexer, env)
    }
}

impl Dockerfile {
    /// Types every raw node and groups them into stages. ARGs before the first FROM become
    /// `meta_args`; any other instruction there is an error.
    ///
    /// # Errors
    ///
    /// The first [`Error::Instruction`] of any node (see [`super::parse_instruction`]), or
    /// "no build stage in current context" for a non-ARG instruction before the first FROM.
    pub fn from_raw(raw: RawDockerfile) -> Result<Dockerfile, Error> {
        let mut warnings = raw.warnings;
        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        let mut names = HashSet::new();
        for node in &raw.nodes {
            let instruction = parse_instruction_with_warnings(node, &mut warnings)?;
            match (instruction, stages.last_mut()) {
                (Instruction::From(from), _) => {
                    duplicate_name_warning(&mut names, &from, &mut warnings);
                    stages.push(Stage::new(from, node.prev_comments.clone()));
                }
                (Instruction::Arg(arg), None) => meta_args.push(arg),
                (_, None) => {
                    return Err(Error::instruction(
                        node.location(),
                        format!(
                            "no build stage in current context ({} before the first FROM)",
                            node.keyword.to_uppercase()
                        ),
                    ));
                }
                (instruction, Some(stage)) => stage.instructions.push(instruction),
            }
        }
        Ok(Dockerfile {
            directives: raw.directives,
            meta_args,
            stages,
            warnings,
        })
    }

    /// The stage called `name` (case-insensitive), with its index.
    pub fn stage(&self, name: &str) -> Option<(usize, &Stage)> {
        self.stages.iter().enumerate().find(|(_, s)| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }
}

/// BuildKit's `DuplicateStageName` check. `seen` holds the names of the earlier stages (a set,
/// so thousands of stages stay linear).
fn duplicate_name_warning(seen: &mut HashSet<String>, from: &From, warnings: &mut Vec<Warning>) {
    let Some(name) = &from.name else { return };
    if !seen.insert(name.clone()) {
        warnings.push(Warning {
            rule: "DuplicateStageName".to_string(),
            message: format!("Duplicate stage name {name:?}, stage names should be unique"),
            loc: from.loc,
        });
    }
}

/// Parses a Dockerfile: the raw layer, then the typed layer.
///
/// # Errors
///
/// [`Error::Syntax`] from the raw layer, or [`Error::Instruction`] from the typed layer.
pub fn parse_dockerfile(src: &str) -> Result<Dockerfile, Error> {
    Dockerfile::from_raw(crate::raw::parse(src)?)
}
