//! `strata system df`, `strata system prune` and `strata system verify`.
//!
//! Other subsystems (build cache, containers, the registry) plug in here: [`gc_roots`] lists
//! every [`GcRoots`] holder a prune must respect and [`usage_sources`] every
//! [`UsageSource`] that adds rows to `df`. `prune` removes what docker's does (stopped
//! containers, dangling or with `-a` unused images, unused build cache) before the store's GC.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;
use strata_cas::gc::{GcRoots, PruneOptions};
use strata_cas::usage::{Usage, UsageRow, UsageSource};
use strata_executor::cache::{BuildCache, PruneOptions as CachePruneOptions};
use strata_runner::container::Status;

use crate::Failure;
use crate::cli::{DfArgs, PruneArgs};
use crate::commands::{open_images, open_store};
use crate::format::{self, Format, Timestamp, human_size, object, truncate_id};

/// The GC roots held by subsystems other than the store itself (refs and leases are always
/// roots). The build cache, containers and registry append theirs here.
fn gc_roots(root: &Path) -> Vec<Box<dyn GcRoots>> {
    vec![
        Box::new(BuildCache::new(root)),
        Box::new(strata_runner::gc::Containers::new(root)),
    ]
}

/// The `df` rows of subsystems other than the store itself.
fn usage_sources(root: &Path) -> Vec<Box<dyn UsageSource>> {
    vec![
        Box::new(BuildCache::new(root)),
        Box::new(strata_runner::gc::Containers::new(root)),
        Box::new(strata_runner::volume::VolumeUsage::new(root)),
    ]
}

/// docker's default `system df` table.
const DF_TABLE: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";

/// `strata system df [-v]`.
///
/// # Errors
/// The store cannot be read, or the format is invalid.
pub fn df(root: &Path, args: &DfArgs) -> Result<(), Failure> {
    let store = open_store(root)?;
    let sources = usage_sources(root);
    let refs: Vec<&dyn UsageSource> = sources.iter().map(|s| s.as_ref()).collect();
    let usage = store
        .usage_with(&refs)
        .context("cannot compute the disk usage")?;
    let format = Format::new(args.format.as_deref(), DF_TABLE).map_err(usage_error)?;
    let rows: Vec<Value> = usage.rows.iter().map(df_row).collect();
    let header = object([
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ]);
    let mut out = format
        .render(&header, &rows)
        .map_err(|e| Failure::Other(e.into()))?;
    if args.format.is_none() {
        out.push_str(&dedup_line(&usage));
        if args.verbose {
            out.push_str(&verbose(root, &usage)?);
        }
    }
    print!("{out}");
    Ok(())
}

/// One `df` row as template data.
fn df_row(r: &UsageRow) -> Value {
    object([
        ("Type", Value::from(r.kind.clone())),
        ("TotalCount", Value::from(r.total.to_string())),
        ("Active", Value::from(r.active.to_string())),
        ("Size", Value::from(human_size(r.size))),
        (
            "Reclaimable",
            Value::from(reclaimable(r.reclaimable, r.size)),
        ),
    ])
}

/// docker's RECLAIMABLE cell: `1.2MB (40%)`, without the percentage when the size is 0.
fn reclaimable(reclaimable: u64, size: u64) -> String {
    if size > 0 {
        let pct = u128::from(reclaimable) * 100 / u128::from(size);
        format!("{} ({pct}%)", human_size(reclaimable))
    } else {
        human_size(reclaimable)
    }
}

/// The line about deduplication under the table.
fn dedup_line(u: &Usage) -> String {
    format!(
        "\nDeduplication saved {} (layer files: {} without dedup, {} stored, {} on disk)\n",
        human_size(u.saved_by_dedup),
        human_size(u.without_dedup),
        human_size(u.unique_bytes),
        human_size(u.objects_on_disk),
    )
}

