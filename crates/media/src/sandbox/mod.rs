//! The kernel sandbox every tool a nommer runs (ffmpeg, ffprobe, any later
//! helper) lives in. It is applied in the child between fork and exec, never
//! to the worker itself:
//!
//! - **files** (`files.rs`, Landlock): read the system's binaries, libraries,
//!   fonts and a few `/proc` and `/sys` entries; read and write the job's
//!   scratch directory and `/dev/null`; read the job's read-only inputs;
//!   execute only the tool's own binary and its dynamic loader. Where the
//!   kernel has them, TCP bind/connect are denied (ABI 4) and signals and
//!   abstract Unix sockets are scoped to the sandbox (ABI 6).
//! - **syscalls** (`syscalls.rs`, seccomp): no `socket`/`socketpair` of any
//!   family, no io_uring, no new process (threads only), no 32-bit or x32
//!   syscalls, none of the calls that reach beyond the process (namespaces,
//!   mounts, keyrings, bpf, ptrace).
//! - **identity** (`identity.rs`): when the worker runs as root, the tool
//!   runs as `sandbox_user` (default `nobody`) with no capability.
//! - **the rest** (here): an environment cleared to `PATH`, `LANG` and
//!   `HOME` (the scratch directory), every descriptor above 2 closed at exec,
//!   `PR_SET_NO_NEW_PRIVS`, and hard limits (file size, address space,
//!   threads, no core dumps).
//!
//! Everything that allocates or can fail for a reason worth a message happens
//! in the parent ([`Sandbox::prepare`]); the child only makes system calls on
//! what was prepared ([`Prepared::apply_in_child`]).

mod elf;
mod files;
mod identity;
mod syscalls;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use identity::Identity;

/// The least Landlock ABI that `sandbox = "required"` accepts: ABI 3 is the
/// first that controls truncation, so every way of changing a file is covered.
pub const MIN_REQUIRED_ABI: u32 = 3;

/// The `sandbox` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Refuse to start without at least Landlock ABI 3 and seccomp.
    Required,
    /// Apply whatever the kernel offers, and warn about the rest.
    BestEffort,
    /// No Landlock and no seccomp. The tool still runs with a cleared
    /// environment, no inherited descriptors, its limits, and (under root)
    /// as the sandbox user.
    Off,
}

impl SandboxMode {
    pub fn parse(text: &str) -> Option<SandboxMode> {
        match text {
            "required" => Some(SandboxMode::Required),
            "best_effort" => Some(SandboxMode::BestEffort),
            "off" => Some(SandboxMode::Off),
            _ => None,
        }
    }
}

/// What this kernel can enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// The Landlock ABI version, 0 when Landlock is absent or disabled.
    pub landlock_abi: u32,
    /// Whether seccomp filters with an errno action can be installed.
    pub seccomp: bool,
}

impl Support {
    pub fn detect() -> Support {
        Support {
            landlock_abi: files::kernel_abi(),
            seccomp: syscalls::available(),
        }
    }
}

/// What a sandbox enforces, as nodes report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enforcement {
    /// The Landlock ABI the rules are built for; 0 for none.
    pub landlock_abi: u32,
    /// Landlock denies TCP bind and connect (ABI 4).
    pub net: bool,
    /// Landlock scopes signals and abstract Unix sockets (ABI 6).
    pub scope: bool,
    pub seccomp: bool,
}

impl Enforcement {
    /// `off`, or for example `landlock-abi-7+net+scope+seccomp`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.landlock_abi > 0 {
            parts.push(format!("landlock-abi-{}", self.landlock_abi));
            if self.net {
                parts.push("net".into());
            }
            if self.scope {
                parts.push("scope".into());
            }
        }
        if self.seccomp {
            parts.push("seccomp".into());
        }
        if parts.is_empty() {
            return "off".into();
        }
        parts.join("+")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SandboxError(pub String);

