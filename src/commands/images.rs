//! `strata images` (= `strata image ls`): docker's image listing with its filters, `-q`,
//! `--digests`, `--no-trunc` and `--format`.
//!
//! One row per (image, reference); an image without references is a dangling `<none>` row.
//! Rows are sorted newest first, like docker. Filters follow moby's semantics:
//! - `dangling=true|false`: images without / with a tag;
//! - `reference=PATTERN` (repeatable, any may match): Go's `path.Match` on the familiar
//!   reference (`busybox:latest`) or the familiar name (`busybox`); only the matching
//!   references of an image are listed;
//! - `label=KEY` or `label=KEY=VALUE` (repeatable, all must match);
//! - `before=IMAGE` / `since=IMAGE`: created strictly before / after that image.
//!
//! The positional `REPOSITORY[:TAG]` is one more `reference` filter.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, anyhow};
use serde_json::Value;
use strata_cas::{Digest, Reference};
use strata_oci::{ImageSummary, Images};

use crate::Failure;
use crate::cli::ImagesArgs;
use crate::commands::open_images;
use crate::format::{self, Format, Timestamp, human_size_precision, object, truncate_id};

/// docker's default `images` table.
const TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
/// The default table with `--digests`.
const TABLE_DIGESTS: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// The filters of one `images` invocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters {
    /// `dangling=`: `Some(true)` only untagged images, `Some(false)` only tagged ones.
    pub dangling: Option<bool>,
    /// `reference=` patterns; a reference is listed when any matches.
    pub references: Vec<String>,
    /// `label=` conditions (key, optional value); all must hold.
    pub labels: Vec<(String, Option<String>)>,
    /// `before=` images.
    pub before: Vec<String>,
    /// `since=` images.
    pub since: Vec<String>,
}

impl Filters {
    /// Interprets `-f name=value` pairs.
    ///
    /// # Errors
    /// An unknown filter name or a bad `dangling` value (docker's messages).
    pub fn parse(pairs: &[(String, String)]) -> anyhow::Result<Filters> {
        let mut f = Filters::default();
        for (k, v) in pairs {
            match k.as_str() {
                "dangling" => {
                    let b = match v.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(anyhow!("invalid filter 'dangling={v}'")),
                    };
                    if f.dangling.is_some_and(|d| d != b) {
                        return Err(anyhow!("invalid filter 'dangling': conflicting values"));
                    }
                    f.dangling = Some(b);
                }
                "reference" => {
                    if !valid_pattern(v) {
                        return Err(anyhow!(
                            "invalid reference filter {v:?}: syntax error in pattern"
                        ));
                    }
                    f.references.push(v.clone());
                }
                "label" => f.labels.push(match v.split_once('=') {
                    Some((k, val)) => (k.to_string(), Some(val.to_string())),
                    None => (v.clone(), None),
                }),
                "before" => f.before.push(v.clone()),
                "since" => f.since.push(v.clone()),
                other => return Err(anyhow!("invalid filter '{other}'")),
            }
        }
        Ok(f)
    }
}

/// One row of the listing: an image and one of its references (`None`: dangling).
#[derive(Debug, Clone)]
pub struct Row<'a> {
    /// The image.
    pub image: &'a ImageSummary,
    /// The reference shown on this row.
    pub reference: Option<&'a Reference>,
}

/// The creation times `before=`/`since=` compare with, already resolved.
#[derive(Debug, Default, Clone)]
pub struct TimeBounds {
    /// Images must be created strictly before each of these.
    pub before: Vec<Timestamp>,
    /// Images must be created strictly after each of these.
    pub since: Vec<Timestamp>,
}

