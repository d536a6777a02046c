//! The lease protocol on tasks: claim, renew, the holder's reports and
//! hand-backs, each fenced by job, task and token; and the reaper.

use super::rows::{self, TASK_COLUMNS};
use super::transition::{apply, check, Applied, Guard, Lease, Target, Transition};
use super::{jobs::merge_warnings, progress_json, Conn, SqlStore, BATCH};
use crate::*;
use nommer_model::api::Progress;
use nommer_model::state::Actor;
use nommer_model::NodeState;
use sqlx::Row;

impl SqlStore {
    /// Lease up to `max` tasks in one statement, which also reads what each
    /// lease needs of its job. The job follows in the same statement: a job
    /// of one task by the `tasks_mirror` triggers, a job of several (its
    /// first claim, PENDING -> DOWNLOADING) by `tasks_first_claim`.
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
        let capped = self.capped.load(std::sync::atomic::Ordering::Relaxed);
        let target = Target::Claimable {
            now,
            limit: max,
            per_capped_queue: capped.then(|| self.dialect.per_capped_queue(max)),
            lock: self.dialect.lock_claimed(),
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
        let serial = self.dialect == super::dialect::Dialect::Postgres && capped;
        let _one_at_a_time = match serial {
            true => Some(self.claims.lock().await),
            false => None,
        };
        let leased = apply(&self.writer, target, Guard::Feederd, transition, now).await?;
        self.count(1);
        let mut claimed = Vec::with_capacity(leased.len());
        for Applied { task, token, job } in leased {
            let Some((job, secret)) = job else {
                continue;
            };
            let secret = match crate::sealer::unseal(self.sealer.as_ref(), &secret) {
                Ok(secret) => secret,
                Err(e) => {
                    // This task can never run here; it must not block the others.
                    self.fail_claimed(&task, &e.to_string(), now).await?;
                    continue;
                }
            };
            let secret: serde_json::Value = serde_json::from_str(&secret).unwrap_or_default();
            claimed.push(Claimed {
                source_uri: secret["source"].as_str().unwrap_or_default().to_string(),
                dest_uri: secret["dest"].as_str().unwrap_or_default().to_string(),
                work_uri: secret["work"].as_str().map(str::to_string),
                token: token.unwrap_or_default(),
                job,
                task,
            });
        }
        claimed.sort_by(|a, b| (&a.job.id, a.task.task).cmp(&(&b.job.id, b.task.task)));
        if !claimed.is_empty() {
            self.changes_signal.notify_waiters();
        }
        if claimed.iter().any(|c| c.task.notifies) {
            self.events_signal.notify_waiters();
        }
        Ok(claimed)
    }

