//! Users and groups of an image: `/etc/passwd` and `/etc/group` parsed in Rust, read through a
//! [`LayerView`] (never NSS, never a program from the image).
//!
//! Two sets of rules, as Docker has two:
//!
//! - [`resolve_user`] is USER (runc's `GetExecUser`): `name`, `uid`, `name:group`, `uid:gid`; the
//!   first passwd line whose name or uid equals the user part wins; a name that matches nothing is
//!   an error ("unable to find user X: no matching entries in passwd file"); a numeric uid that
//!   matches nothing is fine, with gid 0; a group part is looked up the same way in `/etc/group`
//!   (numeric allowed when missing); without a group part, the supplementary groups are those
//!   listing the user's name as a member.
//! - [`resolve_chown`] is `--chown` (BuildKit's file op `readUser`): a numeric user without a group
//!   uses the same number as gid; a user name is looked up by name only and takes its primary
//!   group; a group name is looked up by name in `/etc/group`. BuildKit treats a missing file or a
//!   name with no entry as "not found" and keeps the ids it has so far (0 for an unknown user, the
//!   user's gid for an unknown group); strata does the same.

use super::LayerView;
use crate::error::{Error, Result};

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Member names.
    pub members: Vec<String>,
}

/// Parses `/etc/passwd` text; malformed lines (too few fields, bad ids) are skipped, as runc does
/// for lines it cannot parse.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).copied().unwrap_or("").to_owned(),
                shell: f.get(6).copied().unwrap_or("").to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group` text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn passwd(view: &LayerView) -> Result<Vec<PasswdEntry>> {
    Ok(view
        .read_file("/etc/passwd")?
        .map(|b| parse_passwd(&String::from_utf8_lossy(&b)))
        .unwrap_or_default())
}

fn groups(view: &LayerView) -> Result<Vec<GroupEntry>> {
    Ok(view
        .read_file("/etc/group")?
        .map(|b| parse_group(&String::from_utf8_lossy(&b)))
        .unwrap_or_default())
}

fn numeric(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The process identity of `USER spec`: `(uid, gid, additional gids)`.
///
/// # Errors
/// [`Error::User`] for a user or group name that matches no entry, an empty spec; I/O errors
/// reading the files.
pub fn resolve_user(view: &LayerView, spec: &str) -> Result<(u32, u32, Vec<u32>)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(Error::User(format!("invalid user {spec:?}")));
    }
    let users = passwd(view)?;
    let found = users
        .iter()
        .find(|u| u.name == user || numeric(user) == Some(u.uid));
    let (uid, mut gid, name) = match (found, numeric(user)) {
        (Some(u), _) => (u.uid, u.gid, Some(u.name.as_str())),
        (None, Some(uid)) => (uid, 0, None),
        (None, None) => {
            return Err(Error::User(format!(
                "unable to find user {user}: no matching entries in passwd file"
            )));
        }
    };
    let groups = groups(view)?;
    let mut additional = Vec::new();
    match group {
        Some(g) if !g.is_empty() => {
            match (
                groups
                    .iter()
                    .find(|e| e.name == g || numeric(g) == Some(e.gid)),
                numeric(g),
            ) {
                (Some(e), _) => gid = e.gid,
                (None, Some(n)) => gid = n,
                (None, None) => {
                    return Err(Error::User(format!(
                        "unable to find group {g}: no matching entries in group file"
                    )));
                }
            }
        }
        _ => {
            if let Some(name) = name {
                for g in &groups {
                    if g.members.iter().any(|m| m == name) && !additional.contains(&g.gid) {
                        additional.push(g.gid);
                    }
                }
            }
        }
    }
    Ok((uid, gid, additional))
}

/// The owner of `--chown=spec` files: `(uid, gid)`; see the module docs for BuildKit's rules.
///
/// # Errors
/// [`Error::User`] for an empty spec; I/O errors reading the files.
pub fn resolve_chown(view: &LayerView, spec: &str) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if spec.is_empty() {
        return Err(Error::User("invalid empty --chown".into()));
    }
    let (mut uid, mut gid) = (0, 0);
    if !user.is_empty() {
        if let Some(n) = numeric(user) {
            (uid, gid) = (n, n);
        } else if let Some(u) = passwd(view)?.into_iter().find(|u| u.name == user) {
            (uid, gid) = (u.uid, u.gid);
        }
    }
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        if let Some(n) = numeric(g) {
            gid = n;
        } else if let Some(e) = groups(view)?.into_iter().find(|e| e.name == g) {
            gid = e.gid;
        }
    }
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    fn image() -> (tempfile::TempDir, LayerView) {
        let d = tempfile::tempdir().unwrap();
        let l = d.path().join("l");
        fs::create_dir_all(l.join("etc")).unwrap();
        fs::create_dir_all(l.join("real")).unwrap();
        fs::write(
            l.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             # comment\n\
             broken line\n\
             app:x:1000:1001:App:/home/app:/bin/sh\n\
             1234:x:42:43::/:/bin/false\n\
             nobody:x:65534:65534:nobody:/:/sbin/nologin\n",
        )
        .unwrap();
        // /etc/group is a symlink resolved inside the image.
        fs::write(
            l.join("real/group"),
            "root:x:0:\nstaff:x:50:app,other\nappgrp:x:1001:\nwheel:x:10:root,app\n",
        )
        .unwrap();
        symlink("/real/group", l.join("etc/group")).unwrap();
        let v = LayerView::new(vec![l]);
        (d, v)
    }

    #[test]
    fn user_instruction_rules() {
        let (_d, v) = image();
        assert_eq!(resolve_user(&v, "root").unwrap(), (0, 0, vec![10]));
        assert_eq!(resolve_user(&v, "app").unwrap(), (1000, 1001, vec![50, 10]));
        assert_eq!(
            resolve_user(&v, "1000").unwrap(),
            (1000, 1001, vec![50, 10])
        );
        assert_eq!(resolve_user(&v, "app:staff").unwrap(), (1000, 50, vec![]));
        assert_eq!(resolve_user(&v, "app:77").unwrap(), (1000, 77, vec![]));
        assert_eq!(resolve_user(&v, "5000").unwrap(), (5000, 0, vec![]));
        assert_eq!(resolve_user(&v, "5000:5001").unwrap(), (5000, 5001, vec![]));
        // A name that looks numeric matches by name first (line order).
        assert_eq!(resolve_user(&v, "1234").unwrap(), (42, 43, vec![]));
        let e = resolve_user(&v, "ghost").unwrap_err().to_string();
        assert_eq!(
            e,
            "unable to find user ghost: no matching entries in passwd file"
        );
        let e = resolve_user(&v, "app:ghosts").unwrap_err().to_string();
        assert_eq!(
            e,
            "unable to find group ghosts: no matching entries in group file"
        );
        // scratch: numeric ids only
        let s = LayerView::empty();
        assert_eq!(resolve_user(&s, "10:20").unwrap(), (10, 20, vec![]));
        assert!(resolve_user(&s, "root").is_err());
    }

    #[test]
    fn chown_rules() {
        let (_d, v) = image();
        assert_eq!(resolve_chown(&v, "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_chown(&v, "55").unwrap(), (55, 55));
        assert_eq!(resolve_chown(&v, "55:66").unwrap(), (55, 66));
        assert_eq!(resolve_chown(&v, "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_chown(&v, "10:staff").unwrap(), (10, 50));
        assert_eq!(resolve_chown(&v, ":staff").unwrap(), (0, 50));
        // BuildKit: unknown names keep what is known so far.
        assert_eq!(resolve_chown(&v, "ghost").unwrap(), (0, 0));
        assert_eq!(resolve_chown(&v, "app:ghosts").unwrap(), (1000, 1001));
        assert_eq!(resolve_chown(&LayerView::empty(), "app").unwrap(), (0, 0));
        assert!(resolve_chown(&v, "").is_err());
    }
}