/// Applies the filters (with resolved time bounds) and orders the rows newest first.
pub fn select<'a>(images: &'a [ImageSummary], f: &Filters, bounds: &TimeBounds) -> Vec<Row<'a>> {
    let mut selected: Vec<&ImageSummary> = images
        .iter()
        .filter(|img| match f.dangling {
            Some(true) => img.references.is_empty(),
            Some(false) => !img.references.is_empty(),
            None => true,
        })
        .filter(|img| {
            f.labels.iter().all(|(k, v)| match (img.labels.get(k), v) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            })
        })
        .filter(|img| {
            if bounds.before.is_empty() && bounds.since.is_empty() {
                return true;
            }
            let Some(t) = created(img) else {
                return false;
            };
            bounds.before.iter().all(|b| t < *b) && bounds.since.iter().all(|s| t > *s)
        })
        .collect();
    selected.sort_by(|a, b| {
        created(b)
            .cmp(&created(a))
            .then_with(|| a.id.to_string().cmp(&b.id.to_string()))
    });
    let mut rows = Vec::new();
    for img in selected {
        if img.references.is_empty() {
            if f.references.is_empty() {
                rows.push(Row {
                    image: img,
                    reference: None,
                });
            }
            continue;
        }
        let mut refs: Vec<&Reference> = img
            .references
            .iter()
            .filter(|r| f.references.is_empty() || f.references.iter().any(|p| matches_ref(p, r)))
            .collect();
        refs.sort_by_key(|r| r.familiar());
        rows.extend(refs.into_iter().map(|r| Row {
            image: img,
            reference: Some(r),
        }));
    }
    rows
}

fn created(img: &ImageSummary) -> Option<Timestamp> {
    img.created.as_deref().and_then(Timestamp::parse_rfc3339)
}

/// moby's `FamiliarMatch`: the pattern against `busybox:latest`, then against `busybox`.
fn matches_ref(pattern: &str, r: &Reference) -> bool {
    go_path_match(pattern, &r.familiar()) || go_path_match(pattern, &r.repository())
}

/// The template data of one row (the fields docker's image context has).
pub fn row_value(row: &Row<'_>, no_trunc: bool, now: Timestamp) -> Value {
    let img = row.image;
    let (repo, tag) = match row.reference {
        Some(r) => (
            r.repository(),
            r.tag().map_or_else(|| "<none>".to_string(), str::to_string),
        ),
        None => ("<none>".to_string(), "<none>".to_string()),
    };
    // docker's DIGEST column: the digest a registry serves this repository's image under
    // (pulled or pushed), `<none>` for an image that never went through a registry.
    let digest = match row.reference {
        Some(r) => r
            .digest()
            .or_else(|| {
                img.repo_digests
                    .iter()
                    .find(|d| d.repository() == r.repository())
                    .and_then(|d| d.digest())
            })
            .map_or_else(|| "<none>".to_string(), Digest::to_string),
        None => "<none>".to_string(),
    };
    let id = if no_trunc {
        img.id.to_string()
    } else {
        truncate_id(&img.id.to_string())
    };
    let size = human_size_precision(img.size, 3);
    object([
        ("Containers", Value::from("N/A")),
        (
            "CreatedAt",
            Value::from(format::created_at(img.created.as_deref())),
        ),
        (
            "CreatedSince",
            Value::from(format::created_since(img.created.as_deref(), now)),
        ),
        ("Digest", Value::from(digest)),
        ("ID", Value::from(id)),
        ("Repository", Value::from(repo)),
        ("SharedSize", Value::from("N/A")),
        ("Size", Value::from(size.clone())),
        ("Tag", Value::from(tag)),
        ("UniqueSize", Value::from("N/A")),
        ("VirtualSize", Value::from(size)),
    ])
}

