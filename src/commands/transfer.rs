//! `strata import`, `strata load` and `strata save`: moving images in and out of the store.
//!
//! - `import TARBALL|- [NAME[:TAG]]` prints the new image ID (`sha256:...`), like docker.
//! - `load [-i FILE]` reads a docker-archive or an OCI archive (stdin by default; a terminal
//!   stdin is refused, as docker does) and prints `Loaded image: NAME:TAG` or
//!   `Loaded image ID: sha256:...` per image.
//! - `save [-o FILE] IMAGE...` writes to stdout by default (a terminal is refused: "cowardly
//!   refusing to save to a terminal"); with `-o` the archive is written to a temporary file
//!   next to FILE and renamed over it only when complete, so a failed save leaves no partial
//!   archive behind.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use strata_cas::Reference;
use strata_oci::{ArchiveFormat, Loaded};

use crate::Failure;
use crate::cli::{ImportArgs, LoadArgs, SaveArgs, SaveCompression, SaveFormat};
use crate::commands::open_images;

/// Buffer size for archive I/O.
const BUF: usize = 1 << 20;

/// `strata import TARBALL|- [NAME[:TAG]] [-c INSTRUCTION]... [-m MESSAGE]`.
///
/// # Errors
/// An unreadable or invalid tarball, a bad name or `--change`, or a store failure.
pub fn import(root: &Path, args: &ImportArgs) -> Result<(), Failure> {
    let source = args.source.to_string_lossy();
    if source.starts_with("http://") || source.starts_with("https://") {
        return Err(anyhow!("importing from a URL is not supported: {source}").into());
    }
    let reference = args
        .reference
        .as_deref()
        .map(|s| {
            s.parse::<Reference>()
                .with_context(|| format!("invalid reference format: {s:?}"))
        })
        .transpose()?;
    let images = open_images(root)?;
    let input: Box<dyn Read + Send> = if source == "-" {
        Box::new(std::io::stdin())
    } else {
        let file = File::open(&args.source)
            .with_context(|| format!("cannot open {}", args.source.display()))?;
        Box::new(file)
    };
    let summary = images
        .import(
            BufReader::with_capacity(BUF, input),
            reference.as_ref(),
            &args.change,
            args.message.as_deref(),
        )
        .with_context(|| format!("cannot import {source}"))?;
    println!("{}", summary.id);
    Ok(())
}

/// The line `load` prints for one loaded image.
pub fn loaded_line(l: &Loaded) -> String {
    match &l.reference {
        Some(r) => format!("Loaded image: {}", r.familiar()),
        None => format!("Loaded image ID: {}", l.id),
    }
}

/// `strata load [-i FILE] [-q]`.
///
/// # Errors
/// No input, an unreadable or invalid archive, or a store failure.
pub fn load(root: &Path, args: &LoadArgs) -> Result<(), Failure> {
    let input: Box<dyn Read + Send> = match &args.input {
        Some(path) if path.is_dir() => return load_layout_dir(root, path),
        Some(path) if path.as_os_str() != "-" => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            Box::new(file)
        }
        _ => {
            if std::io::stdin().is_terminal() {
                return Err(anyhow!(
                    "requested load from stdin, but stdin is empty (use -i FILE or redirect)"
                )
                .into());
            }
            Box::new(std::io::stdin())
        }
    };
    let images = open_images(root)?;
    let loaded = images
        .load(BufReader::with_capacity(BUF, input))
        .context("cannot load the archive")?;
    print_loaded(&loaded);
    Ok(())
}

fn print_loaded(loaded: &[Loaded]) {
    let mut out = String::new();
    for l in loaded {
        out.push_str(&loaded_line(l));
        out.push('\n');
    }
    print!("{out}");
}

/// `load -i DIR` of an OCI image layout directory: the directory is streamed to the loader
/// as a tar (an OCI archive) through a pipe, by a writer thread.
fn load_layout_dir(root: &Path, dir: &Path) -> Result<(), Failure> {
    let images = open_images(root)?;
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    let dir_owned = dir.to_path_buf();
    let producer = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut out = BufWriter::with_capacity(BUF, writer);
        write_dir_tar(&dir_owned, &mut out)?;
        out.flush().context("cannot stream the layout")?;
        Ok(())
    });
    let loaded = images.load(BufReader::with_capacity(BUF, reader));
    let produced = producer
        .join()
        .map_err(|_| anyhow!("the layout reader thread panicked"))?;
    // A failure reading the directory explains a failed load better than "truncated archive".
    produced.with_context(|| format!("cannot read the OCI layout {}", dir.display()))?;
    let loaded = loaded.context("cannot load the OCI layout")?;
    print_loaded(&loaded);
    Ok(())
}