/// What `mode` makes of this kernel: the enforcement, and warnings for what
/// `best_effort` had to leave out. `required` without Landlock ABI 3 and
/// seccomp is an error that says what is missing and names the setting.
pub fn decide(
    mode: SandboxMode,
    support: Support,
) -> Result<(Enforcement, Vec<String>), SandboxError> {
    if mode == SandboxMode::Off {
        return Ok((Enforcement::default(), Vec::new()));
    }
    let mut missing = Vec::new();
    if support.landlock_abi == 0 {
        missing
            .push("Landlock (the kernel lacks it, or it is not in the lsm= boot list)".to_string());
    } else if support.landlock_abi < MIN_REQUIRED_ABI {
        missing.push(format!(
            "Landlock ABI {MIN_REQUIRED_ABI} (this kernel has ABI {}; Linux 6.2 or later has 3)",
            support.landlock_abi
        ));
    }
    if !support.seccomp {
        missing.push("seccomp filters".to_string());
    }
    if mode == SandboxMode::Required && !missing.is_empty() {
        return Err(SandboxError(format!(
            "the tool sandbox cannot be enforced on this kernel: missing {}. Set sandbox = \"best_effort\" to run with what the kernel offers, or sandbox = \"off\" to run tools unconfined",
            missing.join(" and ")
        )));
    }
    let abi = support.landlock_abi;
    let enforcement = Enforcement {
        landlock_abi: abi,
        net: abi >= 4,
        scope: abi >= 6,
        seccomp: support.seccomp,
    };
    let mut warnings: Vec<String> = missing
        .into_iter()
        .map(|m| format!("sandbox = \"best_effort\": tools run without {m}"))
        .collect();
    if abi > 0 && abi < 4 {
        warnings.push(format!(
            "Landlock ABI {abi} cannot deny TCP; seccomp's socket ban covers it"
        ));
    }
    if abi > 0 && abi < 6 {
        warnings.push(format!(
            "Landlock ABI {abi} cannot scope signals: tools of different jobs, all run as the sandbox user, could signal each other"
        ));
    }
    if !support.seccomp {
        warnings.push("without seccomp, tools may open sockets: UDP and Unix sockets are not denied by Landlock".into());
    }
    Ok((enforcement, warnings))
}

/// Hard limits for each tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_FSIZE, and the most the scratch directory may hold while a tool runs.
    pub max_output_bytes: u64,
    /// RLIMIT_AS: address space, so generous by default.
    pub max_memory_bytes: u64,
    /// RLIMIT_NPROC under the sandbox user (threads count as processes).
    pub max_threads: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: 64 << 30,
            max_memory_bytes: 16 << 30,
            max_threads: 512,
        }
    }
}

/// The settings a sandbox is made from.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    pub mode: SandboxMode,
    /// `NAME` or `UID:GID`; used only when the worker runs as root.
    pub user: String,
    pub limits: Limits,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            mode: SandboxMode::Required,
            user: "nobody".into(),
            limits: Limits::default(),
        }
    }
}

/// A worker's sandbox: what it enforces, as whom its tools run, their limits.
#[derive(Debug)]
pub struct Sandbox {
    enforcement: Enforcement,
    identity: Option<Identity>,
    limits: Limits,
    filters: Vec<seccompiler::BpfProgram>,
}

impl Sandbox {
    /// Check the kernel against `settings.mode` and resolve the sandbox user.
    /// Warnings (what `best_effort` leaves out) are logged.
    pub fn new(settings: &SandboxSettings) -> Result<Sandbox, SandboxError> {
        let (enforcement, warnings) = decide(settings.mode, Support::detect())?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        let identity = match identity::running_as_root() {
            true => Some(Identity::resolve(&settings.user)?),
            false => None,
        };
        let filters = match enforcement.seccomp {
            true => syscalls::programs()?,
            false => Vec::new(),
        };
        Ok(Sandbox {
            enforcement,
            identity,
            limits: settings.limits,
            filters,
        })
    }

    pub fn enforcement(&self) -> Enforcement {
        self.enforcement
    }

