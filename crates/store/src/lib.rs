//! Where feederd keeps jobs, leases, events and nodes.
//!
//! [`Store`] is the one interface; [`sql::SqlStore`] implements it on SQLite
//! (embedded) and PostgreSQL (clustered). Every
//! state change goes through [`JobState::can_transition`] and appends an event
//! in the same transaction (the outbox the notifier delivers from).

pub mod conformance;
pub mod leader;
mod records;
pub mod sealer;
pub mod sql;

use async_trait::async_trait;
use nommer_model::api::{LeaseReport, LeaseStatus, NodeReport};
use nommer_model::{ErrorCode, JobState};
use std::sync::Arc;
use tokio::sync::Notify;

pub use records::*;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("no such job")]
    NotFound,
    #[error("the lease on this job is no longer held by this worker")]
    LeaseLost,
    #[error("the job is already {0}")]
    Terminal(JobState),
    #[error("cannot change a {from} job to {to}")]
    InvalidTransition { from: JobState, to: JobState },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Other(String),
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound => ErrorCode::NotFound,
            StoreError::LeaseLost => ErrorCode::LeaseLost,
            StoreError::Terminal(_) => ErrorCode::JobFinished,
            StoreError::InvalidTransition { .. } => ErrorCode::InvalidTransition,
            StoreError::Unavailable(_) => ErrorCode::StoreUnavailable,
            StoreError::Other(_) => ErrorCode::Internal,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            return StoreError::Unavailable(e.to_string());
        }
        StoreError::Other(e.to_string())
    }
}

/// Errors a client may retry: the database is down, restarting, overloaded,
/// or a statement ran out of time.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception; 57P0x: shutdown; 53: resources;
            // 40001/40P01: serialization and deadlock; 57014: statement timeout;
            // 55P03: lock timeout; SQLite 5/6: busy and locked.
            code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("53")
                || matches!(&*code, "40001" | "40P01" | "57014" | "55P03" | "5" | "6")
        }
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Lease and retry timing, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    pub ttl_ms: i64,
    /// The first retry waits this long; each further one twice as long.
    pub retry_backoff_ms: i64,
    pub retry_backoff_max_ms: i64,
}

impl LeasePolicy {
    pub fn backoff_ms(&self, attempts: u32) -> i64 {
        let ms = |ms: i64| std::time::Duration::from_millis(ms.max(0) as u64);
        nommer_model::backoff::Backoff::new(
            ms(self.retry_backoff_ms),
            ms(self.retry_backoff_max_ms),
        )
        .delay_ms(attempts)
    }
}

/// Which jobs [`Store::list_jobs`] returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobQuery<'a> {
    pub state: Option<JobState>,
    /// Only jobs submitted by the token of this name.
    pub submitted_by: Option<&'a str>,
    pub limit: u32,
    /// The id of the last job of the previous page.
    pub before: Option<&'a str>,
}