/// Writes the regular files under `dir` (recursively, sorted, no symlinks followed) as a
/// ustar archive: what an OCI image layout needs (`oci-layout`, `index.json`, `blobs/`).
fn write_dir_tar(dir: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let mut files = Vec::new();
    collect_files(dir, Path::new(""), &mut files)?;
    for rel in files {
        let path = dir.join(&rel);
        let mut file =
            File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        out.write_all(&ustar_header(&rel.to_string_lossy(), size)?)?;
        let copied = std::io::copy(&mut (&mut file).take(size), out)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if copied != size {
            bail!("{} changed while being read", path.display());
        }
        let pad = (512 - size % 512) % 512;
        out.write_all(&vec![0u8; usize::try_from(pad).unwrap_or(0)])?;
    }
    out.write_all(&[0u8; 1024])?;
    Ok(())
}

fn collect_files(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let dir = base.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ft = e
            .file_type()
            .with_context(|| format!("cannot stat {}", e.path().display()))?;
        let child = rel.join(e.file_name());
        if ft.is_dir() {
            collect_files(base, &child, out)?;
        } else if ft.is_file() {
            out.push(child);
        }
    }
    Ok(())
}

/// A ustar header for a regular file (mode 0644, owner 0, time 0).
fn ustar_header(name: &str, size: u64) -> anyhow::Result<[u8; 512]> {
    let mut h = [0u8; 512];
    let bytes = name.as_bytes();
    let (prefix, name) = if bytes.len() <= 100 {
        (&[][..], bytes)
    } else {
        // Split at a '/' so that the name fits 100 bytes and the prefix 155.
        let split = bytes
            .iter()
            .enumerate()
            .filter(|&(i, &c)| c == b'/' && i <= 155 && bytes.len() - i - 1 <= 100)
            .map(|(i, _)| i)
            .next_back()
            .ok_or_else(|| anyhow!("path too long for the layout stream: {name}"))?;
        (&bytes[..split], &bytes[split + 1..])
    };
    h[..name.len()].copy_from_slice(name);
    let mut octal = |at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}", w = width - 1);
        h[at..at + width - 1].copy_from_slice(s.as_bytes());
    };
    octal(100, 8, 0o644);
    octal(108, 8, 0);
    octal(116, 8, 0);
    if size >= 8u64.pow(11) {
        bail!("file too large for the layout stream: {name:?}");
    }
    octal(124, 12, size);
    octal(136, 12, 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// `strata save [-o FILE] [--format docker|oci] [--compression gzip|zstd] IMAGE...`.
///
/// # Errors
/// A terminal stdout, an unknown image, or an I/O failure.
pub fn save(root: &Path, args: &SaveArgs) -> Result<(), Failure> {
    let format = match (args.format, args.compression) {
        (SaveFormat::Docker, None) => ArchiveFormat::Docker,
        (SaveFormat::Docker, Some(_)) => {
            return Err(Failure::Usage(anyhow!(
                "--compression applies to --format oci only (docker-archive layers are \
                 uncompressed tar, as docker save writes them)"
            )));
        }
        (SaveFormat::Oci, None | Some(SaveCompression::Gzip)) => ArchiveFormat::Oci,
        (SaveFormat::Oci, Some(SaveCompression::Zstd)) => ArchiveFormat::OciZstd,
    };
    let output = args.output.as_deref().filter(|p| p.as_os_str() != "-");
    if output.is_none() && std::io::stdout().is_terminal() {
        return Err(anyhow!(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect"
        )
        .into());
    }
    let images = open_images(root)?;
    match output {
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(BUF, stdout.lock());
            images
                .save(&args.images, format, &mut out)
                .context("cannot save the images")?;
            out.flush().context("cannot write to stdout")?;
        }
        Some(path) => save_to_file(path, |out| {
            images
                .save(&args.images, format, out)
                .context("cannot save the images")
        })?,
    }
    Ok(())
}

