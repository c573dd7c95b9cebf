//! The seccomp profile: Docker's default allowlist as an OCI [`LinuxSeccomp`], and its
//! compilation (through seccompiler) and installation.
//!
//! The profile follows moby's `profiles/seccomp/default.json` for the default capability set:
//! the default action is `EPERM`; the always-allowed syscalls are allowed; `chroot` is allowed
//! (`CAP_SYS_CHROOT` is a default capability); `clone` is allowed only without namespace flags;
//! `clone3` fails with `ENOSYS` so that libcs fall back to `clone`; `personality` only with the
//! values moby allows. Everything else (`mount`, `umount2`, `unshare`, `setns`, `pivot_root`,
//! `keyctl`, `bpf`, `ptrace`, `reboot`, module loading, ...) is `EPERM`. seccompiler adds the
//! architecture check (a foreign `AUDIT_ARCH` kills the process).

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::{Error, Result};

/// `CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET`: the flags moby's
/// profile refuses in `clone` without `CAP_SYS_ADMIN`.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

macro_rules! syscall_table {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name as i64)),*]
    };
}

/// Syscalls common to x86_64 and aarch64 that the profile may name, with their numbers.
const COMMON: &[(&str, i64)] = &strip(syscall_table![
    SYS_accept,
    SYS_accept4,
    SYS_adjtimex,
    SYS_bind,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_chroot,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_clone,
    SYS_clone3,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_dup,
    SYS_dup3,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_flistxattr,
    SYS_flock,
    SYS_fremovexattr,
    SYS_fsetxattr,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_get_robust_list,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_inotify_add_watch,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_ioctl,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_io_setup,
    SYS_io_submit,
    SYS_kill,
    SYS_landlock_add_rule,
    SYS_landlock_create_ruleset,
    SYS_landlock_restrict_self,
    SYS_lgetxattr,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_madvise,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_memfd_secret,
    SYS_mincore,
    SYS_mkdirat,
    SYS_mknodat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_name_to_handle_at,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_openat,
    SYS_openat2,
    SYS_personality,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_mrelease,
    SYS_pselect6,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_read,
    SYS_readahead,
    SYS_readlinkat,
    SYS_readv,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_setitimer,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_set_robust_list,
    SYS_setsid,
    SYS_setsockopt,
    SYS_set_tid_address,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd4,
    SYS_socket,
    SYS_socketpair,
    SYS_splice,
    SYS_statfs,
    SYS_statx,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_tee,
    SYS_tgkill,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_uname,
    SYS_unlinkat,
    SYS_utimensat,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
]);

/// The x86_64-only (legacy) syscalls of the profile.
#[cfg(target_arch = "x86_64")]
const ARCH_ONLY: &[(&str, i64)] = &strip(syscall_table![
    SYS_access,
    SYS_alarm,
    SYS_arch_prctl,
    SYS_chmod,
    SYS_chown,
    SYS_creat,
    SYS_dup2,
    SYS_epoll_create,
    SYS_epoll_ctl_old,
    SYS_epoll_wait,
    SYS_epoll_wait_old,
    SYS_eventfd,
    SYS_fork,
    SYS_futimesat,
    SYS_getdents,
    SYS_getpgrp,
    SYS_get_thread_area,
    SYS_inotify_init,
    SYS_lchown,
    SYS_link,
    SYS_lstat,
    SYS_mkdir,
    SYS_mknod,
    SYS_open,
    SYS_pause,
    SYS_pipe,
    SYS_poll,
    SYS_readlink,
    SYS_rename,
    SYS_rmdir,
    SYS_select,
    SYS_set_thread_area,
    SYS_signalfd,
    SYS_stat,
    SYS_symlink,
    SYS_time,
    SYS_unlink,
    SYS_utime,
    SYS_utimes,
    SYS_vfork,
]);

#[cfg(not(target_arch = "x86_64"))]
const ARCH_ONLY: &[(&str, i64)] = &[];

/// Calls named in the table that the profile refuses; kept here so [`number`] knows them.
const REFUSED: &[(&str, i64)] = &strip(syscall_table![
    SYS_mount,
    SYS_umount2,
    SYS_unshare,
    SYS_setns,
    SYS_pivot_root,
    SYS_keyctl,
    SYS_bpf,
    SYS_ptrace,
    SYS_reboot,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_kexec_load,
    SYS_add_key,
    SYS_request_key,
    SYS_perf_event_open,
    SYS_open_by_handle_at,
    SYS_swapon,
    SYS_swapoff,
    SYS_syslog,
    SYS_fsopen,
    SYS_fsmount,
    SYS_fsconfig,
    SYS_move_mount,
    SYS_open_tree,
    SYS_mount_setattr,
    SYS_userfaultfd,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_kcmp,
    SYS_settimeofday,
    SYS_clock_settime,
    SYS_sethostname,
    SYS_setdomainname,
    SYS_acct,
    SYS_quotactl,
    SYS_lookup_dcookie,
    SYS_vhangup,
]);