    /// What nodes report in their heartbeat's `sandbox` field.
    pub fn describe(&self) -> String {
        self.enforcement.describe()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The user tools run as, when the worker runs as root.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Refuse a `work_dir` the sandbox user cannot reach or write in, naming
    /// the directory that stops it.
    pub fn check_work_dir(&self, dir: &Path) -> Result<(), SandboxError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SandboxError(format!("cannot create work_dir {}: {e}", dir.display())))?;
        match &self.identity {
            Some(identity) => identity.check_work_dir(dir),
            None => Ok(()),
        }
    }

    /// Give a scratch directory, and the entries directly in it, to the
    /// sandbox user, so its tools can read the input and write beside it.
    pub fn hand_over(&self, dir: &Path) -> io::Result<()> {
        match &self.identity {
            Some(identity) => identity.hand_over(dir),
            None => Ok(()),
        }
    }

    /// Everything the child needs, made in the parent.
    pub fn prepare(self: &Arc<Self>, program: &Path, jail: &Jail) -> io::Result<Prepared> {
        let executable = resolve_program(program)?;
        let loader = elf::interpreter(&executable)?;
        let ruleset = match self.enforcement.landlock_abi {
            0 => None,
            abi => Some(files::ruleset(abi, &executable, loader.as_deref(), jail)?),
        };
        let mut env = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), jail.scratch.clone().into_os_string()),
        ];
        env.push(("LANG".into(), safe_lang().into()));
        let mut rlimits = vec![
            (libc::RLIMIT_FSIZE, self.limits.max_output_bytes),
            (libc::RLIMIT_AS, self.limits.max_memory_bytes),
            (libc::RLIMIT_CORE, 0),
        ];
        if self.identity.is_some() {
            // Counted per real user: meaningful only under the sandbox user,
            // not under a worker's own user with its own threads.
            rlimits.push((libc::RLIMIT_NPROC, self.limits.max_threads));
        }
        Ok(Prepared {
            sandbox: self.clone(),
            executable,
            env,
            rlimits,
            ruleset,
        })
    }
}

/// Where one tool run may reach.
#[derive(Debug, Clone)]
pub struct Jail {
    /// Read and write; the tool's working directory and `HOME`.
    pub scratch: PathBuf,
    /// Read only: inputs that live outside the scratch directory.
    pub inputs: Vec<PathBuf>,
}

/// A sandbox made ready for one child.
pub struct Prepared {
    sandbox: Arc<Sandbox>,
    /// The tool's binary, absolute and with symlinks resolved: the one file
    /// (with its loader) that may be executed.
    pub executable: PathBuf,
    pub env: Vec<(OsString, OsString)>,
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    ruleset: Option<files::Ruleset>,
}

impl Prepared {
    /// Confine the calling process. Runs in the child between fork and exec:
    /// system calls on prepared data only, no allocation. `parent` is the
    /// worker's pid: the child dies with it.
    ///
    /// # Safety
    /// Call only in a freshly forked child that is about to exec.
    pub unsafe fn apply_in_child(&self, parent: libc::pid_t) -> io::Result<()> {
        for &(resource, value) in &self.rlimits {
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(identity) = &self.sandbox.identity {
            identity.become_in_child()?;
        }
        // After the change of user, which clears it; before the filter,
        // which forbids it.
        die_with(parent)?;
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(ruleset) = &self.ruleset {
            ruleset.restrict_in_child()?;
        }
        // Marked close-on-exec rather than closed: std reports a failed exec
        // through one of them.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            for fd in 3..4096 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        // Last: the filters may deny calls the steps above make.
        for filter in &self.sandbox.filters {
            seccompiler::apply_filter(filter).map_err(|_| io::Error::last_os_error())?;
        }
        Ok(())
    }
}

/// `PR_SET_PDEATHSIG = SIGKILL`, then make sure `parent` did not die first.
///
/// # Safety
/// Call only between fork and exec.
pub unsafe fn die_with(parent: libc::pid_t) -> io::Result<()> {
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
        return Err(io::Error::last_os_error());
    }
    if libc::getppid() != parent {
        libc::_exit(1);
    }
    Ok(())
}

