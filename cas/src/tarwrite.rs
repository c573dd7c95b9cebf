//! Deterministic tars of directories, and [`Store::ingest_dir`] (commit an overlay upper dir).
//!
//! The tar written for a directory is a function of the tree only:
//!
//! - entries in byte order of their names, depth first, a directory before its children; the
//!   root itself has no entry; names are relative, directories end in `/`;
//! - ustar headers with empty user/group names; a PAX `x` header (named `././@PaxHeader`)
//!   precedes an entry whose path or link target exceeds 100 bytes, whose ids, size or mtime do
//!   not fit the octal fields, or which has xattrs (`SCHILY.xattr.<name>`, sorted);
//! - uid, gid, permission bits (incl. set-id and sticky) are kept; mtimes are truncated to whole
//!   seconds, as docker and BuildKit do;
//! - a regular file whose (dev, ino) was already written becomes a hardlink (`1`) to the first
//!   name; symlinks, character and block devices and fifos are kept; sockets are skipped;
//! - overlayfs whiteouts (0/0 character devices) become empty regular files `.wh.<name>`, an
//!   opaque directory (`trusted.overlay.opaque=y` or `user.overlay.opaque=y`) is followed by an
//!   empty `<dir>/.wh..wh..opq`; `trusted.overlay.*`, `user.overlay.*` and `security.selinux`
//!   xattrs are never written.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Type;
use nix::fcntl::{AtFlags, OFlag};

use crate::error::{Error, Result, io_err};
use crate::extract::BLOCK;
use crate::layer::LayerInfo;
use crate::lease::Lease;
use crate::object::ObjectKey;
use crate::store::Store;

/// Everything one tar entry needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub name: Vec<u8>,
    pub kind: u8,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub link: Vec<u8>,
    pub devmajor: u64,
    pub devminor: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

fn octal(field: &mut [u8], v: u64) -> bool {
    // Zero-padded digits then a NUL, as `format!("{v:0w$o}")` would write them, without the
    // allocation (several fields per header, every header of every layer).
    // A value that does not fit leaves the field as it was (zeros).
    let Some((nul, digits)) = field.split_last_mut() else {
        return false;
    };
    if 3 * digits.len() < 64 && v >> (3 * digits.len()) != 0 {
        return false;
    }
    let mut rest = v;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest & 7) as u8;
        rest >>= 3;
    }
    *nul = 0;
    true
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn ustar(name: &[u8], kind: u8, size: u64, e: &Entry, link: &[u8]) -> ([u8; BLOCK], bool) {
    let mut h = [0u8; BLOCK];
    let mut fits = true;
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    fits &= octal(&mut h[100..108], u64::from(e.mode & 0o7777));
    fits &= octal(&mut h[108..116], e.uid);
    fits &= octal(&mut h[116..124], e.gid);
    fits &= octal(&mut h[124..136], size);
    fits &= e.mtime >= 0 && octal(&mut h[136..148], e.mtime.max(0) as u64);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    fits &= octal(&mut h[329..337], e.devmajor);
    fits &= octal(&mut h[337..345], e.devminor);
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    // Six digits, NUL, space: the checksum of 512 bytes always fits.
    octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    (h, fits)
}

pub(crate) fn pad(out: &mut (impl Write + ?Sized), size: u64) -> io::Result<()> {
    let p = ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize;
    out.write_all(&[0u8; BLOCK][..p])
}

