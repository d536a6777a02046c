//! seccomp: the system calls a tool may not make. Typical ffmpeg and ffprobe
//! runs make none of these, so denying them costs nothing and closes whole
//! classes: no socket of any family (so no network and no Unix socket), no
//! io_uring (which bypasses the syscall filter), no new process (threads
//! only, so nothing outlives the tool or leaves its process group), no
//! program from memory, nothing that escapes the process (namespaces,
//! mounts, keyrings, bpf, ptrace, kernel modules), and no way to drop the
//! death signal that ties the tool to its worker.
//!
//! Three programs: a guard that kills any call of another architecture (the
//! 32-bit `int 0x80` ABI) and refuses the x32 ABI, whose numbers would
//! otherwise slip past rules written for 64-bit numbers; the denials (EPERM),
//! built with `seccompiler`; and `clone3`, whose flags a filter cannot read,
//! answered ENOSYS so that libc falls back to `clone`, whose flags it can.

use super::SandboxError;
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Denied with EPERM.
const DENIED: &[libc::c_long] = &[
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    // New processes and sessions: threads are made with clone (below).
    #[cfg(target_arch = "x86_64")]
    libc::SYS_fork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_vfork,
    libc::SYS_setsid,
    libc::SYS_setpgid,
    // A program from memory.
    libc::SYS_memfd_create,
    libc::SYS_execveat,
    // The new mount API.
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_mount_setattr,
];

/// `clone` flags that make namespaces.
const CLONE_NEW: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

/// Whether this kernel takes seccomp filters with an errno action.
pub fn available() -> bool {
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 and changes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    rc == 0
}

fn target() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SandboxError(format!("no seccomp filter for {}", std::env::consts::ARCH)))
}

/// `AUDIT_ARCH_*` of this build.
fn audit_arch() -> Result<u32, SandboxError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(0xc000_003e),
        "aarch64" => Ok(0xc000_00b7),
        "riscv64" => Ok(0xc000_00f3),
        other => Err(SandboxError(format!("no seccomp filter for {other}"))),
    }
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Kill on a foreign architecture; EPERM for x32 numbers; allow the rest
/// (the second program decides).
fn guard() -> Result<BpfProgram, SandboxError> {
    let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    Ok(vec![
        stmt(BPF_LD_W_ABS, ARCH_OFFSET),
        jump(BPF_JEQ_K, audit_arch()?, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, NR_OFFSET),
        jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, eperm),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
    ])
}

/// A rule that matches when `arg`'s bits under `mask` equal `value`.
fn masked(arg: u8, mask: u64, value: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(mask),
        value,
    )?])
}

fn build(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    action: SeccompAction,
) -> Result<BpfProgram, SandboxError> {
    SeccompFilter::new(rules, SeccompAction::Allow, action, target()?)
        .and_then(BpfProgram::try_from)
        .map_err(|e| SandboxError(format!("building the seccomp filter: {e}")))
}

/// The programs, in the order they are installed.
pub fn programs() -> Result<Vec<BpfProgram>, SandboxError> {
    let error = |e: seccompiler::BackendError| SandboxError(format!("seccomp rule: {e}"));
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    // clone: a thread (CLONE_THREAD) and nothing that makes a namespace.
    let thread = libc::CLONE_THREAD as u64;
    let mut clone = vec![masked(0, thread, 0).map_err(error)?];
    for &flag in CLONE_NEW {
        clone.push(masked(0, flag, flag).map_err(error)?);
    }
    rules.insert(libc::SYS_clone, clone);
    // The death signal is set before the filter; the tool may not clear it.
    rules.insert(
        libc::SYS_prctl,
        vec![masked(0, u64::from(u32::MAX), libc::PR_SET_PDEATHSIG as u64).map_err(error)?],
    );
    let denials = build(rules, SeccompAction::Errno(libc::EPERM as u32))?;
    let clone3 = build(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Errno(libc::ENOSYS as u32),
    )?;
    Ok(vec![guard()?, denials, clone3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_programs_build() {
        let programs = programs().unwrap();
        assert_eq!(programs.len(), 3);
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }
}
