//! Named crash points for crash-safety tests.
//!
//! `STRATA_FAILPOINT=<name>` makes the process abort (`std::process::abort`, as abrupt as
//! `kill -9` for the on-disk state) when it reaches [`hit`]`(name)`. The variable is read once.
//! Names: `blob.after-write`, `blob.after-fsync`, `blob.after-rename`, `blob.before-dir-fsync`,
//! `layer.after-objects`, `layer.after-syncfs`, `layer.before-rename`, `ref.after-temp-write`,
//! `ref.before-rename`.

use std::sync::OnceLock;

/// The environment variable naming the failpoint to abort at.
pub const ENV: &str = "STRATA_FAILPOINT";

static ACTIVE: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process if `STRATA_FAILPOINT` equals `name`; otherwise does nothing.
pub fn hit(name: &str) {
    let active = ACTIVE.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()));
    if active.as_deref() == Some(name) {
        eprintln!("strata: failpoint {name} hit, aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_name_does_nothing() {
        super::hit("no.such.failpoint.ever");
    }
}
