//! The SQL store: one body of SQL for SQLite (embedded, one feederd) and
//! PostgreSQL (a cluster of replicas). [`Dialect`] holds the differences:
//! PostgreSQL locks the rows it reads before changing them, and skips rows
//! another replica is claiming.

mod connect;
mod dialect;
mod inserts;
mod listen;
mod rows;
mod transition;

pub use connect::PoolSettings;
pub use dialect::Dialect;

use crate::*;
use nommer_model::api::Progress;
use nommer_model::state::Actor;
use rows::{EVENT_COLUMNS, JOB_COLUMNS};
use sqlx::AnyPool;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use transition::{apply, check, Guard, Lease, Transition};

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
    nodes_written: std::sync::Mutex<HashMap<String, (i64, String)>>,
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

    /// Record a lease request's node report, unless this replica wrote the
    /// same node in the same state less than a second ago: a busy worker
    /// leases many times a second, and its heartbeats keep the row current.
    async fn note_node(&self, node: &NodeReport, now: i64) -> StoreResult<()> {
        let fresh = self
            .nodes_written
            .lock()
            .unwrap()
            .get(&node.node_id)
            .is_some_and(|(at, state)| now - at < 1_000 && *state == node.state);
        if fresh {
            return Ok(());
        }
        upsert_node(&self.writer, node, now).await?;
        self.count(1);
        self.remember_node(node, now);
        Ok(())
    }

    fn remember_node(&self, node: &NodeReport, now: i64) {
        self.nodes_written
            .lock()
            .unwrap()
            .insert(node.node_id.clone(), (now, node.state.clone()));
    }
}

async fn upsert_node<'e, E>(conn: E, node: &NodeReport, now: i64) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO nodes (id, instance_id, fleet, state, hostname, version, max_jobs, running_jobs, sandbox, started_at, last_heartbeat_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $9, $9)
         ON CONFLICT (id) DO UPDATE SET instance_id = excluded.instance_id, fleet = excluded.fleet, state = excluded.state,
           hostname = excluded.hostname, version = excluded.version, max_jobs = excluded.max_jobs,
           running_jobs = excluded.running_jobs, sandbox = excluded.sandbox, last_heartbeat_at = excluded.last_heartbeat_at",
    )
    .bind(&node.node_id)
    .bind(&node.instance_id)
    .bind(&node.fleet)
    .bind(&node.state)
    .bind(&node.hostname)
    .bind(&node.version)
    .bind(node.max_jobs as i64)
    .bind(node.running_jobs as i64)
    .bind(now)
    .bind(&node.sandbox)
    .execute(conn)
    .await?;
    Ok(())
}

struct LeaseRow {
    state: JobState,
    token: Option<String>,
    warnings: String,
}

impl SqlStore {
    /// The lease columns of a job, locked until the transaction ends.
    async fn lease_row(&self, conn: &mut Conn, id: &str) -> StoreResult<LeaseRow> {
        self.find_lease_row(conn, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// [`lease_row`](Self::lease_row), or None when there is no such job.
    async fn find_lease_row(&self, conn: &mut Conn, id: &str) -> StoreResult<Option<LeaseRow>> {
        let row = sqlx::query(&format!(
            "SELECT state, lease_token, warnings FROM jobs WHERE id = $1{}",
            self.dialect.for_update()
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(LeaseRow {
            state: rows::parse_state(row.try_get("state")?)?,
            token: row.try_get("lease_token")?,
            warnings: row.try_get("warnings")?,
        }))
    }
}

impl SqlStore {
    /// A state change by the lease holder on `conn`, fenced: refused
    /// (the inner Err) unless `token` is still the job's lease token. One
    /// statement; one more to read the current warnings when the report adds
    /// some (`conn` is then in a transaction), or to say why it was refused.
    async fn holder_change<'a>(
        &self,
        conn: &mut Conn,
        report: HolderReport<'_>,
        now: i64,
        make: impl FnOnce(Option<String>) -> Transition<'a>,
    ) -> StoreResult<StoreResult<JobRecord>> {
        let guard = Guard::Holder {
            token: report.token,
            renew_until: now + self.policy.ttl_ms,
        };
        let merged = if report.warnings.is_empty() {
            None
        } else {
            self.count(1);
            let Some(current) = self.find_lease_row(conn, report.job_id).await? else {
                return Ok(Err(StoreError::NotFound));
            };
            merge_warnings(&current.warnings, report.warnings)
        };
        self.count(1);
        if let Some(record) = apply(&mut *conn, report.job_id, guard, make(merged), now).await? {
            return Ok(Ok(record));
        }
        // Refused: say why.
        self.count(1);
        let Some(current) = self.find_lease_row(conn, report.job_id).await? else {
            return Ok(Err(StoreError::NotFound));
        };
        if current.token.as_deref() != Some(report.token) {
            return Ok(Err(StoreError::LeaseLost));
        }
        Ok(check(current.state, report.to, Actor::Worker).and(Err(StoreError::LeaseLost)))
    }
}

/// What a worker's report does to the row besides the state.
fn reported<'a>(
    report: &HolderReport<'a>,
    details: Option<&'a str>,
    merged: Option<String>,
) -> Transition<'a> {
    let to = report.to;
    let progress = Progress {
        phase: to.as_str().to_ascii_lowercase(),
        percent: if to == JobState::Finished { 100.0 } else { 0.0 },
        ..Default::default()
    };
    let keep_progress = matches!(to, JobState::Error | JobState::Canceled);
    let ends_lease = to.is_terminal() || to == JobState::Pending;
    Transition {
        lease: if ends_lease { Lease::End } else { Lease::Keep },
        progress: (!keep_progress).then(|| Some(progress_json(&progress))),
        warnings: merged,
        error_code: report.error_code.filter(|_| to == JobState::Error),
        ..Transition::to(to, details)
    }
}