/// Writes the header(s) of one entry (PAX first when needed); the caller writes the data + pad.
pub(crate) fn write_header(out: &mut (impl Write + ?Sized), e: &Entry) -> io::Result<()> {
    let (_, fits) = ustar(&e.name, e.kind, e.size, e, &e.link);
    let mut pax = Vec::new();
    if e.name.len() > 100 {
        pax_record(&mut pax, "path", &e.name);
    }
    if e.link.len() > 100 {
        pax_record(&mut pax, "linkpath", &e.link);
    }
    if !fits {
        pax_record(&mut pax, "gid", e.gid.to_string().as_bytes());
        pax_record(&mut pax, "mtime", e.mtime.to_string().as_bytes());
        pax_record(&mut pax, "size", e.size.to_string().as_bytes());
        pax_record(&mut pax, "uid", e.uid.to_string().as_bytes());
    }
    for (k, v) in &e.xattrs {
        pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
    }
    if !pax.is_empty() {
        let pe = Entry {
            mode: 0o644,
            ..Default::default()
        };
        let (h, _) = ustar(b"././@PaxHeader", b'x', pax.len() as u64, &pe, b"");
        out.write_all(&h)?;
        out.write_all(&pax)?;
        pad(out, pax.len() as u64)?;
    }
    let clamp = |v: u64, max: u64| if v > max { 0 } else { v };
    let small = Entry {
        uid: clamp(e.uid, 0o7777777),
        gid: clamp(e.gid, 0o7777777),
        mtime: if e.mtime < 0 || e.mtime > 0o77777777777 {
            0
        } else {
            e.mtime
        },
        ..e.clone()
    };
    let size = clamp(e.size, 0o77777777777);
    let (h, _) = ustar(&e.name, e.kind, size, &small, &e.link);
    out.write_all(&h)
}

/// Writes one entry with in-memory data (tests).
#[cfg(test)]
pub(crate) fn write_entry(out: &mut impl Write, e: &Entry, data: &[u8]) -> io::Result<()> {
    write_header(
        out,
        &Entry {
            size: data.len() as u64,
            ..e.clone()
        },
    )?;
    out.write_all(data)?;
    pad(out, data.len() as u64)
}

/// The end-of-archive marker (two zero blocks).
pub(crate) fn write_end(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

fn keep_xattr(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name == "security.selinux")
}

/// Kept xattrs (sorted) and whether the directory is overlay-opaque.
type Xattrs = (Vec<(String, Vec<u8>)>, bool);

/// The xattrs of an open file or directory (read through its fd: no path lookup).
fn read_xattrs(file: &File, path: &Path) -> Result<Xattrs> {
    use xattr::FileExt;
    let mut out = Vec::new();
    let mut opaque = false;
    let names = match file.list_xattr() {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok((out, false)),
        Err(e) => return Err(io_err(path)(e)),
    };
    for name in names {
        let Some(name) = name.to_str().map(str::to_owned) else {
            continue;
        };
        let Some(v) = file.get_xattr(&name).map_err(io_err(path))? else {
            continue;
        };
        if (name == "trusted.overlay.opaque" || name == "user.overlay.opaque") && v == b"y" {
            opaque = true;
        }
        if keep_xattr(&name) {
            out.push((name, v));
        }
    }
    out.sort();
    Ok((out, opaque))
}

/// The metadata of a tree entry, from one `fstat`/`fstatat` (no path walk).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    pub rdev: u64,
}

impl From<nix::sys::stat::FileStat> for Meta {
    fn from(st: nix::sys::stat::FileStat) -> Self {
        Meta {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
            size: u64::try_from(st.st_size).unwrap_or(0),
            nlink: st.st_nlink,
            dev: st.st_dev,
            ino: st.st_ino,
            rdev: st.st_rdev,
        }
    }
}

impl Meta {
    fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// What a tree walk produces, entry by entry, in tar order (see the module docs).
pub(crate) trait TreeSink {
    /// A header-only entry: directory, symlink, device, fifo, whiteout, opaque marker or hardlink.
    fn header(&mut self, e: &Entry) -> Result<()>;
    /// A regular file: its headers (`e.size` is set), then `e.size` bytes of `file` (open on
    /// `path`), then padding. `placed` is what [`Self::placed`] said of it.
    fn file(
        &mut self,
        path: &Path,
        e: &Entry,
        m: &Meta,
        file: File,
        placed: Option<Placed>,
    ) -> Result<()>;
    /// What the sink already knows of the regular file at `path` (`rel` in the tar, without
    /// a leading `/`), taken from the lower tree when `below` (see [`Placed`]). The default:
    /// nothing.
    fn placed(&self, _path: &Path, _rel: &[u8], _m: &Meta, _below: bool) -> Option<Placed> {
        None
    }
}

/// A regular file the walk's sink placed itself as a link to a known object: it is never a tar
/// hardlink of another name (two links to one object are two files), and, when `bare`, the
/// object is known to carry no xattrs (the walk then does not list them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    pub key: ObjectKey,
    pub bare: bool,
}

