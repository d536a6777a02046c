//! Each worker process keeps its scratch in a directory of its own,
//! `work_dir/run-NONCE/`, while it holds an exclusive lock on
//! `work_dir/run-NONCE.lock`. The kernel drops the lock when the process dies,
//! however it dies, so a worker that starts removes every `run-*` whose lock
//! it can take: the scratch of workers that were SIGKILLed or crashed. Live
//! workers sharing the `work_dir` (local workers, several on one disk) keep
//! theirs.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct OwnDir {
    pub path: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

/// What a start found left behind and removed.
#[derive(Debug, Default, PartialEq)]
pub struct Swept {
    pub dirs: usize,
    pub bytes: u64,
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock has no memory preconditions; the fd is open.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// A lock file, opened without following a link or blocking on a FIFO that
/// someone else put there.
fn open_lock(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

fn bytes_under(path: &Path, depth: u32) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    if depth == 0 {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|dir| {
            dir.flatten()
                .map(|e| bytes_under(&e.path(), depth - 1))
                .sum()
        })
        .unwrap_or(0)
}

/// `run-NONCE` and what follows it, for a nonce of ours (16 hex digits):
/// other programs' `run-*` entries are not ours to remove.
fn nonce_of(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("run-")?;
    let (nonce, suffix) = rest.split_at(rest.len().min(16));
    (nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit())).then_some((nonce, suffix))
}

fn owned_by_us(meta: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions.
    meta.uid() == unsafe { libc::geteuid() }
}

/// A new lock, held: taken under a name no sweeper reads as a live
/// worker's, then renamed to `run-NONCE.lock`, so that only a held lock ever
/// has that name.
fn take_lock(work_dir: &Path) -> io::Result<(String, File, PathBuf)> {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let locking = work_dir.join(format!("run-{nonce}.locking"));
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&locking)?;
    if !try_lock(&lock) {
        return Err(io::Error::other(format!(
            "cannot lock {}",
            locking.display()
        )));
    }
    let lock_path = work_dir.join(format!("run-{nonce}.lock"));
    std::fs::rename(&locking, &lock_path)?;
    Ok((nonce, lock, lock_path))
}

/// Remove what dead workers left in `work_dir`, then take a directory of
/// this process's own there.
pub fn claim(work_dir: &Path) -> io::Result<(OwnDir, Swept)> {
    let mut swept = Swept::default();
    for entry in std::fs::read_dir(work_dir)?.flatten() {
        let name = entry.file_name();
        let Some((nonce, suffix)) = name.to_str().and_then(nonce_of) else {
            continue;
        };
        let dir = work_dir.join(format!("run-{nonce}"));
        let lock_path = work_dir.join(format!("run-{nonce}.lock"));
        let lock = match suffix {
            // A directory is made only once its lock file is in place, and
            // that file goes only after it: a directory without one is a
            // dead worker's.
            "" => match open_lock(&lock_path) {
                Ok(_) => continue, // judged by its lock file's entry
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(_) => continue,
            },
            ".lock" | ".locking" => match open_lock(&entry.path()) {
                Ok(file) if try_lock(&file) => Some(file),
                _ => continue,
            },
            _ => continue,
        };
        if let Ok(meta) = std::fs::symlink_metadata(&dir) {
            if meta.is_dir() && owned_by_us(&meta) {
                let bytes = bytes_under(&dir, 16);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {
                        swept.dirs += 1;
                        swept.bytes += bytes;
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a stopped worker's scratch")
                    }
                }
            }
        }
        if lock.is_some() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // A sweeper starting at the same instant may take the lock file in the
    // moment between its creation and its lock: then try another nonce.
    let mut tries = 0;
    let (nonce, lock, lock_path) = loop {
        tries += 1;
        match take_lock(work_dir) {
            Ok(taken) => break taken,
            Err(e) if tries < 5 => {
                tracing::debug!(error = %e, "a scratch lock was taken away; again")
            }
            Err(e) => return Err(e),
        }
    };
    let path = work_dir.join(format!("run-{nonce}"));
    std::fs::create_dir(&path)?;
    // The sandbox user passes through to the scratch directories inside,
    // whatever the umask.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o711))?;
    Ok((
        OwnDir {
            path,
            lock_path,
            _lock: lock,
        },
        swept,
    ))
}

impl OwnDir {
    /// On a clean exit: nothing of this worker stays.
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "nommerd-workdir-{name}-{:08x}",
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_start_sweeps_dead_workers_scratch_and_spares_live_ones() {
        let dir = work_dir("sweep");
        let (live, swept) = claim(&dir).unwrap();
        assert_eq!(swept, Swept::default());
        std::fs::create_dir(live.path.join("job-a")).unwrap();
        std::fs::write(live.path.join("job-a/source.mp4"), [0u8; 1000]).unwrap();
        // A dead worker: its lock file is there but nobody holds it.
        let (dead, _) = claim(&dir).unwrap();
        std::fs::write(dead.path.join("output.mp4"), [0u8; 500]).unwrap();
        let dead_path = dead.path.clone();
        drop(dead);
        // One that died between its lock going and its directory going, one
        // that died while taking its lock, and another program's entry.
        std::fs::create_dir(dir.join("run-00000000000000aa")).unwrap();
        std::fs::write(dir.join("run-00000000000000bb.locking"), b"").unwrap();
        std::fs::create_dir(dir.join("run-other")).unwrap();

        let (me, swept) = claim(&dir).unwrap();
        assert_eq!(
            swept,
            Swept {
                dirs: 2,
                bytes: 500
            }
        );
        assert!(!dead_path.exists());
        assert!(!dir.join("run-00000000000000aa").exists());
        assert!(!dir.join("run-00000000000000bb.locking").exists());
        assert!(
            dir.join("run-other").exists(),
            "another program's entry was removed"
        );
        std::fs::remove_dir(dir.join("run-other")).unwrap();
        assert!(
            live.path.join("job-a/source.mp4").exists(),
            "a live worker's scratch was removed"
        );
        let (live_path, me_path) = (live.path.clone(), me.path.clone());
        live.remove();
        me.remove();
        assert!(!live_path.exists() && !me_path.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
