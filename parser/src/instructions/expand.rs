//! Word expansion of typed instructions, with BuildKit's rules for which words are expanded.
//!
//! Expanded (each word with [`Lexer::process_word`], no field splitting, unless noted):
//! ADD and COPY sources and destination, `--chown`, `--chmod`, COPY `--from`, ADD
//! `--checksum`; ENV and LABEL keys and values (all pairs of one instruction see the
//! environment from before it); EXPOSE ports (with word splitting,
//! [`Lexer::process_words`]); FROM base and `--platform`; STOPSIGNAL; USER; VOLUME paths;
//! WORKDIR; ARG names and defaults; RUN `--mount` values (each `key=value`'s value).
//!
//! The bodies of ADD and COPY heredocs whose delimiter was not quoted are expanded too, as
//! BuildKit's `ExpandRaw` does: with [`Lexer::heredoc`] (always `\` as escape, quotes are
//! plain text), so a script keeps its quotes.
//!
//! Not expanded: RUN, CMD and ENTRYPOINT commands (RUN heredocs included: the shell expands
//! them), SHELL, HEALTHCHECK, MAINTAINER, and ONBUILD (its trigger is kept verbatim for the
//! child build).
//!
//! Expansion errors become [`Error::Expand`] at the instruction's location; values that are
//! only checkable after expansion (ports, signals, empty volumes, mounts) become
//! [`Error::Instruction`] there.

use super::Instruction;
use super::commands::{
    Add, Arg, ArgDef, Copy, Env, Expose, From, KeyValue, Label, Run, SourceContent, StopSignal,
    User, Volume, Workdir,
};
use super::mount::{MountError, parse_mount};
use super::validate::{check_port, check_signal};
use crate::error::{Error, Location};
use crate::shell::{self, Lexer};

/// The lexer and environment one instruction is expanded with, plus its location.
struct Ctx<'a> {
    lexer: &'a Lexer,
    env: &'a dyn shell::Env,
    loc: Location,
}

impl Ctx<'_> {
    fn word(&self, w: &str) -> Result<String, Error> {
        self.lexer
            .process_word(w, self.env)
            .map_err(|source| Error::Expand {
                loc: self.loc,
                source,
            })
    }

    fn words(&self, w: &str) -> Result<Vec<String>, Error> {
        self.lexer
            .process_words(w, self.env)
            .map_err(|source| Error::Expand {
                loc: self.loc,
                source,
            })
    }

    fn opt(&self, w: &Option<String>) -> Result<Option<String>, Error> {
        w.as_deref().map(|w| self.word(w)).transpose()
    }

    fn all(&self, ws: &[String]) -> Result<Vec<String>, Error> {
        ws.iter().map(|w| self.word(w)).collect()
    }

    fn pairs(&self, kvs: &[KeyValue]) -> Result<Vec<KeyValue>, Error> {
        kvs.iter()
            .map(|kv| {
                Ok(KeyValue {
                    key: self.word(&kv.key)?,
                    value: self.word(&kv.value)?,
                    no_delim: kv.no_delim,
                })
            })
            .collect()
    }

    /// Heredoc sources: the bodies marked `expand`, with quotes left alone.
    fn contents(&self, contents: &[SourceContent]) -> Result<Vec<SourceContent>, Error> {
        let heredoc = Ctx {
            lexer: &Lexer::heredoc(),
            ..*self
        };
        contents
            .iter()
            .map(|c| {
                let data = if c.expand {
                    heredoc.word(&c.data)?
                } else {
                    c.data.clone()
                };
                Ok(SourceContent { data, ..c.clone() })
            })
            .collect()
    }

    fn invalid(&self, msg: String) -> Error {
        Error::instruction(self.loc, msg)
    }
}

impl Instruction {
    /// Returns a copy with the words BuildKit expands expanded (see the module docs);
    /// instructions that are not expanded are returned unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::Expand`] when a word cannot be expanded; [`Error::Instruction`] when an expanded
    /// value is invalid (EXPOSE port, STOPSIGNAL signal, empty VOLUME, RUN mount). Both at the
    /// instruction's location.
    pub fn expand(&self, lexer: &Lexer, env: &dyn shell::Env) -> Result<Instruction, Error> {
        Ok(match self {
            Instruction::From(c) => Instruction::From(c.expand(lexer, env)?),
            Instruction::Run(c) => Instruction::Run(c.expand(lexer, env)?),
            Instruction::Label(c) => Instruction::Label(c.expand(lexer, env)?),
            Instruction::Expose(c) => Instruction::Expose(c.expand(lexer, env)?),
            Instruction::Env(c) => Instruction::Env(c.expand(lexer, env)?),
            Instruction::Add(c) => Instruction::Add(c.expand(lexer, env)?),
            Instruction::Copy(c) => Instruction::Copy(c.expand(lexer, env)?),
            Instruction::Volume(c) => Instruction::Volume(c.expand(lexer, env)?),
            Instruction::User(c) => Instruction::User(c.expand(lexer, env)?),
            Instruction::Workdir(c) => Instruction::Workdir(c.expand(lexer, env)?),
            Instruction::Arg(c) => Instruction::Arg(c.expand(lexer, env)?),
            Instruction::StopSignal(c) => Instruction::StopSignal(c.expand(lexer, env)?),
            Instruction::Cmd(_)
            | Instruction::Maintainer(_)
            | Instruction::Entrypoint(_)
            | Instruction::Onbuild(_)
            | Instruction::Healthcheck(_)
            | Instruction::Shell(_) => self.clone(),
        })
    }
}

