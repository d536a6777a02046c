//! One job from lease to its last state: DOWNLOADING (set at lease) ->
//! ENCODING -> UPLOADING -> FINISHED, or ERROR / CANCELED / handed back.
//! Every report carries the lease token; a refused report means the lease is
//! lost and the job stops without writing anything more.

use crate::config::NommerdConfig;
use crate::job::{RunningJob, Stop};
use crate::nommers::{FfmpegRun, NomError, ENCODE_SPAN, ENCODE_START};
use crate::reporter::Reporter;
use nommer_client::{Client, ClientError};
use nommer_media::process::Confinement;
use nommer_media::sandbox::{Jail, Sandbox};
use nommer_model::api::{
    HeartbeatRequest, JobStateReport, LeaseGrant, LeaseReport, NodeReport, Progress, ReleaseRequest,
};
use nommer_model::options::{self, Nommer};
use nommer_model::uri::MediaUri;
use nommer_model::{FailureCode, JobState};
use nommer_storage::{ProgressFn, Staged, Storage, StorageError, StorageErrorKind, Transferred};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A job warning when a transfer had to be resumed, so the retries show.
fn retried(what: &str, done: Transferred) -> Vec<String> {
    if done.retries == 0 {
        return Vec::new();
    }
    vec![format!(
        "the {what} was interrupted and resumed {} time(s)",
        done.retries
    )]
}

/// How long a finished step waits for an unreachable feederd before the
/// worker gives the job up (its lease then expires and the job is retried).
const REPORT_PATIENCE: Duration = Duration::from_secs(600);

pub struct Pipeline {
    pub config: Arc<NommerdConfig>,
    pub client: Client,
    pub sandbox: Arc<Sandbox>,
    pub reporter: Reporter,
    pub storage: Storage,
    pub node: Arc<dyn Fn() -> NodeReport + Send + Sync>,
}

/// How a job ended on this worker.
enum End {
    Finished,
    /// ERROR, with the code the job's `error_code` shows.
    Error(&'static str, String),
    Stopped(Stop),
}

impl End {
    fn failed(code: FailureCode, details: impl Into<String>) -> End {
        End::Error(code.as_str(), details.into())
    }
}

impl From<NomError> for End {
    fn from(e: NomError) -> Self {
        match e {
            NomError::Failed(code, details) => End::failed(code, details),
            NomError::Stopped(stop) => End::Stopped(stop),
        }
    }
}

impl From<StorageError> for End {
    fn from(e: StorageError) -> Self {
        let code = match e.kind {
            StorageErrorKind::NotFound => nommer_model::ErrorCode::SourceNotFound.as_str(),
            StorageErrorKind::Denied => nommer_model::ErrorCode::UriNotAllowed.as_str(),
            StorageErrorKind::TooLarge => FailureCode::SourceTooLarge.as_str(),
            StorageErrorKind::Transient | StorageErrorKind::Failed => {
                FailureCode::StorageFailed.as_str()
            }
        };
        End::Error(code, e.message)
    }
}

impl Pipeline {
    pub async fn run(&self, grant: LeaseGrant, job: Arc<RunningJob>) {
        let mut scratch = Scratch {
            // A fresh nonce makes it unique per lease (a store that lost a
            // write can hand the same job and attempt out twice) and carries
            // nothing of the lease token, which tool output could show.
            path: self.config.work_dir.join(format!(
                "job-{}-{}-{:08x}",
                grant.job_id,
                grant.attempt,
                rand::random::<u32>()
            )),
            created: false,
        };
        let limit = match grant.max_runtime_s {
            Some(s) => self.config.max_job_runtime.min(Duration::from_secs(s)),
            None => self.config.max_job_runtime,
        };
        // Dropping the work on time-out kills its tools and abandons its transfers.
        let end = match tokio::time::timeout(limit, self.nom(&grant, &job, &mut scratch)).await {
            Ok(end) => end,
            Err(_) => End::failed(
                FailureCode::RuntimeExceeded,
                format!(
                    "the job ran past its limit of {} s on this worker (max_job_runtime, or the job's max_runtime_s) and was stopped",
                    limit.as_secs()
                ),
            ),
        };
        scratch.remove(&grant.job_id).await;
        match end {
            End::Finished => {}
            End::Error(code, details) => {
                tracing::warn!(job_id = %grant.job_id, error_code = code, details = %nommer_model::tail_chars(&details, 300), "job failed");
                let _ = self
                    .report_coded(&job, JobState::Error, Some(details), Vec::new(), Some(code))
                    .await;
            }
            End::Stopped(Stop::Canceled) => {
                tracing::info!(job_id = %grant.job_id, "job canceled");
                let _ = self
                    .report(
                        &job,
                        JobState::Canceled,
                        Some("canceled by request".into()),
                        Vec::new(),
                    )
                    .await;
            }
            End::Stopped(Stop::LeaseLost) => {
                tracing::warn!(job_id = %grant.job_id, "lease lost: another worker may hold this job now; its result here is discarded");
            }
            End::Stopped(Stop::Handback) => {
                let request = ReleaseRequest {
                    token: job.token.clone(),
                    reason: "worker shutting down".into(),
                };
                match self.client.release(&job.job_id, &request).await {
                    Ok(_) => tracing::info!(job_id = %job.job_id, "lease handed back"),
                    Err(e) => {
                        tracing::warn!(job_id = %job.job_id, error = %e, "cannot hand the lease back; it will expire")
                    }
                }
            }
        }
    }

