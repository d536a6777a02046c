//! One task from lease to its last state: DOWNLOADING (set at lease) ->
//! ENCODING -> UPLOADING -> FINISHED, or ERROR / CANCELED / handed back.
//! Its kind's runner does the work with the steps here; every report names
//! job, task and lease token, and a refused report means the lease is lost
//! and the task stops without writing anything more.

use crate::config::NommerdConfig;
use crate::reporter::Reporter;
use crate::runners::{NomError, TaskRun, ENCODE_SPAN, ENCODE_START};
use crate::task::{RunningTask, Stop};
use nommer_client::{Client, ClientError};
use nommer_media::process::Confinement;
use nommer_media::sandbox::{Jail, Sandbox};
use nommer_model::api::{
    HeartbeatRequest, JobStateReport, LeaseGrant, LeaseReport, NodeReport, Progress, ReleaseRequest,
};
use nommer_model::options;
use nommer_model::uri::MediaUri;
use nommer_model::{FailureCode, JobState};
use nommer_storage::{ProgressFn, Staged, Storage, StorageError, StorageErrorKind, Transferred};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A job warning when a transfer had to be resumed, so the retries show.
pub fn retried(what: &str, done: Transferred) -> Vec<String> {
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
    /// Chunked jobs' sources, fetched once for all their tasks here.
    pub inputs: Arc<crate::inputs::Inputs>,
}

