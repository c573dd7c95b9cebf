//! The stage DAG: which stages a build needs, in which order, and what each depends on.
//!
//! [`plan`] takes the parser's [`Dockerfile`] and the [`BuildOptions`]:
//!
//! 1. Meta ARGs (before the first FROM) get their values: `--build-arg` beats the default, and
//!    defaults expand with the earlier meta ARGs and the predefined platform args. They are
//!    visible in FROM lines only; a stage sees one only after redeclaring it (`ARG NAME`).
//! 2. Each FROM expands with them. A base naming an earlier stage (case-insensitive) makes that
//!    stage a dependency; `scratch` is the empty base; anything else is an image.
//! 3. `COPY --from` and `RUN --mount from=` add dependencies: a stage name, a stage index, or
//!    an image. Their values expand with the stage's ARGs and ENVs declared so far (the base
//!    image's environment is not known before it is resolved; the executor expands again with
//!    the full environment).
//! 4. The target (`--target`, default the last stage) and everything it reaches are needed, in
//!    dependency order; nothing else is built, so an unneeded broken stage never runs.
//!
//! Build args that no ARG declares are reported for BuildKit's warning.

use std::collections::{BTreeMap, BTreeSet};

use strata_parser::instructions::{ArgDef, MountType};
use strata_parser::shell::Lexer;
use strata_parser::{Dockerfile, Instruction, Location, Stage};