/// The column titles.
fn header() -> Value {
    object([
        ("Containers", "CONTAINERS"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedSince", "CREATED"),
        ("Digest", "DIGEST"),
        ("ID", "IMAGE ID"),
        ("Repository", "REPOSITORY"),
        ("SharedSize", "SHARED SIZE"),
        ("Size", "SIZE"),
        ("Tag", "TAG"),
        ("UniqueSize", "UNIQUE SIZE"),
        ("VirtualSize", "VIRTUAL SIZE"),
    ])
}

/// The output format: `--format`, else `-q` (IDs), else the default table.
fn choose_format(args: &ImagesArgs) -> Result<Format, Failure> {
    let spec = match (&args.format, args.quiet) {
        (Some(f), _) => Some(f.as_str()),
        (None, true) => Some("{{.ID}}"),
        (None, false) => None,
    };
    let default = if args.digests { TABLE_DIGESTS } else { TABLE };
    Format::new(spec, default).map_err(|e| Failure::Usage(anyhow!("template parsing error: {e}")))
}

/// `strata images [REPOSITORY[:TAG]]`.
///
/// # Errors
/// A bad filter or format, an unknown `before`/`since` image, or an unreadable store.
pub fn list(root: &Path, args: &ImagesArgs) -> Result<(), Failure> {
    let format = choose_format(args)?;
    let mut pairs = args.filter.clone();
    if let Some(r) = &args.repository {
        pairs.push(("reference".to_string(), r.clone()));
    }
    let filters = Filters::parse(&pairs)?;
    let images = open_images(root)?;
    let summaries = images.list().context("cannot list the images")?;
    let bounds = TimeBounds {
        before: resolve_times(&images, &summaries, &filters.before)?,
        since: resolve_times(&images, &summaries, &filters.since)?,
    };
    let rows = select(&summaries, &filters, &bounds);
    let now = Timestamp::now();
    let data: Vec<Value> = rows
        .iter()
        .map(|r| row_value(r, args.no_trunc, now))
        .collect();
    let out = format
        .render(&header(), &data)
        .map_err(|e| Failure::Other(e.into()))?;
    print!("{out}");
    Ok(())
}

/// The creation times of the `before=`/`since=` images.
fn resolve_times(
    images: &Images,
    summaries: &[ImageSummary],
    specs: &[String],
) -> anyhow::Result<Vec<Timestamp>> {
    let by_id: BTreeMap<String, &ImageSummary> =
        summaries.iter().map(|s| (s.id.to_string(), s)).collect();
    specs
        .iter()
        .map(|spec| {
            let resolved = images
                .resolve(spec)
                .with_context(|| format!("invalid filter value {spec:?}"))?;
            let id = resolved.id.to_string();
            by_id
                .get(&id)
                .and_then(|s| created(s))
                .ok_or_else(|| anyhow!("image {spec} has no creation time"))
        })
        .collect()
}

/// Whether a `reference=` pattern is well formed (Go's `path.ErrBadPattern` otherwise).
fn valid_pattern(p: &str) -> bool {
    // Matching against the empty string walks the whole pattern only when it can; check the
    // bracket syntax directly instead.
    let b: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '\\' => {
                if i + 1 >= b.len() {
                    return false;
                }
                i += 2;
            }
            '[' => match class_end(&b, i + 1) {
                Some(end) => i = end + 1,
                None => return false,
            },
            _ => i += 1,
        }
    }
    true
}

/// Index of the `]` closing a class that starts at `start` (just after `[`).
fn class_end(p: &[char], start: usize) -> Option<usize> {
    let mut i = start;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut first = true;
    while i < p.len() {
        match p[i] {
            ']' if !first => return Some(i),
            '\\' => i += 2,
            _ => i += 1,
        }
        first = false;
    }
    None
}

/// Go's `path.Match`: `*` (no `/`), `?`, `[class]` with ranges and `^`, `\` escapes.
pub fn go_path_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after it, name index it took).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' if ni < n.len() => {
                    if let Some((matched, end)) = match_class(p, pi + 1, n[ni])
                        && matched
                    {
                        pi = end + 1;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && ni < n.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                c if !matches!(c, '?' | '[' | '\\') && ni < n.len() && c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return true;
        }
        // Mismatch: let the last `*` take one more character (never a `/`).
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => return false,
        }
    }
}

