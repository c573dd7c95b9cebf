//! The parallel stat walk and the hashing of changed files.
//!
//! Every directory is opened relative to its parent's descriptor with `O_NOFOLLOW`, every entry
//! is `fstatat`ed with `AT_SYMLINK_NOFOLLOW` and every file is opened with `O_NOFOLLOW` relative
//! to its directory, so a symlink swapped in during the scan is never followed out of the
//! context. Subdirectories and files to hash of one directory run as rayon tasks.

use std::cell::RefCell;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use rayon::prelude::*;

use super::state::Loaded;
use super::{Entry, Kind};
use crate::dockerignore::DockerIgnore;
use crate::error::{Error, Result, errno_err, io_err};

/// One scanned entry, as kept in the state file.
pub(super) struct Scanned {
    pub path: String,
    pub entry: Entry,
    /// Changed so recently that a later write could keep the same stat: re-hash next time.
    pub racy: bool,
    /// Hashed by this scan (not reused).
    pub hashed: bool,
}

/// Reads are done in chunks this big; chunks of a big file are hashed with rayon.
const CHUNK: usize = 1 << 20;

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An entry of a directory listing, in name order.
enum Slot {
    Done(Scanned),
    /// Its [`Work`] result goes here (the n-th pending slot takes the n-th result).
    Pending,
}

/// What runs in parallel: a subdirectory, or a file to hash.
enum Work {
    Dir(String, String, Entry, bool),
    Hash(String, String),
}

struct Walker<'a> {
    root: &'a Path,
    ignore: &'a DockerIgnore,
    previous: Option<&'a Loaded>,
    /// Called before each file is hashed (see [`super::ContextIndex::scan_deferred`]).
    on_hash: &'a (dyn Fn() + Sync),
    /// Files whose ctime is at or after this may still change without a visible stat change.
    racy_from: i64,
}

/// Scans `root`, returning every included entry in pre-order (the root first as `""`),
/// siblings by name: the order of [`super::path_cmp`].
pub(super) fn scan(
    root: &Path,
    ignore: &DockerIgnore,
    previous: Option<&Loaded>,
    on_hash: &(dyn Fn() + Sync),
) -> Result<Vec<Scanned>> {
    let walker = Walker {
        root,
        ignore,
        previous,
        on_hash,
        racy_from: racy_from(),
    };
    let fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_err(root))?;
    let stat = nix::sys::stat::fstat(&fd).map_err(errno_err(root))?;
    let entry = entry_of(&stat);
    if entry.kind != Kind::Dir {
        return Err(Error::Context {
            message: format!("{} is not a directory", root.display()),
        });
    }
    let mut out = vec![Scanned {
        path: String::new(),
        entry,
        racy: false,
        hashed: false,
    }];
    out.extend(walker.walk(&fd, "")?);
    Ok(out)
}

/// The scan's start minus two ticks of the coarse clock the kernel stamps ctime with: a file
/// changed after that may be changed again within the same tick after we read it.
fn racy_from() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    // clock_getres(2) on CLOCK_REALTIME_COARSE gives the tick inode timestamps are taken with.
    // https://man7.org/linux/man-pages/man2/clock_getres.2.html
    let tick = nix::time::clock_getres(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .map_or(10_000_000, |t| t.tv_sec() * 1_000_000_000 + t.tv_nsec());
    now - 2 * tick.max(1_000_000)
}

fn kind_of(mode: u32) -> Kind {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Symlink,
        SFlag::S_IFIFO => Kind::Fifo,
        SFlag::S_IFCHR => Kind::CharDevice,
        SFlag::S_IFBLK => Kind::BlockDevice,
        SFlag::S_IFSOCK => Kind::Socket,
        _ => Kind::File,
    }
}

fn entry_of(st: &FileStat) -> Entry {
    Entry {
        kind: kind_of(st.st_mode),
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
        ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
        ino: st.st_ino,
        hash: [0; 32],
        link: None,
        nlink: st.st_nlink,
        dev: st.st_dev,
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        // Not format!: once per entry of the context, and the formatting machinery costs
        // several times the copy.
        let mut out = String::with_capacity(dir.len() + 1 + name.len());
        out.push_str(dir);
        out.push('/');
        out.push_str(name);
        out
    }
}

