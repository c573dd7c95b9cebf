//! ADD's own behaviour: local tar archives are extracted, `http(s)://` URLs downloaded.
//!
//! # Archives
//!
//! A local regular file is an archive when, after decompression (gzip, bzip2, xz or zstd,
//! recognised by their magic bytes, never by the file name), a first tar header can be read,
//! which is BuildKit's `isArchivePath` test. It is extracted into the destination (created as a
//! directory) following BuildKit's `applyRootArchive`, with the destination as the root:
//!
//! - names are cleaned with a leading `/` dropped; a name whose `..` leaves the root is an error
//!   ("archive path .. is outside extraction root");
//! - parents are resolved with [`super::resolve_with`] inside the destination: an absolute symlink
//!   target restarts at the destination, a relative one that leaves it is an error, so an entry
//!   written "through" a symlink planted earlier never lands outside;
//! - the last component is never followed: whatever is there is replaced (a directory is kept
//!   for a directory entry), so nothing is ever written through a symlink;
//! - hardlinks must name a file extracted earlier from the same archive;
//! - devices, fifos and other types are an error ("unsupported tar entry"), as in BuildKit;
//! - `--chown` overrides the archive's owners; `.wh.` names are ordinary files here (ADD does not
//!   apply whiteouts).
//!
//! # URLs
//!
//! Downloaded with a blocking HTTP client into one object: mode `0600` (then `--chmod`), owner
//! `--chown` or `0:0`, mtime from `Last-Modified` (else now). The file name, when the destination
//! is a directory, comes from `Content-Disposition` or the URL path's last segment (`download`
//! when empty). `--checksum=sha256:<hex>` is verified before anything is placed. Git URLs and
//! `--keep-git-dir` are not supported.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use strata_cas::object::{ObjectKey, ObjectMeta, ObjectWriter};

use super::copy::{CopyRequest, Writer, set_owner, set_times};
use super::{
    Escape, LayerView, SourceTree, Stat, base_name, join_rel, parent_rel, resolve, resolve_with,
};
use crate::error::{Error, Result, io_err};

/// Whether an ADD source is an `http://` or `https://` URL.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Whether an ADD source is a git URL (not supported).
pub fn is_git(s: &str) -> bool {
    s.starts_with("git@") || s.starts_with("git://") || s.ends_with(".git")
}

/// Wraps `r` in the decompressor its first bytes call for (plain tar passes through).
///
/// # Errors
/// Read errors; a decoder that cannot start.
pub fn decompress<'r>(r: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
    let mut r = BufReader::new(r);
    let head = r.fill_buf()?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(r))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// Whether the regular file `rel` of `tree` is a (possibly compressed) tar archive.
///
/// # Errors
/// Errors opening the file.
pub fn is_archive(tree: &dyn SourceTree, rel: &str) -> Result<bool> {
    let f = tree.open(rel)?;
    let Ok(r) = decompress(f) else {
        return Ok(false);
    };
    let mut ar = tar::Archive::new(r);
    let Ok(mut entries) = ar.entries() else {
        return Ok(false);
    };
    Ok(matches!(entries.next(), Some(Ok(_))))
}

/// The merged view seen from a directory of it, which acts as the root.
struct Rooted {
    view: LayerView,
    prefix: String,
}

impl SourceTree for Rooted {
    fn lstat(&self, rel: &str) -> Result<Option<Stat>> {
        self.view.stat(&join_rel(&self.prefix, rel))
    }
    fn read_dir(&self, rel: &str) -> Result<Vec<String>> {
        self.view.read_dir(&join_rel(&self.prefix, rel))
    }
    fn read_link(&self, rel: &str) -> Result<PathBuf> {
        self.view.read_link(&join_rel(&self.prefix, rel))
    }
    fn open(&self, rel: &str) -> Result<File> {
        self.view.open(&join_rel(&self.prefix, rel))
    }
}

/// Cleans an archive name: leading `/` dropped, `..` may not leave the root; `None` for the root.
fn clean_name(name: &str) -> Result<Option<String>> {
    let outside = || Error::Copy(format!("archive path {name:?} is outside extraction root"));
    let c = super::clean_rel(name.trim_start_matches('/')).ok_or_else(outside)?;
    Ok((!c.is_empty()).then_some(c))
}

fn utf8(b: &[u8], what: &str) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| Error::Copy(format!("{what} is not UTF-8")))
}