/// Runs `write` on a temporary file next to `path`, then syncs it and renames it over `path`.
/// On failure the temporary file is removed. A `path` that is not a regular file (`/dev/null`,
/// a fifo, `/dev/stdout`) or is a symlink is written through instead: a rename would replace
/// the device, the fifo or the link itself.
fn save_to_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let through = path.symlink_metadata().is_ok_and(|m| !m.is_file());
    if through {
        let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(regular)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut out = BufWriter::with_capacity(BUF, file);
        write(&mut out)?;
        return out
            .flush()
            .with_context(|| format!("cannot write {}", path.display()));
    }
    let tmp = temp_path(path)?;
    let result = (|| {
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut out = BufWriter::with_capacity(BUF, file);
        write(&mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A temporary name in the directory of `path`.
fn temp_path(path: &Path) -> anyhow::Result<PathBuf> {
    let Some(name) = path.file_name() else {
        bail!("invalid output file name: {}", path.display());
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let tmp_name = format!(
        ".{}.strata-tmp-{}-{nanos}",
        name.to_string_lossy(),
        std::process::id()
    );
    Ok(path.with_file_name(tmp_name))
}

#[cfg(test)]
mod tests {
    use strata_cas::Digest;

    use super::*;

    #[test]
    fn loaded_lines_like_docker() {
        let id = Digest::of(b"cfg");
        let named = Loaded {
            reference: Some("busybox".parse().expect("valid")),
            id,
        };
        assert_eq!(loaded_line(&named), "Loaded image: busybox:latest");
        let bare = Loaded {
            reference: None,
            id,
        };
        assert_eq!(loaded_line(&bare), format!("Loaded image ID: {id}"));
    }

    #[test]
    fn layout_dirs_stream_as_tar() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("mkdir");
        std::fs::write(dir.path().join("oci-layout"), "{}").expect("write");
        std::fs::write(blobs.join("a".repeat(64)), vec![7u8; 700]).expect("write");
        let mut out = Vec::new();
        write_dir_tar(dir.path(), &mut out).expect("tar");
        assert_eq!(out.len(), 512 + 1024 + 512 + 512 + 1024);
        let name = format!("blobs/sha256/{}", "a".repeat(64));
        assert_eq!(&out[..name.len()], name.as_bytes());
        assert_eq!(&out[124..135], b"00000001274");
        assert_eq!(&out[257..263], b"ustar\0");
        let sum: u32 = out[..512]
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        assert_eq!(&out[148..154], format!("{sum:06o}").as_bytes());
        assert!(ustar_header(&"x/".repeat(200), 1).is_err());
        assert!(ustar_header(&format!("{}/{}", "p".repeat(120), "n".repeat(90)), 1).is_ok());
    }

    #[test]
    fn failed_saves_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out.tar");
        let err = save_to_file(&target, |out| {
            out.write_all(b"partial")?;
            bail!("boom")
        });
        assert!(err.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read dir").collect();
        assert!(left.is_empty(), "{left:?}");
        save_to_file(&target, |out| Ok(out.write_all(b"whole")?)).expect("saves");
        assert_eq!(std::fs::read(&target).expect("read"), b"whole");
    }

    /// `-o` naming a fifo (as `/dev/null` or `/dev/stdout` would be a device) writes into it
    /// and leaves it in place; a symlink stays a symlink and its target gets the content.
    #[test]
    fn saves_write_through_fifos_and_symlinks() {
        use std::io::Read as _;
        use std::os::unix::fs::FileTypeExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                File::open(&fifo)
                    .and_then(|mut f| f.read_to_end(&mut got))
                    .expect("read fifo");
                got
            })
        };
        save_to_file(&fifo, |out| Ok(out.write_all(b"through")?)).expect("saves");
        assert_eq!(reader.join().expect("reader"), b"through");
        let m = std::fs::symlink_metadata(&fifo).expect("fifo");
        assert!(m.file_type().is_fifo(), "the fifo was replaced");

        let target = dir.path().join("real.tar");
        std::fs::write(&target, b"an older and longer content").expect("write");
        let link = dir.path().join("link.tar");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        save_to_file(&link, |out| Ok(out.write_all(b"new")?)).expect("saves");
        assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
    }
}