impl Walker<'_> {
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.root.join(rel)
    }

    /// Everything included below the directory open as `dir` (at `rel`), in pre-order.
    fn walk(&self, dir: &OwnedFd, rel: &str) -> Result<Vec<Scanned>> {
        let mut names = Vec::new();
        {
            let dup = dir.try_clone().map_err(io_err(self.path(rel)))?;
            let mut listing = Dir::from_fd(dup).map_err(errno_err(self.path(rel)))?;
            for item in listing.iter() {
                let item = item.map_err(errno_err(self.path(rel)))?;
                let name = item.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(name.to_vec());
                }
            }
        }

        // Name order, so that the output is in pre-order, sorted component-wise.
        names.sort_unstable();
        let mut out: Vec<Slot> = Vec::with_capacity(names.len());
        let mut work = Vec::new();
        for name in names {
            let Ok(text) = String::from_utf8(name) else {
                return Err(Error::Context {
                    message: format!("{}: a name in this directory is not UTF-8", rel_or_dot(rel)),
                });
            };
            let child = join(rel, &text);
            // fstatat(2) relative to the directory's descriptor, not following a final
            // symlink: one syscall per entry, no path resolution from the root.
            // https://man7.org/linux/man-pages/man2/fstatat.2.html
            let stat =
                match nix::sys::stat::fstatat(dir, text.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(errno_err(self.path(&child))(e)),
                };
            let mut entry = entry_of(&stat);
            let excluded = self.ignore.is_excluded(&child);
            if excluded && !(entry.kind == Kind::Dir && self.ignore.may_reinclude_under(&child)) {
                continue;
            }
            let done = |entry| {
                Slot::Done(Scanned {
                    path: child.clone(),
                    entry,
                    racy: false,
                    hashed: false,
                })
            };
            let slot = match entry.kind {
                Kind::Dir => {
                    work.push(Work::Dir(text, child.clone(), entry, excluded));
                    Slot::Pending
                }
                Kind::File => match self.previous.and_then(|p| p.reusable(&child, &entry)) {
                    Some(hash) => {
                        entry.hash = hash;
                        done(entry)
                    }
                    None => {
                        (self.on_hash)();
                        work.push(Work::Hash(text, child.clone()));
                        Slot::Pending
                    }
                },
                Kind::Symlink => {
                    // readlinkat(2) relative to the directory: the target is recorded, never
                    // followed. https://man7.org/linux/man-pages/man2/readlinkat.2.html
                    let target = match nix::fcntl::readlinkat(dir, text.as_str()) {
                        Ok(t) => t,
                        Err(Errno::ENOENT) => continue,
                        Err(e) => return Err(errno_err(self.path(&child))(e)),
                    };
                    entry.link = Some(target.as_bytes().to_vec());
                    done(entry)
                }
                _ => done(entry),
            };
            out.push(slot);
        }

        let mut results = work
            .into_par_iter()
            .map(|job| match job {
                Work::Dir(name, child, entry, pending) => {
                    self.subdir(dir, &name, child, entry, pending)
                }
                Work::Hash(name, child) => {
                    Ok(self.hash_file(dir, &name, child)?.into_iter().collect())
                }
            })
            .collect::<Result<Vec<Vec<Scanned>>>>()?
            .into_iter();
        let mut flat = Vec::with_capacity(out.len());
        for slot in out {
            match slot {
                Slot::Done(item) => flat.push(item),
                Slot::Pending => flat.extend(results.next().into_iter().flatten()),
            }
        }
        Ok(flat)
    }

    /// The directory `name` itself (unless `pending`, i.e. excluded, and nothing below is
    /// included) and everything included below it.
    fn subdir(
        &self,
        parent: &OwnedFd,
        name: &str,
        rel: String,
        entry: Entry,
        pending: bool,
    ) -> Result<Vec<Scanned>> {
        // openat(2) with O_NOFOLLOW on a single component: a directory swapped for a symlink
        // fails with ELOOP instead of leading out of the context.
        // https://man7.org/linux/man-pages/man2/openat.2.html
        let fd = match nix::fcntl::openat(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(Vec::new()),
            Err(e) => return Err(errno_err(self.path(&rel))(e)),
        };
        let below = self.walk(&fd, &rel)?;
        if pending && below.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(below.len() + 1);
        out.push(Scanned {
            path: rel,
            entry,
            racy: false,
            hashed: false,
        });
        out.extend(below);
        Ok(out)
    }

    /// Hashes the regular file `name` of `dir`; its entry is the `fstat` of the descriptor
    /// read, so stat and content belong together. `None` if it vanished meanwhile.
    fn hash_file(&self, dir: &OwnedFd, name: &str, rel: String) -> Result<Option<Scanned>> {
        // openat(2) with O_NOFOLLOW (a file swapped for a symlink fails with ELOOP) and
        // O_NONBLOCK (one swapped for a FIFO cannot block the scan).
        // https://man7.org/linux/man-pages/man2/openat.2.html
        let fd = match nix::fcntl::openat(
            dir,
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY
                | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(errno_err(self.path(&rel))(e)),
        };
        let stat = nix::sys::stat::fstat(fd.as_fd()).map_err(errno_err(self.path(&rel)))?;
        let mut entry = entry_of(&stat);
        if entry.kind != Kind::File {
            return Err(Error::Context {
                message: format!("{rel} changed type while the context was scanned"),
            });
        }
        let mut file = std::fs::File::from(fd);
        let mut hasher = blake3::Hasher::new();
        let read = BUF
            .with_borrow_mut(|buf| -> std::io::Result<u64> {
                buf.resize(CHUNK, 0);
                let mut total = 0u64;
                loop {
                    let n = match file.read(buf) {
                        Ok(0) => return Ok(total),
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    total += n as u64;
                    if n >= CHUNK / 2 {
                        hasher.update_rayon(&buf[..n]);
                    } else {
                        hasher.update(&buf[..n]);
                    }
                }
            })
            .map_err(io_err(self.path(&rel)))?;
        entry.hash = *hasher.finalize().as_bytes();
        // A size that moved under us means a concurrent writer: never trust this hash later.
        let racy = entry.ctime_ns >= self.racy_from || read != entry.size;
        Ok(Some(Scanned {
            path: rel,
            entry,
            racy,
            hashed: true,
        }))
    }
}

fn rel_or_dot(rel: &str) -> &str {
    if rel.is_empty() { "." } else { rel }
}