/// Turns `("SYS_read", n)` into `("read", n)` at compile time.
const fn strip<const N: usize>(table: &[(&'static str, i64); N]) -> [(&'static str, i64); N] {
    let mut out = [("", 0i64); N];
    let mut i = 0;
    while i < N {
        let (name, nr) = table[i];
        let (_, rest) = name.as_bytes().split_at(4);
        // The names come from `stringify!(SYS_x)`: valid UTF-8 after the ASCII prefix.
        out[i] = (
            match std::str::from_utf8(rest) {
                Ok(s) => s,
                Err(_) => name,
            },
            nr,
        );
        i += 1;
    }
    out
}

/// The syscall number of `name` on this architecture, when the table knows it.
pub fn number(name: &str) -> Option<i64> {
    COMMON
        .iter()
        .chain(ARCH_ONLY)
        .chain(REFUSED)
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
}

/// The personality values moby allows (`PER_LINUX`, `PER_LINUX32`, `UNAME26`, both, query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Docker's default seccomp profile for the default capability set, as an OCI spec section.
///
/// # Errors
/// None in practice: only oci-spec's builder validation.
pub fn docker_default() -> Result<LinuxSeccomp> {
    let special = ["clone", "clone3", "personality"];
    let names: Vec<String> = COMMON
        .iter()
        .chain(ARCH_ONLY)
        .map(|(n, _)| n.to_string())
        .filter(|n| !special.contains(&n.as_str()))
        .collect();
    let mut syscalls = vec![allow(names, Vec::new())?];
    for value in PERSONALITIES {
        syscalls.push(allow(
            vec!["personality".into()],
            vec![(0, value, None, LinuxSeccompOperator::ScmpCmpEq)],
        )?);
    }
    syscalls.push(allow(
        vec!["clone".into()],
        vec![(
            0,
            CLONE_NAMESPACE_FLAGS,
            Some(0),
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )],
    )?);
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(libc::ENOSYS as u32)
            .build()
            .map_err(spec_err)?,
    );
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .architectures(vec![native_arch()])
        .syscalls(syscalls)
        .build()
        .map_err(spec_err)
}

type ArgSpec = (usize, u64, Option<u64>, LinuxSeccompOperator);

fn allow(names: Vec<String>, args: Vec<ArgSpec>) -> Result<LinuxSyscall> {
    let mut b = LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActAllow);
    if !args.is_empty() {
        let args = args
            .into_iter()
            .map(|(index, value, two, op)| {
                let b = LinuxSeccompArgBuilder::default()
                    .index(index)
                    .value(value)
                    .op(op);
                match two {
                    Some(t) => b.value_two(t),
                    None => b,
                }
                .build()
                .map_err(spec_err)
            })
            .collect::<Result<Vec<_>>>()?;
        b = b.args(args);
    }
    b.build().map_err(spec_err)
}

fn spec_err(e: oci_spec::OciSpecError) -> Error {
    Error::Sandbox(format!("seccomp profile: {e}"))
}

fn native_arch() -> Arch {
    if cfg!(target_arch = "aarch64") {
        Arch::ScmpArchAarch64
    } else {
        Arch::ScmpArchX86_64
    }
}

fn target_arch() -> Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| Error::Sandbox(format!("seccomp: unsupported architecture: {e}")))
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => {
            SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32))
        }
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(0)),
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Sandbox(
                "seccomp: SCMP_ACT_NOTIFY is not supported".into(),
            ));
        }
    })
}

fn condition(arg: &oci_spec::runtime::LinuxSeccompArg) -> Result<SeccompCondition> {
    let (op, value) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        // libseccomp: `(arg & value) == valueTwo`.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    let index = u8::try_from(arg.index())
        .map_err(|_| Error::Sandbox(format!("seccomp: bad argument index {}", arg.index())))?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| Error::Sandbox(format!("seccomp: {e}")))
}

