//! Who a tool runs as. Under a root worker: the sandbox user, with no
//! supplementary groups and no capability, in the bounding set included.

use super::SandboxError;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub fn running_as_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The unprivileged user and group tools run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

impl Identity {
    /// `NAME` (looked up in the user database) or `UID:GID`. Root is refused.
    pub fn resolve(user: &str) -> Result<Identity, SandboxError> {
        let identity = match user.split_once(':') {
            Some((uid, gid)) => {
                let parse = |v: &str| v.trim().parse::<u32>().ok();
                match (parse(uid), parse(gid)) {
                    (Some(uid), Some(gid)) => Identity {
                        name: user.to_string(),
                        uid,
                        gid,
                    },
                    _ => {
                        return Err(SandboxError(format!(
                            "sandbox_user \"{user}\" is neither a user name nor UID:GID"
                        )))
                    }
                }
            }
            None => lookup(user)?,
        };
        if identity.uid == 0 || identity.gid == 0 {
            return Err(SandboxError(format!(
                "sandbox_user \"{user}\" is root (uid {} gid {}); tools must run unprivileged",
                identity.uid, identity.gid
            )));
        }
        Ok(identity)
    }

    /// Drop every capability, then become the sandbox user.
    ///
    /// # Safety
    /// Call only in a freshly forked child that is about to exec: system
    /// calls only.
    pub unsafe fn become_in_child(&self) -> io::Result<()> {
        // Empty the bounding set while still privileged, so no exec can get
        // a capability back; the loop ends at the first unknown capability.
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                break;
            }
        }
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(self.gid, self.gid, self.gid) != 0
            || libc::setresuid(self.uid, self.uid, self.uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::geteuid() == 0 || libc::getegid() == 0 {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }

    /// Make `dir` and the entries directly in it the sandbox user's, by
    /// descriptor and never through a symlink. The entries go first, while
    /// the directory is still the worker's alone, so nothing can be swapped
    /// in between; subdirectories are not descended.
    pub fn hand_over(&self, dir: &Path) -> io::Result<()> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        // SAFETY: a valid C string; the descriptor is owned below.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for entry in std::fs::read_dir(dir)? {
            let name = CString::new(entry?.file_name().as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte")
            })?;
            // SAFETY: valid descriptor and C string.
            let rc = unsafe {
                libc::fchownat(
                    fd.as_raw_fd(),
                    name.as_ptr(),
                    self.uid,
                    self.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: valid descriptor.
        if unsafe { libc::fchown(fd.as_raw_fd(), self.uid, self.gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the sandbox user can reach `dir` and write in a scratch
    /// directory made there: every parent must be searchable by it, which
    /// the mode bits tell; then a real write, as that user, proves it.
    pub fn check_work_dir(&self, dir: &Path) -> Result<(), SandboxError> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| SandboxError(format!("work_dir {}: {e}", dir.display())))?;
        let mut ancestors: Vec<PathBuf> = dir.ancestors().map(Path::to_path_buf).collect();
        ancestors.reverse();
        for path in &ancestors {
            let meta = std::fs::metadata(path).map_err(|e| {
                SandboxError(format!(
                    "work_dir {}: {}: {e}",
                    dir.display(),
                    path.display()
                ))
            })?;
            if !self.may(&meta, 0o1) {
                return Err(SandboxError(format!(
                    "the sandbox user {} (uid {}) cannot reach work_dir {}: {} is not searchable by it (mode {:o}, owner uid {}); make it traversable (chmod o+x {}) or choose another work_dir",
                    self.name,
                    self.uid,
                    dir.display(),
                    path.display(),
                    meta.mode() & 0o7777,
                    meta.uid(),
                    path.display()
                )));
            }
        }
        let probe = dir.join(format!(".sandbox-probe-{:016x}", rand_u64()));
        std::fs::create_dir(&probe)
            .and_then(|_| self.hand_over(&probe))
            .map_err(|e| {
                SandboxError(format!(
                    "cannot make a scratch directory in work_dir {}: {e}",
                    dir.display()
                ))
            })?;
        let written = self.write_as(&probe.join("probe"));
        let _ = std::fs::remove_dir_all(&probe);
        written.map_err(|e| {
            SandboxError(format!(
                "the sandbox user {} (uid {}) cannot write in a scratch directory under work_dir {}: {e}",
                self.name,
                self.uid,
                dir.display()
            ))
        })
    }

    /// Whether `meta` grants `bits` (0o4 read, 0o2 write, 0o1 search) to the
    /// sandbox user, which has no supplementary groups.
    fn may(&self, meta: &std::fs::Metadata, bits: u32) -> bool {
        let mode = meta.mode();
        let shift = if meta.uid() == self.uid {
            6
        } else if meta.gid() == self.gid {
            3
        } else {
            0
        };
        (mode >> shift) & bits == bits
    }

    /// Create `file` as the sandbox user, in a forked child that does
    /// nothing but switch identity and open.
    fn write_as(&self, file: &Path) -> io::Result<()> {
        let path = CString::new(file.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        // SAFETY: the child makes async-signal-safe calls only, then _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                let code = if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(self.gid, self.gid, self.gid) != 0
                    || libc::setresuid(self.uid, self.uid, self.uid) != 0
                {
                    *libc::__errno_location()
                } else {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o600,
                    );
                    if fd < 0 {
                        *libc::__errno_location()
                    } else {
                        0
                    }
                };
                libc::_exit(code.min(255));
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
            Some(0) => Ok(()),
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Err(io::Error::other("the probe process died")),
        }
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        return std::process::id() as u64;
    }
    u64::from_ne_bytes(bytes)
}

fn lookup(name: &str) -> Result<Identity, SandboxError> {
    let c_name = CString::new(name)
        .map_err(|_| SandboxError(format!("sandbox_user \"{name}\" holds a NUL byte")))?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the buffer outlives `pwd`'s use.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(SandboxError(format!(
            "sandbox_user \"{name}\" does not exist on this machine; create it, or set sandbox_user to another user or to UID:GID"
        )));
    }
    Ok(Identity {
        name: name.to_string(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve_and_root_is_refused() {
        let nobody = Identity::resolve("nobody").unwrap();
        assert_ne!(nobody.uid, 0);
        assert_eq!(
            Identity::resolve("1234:5678").unwrap(),
            Identity {
                name: "1234:5678".into(),
                uid: 1234,
                gid: 5678
            }
        );
        assert!(Identity::resolve("root").unwrap_err().0.contains("root"));
        assert!(Identity::resolve("0:0").is_err());
        assert!(Identity::resolve("no-such-user-here")
            .unwrap_err()
            .0
            .contains("does not exist"));
        assert!(Identity::resolve("a:b").is_err());
    }

    #[test]
    fn a_private_parent_is_named() {
        if !running_as_root() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let private = root.path().join("private");
        let work = private.join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = Identity::resolve("nobody").unwrap();
        let e = nobody.check_work_dir(&work).unwrap_err().0;
        assert!(e.contains(&private.display().to_string()), "{e}");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        nobody.check_work_dir(&work).unwrap();
    }
}
