//! A normalised, diff-friendly text snapshot of an image in a docker-archive (what `docker save`
//! and `strata save` write): the config fields a Dockerfile controls, the history, and the root
//! filesystem after applying every layer, one line per path. Nothing that differs between
//! builders for the same result (mtimes, timestamps, IDs, digests) appears in it.
//!
//! The same code normalises both sides of the conformance suite: BuildKit's output when the
//! fixtures are recorded and strata's output in CI.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use strata_cas::digest::Hasher;

/// One path of the applied root filesystem.
#[derive(Clone, Debug)]
struct Node {
    /// `f` file, `d` dir, `l` symlink, `c`/`b` char/block device, `p` fifo.
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    /// sha256 hex of a file, the target of a symlink, `major,minor` of a device, `-` otherwise.
    content: String,
    /// Identity of the file's inode: hardlinks share it.
    inode: u64,
    /// Extended attributes from the tar's PAX `SCHILY.xattr.*` records (compared, not printed).
    xattrs: BTreeMap<String, Vec<u8>>,
}

impl Node {
    /// Same type, mode, owner and xattrs: a directory entry equal to what is already there only
    /// touches the mtime.
    fn same_metadata(&self, other: &Node) -> bool {
        self.kind == other.kind
            && self.mode == other.mode
            && self.uid == other.uid
            && self.gid == other.gid
            && self.xattrs == other.xattrs
    }
}

/// The snapshot of the image in the docker-archive `tar` (the first image if it holds several).
pub fn snapshot_docker_archive(tar: &Path) -> String {
    let files = read_outer(tar);
    let manifest: Value = serde_json::from_slice(
        files
            .get("manifest.json")
            .expect("manifest.json in archive"),
    )
    .expect("parse manifest.json");
    let image = &manifest[0];
    let config_name = image["Config"].as_str().expect("manifest Config");
    let config: Value =
        serde_json::from_slice(files.get(config_name).expect("config blob in archive"))
            .expect("parse image config");
    let layers: Vec<&str> = image["Layers"]
        .as_array()
        .expect("manifest Layers")
        .iter()
        .map(|l| l.as_str().expect("layer path"))
        .collect();

    // The merged filesystem always has a root directory, before any layer.
    let mut fs = BTreeMap::from([("/".to_string(), root_dir())]);
    let mut next_inode = 0;
    let summaries: Vec<LayerSummary> = layers
        .iter()
        .map(|layer| {
            let data = files.get(*layer).expect("layer blob in archive");
            apply_layer(data, &mut fs, &mut next_inode)
        })
        .collect();

    let mut out = String::new();
    config_section(&config, &summaries, &mut out);
    let shown = summaries.iter().filter(|s| !s.is_empty());
    for (i, summary) in shown.enumerate() {
        out.push_str(&format!("layer[{i}]: {} entries\n", summary.entries));
        for dir in &summary.opaque {
            out.push_str(&format!("layer[{i}] opaque: {}\n", quote(dir)));
        }
        for gone in &summary.whiteouts {
            out.push_str(&format!("layer[{i}] whiteout: {}\n", quote(gone)));
        }
    }
    fs_section(&fs, &mut out);
    out
}

/// Every regular file of the outer archive by its normalised path.
fn read_outer(tar: &Path) -> HashMap<String, Vec<u8>> {
    let file = std::fs::File::open(tar).expect("open docker-archive");
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut files = HashMap::new();
    for entry in archive.entries().expect("read docker-archive") {
        let mut entry = entry.expect("docker-archive entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read archive entry");
        files.insert(name.trim_start_matches("./").to_string(), data);
    }
    files
}

/// The config fields, one per line, `-` when absent or empty, then the history and the layer
/// count. A layer that changes nothing ([`LayerSummary::is_empty`]) is shown like an empty layer:
/// its history entry gets `(empty_layer)` and it is not counted.
fn config_section(config: &Value, layers: &[LayerSummary], out: &mut String) {
    let c = &config["config"];
    for field in ["architecture", "os", "author"] {
        out.push_str(&format!("{field}: {}\n", canonical(&config[field], false)));
    }
    for field in [
        "User",
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "Labels",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
        "Healthcheck",
        "OnBuild",
        "Shell",
        "ArgsEscaped",
    ] {
        // Healthcheck's zero durations and retries mean "the default", like absent fields.
        let drop_empty = field == "Healthcheck";
        out.push_str(&format!(
            "config.{field}: {}\n",
            canonical(&c[field], drop_empty)
        ));
    }
    let history = config["history"].as_array().cloned().unwrap_or_default();
    // History entries without `empty_layer` own the layers in order.
    let mut layer = layers.iter();
    for (i, h) in history.iter().enumerate() {
        let empty = h["empty_layer"].as_bool().unwrap_or(false)
            || layer.next().is_some_and(LayerSummary::is_empty);
        out.push_str(&format!(
            "history[{i}]: {}{}\n",
            canonical(&h["created_by"], false),
            if empty { " (empty_layer)" } else { "" }
        ));
    }
    let vacuous = layers.iter().filter(|l| l.is_empty()).count();
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .map_or(0, Vec::len)
        .saturating_sub(vacuous);
    out.push_str(&format!(
        "layers: {} (diff_ids: {diff_ids})\n",
        layers.len() - vacuous
    ));
}