/// Writes a tar stream.
struct TarOut<'a, W: Write>(&'a mut W);

impl<W: Write> TreeSink for TarOut<'_, W> {
    fn header(&mut self, e: &Entry) -> Result<()> {
        write_header(self.0, e).map_err(io_err("<tar output>"))
    }

    fn file(
        &mut self,
        path: &Path,
        e: &Entry,
        _m: &Meta,
        f: File,
        _placed: Option<Placed>,
    ) -> Result<()> {
        self.header(e)?;
        let n = io::copy(&mut f.take(e.size), self.0).map_err(io_err(path))?;
        if n != e.size {
            return Err(shrank(path));
        }
        pad(self.0, e.size).map_err(io_err("<tar output>"))
    }
}

/// The error for a file that became shorter while being archived.
pub(crate) fn shrank(path: &Path) -> Error {
    Error::Archive(format!("{} shrank while being archived", path.display()))
}

/// Writes the deterministic tar of `dir` (see the module docs).
///
/// # Errors
/// I/O errors reading the tree or writing `out`; a file that shrinks while being read.
pub fn write_dir_tar(dir: &Path, out: &mut impl Write) -> Result<()> {
    walk_tree(dir, &mut TarOut(out))?;
    write_end(out).map_err(io_err("<tar output>"))
}

/// Opens `name` in `dir` without following a symlink in its last component (the walk never
/// follows one anywhere: every other component is an fd it opened itself).
fn open_at(dir: &impl AsFd, name: &OsStr, flags: OFlag, path: &Path) -> Result<File> {
    nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| io_err(path)(e.into()))
}

/// Opens the regular file `name` of `dir` for reading its content: `O_NONBLOCK` (a fifo that
/// replaced the file in between never blocks the open) and `O_NOATIME`. Without it every read
/// of an object dirtied its inode: each hardlink to an object updates its ctime, and relatime
/// then updates the atime at the next read. `O_NOATIME` needs the file's owner or
/// `CAP_FOWNER`; without them the file is opened as before.
fn open_file_at(dir: &impl AsFd, name: &OsStr, path: &Path) -> Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
    match open_at(dir, name, flags | OFlag::O_NOATIME, path) {
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EPERM) => {
            open_at(dir, name, flags, path)
        }
        r => r,
    }
}

/// Walks `dir` in tar order, feeding `sink` (see the module docs for the conversions).
///
/// Every lookup is relative to the fd of the directory being walked, so each costs one path
/// component, not the whole path from `/`: a layer of 20,000 files is walked with about four
/// syscalls per file (fstatat or fstat, openat, read, close; xattrs through the open fd).
pub(crate) fn walk_tree(dir: &Path, sink: &mut impl TreeSink) -> Result<()> {
    walk_trees(dir, None, sink)
}

/// [`walk_tree`] of the union of `top` over `lower`, as an overlay mount of the two would show
/// it: a directory of both is merged, any other name of `top` hides the same name of `lower`.
/// Paths given to `sink` are under `top` (the entries of `lower` too). Whiteouts and opaque
/// directories of `top` are written as such, never applied to `lower`: the caller stacks trees
/// that have none (a layer stored as a delta, see [`crate::commit`]).
pub(crate) fn walk_trees(top: &Path, lower: Option<&Path>, sink: &mut impl TreeSink) -> Result<()> {
    let root = File::open(top).map_err(io_err(top))?;
    let lower = lower
        .map(|l| File::open(l).map_err(io_err(l)))
        .transpose()?;
    walk(root, lower, false, top, b"", sink, &mut HashMap::new())
}