use crate::args::{Platform, is_predefined};
use crate::error::{Error, Result};

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `--build-arg` values (`K` without a value is resolved by the caller from its
    /// environment; unset ones are left out).
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform` (the target platform); the build platform is the host's.
    pub platform: Platform,
}

/// Where a stage starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// `FROM <earlier stage>`.
    Stage(usize),
    /// `FROM <image>`, the expanded reference.
    Image(String),
}

/// What a `--from` (COPY or RUN --mount) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRef {
    /// A stage of this Dockerfile, by index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// One stage with its resolved base and dependencies.
#[derive(Debug, Clone)]
pub struct PlannedStage {
    /// The stage's index in the Dockerfile.
    pub index: usize,
    /// The parsed stage (instructions unexpanded).
    pub stage: Stage,
    /// The expanded base.
    pub base: Base,
    /// The expanded `FROM --platform`, if given.
    pub platform: Option<String>,
    /// Stages this one needs (base, `COPY --from`, `RUN --mount from=`).
    pub deps: BTreeSet<usize>,
}

impl PlannedStage {
    /// `[name]` or the stage index, as BuildKit labels steps (`[build 2/5]`, `[stage-1 1/3]`).
    pub fn label(&self) -> String {
        match &self.stage.name {
            Some(n) => n.clone(),
            None => format!("stage-{}", self.index),
        }
    }
}

/// The result of planning.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every stage, in Dockerfile order.
    pub stages: Vec<PlannedStage>,
    /// The stages to build, dependencies first, the target last.
    pub order: Vec<usize>,
    /// The target stage.
    pub target: usize,
    /// The meta ARGs with their values (declared before the first FROM), in order.
    pub meta_args: Vec<(String, Option<String>)>,
    /// `--build-arg` names that no ARG declares (BuildKit warns about them).
    pub unused_build_args: Vec<String>,
    /// The escape character of the Dockerfile.
    pub escape: char,
}

impl Plan {
    /// Resolves a `--from` value (already expanded) seen in stage `current`: a stage name
    /// (case-insensitive), a stage index below `current`, or an image.
    ///
    /// # Errors
    /// An index that is not an earlier stage.
    pub fn resolve_from(&self, value: &str, current: usize, loc: Location) -> Result<FromRef> {
        resolve_from(&self.stages_view(), value, current, loc)
    }

    fn stages_view(&self) -> Vec<Option<String>> {
        self.stages.iter().map(|s| s.stage.name.clone()).collect()
    }
}

fn resolve_from(
    names: &[Option<String>],
    value: &str,
    current: usize,
    loc: Location,
) -> Result<FromRef> {
    if let Some(i) = names[..current]
        .iter()
        .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(value)))
    {
        return Ok(FromRef::Stage(i));
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let i: usize = value.parse().map_err(|_| Error::At {
            loc,
            message: format!("invalid stage index {value:?}"),
        })?;
        if i >= current {
            return Err(Error::At {
                loc,
                message: format!(
                    "invalid from flag value {value}: refers to current or future build stage"
                ),
            });
        }
        return Ok(FromRef::Stage(i));
    }
    if names
        .iter()
        .any(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(value)))
    {
        return Err(Error::At {
            loc,
            message: format!("stage {value:?} is used before it is defined"),
        });
    }
    Ok(FromRef::Image(value.to_string()))
}

/// Values of ARGs as a stage declares them: `--build-arg` wins, then the default (expanded
/// with what is visible so far), then the meta ARG of that name (for `ARG NAME` redeclaring a
/// meta ARG). `None`: declared without any value.
pub fn arg_value(
    def: &ArgDef,
    build_args: &BTreeMap<String, String>,
    meta: &[(String, Option<String>)],
) -> Option<String> {
    if let Some(v) = build_args.get(&def.key) {
        return Some(v.clone());
    }
    if let Some(v) = &def.value {
        return Some(v.clone());
    }
    meta.iter()
        .rev()
        .find(|(k, _)| *k == def.key)
        .and_then(|(_, v)| v.clone())
}

/// Plans a build (see the module docs).
///
/// # Errors
/// Expansion errors in FROM, ARG or `--from` values; an unknown `--target`; a `--from` index
/// that is not an earlier stage.
pub fn plan(df: &Dockerfile, opts: &BuildOptions) -> Result<Plan> {
    if df.stages.is_empty() {
        return Err(Error::Option(
            "the Dockerfile has no build stage (no FROM instruction)".into(),
        ));
    }
    let escape = df.directives.escape;
    let lexer = Lexer::new(escape);
    let host = Platform::host();
    let mut declared: BTreeSet<String> = BTreeSet::new();

    // 1. meta ARGs: visible in FROM lines, with the predefined platform args.
    let mut meta: Vec<(String, Option<String>)> = Vec::new();
    let mut from_env: Vec<(String, String)> = crate::args::predefined(&opts.platform, &host);
    for arg in &df.meta_args {
        let expanded = Instruction::Arg(arg.clone()).expand(&lexer, &from_env)?;
        let Instruction::Arg(arg) = expanded else {
            continue;
        };
        for def in &arg.args {
            declared.insert(def.key.clone());
            let v = arg_value(def, &opts.build_args, &[]);
            if let Some(v) = &v {
                from_env.push((def.key.clone(), v.clone()));
            }
            meta.push((def.key.clone(), v));
        }
    }

    let names: Vec<Option<String>> = df.stages.iter().map(|s| s.name.clone()).collect();
    let mut stages = Vec::with_capacity(df.stages.len());
    for (index, stage) in df.stages.iter().enumerate() {
        // 2. FROM
        let from = stage.expand_from(&lexer, &from_env)?;
        let base = if from.base.eq_ignore_ascii_case("scratch") {
            Base::Scratch
        } else if let Some(i) = names[..index].iter().position(|n| {
            n.as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&from.base))
        }) {
            Base::Stage(i)
        } else if from.base.is_empty() {
            return Err(Error::At {
                loc: stage.loc,
                message: "base name (FROM) should not be blank".into(),
            });
        } else {
            Base::Image(from.base.clone())
        };
        let mut deps = BTreeSet::new();
        if let Base::Stage(i) = base {
            deps.insert(i);
        }
        // 3. --from dependencies, expanded with the stage's ARGs/ENVs so far.
        let mut env: Vec<(String, String)> = Vec::new();
        let mut push_from = |value: &str, loc: Location, deps: &mut BTreeSet<usize>| {
            resolve_from(&names, value, index, loc).map(|r| {
                if let FromRef::Stage(i) = r {
                    deps.insert(i);
                }
            })
        };
        for ins in &stage.instructions {
            collect_deps(
                ins,
                &lexer,
                &mut env,
                &mut declared,
                opts,
                &meta,
                &mut deps,
                &mut push_from,
            )?;
        }
        stages.push(PlannedStage {
            index,
            stage: stage.clone(),
            base,
            platform: from.platform,
            deps,
        });
    }

    // 4. target and reachability
    let target = match &opts.target {
        None => stages.len() - 1,
        Some(t) => df
            .stage(t)
            .map(|(i, _)| i)
            .ok_or_else(|| Error::UnknownTarget {
                target: t.clone(),
                stages: names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n.clone().unwrap_or_else(|| i.to_string()))
                    .collect(),
            })?,
    };
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    visit(&stages, target, &mut seen, &mut order);

    let unused_build_args = opts
        .build_args
        .keys()
        .filter(|k| !declared.contains(*k) && !is_predefined(k))
        .cloned()
        .collect();
    Ok(Plan {
        stages,
        order,
        target,
        meta_args: meta,
        unused_build_args,
        escape,
    })
}

/// Post-order walk: dependencies before the stage (indices only go down, so no cycles).
fn visit(stages: &[PlannedStage], i: usize, seen: &mut BTreeSet<usize>, order: &mut Vec<usize>) {
    if !seen.insert(i) {
        return;
    }
    for &d in &stages[i].deps {
        visit(stages, d, seen, order);
    }
    order.push(i);
}

#[allow(clippy::too_many_arguments)]
fn collect_deps(
    ins: &Instruction,
    lexer: &Lexer,
    env: &mut Vec<(String, String)>,
    declared: &mut BTreeSet<String>,
    opts: &BuildOptions,
    meta: &[(String, Option<String>)],
    deps: &mut BTreeSet<usize>,
    push_from: &mut impl FnMut(&str, Location, &mut BTreeSet<usize>) -> Result<()>,
) -> Result<()> {
    match ins {
        Instruction::Arg(_) | Instruction::Env(_) => {
            let Ok(expanded) = ins.expand(lexer, &*env) else {
                return Ok(());
            };
            match expanded {
                Instruction::Arg(a) => {
                    for def in &a.args {
                        declared.insert(def.key.clone());
                        if let Some(v) = arg_value(def, &opts.build_args, meta) {
                            env.push((def.key.clone(), v));
                        }
                    }
                }
                Instruction::Env(e) => {
                    for kv in &e.vars {
                        env.push((kv.key.clone(), kv.value.clone()));
                    }
                }
                _ => {}
            }
        }
        Instruction::Copy(c) => {
            if let Some(from) = &c.from {
                let value = lexer
                    .process_word(from, &*env)
                    .map_err(|source| strata_parser::Error::Expand { loc: c.loc, source })?;
                push_from(&value, c.loc, deps)?;
            }
        }
        Instruction::Run(r) => {
            let expanded = ins.expand(lexer, &*env)?;
            if let Instruction::Run(e) = expanded {
                for m in &e.mounts {
                    if let (Some(from), MountType::Bind | MountType::Cache) = (&m.from, m.kind) {
                        push_from(from, r.loc, deps)?;
                    }
                }
            }
        }
        Instruction::Onbuild(_) => {}
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use strata_parser::parse_dockerfile;

    use super::*;

    fn planned(src: &str, opts: &BuildOptions) -> Plan {
        plan(&parse_dockerfile(src).unwrap(), opts).unwrap()
    }

    #[test]
    fn only_what_the_target_needs_in_dependency_order() {
        let src = "FROM busybox AS a\nRUN exit 1\nFROM busybox AS b\nRUN true\n\
                   FROM b AS c\nCOPY --from=0 /x /y\nFROM scratch\nCOPY --from=b / /\n";
        let p = planned(src, &BuildOptions::default());
        assert_eq!(p.target, 3);
        assert_eq!(p.order, vec![1, 3], "stage a (broken) and c are not needed");
        let p = planned(
            src,
            &BuildOptions {
                target: Some("C".into()),
                ..Default::default()
            },
        );
        assert_eq!(p.order, vec![0, 1, 2]);
        assert_eq!(p.stages[2].base, Base::Stage(1));
        assert_eq!(p.stages[3].base, Base::Scratch);
        assert_eq!(p.stages[0].base, Base::Image("busybox".into()));
    }

    #[test]
    fn unknown_target_lists_the_stages() {
        let df = parse_dockerfile("FROM busybox AS a\nFROM busybox\n").unwrap();
        let err = plan(
            &df,
            &BuildOptions {
                target: Some("nope".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "target stage \"nope\" could not be found; the stages are: a, 1"
        );
    }

    #[test]
    fn meta_args_expand_from_lines_and_build_args_win() {
        let src = "ARG TAG=1\nARG IMG=base:${TAG}\nFROM ${IMG} AS x\nARG TAG\n\
                   FROM $TARGETARCH-img\n";
        let p = planned(src, &BuildOptions::default());
        assert_eq!(p.stages[0].base, Base::Image("base:1".into()));
        assert_eq!(p.stages[1].base, Base::Image("amd64-img".into()));
        let mut args = BTreeMap::new();
        args.insert("TAG".to_string(), "2".to_string());
        args.insert("UNUSED".to_string(), "x".to_string());
        args.insert("HTTP_PROXY".to_string(), "x".to_string());
        let p = planned(
            src,
            &BuildOptions {
                build_args: args,
                ..Default::default()
            },
        );
        assert_eq!(p.stages[0].base, Base::Image("base:2".into()));
        assert_eq!(p.unused_build_args, vec!["UNUSED".to_string()]);
    }

    #[test]
    fn from_values_expand_with_stage_args_and_check_indexes() {
        let src = "FROM busybox AS one\nFROM busybox\nARG SRC=one\n\
                   COPY --from=${SRC} /a /b\nRUN --mount=type=bind,from=0,target=/m true\n";
        let p = planned(src, &BuildOptions::default());
        assert_eq!(p.stages[1].deps, BTreeSet::from([0]));
        let df = parse_dockerfile("FROM busybox\nCOPY --from=0 /a /b\n").unwrap();
        let err = plan(&df, &BuildOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("current or future build stage"),
            "{err}"
        );
        let df = parse_dockerfile("FROM busybox\nCOPY --from=later /a /b\nFROM busybox AS later\n")
            .unwrap();
        let err = plan(&df, &BuildOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("used before it is defined"),
            "{err}"
        );
        assert!(err.to_string().starts_with("2:1"), "{err}");
    }
}