/// What became of one webhook delivery attempt.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Delivered,
    Retry { next_attempt_at: i64 },
    Failed,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn insert_job(&self, job: &NewJob) -> StoreResult<JobRecord>;
    /// Insert a job unless `key` was used within its time to live: then the
    /// first job, if the body was the same.
    async fn insert_job_once(&self, job: &NewJob, key: &IdempotencyKey) -> StoreResult<Inserted>;
    /// What a retry of the job takes from it: its URIs and its planned tasks.
    async fn resubmission(&self, id: &str) -> StoreResult<Option<Resubmission>>;
    /// Events of every job (or one) after `after`, oldest first.
    async fn events_after(
        &self,
        after: i64,
        job: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>>;
    /// Up to `limit` jobs that finished since `since`, newest first, with
    /// their events and task results.
    async fn finished_since(&self, since: i64, limit: u32) -> StoreResult<Vec<FinishedJob>>;
    /// The newest event's id (0 when there is none).
    async fn last_event_seq(&self) -> StoreResult<i64>;
    /// Tasks leased now, by job and task (up to `limit`).
    async fn running_tasks(&self, limit: u32) -> StoreResult<Vec<TaskRecord>>;
    /// Jobs with a task leased, newest first (of one owner, when given).
    async fn running_jobs(&self, owner: Option<&str>, limit: u32) -> StoreResult<Vec<JobRecord>>;
    async fn get_job(&self, id: &str) -> StoreResult<Option<JobRecord>>;
    /// Newest first, a page at a time.
    async fn list_jobs(&self, query: &JobQuery<'_>) -> StoreResult<Vec<JobRecord>>;
    async fn job_events(&self, id: &str) -> StoreResult<Vec<EventRecord>>;
    /// How many jobs are in each state (states with none are left out): an
    /// indexed count of unfinished jobs, and running totals of finished ones.
    async fn count_jobs(&self) -> StoreResult<Vec<(JobState, u64)>>;
    /// Tasks waiting for a worker and tasks leased, from the index.
    async fn count_tasks(&self) -> StoreResult<TaskCounts>;
    /// A job's tasks in order; empty when there is no such job.
    async fn job_tasks(&self, id: &str) -> StoreResult<Vec<TaskRecord>>;

    /// Lease up to `max` claimable tasks to a node; each goes PENDING ->
    /// DOWNLOADING, and so does its job the first time.
    async fn claim(&self, node: &NodeReport, max: u32, now: i64) -> StoreResult<Vec<Claimed>>;
    /// Renew the node's leases and record their progress.
    async fn heartbeat(
        &self,
        node: &NodeReport,
        leases: &[LeaseReport],
        now: i64,
    ) -> StoreResult<Vec<LeaseStatus>>;
    /// State changes by lease holders, each fenced by its token, applied in
    /// order in one transaction. Each gets its own answer: a refused report
    /// (lease lost, not allowed) fails alone; an Err fails them all.
    async fn report_states(
        &self,
        reports: &[HolderReport<'_>],
        now: i64,
    ) -> StoreResult<Vec<StoreResult<TaskChange>>>;

    /// One state change by the lease holder, fenced by job, task and token.
    #[allow(clippy::too_many_arguments)]
    async fn report_state(
        &self,
        id: &str,
        task: u32,
        token: &str,
        to: JobState,
        details: Option<&str>,
        warnings: &[String],
        now: i64,
    ) -> StoreResult<TaskChange> {
        let report = HolderReport {
            job_id: id,
            task,
            token,
            to,
            details,
            warnings,
            error_code: None,
            result: None,
            adds: &[],
        };
        let mut results = self.report_states(&[report], now).await?;
        results.pop().unwrap_or(Err(StoreError::NotFound))
    }
    /// The lease holder hands the task back unfinished. A hand-back
    /// (`failed` None) does not count as an attempt; a node's failure
    /// (`failed`: the job's error code should no attempts be left) counts,
    /// and the task is retried after the backoff.
    async fn release(
        &self,
        id: &str,
        task: u32,
        token: &str,
        reason: &str,
        failed: Option<&str>,
        now: i64,
    ) -> StoreResult<TaskChange>;
    /// Cancel: PENDING tasks end at once; leased ones are flagged for their
    /// workers. The job is CANCELED once every task is.
    async fn cancel(&self, id: &str, now: i64) -> StoreResult<JobRecord>;

    /// Requeue (or fail, or cancel) tasks whose lease expired, in bounded
    /// batches. Returns each task's change.
    async fn reap_expired(&self, now: i64) -> StoreResult<Vec<TaskChange>>;
    /// PENDING jobs untouched for `threshold_ms` become ABANDONED (in bounded batches).
    async fn abandon_stale(&self, now: i64, threshold_ms: i64) -> StoreResult<Vec<String>>;

    /// The next undelivered event of each job, if due.
    async fn due_deliveries(&self, now: i64, limit: u32) -> StoreResult<Vec<EventRecord>>;
    /// Put a pending delivery off until `until` without counting an attempt
    /// (its receiving host is busy).
    async fn postpone_delivery(&self, seq: i64, until: i64) -> StoreResult<()>;
    async fn record_delivery(
        &self,
        seq: i64,
        attempt: &AttemptRecord,
        outcome: DeliveryOutcome,
    ) -> StoreResult<()>;
    async fn deliveries(&self, job_id: &str)
        -> StoreResult<Vec<(EventRecord, Vec<AttemptRecord>)>>;

    /// Deliver one event of the job again (same `webhook-id`), whatever
    /// became of it before; whether the job has that event with a webhook.
    async fn redeliver(&self, job_id: &str, seq: i64, now: i64) -> StoreResult<bool>;

    async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>>;

    /// Write each queue's limit from config (a queue's pause stays).
    async fn sync_queues(&self, queues: &[(String, Option<u32>)], now: i64) -> StoreResult<()>;
    /// Pause or resume a queue; whether there is one of that name.
    async fn set_queue_paused(&self, name: &str, paused: bool, now: i64) -> StoreResult<bool>;
    /// Every queue with its depth, by name.
    async fn list_queues(&self) -> StoreResult<Vec<QueueRecord>>;

    /// Delete up to `limit` jobs that ended before `before`, with their
    /// tasks, events, delivery attempts and idempotency keys, and nodes
    /// unseen since then.
    async fn prune(&self, before: i64, limit: u32) -> StoreResult<Pruned>;

    /// Write a preset (checked, canonical); whether it is new.
    async fn put_preset(&self, name: &str, body: &serde_json::Value, now: i64)
        -> StoreResult<bool>;
    async fn get_preset(&self, name: &str) -> StoreResult<Option<serde_json::Value>>;
    /// Every stored preset, by name.
    async fn list_presets(&self) -> StoreResult<Vec<serde_json::Value>>;
    /// Whether there was one to delete.
    async fn delete_preset(&self, name: &str) -> StoreResult<bool>;
    /// Nodes whose heartbeats stopped become `lost`.
    async fn mark_lost_nodes(&self, now: i64, silent_for_ms: i64) -> StoreResult<Vec<String>>;

    /// Woken when a job may have become claimable (submit, requeue).
    fn jobs_signal(&self) -> Arc<Notify>;
    /// Woken when an event with a webhook to deliver was written.
    fn events_signal(&self) -> Arc<Notify>;
    /// Woken when this replica changed any job's state (long-polls on a job).
    fn changes_signal(&self) -> Arc<Notify>;
    /// Counts of SQL statements run, for the regression guard on hot paths.
    fn statements(&self) -> u64;
}
