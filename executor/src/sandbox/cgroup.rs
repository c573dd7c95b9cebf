//! A container's cgroup, written as cgroup files directly (no systemd, no library): created
//! from the spec's `linux.resources` (memory limit and swap, cpu quota and period, pids limit)
//! and `linux.cgroupsPath`, nested under the caller's own cgroup (`/proc/self/cgroup`), on
//! cgroup v1 (one hierarchy per controller: memory, cpu, pids) or pure v2 (one unified tree,
//! controllers enabled through `cgroup.subtree_control`). The helper process joins it before
//! its exec (see [`super::create`]), so every process of the container is in it; it is
//! removed after the container exited, when [`Cgroup::oom_killed`] has been read.

use std::fs::File;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

/// Where the cgroup mounts are found.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The v1 controllers a container's cgroup is made in.
const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// Docker's resource flags, in the units the CLI takes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// `-m`: the memory limit in bytes (swap is limited to the same total, so exceeding it
    /// gets the process killed instead of swapped).
    pub memory: Option<i64>,
    /// `--cpus` times 10^9.
    pub nano_cpus: Option<i64>,
    /// `--pids-limit` (0 or less: unlimited).
    pub pids_limit: Option<i64>,
}

/// Writes `r` into the spec's `linux.resources` (memory limit and swap, cpu quota over a
/// 100 ms period, pids limit), which [`Cgroup::create`] then applies.
///
/// # Errors
/// A memory limit or cpu count that is not positive.
pub fn set_resources(spec: &mut Spec, r: &Resources) -> Result<()> {
    use oci_spec::runtime::LinuxPids;
    if *r == Resources::default() {
        return Ok(());
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut res = linux.resources().clone().unwrap_or_default();
    if let Some(m) = r.memory {
        if m <= 0 {
            return Err(Error::Sandbox(format!("memory limit {m} must be positive")));
        }
        let mut mem = (*res.memory()).unwrap_or_default();
        mem.set_limit(Some(m));
        mem.set_swap(Some(m));
        res.set_memory(Some(mem));
    }
    if let Some(n) = r.nano_cpus {
        if n <= 0 {
            return Err(Error::Sandbox(format!("--cpus {n}e-9 must be positive")));
        }
        const PERIOD: u64 = 100_000;
        let quota = i64::try_from(i128::from(n) * i128::from(PERIOD) / 1_000_000_000)
            .unwrap_or(i64::MAX)
            .max(1000);
        let mut cpu = res.cpu().clone().unwrap_or_default();
        cpu.set_quota(Some(quota));
        cpu.set_period(Some(PERIOD));
        res.set_cpu(Some(cpu));
    }
    if let Some(p) = r.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        res.set_pids(Some(pids));
    }
    linux.set_resources(Some(res));
    spec.set_linux(Some(linux));
    Ok(())
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The mount's root inside the hierarchy (`/` unless a sub-tree is mounted).
    pub root: String,
    /// The v1 controllers (and `name=...`) it carries; empty for v2.
    pub controllers: Vec<String>,
    /// A cgroup2 (unified) mount.
    pub v2: bool,
}

