//! The scratch file system's free space: a full disk is the node's fault,
//! not the job's, so the worker stops leasing while it lasts, and a task it
//! cut short is retried elsewhere rather than failing the job.

use std::path::Path;

/// Bytes an unprivileged writer may still use on `path`'s file system, by
/// the kernel's count; None when it cannot be read.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes only into `stat`; `c` is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// strerror(ENOSPC), as both Rust's I/O errors and ffmpeg's messages end.
const NO_SPACE: &str = "No space left on device";

/// Below this the scratch disk is full: what a tool wrote when its last
/// write failed (ffmpeg's own error then names only the trailer).
const FULL: u64 = 1 << 20;

/// Whether a task's failure was the scratch disk running out: its error
/// says so, or the file system is full now, before the task's own scratch
/// is removed. A low disk alone is not enough: a job's own error on a
/// nearly full disk stays the job's.
pub fn ran_out(work_dir: &Path, details: &str) -> bool {
    details.contains(NO_SPACE) || free_bytes(work_dir).is_some_and(|free| free < FULL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_free_space_of_a_real_file_system() {
        let dir = std::env::temp_dir();
        assert!(free_bytes(&dir).is_some_and(|b| b > 0));
        assert!(free_bytes(&dir.join("nommer-no-such-directory")).is_none());
        assert!(ran_out(
            &dir,
            "writing x: No space left on device (os error 28)"
        ));
        assert!(!ran_out(&dir, "ffmpeg exited with status 1"));
    }
}
