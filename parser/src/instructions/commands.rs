//! One documented struct per Dockerfile instruction.
//!
//! Every struct carries `loc` (the keyword's [`Location`]) and `original` (the instruction's
//! logical line, trimmed). Words are stored as written, unexpanded; each struct's `expand`
//! method (see the `expand` module) returns the expanded copy the way BuildKit's dispatcher
//! sees it.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::Instruction;
use super::mount::Mount;
use crate::ast::Heredoc;
use crate::error::Location;

/// A `key=value` pair of ENV or LABEL, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// The legacy `ENV key value` form was used (no `=` separator).
    pub no_delim: bool,
}

/// One ARG declaration: `name` or `name=default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDef {
    pub key: String,
    /// The default value; `None` for a bare `ARG name` (unlike `ARG name=`, an empty default).
    pub value: Option<String>,
    /// The comment line directly above the instruction that starts with `<name> `, minus that
    /// prefix (BuildKit's ARG description convention).
    pub comment: Option<String>,
}

/// A COPY/ADD source given inline as a heredoc (`COPY <<EOF /dest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceContent {
    /// The heredoc's name, used as the file name.
    pub path: String,
    /// The body (leading tabs already stripped for `<<-`).
    pub data: String,
    /// False when the delimiter was quoted: the body must not be expanded.
    pub expand: bool,
}

/// `FROM [--platform=<platform>] <image> [AS <name>]`
///
/// Starts a build stage. `name` is lower-cased and must match `[a-z][a-z0-9-_.]*`.
/// Expanded: `base` and `platform` (with the meta ARGs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    pub loc: Location,
    pub original: String,
    /// The base image reference or stage name, unexpanded.
    pub base: String,
    /// The stage name (`AS name`), lower-cased.
    pub name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
    /// The comment line above FROM starting with `<name> `, minus that prefix.
    pub comment: Option<String>,
}

/// `RUN [--mount=...]... [--network=default|none|host] [--security=sandbox|insecure] <command>`
/// or `RUN ["executable", "arg", ...]`, optionally with heredocs (`RUN <<EOF`).
///
/// The command is never expanded by the frontend (the shell does it at run time); only the
/// `--mount` values are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub loc: Location,
    pub original: String,
    /// The shell form as one element, or the exec-form elements.
    pub cmd_line: Vec<String>,
    /// True for the shell form: the stage's SHELL is prepended at build time.
    pub prepend_shell: bool,
    /// Heredocs attached to the command, in order.
    pub heredocs: Vec<Heredoc>,
    /// The `--mount` flags, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
    /// The names of the flags that were given (without `--`), in order of first use.
    pub flags_used: Vec<String>,
}

/// `RUN --network=` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Default,
    None,
    Host,
}

/// `RUN --security=` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    #[default]
    Sandbox,
    Insecure,
}

/// `CMD <command>` or `CMD ["executable", "arg", ...]` or `CMD ["arg", ...]`.
///
/// Not expanded. An empty exec form (`CMD []`) clears the inherited command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cmd {
    pub loc: Location,
    pub original: String,
    pub cmd_line: Vec<String>,
    pub prepend_shell: bool,
    pub heredocs: Vec<Heredoc>,
}

/// `ENTRYPOINT <command>` or `ENTRYPOINT ["executable", "arg", ...]`.
///
/// Not expanded. An empty `cmd_line` clears the entrypoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entrypoint {
    pub loc: Location,
    pub original: String,
    pub cmd_line: Vec<String>,
    pub prepend_shell: bool,
    pub heredocs: Vec<Heredoc>,
}

/// `LABEL <key>=<value> [<key>=<value>...]`. Keys and values are expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    pub loc: Location,
    pub original: String,
    pub labels: Vec<KeyValue>,
}

/// `MAINTAINER <name>` (deprecated: a `MaintainerDeprecated` warning is emitted). Not expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Maintainer {
    pub loc: Location,
    pub original: String,
    pub maintainer: String,
}

/// `EXPOSE <port>[/<protocol>] [<port>[/<protocol>]...]`, ports like `80`, `80/tcp`,
/// `8000-8010/udp`. Expanded with word splitting; sorted as BuildKit sorts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expose {
    pub loc: Location,
    pub original: String,
    pub ports: Vec<String>,
}

