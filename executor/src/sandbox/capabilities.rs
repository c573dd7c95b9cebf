//! Docker's `--cap-add`, `--cap-drop` and `--privileged` applied to a spec.

use oci_spec::runtime::{Capabilities, Capability, Spec};

use crate::error::{Error, Result};

/// One `--cap-add`/`--cap-drop` word: a capability, or `ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    All,
    Cap(Capability),
}

/// Parses docker's spelling: case-insensitive, with or without `CAP_`, or `ALL`.
fn parse(name: &str) -> Result<Word> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(Word::All);
    }
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map(Word::Cap)
        .map_err(|_| Error::Sandbox(format!("unknown capability: {name:?}")))
}

/// Every capability strata itself holds (permitted): what "ALL" and `--privileged` grant (a
/// container can't get more than its runtime has).
fn held() -> Capabilities {
    caps::read(None, caps::CapSet::Permitted)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            c.to_string()
                .strip_prefix("CAP_")
                .and_then(|b| b.parse::<Capability>().ok())
        })
        .collect()
}

/// Sets the bounding set to `caps`, and effective and permitted too when the process runs
/// as uid 0 (a non-root process gets none, as Docker does).
fn set_all(spec: &mut Spec, caps: Capabilities) {
    if let Some(process) = spec.process_mut() {
        let root = process.user().uid() == 0;
        let mut c = process.capabilities().clone().unwrap_or_default();
        let granted = if root {
            caps.clone()
        } else {
            Capabilities::new()
        };
        c.set_bounding(Some(caps));
        c.set_effective(Some(granted.clone()));
        c.set_permitted(Some(granted));
        process.set_capabilities(Some(c));
    }
}

/// Applies Docker's `--cap-add` and `--cap-drop` to the spec's capabilities (as moby's
/// `TweakCapabilities`): with `ALL` in `add`, every capability but the dropped ones; with
/// `ALL` in `drop`, only the added ones; otherwise the current bounding set minus `drop`
/// plus `add`. The bounding set and (for uid 0) the effective and permitted sets change.
///
/// # Errors
/// An unknown capability name (nothing is changed then).
pub fn adjust_capabilities(spec: &mut Spec, add: &[String], drop: &[String]) -> Result<()> {
    if add.is_empty() && drop.is_empty() {
        return Ok(());
    }
    let add = add.iter().map(|n| parse(n)).collect::<Result<Vec<_>>>()?;
    let drop = drop.iter().map(|n| parse(n)).collect::<Result<Vec<_>>>()?;
    let caps_of = |words: &[Word]| -> Capabilities {
        words
            .iter()
            .filter_map(|w| match w {
                Word::Cap(c) => Some(*c),
                Word::All => None,
            })
            .collect()
    };
    let (added, dropped) = (caps_of(&add), caps_of(&drop));
    let result: Capabilities = if add.contains(&Word::All) {
        held()
            .into_iter()
            .filter(|c| !dropped.contains(c))
            .collect()
    } else if drop.contains(&Word::All) {
        added
    } else {
        let current = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().clone())
            .unwrap_or_default();
        current
            .into_iter()
            .filter(|c| !dropped.contains(c))
            .chain(added)
            .collect()
    };
    set_all(spec, result);
    Ok(())
}

/// Docker's `--privileged` (and RUN `--security=insecure`): every capability strata holds in
/// every set a root process gets, no seccomp filter, no masked or read-only paths.
pub fn make_privileged(spec: &mut Spec) {
    if let Some(process) = spec.process_mut()
        && let Some(mut c) = process.capabilities().clone()
    {
        let all = held();
        c.set_bounding(Some(all.clone()));
        c.set_effective(Some(all.clone()));
        c.set_permitted(Some(all));
        process.set_capabilities(Some(c));
    }
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(None);
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Network, default_spec};

    fn spec(uid: u32) -> Result<Spec> {
        default_spec(
            std::path::Path::new("/r"),
            vec!["true".into()],
            vec![],
            "/",
            uid,
            uid,
            vec![],
            "h",
            Network::Host,
        )
    }

    fn sets(spec: &Spec) -> (Capabilities, Capabilities, Capabilities) {
        let c = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().clone())
            .unwrap_or_default();
        (
            c.bounding().clone().unwrap_or_default(),
            c.effective().clone().unwrap_or_default(),
            c.permitted().clone().unwrap_or_default(),
        )
    }

    #[test]
    fn add_and_drop_change_bounding_and_effective() -> Result<()> {
        let mut s = spec(0)?;
        adjust_capabilities(
            &mut s,
            &["sys_admin".into(), "CAP_NET_ADMIN".into()],
            &["Chown".into(), "cap_kill".into()],
        )?;
        let (b, e, p) = sets(&s);
        assert_eq!(b, e);
        assert_eq!(b, p);
        assert_eq!(b.len(), 14);
        assert!(b.contains(&Capability::SysAdmin) && b.contains(&Capability::NetAdmin));
        assert!(!b.contains(&Capability::Chown) && !b.contains(&Capability::Kill));

        let mut s = spec(0)?;
        adjust_capabilities(&mut s, &["net_raw".into()], &["ALL".into()])?;
        let (b, e, _) = sets(&s);
        assert_eq!(b, [Capability::NetRaw].into_iter().collect());
        assert_eq!(e, b);

        // A non-root process keeps empty effective/permitted sets.
        let mut s = spec(1000)?;
        adjust_capabilities(&mut s, &[], &["all".into()])?;
        let (b, e, p) = sets(&s);
        assert!(b.is_empty() && e.is_empty() && p.is_empty());
        Ok(())
    }

    #[test]
    fn unknown_names_are_refused_and_change_nothing() -> Result<()> {
        let mut s = spec(0)?;
        let before = sets(&s);
        let e = adjust_capabilities(&mut s, &["CAP_FLY".into()], &[])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("sandbox: unknown capability: \"CAP_FLY\"")
        );
        assert_eq!(sets(&s), before);
        Ok(())
    }

    #[test]
    fn privileged_drops_the_filters() -> Result<()> {
        let mut s = spec(0)?;
        make_privileged(&mut s);
        let linux = s.linux().clone().unwrap_or_default();
        assert!(linux.seccomp().is_none() && linux.masked_paths().is_none());
        Ok(())
    }
}
