//! `strata tag`, `strata rmi`, `strata inspect` and `strata history`, with docker's output:
//! `Untagged:`/`Deleted:` lines, a JSON array for inspect (4-space indent), and history's
//! `IMAGE  CREATED  CREATED BY  SIZE  COMMENT` table.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use serde_json::Value;
use strata_oci::{HistoryEntry, Removal};

use crate::Failure;
use crate::cli::{HistoryArgs, InspectArgs, RmiArgs, TagArgs};
use crate::commands::open_images;
use crate::format::{self, Format, Timestamp, ellipsis, human_size_precision, object, truncate_id};

/// `strata tag SOURCE TARGET`.
///
/// # Errors
/// The source does not exist or the target is not a valid name.
pub fn tag(root: &Path, args: &TagArgs) -> Result<(), Failure> {
    let images = open_images(root)?;
    images
        .tag(&args.source, &args.target)
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// The line docker prints for one removal.
pub fn removal_line(r: &Removal) -> String {
    match r {
        Removal::Untagged(reference) => format!("Untagged: {}", reference.familiar()),
        Removal::Deleted(digest) => format!("Deleted: {digest}"),
    }
}

/// `strata rmi [-f] IMAGE...`: each image in turn; a failure is reported and the others are
/// still removed (exit 1 at the end), as docker does.
///
/// # Errors
/// Some image could not be removed.
pub fn rmi(root: &Path, args: &RmiArgs) -> Result<(), Failure> {
    let images = open_images(root)?;
    let mut failed = false;
    for spec in &args.images {
        match images.remove(std::slice::from_ref(spec), args.force) {
            Ok(removed) => {
                let mut out = String::new();
                for r in &removed {
                    out.push_str(&removal_line(r));
                    out.push('\n');
                }
                print!("{out}");
            }
            Err(err) => {
                eprintln!("error: {:#}", anyhow::Error::from(err));
                failed = true;
            }
        }
    }
    if failed {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

/// `strata inspect [-f FORMAT] IMAGE...`: a JSON array of the images found (or one template
/// line each); the missing ones are reported and make the exit status 1.
///
/// # Errors
/// Some image was not found, or the template failed.
pub fn inspect(root: &Path, args: &InspectArgs) -> Result<(), Failure> {
    let template = super::inspect_template(args.format.as_deref())?;
    let images = open_images(root)?;
    let mut found = Vec::new();
    let mut failed = false;
    for spec in &args.images {
        match images.inspect(spec) {
            Ok(v) => found.push(v),
            Err(err) => {
                eprintln!("error: {:#}", anyhow::Error::from(err));
                failed = true;
            }
        }
    }
    super::print_inspected(template.as_ref(), found, failed)
}

/// docker's default `history` table.
const HISTORY_TABLE: &str =
    "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

/// The template data of one history entry.
fn history_row(h: &HistoryEntry, human: bool, trunc: bool, now: Timestamp) -> Value {
    let id = match &h.id {
        Some(d) if trunc => truncate_id(&d.to_string()),
        Some(d) => d.to_string(),
        None => "<missing>".to_string(),
    };
    let created_at = h
        .created
        .as_deref()
        .and_then(Timestamp::parse_rfc3339)
        .map(Timestamp::to_rfc3339)
        .unwrap_or_default();
    let created_since = if human {
        format::created_since(h.created.as_deref(), now)
    } else {
        created_at.clone()
    };
    let created_by = h.created_by.replace('\t', " ");
    let created_by = if trunc {
        ellipsis(&created_by, 45)
    } else {
        created_by
    };
    let size = if human {
        human_size_precision(h.size, 3)
    } else {
        h.size.to_string()
    };
    object([
        ("Comment", Value::from(h.comment.clone())),
        ("CreatedAt", Value::from(created_at)),
        ("CreatedBy", Value::from(created_by)),
        ("CreatedSince", Value::from(created_since)),
        ("ID", Value::from(id)),
        ("Size", Value::from(size)),
    ])
}

/// `strata history IMAGE`: newest entry first, like docker.
///
/// # Errors
/// The image does not exist, or the format is invalid.
pub fn history(root: &Path, args: &HistoryArgs) -> Result<(), Failure> {
    let spec = match (&args.format, args.quiet) {
        (Some(f), _) => Some(f.as_str()),
        (None, true) => Some("{{.ID}}"),
        (None, false) => None,
    };
    let format = Format::new(spec, HISTORY_TABLE)
        .map_err(|e| Failure::Usage(anyhow!("template parsing error: {e}")))?;
    let images = open_images(root)?;
    let entries = images
        .history(&args.image)
        .with_context(|| format!("cannot read the history of {}", args.image))?;
    let now = Timestamp::now();
    let rows: Vec<Value> = entries
        .iter()
        .map(|h| history_row(h, args.human, !args.no_trunc, now))
        .collect();
    let header = object([
        ("Comment", "COMMENT"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedBy", "CREATED BY"),
        ("CreatedSince", "CREATED"),
        ("ID", "IMAGE"),
        ("Size", "SIZE"),
    ]);
    let out = format
        .render(&header, &rows)
        .map_err(|e| Failure::Other(e.into()))?;
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use strata_cas::Digest;

    use super::*;

    #[test]
    fn history_rows_like_docker() {
        let now = Timestamp::parse_rfc3339("2024-01-01T02:00:00Z").expect("valid");
        let h = HistoryEntry {
            id: Some(Digest::of(b"x")),
            created: Some("2024-01-01T00:00:00Z".to_string()),
            created_by: "/bin/sh -c\tapk add --no-cache ca-certificates curl git openssh".into(),
            size: 4_268_000,
            comment: "imported".into(),
            empty_layer: false,
        };
        let v = history_row(&h, true, true, now);
        assert_eq!(v["ID"].as_str().map(str::len), Some(12));
        assert_eq!(v["CreatedSince"], "2 hours ago");
        assert_eq!(v["Size"], "4.27MB");
        assert_eq!(
            v["CreatedBy"],
            "/bin/sh -c apk add --no-cache ca-certificate…"
        );
        let raw = history_row(&h, false, false, now);
        assert_eq!(raw["Size"], "4268000");
        assert_eq!(raw["CreatedSince"], "2024-01-01T00:00:00Z");
        let missing = HistoryEntry { id: None, ..h };
        assert_eq!(history_row(&missing, true, true, now)["ID"], "<missing>");
    }
}
