//! Opening `file://` paths so that no symlink leads out: `openat2(2)` with
//! `RESOLVE_BENEATH` under the path's root, or, with no roots configured,
//! with `RESOLVE_NO_SYMLINKS` from `/`. The kernel resolves every component
//! as it opens, so a symlink swapped in after the check cannot escape.

use crate::roots::Anchor;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path holds a NUL byte"))
}

/// `struct open_how` of openat2(2); libc's is non-exhaustive.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn openat2(dir: RawFd, path: &Path, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    let path = cstring(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    // SAFETY: `path` and `how` outlive the call; the kernel reads `size` bytes of `how`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EXDEV) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the path leads outside its file root (through a symbolic link)",
            ),
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the path goes through a symbolic link, which file:// paths may not when no file_roots are configured",
            ),
            _ => e,
        });
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Open `anchor.path` with `flags` (and `mode` when creating).
pub fn open(anchor: &Anchor, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let no_magic = libc::RESOLVE_NO_MAGICLINKS;
    match &anchor.root {
        Some(root) => {
            let dir = std::fs::File::open(root)?;
            let rel = anchor.path.strip_prefix(root).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the path is outside its file root",
                )
            })?;
            let rel = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            openat2(
                dir.as_raw_fd(),
                rel,
                flags,
                mode,
                libc::RESOLVE_BENEATH | no_magic,
            )
        }
        None => openat2(
            libc::AT_FDCWD,
            &anchor.path,
            flags,
            mode,
            libc::RESOLVE_NO_SYMLINKS | no_magic,
        ),
    }
}

/// Open a regular file for reading.
pub fn open_read(anchor: &Anchor) -> io::Result<std::fs::File> {
    Ok(open(anchor, libc::O_RDONLY | libc::O_NOCTTY, 0)?.into())
}

/// Open a directory, to create, rename and remove entries in it.
pub fn open_dir(anchor: &Anchor) -> io::Result<OwnedFd> {
    open(anchor, libc::O_PATH | libc::O_DIRECTORY, 0)
}

/// Create `name` in `dir`; it must not exist (and is never a symlink followed).
pub fn create_in(dir: &OwnedFd, name: &str) -> io::Result<std::fs::File> {
    let name = cstring(Path::new(name))?;
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just returned.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Rename `from` to `to` within `dir`; a symlink at `to` is replaced, not followed.
pub fn rename_in(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    let (from, to) = (cstring(Path::new(from))?, cstring(Path::new(to))?);
    // SAFETY: a valid directory descriptor and NUL-terminated names.
    let done =
        unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make the directory `anchor.path` (private to the worker). One that
/// exists already is fine only if it is a directory of this process's user,
/// not a symlink someone put there to send our files elsewhere.
pub fn make_dir(anchor: &Anchor) -> io::Result<()> {
    let parent = open_dir(&anchor.parent())?;
    let name = anchor.path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path names no directory")
    })?;
    let name = cstring(Path::new(name))?;
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    let done = unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o700) };
    let e = io::Error::last_os_error();
    if done < 0 && e.raw_os_error() != Some(libc::EEXIST) {
        return Err(e);
    }
    // SAFETY: zeroed is a valid `stat`; the call fills it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid directory descriptor, a NUL-terminated name and a `stat` to fill.
    let rc = unsafe {
        libc::fstatat(
            parent.as_raw_fd(),
            name.as_ptr(),
            &mut stat,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: geteuid has no preconditions.
    let ours = stat.st_uid == unsafe { libc::geteuid() };
    if stat.st_mode & libc::S_IFMT != libc::S_IFDIR || !ours {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the path exists and is not a directory of this worker's own",
        ));
    }
    Ok(())
}

/// Remove the directory `anchor.path` and the files in it (it holds no
/// directories); how many files. One that does not exist holds none.
pub fn remove_flat_dir(anchor: &Anchor) -> io::Result<u64> {
    // Not through a symlink at the directory itself.
    let dir = match open(
        anchor,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    ) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    // Listed through the descriptor opened beneath the root, not the path.
    let mut removed = 0;
    for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let name = cstring(Path::new(&entry?.file_name()))?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        removed += 1;
    }
    let parent = open_dir(&anchor.parent())?;
    let name = anchor.path.file_name().unwrap_or_default();
    let name = cstring(Path::new(name))?;
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    if unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(removed)
}

pub fn remove_in(dir: &OwnedFd, name: &str) {
    if let Ok(name) = cstring(Path::new(name)) {
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    }
}
