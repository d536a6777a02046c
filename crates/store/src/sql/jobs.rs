//! Jobs as clients see them: submit, read, list, count, cancel, and the
//! abandon check. Their state changes go through their tasks.

use super::rows::{self, JOB_COLUMNS, TASK_COLUMNS};
use super::transition::{check, Guard, Transition};
use super::{inserts, SqlStore, BATCH};
use crate::*;
use nommer_model::state::Actor;
use sqlx::Row;
use std::collections::BTreeMap;

/// The states a job may still leave, as an SQL list. Unfinished jobs are
/// found through their unfinished tasks (`tasks_claimable`, state first), so
/// counting them costs nothing for the jobs that have ended.
const UNFINISHED: &str = "'PENDING', 'DOWNLOADING', 'ENCODING', 'UPLOADING'";

impl SqlStore {
    fn seal(&self, job: &NewJob) -> StoreResult<inserts::Sealed> {
        if job.tasks.is_empty() {
            return Err(StoreError::Other("a job needs at least one task".into()));
        }
        let secret_uris = crate::sealer::seal(
            self.sealer.as_ref(),
            &serde_json::json!({"source": job.source_uri, "dest": job.dest_uri, "work": job.work_uri})
                .to_string(),
        );
        Ok(inserts::Sealed {
            job: job.clone(),
            secret_uris,
            notify_url: job
                .notify_url
                .as_deref()
                .map(|url| crate::sealer::seal(self.sealer.as_ref(), url)),
        })
    }

    pub(super) async fn insert(&self, job: &NewJob) -> StoreResult<JobRecord> {
        let sealed = self.seal(job)?;
        self.inserter.insert(sealed).await
    }

    /// Insert a job under an idempotency key in one transaction: the key's
    /// row is written first, so of two submits with one key (on any
    /// replicas) the second waits for the first and then finds its job.
    pub(super) async fn insert_once(
        &self,
        job: &NewJob,
        key: &IdempotencyKey,
    ) -> StoreResult<Inserted> {
        let sealed = self.seal(job)?;
        let mut tx = self.writer.begin().await?;
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (scope, key, digest, job_id, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (scope, key) DO UPDATE SET digest = excluded.digest, job_id = excluded.job_id,
               created_at = excluded.created_at
             WHERE idempotency_keys.created_at < $6 RETURNING job_id",
        )
        .bind(&key.scope)
        .bind(&key.key)
        .bind(&key.digest)
        .bind(&job.id)
        .bind(job.created_at)
        .bind(key.expired_before)
        .fetch_optional(&mut *tx)
        .await?;
        self.count(1);
        if taken.is_none() {
            let row = sqlx::query(
                "SELECT digest, job_id FROM idempotency_keys WHERE scope = $1 AND key = $2",
            )
            .bind(&key.scope)
            .bind(&key.key)
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            self.count(1);
            let (digest, id): (String, String) = (row.try_get("digest")?, row.try_get("job_id")?);
            if digest != key.digest {
                return Ok(Inserted::Conflict);
            }
            let job = self.job(&id).await?.ok_or(StoreError::NotFound)?;
            return Ok(Inserted::Replayed(job));
        }
        let mut inserted = inserts::insert_all(&mut tx, std::slice::from_ref(&sealed)).await?;
        tx.commit().await?;
        self.count(2);
        self.jobs_signal.notify_waiters();
        inserted
            .remove(&job.id)
            .map(Inserted::New)
            .ok_or_else(|| StoreError::Other("the INSERT returned no row for a job".into()))
    }

