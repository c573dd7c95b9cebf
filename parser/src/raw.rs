//! PLACEHOLDER (being replaced by the raw-layer implementation).
use crate::ast::RawDockerfile;
use crate::error::{Error, Location};

pub fn parse(_src: &str) -> Result<RawDockerfile, Error> {
    Err(Error::syntax(Location::new(1, 1, 1), "raw parser not written yet"))
}

pub fn parse_bytes(src: &[u8]) -> Result<RawDockerfile, Error> {
    parse(std::str::from_utf8(src).unwrap_or_default())
}
