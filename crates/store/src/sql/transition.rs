//! The one way a task, and through it a job, changes state: one UPDATE whose
//! WHERE admits only the states the transition table allows (and, for a
//! worker, its lease token). A job of one task follows it in the same
//! statement (the `tasks_mirror` triggers), and the job's event is written by
//! the `jobs_event` trigger. A job of several tasks changes through
//! [`apply_job`], which [`super::tasks`] calls with the state derived from all
//! of them.

use super::rows::{self, JOB_COLUMNS, TASK_COLUMNS};
use crate::*;
use nommer_model::state::Actor;
use sqlx::any::AnyArguments;
use sqlx::Arguments;

/// What happens to the lease columns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lease<'a> {
    Keep,
    /// Token and expiry cleared; the node stays for the record.
    End,
    /// Token, expiry and node cleared: the task is free for anyone.
    Free,
    /// A fresh token, made by the database, for this node until `expires`.
    Grant {
        node_id: &'a str,
        expires: i64,
    },
}

/// One state change, with what it does to the rest of the row.
pub struct Transition<'a> {
    pub to: JobState,
    /// None keeps the previous details on the row (ABANDONED, as the seed).
    pub details: Option<Option<&'a str>>,
    pub lease: Lease<'a>,
    pub run_after: Option<i64>,
    /// None keeps the progress; Some(None) clears it.
    pub progress: Option<Option<String>>,
    /// Added to attempts, floored at zero.
    pub attempts_delta: i64,
    /// Why the task ended in ERROR; None keeps the column as it is.
    pub error_code: Option<&'a str>,
    /// What the task made, as JSON; None keeps the column as it is.
    pub result: Option<String>,
}

impl<'a> Transition<'a> {
    pub fn to(to: JobState, details: Option<&'a str>) -> Self {
        Transition {
            to,
            details: Some(details),
            lease: Lease::Keep,
            run_after: None,
            progress: None,
            attempts_delta: 0,
            error_code: None,
            result: None,
        }
    }
}

pub fn check(from: JobState, to: JobState, actor: Actor) -> StoreResult<()> {
    if from.is_terminal() {
        return Err(StoreError::Terminal(from));
    }
    if !from.can_transition(to, actor) {
        return Err(StoreError::InvalidTransition { from, to });
    }
    Ok(())
}

/// Who may make the change: feederd on a row it has already read (and, on
/// PostgreSQL, locked), or the lease holder, fenced by its token.
#[derive(Clone, Copy)]
pub enum Guard<'a> {
    Feederd,
    Holder { token: &'a str, renew_until: i64 },
}

impl Guard<'_> {
    pub fn actor(self) -> Actor {
        match self {
            Guard::Feederd => Actor::Feederd,
            Guard::Holder { .. } => Actor::Worker,
        }
    }
}

/// Which tasks change.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    One {
        job_id: &'a str,
        task: u32,
    },
    /// The task only if it is its job's only one (the job follows it by
    /// trigger, so the change needs no transaction).
    Solo {
        job_id: &'a str,
        task: u32,
    },
    /// Up to `limit` claimable tasks in open queues with room, by priority
    /// (higher first) and then fair share, straight off the (state,
    /// priority, fair_seq, job_id, task) index; on PostgreSQL passing over
    /// rows another claim holds.
    Claimable {
        now: i64,
        limit: u32,
        /// The most taken from one queue with a `max_concurrency`; None when
        /// no queue has one (the claim then needs no counts or ranks).
        per_capped_queue: Option<u32>,
        lock: &'static str,
        random_token: &'static str,
    },
}

/// Positional parameters numbered as they are pushed, so the SQL names only
/// those it binds (PostgreSQL refuses unused ones).
#[derive(Default)]
pub struct Params {
    args: AnyArguments<'static>,
    count: usize,
}

impl Params {
    pub fn push<T>(&mut self, value: T) -> String
    where
        T: 'static + Send + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let _ = self.args.add(value);
        self.count += 1;
        format!("${}", self.count)
    }

    pub fn into_args(self) -> AnyArguments<'static> {
        self.args
    }
}

