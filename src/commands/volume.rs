//! `strata volume create|ls|inspect|rm|prune`, with docker's output; the work is in
//! [`strata_runner::volume`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, anyhow};
use serde_json::Value;
use strata_runner::container::ContainerStore;
use strata_runner::volume::{self, Volumes};

use crate::Failure;
use crate::cli::{
    VolumeCommand, VolumeCreateArgs, VolumeInspectArgs, VolumeLsArgs, VolumePruneArgs, VolumeRmArgs,
};
use crate::format::{Format, human_size, object};

/// Runs one `strata volume` subcommand.
///
/// # Errors
/// See each subcommand.
pub fn run(root: &Path, command: &VolumeCommand) -> Result<(), Failure> {
    match command {
        VolumeCommand::Create(a) => create(root, a),
        VolumeCommand::Ls(a) => ls(root, a),
        VolumeCommand::Inspect(a) => inspect(root, a),
        VolumeCommand::Rm(a) => rm(root, a),
        VolumeCommand::Prune(a) => prune(root, a),
    }
}

fn in_use(root: &Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let containers = ContainerStore::open(root).context("cannot open the containers")?;
    volume::in_use(&containers).context("cannot read the containers")
}

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            return Err(Failure::Usage(anyhow!("invalid label {l:?}: empty key")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `volume create`: prints the name.
fn create(root: &Path, args: &VolumeCreateArgs) -> Result<(), Failure> {
    if args.driver != "local" {
        return Err(Failure::Usage(anyhow!(
            "volume driver {:?} is not supported: only \"local\" exists",
            args.driver
        )));
    }
    let labels = parse_labels(&args.labels)?;
    let v = Volumes::new(root)
        .create(args.name.as_deref(), labels, false)
        .context("cannot create the volume")?;
    println!("{}", v.name);
    Ok(())
}

/// docker's default `volume ls` table.
const LS_TABLE: &str = "table {{.Driver}}\t{{.Name}}";

fn ls(root: &Path, args: &VolumeLsArgs) -> Result<(), Failure> {
    let vols = Volumes::new(root).list().context("cannot list volumes")?;
    let used = if args.filters.iter().any(|f| f.starts_with("dangling=")) {
        in_use(root)?
    } else {
        Default::default()
    };
    let mut rows = Vec::new();
    'vol: for v in &vols {
        for f in &args.filters {
            let Some((key, val)) = f.split_once('=') else {
                return Err(Failure::Usage(anyhow!(
                    "bad format of filter (expected name=value)"
                )));
            };
            let keep = match key {
                "name" => v.name.contains(val),
                "driver" => v.driver == val,
                "label" => match val.split_once('=') {
                    Some((k, x)) => v.labels.get(k).is_some_and(|y| y == x),
                    None => v.labels.contains_key(val),
                },
                "dangling" => match val {
                    "true" | "1" => !used.contains(&v.name),
                    "false" | "0" => used.contains(&v.name),
                    _ => {
                        return Err(Failure::Usage(anyhow!("invalid filter 'dangling={val}'")));
                    }
                },
                _ => return Err(Failure::Usage(anyhow!("invalid filter '{key}'"))),
            };
            if !keep {
                continue 'vol;
            }
        }
        rows.push(v);
    }
    if args.quiet {
        let mut out = String::new();
        for v in rows {
            out.push_str(&v.name);
            out.push('\n');
        }
        print!("{out}");
        return Ok(());
    }
    let format = Format::new(args.format.as_deref(), LS_TABLE)
        .map_err(|e| Failure::Usage(anyhow!("template parsing error: {e}")))?;
    let data: Vec<Value> = rows
        .iter()
        .map(|v| {
            let labels = v
                .labels
                .iter()
                .map(|(k, x)| format!("{k}={x}"))
                .collect::<Vec<_>>()
                .join(",");
            object([
                ("Driver", Value::from(v.driver.clone())),
                ("Name", Value::from(v.name.clone())),
                (
                    "Mountpoint",
                    Value::from(v.mountpoint.display().to_string()),
                ),
                ("Labels", Value::from(labels)),
                ("Scope", Value::from("local")),
                ("CreatedAt", Value::from(v.created.clone())),
            ])
        })
        .collect();
    let header = object([
        ("Driver", "DRIVER"),
        ("Name", "VOLUME NAME"),
        ("Mountpoint", "MOUNTPOINT"),
        ("Labels", "LABELS"),
        ("Scope", "SCOPE"),
        ("CreatedAt", "CREATED"),
    ]);
    let out = format
        .render(&header, &data)
        .map_err(|e| Failure::Other(e.into()))?;
    print!("{out}");
    Ok(())
}

fn inspect(root: &Path, args: &VolumeInspectArgs) -> Result<(), Failure> {
    let template = super::inspect_template(args.format.as_deref())?;
    let vols = Volumes::new(root);
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.volumes {
        match vols.get(name) {
            Ok(v) => found.push(v.inspect_json()),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    super::print_inspected(template.as_ref(), found, failed)
}

fn rm(root: &Path, args: &VolumeRmArgs) -> Result<(), Failure> {
    let vols = Volumes::new(root);
    let used = in_use(root)?;
    let mut failed = false;
    for name in &args.volumes {
        match vols.remove(name, &used, false) {
            Ok(_) => println!("{name}"),
            Err(strata_runner::Error::NoSuchVolume(_)) if args.force => {}
            Err(e) => {
                eprintln!("error: {e}");
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

fn prune(root: &Path, args: &VolumePruneArgs) -> Result<(), Failure> {
    let mut labels = Vec::new();
    for f in &args.filters {
        match f.split_once('=') {
            Some(("label", v)) => labels.push(v.to_string()),
            Some(("all", "true" | "1")) => {}
            _ => return Err(Failure::Usage(anyhow!("invalid filter {f:?}"))),
        }
    }
    let all = args.all || args.filters.iter().any(|f| f == "all=true" || f == "all=1");
    if !args.force {
        let warning = if all {
            "WARNING! This will remove all local volumes not used by at least one container.\n"
        } else {
            "WARNING! This will remove anonymous local volumes not used by at least one container.\n"
        };
        if !super::system::confirm_prune(warning)? {
            println!("Total reclaimed space: 0B");
            return Ok(());
        }
    }
    let used = in_use(root)?;
    let report = Volumes::new(root)
        .prune(all, &used, &labels)
        .context("cannot prune volumes")?;
    let mut out = String::new();
    if !report.deleted.is_empty() {
        out.push_str("Deleted Volumes:\n");
        for n in &report.deleted {
            out.push_str(n);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(report.reclaimed)
    ));
    print!("{out}");
    Ok(())
}
