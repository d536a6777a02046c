//! `file://` storage: streamed reads, and uploads written to a temporary name
//! beside the destination and renamed into place on commit. Every job path is
//! opened beneath its root (`beneath.rs`); scratch files are the worker's own.

use crate::backend::{Backend, Pending, Rules, Staged, Writer};
use crate::beneath;
use crate::roots::Anchor;
use crate::transfer::Opened;
use crate::{ProgressFn, StorageError, StorageErrorKind, Transferred};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use nommer_model::uri::{Location, MediaUri};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

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

/// The `file://` backend: every path checked against the rules' file roots
/// and opened beneath its root.
pub struct FileBackend;

/// A `file://` URI's checked path and the root to open it beneath.
fn anchor(rules: &Rules, uri: &MediaUri) -> Result<Anchor, StorageError> {
    let Location::File { path } = uri.location() else {
        return Err(StorageError::unsupported(uri, "read this URI"));
    };
    rules
        .file_roots
        .anchor(path)
        .map_err(|e| StorageError::new(StorageErrorKind::Denied, e.message))
}

/// A source opened beneath its root and within the size bound.
fn open_bounded(rules: &Rules, uri: &MediaUri) -> Result<(std::fs::File, Anchor), StorageError> {
    let anchor = anchor(rules, uri)?;
    let file = open_source(uri, &anchor)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > rules.max_download_bytes {
        return Err(crate::transfer::too_large(
            uri,
            size,
            rules.max_download_bytes,
        ));
    }
    Ok((file, anchor))
}

#[async_trait]
impl Backend for FileBackend {
    async fn open(
        &self,
        rules: &Rules,
        uri: &MediaUri,
        offset: u64,
    ) -> Result<Opened, StorageError> {
        let (file, anchor) = open_bounded(rules, uri)?;
        stream(file, &anchor.path, offset).await
    }

    async fn head(&self, rules: &Rules, uri: &MediaUri) -> Result<Option<u64>, StorageError> {
        match open_source(uri, &anchor(rules, uri)?) {
            Ok(file) => Ok(Some(file.metadata().map(|m| m.len()).unwrap_or(0))),
            Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn writer(
        &self,
        rules: &Rules,
        uri: &MediaUri,
        _size_hint: Option<u64>,
    ) -> Result<Box<dyn Writer>, StorageError> {
        let anchor = anchor(rules, uri)?;
        let (staged, writer) = StagedFile::beside(&anchor).await?;
        Ok(Box::new(FileWriter {
            staged,
            file: tokio::fs::File::from_std(writer),
        }))
    }

    async fn delete(&self, rules: &Rules, uri: &MediaUri) -> Result<(), StorageError> {
        let anchor = anchor(rules, uri)?;
        let dir = match beneath::open_dir(&anchor.parent()) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(StorageError::new(
                    StorageErrorKind::Failed,
                    format!("removing {}: {e}", anchor.path.display()),
                ))
            }
        };
        let name = anchor
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        beneath::remove_in(&dir, &name);
        Ok(())
    }

    async fn remove_prefix(
        &self,
        rules: &Rules,
        probe: &MediaUri,
        _probe_name: &str,
    ) -> Result<u64, StorageError> {
        let dir = anchor(rules, probe)?.parent();
        let shown = dir.path.display().to_string();
        tokio::task::spawn_blocking(move || beneath::remove_flat_dir(&dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| {
                StorageError::new(StorageErrorKind::Failed, format!("removing {shown}: {e}"))
            })
    }

    async fn make_prefix(&self, rules: &Rules, probe: &MediaUri) -> Result<(), StorageError> {
        let dir = anchor(rules, probe)?.parent();
        beneath::make_dir(&dir).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("making {}: {e}", dir.path.display()),
            )
        })
    }

    /// File to file: the kernel copies, beside the destination.
    async fn server_copy(
        &self,
        rules: &Rules,
        src: &MediaUri,
        dest: &MediaUri,
        progress: ProgressFn,
    ) -> Result<Option<(Staged, Transferred)>, StorageError> {
        let (input, _) = open_bounded(rules, src)?;
        let to = anchor(rules, dest)?;
        let (staged, done) = stage(input, &to, rules.max_download_bytes, progress).await?;
        Ok(Some((Staged::new(staged), done)))
    }

    /// A local file to `file://`: the kernel copies, beside the destination.
    async fn stage_file(
        &self,
        rules: &Rules,
        src: &Path,
        uri: &MediaUri,
        progress: ProgressFn,
    ) -> Result<Option<Staged>, StorageError> {
        let input = std::fs::File::open(src).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("reading {}: {e}", src.display()),
            )
        })?;
        let (staged, _) = stage(input, &anchor(rules, uri)?, u64::MAX, progress).await?;
        Ok(Some(Staged::new(staged)))
    }

    async fn download_fast(
        &self,
        rules: &Rules,
        uri: &MediaUri,
        dest: &Path,
        progress: ProgressFn,
    ) -> Result<Option<Transferred>, StorageError> {
        let (input, anchor) = open_bounded(rules, uri)?;
        let output = std::fs::File::create(dest).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("creating {}: {e}", dest.display()),
            )
        })?;
        copy(
            input,
            output,
            &anchor.path,
            rules.max_download_bytes,
            progress,
        )
        .await
        .map(Some)
    }
}

/// Streamed bytes into a staged file.
struct FileWriter {
    staged: StagedFile,
    file: tokio::fs::File,
}

impl FileWriter {
    fn failed(&self, e: std::io::Error) -> StorageError {
        StorageError::new(
            StorageErrorKind::Failed,
            format!("writing {}: {e}", self.staged.target.display()),
        )
    }
}

#[async_trait]
impl Writer for FileWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        let written = self.file.write_all(&chunk).await;
        written.map_err(|e| self.failed(e))
    }

    async fn finish(mut self: Box<Self>) -> Result<Staged, StorageError> {
        // tokio writes in the background; flush returns the last write's error.
        if let Err(e) = self.file.flush().await {
            let e = self.failed(e);
            self.staged.abort().await;
            return Err(e);
        }
        Ok(Staged::new(self.staged))
    }

    async fn abort(self: Box<Self>) {
        let FileWriter { staged, file } = *self;
        drop(file);
        staged.abort().await;
    }
}

#[async_trait]
impl Pending for StagedFile {
    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        StagedFile::commit(*self).await
    }

    async fn abort(self: Box<Self>) {
        StagedFile::abort(*self).await
    }
}
