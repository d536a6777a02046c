//! `file://` storage: streamed reads, and uploads written to a temporary name
//! beside the destination and renamed into place on commit. Every job path is
//! opened beneath its root (`beneath.rs`); scratch files are the worker's own.

use crate::beneath;
use crate::roots::Anchor;
use crate::transfer::Opened;
use crate::{StorageError, StorageErrorKind};
use futures::StreamExt;
use nommer_model::uri::MediaUri;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use tokio::io::AsyncSeekExt;

const CHUNK: usize = 1024 * 1024;

/// Open a job's source: a regular file, or the seed's message.
pub fn open_source(uri: &MediaUri, anchor: &Anchor) -> Result<std::fs::File, StorageError> {
    let file = match beneath::open_read(anchor) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::not_found(uri))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(StorageError::new(
                StorageErrorKind::Denied,
                format!("{}: {e}", anchor.path.display()),
            ))
        }
        Err(e) => {
            return Err(StorageError::new(
                StorageErrorKind::Failed,
                format!("reading {}: {e}", anchor.path.display()),
            ))
        }
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => Ok(file),
        _ => Err(StorageError::new(
            StorageErrorKind::NotFound,
            format!(
                "The specified input file cannot be found: {} is not a regular file",
                anchor.path.display()
            ),
        )),
    }
}

/// A file's bytes from `offset` on.
pub async fn stream(
    file: std::fs::File,
    shown: &Path,
    offset: u64,
) -> Result<Opened, StorageError> {
    let shown = shown.display().to_string();
    let read_error = |e: std::io::Error| {
        StorageError::new(StorageErrorKind::Failed, format!("reading {shown}: {e}"))
    };
    let mut file = tokio::fs::File::from_std(file);
    let total = file.metadata().await.map_err(read_error)?.len();
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(read_error)?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, CHUNK)
        .map(move |chunk| {
            chunk.map_err(|e| {
                StorageError::new(StorageErrorKind::Failed, format!("reading {shown}: {e}"))
            })
        })
        .boxed();
    Ok(Opened {
        total: Some(total),
        stream,
    })
}

/// A worker's own file (scratch output) from `offset` on.
pub async fn open_own(path: &Path, offset: u64) -> Result<Opened, StorageError> {
    let file = std::fs::File::open(path).map_err(|e| {
        StorageError::new(
            StorageErrorKind::Failed,
            format!("reading {}: {e}", path.display()),
        )
    })?;
    stream(file, path, offset).await
}

/// An output written under a temporary name beside its destination.
pub struct StagedFile {
    dir: OwnedFd,
    temp: String,
    name: String,
    file: std::fs::File,
    target: PathBuf,
}

impl StagedFile {
    /// A temporary file beside `target`, whose directory must exist, and a
    /// handle to write its bytes through.
    pub async fn beside(target: &Anchor) -> Result<(StagedFile, std::fs::File), StorageError> {
        let parent = target.parent();
        let dir = beneath::open_dir(&parent).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::PermissionDenied => StorageErrorKind::Denied,
                _ => StorageErrorKind::Failed,
            };
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_string(),
                _ => e.to_string(),
            };
            StorageError::new(
                kind,
                format!("the destination directory {}: {why}", parent.path.display()),
            )
        })?;
        let name = target
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let temp = format!(".{name}.nommer-{:08x}.part", rand::random::<u32>());
        let file = beneath::create_in(&dir, &temp).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("creating a file in {}: {e}", parent.path.display()),
            )
        })?;
        let staged = StagedFile {
            dir,
            temp,
            name,
            file,
            target: target.path.clone(),
        };
        match staged.file.try_clone() {
            Ok(writer) => Ok((staged, writer)),
            Err(e) => {
                let shown = staged.target.display().to_string();
                staged.abort().await;
                Err(StorageError::new(
                    StorageErrorKind::Failed,
                    format!("writing {shown}: {e}"),
                ))
            }
        }
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Sync the bytes, then rename them into place: one blocking task.
    pub async fn commit(self) -> Result<(), StorageError> {
        let StagedFile {
            dir,
            temp,
            name,
            file,
            target,
        } = self;
        let moved = tokio::task::spawn_blocking(move || {
            let result = file
                .sync_all()
                .and_then(|_| beneath::rename_in(&dir, &temp, &name));
            if result.is_err() {
                beneath::remove_in(&dir, &temp);
            }
            result
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        moved.map_err(|e| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("moving the output into place at {}: {e}", target.display()),
            )
        })
    }

    pub async fn abort(self) {
        beneath::remove_in(&self.dir, &self.temp);
    }
}

/// File to file: the kernel copies (copy_file_range), a chunk at a time so
/// progress shows. A staged copy is synced at commit; a copy into scratch
/// needs no sync.
/// More than `max` bytes (a source that grew after it was opened) is an
/// error, and nothing past `max + 1` is read.
pub async fn copy(
    input: std::fs::File,
    mut output: std::fs::File,
    shown: &Path,
    max: u64,
    progress: crate::ProgressFn,
) -> Result<crate::Transferred, StorageError> {
    const STEP: u64 = 64 * 1024 * 1024;
    let shown = shown.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let failed = |e: std::io::Error| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("copying {}: {e}", shown.display()),
            )
        };
        let total = input.metadata().map_err(failed)?.len();
        let mut done = 0u64;
        loop {
            // `&File` keeps std's copy_file_range path (a `&mut File` would not).
            let step = STEP.min(max.saturating_add(1) - done);
            let n = std::io::copy(&mut (&input).take(step), &mut output).map_err(failed)?;
            if n == 0 {
                break;
            }
            done += n;
            if done > max {
                return Err(StorageError::new(
                    StorageErrorKind::TooLarge,
                    format!(
                        "{} grew past max_download_bytes ({max} bytes)",
                        shown.display()
                    ),
                ));
            }
            progress(done, Some(total));
        }
        Ok(crate::Transferred {
            bytes: done,
            retries: 0,
        })
    })
    .await
    .map_err(|e| StorageError::new(StorageErrorKind::Failed, format!("copy task: {e}")))?
}

/// Copy `input` beside `target`, to be renamed into place on commit;
/// nothing is left behind on failure.
pub async fn stage(
    input: std::fs::File,
    target: &Anchor,
    max: u64,
    progress: crate::ProgressFn,
) -> Result<(StagedFile, crate::Transferred), StorageError> {
    let (staged, writer) = StagedFile::beside(target).await?;
    match copy(input, writer, &target.path, max, progress).await {
        Ok(done) => Ok((staged, done)),
        Err(e) => {
            staged.abort().await;
            Err(e)
        }
    }
}
