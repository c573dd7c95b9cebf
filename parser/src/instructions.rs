//! PLACEHOLDER (being replaced by the typed layer).
use serde::Serialize;

use crate::ast::{Directives, Warning};
use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Instruction {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub directives: Directives,
    pub stages: Vec<Stage>,
    pub warnings: Vec<Warning>,
}

pub fn parse_dockerfile(src: &str) -> Result<Dockerfile, Error> {
    let raw = crate::raw::parse(src)?;
    Ok(Dockerfile { directives: raw.directives, stages: vec![], warnings: raw.warnings })
}
