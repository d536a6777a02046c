//! The SQL store: one body of SQL for SQLite (embedded, one feederd) and
//! PostgreSQL (a cluster of replicas). [`Dialect`] holds the differences:
//! PostgreSQL locks the rows it reads before changing them, and skips rows
//! another replica is claiming.

mod connect;
mod dialect;
mod events;
mod inserts;
mod jobs;
mod leases;
mod listen;
mod nodes;
mod presets;
mod queues;
mod retention;
mod rows;
mod tasks;
mod transition;

pub use connect::{migrate_to, PoolSettings};
pub use dialect::Dialect;

use crate::*;
use nommer_model::api::Progress;
use nommer_model::NodeState;
use sqlx::AnyConnection;
use sqlx::AnyPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

type Conn = AnyConnection;

pub struct SqlStore {
    writer: AnyPool,
    reader: AnyPool,
    dialect: Dialect,
    url: String,
    policy: LeasePolicy,
    sealer: Option<crate::sealer::Sealer>,
    jobs_signal: Arc<Notify>,
    events_signal: Arc<Notify>,
    changes_signal: Arc<Notify>,
    statements: Arc<AtomicU64>,
    inserter: inserts::Inserter,
    /// When this replica last wrote each node's row, and in what state: a
    /// lease request within a second of that writes it no more.
    nodes_written: std::sync::Mutex<HashMap<String, (i64, NodeState)>>,
    /// Some queue has a `max_concurrency`: on PostgreSQL this replica's
    /// claims then run one at a time (`claims`), so each sees the last one's
    /// leases and a limited queue is over its limit by at most one task per
    /// replica.
    capped: std::sync::atomic::AtomicBool,
    claims: tokio::sync::Mutex<()>,
}

impl SqlStore {
    /// Open (creating and migrating as needed) the store at `url`:
    /// `sqlite://PATH`, `sqlite::memory:` or `postgres://...`.
    pub async fn open(
        url: &str,
        policy: LeasePolicy,
        settings: &PoolSettings,
    ) -> StoreResult<SqlStore> {
        let dialect = Dialect::from_url(url).ok_or_else(|| {
            StoreError::Other(format!(
                "unsupported store URL {}: use sqlite://PATH or postgres://...",
                nommer_model::uri::redact_str(url)
            ))
        })?;
        let pools = connect::open(url, dialect, settings).await?;
        let statements = Arc::new(AtomicU64::new(0));
        let jobs_signal = Arc::new(Notify::new());
        let store = SqlStore {
            inserter: inserts::Inserter::spawn(
                pools.writer.clone(),
                statements.clone(),
                jobs_signal.clone(),
            ),
            writer: pools.writer,
            reader: pools.reader,
            dialect,
            url: url.to_string(),
            policy,
            sealer: None,
            jobs_signal,
            events_signal: Arc::new(Notify::new()),
            changes_signal: Arc::new(Notify::new()),
            statements,
            nodes_written: Default::default(),
            capped: Default::default(),
            claims: Default::default(),
        };
        if dialect == Dialect::Postgres {
            listen::spawn(url, store.jobs_signal.clone(), store.events_signal.clone());
        }
        Ok(store)
    }

    /// Encrypt job URIs (they may hold credentials) at rest with this key.
    pub fn with_sealer(mut self, sealer: crate::sealer::Sealer) -> SqlStore {
        self.sealer = Some(sealer);
        self
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL the store was opened with (credentials included: not for logs).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn count(&self, n: u64) {
        self.statements.fetch_add(n, Ordering::Relaxed);
    }
}

/// Tasks the reaper and the abandon check change per transaction: a backlog
/// is worked through in batches, never loaded whole.
const BATCH: u32 = 256;

async fn fetch_job(conn: &mut Conn, id: &str) -> StoreResult<JobRecord> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM jobs WHERE id = $1",
        rows::JOB_COLUMNS
    ))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    rows::job(&row)
}

fn progress_json(progress: &Progress) -> String {
    serde_json::to_string(progress).unwrap_or_default()
}

#[async_trait]
impl Store for SqlStore {
    async fn insert_job(&self, job: &NewJob) -> StoreResult<JobRecord> {
        self.insert(job).await
    }

    async fn insert_job_once(&self, job: &NewJob, key: &IdempotencyKey) -> StoreResult<Inserted> {
        self.insert_once(job, key).await
    }

    async fn resubmission(&self, id: &str) -> StoreResult<Option<Resubmission>> {
        SqlStore::resubmission(self, id).await
    }

    async fn events_after(
        &self,
        after: i64,
        job: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        self.events_since(after, job, limit).await
    }

    async fn finished_since(&self, since: i64, limit: u32) -> StoreResult<Vec<FinishedJob>> {
        self.recently_finished(since, limit).await
    }

    async fn last_event_seq(&self) -> StoreResult<i64> {
        self.newest_event().await
    }

