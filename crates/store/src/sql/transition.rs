//! The one way a job changes state: one UPDATE whose WHERE admits only the
//! states the transition table allows (and, for a worker, its lease token).
//! The database appends the event in the same statement (a trigger).

use super::rows::JOB_COLUMNS;
use crate::*;
use nommer_model::state::Actor;

/// What happens to the lease columns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Keep,
    /// Token and expiry cleared; the node stays for the record.
    End,
    /// Token, expiry and node cleared: the job is free for anyone.
    Free,
}

/// One state change, with what it does to the rest of the row.
pub struct Transition<'a> {
    pub to: JobState,
    /// None keeps the previous details on the row (ABANDONED, as the seed).
    pub details: Option<Option<&'a str>>,
    pub lease: Lease,
    pub run_after: Option<i64>,
    /// None keeps the progress; Some(None) clears it.
    pub progress: Option<Option<String>>,
    /// The merged warning list, when it changed.
    pub warnings: Option<String>,
    /// Added to attempts, floored at zero.
    pub attempts_delta: i64,
    /// Why the job ended in ERROR; None keeps the column as it is.
    pub error_code: Option<&'a str>,
}

impl<'a> Transition<'a> {
    pub fn to(to: JobState, details: Option<&'a str>) -> Self {
        Transition {
            to,
            details: Some(details),
            lease: Lease::Keep,
            run_after: None,
            progress: None,
            warnings: None,
            attempts_delta: 0,
            error_code: None,
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

/// Apply `t` to job `id` in one statement; the job as it now is, or None when
/// the row is not in a state that may move to `t.to` (or, for a holder, the
/// token no longer matches). The event is written by the `jobs_event` trigger
/// in the same statement. A holder's change also renews its lease.
pub async fn apply<'e, E>(
    conn: E,
    id: &str,
    guard: Guard<'_>,
    t: Transition<'_>,
    now: i64,
) -> StoreResult<Option<JobRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (actor, fence, renew_until) = match guard {
        Guard::Feederd => (Actor::Feederd, "", None),
        Guard::Holder {
            token: _,
            renew_until,
        } => (Actor::Worker, " AND lease_token = $15", Some(renew_until)),
    };
    let sources: Vec<String> = JobState::sources(t.to, actor)
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    if sources.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "UPDATE jobs SET state = $1,
           state_details = CASE WHEN $2 THEN $3 ELSE state_details END,
           lease_token = CASE WHEN $4 THEN NULL ELSE lease_token END,
           lease_expires_at = CASE WHEN $4 THEN NULL ELSE COALESCE($13, lease_expires_at) END,
           node_id = CASE WHEN $5 THEN NULL ELSE node_id END,
           run_after = COALESCE($6, run_after),
           progress = CASE WHEN $7 THEN $8 ELSE progress END,
           warnings = COALESCE($9, warnings),
           attempts = CASE WHEN attempts + $10 < 0 THEN 0 ELSE attempts + $10 END,
           error_code = COALESCE($14, error_code),
           updated_at = $11, state_changed_at = $11
         WHERE id = $12 AND state IN ({}){fence} RETURNING {JOB_COLUMNS}",
        sources.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(t.to.as_str())
        .bind(t.details.is_some())
        .bind(t.details.flatten())
        .bind(t.lease != Lease::Keep)
        .bind(t.lease == Lease::Free)
        .bind(t.run_after)
        .bind(t.progress.is_some())
        .bind(t.progress.flatten())
        .bind(t.warnings)
        .bind(t.attempts_delta)
        .bind(now)
        .bind(id)
        .bind(renew_until)
        .bind(t.error_code);
    if let Guard::Holder { token, .. } = guard {
        query = query.bind(token);
    }
    let row = query.fetch_optional(conn).await?;
    row.map(|row| super::rows::job(&row)).transpose()
}
