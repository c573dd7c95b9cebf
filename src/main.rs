//! `strata`: a daemonless Dockerfile compiler with a content-addressed layer cache.
//!
//! This binary stays thin: it parses arguments into clap types ([`cli`]), calls the library
//! crates, and turns their results into output, diagnostics ([`diagnostic`]) and docker's exit
//! codes: 0 on success, 1 when a command fails, 125 on a usage error.

mod cli;
mod debug;
mod diagnostic;
mod root;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, DebugCommand};

/// Exit code for a failed command (parse error, expansion error, I/O error).
const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage error, as docker's CLI uses (clap's default would be 2).
const EXIT_USAGE: u8 = 125;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `--help` and `--version` come through here too; they are not errors.
            let code = if err.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let root = root::resolve(cli.root.as_deref());
    let result = match cli.command {
        Command::Debug { command } => match command {
            DebugCommand::Parse(args) => debug::parse(&args),
            DebugCommand::Expand(args) => debug::expand(&args),
            DebugCommand::Root => {
                println!("{}", root.display());
                Ok(())
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reported) => ExitCode::from(EXIT_FAILURE),
        Err(Failure::Other(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The failure was already printed (as a diagnostic with source context).
    Reported,
    /// Not printed yet: `main` prints it as `error: ...`.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Other(err)
    }
}