/// Compiles a spec's seccomp section into BPF programs to install in order.
///
/// The first program applies the default action to every syscall the spec doesn't name and
/// allows the named ones (with their argument rules); one more program per non-allow action
/// (e.g. `clone3` → `ENOSYS`) returns that action for its syscalls and allows the rest. The
/// kernel runs every installed filter and takes the most restrictive answer, so the result is
/// the spec's. Names unknown on this architecture are skipped, as libseccomp does.
///
/// # Errors
/// An unsupported action (`SCMP_ACT_NOTIFY`), a bad argument, or a seccompiler error.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Vec<BpfProgram>> {
    let arch = target_arch()?;
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut base: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    let mut others: Vec<(SeccompAction, Vec<i64>)> = Vec::new();
    for sc in seccomp.syscalls().iter().flatten() {
        let act = action(sc.action(), sc.errno_ret())?;
        let nrs: Vec<i64> = sc.names().iter().filter_map(|n| number(n)).collect();
        if act == default {
            continue;
        }
        if act == SeccompAction::Allow {
            let conds = sc
                .args()
                .iter()
                .flatten()
                .map(condition)
                .collect::<Result<Vec<_>>>()?;
            for nr in nrs {
                let entry = base.entry(nr).or_insert_with(|| Some(Vec::new()));
                match (entry.as_mut(), conds.is_empty()) {
                    // Unconditionally allowed: stays so.
                    (None, _) => {}
                    (Some(_), true) => *entry = None,
                    (Some(rules), false) => rules.push(
                        SeccompRule::new(conds.clone())
                            .map_err(|e| Error::Sandbox(format!("seccomp: {e}")))?,
                    ),
                }
            }
        } else {
            // The first program must let these through to the second one.
            for nr in &nrs {
                base.insert(*nr, None);
            }
            match others.iter_mut().find(|(a, _)| *a == act) {
                Some((_, list)) => list.extend(nrs),
                None => others.push((act, nrs)),
            }
        }
    }
    let rules = base
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect();
    let mut programs = vec![program(rules, default, SeccompAction::Allow, arch)?];
    for (act, nrs) in others {
        let rules = nrs.into_iter().map(|nr| (nr, Vec::new())).collect();
        programs.push(program(rules, SeccompAction::Allow, act, arch)?);
    }
    Ok(programs)
}

fn program(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch)
        .map_err(|e| Error::Sandbox(format!("seccomp: {e}")))?;
    BpfProgram::try_from(filter).map_err(|e| Error::Sandbox(format!("seccomp: {e}")))
}

/// Installs compiled programs on the calling thread, in order.
///
/// Unlike `seccompiler::apply_filter`, this does not set `no_new_privs` (Docker doesn't
/// either, so setuid binaries keep working): the caller still holds `CAP_SYS_ADMIN`, or has set
/// `no_new_privs` itself when the spec asks for it.
///
/// # Errors
/// The OS error of `seccomp(2)`.
pub fn install(programs: &[BpfProgram]) -> Result<()> {
    for prog in programs {
        let filter: Vec<libc::sock_filter> = prog
            .iter()
            .map(|f| libc::sock_filter {
                code: f.code,
                jt: f.jt,
                jf: f.jf,
                k: f.k,
            })
            .collect();
        let len = u16::try_from(filter.len())
            .map_err(|_| Error::Sandbox("seccomp: filter too long".into()))?;
        let fprog = libc::sock_fprog {
            len,
            filter: filter.as_ptr().cast_mut(),
        };
        // Why the raw call: seccompiler's apply_filter forces no_new_privs. The kernel copies
        // the program during the call. https://man7.org/linux/man-pages/man2/seccomp.2.html
        // SAFETY: `fprog` points at `filter`, both alive across the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(Error::Sandbox(format!(
                "seccomp(SECCOMP_SET_MODE_FILTER): {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_compiles_to_two_programs() -> Result<(), Box<dyn std::error::Error>> {
        let profile = docker_default()?;
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(libc::EPERM as u32));
        let names: Vec<&String> = profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
            .flat_map(|s| s.names())
            .collect();
        for refused in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "keyctl",
            "bpf",
        ] {
            assert!(!names.iter().any(|n| *n == refused), "{refused} allowed");
            assert!(number(refused).is_some(), "{refused} unknown");
        }
        for needed in ["read", "execve", "openat", "clone", "wait4", "getdents64"] {
            assert!(names.iter().any(|n| *n == needed), "{needed} not allowed");
        }
        assert_eq!(number("read"), Some(libc::SYS_read));
        let programs = compile(&profile)?;
        assert_eq!(programs.len(), 2, "allowlist + clone3 ENOSYS");
        Ok(())
    }
}