/// A directory entry's name and dirent type.
type Named = (OsString, Option<Type>);

/// A directory's entries (without `.` and `..`) in tar order (byte order of their names), and
/// the directory's fd for `*at` calls on them.
fn sorted_listing(dir_file: File) -> nix::Result<(nix::dir::Dir, Vec<Named>)> {
    let mut listing = nix::dir::Dir::from_fd(OwnedFd::from(dir_file))?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((OsStr::from_bytes(name).to_os_string(), entry.file_type()));
        }
    }
    names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok((listing, names))
}

/// The entries of `top` and `lower` (directory listings), merged in tar order: each name once,
/// with the listing it is taken from and, for a name of both, `lower`'s as well (where a
/// directory's subtree continues).
fn merged_names<'d>(
    top: (&'d nix::dir::Dir, Vec<Named>),
    lower: Option<(&'d nix::dir::Dir, Vec<Named>)>,
) -> Vec<(Named, &'d nix::dir::Dir, Option<&'d nix::dir::Dir>)> {
    let (tdir, tnames) = top;
    let Some((ldir, lnames)) = lower else {
        return tnames.into_iter().map(|n| (n, tdir, None)).collect();
    };
    let mut out = Vec::with_capacity(tnames.len().max(lnames.len()));
    let (mut t, mut l) = (tnames.into_iter().peekable(), lnames.into_iter().peekable());
    loop {
        let order = match (t.peek(), l.peek()) {
            (None, None) => return out,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => a.0.as_bytes().cmp(b.0.as_bytes()),
        };
        match order {
            std::cmp::Ordering::Less => out.extend(t.next().map(|n| (n, tdir, None))),
            std::cmp::Ordering::Greater => out.extend(l.next().map(|n| (n, ldir, None))),
            std::cmp::Ordering::Equal => {
                l.next();
                out.extend(t.next().map(|n| (n, tdir, Some(ldir))));
            }
        }
    }
}

/// `in_lower`: `dir_file` itself is a directory of the lower tree (one the top tree does not
/// have).
fn walk(
    dir_file: File,
    lower_file: Option<File>,
    in_lower: bool,
    dir: &Path,
    prefix: &[u8],
    sink: &mut impl TreeSink,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Result<()> {
    let (top, names) = sorted_listing(dir_file).map_err(|e| io_err(dir)(e.into()))?;
    let lower = lower_file
        .map(sorted_listing)
        .transpose()
        .map_err(|e| io_err(dir)(e.into()))?;
    let (lower_dir, lower_names) = match lower {
        Some((d, n)) => (Some(d), n),
        None => (None, Vec::new()),
    };
    let merged = merged_names((&top, names), lower_dir.as_ref().map(|d| (d, lower_names)));
    for ((name, dtype), listing, below) in merged {
        let path = dir.join(&name);
        // Taken from the lower tree: this directory is the lower's, or the name is its alone.
        let from_lower = in_lower || !std::ptr::eq(listing, &top);
        // A regular file (by its dirent type) is opened at once and fstat'ed; anything else is
        // fstatat'ed.
        let mut opened = None;
        let m: Meta = if dtype == Some(Type::File) {
            let f = open_file_at(listing, &name, &path)?;
            let st = nix::sys::stat::fstat(&f).map_err(|e| io_err(&path)(e.into()))?;
            opened = Some(f);
            st.into()
        } else {
            nix::sys::stat::fstatat(listing, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| io_err(&path)(e.into()))?
                .into()
        };
        let mut rel = prefix.to_vec();
        rel.extend_from_slice(name.as_bytes());
        let mut e = Entry {
            name: rel.clone(),
            mode: m.mode & 0o7777,
            uid: u64::from(m.uid),
            gid: u64::from(m.gid),
            mtime: m.mtime,
            ..Default::default()
        };
        match m.kind() {
            libc::S_IFCHR if m.rdev == 0 => {
                // overlay whiteout -> OCI whiteout
                let mut wh = prefix.to_vec();
                wh.extend_from_slice(b".wh.");
                wh.extend_from_slice(name.as_bytes());
                e.name = wh;
                e.kind = b'0';
                e.mode = 0;
                sink.header(&e)?;
            }
            libc::S_IFDIR => {
                let sub = open_at(listing, &name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, &path)?;
                // The same directory in the lower tree continues this one (anything else
                // there is hidden by it).
                let sub_below = match below {
                    Some(b) => match open_at(b, &name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, &path)
                    {
                        Ok(f) => Some(f),
                        Err(Error::Io { source, .. })
                            if source.raw_os_error() == Some(libc::ENOTDIR)
                                || source.raw_os_error() == Some(libc::ELOOP) =>
                        {
                            None
                        }
                        Err(e) => return Err(e),
                    },
                    None => None,
                };
                let (xattrs, opaque) = read_xattrs(&sub, &path)?;
                e.name.push(b'/');
                e.kind = b'5';
                e.xattrs = xattrs;
                sink.header(&e)?;
                if opaque {
                    let mut opq = e.name.clone();
                    opq.extend_from_slice(b".wh..wh..opq");
                    let oe = Entry {
                        name: opq,
                        kind: b'0',
                        mtime: e.mtime,
                        ..Default::default()
                    };
                    sink.header(&oe)?;
                }
                walk(sub, sub_below, from_lower, &path, &e.name, sink, links)?;
            }
            libc::S_IFLNK => {
                e.kind = b'2';
                e.link = nix::fcntl::readlinkat(listing, name.as_os_str())
                    .map_err(|err| io_err(&path)(err.into()))?
                    .as_bytes()
                    .to_vec();
                sink.header(&e)?;
            }
            libc::S_IFREG => {
                let placed = sink.placed(&path, &rel, &m, from_lower);
                if placed.is_none() && m.nlink > 1 {
                    if let Some(first) = links.get(&(m.dev, m.ino)) {
                        e.kind = b'1';
                        e.link = first.clone();
                        sink.header(&e)?;
                        continue;
                    }
                    links.insert((m.dev, m.ino), rel.clone());
                }
                let f = match opened {
                    Some(f) => f,
                    None => open_file_at(listing, &name, &path)?,
                };
                if !placed.is_some_and(|p| p.bare) {
                    e.xattrs = read_xattrs(&f, &path)?.0;
                }
                e.kind = b'0';
                e.size = m.size;
                sink.file(&path, &e, &m, f, placed)?;
            }
            libc::S_IFCHR | libc::S_IFBLK => {
                e.kind = if m.kind() == libc::S_IFCHR {
                    b'3'
                } else {
                    b'4'
                };
                e.devmajor = u64::from(nix::sys::stat::major(m.rdev) as u32);
                e.devminor = u64::from(nix::sys::stat::minor(m.rdev) as u32);
                sink.header(&e)?;
            }
            libc::S_IFIFO => {
                e.kind = b'6';
                sink.header(&e)?;
            }
            // sockets: skipped, as docker does
            _ => {}
        }
    }
    Ok(())
}

/// A [`prefetch_tree`] that starts only when asked to: a walk whose files are all in the page
/// cache (the usual case, files placed or read moments ago) never pays for a second pass over
/// the tree; the walk starts the prefetch once its reads show a cold cache ([`Probe`]).
pub(crate) struct Prefetch {
    /// [`WAITING`], [`GO`] or [`STOPPED`].
    state: std::sync::Mutex<u8>,
    changed: std::sync::Condvar,
    stop: std::sync::atomic::AtomicBool,
}

const WAITING: u8 = 0;
const GO: u8 = 1;
const STOPPED: u8 = 2;

impl Prefetch {
    pub(crate) fn new() -> Self {
        Prefetch {
            state: std::sync::Mutex::new(WAITING),
            changed: std::sync::Condvar::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn set(&self, to: u8) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *st == WAITING {
            *st = to;
        }
        self.changed.notify_all();
    }

    /// The body of the prefetch thread: waits for [`Self::start`] (or returns at
    /// [`Self::stop`]), then prefetches `dirs` in turn until done or stopped.
    pub(crate) fn run(&self, dirs: &[std::path::PathBuf]) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while *st == WAITING {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let go = *st == GO;
        drop(st);
        if go {
            for dir in dirs {
                prefetch_tree(dir, &self.stop);
            }
        }
    }

    /// Starts the prefetch (once; later calls do nothing).
    pub(crate) fn start(&self) {
        self.set(GO);
    }

    /// Ends the prefetch, started or not.
    pub(crate) fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.set(STOPPED);
    }
}

/// Tells a cold page cache from a warm one by the reads of a walk that tries [`read_cached`]
/// first. One miss is not enough: on a warm cache, `RWF_NOWAIT` still fails now and then
/// (here, for 0-2% of 20,000 cached files in a pass, on folios the kernel is busy with), and a
/// prefetch started for nothing walks and opens the whole tree once more. A cold cache misses
/// nearly every read, so it is told after [`Probe::MIN_MISSES`] of them.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    reads: u64,
    misses: u64,
    /// The cache was found cold: reads no longer try [`read_cached`].
    done: bool,
}

impl Probe {
    /// Misses before a cache can be called cold.
    const MIN_MISSES: u64 = 16;
    /// ... and at least one read in this many must have missed.
    const MISS_RATIO: u64 = 8;

    /// Reads should still try the page cache alone.
    pub(crate) fn on(&self) -> bool {
        !self.done
    }

    /// Counts a read that tried the page cache; true (once) when the cache now looks cold.
    pub(crate) fn cold(&mut self, missed: bool) -> bool {
        self.reads += 1;
        self.misses += u64::from(missed);
        self.done = self.misses >= Self::MIN_MISSES && self.misses * Self::MISS_RATIO >= self.reads;
        self.done
    }
}

/// Reads up to `want` bytes from `file`'s position into the spare capacity of `buf` (which
/// grows by what was read) only if they are in the page cache: `Ok(None)` when the read would
/// wait for the disk (or the file system cannot tell), `Ok(Some(0))` at the end of the file.
/// `preadv2(RWF_NOWAIT)` at offset -1 reads at and advances the file position, as `read` does.
/// https://man7.org/linux/man-pages/man2/preadv2.2.html
pub(crate) fn read_cached(
    file: &File,
    buf: &mut Vec<u8>,
    want: usize,
) -> io::Result<Option<usize>> {
    use std::os::fd::AsRawFd;
    buf.reserve(want);
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: want.min(spare.len()),
    };
    // SAFETY: the iovec covers spare capacity of `buf` that nothing else references; the kernel
    // writes at most `iov_len` bytes there.
    let r = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    let Ok(n) = usize::try_from(r) else {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS | libc::EINTR) => {
                Ok(None)
            }
            _ => Err(e),
        };
    };
    // SAFETY: the kernel initialised the first `n` (<= iov_len) bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(Some(n))
}