/// Extracts the archive `rel` of the request's source into the directory `dest` (resolved,
/// existing in the merged view); see the module docs.
pub(crate) fn extract(
    w: &mut Writer<'_, '_>,
    req: &CopyRequest<'_>,
    rel: &str,
    dest: &str,
) -> Result<()> {
    let f = req.source.open(rel)?;
    let r = decompress(f).map_err(io_err(rel))?;
    let mut ar = tar::Archive::new(r);
    let bad = |e: io::Error| Error::Copy(format!("{rel}: invalid archive: {e}"));
    let saved_owner = w.parent_owner;
    // Parents implied by archive entries are root's, as BuildKit creates them.
    w.parent_owner = (0, 0);
    let mut keys: HashMap<String, ObjectKey> = HashMap::new();
    let result = (|| -> Result<()> {
        for entry in ar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let kind = entry.header().entry_type();
            if matches!(
                kind,
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
            ) {
                continue;
            }
            let raw = utf8(&entry.path_bytes(), "archive path")?;
            let Some(name) = clean_name(&raw)? else {
                continue;
            };
            let h = entry.header();
            let mode = h.mode().map_err(bad)? & 0o7777;
            let (uid, gid) = match req.chown {
                Some(o) => o,
                None => (
                    u32::try_from(h.uid().map_err(bad)?)
                        .map_err(|_| bad(io::ErrorKind::InvalidData.into()))?,
                    u32::try_from(h.gid().map_err(bad)?)
                        .map_err(|_| bad(io::ErrorKind::InvalidData.into()))?,
                ),
            };
            let mtime = (i64::try_from(h.mtime().map_err(bad)?).unwrap_or(0), 0u32);
            let rooted = Rooted {
                view: w.merged.clone(),
                prefix: dest.to_owned(),
            };
            let parent =
                resolve_with(&rooted, parent_rel(&name), true, Escape::Reject).map_err(|_| {
                    Error::Copy(format!(
                        "archive symlink in the parent of {raw:?} points outside extraction root"
                    ))
                })?;
            let parent = w.ensure_dir_path(&join_rel(dest, &parent))?;
            let target = join_rel(&parent, base_name(&name));
            let p = w.upper_path(&target);
            match kind {
                tar::EntryType::Directory => {
                    if w.prepare(&target, true)? {
                        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                            .map_err(io_err(&p))?;
                        set_owner(&p, uid, gid)?;
                        w.set_dir_time(&target, mtime);
                    } else {
                        w.make_dir(&target, mode, (uid, gid), mtime)?;
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    w.prepare(&target, false)?;
                    let meta = ObjectMeta {
                        mode,
                        uid: u64::from(uid),
                        gid: u64::from(gid),
                        mtime_secs: mtime.0,
                        mtime_nanos: 0,
                        xattrs: Vec::new(),
                    };
                    let mut ow = ObjectWriter::new(&w.pending.tmp_dir(), meta)?;
                    io::copy(&mut entry, &mut ow).map_err(bad)?;
                    w.stats.copied_bytes += ow.written();
                    let (key, new) = ow.commit(w.store)?;
                    w.stats.new_objects += u64::from(new);
                    if new {
                        w.pending.note_new_object(&key)?;
                    }
                    if !w.pending.link_object(&key, &p)? {
                        return Err(Error::Copy(format!("object {key} vanished")));
                    }
                    keys.insert(target.clone(), key);
                    w.stats.files += 1;
                }
                tar::EntryType::Symlink => {
                    w.prepare(&target, false)?;
                    let link = entry
                        .link_name_bytes()
                        .ok_or_else(|| Error::Copy(format!("symlink {raw:?} has no target")))?;
                    let link = std::ffi::OsStr::from_bytes(&link).to_owned();
                    symlink(&link, &p).map_err(io_err(&p))?;
                    set_owner(&p, uid, gid)?;
                    set_times(&p, mtime)?;
                    w.stats.symlinks += 1;
                }
                tar::EntryType::Link => {
                    let link = entry
                        .link_name_bytes()
                        .ok_or_else(|| Error::Copy(format!("hardlink {raw:?} has no target")))?;
                    let link = utf8(&link, "hardlink target")?;
                    let Some(lname) = clean_name(&link)? else {
                        return Err(Error::Copy(format!(
                            "archive hardlink {raw:?} targets extraction root"
                        )));
                    };
                    let lres = resolve_with(&rooted, &lname, false, Escape::Reject)?;
                    let key = keys.get(&join_rel(dest, &lres)).copied().ok_or_else(|| {
                        Error::Copy(format!(
                            "archive hardlink {raw:?} to {link:?}: target is not a file of this archive"
                        ))
                    })?;
                    w.prepare(&target, false)?;
                    if !w.pending.link_object(&key, &p)? {
                        return Err(Error::Copy(format!("object {key} vanished")));
                    }
                    keys.insert(target.clone(), key);
                    w.stats.files += 1;
                }
                other => {
                    return Err(Error::Copy(format!(
                        "unsupported tar entry {raw:?} type {}",
                        other.as_byte()
                    )));
                }
            }
            w.stats.extracted += 1;
        }
        Ok(())
    })();
    w.parent_owner = saved_owner;
    result
}

