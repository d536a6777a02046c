//! seccomp: the system calls a tool may not make. Typical ffmpeg and ffprobe
//! runs make none of these, so denying them costs nothing and closes whole
//! classes: no socket of any family (so no network and no Unix socket), no
//! io_uring (which bypasses the syscall filter), nothing that escapes the
//! process (namespaces, mounts, keyrings, bpf, ptrace, kernel modules).
//!
//! Two programs: a guard that kills any call of another architecture (the
//! 32-bit `int 0x80` ABI) and refuses the x32 ABI, whose numbers would
//! otherwise slip past rules written for 64-bit numbers; then the denials,
//! built with `seccompiler`.

use super::SandboxError;
use seccompiler::{sock_filter, BpfProgram, SeccompAction, SeccompFilter, TargetArch};
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

/// The programs, in the order they are installed.
pub fn programs() -> Result<Vec<BpfProgram>, SandboxError> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    let denials = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        target()?,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| SandboxError(format!("building the seccomp filter: {e}")))?;
    Ok(vec![guard()?, denials])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_programs_build() {
        let programs = programs().unwrap();
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }
}
