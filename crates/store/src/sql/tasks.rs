//! Tasks: reading them, counting them, and deriving a job of several tasks
//! from them after one changed ([`nommer_model::tasks`] holds the rules).

use super::rows::{self, TASK_COLUMNS};
use super::transition::{apply_job, apply_one, Guard, JobChange, Transition};
use super::{progress_json, Conn, SqlStore};
use crate::*;
use nommer_model::api::Progress;
use nommer_model::state::Actor;
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

    /// Off the (state, ...) index: only unfinished tasks are read.
    pub(super) async fn task_counts(&self) -> StoreResult<TaskCounts> {
        self.count(1);
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM tasks
             WHERE state IN ('PENDING', 'DOWNLOADING', 'ENCODING', 'UPLOADING') GROUP BY state",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut counts = TaskCounts::default();
        for row in &rows {
            let n = row.try_get::<i64, _>("n")? as u64;
            match rows::parse_state(row.try_get("state")?)? {
                JobState::Pending => counts.pending += n,
                _ => counts.running += n,
            }
        }
        Ok(counts)
    }

    /// After `changed`, a task of a job of several, changed by `actor`: the
    /// job's state and progress derived from all its tasks, written in the
    /// same transaction. The job's row is locked first, so two tasks
    /// finishing together are derived one after the other. When the job
    /// ends in ERROR or ABANDONED, its other tasks are canceled.
    pub(super) async fn settle(
        &self,
        conn: &mut Conn,
        changed: &TaskRecord,
        actor: Actor,
        now: i64,
    ) -> StoreResult<JobState> {
        let id = changed.job_id.as_str();
        let current = self.job_state_locked(conn, id).await?;
        let rows = sqlx::query("SELECT state, progress FROM tasks WHERE job_id = $1 ORDER BY task")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
        self.count(2);
        let mut states = Vec::with_capacity(rows.len());
        let mut progress: Vec<Option<Progress>> = Vec::with_capacity(rows.len());
        for row in &rows {
            states.push(rows::parse_state(row.try_get("state")?)?);
            let p: Option<String> = row.try_get("progress")?;
            progress.push(p.and_then(|p| serde_json::from_str(&p).ok()));
        }
        let derived = nommer_model::tasks::job_state(current, &states);
        let pairs: Vec<(JobState, Option<&Progress>)> = states
            .iter()
            .copied()
            .zip(progress.iter().map(Option::as_ref))
            .collect();
        let aggregate = progress_json(&nommer_model::tasks::job_progress(derived, &pairs));
        self.count(1);
        if derived == current {
            sqlx::query("UPDATE jobs SET progress = $1, updated_at = $2 WHERE id = $3")
                .bind(aggregate)
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            return Ok(current);
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
            self.cancel_siblings(conn, changed, now).await?;
        }
        Ok(derived)
    }

    /// The job failed: its PENDING tasks end CANCELED now, its leased ones
    /// are flagged for their workers.
    async fn cancel_siblings(
        &self,
        conn: &mut Conn,
        failed: &TaskRecord,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE tasks SET cancel_requested = 1, updated_at = $1
             WHERE job_id = $2 AND state IN ('DOWNLOADING', 'ENCODING', 'UPLOADING')",
        )
        .bind(now)
        .bind(&failed.job_id)
        .execute(&mut *conn)
        .await?;
        let pending: Vec<i64> =
            sqlx::query_scalar("SELECT task FROM tasks WHERE job_id = $1 AND state = 'PENDING'")
                .bind(&failed.job_id)
                .fetch_all(&mut *conn)
                .await?;
        self.count(2 + pending.len() as u64);
        let details = format!("canceled: task {} of the job failed", failed.task);
        for task in pending {
            let transition = Transition::to(JobState::Canceled, Some(&details));
            apply_one(
                &mut *conn,
                &failed.job_id,
                task as u32,
                Guard::Feederd,
                transition,
                now,
            )
            .await?;
        }
        Ok(())
    }
}
