//! `strata debug parse` and `strata debug expand`.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use strata_parser::shell::Lexer;
use strata_parser::{Dockerfile, RawDockerfile};

use crate::Failure;
use crate::cli::{ExpandArgs, ParseArgs, ParseFormat};
use crate::diagnostic::{self, Severity};

/// Parses a Dockerfile and prints the BuildKit dump or the typed JSON.
///
/// # Errors
/// An unreadable file, or a parse error (already printed as a diagnostic).
pub fn parse(args: &ParseArgs) -> Result<(), Failure> {
    let (name, bytes) = read_input(&args.file)?;
    let src = String::from_utf8_lossy(&bytes);
    let parsed = match args.format {
        ParseFormat::Buildkit => strata_parser::parse_bytes(&bytes).map(Parsed::Raw),
        ParseFormat::Json => strata_parser::parse_bytes(&bytes)
            .and_then(Dockerfile::from_raw)
            .map(|df| Parsed::Typed(Box::new(df))),
    };
    let parsed = parsed.map_err(|err| {
        let message = err.message();
        eprint!(
            "{}",
            diagnostic::render(&name, &src, err.location(), Severity::Error, &message)
        );
        Failure::Reported
    })?;
    let (output, warnings) = match parsed {
        Parsed::Raw(raw) => (raw.dump(), raw.warnings),
        Parsed::Typed(df) => (
            serde_json::to_string_pretty(&df).context("cannot serialize the instructions")?,
            df.warnings,
        ),
    };
    for w in &warnings {
        let message = format!("{} ({})", w.message, w.rule);
        eprint!(
            "{}",
            diagnostic::render(&name, &src, w.loc, Severity::Warning, &message)
        );
    }
    println!("{output}");
    Ok(())
}

/// Expands one word with the given variables and prints it.
///
/// # Errors
/// Malformed input (`${}`, an unterminated quote or brace, `${V:?msg}` on an unset variable).
pub fn expand(args: &ExpandArgs) -> Result<(), Failure> {
    let env: Vec<(String, String)> = args.env.clone();
    let word = Lexer::new(args.escape)
        .process_word(&args.word, &env)
        .with_context(|| format!("cannot expand {:?}", args.word))?;
    println!("{word}");
    Ok(())
}

/// What `debug parse` produced, before printing.
enum Parsed {
    Raw(RawDockerfile),
    Typed(Box<Dockerfile>),
}

/// Reads FILE, or stdin for `-`; returns the name to show in diagnostics and the bytes.
fn read_input(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the Dockerfile from stdin")?;
        return Ok(("<stdin>".to_string(), bytes));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((path.display().to_string(), bytes))
}