/// Compact JSON with sorted keys; an empty value (null, "", [], {}, false, 0) at the top prints
/// as `-` (Go's `omitempty` makes them equal to an absent field). With `drop_empty`, empty
/// values inside objects are left out too (Healthcheck's zero durations).
fn canonical(v: &Value, drop_empty: bool) -> String {
    fn is_empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
        }
    }
    fn write(v: &Value, drop_empty: bool, out: &mut String) {
        match v {
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, drop_empty, out);
                }
                out.push(']');
            }
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                out.push('{');
                let mut first = true;
                for k in keys {
                    let x = &o[k];
                    if drop_empty && is_empty(x) {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(x, drop_empty, out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    if is_empty(v) {
        return "-".into();
    }
    let mut out = String::new();
    write(v, drop_empty, &mut out);
    out
}

/// `/`-rooted path of a layer entry: no `./`, no trailing `/`.
fn normalise(raw: &str) -> String {
    let p = raw.trim_start_matches("./").trim_start_matches('/');
    let p = p.trim_end_matches('/');
    if p.is_empty() || p == "." {
        "/".into()
    } else {
        format!("/{p}")
    }
}

fn parent_and_name(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Removes every path strictly below `dir`.
fn remove_children(fs: &mut BTreeMap<String, Node>, dir: &str) {
    let prefix = if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    };
    let doomed: Vec<String> = fs
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        fs.remove(&k);
    }
}

/// A layer entry before it is applied.
enum Change {
    Put(String, Node),
    Link(String, String),
}

/// What a layer holds besides its files: its counted entries and its whiteouts, sorted.
///
/// Counted are the entries that change the merged filesystem of the layers below, mtimes
/// ignored: a directory entry whose type, mode, owner and xattrs equal the directory already
/// there is not counted (an overlay copy-up of a parent whose only change is its mtime, the
/// runtime touching `/etc` for its `/etc/hosts` mount). Every other entry counts; whiteouts and
/// opaque markers are reported separately.
struct LayerSummary {
    entries: usize,
    whiteouts: Vec<String>,
    opaque: Vec<String>,
}

impl LayerSummary {
    /// The layer changes nothing: shown like an empty layer (Docker's rule for an empty diff).
    fn is_empty(&self) -> bool {
        self.entries == 0 && self.whiteouts.is_empty() && self.opaque.is_empty()
    }
}

/// The root directory every filesystem starts with (what docker's layers root at).
fn root_dir() -> Node {
    Node {
        kind: 'd',
        mode: 0o755,
        uid: 0,
        gid: 0,
        content: "-".into(),
        inode: 0,
        xattrs: BTreeMap::new(),
    }
}

/// The xattrs of a layer entry, from its PAX `SCHILY.xattr.<name>` records.
fn entry_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> BTreeMap<String, Vec<u8>> {
    let mut xattrs = BTreeMap::new();
    if let Some(exts) = entry.pax_extensions().expect("pax extensions") {
        for ext in exts {
            let ext = ext.expect("pax record");
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
            }
        }
    }
    xattrs
}