    /// What a retry needs of a job: its URIs unsealed, and its planned tasks.
    pub(super) async fn resubmission(&self, id: &str) -> StoreResult<Option<Resubmission>> {
        self.count(1);
        let Some(row) =
            sqlx::query("SELECT secret_uris, notify_url, tasks_plan FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?
        else {
            return Ok(None);
        };
        let unseal = |sealed: &str| {
            crate::sealer::unseal(self.sealer.as_ref(), sealed)
                .map_err(|e| StoreError::Other(e.to_string()))
        };
        let uris: serde_json::Value =
            serde_json::from_str(&unseal(row.try_get("secret_uris")?)?).unwrap_or_default();
        let notify_url = match row.try_get::<Option<String>, _>("notify_url")? {
            Some(sealed) => Some(unseal(&sealed)?),
            None => None,
        };
        let plan: String = row.try_get("tasks_plan")?;
        Ok(Some(Resubmission {
            source_uri: uris["source"].as_str().unwrap_or_default().to_string(),
            dest_uri: uris["dest"].as_str().unwrap_or_default().to_string(),
            chunked: !uris["work"].is_null(),
            notify_url,
            tasks: serde_json::from_str(&plan).map_err(|e| StoreError::Other(e.to_string()))?,
        }))
    }

    pub(super) async fn job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        self.count(1);
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    pub(super) async fn running(
        &self,
        owner: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<JobRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (
               SELECT job_id FROM tasks WHERE state IN ('DOWNLOADING', 'ENCODING', 'UPLOADING'))
               AND ($1 IS NULL OR submitted_by = $1) ORDER BY id DESC LIMIT $2"
        ))
        .bind(owner)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::job).collect()
    }

    pub(super) async fn jobs(&self, query: &JobQuery<'_>) -> StoreResult<Vec<JobRecord>> {
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

    /// Unfinished jobs counted off the index; finished ones from their
    /// totals, after folding in the jobs that ended since the last count.
    pub(super) async fn counts(&self) -> StoreResult<Vec<(JobState, u64)>> {
        let mut tx = self.writer.begin().await?;
        let ended: Vec<String> = sqlx::query_scalar("DELETE FROM job_total_deltas RETURNING state")
            .fetch_all(&mut *tx)
            .await?;
        let mut fold: BTreeMap<String, i64> = BTreeMap::new();
        for state in ended {
            *fold.entry(state).or_default() += 1;
        }
        for (state, n) in &fold {
            sqlx::query(
                "INSERT INTO job_totals (state, n) VALUES ($1, $2)
                 ON CONFLICT (state) DO UPDATE SET n = job_totals.n + excluded.n",
            )
            .bind(state)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let rows = sqlx::query(&format!(
            "SELECT state, COUNT(*) AS n FROM jobs WHERE state IN ({UNFINISHED})
               AND id IN (SELECT job_id FROM tasks WHERE state IN ({UNFINISHED})) GROUP BY state
             UNION ALL SELECT state, n FROM job_totals WHERE n != 0
             UNION ALL SELECT state, COUNT(*) AS n FROM job_total_deltas GROUP BY state"
        ))
        .fetch_all(&self.reader)
        .await?;
        self.count(2 + fold.len() as u64);
        // A job that ended after the fold is in the deltas still: one read
        // sees every job exactly once.
        // Summed signed: retention takes pruned jobs off the totals, which
        // may go below zero until the deltas of their ending are folded in.
        let mut counts: BTreeMap<&'static str, (JobState, i64)> = BTreeMap::new();
        for row in &rows {
            let state = rows::parse_state(row.try_get("state")?)?;
            counts.entry(state.as_str()).or_insert((state, 0)).1 += row.try_get::<i64, _>("n")?;
        }
        Ok(counts
            .into_values()
            .filter(|(_, n)| *n > 0)
            .map(|(state, n)| (state, n as u64))
            .collect())
    }

    /// Cancel: every PENDING task ends at once; every leased one is flagged
    /// for its worker, which stops and reports CANCELED (or the reaper ends
    /// it). Tasks are locked before the job, as every change does.
    pub(super) async fn cancel_job(&self, id: &str, now: i64) -> StoreResult<JobRecord> {
        // The flag first, on its own: a plan finishing at the same moment
        // either sees it (and adds its tasks canceled) or committed its
        // tasks before, where the read below finds them.
        self.count(1);
        sqlx::query(&format!(
            "UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE id = $2 AND state IN ({UNFINISHED})"
        ))
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await?;
        let mut tx = self.writer.begin().await?;
        // Tasks that do not count for the job (its cleanup) are neither
        // changed nor locked here: a task that ends the job releases them
        // while it holds the job's row.
        let tasks = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = $1 AND kind NOT IN ({}) ORDER BY task{}",
            super::rows::kinds_not_counted(),
            self.dialect.for_update()
        ))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let tasks: Vec<TaskRecord> = tasks.iter().map(rows::task).collect::<StoreResult<_>>()?;
        let current = self.job_state_locked(&mut tx, id).await?;
        if current.is_terminal() {
            return Err(StoreError::Terminal(current));
        }
        self.count(2);
        // The worker sees the flag in its next heartbeat answer and stops.
        sqlx::query(&format!(
            "UPDATE tasks SET cancel_requested = 1, updated_at = $1
             WHERE job_id = $2 AND state IN ('DOWNLOADING', 'ENCODING', 'UPLOADING') AND kind NOT IN ({})",
            super::rows::kinds_not_counted()
        ))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let pending = tasks.iter().filter(|t| t.state == JobState::Pending);
        for task in pending {
            check(task.state, JobState::Canceled, Actor::Feederd)?;
            let transition =
                Transition::to(JobState::Canceled, Some("canceled before a worker took it"));
            self.change_task(&mut tx, id, task.task, Guard::Feederd, transition, now)
                .await?;
        }
        let record = super::fetch_job(&mut tx, id).await?;
        self.count(1);
        tx.commit().await?;
        if record.state == JobState::Canceled {
            self.jobs_signal.notify_waiters();
            self.events_signal.notify_waiters();
            self.changes_signal.notify_waiters();
        }
        Ok(record)
    }

    /// The job's state, its row locked until the transaction ends.
    pub(super) async fn job_state_locked(
        &self,
        conn: &mut super::Conn,
        id: &str,
    ) -> StoreResult<JobState> {
        let state: Option<String> = sqlx::query_scalar(&format!(
            "SELECT state FROM jobs WHERE id = $1{}",
            self.dialect.for_update()
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        rows::parse_state(&state.ok_or(StoreError::NotFound)?)
    }

    /// PENDING jobs untouched for `threshold_ms` become ABANDONED, a batch
    /// per transaction. A task claimed meanwhile is left alone: the change
    /// admits only PENDING tasks.
    pub(super) async fn abandon(&self, now: i64, threshold_ms: i64) -> StoreResult<Vec<String>> {
        let mut abandoned = Vec::new();
        // Each batch moves its jobs out of PENDING (or finds them claimed),
        // so the loop ends; the bound is a guard against a store that refuses.
        for _ in 0..64 {
            let mut tx = self.writer.begin().await?;
            let ids: Vec<String> = sqlx::query_scalar(
                // A paused queue's jobs wait on purpose; one resumed lately
                // gets the threshold again from its resume.
                "SELECT id FROM jobs WHERE state = 'PENDING' AND state_changed_at <= $1
                   AND queue IN (SELECT name FROM queues WHERE paused = 0 AND updated_at <= $1)
                 ORDER BY id LIMIT $2",
            )
            .bind(now - threshold_ms)
            .bind(BATCH as i64)
            .fetch_all(&mut *tx)
            .await?;
            self.count(1);
            for id in &ids {
                let pending: Vec<i64> = sqlx::query_scalar(&format!(
                    "SELECT task FROM tasks WHERE job_id = $1 AND state = 'PENDING' AND run_after IS NOT NULL ORDER BY task{}",
                    self.dialect.skip_locked()
                ))
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                self.count(1);
                let mut ended = false;
                for task in pending {
                    // The seed keeps the previous details on ABANDONED.
                    let transition = Transition {
                        details: None,
                        ..Transition::to(JobState::Abandoned, None)
                    };
                    let changed = self
                        .change_task(&mut tx, id, task as u32, Guard::Feederd, transition, now)
                        .await?;
                    ended |= changed.is_some();
                }
                if ended {
                    abandoned.push(id.clone());
                }
            }
            tx.commit().await?;
            if ids.len() < BATCH as usize {
                break;
            }
        }
        if !abandoned.is_empty() {
            self.jobs_signal.notify_waiters();
            self.events_signal.notify_waiters();
            self.changes_signal.notify_waiters();
        }
        Ok(abandoned)
    }
}

/// `existing` (a JSON list) with `added` appended, without repeats; None when
/// nothing is new.
pub(super) fn merge_warnings(existing: &str, added: &[String]) -> Option<String> {
    let mut list: Vec<String> = serde_json::from_str(existing).unwrap_or_default();
    let before = list.len();
    for w in added {
        if !list.contains(w) {
            list.push(w.clone());
        }
    }
    (list.len() > before).then(|| serde_json::to_string(&list).unwrap_or_default())
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
