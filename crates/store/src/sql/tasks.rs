//! Tasks: reading them, counting them, and deriving a job of several tasks
//! from them after one changed ([`nommer_model::tasks`] holds the rules).

use super::rows::{self, TASK_COLUMNS};
use super::transition::{apply_job, apply_one, Guard, JobChange, Transition};
use super::{progress_json, Conn, SqlStore};
use crate::*;
use nommer_model::api::Progress;
use nommer_model::state::Actor;
use nommer_model::tasks::TaskPlan;
use nommer_model::TaskKind;
use sqlx::Row;

impl SqlStore {
    pub(super) async fn tasks_of(&self, id: &str) -> StoreResult<Vec<TaskRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = $1 ORDER BY task"
        ))
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::task).collect()
    }

    /// Off two indexes: PENDING tasks (`tasks_claimable`) and leased ones
    /// (`tasks_lease_expiry`); no finished task is read.
    /// Off `tasks_claimable`'s state prefix: only tasks running now are read.
    pub(super) async fn leased_tasks(&self, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state IN ('DOWNLOADING', 'ENCODING', 'UPLOADING')
             ORDER BY job_id, task LIMIT $1"
        ))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::task).collect()
    }

    pub(super) async fn task_counts(&self) -> StoreResult<TaskCounts> {
        self.count(1);
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM tasks WHERE state = 'PENDING' AND run_after IS NOT NULL
                       AND queue IN (SELECT name FROM queues WHERE paused = 0)) AS pending,
                    (SELECT COUNT(*) FROM tasks WHERE lease_expires_at IS NOT NULL) AS running",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(TaskCounts {
            pending: row.try_get::<i64, _>("pending")? as u64,
            running: row.try_get::<i64, _>("running")? as u64,
        })
    }

    /// A task change through the one transition path, with its job in the
    /// same transaction: a job of one task follows by trigger, a job of
    /// several is settled here. What changed, or None when it was refused.
    pub(super) async fn change_task(
        &self,
        conn: &mut Conn,
        job_id: &str,
        task: u32,
        guard: Guard<'_>,
        transition: Transition<'_>,
        now: i64,
    ) -> StoreResult<Option<(TaskRecord, TaskChange)>> {
        self.change_task_adding(conn, job_id, task, guard, transition, &[], now)
            .await
    }

    /// [`change_task`](Self::change_task), and the tasks a finished plan
    /// adds to its job, before the job is settled.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn change_task_adding(
        &self,
        conn: &mut Conn,
        job_id: &str,
        task: u32,
        guard: Guard<'_>,
        transition: Transition<'_>,
        adds: &[TaskPlan],
        now: i64,
    ) -> StoreResult<Option<(TaskRecord, TaskChange)>> {
        self.count(1);
        let Some(changed) = apply_one(&mut *conn, job_id, task, guard, transition, now).await?
        else {
            return Ok(None);
        };
        let mut unblocked = false;
        if !adds.is_empty() {
            self.add_tasks(conn, &changed, adds, now).await?;
            unblocked = true;
        }
        let (job_state, released) = match changed.mirrored {
            true => (changed.state, false),
            false => self.settle(conn, &changed, guard.actor(), now).await?,
        };
        let change = TaskChange {
            job_id: changed.job_id.clone(),
            task: changed.task,
            state: changed.state,
            job_state,
            unblocked: unblocked || released,
        };
        Ok(Some((changed, change)))
    }

    /// A finished plan's tasks, numbered after the job's last, PENDING (or
    /// waiting), with the job's attempts.
    async fn add_tasks(
        &self,
        conn: &mut Conn,
        plan: &TaskRecord,
        adds: &[TaskPlan],
        now: i64,
    ) -> StoreResult<()> {
        if plan.kind != TaskKind::Plan || plan.state != JobState::Finished {
            return Err(StoreError::Other(format!(
                "only a finished plan task adds tasks (task {} is a {} task, {})",
                plan.task, plan.kind, plan.state
            )));
        }
        nommer_model::tasks::check_added(adds).map_err(StoreError::Other)?;
        // Locked, a task before its job as everywhere: a cancel that set the
        // flag first makes the plan's tasks end as they are added.
        let canceled: i64 = sqlx::query_scalar(&format!(
            "SELECT cancel_requested FROM jobs WHERE id = $1{}",
            self.dialect.for_update()
        ))
        .bind(&plan.job_id)
        .fetch_one(&mut *conn)
        .await?;
        let (state, finished) = match canceled != 0 {
            true => (JobState::Canceled, Some(now)),
            false => (JobState::Pending, None),
        };
        let first: i64 = sqlx::query_scalar("SELECT MAX(task) + 1 FROM tasks WHERE job_id = $1")
            .bind(&plan.job_id)
            .fetch_one(&mut *conn)
            .await?;
        self.count(adds.len() as u64 + 3);
        for (i, task) in adds.iter().enumerate() {
            let spec =
                serde_json::to_string(&task.spec).map_err(|e| StoreError::Other(e.to_string()))?;
            // What a task waits for is its kind's, whatever the report says.
            let waits = task.kind.waits() != nommer_model::kinds::Waits::Nothing;
            sqlx::query(
                "INSERT INTO tasks (job_id, task, kind, state, spec, max_attempts, run_after, mirrored, notifies,
                                    priority, queue, fair_seq, finished_at, updated_at, state_changed_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, 0, $8, priority, queue, fair_seq, $9, $10, $10
                 FROM jobs WHERE id = $1",
            )
            .bind(&plan.job_id)
            .bind(first + i as i64)
            .bind(task.kind.as_str())
            .bind(state.as_str())
            .bind(spec)
            .bind(plan.max_attempts as i64)
            .bind((!waits).then_some(now))
            .bind(plan.notifies as i64)
            .bind(finished)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(&format!(
            "UPDATE jobs SET tasks_total = (SELECT COUNT(*) FROM tasks WHERE job_id = $1 AND kind NOT IN ({}))
             WHERE id = $1",
            rows::kinds_not_counted()
        ))
        .bind(&plan.job_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// After `changed`, a task of a job of several, changed by `actor`: the
    /// job's state and progress derived from all its tasks, written in the
    /// same transaction, and its waiting tasks released when they may run
    /// (the bool: some were). The job's row is locked first, so two tasks
    /// finishing together are derived one after the other. When the job
    /// ends in ERROR or ABANDONED, its other tasks are canceled.
    pub(super) async fn settle(
        &self,
        conn: &mut Conn,
        changed: &TaskRecord,
        actor: Actor,
        now: i64,
    ) -> StoreResult<(JobState, bool)> {
        let id = changed.job_id.as_str();
        let current = self.job_state_locked(conn, id).await?;
        self.count(1);
        if !changed.kind.counts_for_job() {
            // A cleanup runs after its job ended, and leaves it as it ended.
            return Ok((current, false));
        }
        if current.is_terminal() {
            // The job ended meanwhile (another task failed): this one must
            // not go on, and the job stays as it ended. The last task to
            // stop lets the cleanup run.
            self.stop_task(conn, changed, current, now).await?;
            let (states, _) = self.kinds_and_states(conn, id).await?;
            let released = self.release(conn, id, current, &states, now).await?;
            return Ok((current, released));
        }
        let (states, progress) = self.kinds_and_states(conn, id).await?;
        let derived = nommer_model::tasks::job_state(current, &states);
        let triples: Vec<(TaskKind, JobState, Option<&Progress>)> = states
            .iter()
            .zip(progress.iter().map(Option::as_ref))
            .map(|((kind, state), p)| (*kind, *state, p))
            .collect();
        let aggregate = progress_json(&nommer_model::tasks::job_progress(derived, &triples));
        let released = self.release(conn, id, derived, &states, now).await?;
        self.count(1);
        if derived == current {
            sqlx::query("UPDATE jobs SET progress = $1, updated_at = $2 WHERE id = $3")
                .bind(aggregate)
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            return Ok((current, released));
        }
        let ends_badly = matches!(derived, JobState::Error | JobState::Abandoned);
        let change = JobChange {
            to: derived,
            details: if ends_badly || derived == JobState::Canceled {
                changed.state_details.as_deref()
            } else {
                None
            },
            error_code: changed.error_code.as_deref(),
            progress: aggregate,
            node_id: changed.node_id.as_deref(),
        };
        if apply_job(&mut *conn, id, actor, change, now)
            .await?
            .is_none()
        {
            return Err(StoreError::InvalidTransition {
                from: current,
                to: derived,
            });
        }
        if ends_badly {
            self.cancel_siblings(conn, changed, derived, now).await?;
        }
        Ok((derived, released))
    }

    /// Each task's kind, state and progress, in order.
    #[allow(clippy::type_complexity)]
    async fn kinds_and_states(
        &self,
        conn: &mut Conn,
        id: &str,
    ) -> StoreResult<(Vec<(TaskKind, JobState)>, Vec<Option<Progress>>)> {
        self.count(1);
        let rows =
            sqlx::query("SELECT kind, state, progress FROM tasks WHERE job_id = $1 ORDER BY task")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
        let mut states = Vec::with_capacity(rows.len());
        let mut progress = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let kind = kind.parse::<TaskKind>().map_err(StoreError::Other)?;
            states.push((kind, rows::parse_state(row.try_get("state")?)?));
            let p: Option<String> = row.try_get("progress")?;
            progress.push(p.and_then(|p| serde_json::from_str(&p).ok()));
        }
        Ok((states, progress))
    }

    /// Make the job's waiting tasks claimable that may now run
    /// ([`nommer_model::tasks::released`]); whether any were.
    pub(super) async fn release(
        &self,
        conn: &mut Conn,
        id: &str,
        job: JobState,
        tasks: &[(TaskKind, JobState)],
        now: i64,
    ) -> StoreResult<bool> {
        let mut any = false;
        for kind in nommer_model::tasks::released(job, tasks) {
            if !tasks
                .iter()
                .any(|(k, s)| *k == kind && *s == JobState::Pending)
            {
                continue;
            }
            self.count(1);
            let done = sqlx::query(
                "UPDATE tasks SET run_after = $1, updated_at = $1
                 WHERE job_id = $2 AND kind = $3 AND state = 'PENDING' AND run_after IS NULL",
            )
            .bind(now)
            .bind(id)
            .bind(kind.as_str())
            .execute(&mut *conn)
            .await?;
            any |= done.rows_affected() > 0;
        }
        Ok(any)
    }

    /// The job failed: its PENDING tasks end CANCELED now, its leased ones
    /// are flagged for their workers. The job's row is locked here, so only
    /// tasks no one else holds are taken (a task lock is never awaited under
    /// a job lock); a task changing meanwhile is stopped by its own `settle`,
    /// which finds the job ended.
    async fn cancel_siblings(
        &self,
        conn: &mut Conn,
        failed: &TaskRecord,
        ended: JobState,
        now: i64,
    ) -> StoreResult<()> {
        let others = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = $1 AND task != $2
               AND state IN ('PENDING', 'DOWNLOADING', 'ENCODING', 'UPLOADING') ORDER BY task{}",
            self.dialect.skip_locked()
        ))
        .bind(&failed.job_id)
        .bind(failed.task as i64)
        .fetch_all(&mut *conn)
        .await?;
        self.count(1);
        for row in &others {
            let task = rows::task(row)?;
            if task.kind.counts_for_job() {
                self.stop_task(conn, &task, ended, now).await?;
            }
        }
        Ok(())
    }

    /// A task of a job that has ended (`ended`): canceled at once while
    /// PENDING, flagged for its worker while leased.
    async fn stop_task(
        &self,
        conn: &mut Conn,
        task: &TaskRecord,
        ended: JobState,
        now: i64,
    ) -> StoreResult<()> {
        self.count(1);
        if task.state.is_leased() {
            sqlx::query("UPDATE tasks SET cancel_requested = 1, updated_at = $1 WHERE job_id = $2 AND task = $3")
                .bind(now)
                .bind(&task.job_id)
                .bind(task.task as i64)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        if task.state != JobState::Pending {
            return Ok(());
        }
        let details = format!("canceled: the job is {ended}");
        let transition = Transition::to(JobState::Canceled, Some(&details));
        apply_one(
            &mut *conn,
            &task.job_id,
            task.task,
            Guard::Feederd,
            transition,
            now,
        )
        .await?;
        Ok(())
    }
}