/// How a task ended on this worker.
pub enum End {
    Finished,
    /// ERROR, with the code the job's `error_code` shows.
    Error(&'static str, String),
    /// This attempt failed for a reason outside the job (the scratch disk
    /// filled, a transfer kept failing): retried after the backoff, ERROR
    /// with this code once no attempts are left.
    Retryable(&'static str, String),
    /// ERROR, with what the task made for the job to show (each output's
    /// state and quality report).
    ErrorWith(&'static str, String, serde_json::Value),
    Stopped(Stop),
}

impl End {
    pub fn failed(code: FailureCode, details: impl Into<String>) -> End {
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
            StorageErrorKind::Transient => {
                return End::Retryable(FailureCode::StorageFailed.as_str(), e.message)
            }
            StorageErrorKind::Failed => FailureCode::StorageFailed.as_str(),
        };
        End::Error(code, e.message)
    }
}

impl Pipeline {
    pub async fn run(&self, grant: LeaseGrant, task: Arc<RunningTask>) {
        let mut scratch = Scratch {
            // A fresh nonce makes it unique per lease (a store that lost a
            // write can hand the same task and attempt out twice) and carries
            // nothing of the lease token, which tool output could show. A
            // job's later tasks say which they are (`-tN`).
            path: self.config.work_dir.join(format!(
                "job-{}{}-{}-{:08x}",
                grant.job_id,
                match grant.task {
                    0 => String::new(),
                    n => format!("-t{n}"),
                },
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
        let end = match tokio::time::timeout(limit, self.nom(&grant, &task, &mut scratch)).await {
            Ok(end) => end,
            Err(_) => End::failed(
                FailureCode::RuntimeExceeded,
                format!(
                    "the job ran past its limit of {} s on this worker (max_job_runtime, or the job's max_runtime_s) and was stopped",
                    limit.as_secs()
                ),
            ),
        };
        // Judged before the scratch goes: a disk this task filled is still full.
        let end = match end {
            End::Error(code, details) if crate::space::ran_out(&self.config.work_dir, &details) => {
                End::Retryable(code, format!("the scratch disk filled: {details}"))
            }
            end => end,
        };
        scratch.remove(&grant.job_id).await;
        self.end(&task, end).await;
    }

    /// Tell feederd how the task ended.
    pub async fn end(&self, task: &Arc<RunningTask>, end: End) {
        let (job_id, number) = (&task.job_id, task.task);
        match end {
            End::Finished => {}
            End::Error(code, details) => {
                tracing::warn!(job_id = %job_id, task = number, error_code = code, details = %nommer_model::tail_chars(&details, 300), "task failed");
                let _ = self
                    .report_coded(task, JobState::Error, Some(details), Vec::new(), Some(code))
                    .await;
            }
            End::ErrorWith(code, details, result) => {
                tracing::warn!(job_id = %job_id, task = number, error_code = code, details = %nommer_model::tail_chars(&details, 300), "task failed");
                let _ = self
                    .send(
                        task,
                        JobState::Error,
                        Some(details),
                        Vec::new(),
                        Some(code),
                        (Some(result), Vec::new()),
                    )
                    .await;
            }
            End::Stopped(Stop::Canceled) => {
                tracing::info!(job_id = %job_id, task = number, "task canceled");
                let _ = self
                    .report(
                        task,
                        JobState::Canceled,
                        Some("canceled by request".into()),
                        Vec::new(),
                    )
                    .await;
            }
            End::Stopped(Stop::LeaseLost) => {
                tracing::warn!(job_id = %job_id, task = number, "lease lost: another worker may hold this task now; its result here is discarded");
            }
            End::Retryable(code, details) => {
                tracing::warn!(job_id = %job_id, task = number, error_code = code, details = %nommer_model::tail_chars(&details, 300), "task failed for a reason outside the job; handing it back to be retried");
                let reason = format!(
                    "on node {}, {}",
                    self.config.node_id,
                    nommer_model::tail_chars(&details, 300)
                );
                self.release(task, reason, Some(code)).await;
            }
            End::Stopped(Stop::Handback) => {
                self.release(task, "worker shutting down".into(), None)
                    .await;
            }
        }
    }

    async fn release(&self, task: &Arc<RunningTask>, reason: String, failed: Option<&str>) {
        let (job_id, number) = (&task.job_id, task.task);
        let request = ReleaseRequest {
            task: number,
            token: task.token.clone(),
            reason,
            failed: failed.map(str::to_string),
        };
        match self.client.release(job_id, &request).await {
            Ok(_) => tracing::info!(job_id = %job_id, task = number, "lease handed back"),
            Err(e) => {
                tracing::warn!(job_id = %job_id, task = number, error = %e, "cannot hand the lease back; it will expire")
            }
        }
    }

    async fn nom(&self, grant: &LeaseGrant, task: &Arc<RunningTask>, scratch: &mut Scratch) -> End {
        let source = match MediaUri::parse(&grant.source_uri) {
            Ok(uri) => uri,
            Err(e) => return End::Error(e.code.as_str(), e.message),
        };
        // The same check feederd ran at submit, before anything runs here: a
        // task that fails it ends in ERROR with the check's code.
        let outputs = match self.check_outputs(grant) {
            Ok(outputs) => outputs,
            Err(e) => return End::Error(e.code.as_str(), e.message),
        };
        let dest_uri = match (&grant.spec.dest_suffix, outputs.first()) {
            (_, Some(first)) => match first.is_directory() {
                true => format!("{}probe", first.resolve(&grant.dest_uri)),
                false => first.resolve(&grant.dest_uri),
            },
            (Some(suffix), None) => format!("{}{suffix}", grant.dest_uri),
            (None, None) => grant.dest_uri.clone(),
        };
        let dest = match MediaUri::parse(&dest_uri) {
            Ok(uri) => uri,
            Err(e) => return End::Error(e.code.as_str(), e.message),
        };
        let passes = match outputs.is_empty() {
            true => match self.check_options(grant, &dest) {
                Ok(passes) => passes,
                Err(e) => return End::Error(e.code.as_str(), e.message),
            },
            false => Vec::new(),
        };
        #[cfg(feature = "test-nommers")]
        if let Some(message) = &grant.spec.test_panic {
            panic!("{message}");
        }
        let Some(runner) = crate::runners::runner(task.kind) else {
            return End::failed(
                FailureCode::ToolFailed,
                format!("this worker has no runner for {} tasks", task.kind),
            );
        };
        // With no file_roots of its own, the worker allows what feederd allowed.
        // ... and contacts only the addresses both its policy and feederd's allow.
        let storage = self
            .storage
            .with_lease_roots(&grant.file_roots, grant.files_off)
            .with_lease_policy(grant.net_policy);
        let run = TaskRun {
            pipeline: self,
            grant,
            task,
            storage: &storage,
            source: &source,
            dest: &dest,
            passes: &passes,
            outputs: &outputs,
            scratch,
        };
        runner.run(run).await
    }

    /// Into the scratch directory: the source downloaded and handed to the
    /// sandbox user, and ENCODING reported. The source's path.
    pub async fn download(&self, run: &mut TaskRun<'_>) -> Result<PathBuf, End> {
        run.scratch.create().await?;
        let (task, dir) = (run.task, run.scratch.path.clone());
        tracing::info!(job_id = %task.job_id, task = task.task, source = %run.source, "downloading");
        let (input, downloaded) = self.fetch_source(run, &dir).await?;
        // The tools run as the sandbox user: the directory and the source are theirs.
        self.hand_over(&run.scratch.path, "scratch")?;
        self.report(
            task,
            JobState::Encoding,
            None,
            retried("download", downloaded),
        )
        .await?;
        Ok(input)
    }

    /// A chunked job's source, held for this task: fetched into the job's
    /// input directory by the first of its tasks here, and handed to the
    /// sandbox user, whom the tools read it as.
    pub async fn held_input(
        &self,
        run: &TaskRun<'_>,
    ) -> Result<(crate::inputs::Held, PathBuf), End> {
        let task = run.task;
        let held = self
            .inputs
            .hold(&self.config.work_dir, &task.job_id, |dir| async move {
                tracing::info!(job_id = %task.job_id, task = task.task, source = %run.source, "downloading the job's source for its tasks here");
                let (input, _) = self.fetch_source(run, &dir).await?;
                self.hand_over(&dir, "input")?;
                Ok(input)
            });
        // A task waiting on another's fetch still stops when told to.
        match self.stoppable(task, held).await {
            Ok(held) => held,
            Err(stop) => Err(End::Stopped(stop)),
        }
    }

    /// The job's source downloaded into `dir` as `source.EXT`, with
    /// progress, unless the task is told to stop first.
    async fn fetch_source(
        &self,
        run: &TaskRun<'_>,
        dir: &Path,
    ) -> Result<(PathBuf, Transferred), End> {
        let task = run.task;
        let input = dir.join(match run.source.extension() {
            Some(ext) => format!("source.{ext}"),
            None => "source".into(),
        });
        let progress = self.transfer_progress(task, "downloading", 0.0, ENCODE_START);
        let done = match self
            .stoppable(task, run.storage.download(run.source, &input, progress))
            .await
        {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(e.into()),
            Err(stop) => return Err(End::Stopped(stop)),
        };
        tracing::info!(job_id = %task.job_id, task = task.task, bytes = done.bytes, retries = done.retries, "downloaded");
        Ok((input, done))
    }

    /// Give `dir` and what it holds to the sandbox user the tools run as;
    /// `what` names the directory in the error.
    pub fn hand_over(&self, dir: &Path, what: &str) -> Result<(), End> {
        self.sandbox.hand_over(dir).map_err(|e| {
            End::failed(
                FailureCode::ToolFailed,
                format!("cannot hand the {what} directory to the sandbox user: {e}"),
            )
        })
    }

    /// The sandbox and jail a task's tools run in.
    pub fn confinement(&self, scratch: &Path) -> Confinement {
        self.confinement_reading(scratch, &[])
    }

    /// The sandbox and jail, with read-only `inputs` beside the scratch
    /// directory.
    pub fn confinement_reading(&self, scratch: &Path, inputs: &[PathBuf]) -> Confinement {
        Confinement {
            sandbox: self.sandbox.clone(),
            jail: Jail {
                scratch: scratch.to_path_buf(),
                inputs: inputs.to_vec(),
            },
            max_runtime: None,
        }
    }

    /// UPLOADING reported, `result` staged at the task's destination and
    /// committed under the lease.
    pub async fn upload(&self, run: &TaskRun<'_>, result: &Path) -> End {
        self.upload_to(run, result, run.dest, None).await
    }

    /// UPLOADING reported, the file `path` staged at `dest` and committed
    /// under the lease; FINISHED carries `result`.
    pub async fn upload_to(
        &self,
        run: &TaskRun<'_>,
        path: &Path,
        dest: &MediaUri,
        result: Option<serde_json::Value>,
    ) -> End {
        let task = run.task;
        if let Err(end) = self
            .report(task, JobState::Uploading, None, Vec::new())
            .await
        {
            return end;
        }
        tracing::info!(job_id = %task.job_id, task = task.task, dest = %dest, "uploading");
        let progress = self.transfer_progress(
            task,
            "uploading",
            ENCODE_START + ENCODE_SPAN,
            100.0 - ENCODE_START - ENCODE_SPAN,
        );
        let staged = match self
            .stoppable(task, run.storage.stage_upload(path, dest, progress))
            .await
        {
            Ok(Ok(staged)) => staged,
            Ok(Err(e)) => return e.into(),
            Err(stop) => return End::Stopped(stop),
        };
        let bytes = tokio::fs::metadata(path).await.map_or(0, |m| m.len());
        tracing::info!(job_id = %task.job_id, task = task.task, bytes, "uploaded");
        self.commit_with(task, staged, result).await
    }

    /// A job's `outputs` through the same check as at submit (none for a
    /// job without them).
    fn check_outputs(
        &self,
        grant: &LeaseGrant,
    ) -> Result<Vec<nommer_model::outputs::Output>, nommer_model::CodedError> {
        let Some(outputs) = grant.job_options.get("outputs") else {
            return Ok(Vec::new());
        };
        let prefix = Some(grant.dest_uri.as_str()).filter(|d| d.ends_with('/'));
        nommer_model::outputs::parse_outputs(outputs, prefix, &self.config.allowlist)
    }

    /// The job's passes through its nommer's check.
    fn check_options(
        &self,
        grant: &LeaseGrant,
        dest: &MediaUri,
    ) -> Result<Vec<options::Pass>, nommer_model::CodedError> {
        let name = grant.job_options["nommer"].as_str().unwrap_or_default();
        let nommer = nommer_model::nommers::find(name).ok_or_else(|| {
            nommer_model::CodedError::new(
                nommer_model::ErrorCode::UnknownNommer,
                format!("unknown nommer \"{name}\""),
            )
        })?;
        let checked = nommer.check(&grant.job_options["options"], dest, &self.config.allowlist)?;
        Ok(checked.passes)
    }

    /// Fencing: commit only under a lease just renewed, so a worker that lost
    /// its lease never overwrites a result another worker now owns.
    pub async fn commit(&self, job: &Arc<RunningTask>, staged: Staged) -> End {
        self.commit_with(job, staged, None).await
    }

    /// [`commit`](Self::commit), with what the task made for its FINISHED.
    pub async fn commit_with(
        &self,
        job: &Arc<RunningTask>,
        staged: Staged,
        result: Option<serde_json::Value>,
    ) -> End {
        if let Err(end) = self.confirm_lease(job).await {
            staged.abort().await;
            return end;
        }
        if let Err(e) = staged.commit().await {
            return e.into();
        }
        self.finish(job, JobState::Uploading, result, Vec::new(), Vec::new())
            .await
    }

    /// From `at`, the states left to FINISHED reported (a task that writes
    /// nothing at its destination still passes through each), FINISHED with
    /// what the task made and, for a plan, the tasks it adds.
    pub async fn finish(
        &self,
        job: &Arc<RunningTask>,
        at: JobState,
        result: Option<serde_json::Value>,
        tasks: Vec<nommer_model::tasks::TaskPlan>,
        warnings: Vec<String>,
    ) -> End {
        let steps: &[JobState] = match at {
            JobState::Downloading => &[JobState::Encoding, JobState::Uploading],
            JobState::Encoding => &[JobState::Uploading],
            _ => &[],
        };
        for &step in steps {
            if let Err(end) = self.report(job, step, None, Vec::new()).await {
                return end;
            }
        }
        let sent = self
            .send(
                job,
                JobState::Finished,
                None,
                warnings,
                None,
                (result, tasks),
            )
            .await;
        match sent {
            Ok(()) => {
                tracing::info!(job_id = %job.job_id, task = job.task, kind = %job.kind, "task finished");
                End::Finished
            }
            Err(end) => end,
        }
    }

    /// Run `work` unless the job is told to stop first.
    pub async fn stoppable<T>(
        &self,
        job: &Arc<RunningTask>,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Stop> {
        let mut stop = job.watch_stop();
        tokio::select! {
            result = work => Ok(result),
            _ = stop.wait_for(|s| s.is_some()) => Err(job.stopped().unwrap_or(Stop::LeaseLost)),
        }
    }

    pub fn transfer_progress(
        &self,
        job: &Arc<RunningTask>,
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

    /// Confirm the lease before making anything visible (fencing).
    pub async fn confirm(&self, job: &Arc<RunningTask>) -> Result<(), End> {
        self.confirm_lease(job).await
    }

    async fn confirm_lease(&self, job: &Arc<RunningTask>) -> Result<(), End> {
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
                task: job.task,
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
    pub async fn report(
        &self,
        job: &Arc<RunningTask>,
        state: JobState,
        details: Option<String>,
        warnings: Vec<String>,
    ) -> Result<(), End> {
        self.report_coded(job, state, details, warnings, None).await
    }

    /// Report a state change, with the error code of an ERROR.
    async fn report_coded(
        &self,
        job: &Arc<RunningTask>,
        state: JobState,
        details: Option<String>,
        warnings: Vec<String>,
        error_code: Option<&str>,
    ) -> Result<(), End> {
        self.send(
            job,
            state,
            details,
            warnings,
            error_code,
            (None, Vec::new()),
        )
        .await
    }

    pub(crate) async fn send(
        &self,
        job: &Arc<RunningTask>,
        state: JobState,
        details: Option<String>,
        warnings: Vec<String>,
        error_code: Option<&str>,
        (result, tasks): (
            Option<serde_json::Value>,
            Vec<nommer_model::tasks::TaskPlan>,
        ),
    ) -> Result<(), End> {
        if let Some(stop) = job.stopped() {
            if stop == Stop::LeaseLost || !state.is_terminal() {
                return Err(End::Stopped(stop));
            }
        }
        let report = JobStateReport {
            job_id: job.job_id.clone(),
            task: job.task,
            token: job.token.clone(),
            state,
            details,
            warnings,
            error_code: error_code.map(str::to_string),
            result,
            tasks,
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
    async fn retrying<T, F, Fut>(&self, job: &Arc<RunningTask>, call: F) -> Result<T, End>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let backoff =
            nommer_model::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut retries = 0;
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
                    retries += 1;
                    tokio::time::sleep(backoff.delay(retries)).await;
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
pub struct Scratch {
    pub path: PathBuf,
    created: bool,
}

impl Scratch {
    pub async fn create(&mut self) -> Result<(), End> {
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

    async fn remove(mut self, job_id: &str) {
        if !self.created {
            return;
        }
        self.created = false;
        if let Err(e) = tokio::fs::remove_dir_all(&self.path).await {
            tracing::warn!(job_id = %job_id, error = %e, "cannot remove the scratch directory");
        }
    }
}

/// A task that panicked never reaches [`Scratch::remove`]: its media goes
/// as the stack unwinds.
impl Drop for Scratch {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A task that ends when its handle is dropped (a job that stops early leaves
/// nothing running behind it).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