/// Asks the kernel to read every regular file of `dir` into the page cache, in tar order,
/// without waiting for the reads (`posix_fadvise(POSIX_FADV_WILLNEED)` queues them). Run next to
/// a [`walk_tree`] of the same tree, it keeps many reads in flight where the walk would wait for
/// each evicted file in turn. Best effort: errors end the prefetch silently, as does `stop`.
pub(crate) fn prefetch_tree(dir: &Path, stop: &std::sync::atomic::AtomicBool) {
    fn go(dir_file: File, stop: &std::sync::atomic::AtomicBool) -> Option<()> {
        use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
        let (listing, names) = sorted_listing(dir_file).ok()?;
        for (name, dtype) in names {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            let flags = match dtype {
                Some(Type::File) => OFlag::O_RDONLY | OFlag::O_NONBLOCK,
                Some(Type::Directory) => OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                _ => continue,
            };
            let Ok(f) = open_at(&listing, &name, flags, Path::new("")) else {
                continue;
            };
            if dtype == Some(Type::Directory) {
                go(f, stop)?;
            } else {
                let _ = posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
            }
        }
        Some(())
    }
    // SCHED_IDLE (this thread only): the prefetch runs on cycles nothing else wants, which is
    // when the walk waits for the disk; on a warm cache it costs the walk and the hasher nothing.
    // https://man7.org/linux/man-pages/man7/sched.7.html
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread with a valid parameter struct.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if let Ok(f) = File::open(dir) {
        go(f, stop);
    }
}