/// The states that may move to `to` by `actor`, as an SQL list.
fn sources(to: JobState, actor: Actor) -> Option<String> {
    let list: Vec<String> = JobState::sources(to, actor)
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// A task as a change left it.
pub struct Applied {
    pub task: TaskRecord,
    pub token: Option<String>,
    /// For a claim: what the lease carries of the job, and its sealed URIs.
    pub job: Option<(LeasedJob, String)>,
}

/// Apply `t` to the target tasks in one statement; each task as it now is,
/// with its lease token. Empty when no row is in a state that may move to
/// `t.to` (or, for a holder, the token no longer matches). A holder's change
/// also renews its lease. A claim also reads what the lease needs of each
/// task's job, in the same statement.
pub async fn apply<'e, E>(
    conn: E,
    target: Target<'_>,
    guard: Guard<'_>,
    t: Transition<'_>,
    now: i64,
) -> StoreResult<Vec<Applied>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let Some(sources) = sources(t.to, guard.actor()) else {
        return Ok(Vec::new());
    };
    let mut p = Params::default();
    let to = p.push(t.to.as_str());
    let at = p.push(now);
    let mut set = vec![
        format!("state = {to}"),
        format!("updated_at = {at}"),
        format!("state_changed_at = {at}"),
    ];
    if let Some(details) = t.details {
        set.push(format!(
            "state_details = {}",
            p.push(details.map(str::to_string))
        ));
    }
    let renew = match guard {
        Guard::Holder { renew_until, .. } => Some(renew_until),
        Guard::Feederd => None,
    };
    match t.lease {
        Lease::Keep => {
            if let Some(until) = renew {
                set.push(format!("lease_expires_at = {}", p.push(until)));
            }
        }
        Lease::End | Lease::Free => {
            set.push("lease_token = NULL".into());
            set.push("lease_expires_at = NULL".into());
            if t.lease == Lease::Free {
                set.push("node_id = NULL".into());
            }
        }
        Lease::Grant { node_id, expires } => {
            let Target::Claimable { random_token, .. } = target else {
                return Err(StoreError::Other(
                    "a lease is granted only by a claim".into(),
                ));
            };
            set.push(format!("lease_token = {random_token}"));
            set.push(format!("node_id = {}", p.push(node_id.to_string())));
            set.push(format!("lease_expires_at = {}", p.push(expires)));
            set.push(format!("started_at = COALESCE(started_at, {at})"));
        }
    }
    if t.to.is_terminal() {
        set.push(format!("finished_at = {at}"));
    }
    if let Some(run_after) = t.run_after {
        set.push(format!("run_after = {}", p.push(run_after)));
    }
    if let Some(progress) = t.progress {
        set.push(format!("progress = {}", p.push(progress)));
    }
    if t.attempts_delta != 0 {
        let delta = p.push(t.attempts_delta);
        set.push(format!(
            "attempts = CASE WHEN attempts + {delta} < 0 THEN 0 ELSE attempts + {delta} END"
        ));
    }
    if let Some(code) = t.error_code {
        set.push(format!("error_code = {}", p.push(code.to_string())));
    }
    if let Some(result) = t.result {
        set.push(format!("result = {}", p.push(result)));
    }
    let set = set.join(", ");
    let fence = match guard {
        Guard::Holder { token, .. } => {
            format!(" AND tasks.lease_token = {}", p.push(token.to_string()))
        }
        Guard::Feederd => String::new(),
    };
    let mut returning = format!(
        "RETURNING {}, tasks.lease_token AS granted",
        qualified_task_columns()
    );
    if let Target::Claimable { .. } = target {
        for column in LEASED_JOB_COLUMNS {
            returning.push_str(&format!(
                ", (SELECT {column} FROM jobs WHERE jobs.id = tasks.job_id) AS job_{column}"
            ));
        }
    }
    let sql = match target {
        Target::One { job_id, task } => format!(
            "UPDATE tasks SET {set} WHERE job_id = {} AND task = {} AND state IN ({sources}){fence} {returning}",
            p.push(job_id.to_string()),
            p.push(task as i64),
        ),
        Target::Solo { job_id, task } => format!(
            "UPDATE tasks SET {set} WHERE job_id = {} AND task = {} AND mirrored = 1 AND state IN ({sources}){fence} {returning}",
            p.push(job_id.to_string()),
            p.push(task as i64),
        ),
        Target::Claimable {
            now: claim_at,
            limit,
            per_capped_queue: None,
            lock,
            ..
        } => format!(
            "WITH picked AS (
               SELECT job_id AS picked_job, task AS picked_task FROM tasks
               WHERE state = 'PENDING' AND run_after <= {}
                 AND queue IN (SELECT name FROM queues WHERE paused = 0)
               ORDER BY priority DESC, fair_seq, job_id, task LIMIT {}{lock})
             UPDATE tasks SET {set} FROM picked
             WHERE tasks.job_id = picked.picked_job AND tasks.task = picked.picked_task AND tasks.state IN ({sources}){fence} {returning}",
            p.push(claim_at),
            p.push(limit as i64),
        ),
        Target::Claimable {
            now: claim_at,
            limit,
            per_capped_queue: Some(per_capped_queue),
            lock,
            ..
        } => {
            let (claim_at, capped) = (p.push(claim_at), p.push(per_capped_queue as i64));
            // Candidates are locked as they are read (on PostgreSQL passing
            // over those another claim holds, so concurrent claims rank
            // disjoint sets), enough of them that a queue without room left
            // rarely crowds out the rest; the UPDATE takes `limit` of them.
            let window = p.push(limit as i64 * 4 + 16);
            let limit = p.push(limit as i64);
            format!(
                "WITH busy AS (
                   SELECT queue AS busy_queue, COUNT(*) AS running FROM tasks
                   WHERE state IN ('DOWNLOADING', 'ENCODING', 'UPLOADING') GROUP BY queue),
                 open_queues AS (
                   SELECT q.name AS open_queue,
                     CASE WHEN q.max_concurrency IS NULL THEN {window}
                          WHEN q.max_concurrency - COALESCE(b.running, 0) > {capped} THEN {capped}
                          ELSE q.max_concurrency - COALESCE(b.running, 0) END AS room
                   FROM queues q LEFT JOIN busy b ON b.busy_queue = q.name WHERE q.paused = 0),
                 candidates AS (
                   SELECT job_id AS c_job, task AS c_task, queue AS c_queue, priority AS c_priority, fair_seq AS c_seq
                   FROM tasks WHERE state = 'PENDING' AND run_after <= {claim_at}
                     AND queue IN (SELECT open_queue FROM open_queues WHERE room > 0)
                   ORDER BY priority DESC, fair_seq, job_id, task LIMIT {window}{lock}),
                 ranked AS (
                   SELECT c_job, c_task, c_queue, c_priority, c_seq,
                     ROW_NUMBER() OVER (PARTITION BY c_queue ORDER BY c_priority DESC, c_seq, c_job, c_task) AS turn
                   FROM candidates),
                 picked AS (
                   SELECT c_job AS picked_job, c_task AS picked_task FROM ranked
                   JOIN open_queues ON open_queues.open_queue = ranked.c_queue
                   WHERE ranked.turn <= open_queues.room
                   ORDER BY c_priority DESC, c_seq, c_job, c_task LIMIT {limit})
                 UPDATE tasks SET {set} FROM picked
                 WHERE tasks.job_id = picked.picked_job AND tasks.task = picked.picked_task AND tasks.state IN ({sources}){fence} {returning}"
            )
        }
    };
    let claim = matches!(target, Target::Claimable { .. });
    let rows = sqlx::query_with(&sql, p.into_args())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            let task = rows::task(row)?;
            let job = match claim {
                true => Some(leased_job(row, &task.job_id)?),
                false => None,
            };
            Ok(Applied {
                task,
                token: sqlx::Row::try_get(row, "granted")?,
                job,
            })
        })
        .collect()
}

