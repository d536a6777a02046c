//! The embedded SQLite store.
//!
//! One feederd owns the file. Writes go through a single connection (SQLite
//! has one writer anyway, and this rules out busy-upgrade failures); reads use
//! a separate pool, which WAL mode lets run beside the writer.

use crate::*;
use nommer_model::api::Progress;
use nommer_model::state::Actor;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    policy: LeasePolicy,
    jobs_signal: Arc<Notify>,
    events_signal: Arc<Notify>,
    statements: AtomicU64,
}

const JOB_COLUMNS: &str = "id, state, state_details, warnings, progress, attempts, max_attempts, source_path, dest_path, notify_url, nommer, job_options, node_id, lease_expires_at, cancel_requested, created_at, updated_at, state_changed_at";
const EVENT_COLUMNS: &str =
    "seq, job_id, state, details, created_at, delivery, notify_url, next_attempt_at, attempts";

impl SqliteStore {
    /// Open (creating if needed) and migrate. `url` is `sqlite://PATH` or `sqlite::memory:`.
    pub async fn open(url: &str, policy: LeasePolicy) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad sqlite url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let in_memory = url.contains(":memory:");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Other(format!("migration failed: {e}")))?;
        // An in-memory database exists once per connection: read through the writer.
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await?
        };
        Ok(SqliteStore {
            writer,
            reader,
            policy,
            jobs_signal: Arc::new(Notify::new()),
            events_signal: Arc::new(Notify::new()),
            statements: AtomicU64::new(0),
        })
    }

    fn count(&self, n: u64) {
        self.statements.fetch_add(n, Ordering::Relaxed);
    }
}

fn parse_state(text: &str) -> StoreResult<JobState> {
    JobState::from_str(text).map_err(StoreError::Other)
}

fn job_from_row(row: &SqliteRow) -> StoreResult<JobRecord> {
    let warnings: String = row.try_get("warnings")?;
    let progress: Option<String> = row.try_get("progress")?;
    let job_options: String = row.try_get("job_options")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        state: parse_state(row.try_get("state")?)?,
        state_details: row.try_get("state_details")?,
        warnings: serde_json::from_str(&warnings).unwrap_or_default(),
        progress: progress.and_then(|p| serde_json::from_str(&p).ok()),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        source_path: row.try_get("source_path")?,
        dest_path: row.try_get("dest_path")?,
        notify_url: row.try_get("notify_url")?,
        nommer: row.try_get("nommer")?,
        job_options: serde_json::from_str(&job_options).unwrap_or_default(),
        node_id: row.try_get("node_id")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        state_changed_at: row.try_get("state_changed_at")?,
    })
}

fn event_from_row(row: &SqliteRow) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        seq: row.try_get("seq")?,
        job_id: row.try_get("job_id")?,
        state: parse_state(row.try_get("state")?)?,
        details: row.try_get("details")?,
        created_at: row.try_get("created_at")?,
        delivery: row.try_get("delivery")?,
        notify_url: row.try_get("notify_url")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
    })
}

fn node_from_row(row: &SqliteRow) -> StoreResult<NodeRecord> {
    Ok(NodeRecord {
        id: row.try_get("id")?,
        instance_id: row.try_get("instance_id")?,
        fleet: row.try_get("fleet")?,
        state: row.try_get("state")?,
        hostname: row.try_get("hostname")?,
        version: row.try_get("version")?,
        max_jobs: row.try_get::<i64, _>("max_jobs")? as u32,
        running_jobs: row.try_get::<i64, _>("running_jobs")? as u32,
        started_at: row.try_get("started_at")?,
        last_heartbeat_at: row.try_get("last_heartbeat_at")?,
    })
}

fn check(from: JobState, to: JobState, actor: Actor) -> StoreResult<()> {
    if from.is_terminal() {
        return Err(StoreError::Terminal(from));
    }
    if !from.can_transition(to, actor) {
        return Err(StoreError::InvalidTransition { from, to });
    }
    Ok(())
}