    async fn running_tasks(&self, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        self.leased_tasks(limit).await
    }

    async fn running_jobs(&self, owner: Option<&str>, limit: u32) -> StoreResult<Vec<JobRecord>> {
        self.running(owner, limit).await
    }

    async fn redeliver(&self, job_id: &str, seq: i64, now: i64) -> StoreResult<bool> {
        self.deliver_again(job_id, seq, now).await
    }

    async fn sync_queues(&self, queues: &[(String, Option<u32>)], now: i64) -> StoreResult<()> {
        self.write_queues(queues, now).await
    }

    async fn set_queue_paused(&self, name: &str, paused: bool, now: i64) -> StoreResult<bool> {
        self.pause_queue(name, paused, now).await
    }

    async fn list_queues(&self) -> StoreResult<Vec<QueueRecord>> {
        self.queues().await
    }

    async fn prune(&self, before: i64, limit: u32) -> StoreResult<Pruned> {
        self.prune_ended(before, limit).await
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        self.job(id).await
    }

    async fn list_jobs(&self, query: &JobQuery<'_>) -> StoreResult<Vec<JobRecord>> {
        self.jobs(query).await
    }

    async fn job_events(&self, id: &str) -> StoreResult<Vec<EventRecord>> {
        self.events_of(id).await
    }

    async fn count_jobs(&self) -> StoreResult<Vec<(JobState, u64)>> {
        self.counts().await
    }

    async fn count_tasks(&self) -> StoreResult<TaskCounts> {
        self.task_counts().await
    }

    async fn job_tasks(&self, id: &str) -> StoreResult<Vec<TaskRecord>> {
        self.tasks_of(id).await
    }

    async fn claim(&self, node: &NodeReport, max: u32, now: i64) -> StoreResult<Vec<Claimed>> {
        self.claim_tasks(node, max, now).await
    }

    async fn heartbeat(
        &self,
        node: &NodeReport,
        leases: &[LeaseReport],
        now: i64,
    ) -> StoreResult<Vec<LeaseStatus>> {
        self.renew(node, leases, now).await
    }

    async fn report_states(
        &self,
        reports: &[HolderReport<'_>],
        now: i64,
    ) -> StoreResult<Vec<StoreResult<TaskChange>>> {
        self.reports(reports, now).await
    }

    async fn release(
        &self,
        id: &str,
        task: u32,
        token: &str,
        reason: &str,
        failed: Option<&str>,
        now: i64,
    ) -> StoreResult<TaskChange> {
        self.hand_back(id, task, token, reason, failed, now).await
    }

    async fn cancel(&self, id: &str, now: i64) -> StoreResult<JobRecord> {
        self.cancel_job(id, now).await
    }

    async fn reap_expired(&self, now: i64) -> StoreResult<Vec<TaskChange>> {
        self.reap(now).await
    }

    async fn abandon_stale(&self, now: i64, threshold_ms: i64) -> StoreResult<Vec<String>> {
        self.abandon(now, threshold_ms).await
    }

    async fn due_deliveries(&self, now: i64, limit: u32) -> StoreResult<Vec<EventRecord>> {
        self.due(now, limit).await
    }

    async fn postpone_delivery(&self, seq: i64, until: i64) -> StoreResult<()> {
        self.postpone(seq, until).await
    }

    async fn record_delivery(
        &self,
        seq: i64,
        attempt: &AttemptRecord,
        outcome: DeliveryOutcome,
    ) -> StoreResult<()> {
        self.record(seq, attempt, outcome).await
    }

    async fn deliveries(
        &self,
        job_id: &str,
    ) -> StoreResult<Vec<(EventRecord, Vec<AttemptRecord>)>> {
        self.deliveries_of(job_id).await
    }

    async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.nodes().await
    }

    async fn put_preset(
        &self,
        name: &str,
        body: &serde_json::Value,
        now: i64,
    ) -> StoreResult<bool> {
        self.upsert_preset(name, body, now).await
    }

    async fn get_preset(&self, name: &str) -> StoreResult<Option<serde_json::Value>> {
        self.preset(name).await
    }

    async fn list_presets(&self) -> StoreResult<Vec<serde_json::Value>> {
        self.presets().await
    }

    async fn delete_preset(&self, name: &str) -> StoreResult<bool> {
        self.remove_preset(name).await
    }

    async fn mark_lost_nodes(&self, now: i64, silent_for_ms: i64) -> StoreResult<Vec<String>> {
        self.mark_lost(now, silent_for_ms).await
    }

    fn jobs_signal(&self) -> Arc<Notify> {
        self.jobs_signal.clone()
    }

    fn changes_signal(&self) -> Arc<Notify> {
        self.changes_signal.clone()
    }

    fn events_signal(&self) -> Arc<Notify> {
        self.events_signal.clone()
    }

    fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}