/// Parses mountinfo lines into the cgroup mounts.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rfields: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fstype)) =
            (fields.get(3), fields.get(4), rfields.first())
        else {
            continue;
        };
        let v2 = match *fstype {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            rfields
                .get(2)
                .map(|o| {
                    o.split(',')
                        .filter(|c| !matches!(*c, "rw" | "ro") && !c.contains("xattr"))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        out.push(Hierarchy {
            mount_point: PathBuf::from(unescape(mount_point)),
            root: unescape(root),
            controllers,
            v2,
        });
    }
    out
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(d) = b.get(i + 1..i + 4)
            && d.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/<pid>/cgroup`: the controllers (empty for v2) and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// `memory`, `cpu,cpuacct`, `name=systemd`; empty for the v2 line.
    pub controllers: Vec<String>,
    /// The cgroup's path in that hierarchy.
    pub path: String,
}

/// Parses `/proc/<pid>/cgroup`.
pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_id, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Membership {
                controllers: ctrl
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// The directory of cgroup `path` (as `/proc/<pid>/cgroup` names it) in `h`, if `h` is that
/// line's hierarchy and the path is inside the mount.
fn dir_in(h: &Hierarchy, m: &Membership) -> Option<PathBuf> {
    let same = if h.v2 {
        m.controllers.is_empty()
    } else {
        !m.controllers.is_empty()
            && m.controllers.len() == h.controllers.len()
            && m.controllers.iter().all(|c| h.controllers.contains(c))
    };
    if !same {
        return None;
    }
    let root = h.root.trim_end_matches('/');
    let rel = m.path.strip_prefix(root)?;
    if !(rel.is_empty() || rel.starts_with('/')) {
        return None;
    }
    let rel = rel.trim_start_matches('/');
    Some(if rel.is_empty() {
        h.mount_point.clone()
    } else {
        h.mount_point.join(rel)
    })
}

/// The cgroup directories `pid` is in, one per mounted hierarchy (`None`: ourselves).
fn dirs_of(pid: Option<i32>) -> Result<Vec<(Hierarchy, PathBuf)>> {
    let mountinfo = std::fs::read_to_string(MOUNTINFO).map_err(|e| Error::io(MOUNTINFO, e))?;
    let proc_path = match pid {
        Some(p) => format!("/proc/{p}/cgroup"),
        None => "/proc/self/cgroup".to_string(),
    };
    let cg = std::fs::read_to_string(&proc_path).map_err(|e| Error::io(&proc_path, e))?;
    let members = parse_proc_cgroup(&cg);
    let mut out = Vec::new();
    for h in parse_mountinfo(&mountinfo) {
        if out
            .iter()
            .any(|(o, _): &(Hierarchy, PathBuf)| o.v2 == h.v2 && o.controllers == h.controllers)
        {
            // The same hierarchy mounted twice.
            continue;
        }
        if let Some(dir) = members.iter().find_map(|m| dir_in(&h, m)) {
            out.push((h, dir));
        }
    }
    Ok(out)
}

/// Opens `cgroup.procs` (write-only, close-on-exec) of every cgroup `pid` is in that differs
/// from ours: writing `0` to them moves a process into `pid`'s cgroups.
///
/// # Errors
/// Reading mountinfo or `/proc/<pid>/cgroup`, or opening a `cgroup.procs`.
pub fn procs_files_of(pid: i32) -> Result<Vec<File>> {
    let ours = dirs_of(None)?;
    let mut files = Vec::new();
    for (h, dir) in dirs_of(Some(pid))? {
        if ours.iter().any(|(o, d)| o == &h && d == &dir) {
            continue;
        }
        files.push(open_procs(&dir)?);
    }
    Ok(files)
}

fn open_procs(dir: &Path) -> Result<File> {
    let path = dir.join("cgroup.procs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))
}

fn write_file(dir: &Path, name: &str, value: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, value)
        .map_err(|e| Error::Sandbox(format!("cannot write {value:?} to {}: {e}", path.display())))
}

/// The limits a spec asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Limits {
    memory: Option<i64>,
    swap: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<u64>,
    pids: Option<i64>,
}

impl Limits {
    fn of(spec: &Spec) -> Self {
        let r = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let mem = r.and_then(|r| r.memory().as_ref());
        let cpu = r.and_then(|r| r.cpu().as_ref());
        Limits {
            memory: mem.and_then(|m| m.limit()),
            swap: mem.and_then(|m| m.swap()),
            cpu_quota: cpu.and_then(|c| c.quota()),
            cpu_period: cpu.and_then(|c| c.period()),
            pids: r.and_then(|r| r.pids().as_ref()).map(|p| p.limit()),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// A container's cgroup: one directory per v1 hierarchy (memory, cpu, pids), or one v2
/// directory.
#[derive(Debug)]
pub struct Cgroup {
    /// The leaf directories (the container's cgroup in each hierarchy).
    leaves: Vec<PathBuf>,
    /// The parent directories we created on the way to the leaves, parents first (removed
    /// in reverse, when empty).
    created: Vec<PathBuf>,
    /// Where the memory controller's files are.
    memory: Option<PathBuf>,
    v2: bool,
}

/// The relative cgroup path: `cgroupsPath` (its leading `/` dropped) or a fresh name.
fn relative_path(spec: &Spec) -> Result<PathBuf> {
    let given = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let Some(p) = given else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return Ok(PathBuf::from(format!(
            "strata-{}-{nanos:x}",
            std::process::id()
        )));
    };
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::RootDir => {}
            std::path::Component::Normal(n) => rel.push(n),
            _ => {
                return Err(Error::Sandbox(format!(
                    "linux.cgroupsPath {}: only plain names are allowed",
                    p.display()
                )));
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(Error::Sandbox("linux.cgroupsPath is empty".into()));
    }
    Ok(rel)
}

impl Cgroup {
    /// Creates the container's cgroup when the spec has resource limits or a `cgroupsPath`
    /// (`None` otherwise), nested under our own cgroup, and writes the limits.
    ///
    /// # Errors
    /// No usable cgroup hierarchy, a bad `cgroupsPath`, or a directory or file that can't be
    /// written (the message names it). Nothing is left behind on error.
    pub fn create(spec: &Spec) -> Result<Option<Cgroup>> {
        let limits = Limits::of(spec);
        let has_path = spec
            .linux()
            .as_ref()
            .is_some_and(|l| l.cgroups_path().is_some());
        if limits.is_empty() && !has_path {
            return Ok(None);
        }
        let rel = relative_path(spec)?;
        let ours = dirs_of(None)?;
        let v1: Vec<&(Hierarchy, PathBuf)> = ours
            .iter()
            .filter(|(h, _)| {
                !h.v2
                    && V1_CONTROLLERS
                        .iter()
                        .any(|c| h.controllers.iter().any(|x| x == c))
            })
            .collect();
        let mut cg = Cgroup {
            leaves: Vec::new(),
            created: Vec::new(),
            memory: None,
            v2: v1.is_empty(),
        };
        let result = if cg.v2 {
            let unified = ours
                .iter()
                .find(|(h, _)| h.v2)
                .ok_or_else(|| Error::Sandbox("no cgroup hierarchy is mounted".into()))?;
            cg.create_v2(&unified.1, &rel, &limits)
        } else {
            v1.iter()
                .try_for_each(|(h, dir)| cg.create_v1(h, dir, &rel, &limits))
        };
        match result {
            Ok(()) => Ok(Some(cg)),
            Err(e) => {
                let _ = cg.remove();
                Err(e)
            }
        }
    }

    /// mkdir -p of `base/rel`, remembering what was new.
    /// mkdir -p of `base/rel`, remembering the parents that were new; `prepare` runs on each
    /// parent before its child is made. The leaf is the container's own: a leftover (empty)
    /// one is taken over, one with processes in it is refused.
    fn make_dirs(
        &mut self,
        base: &Path,
        rel: &Path,
        prepare: impl Fn(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let mut dir = base.to_path_buf();
        let count = rel.components().count();
        for (i, c) in rel.components().enumerate() {
            prepare(&dir)?;
            dir.push(c);
            let leaf = i + 1 == count;
            match std::fs::create_dir(&dir) {
                Ok(()) if leaf => {}
                Ok(()) => self.created.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if leaf && !members(&dir).is_empty() {
                        return Err(Error::Sandbox(format!(
                            "cgroup {} is in use by other processes",
                            dir.display()
                        )));
                    }
                }
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        self.leaves.push(dir.clone());
        Ok(dir)
    }

    fn create_v1(&mut self, h: &Hierarchy, own: &Path, rel: &Path, l: &Limits) -> Result<()> {
        let dir = self.make_dirs(own, rel, |_| Ok(()))?;
        let has = |c: &str| h.controllers.iter().any(|x| x == c);
        if has("memory") {
            if let Some(m) = l.memory {
                write_file(&dir, "memory.limit_in_bytes", &m.to_string())?;
            }
            // memory+swap; the file only exists with swap accounting.
            if let Some(s) = l.swap
                && dir.join("memory.memsw.limit_in_bytes").exists()
            {
                write_file(&dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
            }
            self.memory = Some(dir.clone());
        }
        if has("cpu") && l.cpu_quota.is_some_and(|q| q > 0) {
            let period = l.cpu_period.unwrap_or(100_000);
            write_file(&dir, "cpu.cfs_period_us", &period.to_string())?;
            if let Some(q) = l.cpu_quota {
                write_file(&dir, "cpu.cfs_quota_us", &q.to_string())?;
            }
        }
        if has("pids")
            && let Some(p) = l.pids
        {
            let v = if p > 0 { p.to_string() } else { "max".into() };
            write_file(&dir, "pids.max", &v)?;
        }
        Ok(())
    }

    fn create_v2(&mut self, own: &Path, rel: &Path, l: &Limits) -> Result<()> {
        let available = std::fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> = ["memory", "cpu", "pids"]
            .into_iter()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .map(|c| format!("+{c}"))
            .collect();
        // Every level from our own cgroup down to the leaf's parent delegates the controllers.
        let dir = self.make_dirs(own, rel, |parent| {
            if enable.is_empty() {
                Ok(())
            } else {
                write_file(parent, "cgroup.subtree_control", &enable.join(" "))
            }
        })?;
        if let Some(m) = l.memory {
            write_file(&dir, "memory.max", &m.to_string())?;
            if let Some(s) = l.swap
                && dir.join("memory.swap.max").exists()
            {
                let swap = if s < 0 {
                    "max".to_string()
                } else {
                    s.saturating_sub(m).max(0).to_string()
                };
                write_file(&dir, "memory.swap.max", &swap)?;
            }
        }
        if let Some(q) = l.cpu_quota.filter(|q| *q > 0) {
            let period = l.cpu_period.unwrap_or(100_000);
            write_file(&dir, "cpu.max", &format!("{q} {period}"))?;
        }
        if let Some(p) = l.pids {
            let v = if p > 0 { p.to_string() } else { "max".into() };
            write_file(&dir, "pids.max", &v)?;
        }
        if dir.join("memory.max").exists() {
            self.memory = Some(dir);
        }
        Ok(())
    }

    /// The container's cgroup directories (one per v1 hierarchy, or the v2 one).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.leaves
    }

    /// Opens every leaf's `cgroup.procs` for writing (close-on-exec).
    ///
    /// # Errors
    /// Opening a file.
    pub fn procs_files(&self) -> Result<Vec<File>> {
        self.leaves.iter().map(|d| open_procs(d)).collect()
    }

    /// Whether the OOM killer killed a process of the cgroup (`oom_kill` in
    /// `memory.oom_control` on v1, `memory.events` on v2).
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory else {
            return false;
        };
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0)
    }

    /// Kills whatever is still in the cgroup and removes its directories.
    ///
    /// # Errors
    /// A directory that stays busy.
    pub fn remove(self) -> Result<()> {
        let mut first_error = None;
        for dir in &self.leaves {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if tries < 500 && e.raw_os_error() == Some(libc::EBUSY) => {
                        tries += 1;
                        kill_members(dir);
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => {
                        first_error.get_or_insert(Error::io(dir, e));
                        break;
                    }
                }
            }
        }
        // The parents we made go too, unless another container's cgroup is in them now.
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The pids listed in `dir/cgroup.procs` (the cgroup's own processes, not its children's).
fn members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// SIGKILLs every process in the cgroup `dir` (what outlived the container's pid 1, e.g. an
/// exec helper on its way out).
fn kill_members(dir: &Path) {
    for pid in members(dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 /sub /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hierarchies_and_memberships_map_to_directories() {
        let hs = parse_mountinfo(MOUNTINFO_V1);
        assert_eq!(hs.len(), 5);
        assert_eq!(hs[0].controllers, ["cpu"]);
        assert_eq!(hs[3].controllers, ["name=systemd"]);
        assert!(hs[4].v2);
        let ms = parse_proc_cgroup("4:memory:/a/b\n8:pids:/sub/c\n1:cpu:/\n0::/u\n");
        let dirs: Vec<Option<PathBuf>> = hs
            .iter()
            .map(|h| ms.iter().find_map(|m| dir_in(h, m)))
            .collect();
        assert_eq!(
            dirs,
            [
                Some(PathBuf::from("/sys/fs/cgroup/cpu")),
                Some(PathBuf::from("/sys/fs/cgroup/memory/a/b")),
                Some(PathBuf::from("/sys/fs/cgroup/pids/c")),
                None,
                Some(PathBuf::from("/sys/fs/cgroup/unified/u")),
            ]
        );
        // A path outside a sub-tree mount isn't in it.
        let outside = parse_proc_cgroup("8:pids:/subway\n");
        assert_eq!(dir_in(&hs[2], &outside[0]), None);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    fn limited_spec() -> Result<Spec, Box<dyn std::error::Error>> {
        let mut spec = Spec::default();
        set_resources(
            &mut spec,
            &Resources {
                memory: Some(64 << 20),
                nano_cpus: Some(1_500_000_000),
                pids_limit: Some(20),
            },
        )?;
        Ok(spec)
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap_or_default()
    }

    #[test]
    fn v1_limits_are_written_per_controller() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let limits = Limits::of(&limited_spec()?);
        assert_eq!(limits.swap, Some(64 << 20), "swap = limit: -m really kills");
        let mut cg = Cgroup {
            leaves: Vec::new(),
            created: Vec::new(),
            memory: None,
            v2: false,
        };
        let rel = Path::new("strata/c1");
        for c in ["memory", "cpu", "pids"] {
            let h = Hierarchy {
                mount_point: tmp.path().join(c),
                root: "/".into(),
                controllers: vec![c.into()],
                v2: false,
            };
            std::fs::create_dir_all(&h.mount_point)?;
            cg.create_v1(&h, &h.mount_point, rel, &limits)?;
        }
        let m = tmp.path().join("memory/strata/c1");
        assert_eq!(read(&m, "memory.limit_in_bytes"), "67108864");
        assert!(
            !m.join("memory.memsw.limit_in_bytes").exists(),
            "no swap accounting"
        );
        let c = tmp.path().join("cpu/strata/c1");
        assert_eq!(read(&c, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&c, "cpu.cfs_quota_us"), "150000");
        assert_eq!(read(&tmp.path().join("pids/strata/c1"), "pids.max"), "20");
        assert_eq!(cg.dirs().len(), 3);
        assert_eq!(cg.memory.as_deref(), Some(m.as_path()));
        // The parents made on the way (removed after the leaves, when empty).
        assert_eq!(cg.created.len(), 3);
        assert!(cg.created[0].ends_with("memory/strata"));
        Ok(())
    }

    #[test]
    fn v2_delegates_controllers_and_writes_limits() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let own = tmp.path();
        std::fs::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )?;
        let limits = Limits::of(&limited_spec()?);
        let mut cg = Cgroup {
            leaves: Vec::new(),
            created: Vec::new(),
            memory: None,
            v2: true,
        };
        // A real leaf has memory.max and memory.swap.max; make the fake look like one.
        std::fs::create_dir_all(own.join("c1"))?;
        std::fs::write(own.join("c1/memory.max"), "max\n")?;
        std::fs::write(own.join("c1/memory.swap.max"), "max\n")?;
        std::fs::write(
            own.join("c1/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )?;
        cg.create_v2(own, Path::new("c1"), &limits)?;
        assert_eq!(read(own, "cgroup.subtree_control"), "+memory +cpu +pids");
        let leaf = own.join("c1");
        assert_eq!(read(&leaf, "memory.max"), "67108864");
        assert_eq!(read(&leaf, "memory.swap.max"), "0");
        assert_eq!(read(&leaf, "cpu.max"), "150000 100000");
        assert_eq!(read(&leaf, "pids.max"), "20");
        assert!(cg.oom_killed());
        Ok(())
    }

    #[test]
    fn cgroups_path_must_be_plain() -> Result<(), Box<dyn std::error::Error>> {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_cgroups_path(Some(PathBuf::from("/strata/abc")));
        spec.set_linux(Some(linux.clone()));
        assert_eq!(relative_path(&spec)?, PathBuf::from("strata/abc"));
        linux.set_cgroups_path(Some(PathBuf::from("../escape")));
        spec.set_linux(Some(linux));
        assert!(relative_path(&spec).is_err());
        Ok(())
    }
}