/// Matches `c` against the class starting at `start` (after `[`): (matched, index of `]`).
fn match_class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let end = class_end(p, start)?;
    let mut i = start;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let unescape = |i: &mut usize| -> char {
        if p[*i] == '\\' && *i + 1 < end {
            *i += 1;
        }
        let ch = p[*i];
        *i += 1;
        ch
    };
    while i < end {
        let lo = unescape(&mut i);
        let hi = if i + 1 < end && p[i] == '-' {
            i += 1;
            unescape(&mut i)
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negate, end))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use strata_cas::Digest;

    use super::*;

    #[test]
    fn path_match_like_go() {
        for (p, n, want) in [
            ("busybox", "busybox", true),
            ("busy*", "busybox", true),
            ("*", "busybox:latest", true),
            ("*", "myorg/app", false),
            ("*/*", "myorg/app", true),
            ("busybox:l?test", "busybox:latest", true),
            ("busybox:[a-z]*", "busybox:latest", true),
            ("busybox:[^a-z]*", "busybox:latest", false),
            ("b\\usybox", "busybox", true),
            ("*box", "busybox", true),
            ("*x*y", "busyboxbox", false),
            ("a*b*c", "axxbxxc", true),
            ("", "", true),
            ("x", "", false),
        ] {
            assert_eq!(go_path_match(p, n), want, "{p} vs {n}");
        }
        assert!(!valid_pattern("[abc"));
        assert!(!valid_pattern("abc\\"));
        assert!(valid_pattern("a[]]b"));
    }

    fn summary(id: u8, refs: &[&str], created: &str, labels: &[(&str, &str)]) -> ImageSummary {
        ImageSummary {
            id: Digest::of(&[id]),
            manifest: Digest::of(&[id, id]),
            references: refs
                .iter()
                .map(|r| r.parse().expect("valid reference"))
                .collect(),
            created: Some(created.to_string()),
            size: 4_268_000,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            layers: Vec::new(),
            repo_digests: Vec::new(),
        }
    }

    fn names(rows: &[Row<'_>]) -> Vec<String> {
        rows.iter()
            .map(|r| r.reference.map_or("<none>".to_string(), |r| r.familiar()))
            .collect()
    }

    #[test]
    fn filters_select_like_moby() {
        let imgs = vec![
            summary(
                1,
                &["busybox", "busybox:1"],
                "2024-01-01T00:00:00Z",
                &[("a", "1")],
            ),
            summary(2, &[], "2024-01-02T00:00:00Z", &[]),
            summary(3, &["myorg/app:v2"], "2024-01-03T00:00:00Z", &[("a", "2")]),
        ];
        let f = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Filters::parse(&pairs).expect("valid filters")
        };
        let none = TimeBounds::default();
        assert_eq!(
            names(&select(&imgs, &f(&[]), &none)),
            ["myorg/app:v2", "<none>", "busybox:1", "busybox:latest"]
        );
        assert_eq!(
            names(&select(&imgs, &f(&[("dangling", "true")]), &none)),
            ["<none>"]
        );
        assert_eq!(
            names(&select(&imgs, &f(&[("dangling", "false")]), &none)).len(),
            3
        );
        assert_eq!(
            names(&select(&imgs, &f(&[("reference", "busybox")]), &none)),
            ["busybox:1", "busybox:latest"]
        );
        assert_eq!(
            names(&select(&imgs, &f(&[("reference", "busybox:1")]), &none)),
            ["busybox:1"]
        );
        assert_eq!(
            names(&select(&imgs, &f(&[("reference", "*/*")]), &none)),
            ["myorg/app:v2"]
        );
        assert_eq!(names(&select(&imgs, &f(&[("label", "a")]), &none)).len(), 3);
        assert_eq!(
            names(&select(&imgs, &f(&[("label", "a=2")]), &none)),
            ["myorg/app:v2"]
        );
        let mid = Timestamp::parse_rfc3339("2024-01-02T00:00:00Z").expect("valid");
        let before = TimeBounds {
            before: vec![mid],
            since: vec![],
        };
        assert_eq!(
            names(&select(&imgs, &f(&[]), &before)),
            ["busybox:1", "busybox:latest"]
        );
        let since = TimeBounds {
            before: vec![],
            since: vec![mid],
        };
        assert_eq!(names(&select(&imgs, &f(&[]), &since)), ["myorg/app:v2"]);
    }

    #[test]
    fn bad_filters_are_rejected() {
        let p = |k: &str, v: &str| Filters::parse(&[(k.to_string(), v.to_string())]);
        assert!(p("nosuch", "x").is_err());
        assert!(p("dangling", "maybe").is_err());
        assert!(p("reference", "[x").is_err());
        assert!(p("label", "k=v").is_ok());
    }

    #[test]
    fn rows_have_docker_fields() {
        let img = summary(1, &["busybox"], "2024-01-01T00:00:00Z", &[]);
        let row = Row {
            image: &img,
            reference: img.references.first(),
        };
        let now = Timestamp::parse_rfc3339("2024-01-01T02:00:00Z").expect("valid");
        let v = row_value(&row, false, now);
        assert_eq!(v["Repository"], "busybox");
        assert_eq!(v["Tag"], "latest");
        assert_eq!(v["ID"].as_str().map(str::len), Some(12));
        assert_eq!(v["Size"], "4.27MB");
        assert_eq!(v["CreatedSince"], "2 hours ago");
        assert_eq!(v["CreatedAt"], "2024-01-01 00:00:00 +0000 UTC");
        let full = row_value(&row, true, now);
        assert_eq!(full["ID"], img.id.to_string());
    }
}
