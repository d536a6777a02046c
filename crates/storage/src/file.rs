//! `file://` storage: streamed copies, and uploads written to a temporary name
//! beside the destination and renamed into place on commit.

use crate::{ProgressFn, StorageError, StorageErrorKind};
use nommer_model::uri::MediaUri;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK: usize = 1024 * 1024;

async fn copy_with_progress(
    src: &Path,
    dest: &Path,
    progress: &ProgressFn,
) -> std::io::Result<u64> {
    let mut input = tokio::fs::File::open(src).await?;
    let total = input.metadata().await?.len();
    let mut output = tokio::fs::File::create(dest).await?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n]).await?;
        done += n as u64;
        progress(done, Some(total));
    }
    output.flush().await?;
    output.sync_all().await?;
    Ok(done)
}

pub async fn download(
    uri: &MediaUri,
    path: &Path,
    dest: &Path,
    progress: ProgressFn,
) -> Result<u64, StorageError> {
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
    copy_with_progress(path, dest, &progress)
        .await
        .map_err(|e| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("reading {}: {e}", path.display()),
            )
        })
}

pub struct StagedFile {
    temp: PathBuf,
    target: PathBuf,
}

pub async fn stage(
    src: &Path,
    target: &Path,
    progress: ProgressFn,
) -> Result<StagedFile, StorageError> {
    let parent = target.parent().unwrap_or(Path::new("/"));
    if !tokio::fs::metadata(parent)
        .await
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
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
    let temp = parent.join(format!(
        ".{name}.nommer-{}.part",
        std::process::id() as u64 ^ rand::random::<u32>() as u64
    ));
    if let Err(e) = copy_with_progress(src, &temp, &progress).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(StorageError::new(
            StorageErrorKind::Failed,
            format!("writing {}: {e}", target.display()),
        ));
    }
    Ok(StagedFile {
        temp,
        target: target.to_path_buf(),
    })
}

impl StagedFile {
    pub async fn commit(self) -> Result<(), StorageError> {
        let result = tokio::fs::rename(&self.temp, &self.target).await;
        if let Err(e) = result {
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