/// `df -v`: per-image and per-layer tables.
fn verbose(root: &Path, u: &Usage) -> Result<String, Failure> {
    // Image IDs and creation times come from the image service (by manifest digest).
    let images = open_images(root)?;
    let summaries = images.list().context("cannot list the images")?;
    let by_manifest: BTreeMap<String, (String, Option<String>)> = summaries
        .iter()
        .map(|s| {
            (
                s.manifest.to_string(),
                (s.id.to_string(), s.created.clone()),
            )
        })
        .collect();
    let now = Timestamp::now();
    let mut out = String::from("\nImages space usage:\n\n");
    let mut text =
        String::from("REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\n");
    for img in &u.images {
        let (repo, tag) = match img.reference.parse::<strata_cas::Reference>() {
            Ok(r) => (
                r.repository(),
                r.tag().map_or_else(|| "<none>".to_string(), str::to_string),
            ),
            Err(_) => (img.reference.clone(), "<none>".to_string()),
        };
        let (id, created) = by_manifest
            .get(&img.manifest)
            .map_or(("<none>".to_string(), None), |(id, c)| {
                (truncate_id(id), c.as_deref())
            });
        text.push_str(&format!(
            "{repo}\t{tag}\t{id}\t{}\t{}\t{}\t{}\n",
            format::created_since(created, now),
            human_size(img.size),
            human_size(img.shared),
            human_size(img.unique),
        ));
    }
    out.push_str(&format::tabwrite(&text));
    out.push_str("\nLayers space usage:\n\n");
    let mut text = String::from("LAYER ID\tSIZE\tUNIQUE SIZE\tACTIVE\n");
    for l in &u.layers {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            truncate_id(&l.diff_id),
            human_size(l.size),
            human_size(l.unique),
            l.active
        ));
    }
    out.push_str(&format::tabwrite(&text));
    Ok(out)
}

/// `strata system prune [-a] [-f]`.
///
/// # Errors
/// Not confirmed, or the prune failed.
pub fn prune(root: &Path, args: &PruneArgs) -> Result<(), Failure> {
    if !args.force && !confirm_prune(&format!("{}\n", prune_warning(args.all)))? {
        println!("Total reclaimed space: 0B");
        return Ok(());
    }
    let store = open_store(root)?;
    let mut out = String::new();
    // docker's order: stopped containers, then the images no remaining container uses
    // (dangling ones; every one with `-a`), so that the layers only they held go below.
    let cstore = strata_runner::container::ContainerStore::open(root)
        .context("cannot open the containers")?;
    let mut removed_containers = Vec::new();
    let mut in_use = std::collections::BTreeSet::new();
    for c in strata_runner::lifecycle::list(&cstore).context("cannot list the containers")? {
        if matches!(
            c.state.status,
            Status::Created | Status::Exited | Status::Dead
        ) {
            match strata_runner::lifecycle::remove(&cstore, &c.id, false) {
                Ok(_) => removed_containers.push(c.id),
                // Removed meanwhile; or started again, and then it keeps its image.
                Err(strata_runner::Error::NoSuchContainer(_)) => {}
                Err(strata_runner::Error::Conflict(_)) => {
                    in_use.insert(c.image_id);
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot remove container {}", c.id))
                        .into());
                }
            }
        } else {
            in_use.insert(c.image_id);
        }
    }
    if !removed_containers.is_empty() {
        out.push_str("Deleted Containers:\n");
        for id in &removed_containers {
            out.push_str(id);
            out.push('\n');
        }
        out.push('\n');
    }
    let images = open_images(root)?;
    let unused: Vec<String> = images
        .list()
        .context("cannot list images")?
        .into_iter()
        .filter(|i| (args.all || i.references.is_empty()) && !in_use.contains(&i.id.to_string()))
        .map(|i| i.id.to_string())
        .collect();
    if !unused.is_empty() {
        let removed = images
            .remove(&unused, true)
            .context("cannot remove the images")?;
        if !removed.is_empty() {
            out.push_str("Deleted Images:\n");
            for r in &removed {
                out.push_str(&super::image::removal_line(r).to_lowercase_prefix());
                out.push('\n');
            }
            out.push('\n');
        }
    }
    // Build cache records and cache mounts that no image needs go first, so that the
    // layers only they kept are reclaimed by the store prune below.
    let mut cache_opts = CachePruneOptions::default();
    for summary in open_images(root)?.list().context("cannot list images")? {
        cache_opts.image_layers.extend(summary.layers);
    }
    let cache = BuildCache::new(root)
        .prune(&cache_opts)
        .map_err(|e| anyhow::anyhow!("cannot prune the build cache: {e}"))?;
    if cache.records + cache.mounts + cache.contexts > 0 {
        out.push_str(&format!(
            "Deleted build cache records: {}, cache mounts: {}, context indexes: {}\n",
            cache.records, cache.mounts, cache.contexts
        ));
    }
    let holders = gc_roots(root);
    let roots: Vec<&dyn GcRoots> = holders.iter().map(|h| h.as_ref()).collect();
    let report = store
        .prune(&roots, PruneOptions::default())
        .context("prune failed")?;
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(report.reclaimed_bytes + cache.bytes)
    ));
    print!("{out}");
    Ok(())
}

