//! The typed layer: raw [`Node`](crate::ast::Node)s become [`Instruction`]s, grouped into
//! [`Stage`]s of a [`Dockerfile`].
//!
//! Data enters as a [`RawDockerfile`](crate::ast::RawDockerfile) ([`Dockerfile::from_raw`]) or
//! as text ([`parse_dockerfile`]); single nodes go through [`parse_instruction`]. Each
//! instruction struct (in [`commands`]) is documented with its Dockerfile forms and validated
//! the way BuildKit validates it: flags with `BFlags` semantics ([`flags`](self)), argument
//! counts, stage names, ports, signals, durations and `RUN --mount` specs ([`mount`]).
//! Words stay unexpanded; [`Instruction::expand`] applies BuildKit's expansion rules with a
//! [`Lexer`](crate::shell::Lexer) and an environment.
//!
//! Every error is an [`Error::Instruction`](crate::Error::Instruction) (or `Expand`) at the
//! instruction keyword's location; for an ONBUILD trigger, at the ONBUILD keyword.

use serde::Serialize;

use crate::error::Location;

pub mod commands;
mod duration;
mod expand;
mod flags;
pub mod mount;
mod parse;
mod stages;
mod suggest;
mod validate;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use commands::{
    Add, Arg, ArgDef, Cmd, Copy, Entrypoint, Env, Expose, From, Healthcheck, KeyValue, Label,
    Maintainer, NetworkMode, Onbuild, Run, SecurityMode, Shell, SourceContent, StopSignal, User,
    Volume, Workdir,
};
pub use mount::{Mount, MountType, ShareMode};
pub use parse::{parse_instruction, parse_instruction_with_warnings};
pub use stages::{Dockerfile, Stage, parse_dockerfile};

/// One typed Dockerfile instruction. Serialized with an `instruction` tag holding the
/// upper-case keyword.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "UPPERCASE")]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(Cmd),
    Label(Label),
    Maintainer(Maintainer),
    Expose(Expose),
    Env(Env),
    Add(Add),
    Copy(Copy),
    Entrypoint(Entrypoint),
    Volume(Volume),
    User(User),
    Workdir(Workdir),
    Arg(Arg),
    Onbuild(Onbuild),
    StopSignal(StopSignal),
    Healthcheck(Healthcheck),
    Shell(Shell),
}

impl Instruction {
    /// The keyword's location.
    pub fn loc(&self) -> Location {
        match self {
            Instruction::From(c) => c.loc,
            Instruction::Run(c) => c.loc,
            Instruction::Cmd(c) => c.loc,
            Instruction::Label(c) => c.loc,
            Instruction::Maintainer(c) => c.loc,
            Instruction::Expose(c) => c.loc,
            Instruction::Env(c) => c.loc,
            Instruction::Add(c) => c.loc,
            Instruction::Copy(c) => c.loc,
            Instruction::Entrypoint(c) => c.loc,
            Instruction::Volume(c) => c.loc,
            Instruction::User(c) => c.loc,
            Instruction::Workdir(c) => c.loc,
            Instruction::Arg(c) => c.loc,
            Instruction::Onbuild(c) => c.loc,
            Instruction::StopSignal(c) => c.loc,
            Instruction::Healthcheck(c) => c.loc,
            Instruction::Shell(c) => c.loc,
        }
    }

    /// The instruction's source text (its logical line, trimmed).
    pub fn original(&self) -> &str {
        match self {
            Instruction::From(c) => &c.original,
            Instruction::Run(c) => &c.original,
            Instruction::Cmd(c) => &c.original,
            Instruction::Label(c) => &c.original,
            Instruction::Maintainer(c) => &c.original,
            Instruction::Expose(c) => &c.original,
            Instruction::Env(c) => &c.original,
            Instruction::Add(c) => &c.original,
            Instruction::Copy(c) => &c.original,
            Instruction::Entrypoint(c) => &c.original,
            Instruction::Volume(c) => &c.original,
            Instruction::User(c) => &c.original,
            Instruction::Workdir(c) => &c.original,
            Instruction::Arg(c) => &c.original,
            Instruction::Onbuild(c) => &c.original,
            Instruction::StopSignal(c) => &c.original,
            Instruction::Healthcheck(c) => &c.original,
            Instruction::Shell(c) => &c.original,
        }
    }

    /// The upper-case keyword (`RUN`, `COPY`, ...).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
        }
    }
}