/// Append the event of a state change. PENDING at submission notifies no one.
async fn insert_event(
    conn: &mut SqliteConnection,
    job_id: &str,
    state: JobState,
    details: Option<&str>,
    notify_url: Option<&str>,
    deliver: bool,
    now: i64,
) -> StoreResult<()> {
    let delivery = if deliver && notify_url.is_some() {
        "pending"
    } else {
        "none"
    };
    sqlx::query(
        "INSERT INTO job_events (job_id, state, details, created_at, delivery, notify_url, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(job_id)
    .bind(state.as_str())
    .bind(details)
    .bind(now)
    .bind(delivery)
    .bind(notify_url)
    .bind((delivery == "pending").then_some(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_node(conn: &mut SqliteConnection, node: &NodeReport, now: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO nodes (id, instance_id, fleet, state, hostname, version, max_jobs, running_jobs, started_at, last_heartbeat_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET instance_id = excluded.instance_id, fleet = excluded.fleet, state = excluded.state,
           hostname = excluded.hostname, version = excluded.version, max_jobs = excluded.max_jobs,
           running_jobs = excluded.running_jobs, last_heartbeat_at = excluded.last_heartbeat_at",
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
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

struct LeaseRow {
    state: JobState,
    token: Option<String>,
    notify_url: Option<String>,
}

async fn lease_row(conn: &mut SqliteConnection, id: &str) -> StoreResult<LeaseRow> {
    let row = sqlx::query("SELECT state, lease_token, notify_url FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(LeaseRow {
        state: parse_state(row.try_get("state")?)?,
        token: row.try_get("lease_token")?,
        notify_url: row.try_get("notify_url")?,
    })
}

async fn fetch_job(conn: &mut SqliteConnection, id: &str) -> StoreResult<JobRecord> {
    let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    job_from_row(&row)
}

fn progress_json(progress: &Progress) -> String {
    serde_json::to_string(progress).unwrap_or_default()
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_job(&self, job: &NewJob) -> StoreResult<JobRecord> {
        let mut tx = self.writer.begin().await?;
        let secret_uris =
            serde_json::json!({"source": job.source_uri, "dest": job.dest_uri}).to_string();
        sqlx::query(
            "INSERT INTO jobs (id, state, warnings, max_attempts, source_path, dest_path, secret_uris, notify_url, nommer, job_options, run_after, created_at, updated_at, state_changed_at)
             VALUES (?, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&job.id)
        .bind(serde_json::to_string(&job.warnings).unwrap_or_default())
        .bind(job.max_attempts as i64)
        .bind(&job.source_path)
        .bind(&job.dest_path)
        .bind(secret_uris)
        .bind(&job.notify_url)
        .bind(&job.nommer)
        .bind(job.job_options.to_string())
        .bind(job.created_at)
        .bind(job.created_at)
        .bind(job.created_at)
        .bind(job.created_at)
        .execute(&mut *tx)
        .await?;
        insert_event(
            &mut tx,
            &job.id,
            JobState::Pending,
            None,
            job.notify_url.as_deref(),
            false,
            job.created_at,
        )
        .await?;
        let record = fetch_job(&mut tx, &job.id).await?;
        tx.commit().await?;
        self.count(3);
        self.jobs_signal.notify_waiters();
        Ok(record)
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        self.count(1);
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
        before: Option<&str>,
    ) -> StoreResult<Vec<JobRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        ))
        .bind(state.map(|s| s.as_str()))
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn job_events(&self, id: &str) -> StoreResult<Vec<EventRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = ? ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn claim(&self, node: &NodeReport, max: u32, now: i64) -> StoreResult<Vec<Claimed>> {
        let mut tx = self.writer.begin().await?;
        upsert_node(&mut tx, node, now).await?;
        self.count(2);
        if max == 0 || node.state != "active" {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'PENDING' AND run_after <= ? ORDER BY id LIMIT ?",
        )
        .bind(now)
        .bind(max as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(ids.len());
        let progress = progress_json(&Progress {
            phase: "downloading".into(),
            ..Default::default()
        });
        for id in ids {
            check(JobState::Pending, JobState::Downloading, Actor::Feederd)?;
            let token = new_token();
            let row = sqlx::query(&format!(
                "UPDATE jobs SET state = 'DOWNLOADING', state_details = NULL, lease_token = ?, node_id = ?, lease_expires_at = ?,
                   attempts = attempts + 1, progress = ?, updated_at = ?, state_changed_at = ?
                 WHERE id = ? AND state = 'PENDING' RETURNING {JOB_COLUMNS}, secret_uris"
            ))
            .bind(&token)
            .bind(&node.node_id)
            .bind(now + self.policy.ttl_ms)
            .bind(&progress)
            .bind(now)
            .bind(now)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            let job = job_from_row(&row)?;
            let secret: String = row.try_get("secret_uris")?;
            let secret: serde_json::Value = serde_json::from_str(&secret).unwrap_or_default();
            insert_event(
                &mut tx,
                &id,
                JobState::Downloading,
                None,
                job.notify_url.as_deref(),
                true,
                now,
            )
            .await?;
            self.count(2);
            claimed.push(Claimed {
                source_uri: secret["source"].as_str().unwrap_or_default().to_string(),
                dest_uri: secret["dest"].as_str().unwrap_or_default().to_string(),
                job,
                token,
            });
        }
        tx.commit().await?;
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
        let mut tx = self.writer.begin().await?;
        upsert_node(&mut tx, node, now).await?;
        self.count(1 + leases.len() as u64);
        let expires = now + self.policy.ttl_ms;
        let mut statuses = Vec::with_capacity(leases.len());
        for lease in leases {
            let row = sqlx::query(
                "UPDATE jobs SET lease_expires_at = ?, progress = COALESCE(?, progress), updated_at = ?
                 WHERE id = ? AND lease_token = ? RETURNING cancel_requested",
            )
            .bind(expires)
            .bind(lease.progress.as_ref().map(progress_json))
            .bind(now)
            .bind(&lease.job_id)
            .bind(&lease.token)
            .fetch_optional(&mut *tx)
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
        tx.commit().await?;
        Ok(statuses)
    }

    async fn report_state(
        &self,
        id: &str,
        token: &str,
        to: JobState,
        details: Option<&str>,
        warnings: &[String],
        now: i64,
    ) -> StoreResult<JobRecord> {
        let mut tx = self.writer.begin().await?;
        let current = lease_row(&mut tx, id).await?;
        if current.token.as_deref() != Some(token) {
            return Err(StoreError::LeaseLost);
        }
        check(current.state, to, Actor::Worker)?;
        let details = details.map(|d| nommer_model::tail_chars(d, nommer_model::DETAILS_MAX_CHARS));
        let ends_lease = to.is_terminal() || to == JobState::Pending;
        let progress = Progress {
            phase: to.as_str().to_ascii_lowercase(),
            percent: if to == JobState::Finished { 100.0 } else { 0.0 },
            ..Default::default()
        };
        let keep_progress = matches!(to, JobState::Error | JobState::Canceled);
        let mut merged = if warnings.is_empty() {
            None
        } else {
            let existing: String = sqlx::query_scalar("SELECT warnings FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let mut list: Vec<String> = serde_json::from_str(&existing).unwrap_or_default();
            for w in warnings {
                if !list.contains(w) {
                    list.push(w.clone());
                }
            }
            Some(serde_json::to_string(&list).unwrap_or_default())
        };
        sqlx::query(
            "UPDATE jobs SET state = ?, state_details = ?, warnings = COALESCE(?, warnings),
               progress = CASE WHEN ? THEN progress ELSE ? END, updated_at = ?, state_changed_at = ?,
               lease_token = CASE WHEN ? THEN NULL ELSE lease_token END,
               lease_expires_at = CASE WHEN ? THEN NULL ELSE lease_expires_at END
             WHERE id = ?",
        )
        .bind(to.as_str())
        .bind(details.as_deref())
        .bind(merged.take())
        .bind(keep_progress)
        .bind(progress_json(&progress))
        .bind(now)
        .bind(now)
        .bind(ends_lease)
        .bind(ends_lease)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_event(
            &mut tx,
            id,
            to,
            details.as_deref(),
            current.notify_url.as_deref(),
            true,
            now,
        )
        .await?;
        let record = fetch_job(&mut tx, id).await?;
        tx.commit().await?;
        self.count(4 + u64::from(!warnings.is_empty()));
        if current.notify_url.is_some() {
            self.events_signal.notify_waiters();
        }
        Ok(record)
    }

    async fn release(
        &self,
        id: &str,
        token: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<JobRecord> {
        let mut tx = self.writer.begin().await?;
        let current = lease_row(&mut tx, id).await?;
        if current.token.as_deref() != Some(token) {
            return Err(StoreError::LeaseLost);
        }
        check(current.state, JobState::Pending, Actor::Worker)?;
        let details = format!("handed back by its worker: {reason}");
        sqlx::query(
            "UPDATE jobs SET state = 'PENDING', state_details = ?, attempts = MAX(attempts - 1, 0), run_after = ?,
               lease_token = NULL, lease_expires_at = NULL, node_id = NULL, progress = NULL, updated_at = ?, state_changed_at = ?
             WHERE id = ?",
        )
        .bind(&details)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_event(
            &mut tx,
            id,
            JobState::Pending,
            Some(&details),
            current.notify_url.as_deref(),
            true,
            now,
        )
        .await?;
        let record = fetch_job(&mut tx, id).await?;
        tx.commit().await?;
        self.count(4);
        self.jobs_signal.notify_waiters();
        self.events_signal.notify_waiters();
        Ok(record)
    }

    async fn cancel(&self, id: &str, now: i64) -> StoreResult<JobRecord> {
        let mut tx = self.writer.begin().await?;
        let current = lease_row(&mut tx, id).await?;
        if current.state.is_terminal() {
            return Err(StoreError::Terminal(current.state));
        }
        if current.state.is_leased() {
            sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        } else {
            check(current.state, JobState::Canceled, Actor::Feederd)?;
            sqlx::query(
                "UPDATE jobs SET state = 'CANCELED', state_details = 'canceled before a worker took it', cancel_requested = 1,
                   updated_at = ?, state_changed_at = ? WHERE id = ?",
            )
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            insert_event(
                &mut tx,
                id,
                JobState::Canceled,
                Some("canceled before a worker took it"),
                current.notify_url.as_deref(),
                true,
                now,
            )
            .await?;
            self.events_signal.notify_waiters();
        }
        let record = fetch_job(&mut tx, id).await?;
        tx.commit().await?;
        self.count(4);
        Ok(record)
    }

    async fn reap_expired(&self, now: i64) -> StoreResult<Vec<(String, JobState)>> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "SELECT id, state, attempts, max_attempts, cancel_requested, node_id, notify_url FROM jobs
             WHERE lease_expires_at IS NOT NULL AND lease_expires_at < ?",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        self.count(1);
        let mut changes = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let from = parse_state(row.try_get("state")?)?;
            let attempts = row.try_get::<i64, _>("attempts")? as u32;
            let max_attempts = row.try_get::<i64, _>("max_attempts")? as u32;
            let node: Option<String> = row.try_get("node_id")?;
            let notify_url: Option<String> = row.try_get("notify_url")?;
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
            check(from, to, Actor::Feederd)?;
            sqlx::query(
                "UPDATE jobs SET state = ?, state_details = ?, run_after = ?, lease_token = NULL, lease_expires_at = NULL,
                   node_id = CASE WHEN ? = 'PENDING' THEN NULL ELSE node_id END, updated_at = ?, state_changed_at = ? WHERE id = ?",
            )
            .bind(to.as_str())
            .bind(&details)
            .bind(run_after)
            .bind(to.as_str())
            .bind(now)
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            insert_event(
                &mut tx,
                &id,
                to,
                Some(&details),
                notify_url.as_deref(),
                true,
                now,
            )
            .await?;
            self.count(2);
            changes.push((id, to));
        }
        tx.commit().await?;
        if !changes.is_empty() {
            self.jobs_signal.notify_waiters();
            self.events_signal.notify_waiters();
        }
        Ok(changes)
    }

    async fn abandon_stale(&self, now: i64, threshold_ms: i64) -> StoreResult<Vec<String>> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "SELECT id, state_details, notify_url FROM jobs WHERE state = 'PENDING' AND state_changed_at <= ?",
        )
        .bind(now - threshold_ms)
        .fetch_all(&mut *tx)
        .await?;
        self.count(1);
        let mut ids = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let details: Option<String> = row.try_get("state_details")?;
            let notify_url: Option<String> = row.try_get("notify_url")?;
            check(JobState::Pending, JobState::Abandoned, Actor::Feederd)?;
            // The seed keeps the previous details on ABANDONED.
            sqlx::query("UPDATE jobs SET state = 'ABANDONED', updated_at = ?, state_changed_at = ? WHERE id = ?")
                .bind(now)
                .bind(now)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            insert_event(
                &mut tx,
                &id,
                JobState::Abandoned,
                details.as_deref(),
                notify_url.as_deref(),
                true,
                now,
            )
            .await?;
            self.count(2);
            ids.push(id);
        }
        tx.commit().await?;
        if !ids.is_empty() {
            self.events_signal.notify_waiters();
        }
        Ok(ids)
    }

    async fn due_deliveries(&self, now: i64, limit: u32) -> StoreResult<Vec<EventRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events e WHERE delivery = 'pending'
               AND seq = (SELECT MIN(x.seq) FROM job_events x WHERE x.job_id = e.job_id AND x.delivery = 'pending')
               AND next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?"
        ))
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn record_delivery(
        &self,
        seq: i64,
        attempt: &AttemptRecord,
        outcome: DeliveryOutcome,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (event_seq, attempt, attempted_at, status_code, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)",
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
        sqlx::query("UPDATE job_events SET delivery = ?, next_attempt_at = ?, attempts = attempts + 1 WHERE seq = ?")
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
            "SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = ? AND delivery != 'none' ORDER BY seq"
        ))
        .bind(job_id)
        .fetch_all(&self.reader)
        .await?;
        let attempts = sqlx::query(
            "SELECT a.event_seq, a.attempt, a.attempted_at, a.status_code, a.error, a.duration_ms FROM delivery_attempts a
             JOIN job_events e ON e.seq = a.event_seq WHERE e.job_id = ? ORDER BY a.event_seq, a.attempt",
        )
        .bind(job_id)
        .fetch_all(&self.reader)
        .await?;
        let mut out = Vec::new();
        for row in &events {
            let event = event_from_row(row)?;
            let mut list = Vec::new();
            for a in attempts
                .iter()
                .filter(|a| a.get::<i64, _>("event_seq") == event.seq)
            {
                list.push(AttemptRecord {
                    attempt: a.try_get::<i64, _>("attempt")? as u32,
                    attempted_at: a.try_get("attempted_at")?,
                    status_code: a
                        .try_get::<Option<i64>, _>("status_code")?
                        .map(|c| c as u16),
                    error: a.try_get("error")?,
                    duration_ms: a.try_get::<i64, _>("duration_ms")? as u64,
                });
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
        rows.iter().map(node_from_row).collect()
    }

    async fn mark_lost_nodes(&self, now: i64, silent_for_ms: i64) -> StoreResult<Vec<String>> {
        self.count(1);
        let ids = sqlx::query_scalar(
            "UPDATE nodes SET state = 'lost' WHERE state IN ('active', 'draining') AND last_heartbeat_at < ? RETURNING id",
        )
        .bind(now - silent_for_ms)
        .fetch_all(&self.writer)
        .await?;
        Ok(ids)
    }

    fn jobs_signal(&self) -> Arc<Notify> {
        self.jobs_signal.clone()
    }

    fn events_signal(&self) -> Arc<Notify> {
        self.events_signal.clone()
    }

    fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}