    /// A claimed task whose job's URIs this replica cannot open ends in ERROR.
    async fn fail_claimed(&self, task: &TaskRecord, details: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let transition = Transition {
            lease: Lease::End,
            ..Transition::to(JobState::Error, Some(details))
        };
        let changed = self
            .change_task(
                &mut tx,
                &task.job_id,
                task.task,
                Guard::Feederd,
                transition,
                now,
            )
            .await?;
        tx.commit().await?;
        if changed.is_some_and(|(_, change)| change.unblocked) {
            self.jobs_signal.notify_waiters();
        }
        Ok(())
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
            let (_, released) = self
                .settle(&mut tx, &rows::task(&task)?, Actor::Worker, now)
                .await?;
            tx.commit().await?;
            if released {
                self.jobs_signal.notify_waiters();
            }
        }
        Ok(statuses)
    }

    /// State changes by lease holders, applied in order in one transaction.
    pub(super) async fn reports(
        &self,
        reports: &[HolderReport<'_>],
        now: i64,
    ) -> StoreResult<Vec<StoreResult<TaskChange>>> {
        if let [report] = reports {
            if let Some(change) = self.solo_report(report, now).await? {
                return Ok(vec![Ok(change)]);
            }
        }
        // Applied in (job, task) order, so transactions that touch several
        // jobs lock them in one order and never wait on each other in a
        // cycle; a task's own reports keep their order (a stable sort).
        let mut order: Vec<usize> = (0..reports.len()).collect();
        order.sort_by_key(|&i| (reports[i].job_id, reports[i].task));
        let mut results: Vec<Option<StoreResult<TaskChange>>> = vec![None; reports.len()];
        let mut notify = false;
        let mut unblocked = false;
        let mut tx = self.writer.begin().await?;
        for i in order {
            let report = &reports[i];
            let details = report
                .details
                .map(|d| nommer_model::tail_chars(d, nommer_model::DETAILS_MAX_CHARS));
            let transition = reported(report, details.as_deref());
            let result = self.holder_change(&mut tx, report, transition, now).await?;
            notify |= result.as_ref().is_ok_and(|(_, notifies)| *notifies);
            unblocked |= result.as_ref().is_ok_and(|(change, _)| change.unblocked);
            results[i] = Some(result.map(|(change, _)| change));
        }
        tx.commit().await?;
        if unblocked {
            self.jobs_signal.notify_waiters();
        }
        let results: Vec<StoreResult<TaskChange>> = results.into_iter().flatten().collect();
        if notify {
            self.events_signal.notify_waiters();
        }
        if results.iter().any(Result::is_ok) {
            self.changes_signal.notify_waiters();
        }
        Ok(results)
    }

    /// A report alone, without warnings, on a job of one task: one statement
    /// and no transaction (the job follows its task by trigger). None when it
    /// is not such a report, or was refused: the full path then says why.
    async fn solo_report(
        &self,
        report: &HolderReport<'_>,
        now: i64,
    ) -> StoreResult<Option<TaskChange>> {
        if !report.warnings.is_empty() || report.result.is_some() || !report.adds.is_empty() {
            return Ok(None);
        }
        let details = report
            .details
            .map(|d| nommer_model::tail_chars(d, nommer_model::DETAILS_MAX_CHARS));
        let target = Target::Solo {
            job_id: report.job_id,
            task: report.task,
        };
        let guard = Guard::Holder {
            token: report.token,
            renew_until: now + self.policy.ttl_ms,
        };
        let transition = reported(report, details.as_deref());
        self.count(1);
        let Some(applied) = apply(&self.writer, target, guard, transition, now)
            .await?
            .pop()
        else {
            return Ok(None);
        };
        let task = applied.task;
        if task.notifies {
            self.events_signal.notify_waiters();
        }
        self.changes_signal.notify_waiters();
        Ok(Some(TaskChange {
            job_id: task.job_id,
            task: task.task,
            state: task.state,
            job_state: task.state,
            unblocked: false,
        }))
    }

    /// The lease holder hands the task back unfinished. A hand-back (a
    /// shutdown) does not count as an attempt; a node's failure (`failed`,
    /// the code to end with) counts, and waits the backoff like an expired
    /// lease. A task a cancel was waiting for (its worker stopped before a
    /// heartbeat brought the cancel) ends CANCELED instead of running again.
    pub(super) async fn hand_back(
        &self,
        id: &str,
        task: u32,
        token: &str,
        reason: &str,
        failed: Option<&str>,
        now: i64,
    ) -> StoreResult<TaskChange> {
        let mut tx = self.writer.begin().await?;
        let held = sqlx::query(&format!(
            "SELECT cancel_requested, attempts, max_attempts FROM tasks WHERE job_id = $1 AND task = $2 AND lease_token = $3{}",
            self.dialect.for_update()
        ))
        .bind(id)
        .bind(task as i64)
        .bind(token)
        .fetch_optional(&mut *tx)
        .await?;
        self.count(1);
        let (canceled, attempts, max_attempts) = match &held {
            Some(row) => (
                row.try_get::<i64, _>("cancel_requested")? != 0,
                row.try_get::<i64, _>("attempts")? as u32,
                row.try_get::<i64, _>("max_attempts")? as u32,
            ),
            None => (false, 0, 0),
        };
        let retry = failed.map(|_| self.retry_after(attempts, max_attempts, now));
        let (to, details) = match (canceled, retry) {
            (true, _) => (
                JobState::Canceled,
                format!("canceled; its worker handed it back ({reason}) before it stopped"),
            ),
            (false, None) => (
                JobState::Pending,
                format!("handed back by its worker: {reason}"),
            ),
            (false, Some(Some(at))) => (
                JobState::Pending,
                format!(
                    "{reason} (attempt {attempts} of {max_attempts}); retrying in {} s",
                    (at - now) / 1000
                ),
            ),
            (false, Some(None)) => (
                JobState::Error,
                format!("{reason} (attempt {attempts} of {max_attempts}); no attempts are left"),
            ),
        };
        let report = HolderReport {
            job_id: id,
            task,
            token,
            to,
            details: Some(&details),
            warnings: &[],
            error_code: failed.filter(|_| to == JobState::Error),
            result: None,
            adds: &[],
        };
        let transition = match (to, retry) {
            (JobState::Pending, None) => Transition {
                lease: Lease::Free,
                run_after: Some(now),
                progress: Some(None),
                attempts_delta: -1,
                ..Transition::to(to, Some(&details))
            },
            (JobState::Pending, Some(at)) => Transition {
                lease: Lease::Free,
                run_after: at,
                progress: Some(None),
                ..Transition::to(to, Some(&details))
            },
            _ => Transition {
                lease: Lease::End,
                error_code: report.error_code,
                ..Transition::to(to, Some(&details))
            },
        };
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
        let changed = self
            .change_task_adding(
                conn,
                report.job_id,
                report.task,
                guard,
                transition,
                report.adds,
                now,
            )
            .await?;
        let Some((task, change)) = changed else {
            return self.refused(conn, report).await;
        };
        if !report.warnings.is_empty() {
            self.add_warnings(conn, report.job_id, report.warnings, now)
                .await?;
        }
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
        // Locked: two tasks of one job may add warnings at once.
        let current: String = sqlx::query_scalar(&format!(
            "SELECT warnings FROM jobs WHERE id = $1{}",
            self.dialect.for_update()
        ))
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
            let mut expired: Vec<TaskRecord> =
                expired.iter().map(rows::task).collect::<StoreResult<_>>()?;
            // Jobs are locked (settled) in one order by every transaction.
            expired.sort_by(|a, b| (&a.job_id, a.task).cmp(&(&b.job_id, b.task)));
            for task in &expired {
                if let Some(change) = self.reap_one(&mut tx, task, now).await? {
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

    /// When a task that failed on its node (an expired lease, a full disk)
    /// runs again: after the backoff, or never once its attempts are spent.
    fn retry_after(&self, attempts: u32, max_attempts: u32, now: i64) -> Option<i64> {
        (attempts < max_attempts).then(|| now + self.policy.backoff_ms(attempts))
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
        } else if let Some(at) = self.retry_after(attempts, max_attempts, now) {
            (
                JobState::Pending,
                format!("{whose} expired on node {node} (attempt {attempts} of {max_attempts}); retrying in {} s", (at - now) / 1000),
                at,
            )
        } else {
            (
                JobState::Error,
                format!("{whose} expired on node {node} (attempt {attempts} of {max_attempts}); no attempts are left"),
                now,
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
            error_code: (to == JobState::Error)
                .then_some(nommer_model::FailureCode::LeaseExpired.as_str()),
            ..Transition::to(to, Some(&details))
        };
        let changed = self
            .change_task(
                conn,
                &task.job_id,
                task.task,
                Guard::Feederd,
                transition,
                now,
            )
            .await?;
        Ok(changed.map(|(_, change)| change))
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
        result: report.result.map(|r| r.to_string()),
        ..Transition::to(to, details)
    }
}
