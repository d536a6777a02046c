//! Publishing a task's outputs, once every one passed its check: media
//! first, with bounded parallelism (each upload resuming on its own), then
//! media playlists and VTT tracks, then the master playlist and MPD, each
//! rank under a lease confirmed just before it. No player sees a playlist
//! whose segments are not all there, and a worker holds no more than
//! `upload_files_concurrency` files in flight, however long the ladder.
//! Whatever fails, or a stop, takes back everything this task made visible.

use crate::pipeline::{End, Pipeline};
use crate::task::RunningTask;
use futures::StreamExt;
use nommer_model::uri::MediaUri;
use nommer_storage::Storage;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One file to publish.
pub struct Upload {
    /// Which output it belongs to.
    pub output: usize,
    pub local: PathBuf,
    pub dest: MediaUri,
    /// Published after every file of a lower rank: 0 for media, 1 for a
    /// media playlist or VTT, 2 for the master playlist or MPD.
    pub rank: u8,
}

/// The rank of a file by its name: players start from the master playlist
/// or MPD, which must come last.
pub fn rank(name: &str) -> u8 {
    match name {
        nommer_media::outputs::HLS_MASTER | nommer_media::outputs::DASH_MANIFEST => 2,
        _ if name.ends_with(".m3u8") || name.ends_with(".vtt") => 1,
        _ => 0,
    }
}

/// What one output published.
#[derive(Debug, Default, Clone)]
pub struct Published {
    /// The URIs written, credentials redacted.
    pub uris: Vec<String>,
    pub bytes: u64,
}

/// Publish `uploads`; per output, what it wrote. On failure, nothing this
/// call made visible stays.
pub async fn publish(
    pipeline: &Pipeline,
    task: &Arc<RunningTask>,
    storage: &Storage,
    mut uploads: Vec<Upload>,
    outputs: usize,
) -> Result<Vec<Published>, End> {
    let committed: Mutex<Vec<(usize, MediaUri, u64)>> = Mutex::new(Vec::new());
    let result = publish_ranks(pipeline, task, storage, &mut uploads, &committed).await;
    let committed = committed.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Err(end) = result {
        let uris: Vec<MediaUri> = committed.into_iter().map(|(_, uri, _)| uri).collect();
        take_back(task, storage, &uris).await;
        return Err(end);
    }
    let mut published = vec![Published::default(); outputs];
    for (output, uri, bytes) in committed {
        published[output].uris.push(uri.redacted());
        published[output].bytes += bytes;
    }
    Ok(published)
}

async fn publish_ranks(
    pipeline: &Pipeline,
    task: &Arc<RunningTask>,
    storage: &Storage,
    uploads: &mut [Upload],
    committed: &Mutex<Vec<(usize, MediaUri, u64)>>,
) -> Result<(), End> {
    let concurrency = pipeline.config.upload_files_concurrency.max(1);
    let total: u64 = uploads
        .iter()
        .map(|u| std::fs::metadata(&u.local).map_or(0, |m| m.len()))
        .sum();
    let progress = pipeline.transfer_progress(
        task,
        "uploading",
        crate::runners::ENCODE_START + crate::runners::ENCODE_SPAN,
        100.0 - crate::runners::ENCODE_START - crate::runners::ENCODE_SPAN,
    );
    let rank_files = Uploader {
        storage,
        committed,
        progress,
        sent: std::sync::atomic::AtomicU64::new(0),
        total,
    };
    uploads.sort_by_key(|u| u.rank);
    for rank in 0..=2u8 {
        let batch: Vec<&Upload> = uploads.iter().filter(|u| u.rank == rank).collect();
        if batch.is_empty() {
            continue;
        }
        // Fencing: only a lease just confirmed makes anything visible.
        pipeline.confirm(task).await?;
        // Made up front (a future does nothing until polled): a closure in
        // the stream would not be general enough for the runner's Send bound.
        let pending: Vec<_> = batch.into_iter().map(|u| rank_files.one(u)).collect();
        let mut results = futures::stream::iter(pending).buffer_unordered(concurrency);
        loop {
            let next = match pipeline.stoppable(task, results.next()).await {
                Ok(next) => next,
                Err(stop) => return Err(End::Stopped(stop)),
            };
            match next {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Uploads one file at a time into place, keeping count.
struct Uploader<'a> {
    storage: &'a Storage,
    committed: &'a Mutex<Vec<(usize, MediaUri, u64)>>,
    progress: nommer_storage::ProgressFn,
    sent: std::sync::atomic::AtomicU64,
    total: u64,
}

impl Uploader<'_> {
    async fn one(&self, upload: &Upload) -> Result<(), nommer_storage::StorageError> {
        let size = std::fs::metadata(&upload.local).map_or(0, |m| m.len());
        let quiet: nommer_storage::ProgressFn = Arc::new(|_, _| {});
        let staged = self
            .storage
            .stage_upload(&upload.local, &upload.dest, quiet)
            .await?;
        staged.commit().await?;
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((upload.output, upload.dest.clone(), size));
        let done = self
            .sent
            .fetch_add(size, std::sync::atomic::Ordering::Relaxed)
            + size;
        (self.progress)(done, Some(self.total));
        Ok(())
    }
}

/// Remove what a task published, newest first (manifests before the
/// segments they name).
pub async fn take_back(task: &RunningTask, storage: &Storage, uris: &[MediaUri]) {
    for uri in uris.iter().rev() {
        if let Err(e) = storage.delete(uri).await {
            tracing::warn!(job_id = %task.job_id, task = task.task, dest = %uri, error = %e, "cannot remove a published file of a failed task");
        }
    }
    if !uris.is_empty() {
        tracing::info!(job_id = %task.job_id, task = task.task, files = uris.len(), "removed what the failed task had published");
    }
}
