//! The lease protocol on tasks: claim, renew, the holder's reports and
//! hand-backs, each fenced by job, task and token; and the reaper.

use super::rows::{self, JOB_COLUMNS, TASK_COLUMNS};
use super::transition::{apply, apply_one, check, Guard, Lease, Params, Target, Transition};
use super::{jobs::merge_warnings, progress_json, Conn, SqlStore, BATCH};
use crate::*;
use nommer_model::api::Progress;
use nommer_model::state::Actor;
use nommer_model::NodeState;
use sqlx::Row;
use std::collections::HashMap;

impl SqlStore {
    /// Lease up to `max` tasks in one statement, and read their jobs in
    /// another; a job of several tasks is derived in the same transaction.
    pub(super) async fn claim_tasks(
        &self,
        node: &NodeReport,
        max: u32,
        now: i64,
    ) -> StoreResult<Vec<Claimed>> {
        self.note_node(node, now).await?;
        if max == 0 || node.state != NodeState::Active {
            return Ok(Vec::new());
        }
        let progress = progress_json(&Progress {
            phase: "downloading".into(),
            ..Default::default()
        });
        let target = Target::Claimable {
            now,
            limit: max,
            skip_locked: self.dialect.skip_locked(),
            random_token: self.dialect.random_token(),
        };
        let transition = Transition {
            lease: Lease::Grant {
                node_id: &node.node_id,
                expires: now + self.policy.ttl_ms,
            },
            attempts_delta: 1,
            progress: Some(Some(progress)),
            ..Transition::to(JobState::Downloading, None)
        };
        let mut tx = self.writer.begin().await?;
        let leased = apply(&mut *tx, target, Guard::Feederd, transition, now).await?;
        self.count(1);
        if leased.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut jobs = self.jobs_with_secrets(&mut tx, &leased).await?;
        let mut claimed = Vec::with_capacity(leased.len());
        for (task, token) in leased {
            let Some((job, secret)) = jobs.get(&task.job_id).cloned() else {
                continue;
            };
            let secret = match crate::sealer::unseal(self.sealer.as_ref(), &secret) {
                Ok(secret) => secret,
                Err(e) => {
                    // This task can never run here; it must not block the others.
                    let details = e.to_string();
                    let transition = Transition {
                        lease: Lease::End,
                        ..Transition::to(JobState::Error, Some(&details))
                    };
                    let failed = apply_one(
                        &mut *tx,
                        &task.job_id,
                        task.task,
                        Guard::Feederd,
                        transition,
                        now,
                    )
                    .await?;
                    self.count(1);
                    if let Some(failed) = failed.filter(|t| !t.mirrored) {
                        self.settle(&mut tx, &failed, Actor::Feederd, now).await?;
                    }
                    continue;
                }
            };
            if !task.mirrored {
                self.settle(&mut tx, &task, Actor::Feederd, now).await?;
            }
            let secret: serde_json::Value = serde_json::from_str(&secret).unwrap_or_default();
            claimed.push(Claimed {
                source_uri: secret["source"].as_str().unwrap_or_default().to_string(),
                dest_uri: secret["dest"].as_str().unwrap_or_default().to_string(),
                token: token.unwrap_or_default(),
                job: job.clone(),
                task,
            });
        }
        tx.commit().await?;
        jobs.clear();
        claimed.sort_by(|a, b| (&a.job.id, a.task.task).cmp(&(&b.job.id, b.task.task)));
        if !claimed.is_empty() {
            self.changes_signal.notify_waiters();
        }
        if claimed.iter().any(|c| c.task.notifies) {
            self.events_signal.notify_waiters();
        }
        Ok(claimed)
    }