/// What a claim reads of each task's job.
const LEASED_JOB_COLUMNS: [&str; 3] = ["job_options", "max_runtime_s", "secret_uris"];

fn leased_job(row: &sqlx::any::AnyRow, id: &str) -> StoreResult<(LeasedJob, String)> {
    use sqlx::Row;
    let options: String = row.try_get("job_job_options")?;
    let job = LeasedJob {
        id: id.to_string(),
        job_options: serde_json::from_str(&options).unwrap_or_default(),
        max_runtime_s: row
            .try_get::<Option<i64>, _>("job_max_runtime_s")?
            .map(|s| s as u64),
    };
    Ok((job, row.try_get("job_secret_uris")?))
}

/// [`apply`] to one task; None when it was refused.
pub async fn apply_one<'e, E>(
    conn: E,
    job_id: &str,
    task: u32,
    guard: Guard<'_>,
    t: Transition<'_>,
    now: i64,
) -> StoreResult<Option<TaskRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut rows = apply(conn, Target::One { job_id, task }, guard, t, now).await?;
    Ok(rows.pop().map(|applied| applied.task))
}

/// TASK_COLUMNS, each named with its table (a claim's UPDATE also reads `picked`).
fn qualified_task_columns() -> String {
    TASK_COLUMNS
        .split(", ")
        .map(|c| format!("tasks.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A change of a job of several tasks to the state derived from them.
pub struct JobChange<'a> {
    pub to: JobState,
    pub details: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub progress: String,
    /// The node of the task whose change this is, shown as the job's.
    pub node_id: Option<&'a str>,
}

/// Apply a derived change to job `id`, by the actor whose task change caused
/// it; the job as it now is, or None when the table does not allow it.
pub async fn apply_job<'e, E>(
    conn: E,
    id: &str,
    actor: Actor,
    change: JobChange<'_>,
    now: i64,
) -> StoreResult<Option<JobRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let Some(sources) = sources(change.to, actor) else {
        return Ok(None);
    };
    let mut p = Params::default();
    let sql = format!(
        "UPDATE jobs SET state = {}, state_details = {}, error_code = COALESCE({}, error_code), progress = {},
           node_id = COALESCE({}, node_id), updated_at = {at}, state_changed_at = {at}
         WHERE id = {} AND state IN ({sources}) RETURNING {JOB_COLUMNS}",
        p.push(change.to.as_str()),
        p.push(change.details.map(str::to_string)),
        p.push(change.error_code.map(str::to_string)),
        p.push(change.progress),
        p.push(change.node_id.map(str::to_string)),
        p.push(id.to_string()),
        at = p.push(now),
    );
    let row = sqlx::query_with(&sql, p.into_args())
        .fetch_optional(conn)
        .await?;
    row.map(|row| rows::job(&row)).transpose()
}