impl Store {
    /// Ingests a directory (an overlay upper dir, typically) as a layer: its deterministic tar
    /// (see the module docs) is streamed through a pipe into [`Store::ingest_layer`].
    ///
    /// # Errors
    /// I/O errors reading the tree; everything [`Store::ingest_layer`] returns.
    pub fn ingest_dir(&self, lease: &Lease, dir: &Path) -> Result<LayerInfo> {
        let (reader, writer) = io::pipe().map_err(io_err(dir))?;
        std::thread::scope(|s| {
            let producer = s.spawn(move || -> Result<()> {
                let mut w = BufWriter::with_capacity(1 << 20, writer);
                write_dir_tar(dir, &mut w)?;
                w.flush().map_err(io_err("<tar pipe>"))
            });
            let ingested = self.ingest_layer_from(lease, reader);
            let produced = producer
                .join()
                .unwrap_or_else(|_| Err(Error::Archive("tar writer thread panicked".into())));
            match (ingested, produced) {
                (Ok(info), Ok(())) => Ok(info),
                // The producer's own failure explains a truncated stream; a broken pipe only
                // means the ingest stopped reading first.
                (Err(ie), Err(pe)) => Err(match &pe {
                    Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe => ie,
                    _ => pe,
                }),
                (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    use nix::sys::time::TimeSpec;

    use super::*;

    #[test]
    fn octal_fields_match_format_and_overflow_leaves_zeros() {
        for (width, v) in [
            (8, 0),
            (8, 0o755),
            (8, 0o7_777_777),
            (12, 340 << 20),
            (12, 0o77_777_777_777),
            (7, 0o777_777),
        ] {
            let mut f = vec![0u8; width];
            assert!(octal(&mut f, v), "{v:o} in {width}");
            let digits = width - 1;
            let mut want = format!("{v:0digits$o}").into_bytes();
            want.push(0);
            assert_eq!(f, want);
        }
        for (width, v) in [(8, 0o10_000_000), (12, 1 << 33), (8, u64::MAX)] {
            let mut f = vec![0u8; width];
            assert!(!octal(&mut f, v), "{v:o} in {width}");
            assert!(f.iter().all(|&b| b == 0));
        }
    }
    use crate::layer::tests::store;

    #[test]
    fn a_probe_calls_a_cache_cold_only_when_reads_keep_missing() {
        // Warm: a miss now and then (2% here) never stops the probe.
        let mut warm = Probe::default();
        for i in 0..20_000 {
            assert!(!warm.cold(i % 50 == 0), "read {i}");
        }
        assert!(warm.on());
        // Cold: every read misses; the 16th miss tells, once, and the probe ends.
        let mut cold = Probe::default();
        let told: Vec<usize> = (0..40).filter(|_| cold.on() && cold.cold(true)).collect();
        assert_eq!(told, vec![15]);
        assert!(!cold.on());
        // Cold after a warm start: the misses must reach one read in eight.
        let mut late = Probe::default();
        for _ in 0..800 {
            assert!(!late.cold(false));
        }
        let n = (1..).find(|_| late.cold(true)).unwrap();
        assert_eq!(n, 115, "115 misses of 915 reads are one in eight");
    }

    type Snapshot = BTreeMap<String, (u32, u32, u32, i64, u64, Vec<u8>, Vec<(String, Vec<u8>)>)>;

    fn snapshot(root: &Path, rel: &str, out: &mut Snapshot, inos: &mut BTreeMap<u64, String>) {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            let p = root.join(&r);
            let m = fs::symlink_metadata(&p).unwrap();
            let body = if m.is_file() {
                fs::read(&p).unwrap()
            } else if m.file_type().is_symlink() {
                fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
            } else {
                Vec::new()
            };
            let mut xa: Vec<_> = if m.is_file() || m.is_dir() {
                xattr::list(&p)
                    .unwrap()
                    .filter_map(|k| k.to_str().map(str::to_owned))
                    .map(|k| (k.clone(), xattr::get(&p, &k).unwrap().unwrap_or_default()))
                    .collect()
            } else {
                Vec::new()
            };
            xa.sort();
            let mut body = body;
            if m.is_file() {
                // Hardlinks within the tree (the store's own object link does not count).
                if let Some(first) = inos.get(&m.ino()) {
                    body = format!("link:{first}").into_bytes();
                } else {
                    inos.insert(m.ino(), r.clone());
                }
            }
            let mtime = if m.is_dir() || m.is_file() {
                m.mtime()
            } else {
                0
            };
            out.insert(
                r.clone(),
                (m.mode(), m.uid(), m.gid(), mtime, m.rdev(), body, xa),
            );
            if m.is_dir() {
                snapshot(root, &r, out, inos);
            }
        }
    }

    #[test]
    fn dir_round_trip() {
        let (d, s) = store();
        let src = d.path().join("upper");
        fs::create_dir_all(src.join("sub/deep")).unwrap();
        fs::write(src.join("a"), "alpha").unwrap();
        fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o4750)).unwrap();
        std::os::unix::fs::chown(src.join("a"), Some(12), Some(34)).unwrap();
        fs::write(src.join("empty"), "").unwrap();
        fs::hard_link(src.join("a"), src.join("sub/a-link")).unwrap();
        fs::write(src.join("sub/deep/x"), vec![7u8; 100_000]).unwrap();
        xattr::set(src.join("sub/deep/x"), "user.k", b"v").unwrap();
        symlink("../a", src.join("sub/sym")).unwrap();
        symlink("x".repeat(150), src.join("longsym")).unwrap();
        mknod(
            &src.join("sub/fifo"),
            SFlag::S_IFIFO,
            Mode::from_bits_truncate(0o640),
            0,
        )
        .unwrap();
        mknod(
            &src.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .unwrap();
        mknod(
            &src.join("sub/gone"),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .unwrap();
        xattr::set(src.join("sub/deep"), "trusted.overlay.opaque", b"y").unwrap();
        fs::write(src.join("n".repeat(120)), "long").unwrap();
        // Whole seconds, as the tar keeps them.
        for p in ["a", "empty", "sub/deep/x", "sub/deep", "sub", ""] {
            let t = TimeSpec::new(1_500_000_000, 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &src.join(p),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
        // The prefetch of this tree (a fifo, devices, symlinks) returns without opening any of
        // them (an open of the fifo would block).
        let (tx, rx) = std::sync::mpsc::channel();
        let (src2, stop) = (src.clone(), std::sync::atomic::AtomicBool::new(false));
        std::thread::spawn(move || {
            prefetch_tree(&src2, &stop);
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("prefetch returns");
        let lease = s.lease().unwrap();
        let info = s.ingest_dir(&lease, &src).unwrap();
        // Deterministic: the same tree gives the same diffID.
        let mut t1 = Vec::new();
        write_dir_tar(&src, &mut t1).unwrap();
        assert_eq!(crate::Digest::of(&t1), info.diff_id);
        let (mut a, mut b) = (Snapshot::new(), Snapshot::new());
        snapshot(&src, "", &mut a, &mut BTreeMap::new());
        snapshot(
            &s.layer_rootfs(&info.diff_id),
            "",
            &mut b,
            &mut BTreeMap::new(),
        );
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (k, v) in &a {
            assert!(b.get(k) == Some(v), "{k} differs");
        }
        // The regenerated tar is the one we wrote.
        let mut regen = Vec::new();
        s.write_layer_tar(&info.diff_id, &mut regen).unwrap();
        assert!(regen == t1);
    }
}