/// The file name a download gets in a directory destination.
fn download_name(url: &reqwest::Url, headers: &reqwest::header::HeaderMap) -> String {
    if let Some(cd) = headers
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
    {
        for part in cd.split(';') {
            if let Some(v) = part.trim().strip_prefix("filename=") {
                let v = v.trim_matches('"');
                let b = base_name(v.trim_end_matches('/'));
                if !b.is_empty() && b != "." && b != ".." {
                    return b.to_owned();
                }
            }
        }
    }
    let path = url.path().trim_end_matches('/');
    match base_name(path) {
        "" | "." | ".." => "download".to_owned(),
        b => b.to_owned(),
    }
}

/// A writer that also computes the sha256 of what passes through.
struct Tee<'a> {
    inner: &'a mut ObjectWriter,
    sha: Sha256,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Downloads `url` to `dest` (relative, unresolved; `dest_is_dir` when it ends in `/`).
pub(crate) fn download(
    w: &mut Writer<'_, '_>,
    req: &CopyRequest<'_>,
    url: &str,
    dest: &str,
    dest_is_dir: bool,
) -> Result<()> {
    let expected = match &req.checksum {
        Some(c) => {
            let hex = c.strip_prefix("sha256:").ok_or_else(|| {
                Error::Copy(format!("unsupported checksum {c:?}: only sha256:<hex> is"))
            })?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Copy(format!("invalid checksum {c:?}")));
            }
            Some(hex.to_ascii_lowercase())
        }
        None => None,
    };
    let fail = |e: reqwest::Error| Error::Copy(format!("failed to fetch {url}: {e}"));
    let client = reqwest::blocking::Client::builder().build().map_err(fail)?;
    let mut resp = client.get(url).send().map_err(fail)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Error::Copy(format!(
            "failed to fetch {url}: invalid response status {}",
            status.as_u16()
        )));
    }
    let name = download_name(resp.url(), resp.headers());
    let mtime = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| (i64::try_from(d.as_secs()).unwrap_or(0), 0u32))
        .unwrap_or(w.now);
    let (uid, gid) = req.chown.unwrap_or((0, 0));
    let mode = req
        .chmod
        .as_ref()
        .map(|c| c.apply(0o600, false))
        .unwrap_or(0o600);
    let meta = ObjectMeta {
        mode,
        uid: u64::from(uid),
        gid: u64::from(gid),
        mtime_secs: mtime.0,
        mtime_nanos: mtime.1,
        xattrs: Vec::new(),
    };
    let mut ow = ObjectWriter::new(&w.pending.tmp_dir(), meta)?;
    let mut tee = Tee {
        inner: &mut ow,
        sha: Sha256::new(),
    };
    io::copy(&mut resp, &mut tee)
        .map_err(|e| Error::Copy(format!("failed to fetch {url}: {e}")))?;
    let actual = hex::encode(tee.sha.finalize());
    if let Some(exp) = expected
        && exp != actual
    {
        return Err(Error::Copy(format!(
            "digest mismatch sha256:{actual}: expected sha256:{exp}"
        )));
    }
    w.stats.downloaded_bytes += ow.written();
    // The destination: the same rules as a file source named `name`.
    let r = resolve(&w.merged, dest, true)?;
    let into_dir = dest_is_dir || r.is_empty() || w.merged_stat(&r)?.is_some_and(|s| s.is_dir());
    let target = if into_dir {
        let d = w.ensure_dir_path(&r)?;
        join_rel(&d, &name)
    } else {
        let parent = w.ensure_dir_path(parent_rel(&r))?;
        join_rel(&parent, base_name(&r))
    };
    w.prepare(&target, false)?;
    let (key, new) = ow.commit(w.store)?;
    w.stats.new_objects += u64::from(new);
    if new {
        w.pending.note_new_object(&key)?;
    }
    let p = w.upper_path(&target);
    if !w.pending.link_object(&key, &p)? {
        return Err(Error::Copy(format!("object {key} vanished")));
    }
    w.stats.files += 1;
    Ok(())
}