/// `ENV <key>=<value> [<key>=<value>...]` or the legacy `ENV <key> <value>`.
///
/// Keys and values are expanded, all with the environment from before the instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Env {
    pub loc: Location,
    pub original: String,
    pub vars: Vec<KeyValue>,
}

/// `ADD [--chown=<user>:<group>] [--chmod=<perms>] [--link[=<bool>]] [--keep-git-dir[=<bool>]]
/// [--checksum=<digest>] [--unpack[=<bool>]] [--exclude=<pattern>]... <src>... <dest>`,
/// also `ADD ["<src>", ... "<dest>"]` and heredoc sources (`ADD <<EOF /dest`).
///
/// Expanded: sources, destination, `--chown`, `--chmod`, `--checksum`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    pub loc: Location,
    pub original: String,
    /// Source paths or URLs (heredoc sources are in `contents`).
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub contents: Vec<SourceContent>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    /// `--unpack`: `None` when not given (archives from the context are unpacked, remote
    /// ones are not).
    pub unpack: Option<bool>,
    pub excludes: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// `COPY [--from=<stage|image|context>] [--chown=<user>:<group>] [--chmod=<perms>]
/// [--link[=<bool>]] [--parents[=<bool>]] [--exclude=<pattern>]... <src>... <dest>`,
/// also `COPY ["<src>", ... "<dest>"]` and heredoc sources (`COPY <<EOF /dest`).
///
/// Expanded: sources, destination, `--from`, `--chown`, `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub loc: Location,
    pub original: String,
    pub sources: Vec<String>,
    pub contents: Vec<SourceContent>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// `VOLUME <path> [<path>...]` or `VOLUME ["<path>", ...]`. Each path is expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub loc: Location,
    pub original: String,
    pub volumes: Vec<String>,
}

/// `USER <user>[:<group>]` or `USER <uid>[:<gid>]`. Expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub loc: Location,
    pub original: String,
    pub user: String,
}

/// `WORKDIR <path>`. Expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workdir {
    pub loc: Location,
    pub original: String,
    pub path: String,
}

/// `ARG <name>[=<default>] [<name>[=<default>]...]`. Names and defaults are expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    pub loc: Location,
    pub original: String,
    pub args: Vec<ArgDef>,
}

/// `ONBUILD <instruction>`: a trigger run when the image is used as a base.
///
/// The trigger may not be ONBUILD, FROM or MAINTAINER. It is validated like any instruction but
/// stored verbatim and never expanded here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    pub loc: Location,
    pub original: String,
    /// The trigger's source text: the line without `ONBUILD`, plus any heredoc bodies (each as
    /// `\n` + body + name), as BuildKit records it in the image config.
    pub expression: String,
    /// The parsed trigger (its location is the ONBUILD's).
    pub trigger: Box<Instruction>,
}

/// `STOPSIGNAL <signal>`: a name (`SIGTERM`, `TERM`) or a number. Expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopSignal {
    pub loc: Location,
    pub original: String,
    pub signal: String,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=<d>] [--timeout=<d>] [--start-period=<d>]
/// [--start-interval=<d>] [--retries=<n>] CMD <command>` (shell or exec form).
///
/// Durations are Go durations (`30s`, `1m30s`, `500ms`) of at least 1ms (0 means "inherit").
/// Not expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    pub loc: Location,
    pub original: String,
    /// `["NONE"]`, `["CMD", exec...]` or `["CMD-SHELL", "<command>"]`, as in the image config.
    pub test: Vec<String>,
    #[serde(serialize_with = "nanos")]
    pub interval: Option<Duration>,
    #[serde(serialize_with = "nanos")]
    pub timeout: Option<Duration>,
    #[serde(serialize_with = "nanos")]
    pub start_period: Option<Duration>,
    #[serde(serialize_with = "nanos")]
    pub start_interval: Option<Duration>,
    /// `--retries`; `None` when not given (or 0).
    pub retries: Option<u32>,
}

/// `SHELL ["executable", "parameters", ...]` (JSON form only). Not expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shell {
    pub loc: Location,
    pub original: String,
    pub shell: Vec<String>,
}

/// Serializes an optional duration as integer nanoseconds, as the OCI image config does.
fn nanos<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}