/// Shows `warning` and asks docker's "Are you sure you want to continue? [y/N]"; refuses
/// without a terminal on stdin (`--force` skips the question).
///
/// # Errors
/// stdin is not a terminal; the prompt can't be written or the answer read.
pub fn confirm_prune(warning: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        eprint!("{warning}");
        return Err(Failure::Other(anyhow::anyhow!(
            "refusing to prune without confirmation: stdin is not a terminal \
             (use --force to prune without a prompt)"
        )));
    }
    print!("{warning}Are you sure you want to continue? [y/N] ");
    std::io::stdout()
        .flush()
        .context("cannot write the prompt")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// What `prune` says it will remove.
fn prune_warning(all: bool) -> String {
    let images = if all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    format!(
        "WARNING! This will remove:\n  - all stopped containers\n  - {images}\n  - all blobs, layers and files no image or \
         running build uses\n  - leftover temporary files\n"
    )
}

/// Lower-cases the `Untagged:`/`Deleted:` prefix the way `docker system prune` prints it.
trait LowercasePrefix {
    fn to_lowercase_prefix(&self) -> String;
}

impl LowercasePrefix for String {
    fn to_lowercase_prefix(&self) -> String {
        match self.split_once(':') {
            Some((head, rest)) => format!("{}:{rest}", head.to_lowercase()),
            None => self.clone(),
        }
    }
}

/// `strata system verify`.
///
/// # Errors
/// The check could not run, or it found problems (printed, then reported as a failure).
pub fn verify(root: &Path) -> Result<(), Failure> {
    let store = open_store(root)?;
    let problems = store.verify().context("cannot verify the store")?;
    if problems.is_empty() {
        println!("store is consistent");
        return Ok(());
    }
    let mut out = String::new();
    for p in &problems {
        out.push_str(&format!("{}: {}\n", p.path.display(), p.message));
    }
    print!("{out}");
    eprintln!(
        "error: the store has {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    Err(Failure::Reported)
}

/// A bad `--format` is a usage error (exit 125).
fn usage_error(e: format::TemplateError) -> Failure {
    Failure::Usage(anyhow::anyhow!("template parsing error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaimable_cells() {
        assert_eq!(reclaimable(0, 0), "0B");
        assert_eq!(reclaimable(1_200_000, 3_000_000), "1.2MB (40%)");
        assert_eq!(reclaimable(3_000_000, 3_000_000), "3MB (100%)");
    }

    #[test]
    fn df_rows_render_like_docker() {
        let rows = [UsageRow {
            kind: "Images".into(),
            total: 2,
            active: 1,
            size: 16_430_000,
            reclaimable: 11_630_000,
        }];
        let data: Vec<Value> = rows.iter().map(df_row).collect();
        let header = object([
            ("Type", "TYPE"),
            ("TotalCount", "TOTAL"),
            ("Active", "ACTIVE"),
            ("Size", "SIZE"),
            ("Reclaimable", "RECLAIMABLE"),
        ]);
        let out = Format::new(None, DF_TABLE)
            .and_then(|f| f.render(&header, &data))
            .expect("renders");
        assert_eq!(
            out,
            "TYPE      TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
             Images    2         1         16.43MB   11.63MB (70%)\n"
        );
    }

    #[test]
    fn prune_lines_are_lowercased() {
        assert_eq!(
            "Untagged: busybox:latest".to_string().to_lowercase_prefix(),
            "untagged: busybox:latest"
        );
    }
}