    /// The jobs of the leased tasks, with their sealed URIs, in one statement.
    async fn jobs_with_secrets(
        &self,
        conn: &mut Conn,
        leased: &[(TaskRecord, Option<String>)],
    ) -> StoreResult<HashMap<String, (JobRecord, String)>> {
        let mut p = Params::default();
        let mut ids: Vec<&str> = leased.iter().map(|(t, _)| t.job_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let list: Vec<String> = ids.iter().map(|id| p.push(id.to_string())).collect();
        let sql = format!(
            "SELECT {JOB_COLUMNS}, secret_uris FROM jobs WHERE id IN ({})",
            list.join(", ")
        );
        let rows = sqlx::query_with(&sql, p.into_args())
            .fetch_all(&mut *conn)
            .await?;
        self.count(1);
        rows.iter()
            .map(|row| {
                let job = rows::job(row)?;
                Ok((job.id.clone(), (job, row.try_get("secret_uris")?)))
            })
            .collect()
    }

    /// Renew the node's leases and record their progress; no transaction:
    /// each renewal stands on its own.
    pub(super) async fn renew(
        &self,
        node: &NodeReport,
        leases: &[LeaseReport],
        now: i64,
    ) -> StoreResult<Vec<LeaseStatus>> {
        self.upsert_node(node, now).await?;
        self.count(leases.len() as u64);
        let expires = now + self.policy.ttl_ms;
        let mut statuses = Vec::with_capacity(leases.len());
        let mut several = Vec::new();
        for lease in leases {
            // A lease past its expiry that the reaper has not taken yet is
            // still this worker's: renewing it is what the restart grace is for.
            let row = sqlx::query(
                "UPDATE tasks SET lease_expires_at = $1, progress = COALESCE($2, progress), updated_at = $3
                 WHERE job_id = $4 AND task = $5 AND lease_token = $6 RETURNING cancel_requested, mirrored",
            )
            .bind(expires)
            .bind(lease.progress.as_ref().map(progress_json))
            .bind(now)
            .bind(&lease.job_id)
            .bind(lease.task as i64)
            .bind(&lease.token)
            .fetch_optional(&self.writer)
            .await?;
            let status = match row {
                Some(row) => {
                    if row.try_get::<i64, _>("mirrored")? == 0 && lease.progress.is_some() {
                        several.push(lease);
                    }
                    LeaseStatus {
                        job_id: lease.job_id.clone(),
                        task: lease.task,
                        valid: true,
                        remaining_ms: self.policy.ttl_ms as u64,
                        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
                    }
                }
                None => LeaseStatus {
                    job_id: lease.job_id.clone(),
                    task: lease.task,
                    valid: false,
                    remaining_ms: 0,
                    cancel_requested: false,
                },
            };
            statuses.push(status);
        }
        // A job of several tasks shows their combined progress.
        for lease in several {
            let mut tx = self.writer.begin().await?;
            let task = sqlx::query(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = $1 AND task = $2"
            ))
            .bind(&lease.job_id)
            .bind(lease.task as i64)
            .fetch_one(&mut *tx)
            .await?;
            self.count(1);
            self.settle(&mut tx, &rows::task(&task)?, Actor::Worker, now)
                .await?;
            tx.commit().await?;
        }
        Ok(statuses)
    }

