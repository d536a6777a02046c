//! Moving bytes from any source to any sink, resumably: when a connection
//! drops mid-transfer, the source is reopened at the byte reached and the
//! transfer goes on, up to `RETRIES` times with backoff. Chunks pass straight
//! through, so memory does not grow with the file.

use crate::backend::Writer;
use crate::{ProgressFn, StorageError, StorageErrorKind};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use nommer_model::uri::MediaUri;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Retries after the first attempt, per transfer.
pub const RETRIES: u32 = 3;
/// Before each resume: 1 s, 2 s, 4 s.
const RESUME_BACKOFF: nommer_model::backoff::Backoff = nommer_model::backoff::Backoff::new(
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(30),
);
/// A transfer stalls out when no byte arrives for this long.
const READ_IDLE: Duration = Duration::from_secs(60);

/// A source opened at some offset.
pub struct Opened {
    /// The whole source's size, when the store says.
    pub total: Option<u64>,
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

/// What a transfer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    pub bytes: u64,
    /// Times the source was reopened after a transient failure.
    pub retries: u32,
}

/// Where a transfer writes.
pub enum Sink {
    File {
        file: tokio::fs::File,
        path: PathBuf,
    },
    /// A backend's staged upload.
    Writer(Box<dyn Writer>),
}

impl Sink {
    pub async fn file(path: PathBuf) -> Result<Sink, StorageError> {
        let file = tokio::fs::File::create(&path).await.map_err(|e| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("creating {}: {e}", path.display()),
            )
        })?;
        Ok(Sink::File { file, path })
    }

    /// A file sink's bytes are all on disk, or the error that stopped them.
    /// tokio writes a file in the background, and its `sync_all` keeps the
    /// last write's error to itself (a full disk then leaves a short file
    /// that reads as complete): `flush` returns it.
    pub async fn finish_file(&mut self) -> Result<(), StorageError> {
        let Sink::File { file, path } = self else {
            return Ok(());
        };
        let written = match file.flush().await {
            Ok(()) => file.sync_all().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("writing {}: {e}", path.display()),
            )
        })
    }

    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        match self {
            Sink::File { file, path } => file.write_all(&chunk).await.map_err(|e| {
                StorageError::new(
                    StorageErrorKind::Failed,
                    format!("writing {}: {e}", path.display()),
                )
            }),
            Sink::Writer(writer) => writer.write(chunk).await,
        }
    }
}

pub(crate) fn too_large(uri: &MediaUri, size: u64, max: u64) -> StorageError {
    StorageError::new(
        StorageErrorKind::TooLarge,
        format!(
            "the source {} is larger than max_download_bytes ({size} > {max} bytes)",
            uri.redacted()
        ),
    )
}

/// Cut a source's stream off past `max` bytes: a server that states no
/// length, or lies about it, gets no further than the bound.
pub fn bounded(
    uri: &MediaUri,
    offset: u64,
    opened: Opened,
    max: u64,
) -> Result<Opened, StorageError> {
    if let Some(total) = opened.total.filter(|t| *t > max) {
        return Err(too_large(uri, total, max));
    }
    let error = too_large(uri, max.saturating_add(1), max);
    let mut reached = offset;
    let stream = opened.stream.map(move |chunk| {
        let chunk = chunk?;
        reached += chunk.len() as u64;
        if reached > max {
            return Err(error.clone());
        }
        Ok(chunk)
    });
    Ok(Opened {
        total: opened.total,
        stream: stream.boxed(),
    })
}

fn transient(message: String) -> StorageError {
    StorageError::new(StorageErrorKind::Transient, message)
}

/// Why a pass over a source stopped.
enum Stop {
    /// Reading failed: the source may be reopened at the byte reached.
    Source(StorageError),
    /// Writing failed. The sink may have taken part of the chunk, so the
    /// transfer cannot go on into it: the error ends the transfer (and, if
    /// transient, the task is retried with a fresh sink).
    Sink(StorageError),
}

/// One pass over an opened source; returns the offset reached.
async fn drain(
    opened: Opened,
    mut offset: u64,
    sink: &mut Sink,
    progress: &ProgressFn,
    uri: &MediaUri,
) -> (u64, Result<(), Stop>) {
    let mut stream = opened.stream;
    loop {
        let next = match tokio::time::timeout(READ_IDLE, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                let e = transient(format!(
                    "no data for {} s from {}",
                    READ_IDLE.as_secs(),
                    uri.redacted()
                ));
                return (offset, Err(Stop::Source(e)));
            }
        };
        let Some(chunk) = next else {
            break;
        };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return (offset, Err(Stop::Source(e))),
        };
        let len = chunk.len() as u64;
        if let Err(e) = sink.write(chunk).await {
            return (offset, Err(Stop::Sink(e)));
        }
        offset += len;
        progress(offset, opened.total);
    }
    if let Some(total) = opened.total {
        if offset < total {
            let e = transient(format!(
                "the connection closed after {offset} of {total} bytes from {}",
                uri.redacted()
            ));
            return (offset, Err(Stop::Source(e)));
        }
    }
    (offset, Ok(()))
}

