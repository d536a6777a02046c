//! Landlock: which files a tool may read, write and execute, and (ABI 4 and
//! 6) its TCP and scoping rules. The ruleset is built in the parent with the
//! `landlock` crate; the child adds its own `/proc/self` and restricts itself.

use super::Jail;
use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible,
    Ruleset as LlRuleset, RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Read-only for every tool: binaries and libraries, the loader's cache,
/// fonts and their configuration, CPU and NUMA topology, randomness.
/// Never `/etc` as a whole.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/fonts",
    "/var/cache/fontconfig",
    "/usr/local/share/fonts",
    "/proc/cpuinfo",
    "/sys/devices/system/cpu",
    "/sys/devices/system/node",
    "/dev/urandom",
];

/// The Landlock ABI this kernel offers; 0 without Landlock.
pub fn kernel_abi() -> u32 {
    // SAFETY: the version query takes no ruleset and writes nothing.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    version.max(0) as u32
}

fn abi_of(version: u32) -> ABI {
    match version {
        0 => ABI::Unsupported,
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        _ => ABI::V7,
    }
}

/// The child's own `/proc` files a tool may read (what libc and ffmpeg's
/// libraries look at), not the whole of `/proc/self`, whose `net/` and
/// `mountinfo` describe the host.
const PROC_SELF: &[&std::ffi::CStr] =
    &[c"/proc/self/status", c"/proc/self/stat", c"/proc/self/maps"];

/// A ruleset ready for the child.
#[derive(Debug)]
pub struct Ruleset {
    fd: OwnedFd,
    /// What the child grants on its own `/proc` files (read).
    proc_self_access: u64,
}

fn landlock_error(e: landlock::RulesetError) -> io::Error {
    io::Error::other(format!("landlock: {e}"))
}

/// Build the ruleset for one tool run.
pub fn ruleset(
    version: u32,
    executable: &Path,
    loader: Option<&Path>,
    jail: &Jail,
) -> io::Result<Ruleset> {
    let abi = abi_of(version);
    let all = AccessFs::from_all(abi);
    let read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
    // Files and directories only: no symlink (the worker reads the output as
    // root), no FIFO (a blocking read), no socket or device node.
    let read_write = all
        & (read
            | AccessFs::WriteFile
            | AccessFs::Truncate
            | AccessFs::MakeReg
            | AccessFs::MakeDir
            | AccessFs::RemoveFile
            | AccessFs::RemoveDir
            | AccessFs::Refer);
    let run = (AccessFs::ReadFile | AccessFs::Execute) & all;

    let mut ruleset = LlRuleset::default()
        // The kernel decides what it can do; `decide` already refused a kernel
        // below what the mode demands.
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(landlock_error)?;
    if version >= 4 {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(landlock_error)?;
    }
    if version >= 6 {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(landlock_error)?;
    }
    let mut created = ruleset.create().map_err(landlock_error)?;
    created = created
        .add_rules(path_beneath_rules(SYSTEM_READ, read))
        .map_err(landlock_error)?
        .add_rules(path_beneath_rules(&jail.inputs, read))
        .map_err(landlock_error)?
        .add_rules(path_beneath_rules([&jail.scratch], read_write))
        .map_err(landlock_error)?
        .add_rules(path_beneath_rules(
            ["/dev/null"],
            (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev)
                & all,
        ))
        .map_err(landlock_error)?
        .add_rules(path_beneath_rules(
            std::iter::once(executable).chain(loader),
            run,
        ))
        .map_err(landlock_error)?;
    let fd: Option<OwnedFd> = created.into();
    let fd = fd.ok_or_else(|| io::Error::other("landlock: the kernel made no ruleset"))?;
    Ok(Ruleset {
        fd,
        proc_self_access: BitFlags::from(AccessFs::ReadFile).bits(),
    })
}

/// `struct landlock_path_beneath_attr` (packed in the kernel's ABI).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

impl Ruleset {
    /// Add the child's own `/proc/self` files (only the child can open
    /// them), then restrict the child.
    ///
    /// # Safety
    /// Call only in a freshly forked child that is about to exec: system
    /// calls only.
    pub unsafe fn restrict_in_child(&self) -> io::Result<()> {
        let ruleset = self.fd.as_raw_fd();
        for file in PROC_SELF {
            let fd = libc::open(file.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if fd < 0 {
                continue;
            }
            let attr = PathBeneathAttr {
                allowed_access: self.proc_self_access,
                parent_fd: fd,
            };
            // LANDLOCK_RULE_PATH_BENEATH = 1. A failure leaves the file
            // unreadable, which tools survive.
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset,
                1u32,
                &attr as *const PathBeneathAttr,
                0u32,
            );
            libc::close(fd);
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
