//! Publishing a task's outputs: every file staged at its destination first
//! (with bounded parallelism, each upload resuming on its own), then made
//! visible under a lease just confirmed, manifests last, so no player sees
//! a playlist whose segments are not all there. Whatever fails, or a stop,
//! takes back everything this task made visible.

use crate::pipeline::{End, Pipeline};
use crate::task::RunningTask;
use futures::StreamExt;
use nommer_model::uri::MediaUri;
use nommer_storage::{Staged, Storage};
use std::path::PathBuf;
use std::sync::Arc;

/// One file to publish.
pub struct Upload {
    /// Which output it belongs to.
    pub output: usize,
    pub local: PathBuf,
    pub dest: MediaUri,
    /// Committed after every other file: 0 for media, 1 for a media
    /// playlist or VTT, 2 for the master playlist or MPD.
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

/// Publish `uploads`; per output, what it wrote. On failure nothing this
/// call made visible stays.
pub async fn publish(
    pipeline: &Pipeline,
    task: &Arc<RunningTask>,
    storage: &Storage,
    uploads: Vec<Upload>,
    outputs: usize,
) -> Result<Vec<Published>, End> {
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
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let staging = futures::stream::iter(uploads.into_iter().map(|upload| {
        let (done, progress) = (done.clone(), progress.clone());
        async move {
            let size = std::fs::metadata(&upload.local).map_or(0, |m| m.len());
            let quiet: nommer_storage::ProgressFn = Arc::new(|_, _| {});
            let staged = storage
                .stage_upload(&upload.local, &upload.dest, quiet)
                .await;
            let sent = done.fetch_add(size, std::sync::atomic::Ordering::Relaxed) + size;
            progress(sent, Some(total));
            (upload, size, staged)
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<_>>();
    let staged_all = match pipeline.stoppable(task, staging).await {
        Ok(all) => all,
        Err(stop) => return Err(End::Stopped(stop)),
    };
    let mut staged: Vec<(Upload, u64, Staged)> = Vec::new();
    let mut failed = None;
    for (upload, size, result) in staged_all {
        match result {
            Ok(s) => staged.push((upload, size, s)),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        for (_, _, s) in staged {
            s.abort().await;
        }
        return Err(e.into());
    }
    // Fencing: only a lease just confirmed makes anything visible.
    if let Err(end) = pipeline.confirm(task).await {
        for (_, _, s) in staged {
            s.abort().await;
        }
        return Err(end);
    }
    staged.sort_by_key(|(upload, _, _)| upload.rank);
    let mut published = vec![Published::default(); outputs];
    let mut committed: Vec<MediaUri> = Vec::new();
    let mut pending = staged.into_iter();
    let mut failure: Option<End> = None;
    for (upload, size, s) in pending.by_ref() {
        if let Some(stop) = task.stopped() {
            s.abort().await;
            failure = Some(End::Stopped(stop));
            break;
        }
        match s.commit().await {
            Ok(()) => {
                let entry = &mut published[upload.output];
                entry.uris.push(upload.dest.redacted());
                entry.bytes += size;
                committed.push(upload.dest);
            }
            Err(e) => {
                failure = Some(e.into());
                break;
            }
        }
    }
    let Some(failure) = failure else {
        return Ok(published);
    };
    for (_, _, s) in pending {
        s.abort().await;
    }
    take_back(task, storage, &committed).await;
    Err(failure)
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
