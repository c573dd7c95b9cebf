//! `strata`: a daemonless Dockerfile compiler with a content-addressed layer cache.
//!
//! This binary stays thin: it parses arguments into clap types ([`cli`]), calls the library
//! crates, and turns their results into output, diagnostics ([`diagnostic`]) and docker's exit
//! codes: 0 on success, 1 when a command fails, 125 on a usage error.

mod cli;
mod commands;
mod debug;
mod diagnostic;
mod format;
mod progress;
mod root;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{BuilderCommand, Cli, Command, DebugCommand, ImageCommand, SystemCommand};
use crate::commands::{build, image, images, registry, run, system, transfer};

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
    let root = root.as_path();
    let result = match cli.command {
        Command::Debug { command } => match command {
            DebugCommand::Parse(args) => debug::parse(&args),
            DebugCommand::Expand(args) => debug::expand(&args),
            DebugCommand::Root => {
                println!("{}", root.display());
                Ok(())
            }
            // Exits with the command's own code.
            DebugCommand::Sandbox(args) => return debug::sandbox(root, &args),
            DebugCommand::Net(args) => debug::net(&args),
        },
        Command::Images(args)
        | Command::Image {
            command: ImageCommand::Ls(args),
        } => images::list(root, &args),
        Command::Import(args)
        | Command::Image {
            command: ImageCommand::Import(args),
        } => transfer::import(root, &args),
        Command::Load(args)
        | Command::Image {
            command: ImageCommand::Load(args),
        } => transfer::load(root, &args),
        Command::Save(args)
        | Command::Image {
            command: ImageCommand::Save(args),
        } => transfer::save(root, &args),
        Command::Tag(args)
        | Command::Image {
            command: ImageCommand::Tag(args),
        } => image::tag(root, &args),
        Command::Rmi(args)
        | Command::Image {
            command: ImageCommand::Rm(args),
        } => run::check_rmi(root, &args.images, args.force).and_then(|()| image::rmi(root, &args)),
        Command::Inspect(args) => run::inspect(root, &args),
        Command::Image {
            command: ImageCommand::Inspect(args),
        } => image::inspect(root, &args),
        Command::History(args)
        | Command::Image {
            command: ImageCommand::History(args),
        } => image::history(root, &args),
        Command::SandboxInit { bundle } => strata_executor::sandbox::init_main(&bundle),
        Command::SandboxExec { pid } => strata_executor::sandbox::exec_main(pid),
        Command::System { command } => match command {
            SystemCommand::Df(args) => system::df(root, &args),
            SystemCommand::Prune(args) => system::prune(root, &args),
            SystemCommand::Verify => system::verify(root),
        },
        Command::Build(args) => build::run(root, &args),
        Command::Pull(args) => registry::pull(root, &args),
        Command::Push(args) => registry::push(root, &args),
        Command::Login(args) => registry::login(&args),
        Command::Logout(args) => registry::logout(&args),
        Command::Search(args) => registry::search(&args),
        Command::Builder {
            command: BuilderCommand::Prune(args),
        } => build::prune(root, &args),
        Command::Volume { command } => commands::volume::run(root, &command),
        Command::Commit(args) => commands::commit::commit(root, &args),
        Command::Cp(args) => commands::commit::cp(root, &args),
        // Exit with the container's own code.
        Command::Run(args) => return run::run(root, &args),
        Command::Supervise { ready_fd, id } => return run::supervise(root, &id, ready_fd),
        Command::Create(args) => run::create(root, &args),
        Command::Start(args) => match run::start(root, &args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Attach(args) => match run::attach(root, &args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Exec(args) => return run::exec(root, &args),
        Command::Stop(args) => run::stop(root, &args),
        Command::Restart(args) => run::restart(root, &args),
        Command::Kill(args) => run::kill(root, &args),
        Command::Wait(args) => run::wait(root, &args),
        Command::Rm(args) => run::rm(root, &args),
        Command::Ps(args) => run::ps(root, &args),
        Command::Logs(args) => run::logs(root, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reported) => ExitCode::from(EXIT_FAILURE),
        Err(Failure::Other(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Usage(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_USAGE)
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
    /// A usage error found after parsing (a bad `--format` template): printed as
    /// `error: ...`, exit code 125.
    Usage(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Other(err)
    }
}
