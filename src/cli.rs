//! The command line, as clap derive types. Nothing here does work; `main` dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// strata: a daemonless Dockerfile compiler with a content-addressed layer cache.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, propagate_version = true)]
pub struct Cli {
    /// Where strata keeps its store and state [default: /var/lib/strata as root,
    /// $XDG_DATA_HOME/strata otherwise]
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools for looking inside strata's front end
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Parse a Dockerfile and print its instructions
    Parse(ParseArgs),
    /// Expand one word the way a Dockerfile instruction does (no field splitting)
    Expand(ExpandArgs),
    /// Print the store root in effect (after --root, STRATA_ROOT and the default)
    Root,
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Output format: `buildkit` prints the raw parse exactly as BuildKit's AST dump does;
    /// `json` prints the typed instructions with their positions
    #[arg(long, value_enum, default_value_t = ParseFormat::Buildkit)]
    pub format: ParseFormat,

    /// The Dockerfile to parse, or `-` for stdin
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParseFormat {
    /// BuildKit's `parser.Parse(...).AST.Dump()`, one instruction per line
    Buildkit,
    /// Typed instructions with positions, as JSON
    Json,
}

#[derive(Debug, Args)]
pub struct ExpandArgs {
    /// A variable visible to the expansion (repeatable; the last one wins)
    #[arg(long = "env", short = 'e', value_name = "K=V", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,

    /// The escape character, as the `# escape=` directive sets it
    #[arg(long, default_value_t = '\\', value_parser = parse_escape)]
    pub escape: char,

    /// The word to expand (put `--` before it if it starts with `-`)
    #[arg(value_name = "WORD", allow_hyphen_values = false)]
    pub word: String,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("invalid variable {s:?}: empty name")),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => Err(format!("invalid variable {s:?}: expected K=V")),
    }
}

fn parse_escape(s: &str) -> Result<char, String> {
    match s {
        "\\" => Ok('\\'),
        "`" => Ok('`'),
        _ => Err(format!("invalid escape character {s:?}: use \\ or `")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value_parsing() {
        assert_eq!(
            parse_key_value("A=b=c"),
            Ok(("A".to_string(), "b=c".to_string()))
        );
        assert_eq!(parse_key_value("A="), Ok(("A".to_string(), String::new())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }

    #[test]
    fn escape_parsing() {
        assert_eq!(parse_escape("`"), Ok('`'));
        assert!(parse_escape("x").is_err());
    }
}