async fn fetch_job(conn: &mut Conn, id: &str) -> StoreResult<JobRecord> {
    let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    rows::job(&row)
}

fn progress_json(progress: &Progress) -> String {
    serde_json::to_string(progress).unwrap_or_default()
}

/// `existing` (a JSON list) with `added` appended, without repeats; None when
/// nothing is new.
fn merge_warnings(existing: &str, added: &[String]) -> Option<String> {
    let mut list: Vec<String> = serde_json::from_str(existing).unwrap_or_default();
    let before = list.len();
    for w in added {
        if !list.contains(w) {
            list.push(w.clone());
        }
    }
    (list.len() > before).then(|| serde_json::to_string(&list).unwrap_or_default())
}

#[async_trait]
impl Store for SqlStore {
    async fn insert_job(&self, job: &NewJob) -> StoreResult<JobRecord> {
        let secret_uris = crate::sealer::seal(
            self.sealer.as_ref(),
            &serde_json::json!({"source": job.source_uri, "dest": job.dest_uri}).to_string(),
        );
        let sealed = inserts::Sealed {
            job: job.clone(),
            secret_uris,
            notify_url: job
                .notify_url
                .as_deref()
                .map(|url| crate::sealer::seal(self.sealer.as_ref(), url)),
        };
        self.inserter.insert(sealed).await
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        self.count(1);
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    async fn list_jobs(&self, query: &JobQuery<'_>) -> StoreResult<Vec<JobRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR id < $2)
               AND ($3 IS NULL OR submitted_by = $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(query.state.map(|s| s.as_str()))
        .bind(query.before)
        .bind(query.submitted_by)
        .bind(query.limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::job).collect()
    }

    async fn count_jobs(&self) -> StoreResult<Vec<(JobState, u64)>> {
        self.count(1);
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    rows::parse_state(row.try_get("state")?)?,
                    row.try_get::<i64, _>("n")? as u64,
                ))
            })
            .collect()
    }

    async fn job_events(&self, id: &str) -> StoreResult<Vec<EventRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = $1 ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::event).collect()
    }

    async fn claim(&self, node: &NodeReport, max: u32, now: i64) -> StoreResult<Vec<Claimed>> {
        self.note_node(node, now).await?;
        if max == 0 || node.state != "active" {
            return Ok(Vec::new());
        }
        check(JobState::Pending, JobState::Downloading, Actor::Feederd)?;
        let progress = progress_json(&Progress {
            phase: "downloading".into(),
            ..Default::default()
        });
        // One statement leases them all; the oldest claimable first, straight
        // off the (state, run_after, id) index.
        let leased = sqlx::query(&format!(
            "WITH picked AS (
               SELECT id AS picked_id FROM jobs WHERE state = 'PENDING' AND run_after <= $4
               ORDER BY run_after, id LIMIT $5{skip_locked})
             UPDATE jobs SET state = 'DOWNLOADING', state_details = NULL, lease_token = {token}, node_id = $1,
               lease_expires_at = $2, attempts = attempts + 1, progress = $3, updated_at = $4, state_changed_at = $4
             FROM picked WHERE jobs.id = picked.picked_id AND jobs.state = 'PENDING'
             RETURNING {JOB_COLUMNS}, lease_token, secret_uris",
            token = self.dialect.random_token(),
            skip_locked = self.dialect.skip_locked(),
        ))
        .bind(&node.node_id)
        .bind(now + self.policy.ttl_ms)
        .bind(&progress)
        .bind(now)
        .bind(max as i64)
        .fetch_all(&self.writer)
        .await?;
        self.count(1);
        let mut claimed = Vec::with_capacity(leased.len());
        for row in leased {
            let job = rows::job(&row)?;
            let secret: String = row.try_get("secret_uris")?;
            let secret = match crate::sealer::unseal(self.sealer.as_ref(), &secret) {
                Ok(secret) => secret,
                Err(e) => {
                    // This job can never run here; it must not block the others.
                    let details = e.to_string();
                    let transition = Transition {
                        lease: Lease::End,
                        ..Transition::to(JobState::Error, Some(&details))
                    };
                    apply(&self.writer, &job.id, Guard::Feederd, transition, now).await?;
                    self.count(1);
                    continue;
                }
            };
            let secret: serde_json::Value = serde_json::from_str(&secret).unwrap_or_default();
            claimed.push(Claimed {
                source_uri: secret["source"].as_str().unwrap_or_default().to_string(),
                dest_uri: secret["dest"].as_str().unwrap_or_default().to_string(),
                token: row.try_get("lease_token")?,
                job,
            });
        }
        claimed.sort_by(|a, b| a.job.id.cmp(&b.job.id));
        if !claimed.is_empty() {
            self.changes_signal.notify_waiters();
        }
        if claimed.iter().any(|c| c.job.notify_url.is_some()) {
            self.events_signal.notify_waiters();
        }
        Ok(claimed)
    }

    async fn heartbeat(
        &self,
        node: &NodeReport,
        leases: &[LeaseReport],
        now: i64,
    ) -> StoreResult<Vec<LeaseStatus>> {
        // No transaction: each renewal stands on its own.
        upsert_node(&self.writer, node, now).await?;
        self.remember_node(node, now);
        self.count(1 + leases.len() as u64);
        let expires = now + self.policy.ttl_ms;
        let mut statuses = Vec::with_capacity(leases.len());
        for lease in leases {
            // A lease past its expiry that the reaper has not taken yet is
            // still this worker's: renewing it is what the restart grace is for.
            let row = sqlx::query(
                "UPDATE jobs SET lease_expires_at = $1, progress = COALESCE($2, progress), updated_at = $3
                 WHERE id = $4 AND lease_token = $5 RETURNING cancel_requested",
            )
            .bind(expires)
            .bind(lease.progress.as_ref().map(progress_json))
            .bind(now)
            .bind(&lease.job_id)
            .bind(&lease.token)
            .fetch_optional(&self.writer)
            .await?;
            let status = match row {
                Some(row) => LeaseStatus {
                    job_id: lease.job_id.clone(),
                    valid: true,
                    remaining_ms: self.policy.ttl_ms as u64,
                    cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
                },
                None => LeaseStatus {
                    job_id: lease.job_id.clone(),
                    valid: false,
                    remaining_ms: 0,
                    cancel_requested: false,
                },
            };
            statuses.push(status);
        }
        Ok(statuses)
    }

    async fn report_states(
        &self,
        reports: &[HolderReport<'_>],
        now: i64,
    ) -> StoreResult<Vec<StoreResult<JobRecord>>> {
        let details: Vec<Option<String>> = reports
            .iter()
            .map(|r| {
                r.details
                    .map(|d| nommer_model::tail_chars(d, nommer_model::DETAILS_MAX_CHARS))
            })
            .collect();
        // One report alone needs no transaction, unless it merges warnings.
        let alone = reports.len() == 1 && reports[0].warnings.is_empty();
        let mut results = Vec::with_capacity(reports.len());
        if alone {
            let mut conn = self.writer.acquire().await?;
            let (report, details) = (&reports[0], details[0].as_deref());
            results.push(
                self.holder_change(&mut conn, *report, now, |merged| {
                    reported(report, details, merged)
                })
                .await?,
            );
        } else {
            let mut tx = self.writer.begin().await?;
            for (report, details) in reports.iter().zip(&details) {
                let details = details.as_deref();
                results.push(
                    self.holder_change(&mut tx, *report, now, |merged| {
                        reported(report, details, merged)
                    })
                    .await?,
                );
            }
            tx.commit().await?;
        }
        if results
            .iter()
            .any(|r| r.as_ref().is_ok_and(|job| job.notify_url.is_some()))
        {
            self.events_signal.notify_waiters();
        }
        if results.iter().any(Result::is_ok) {
            self.changes_signal.notify_waiters();
        }
        Ok(results)
    }

    async fn release(
        &self,
        id: &str,
        token: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<JobRecord> {
        let details = format!("handed back by its worker: {reason}");
        let report = HolderReport {
            job_id: id,
            token,
            to: JobState::Pending,
            details: Some(&details),
            warnings: &[],
            error_code: None,
        };
        let mut conn = self.writer.acquire().await?;
        let record = self
            .holder_change(&mut conn, report, now, |_| Transition {
                lease: Lease::Free,
                run_after: Some(now),
                progress: Some(None),
                attempts_delta: -1,
                ..Transition::to(JobState::Pending, Some(&details))
            })
            .await??;
        self.jobs_signal.notify_waiters();
        self.events_signal.notify_waiters();
        self.changes_signal.notify_waiters();
        Ok(record)
    }

    async fn cancel(&self, id: &str, now: i64) -> StoreResult<JobRecord> {
        let mut tx = self.writer.begin().await?;
        let current = self.lease_row(&mut tx, id).await?;
        if current.state.is_terminal() {
            return Err(StoreError::Terminal(current.state));
        }
        if current.state.is_leased() {
            // The worker sees the flag in its next heartbeat answer and stops.
            sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        } else {
            let details = "canceled before a worker took it";
            check(current.state, JobState::Canceled, Actor::Feederd)?;
            let transition = Transition::to(JobState::Canceled, Some(details));
            apply(&mut *tx, id, Guard::Feederd, transition, now).await?;
        }
        let record = fetch_job(&mut tx, id).await?;
        tx.commit().await?;
        self.count(4);
        if record.state == JobState::Canceled {
            self.events_signal.notify_waiters();
            self.changes_signal.notify_waiters();
        }
        Ok(record)
    }

    async fn reap_expired(&self, now: i64) -> StoreResult<Vec<(String, JobState)>> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT id, state, attempts, max_attempts, cancel_requested, node_id FROM jobs
             WHERE lease_expires_at IS NOT NULL AND lease_expires_at < $1{}",
            self.dialect.skip_locked()
        ))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        self.count(1);
        let mut changes = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let from = rows::parse_state(row.try_get("state")?)?;
            let attempts = row.try_get::<i64, _>("attempts")? as u32;
            let max_attempts = row.try_get::<i64, _>("max_attempts")? as u32;
            let node: Option<String> = row.try_get("node_id")?;
            let node = node.unwrap_or_else(|| "?".into());
            let (to, details, run_after) = if row.try_get::<i64, _>("cancel_requested")? != 0 {
                (
                    JobState::Canceled,
                    format!("canceled; node {node} stopped answering before it confirmed"),
                    now,
                )
            } else if attempts >= max_attempts {
                (
                    JobState::Error,
                    format!("The job's lease expired on node {node} (attempt {attempts} of {max_attempts}); no attempts are left"),
                    now,
                )
            } else {
                let wait = self.policy.backoff_ms(attempts);
                (
                    JobState::Pending,
                    format!("The job's lease expired on node {node} (attempt {attempts} of {max_attempts}); retrying in {} s", wait / 1000),
                    now + wait,
                )
            };
            let transition = Transition {
                lease: if to == JobState::Pending {
                    Lease::Free
                } else {
                    Lease::End
                },
                run_after: Some(run_after),
                ..Transition::to(to, Some(&details))
            };
            check(from, to, Actor::Feederd)?;
            apply(&mut *tx, &id, Guard::Feederd, transition, now).await?;
            self.count(1);
            changes.push((id, to));
        }
        tx.commit().await?;
        if !changes.is_empty() {
            self.jobs_signal.notify_waiters();
            self.events_signal.notify_waiters();
            self.changes_signal.notify_waiters();
        }
        Ok(changes)
    }

    async fn abandon_stale(&self, now: i64, threshold_ms: i64) -> StoreResult<Vec<String>> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT id FROM jobs WHERE state = 'PENDING' AND state_changed_at <= $1{}",
            self.dialect.skip_locked()
        ))
        .bind(now - threshold_ms)
        .fetch_all(&mut *tx)
        .await?;
        self.count(1);
        let mut ids = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            // The seed keeps the previous details on ABANDONED.
            let transition = Transition {
                details: None,
                ..Transition::to(JobState::Abandoned, None)
            };
            apply(&mut *tx, &id, Guard::Feederd, transition, now).await?;
            self.count(1);
            ids.push(id);
        }
        tx.commit().await?;
        if !ids.is_empty() {
            self.events_signal.notify_waiters();
            self.changes_signal.notify_waiters();
        }
        Ok(ids)
    }

    async fn due_deliveries(&self, now: i64, limit: u32) -> StoreResult<Vec<EventRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events e WHERE delivery = 'pending'
               AND seq = (SELECT MIN(x.seq) FROM job_events x WHERE x.job_id = e.job_id AND x.delivery = 'pending')
               AND next_attempt_at <= $1 ORDER BY next_attempt_at, seq LIMIT $2"
        ))
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut event = rows::event(row)?;
            if let Some(stored) = &event.notify_url {
                match crate::sealer::unseal(self.sealer.as_ref(), stored) {
                    Ok(url) => event.notify_url = Some(url),
                    Err(e) => {
                        // This replica's key cannot open it (a replica with
                        // the wrong or no secrets_key leads): it must neither
                        // hold up the outbox nor be lost. Put it off; a
                        // leader with the right key delivers it.
                        tracing::error!(seq = event.seq, job_id = %event.job_id, error = %e, "cannot open a sealed notify_url; delivery put off a minute");
                        self.postpone_delivery(event.seq, now + 60_000).await?;
                        continue;
                    }
                }
            }
            due.push(event);
        }
        Ok(due)
    }

    async fn postpone_delivery(&self, seq: i64, until: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE job_events SET next_attempt_at = $1 WHERE seq = $2 AND delivery = 'pending'",
        )
        .bind(until)
        .bind(seq)
        .execute(&self.writer)
        .await?;
        self.count(1);
        Ok(())
    }

    async fn record_delivery(
        &self,
        seq: i64,
        attempt: &AttemptRecord,
        outcome: DeliveryOutcome,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (event_seq, attempt, attempted_at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(seq)
        .bind(attempt.attempt as i64)
        .bind(attempt.attempted_at)
        .bind(attempt.status_code.map(i64::from))
        .bind(&attempt.error)
        .bind(attempt.duration_ms as i64)
        .execute(&mut *tx)
        .await?;
        let (delivery, next) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None),
            DeliveryOutcome::Retry { next_attempt_at } => ("pending", Some(next_attempt_at)),
            DeliveryOutcome::Failed => ("failed", None),
        };
        sqlx::query("UPDATE job_events SET delivery = $1, next_attempt_at = $2, attempts = attempts + 1 WHERE seq = $3")
            .bind(delivery)
            .bind(next)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.count(2);
        Ok(())
    }

    async fn deliveries(
        &self,
        job_id: &str,
    ) -> StoreResult<Vec<(EventRecord, Vec<AttemptRecord>)>> {
        self.count(2);
        let events = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = $1 AND delivery != 'none' ORDER BY seq"
        ))
        .bind(job_id)
        .fetch_all(&self.reader)
        .await?;
        let attempts = sqlx::query(
            "SELECT a.event_seq, a.attempt, a.attempted_at, a.status_code, a.error, a.duration_ms FROM delivery_attempts a
             JOIN job_events e ON e.seq = a.event_seq WHERE e.job_id = $1 ORDER BY a.event_seq, a.attempt",
        )
        .bind(job_id)
        .fetch_all(&self.reader)
        .await?;
        let mut out = Vec::new();
        for row in &events {
            let event = rows::event(row)?;
            let mut list = Vec::new();
            for a in &attempts {
                if a.try_get::<i64, _>("event_seq")? == event.seq {
                    list.push(rows::attempt(a)?);
                }
            }
            out.push((event, list));
        }
        Ok(out)
    }

    async fn list_nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.count(1);
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY last_heartbeat_at DESC")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::node).collect()
    }

    async fn mark_lost_nodes(&self, now: i64, silent_for_ms: i64) -> StoreResult<Vec<String>> {
        self.count(1);
        let ids = sqlx::query_scalar(
            "UPDATE nodes SET state = 'lost' WHERE state IN ('active', 'draining') AND last_heartbeat_at < $1 RETURNING id",
        )
        .bind(now - silent_for_ms)
        .fetch_all(&self.writer)
        .await?;
        Ok(ids)
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

#[cfg(test)]
mod tests {
    use super::merge_warnings;

    #[test]
    fn warnings_merge_without_repeats() {
        assert_eq!(merge_warnings("[\"a\"]", &["a".into()]), None);
        assert_eq!(
            merge_warnings("[\"a\"]", &["b".into(), "a".into()]).as_deref(),
            Some("[\"a\",\"b\"]")
        );
    }
}