/// Applies one (plain or compressed) layer tar: whiteouts and opaque markers remove paths of
/// the layers below, then the layer's own entries are written in order.
fn apply_layer(data: &[u8], fs: &mut BTreeMap<String, Node>, next_inode: &mut u64) -> LayerSummary {
    let (_, reader) =
        strata_oci::compression::decompress(data, u64::MAX).expect("decompress layer");
    let mut archive = tar::Archive::new(reader);
    let mut changes = Vec::new();
    let mut whiteouts = Vec::new();
    let mut opaque = Vec::new();
    for entry in archive.entries().expect("read layer") {
        let mut entry = entry.expect("layer entry");
        let raw = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .into_owned();
        let path = normalise(&raw);
        let (parent, name) = parent_and_name(&path);
        if name == ".wh..wh..opq" {
            opaque.push(parent.to_string());
            continue;
        }
        if let Some(gone) = name.strip_prefix(".wh.") {
            whiteouts.push(join(parent, gone));
            continue;
        }
        let xattrs = entry_xattrs(&mut entry);
        let h = entry.header();
        let mode = h.mode().expect("entry mode") & 0o7777;
        let uid = h.uid().expect("entry uid");
        let gid = h.gid().expect("entry gid");
        let kind = h.entry_type();
        let node = |kind: char, content: String| Node {
            kind,
            mode,
            uid,
            gid,
            content,
            inode: 0,
            xattrs: xattrs.clone(),
        };
        let change = match kind {
            tar::EntryType::Directory => Change::Put(path, node('d', "-".into())),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .expect("symlink target")
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Change::Put(path, node('l', format!("->{target}")))
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .expect("hardlink target")
                    .map(|t| normalise(&t.to_string_lossy()))
                    .unwrap_or_default();
                Change::Link(path, target)
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let dev = format!(
                    "{},{}",
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0)
                );
                let k = if kind == tar::EntryType::Char {
                    'c'
                } else {
                    'b'
                };
                Change::Put(path, node(k, dev))
            }
            tar::EntryType::Fifo => Change::Put(path, node('p', "-".into())),
            _ => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("read layer file");
                Change::Put(path, node('f', file_content(&data)))
            }
        };
        changes.push(change);
    }
    for dir in &opaque {
        remove_children(fs, dir);
    }
    for gone in &whiteouts {
        fs.remove(gone);
        remove_children(fs, gone);
    }
    // Compared with the layers below (after this layer's whiteouts), before any entry of it.
    let entries = changes
        .iter()
        .filter(|change| match change {
            Change::Put(path, node) if node.kind == 'd' => {
                !fs.get(path).is_some_and(|old| old.same_metadata(node))
            }
            _ => true,
        })
        .count();
    for change in changes {
        match change {
            Change::Put(path, mut node) => {
                *next_inode += 1;
                node.inode = *next_inode;
                if node.kind == 'd' {
                    // A directory entry over an existing directory only updates its metadata.
                    if fs.get(&path).is_some_and(|n| n.kind != 'd') {
                        fs.remove(&path);
                    }
                } else {
                    remove_children(fs, &path);
                }
                fs.insert(path, node);
            }
            Change::Link(path, target) => {
                let node = fs.get(&target).cloned().unwrap_or_else(|| Node {
                    kind: '?',
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    content: format!("missing-hardlink-target:{target}"),
                    inode: u64::MAX,
                    xattrs: BTreeMap::new(),
                });
                remove_children(fs, &path);
                fs.insert(path, node);
            }
        }
    }
    whiteouts.sort();
    opaque.sort();
    LayerSummary {
        entries,
        whiteouts,
        opaque,
    }
}

/// Files up to this size that are text also show their content, for readable diffs.
const INLINE_TEXT: usize = 200;

/// The sha256 of a file's bytes, followed by ` "text"` (escaped) for a small text file.
fn file_content(data: &[u8]) -> String {
    let mut hasher = Hasher::new();
    hasher.update(data);
    let hex = hasher.finish().hex();
    match std::str::from_utf8(data) {
        Ok(text)
            if data.len() <= INLINE_TEXT
                && text
                    .chars()
                    .all(|c| c == '\n' || c == '\t' || !c.is_control()) =>
        {
            format!("{hex} \"{}\"", text.escape_debug())
        }
        _ => hex,
    }
}

/// Escapes a path so that it stays one whitespace-free column.
fn quote(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_graphic() => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
        }
    }
    out
}

/// One line per path (the root itself left out):
/// `path type mode uid gid sha256 ["small text"]|->symlink-target|=first-hardlink-path|-`.
fn fs_section(fs: &BTreeMap<String, Node>, out: &mut String) {
    // The first (sorted) path of each inode shared by several regular files.
    let mut first_of: HashMap<u64, &str> = HashMap::new();
    for (path, node) in fs {
        if node.kind == 'f' {
            first_of.entry(node.inode).or_insert(path);
        }
    }
    for (path, node) in fs {
        if path == "/" {
            continue;
        }
        let content = match first_of.get(&node.inode) {
            Some(first) if node.kind == 'f' && *first != path => format!("={}", quote(first)),
            _ => node.content.clone(),
        };
        out.push_str(&format!(
            "{} {} {:04o} {} {} {}\n",
            quote(path),
            node.kind,
            node.mode,
            node.uid,
            node.gid,
            content
        ));
    }
}
