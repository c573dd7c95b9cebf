//! Where strata keeps its state: `--root`, else `STRATA_ROOT` (both handled by clap), else
//! `/var/lib/strata` for root and `$XDG_DATA_HOME/strata` (falling back to
//! `$HOME/.local/share/strata`) for everyone else.

use std::path::{Path, PathBuf};

/// The root in effect for this process.
pub fn resolve(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        // Absolute: overlay mounts, container bundles and detached supervisors use the paths
        // under it from other working directories.
        return std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    }
    default_root(
        nix::unistd::geteuid().is_root(),
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// The default root, from the facts it depends on (kept pure for tests).
fn default_root(is_root: bool, xdg_data_home: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    if is_root {
        return PathBuf::from("/var/lib/strata");
    }
    // The XDG spec says a relative $XDG_DATA_HOME is invalid and must be ignored.
    match (xdg_data_home.filter(|p| p.is_absolute()), home) {
        (Some(xdg), _) => xdg.join("strata"),
        (None, Some(home)) => home.join(".local/share/strata"),
        (None, None) => PathBuf::from("/var/lib/strata"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_user_uses_var_lib() {
        let got = default_root(true, Some("/x".into()), Some("/home/u".into()));
        assert_eq!(got, PathBuf::from("/var/lib/strata"));
    }

    #[test]
    fn other_users_use_xdg_data_home() {
        let got = default_root(false, Some("/data".into()), Some("/home/u".into()));
        assert_eq!(got, PathBuf::from("/data/strata"));
    }

    #[test]
    fn relative_xdg_is_ignored() {
        let got = default_root(false, Some("rel".into()), Some("/home/u".into()));
        assert_eq!(got, PathBuf::from("/home/u/.local/share/strata"));
    }

    #[test]
    fn relative_root_is_made_absolute() -> std::io::Result<()> {
        let cwd = std::env::current_dir()?;
        assert_eq!(resolve(Some(Path::new("r/s"))), cwd.join("r/s"));
        Ok(())
    }

    #[test]
    fn explicit_root_wins() {
        assert_eq!(resolve(Some(Path::new("/r"))), PathBuf::from("/r"));
    }
}
