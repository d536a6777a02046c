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
use std::os::unix::fs::DirBuilderExt;
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

fn bytes_under(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|dir| dir.flatten().map(|e| bytes_under(&e.path())).sum())
        .unwrap_or(0)
}

/// Remove what dead workers left in `work_dir`, then take a directory of
/// this process's own there.
pub fn claim(work_dir: &Path) -> io::Result<(OwnDir, Swept)> {
    let mut swept = Swept::default();
    for entry in std::fs::read_dir(work_dir)?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(run) = name.strip_prefix("run-") else {
            continue;
        };
        let (dir, lock_path) = match run.strip_suffix(".lock") {
            Some(nonce) => (work_dir.join(format!("run-{nonce}")), entry.path()),
            None => (entry.path(), work_dir.join(format!("{name}.lock"))),
        };
        // A directory is made only once its lock is held, and its lock file
        // goes only after it: a directory without one is a dead worker's.
        let lock = match File::open(&lock_path) {
            Ok(file) if try_lock(&file) => Some(file),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(_) => continue,
        };
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            swept.bytes += bytes_under(&dir);
            std::fs::remove_dir_all(&dir)?;
            swept.dirs += 1;
        }
        if lock.is_some() {
            let _ = std::fs::remove_file(&lock_path);
        }
    }
    let nonce = format!("{:016x}", rand::random::<u64>());
    let lock_path = work_dir.join(format!("run-{nonce}.lock"));
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock_path)?;
    if !try_lock(&lock) {
        return Err(io::Error::other(format!(
            "cannot lock {}",
            lock_path.display()
        )));
    }
    let path = work_dir.join(format!("run-{nonce}"));
    // The sandbox user passes through to the scratch directories inside.
    std::fs::DirBuilder::new().mode(0o711).create(&path)?;
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
        // One that died between its lock going and its directory going.
        std::fs::create_dir(dir.join("run-orphan")).unwrap();

        let (me, swept) = claim(&dir).unwrap();
        assert_eq!(swept, Swept { dirs: 2, bytes: 500 });
        assert!(!dead_path.exists());
        assert!(!dir.join("run-orphan").exists());
        assert!(live.path.join("job-a/source.mp4").exists(), "a live worker's scratch was removed");
        let (live_path, me_path) = (live.path.clone(), me.path.clone());
        live.remove();
        me.remove();
        assert!(!live_path.exists() && !me_path.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