/// Copy everything `open(offset)` yields into `sink`.
pub async fn pump<O, Fut>(
    uri: &MediaUri,
    open: O,
    sink: &mut Sink,
    progress: &ProgressFn,
) -> Result<Transferred, StorageError>
where
    O: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Opened, StorageError>>,
{
    let mut offset = 0u64;
    let mut retries = 0u32;
    loop {
        let result = match open(offset).await {
            Ok(opened) => {
                let (reached, result) = drain(opened, offset, sink, progress, uri).await;
                offset = reached;
                match result {
                    Ok(()) => Ok(()),
                    Err(Stop::Source(e)) => Err(e),
                    Err(Stop::Sink(e)) => return Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                if retries > 0 {
                    tracing::warn!(source = %uri.redacted(), retries, bytes = offset, "transfer completed after retries");
                }
                return Ok(Transferred {
                    bytes: offset,
                    retries,
                });
            }
            Err(e) if e.kind == StorageErrorKind::Transient && retries < RETRIES => {
                retries += 1;
                let wait = RESUME_BACKOFF.delay(retries);
                tracing::warn!(source = %uri.redacted(), error = %e.message, at_byte = offset, retry = retries, "transfer interrupted; resuming");
                tokio::time::sleep(wait).await;
            }
            // Still transient: the worker retries the task later, elsewhere.
            Err(e) if e.kind == StorageErrorKind::Transient => {
                return Err(StorageError::new(
                    StorageErrorKind::Transient,
                    format!("{} (gave up after {retries} retries)", e.message),
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64 KiB tmpfs, unmounted when dropped (the tests run as root).
    struct SmallDisk(tempfile::TempDir);

    impl SmallDisk {
        fn mount() -> SmallDisk {
            let dir = tempfile::tempdir().unwrap();
            let status = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(
                status.success(),
                "cannot mount a tmpfs: the tests run as root"
            );
            SmallDisk(dir)
        }
    }

    impl Drop for SmallDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    #[tokio::test]
    async fn a_last_write_that_fills_the_disk_is_an_error_not_a_short_file() {
        let disk = SmallDisk::mount();
        let mut sink = Sink::file(disk.0.path().join("source.mp4")).await.unwrap();
        // tokio takes the whole chunk and writes it in the background.
        sink.write(Bytes::from(vec![7u8; 256 << 10])).await.unwrap();
        let e = sink.finish_file().await.unwrap_err();
        assert!(
            e.message.contains("No space left on device"),
            "{}",
            e.message
        );
    }

    /// A writer whose second write fails transiently, counting the writes.
    struct Flaky(std::sync::Arc<std::sync::atomic::AtomicU32>);

    #[async_trait::async_trait]
    impl Writer for Flaky {
        async fn write(&mut self, _chunk: Bytes) -> Result<(), StorageError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == 1 {
                return Err(transient("the store dropped the part".into()));
            }
            Ok(())
        }

        async fn finish(self: Box<Self>) -> Result<crate::Staged, StorageError> {
            unreachable!("the transfer fails")
        }

        async fn abort(self: Box<Self>) {}
    }

    #[tokio::test]
    async fn a_failed_write_ends_the_transfer_and_is_never_replayed() {
        let writes = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut sink = Sink::Writer(Box::new(Flaky(writes.clone())));
        let uri = MediaUri::parse("s3://b/k").unwrap();
        let opens = std::sync::atomic::AtomicU32::new(0);
        let open = |offset: u64| {
            opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let chunks: Vec<Result<Bytes, StorageError>> = (offset..3)
                    .map(|_| Ok(Bytes::from_static(b"abc")))
                    .collect();
                Ok(Opened {
                    total: None,
                    stream: futures::stream::iter(chunks).boxed(),
                })
            }
        };
        let progress: ProgressFn = std::sync::Arc::new(|_, _| {});
        let Err(e) = pump(&uri, open, &mut sink, &progress).await else {
            panic!("the write failed");
        };
        // Still transient, so the task is retried whole, with a new sink.
        assert_eq!(e.kind, StorageErrorKind::Transient);
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(opens.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
