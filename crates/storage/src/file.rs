//! `file://` storage: streamed reads, and uploads written to a temporary name
//! beside the destination and renamed into place on commit.

use crate::transfer::Opened;
use crate::{StorageError, StorageErrorKind};
use futures::StreamExt;
use nommer_model::uri::MediaUri;
use std::path::{Path, PathBuf};
use tokio::io::AsyncSeekExt;

const CHUNK: usize = 1024 * 1024;

/// The source must be a regular file (the seed's message otherwise).
async fn check_source(uri: &MediaUri, path: &Path) -> Result<(), StorageError> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(StorageError::new(
                StorageErrorKind::NotFound,
                format!(
                    "The specified input file cannot be found: {} is not a regular file",
                    path.display()
                ),
            ))
        }
        Err(_) => return Err(StorageError::not_found(uri)),
    }
    Ok(())
}

/// The file's bytes from `offset` on.
pub async fn open(uri: &MediaUri, path: &Path, offset: u64) -> Result<Opened, StorageError> {
    check_source(uri, path).await?;
    let read_error = |e: std::io::Error| {
        StorageError::new(
            StorageErrorKind::Failed,
            format!("reading {}: {e}", path.display()),
        )
    };
    let mut file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let total = file.metadata().await.map_err(read_error)?.len();
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(read_error)?;
    let shown = path.display().to_string();
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

/// An output written under a temporary name beside its destination.
pub struct StagedFile {
    temp: PathBuf,
    target: PathBuf,
}

impl StagedFile {
    /// A temporary name beside `target`, whose directory must exist.
    pub async fn beside(target: &Path) -> Result<StagedFile, StorageError> {
        let parent = target.parent().unwrap_or(Path::new("/"));
        let is_dir = tokio::fs::metadata(parent)
            .await
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if !is_dir {
            return Err(StorageError::new(
                StorageErrorKind::Failed,
                format!(
                    "the destination directory {} does not exist",
                    parent.display()
                ),
            ));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let temp = parent.join(format!(".{name}.nommer-{:08x}.part", rand::random::<u32>()));
        Ok(StagedFile {
            temp,
            target: target.to_path_buf(),
        })
    }

    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// Sync the bytes, then rename them into place: one blocking task.
    pub async fn commit(self) -> Result<(), StorageError> {
        let (temp, target) = (self.temp.clone(), self.target.clone());
        let moved = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&temp)?.sync_all()?;
            std::fs::rename(&temp, &target)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = moved {
            let _ = tokio::fs::remove_file(&self.temp).await;
            return Err(StorageError::new(
                StorageErrorKind::Failed,
                format!(
                    "moving the output into place at {}: {e}",
                    self.target.display()
                ),
            ));
        }
        Ok(())
    }

    pub async fn abort(self) {
        let _ = tokio::fs::remove_file(&self.temp).await;
    }
}

/// Local file to local file: the kernel copies (copy_file_range), a chunk at
/// a time so progress shows. A staged copy is synced at commit; a copy into
/// scratch needs no sync.
pub async fn copy_local(
    uri: &MediaUri,
    src: &Path,
    dest: &Path,
    progress: crate::ProgressFn,
) -> Result<crate::Transferred, StorageError> {
    const STEP: u64 = 64 * 1024 * 1024;
    check_source(uri, src).await?;
    let (src, dest) = (src.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let failed = |what: &Path, e: std::io::Error| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("copying {}: {e}", what.display()),
            )
        };
        let input = std::fs::File::open(&src).map_err(|e| failed(&src, e))?;
        let total = input.metadata().map_err(|e| failed(&src, e))?.len();
        let mut output = std::fs::File::create(&dest).map_err(|e| failed(&dest, e))?;
        let mut done = 0u64;
        loop {
            // `&File` keeps std's copy_file_range path (a `&mut File` would not).
            let n = std::io::copy(&mut (&input).take(STEP), &mut output)
                .map_err(|e| failed(&dest, e))?;
            if n == 0 {
                break;
            }
            done += n;
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

/// Copy the local file `src` beside `target`, to be renamed into place on
/// commit; nothing is left behind on failure.
pub async fn stage_local(
    uri: &MediaUri,
    src: &Path,
    target: &Path,
    progress: crate::ProgressFn,
) -> Result<(StagedFile, crate::Transferred), StorageError> {
    let staged = StagedFile::beside(target).await?;
    match copy_local(uri, src, staged.temp(), progress).await {
        Ok(done) => Ok((staged, done)),
        Err(e) => {
            staged.abort().await;
            Err(e)
        }
    }
}