/// Generates the doc-commented `expand` method of one instruction struct.
macro_rules! expand_method {
    ($ty:ident, $what:literal, |$ctx:ident, $this:ident| $body:expr) => {
        impl $ty {
            #[doc = concat!("Expands ", $what, ".")]
            ///
            /// # Errors
            ///
            /// [`Error::Expand`] (or [`Error::Instruction`] for a value invalid once expanded)
            /// at the instruction's location.
            pub fn expand(&self, lexer: &Lexer, env: &dyn shell::Env) -> Result<$ty, Error> {
                let $ctx = Ctx {
                    lexer,
                    env,
                    loc: self.loc,
                };
                let $this = self;
                $body
            }
        }
    };
}

expand_method!(From, "the base image and `--platform`", |ctx, c| {
    Ok(From {
        base: ctx.word(&c.base)?,
        platform: ctx.opt(&c.platform)?,
        ..c.clone()
    })
});

expand_method!(
    Run,
    "the `--mount` values (the command is never expanded)",
    |ctx, c| {
        let expander = |w: &str| ctx.word(w).map_err(expand_error_to_mount);
        let mut mounts = Vec::with_capacity(c.mounts.len());
        for m in &c.mounts {
            let parsed = parse_mount(&m.spec, Some(&expander)).map_err(|e| match e {
                MountError::Invalid(msg) => ctx.invalid(format!("RUN --mount={}: {msg}", m.spec)),
                MountError::Expand(source) => Error::Expand {
                    loc: ctx.loc,
                    source,
                },
            })?;
            mounts.push(parsed);
        }
        Ok(Run {
            mounts,
            ..c.clone()
        })
    }
);

expand_method!(Label, "label keys and values", |ctx, c| {
    Ok(Label {
        labels: ctx.pairs(&c.labels)?,
        ..c.clone()
    })
});

expand_method!(Env, "variable names and values", |ctx, c| {
    Ok(Env {
        vars: ctx.pairs(&c.vars)?,
        ..c.clone()
    })
});

expand_method!(
    Expose,
    "the ports, with word splitting, and checks them",
    |ctx, c| {
        let mut ports = Vec::new();
        for p in &c.ports {
            for word in ctx.words(p)? {
                check_port(&word).map_err(|m| ctx.invalid(m))?;
                ports.push(word);
            }
        }
        Ok(Expose { ports, ..c.clone() })
    }
);

expand_method!(
    Add,
    "sources, heredoc bodies, destination, `--chown`, `--chmod` and `--checksum`",
    |ctx, c| {
        Ok(Add {
            sources: ctx.all(&c.sources)?,
            contents: ctx.contents(&c.contents)?,
            dest: ctx.word(&c.dest)?,
            chown: ctx.opt(&c.chown)?,
            chmod: ctx.opt(&c.chmod)?,
            checksum: ctx.opt(&c.checksum)?,
            ..c.clone()
        })
    }
);

expand_method!(
    Copy,
    "sources, heredoc bodies, destination, `--from`, `--chown` and `--chmod`",
    |ctx, c| {
        Ok(Copy {
            sources: ctx.all(&c.sources)?,
            contents: ctx.contents(&c.contents)?,
            dest: ctx.word(&c.dest)?,
            from: ctx.opt(&c.from)?,
            chown: ctx.opt(&c.chown)?,
            chmod: ctx.opt(&c.chmod)?,
            ..c.clone()
        })
    }
);

expand_method!(Volume, "each path and rejects empty results", |ctx, c| {
    let volumes = ctx.all(&c.volumes)?;
    if volumes.iter().any(|v| v.is_empty()) {
        return Err(ctx.invalid("VOLUME specified can not be an empty string".into()));
    }
    Ok(Volume {
        volumes,
        ..c.clone()
    })
});

expand_method!(User, "the user", |ctx, c| {
    Ok(User {
        user: ctx.word(&c.user)?,
        ..c.clone()
    })
});

expand_method!(Workdir, "the path", |ctx, c| {
    Ok(Workdir {
        path: ctx.word(&c.path)?,
        ..c.clone()
    })
});

expand_method!(Arg, "names and default values", |ctx, c| {
    let args = c
        .args
        .iter()
        .map(|a| {
            Ok(ArgDef {
                key: ctx.word(&a.key)?,
                value: ctx.opt(&a.value)?,
                comment: a.comment.clone(),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Arg { args, ..c.clone() })
});

expand_method!(StopSignal, "the signal and checks it", |ctx, c| {
    let signal = ctx.word(&c.signal)?;
    check_signal(&signal).map_err(|m| ctx.invalid(m))?;
    Ok(StopSignal {
        signal,
        ..c.clone()
    })
});

/// Mount parsing reports expansion failures through its own error type.
fn expand_error_to_mount(e: Error) -> MountError {
    match e {
        Error::Expand { source, .. } => MountError::Expand(source),
        other => MountError::Invalid(other.message()),
    }
}