    async fn nom(&self, grant: &LeaseGrant, job: &Arc<RunningJob>, scratch: &mut Scratch) -> End {
        let source = match MediaUri::parse(&grant.source_uri) {
            Ok(uri) => uri,
            Err(e) => return End::Error(e.code.as_str(), e.message),
        };
        let dest = match MediaUri::parse(&grant.dest_uri) {
            Ok(uri) => uri,
            Err(e) => return End::Error(e.code.as_str(), e.message),
        };
        let nommer = grant.job_options["nommer"].as_str().and_then(Nommer::parse);
        let Some(nommer) = nommer else {
            return End::Error(
                nommer_model::ErrorCode::UnknownNommer.as_str(),
                "unknown nommer".into(),
            );
        };
        // The same check feederd ran at submit, before anything runs here: a
        // job that fails it ends in ERROR with the check's code.
        let checked = match nommer {
            Nommer::Ffmpeg => match self.check_options(grant, &dest) {
                Ok(checked) => Some(checked),
                Err(e) => return End::Error(e.code.as_str(), e.message),
            },
            Nommer::Copy => None,
        };
        // With no file_roots of its own, the worker allows what feederd allowed.
        // ... and contacts only the addresses both its policy and feederd's allow.
        let storage = self
            .storage
            .with_lease_roots(&grant.file_roots, grant.files_off)
            .with_lease_policy(grant.net_policy);
        if nommer == Nommer::Copy && Storage::streams_to(&dest) {
            return self.copy(&storage, grant, job, &source, &dest).await;
        }
        if let Err(end) = scratch.create().await {
            return end;
        }
        let scratch = scratch.path.as_path();

        let input = scratch.join(match source.extension() {
            Some(ext) => format!("source.{ext}"),
            None => "source".into(),
        });
        let output = scratch.join(match dest.extension() {
            Some(ext) => format!("output.{ext}"),
            None => "output".into(),
        });

        tracing::info!(job_id = %grant.job_id, source = %source, "downloading");
        let download_progress = self.transfer_progress(job, "downloading", 0.0, ENCODE_START);
        let downloaded = match self
            .stoppable(job, storage.download(&source, &input, download_progress))
            .await
        {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return e.into(),
            Err(stop) => return End::Stopped(stop),
        };
        tracing::info!(job_id = %grant.job_id, bytes = downloaded.bytes, retries = downloaded.retries, "downloaded");
        // The tools run as the sandbox user: the directory and the source are theirs.
        if let Err(e) = self.sandbox.hand_over(scratch) {
            return End::failed(
                FailureCode::ToolFailed,
                format!("cannot hand the scratch directory to the sandbox user: {e}"),
            );
        }
        let confinement = Confinement {
            sandbox: self.sandbox.clone(),
            jail: Jail {
                scratch: scratch.to_path_buf(),
                inputs: Vec::new(),
            },
            max_runtime: None,
        };
        if let Err(end) = self
            .report(
                job,
                JobState::Encoding,
                None,
                retried("download", downloaded),
            )
            .await
        {
            return end;
        }

        let result_path = match checked {
            None => input.clone(),
            Some((passes, inferred)) => {
                // The duration only scales progress: ffprobe reads it beside
                // the first pass instead of before it.
                let duration_s = Arc::new(std::sync::OnceLock::new());
                let probe = {
                    let (ffprobe, input) = (self.config.ffprobe.clone(), input.clone());
                    let (duration_s, job_id) = (duration_s.clone(), grant.job_id.clone());
                    let confinement = confinement.clone();
                    AbortOnDrop(tokio::spawn(async move {
                        match nommer_media::probe::probe(&ffprobe, &input, Some(confinement)).await
                        {
                            Ok(probe) => {
                                if let Some(seconds) = probe.duration_seconds() {
                                    let _ = duration_s.set(seconds);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(job_id = %job_id, error = %e, "ffprobe cannot read the source; encoding without a duration")
                            }
                        }
                    }))
                };
                let run = FfmpegRun {
                    ffmpeg: &self.config.ffmpeg,
                    passes: &passes,
                    input: &input,
                    output: &output,
                    scratch,
                    inferred_format: inferred,
                    duration_s: &duration_s,
                    confinement: &confinement,
                    max_stall: self.config.max_tool_stall,
                };
                let ran = run.run(job).await;
                drop(probe);
                if let Err(e) = ran {
                    return e.into();
                }
                if let Err(e) = nommer_media::sandbox::plain_output(&output) {
                    return End::failed(FailureCode::ToolFailed, e.to_string());
                }
                output.clone()
            }
        };

        if let Err(end) = self
            .report(job, JobState::Uploading, None, Vec::new())
            .await
        {
            return end;
        }
        tracing::info!(job_id = %grant.job_id, dest = %dest, "uploading");
        let upload_progress = self.transfer_progress(
            job,
            "uploading",
            ENCODE_START + ENCODE_SPAN,
            100.0 - ENCODE_START - ENCODE_SPAN,
        );
        let staged = match self
            .stoppable(
                job,
                storage.stage_upload(&result_path, &dest, upload_progress),
            )
            .await
        {
            Ok(Ok(staged)) => staged,
            Ok(Err(e)) => return e.into(),
            Err(stop) => return End::Stopped(stop),
        };
        self.commit(job, staged).await
    }

    /// The job's passes through the option check, and the muxer its
    /// destination implies.
    fn check_options(
        &self,
        grant: &LeaseGrant,
        dest: &MediaUri,
    ) -> Result<(Vec<options::Pass>, Option<&'static str>), nommer_model::CodedError> {
        let mut passes = options::parse_passes(&grant.job_options["options"])?;
        options::modernize(&mut passes);
        let passes = options::check_passes(passes, &self.config.allowlist)?;
        let inferred = match passes.iter().all(|pass| pass.output_format().is_some()) {
            true => None,
            false => Some(nommer_model::submit::inferred_format(dest)?),
        };
        Ok((passes, inferred))
    }

    /// The `copy` nommer: the source streams straight to the destination
    /// during DOWNLOADING; ENCODING has nothing to do; UPLOADING is the commit.
    async fn copy(
        &self,
        storage: &Storage,
        grant: &LeaseGrant,
        job: &Arc<RunningJob>,
        source: &MediaUri,
        dest: &MediaUri,
    ) -> End {
        tracing::info!(job_id = %grant.job_id, source = %source, dest = %dest, "copying");
        let progress = self.transfer_progress(job, "copying", 0.0, 95.0);
        let (staged, copied) = match self
            .stoppable(job, storage.stage_copy(source, dest, progress))
            .await
        {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return e.into(),
            Err(stop) => return End::Stopped(stop),
        };
        tracing::info!(job_id = %grant.job_id, bytes = copied.bytes, retries = copied.retries, "copied");
        for state in [JobState::Encoding, JobState::Uploading] {
            let warnings = if state == JobState::Encoding {
                retried("copy", copied)
            } else {
                Vec::new()
            };
            if let Err(end) = self.report(job, state, None, warnings).await {
                staged.abort().await;
                return end;
            }
        }
        self.commit(job, staged).await
    }

    /// Fencing: commit only under a lease just renewed, so a worker that lost
    /// its lease never overwrites a result another worker now owns.
    async fn commit(&self, job: &Arc<RunningJob>, staged: Staged) -> End {
        if let Err(end) = self.confirm_lease(job).await {
            staged.abort().await;
            return end;
        }
        if let Err(e) = staged.commit().await {
            return e.into();
        }
        match self.report(job, JobState::Finished, None, Vec::new()).await {
            Ok(()) => {
                tracing::info!(job_id = %job.job_id, "job finished");
                End::Finished
            }
            Err(end) => end,
        }
    }

    /// Run `work` unless the job is told to stop first.
    async fn stoppable<T>(
        &self,
        job: &Arc<RunningJob>,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Stop> {
        let mut stop = job.watch_stop();
        tokio::select! {
            result = work => Ok(result),
            _ = stop.wait_for(|s| s.is_some()) => Err(job.stopped().unwrap_or(Stop::LeaseLost)),
        }
    }

    fn transfer_progress(
        &self,
        job: &Arc<RunningJob>,
        phase: &'static str,
        start: f64,
        span: f64,
    ) -> ProgressFn {
        let job = job.clone();
        Arc::new(move |done, total| {
            let fraction = total
                .filter(|t| *t > 0)
                .map(|t| done as f64 / t as f64)
                .unwrap_or(0.0);
            job.set_progress(Progress {
                phase: phase.into(),
                percent: start + span * fraction,
                ..Default::default()
            });
        })
    }

    async fn confirm_lease(&self, job: &Arc<RunningJob>) -> Result<(), End> {
        // Every accepted report renews the lease: one sent moments ago (the
        // UPLOADING report before a streamed copy's commit) is confirmation enough.
        if job.lease_left() >= job.ttl / 2 {
            return Ok(());
        }
        let sent_at = std::time::Instant::now();
        let request = HeartbeatRequest {
            node: (self.node)(),
            leases: vec![LeaseReport {
                job_id: job.job_id.clone(),
                token: job.token.clone(),
                progress: job.progress(),
            }],
        };
        let answer = self
            .retrying(job, || self.client.heartbeat(&request))
            .await?;
        match answer.leases.first() {
            Some(status) if status.valid && status.remaining_ms > 2_000 => {
                job.renewed(sent_at);
                Ok(())
            }
            _ => Err(End::Stopped(Stop::LeaseLost)),
        }
    }

    /// Report a state change under the lease token.
    async fn report(
        &self,
        job: &Arc<RunningJob>,
        state: JobState,
        details: Option<String>,
        warnings: Vec<String>,
    ) -> Result<(), End> {
        self.report_coded(job, state, details, warnings, None).await
    }

    /// Report a state change, with the error code of an ERROR.
    async fn report_coded(
        &self,
        job: &Arc<RunningJob>,
        state: JobState,
        details: Option<String>,
        warnings: Vec<String>,
        error_code: Option<&str>,
    ) -> Result<(), End> {
        if let Some(stop) = job.stopped() {
            if stop == Stop::LeaseLost || !state.is_terminal() {
                return Err(End::Stopped(stop));
            }
        }
        let report = JobStateReport {
            job_id: job.job_id.clone(),
            token: job.token.clone(),
            state,
            details,
            warnings,
            error_code: error_code.map(str::to_string),
        };
        self.retrying(job, || async {
            let sent_at = std::time::Instant::now();
            let answer = self.reporter.report(report.clone()).await;
            if answer.is_ok() {
                job.renewed(sent_at);
            }
            answer
        })
        .await
        .map(|_| ())
    }

    /// Retry transient failures (feederd restarting, store down) for as long
    /// as `REPORT_PATIENCE`: the lease stays ours until a feederd says
    /// otherwise, and a restarted feederd grants a grace period to renew it.
    /// A refused lease stops the job.
    async fn retrying<T, F, Fut>(&self, job: &Arc<RunningJob>, call: F) -> Result<T, End>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut wait = Duration::from_millis(200);
        let give_up = tokio::time::Instant::now() + REPORT_PATIENCE;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e)
                    if e.code() == Some("lease_lost")
                        || e.code() == Some("job_finished")
                        || e.code() == Some("invalid_transition") =>
                {
                    tracing::warn!(job_id = %job.job_id, error = %e, "feederd refused a write for this lease");
                    job.stop(Stop::LeaseLost);
                    return Err(End::Stopped(Stop::LeaseLost));
                }
                Err(e) if e.is_retryable() && tokio::time::Instant::now() < give_up => {
                    tracing::warn!(job_id = %job.job_id, error = %e, "feederd unavailable; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(job_id = %job.job_id, error = %e, "cannot report to feederd");
                    return Err(End::Stopped(Stop::LeaseLost));
                }
            }
        }
    }
}

/// A job's scratch directory, made only when a job needs one (a streamed
/// copy does not) and removed when the job ends.
struct Scratch {
    path: PathBuf,
    created: bool,
}

impl Scratch {
    async fn create(&mut self) -> Result<(), End> {
        // Private to the worker and its tools: a job's media is nobody else's.
        let mut builder = tokio::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(&self.path).await.map_err(|e| {
            End::failed(
                FailureCode::StorageFailed,
                format!(
                    "cannot create the scratch directory {}: {e}",
                    self.path.display()
                ),
            )
        })?;
        self.created = true;
        Ok(())
    }

    async fn remove(self, job_id: &str) {
        if !self.created {
            return;
        }
        if let Err(e) = tokio::fs::remove_dir_all(&self.path).await {
            tracing::warn!(job_id = %job_id, error = %e, "cannot remove the scratch directory");
        }
    }
}

/// A task that ends when its handle is dropped (a job that stops early leaves
/// nothing running behind it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