    /// State changes by lease holders, applied in order in one transaction.
    pub(super) async fn reports(
        &self,
        reports: &[HolderReport<'_>],
        now: i64,
    ) -> StoreResult<Vec<StoreResult<TaskChange>>> {
        let mut results = Vec::with_capacity(reports.len());
        let mut notify = false;
        let mut tx = self.writer.begin().await?;
        for report in reports {
            let details = report
                .details
                .map(|d| nommer_model::tail_chars(d, nommer_model::DETAILS_MAX_CHARS));
            let transition = reported(report, details.as_deref());
            let result = self.holder_change(&mut tx, report, transition, now).await?;
            notify |= result.as_ref().is_ok_and(|(_, notifies)| *notifies);
            results.push(result.map(|(change, _)| change));
        }
        tx.commit().await?;
        if notify {
            self.events_signal.notify_waiters();
        }
        if results.iter().any(Result::is_ok) {
            self.changes_signal.notify_waiters();
        }
        Ok(results)
    }

    /// The lease holder hands the task back unfinished; the attempt does not count.
    pub(super) async fn hand_back(
        &self,
        id: &str,
        task: u32,
        token: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<TaskChange> {
        let details = format!("handed back by its worker: {reason}");
        let report = HolderReport {
            job_id: id,
            task,
            token,
            to: JobState::Pending,
            details: Some(&details),
            warnings: &[],
            error_code: None,
        };
        let transition = Transition {
            lease: Lease::Free,
            run_after: Some(now),
            progress: Some(None),
            attempts_delta: -1,
            ..Transition::to(JobState::Pending, Some(&details))
        };
        let mut tx = self.writer.begin().await?;
        let (change, _) = self
            .holder_change(&mut tx, &report, transition, now)
            .await??;
        tx.commit().await?;
        self.jobs_signal.notify_waiters();
        self.events_signal.notify_waiters();
        self.changes_signal.notify_waiters();
        Ok(change)
    }

    /// A change by the lease holder, fenced: refused (the inner Err) unless
    /// `token` still holds the task's lease. One statement for a job of one
    /// task; two more when the report adds warnings to the job, or to say
    /// why it was refused.
    async fn holder_change(
        &self,
        conn: &mut Conn,
        report: &HolderReport<'_>,
        transition: Transition<'_>,
        now: i64,
    ) -> StoreResult<StoreResult<(TaskChange, bool)>> {
        let guard = Guard::Holder {
            token: report.token,
            renew_until: now + self.policy.ttl_ms,
        };
        self.count(1);
        let changed = apply_one(
            &mut *conn,
            report.job_id,
            report.task,
            guard,
            transition,
            now,
        )
        .await?;
        let Some(task) = changed else {
            return self.refused(conn, report).await;
        };
        if !report.warnings.is_empty() {
            self.add_warnings(conn, report.job_id, report.warnings, now)
                .await?;
        }
        let job_state = match task.mirrored {
            true => task.state,
            false => self.settle(conn, &task, Actor::Worker, now).await?,
        };
        let change = TaskChange {
            job_id: task.job_id.clone(),
            task: task.task,
            state: task.state,
            job_state,
        };
        Ok(Ok((change, task.notifies)))
    }

    /// Why a holder's change was refused.
    async fn refused(
        &self,
        conn: &mut Conn,
        report: &HolderReport<'_>,
    ) -> StoreResult<StoreResult<(TaskChange, bool)>> {
        self.count(1);
        let row =
            sqlx::query("SELECT state, lease_token FROM tasks WHERE job_id = $1 AND task = $2")
                .bind(report.job_id)
                .bind(report.task as i64)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(row) = row else {
            return Ok(Err(StoreError::NotFound));
        };
        let token: Option<String> = row.try_get("lease_token")?;
        if token.as_deref() != Some(report.token) {
            return Ok(Err(StoreError::LeaseLost));
        }
        let state = rows::parse_state(row.try_get("state")?)?;
        Ok(check(state, report.to, Actor::Worker).and(Err(StoreError::LeaseLost)))
    }

    async fn add_warnings(
        &self,
        conn: &mut Conn,
        id: &str,
        added: &[String],
        now: i64,
    ) -> StoreResult<()> {
        self.count(1);
        let current: String = sqlx::query_scalar("SELECT warnings FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        let Some(merged) = merge_warnings(&current, added) else {
            return Ok(());
        };
        self.count(1);
        sqlx::query("UPDATE jobs SET warnings = $1, updated_at = $2 WHERE id = $3")
            .bind(merged)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Tasks whose lease expired: retried after a backoff, or ERROR when out
    /// of attempts, or CANCELED when a cancel was waiting for them. A batch
    /// per transaction, the longest expired first.
    pub(super) async fn reap(&self, now: i64) -> StoreResult<Vec<TaskChange>> {
        let mut changes = Vec::new();
        // Every reaped task leaves the expired set, so the loop ends; the
        // bound is a guard against a store that refuses the changes.
        for _ in 0..64 {
            let mut tx = self.writer.begin().await?;
            let expired = sqlx::query(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE lease_expires_at IS NOT NULL AND lease_expires_at < $1
                 ORDER BY lease_expires_at LIMIT $2{}",
                self.dialect.skip_locked()
            ))
            .bind(now)
            .bind(BATCH as i64)
            .fetch_all(&mut *tx)
            .await?;
            self.count(1);
            let batch = expired.len();
            for row in &expired {
                let task = rows::task(row)?;
                if let Some(change) = self.reap_one(&mut tx, &task, now).await? {
                    changes.push(change);
                }
            }
            tx.commit().await?;
            if batch < BATCH as usize {
                break;
            }
        }
        if !changes.is_empty() {
            self.jobs_signal.notify_waiters();
            self.events_signal.notify_waiters();
            self.changes_signal.notify_waiters();
        }
        Ok(changes)
    }

    async fn reap_one(
        &self,
        conn: &mut Conn,
        task: &TaskRecord,
        now: i64,
    ) -> StoreResult<Option<TaskChange>> {
        let (attempts, max_attempts) = (task.attempts, task.max_attempts);
        let node = task.node_id.as_deref().unwrap_or("?");
        let whose = match task.mirrored {
            true => "The job's lease".to_string(),
            false => format!("The lease of task {}", task.task),
        };
        let (to, details, run_after) = if task.cancel_requested {
            (
                JobState::Canceled,
                format!("canceled; node {node} stopped answering before it confirmed"),
                now,
            )
        } else if attempts >= max_attempts {
            (
                JobState::Error,
                format!("{whose} expired on node {node} (attempt {attempts} of {max_attempts}); no attempts are left"),
                now,
            )
        } else {
            let wait = self.policy.backoff_ms(attempts);
            (
                JobState::Pending,
                format!("{whose} expired on node {node} (attempt {attempts} of {max_attempts}); retrying in {} s", wait / 1000),
                now + wait,
            )
        };
        check(task.state, to, Actor::Feederd)?;
        let transition = Transition {
            lease: if to == JobState::Pending {
                Lease::Free
            } else {
                Lease::End
            },
            run_after: Some(run_after),
            ..Transition::to(to, Some(&details))
        };
        self.count(1);
        let Some(changed) = apply_one(
            &mut *conn,
            &task.job_id,
            task.task,
            Guard::Feederd,
            transition,
            now,
        )
        .await?
        else {
            return Ok(None);
        };
        let job_state = match changed.mirrored {
            true => changed.state,
            false => self.settle(conn, &changed, Actor::Feederd, now).await?,
        };
        Ok(Some(TaskChange {
            job_id: changed.job_id,
            task: changed.task,
            state: changed.state,
            job_state,
        }))
    }
}

/// What a worker's report does to the task besides the state.
fn reported<'a>(report: &HolderReport<'a>, details: Option<&'a str>) -> Transition<'a> {
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
        error_code: report.error_code.filter(|_| to == JobState::Error),
        ..Transition::to(to, details)
    }
}