/// Keep the worker's locale only when it is a plain name.
fn safe_lang() -> String {
    match std::env::var("LANG") {
        Ok(lang)
            if !lang.is_empty()
                && lang.len() < 64
                && lang
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) =>
        {
            lang
        }
        _ => "C.UTF-8".into(),
    }
}

/// The absolute, symlink-free path of `program`, searched on the worker's
/// `PATH` when it has no slash.
fn resolve_program(program: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let found = if program.components().count() > 1 || program.is_absolute() {
        Some(program.to_path_buf())
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| {
                candidate
                    .metadata()
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
    };
    let Some(found) = found else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not on PATH", program.display()),
        ));
    };
    std::fs::canonicalize(&found)
}

/// Check what a tool left for the worker to upload, without following a
/// symlink: a plain file with one link, so that the worker (perhaps root)
/// reads nothing but what the tool wrote. Call once the tool is gone.
pub fn plain_output(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(io::Error::other(format!(
            "{} is not a plain file (a link, a device or a pipe); it is not uploaded",
            path.display()
        )));
    }
    Ok(meta.len())
}

/// How long to wait between checks of the scratch directory's size.
pub const OUTPUT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes under `dir`, counting every regular file once (symlinks not followed).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Support = Support {
        landlock_abi: 7,
        seccomp: true,
    };

    #[test]
    fn required_refuses_a_kernel_without_landlock_and_names_the_setting() {
        let none = Support {
            landlock_abi: 0,
            seccomp: true,
        };
        let e = decide(SandboxMode::Required, none).unwrap_err().0;
        assert!(e.contains("Landlock"), "{e}");
        assert!(e.contains("sandbox = \"best_effort\""), "{e}");
        let old = Support {
            landlock_abi: 2,
            seccomp: true,
        };
        let e = decide(SandboxMode::Required, old).unwrap_err().0;
        assert!(e.contains("ABI 3") && e.contains("ABI 2"), "{e}");
        let no_seccomp = Support {
            landlock_abi: 7,
            seccomp: false,
        };
        let e = decide(SandboxMode::Required, no_seccomp).unwrap_err().0;
        assert!(e.contains("seccomp"), "{e}");
    }

    #[test]
    fn required_accepts_abi_3_with_seccomp() {
        let (enforced, warnings) = decide(
            SandboxMode::Required,
            Support {
                landlock_abi: 3,
                seccomp: true,
            },
        )
        .unwrap();
        assert_eq!(enforced.describe(), "landlock-abi-3+seccomp");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[1].contains("signal"), "{warnings:?}");
        let (enforced, warnings) = decide(SandboxMode::Required, FULL).unwrap();
        assert_eq!(enforced.describe(), "landlock-abi-7+net+scope+seccomp");
        assert!(warnings.is_empty());
    }

    #[test]
    fn best_effort_takes_what_there_is_and_warns() {
        let (enforced, warnings) = decide(
            SandboxMode::BestEffort,
            Support {
                landlock_abi: 0,
                seccomp: true,
            },
        )
        .unwrap();
        assert_eq!(enforced.describe(), "seccomp");
        assert!(warnings[0].contains("Landlock"), "{warnings:?}");
        let (enforced, _) = decide(
            SandboxMode::BestEffort,
            Support {
                landlock_abi: 0,
                seccomp: false,
            },
        )
        .unwrap();
        assert_eq!(enforced.describe(), "off");
    }

    #[test]
    fn off_enforces_nothing_of_the_kernel() {
        let (enforced, warnings) = decide(SandboxMode::Off, FULL).unwrap();
        assert_eq!(enforced.describe(), "off");
        assert!(warnings.is_empty());
    }

    #[test]
    fn modes_parse_as_written() {
        assert_eq!(SandboxMode::parse("required"), Some(SandboxMode::Required));
        assert_eq!(
            SandboxMode::parse("best_effort"),
            Some(SandboxMode::BestEffort)
        );
        assert_eq!(SandboxMode::parse("off"), Some(SandboxMode::Off));
        assert_eq!(SandboxMode::parse("Off"), None);
    }
}
