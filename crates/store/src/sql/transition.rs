//! The one way a job changes state: check the move against the transition
//! table, update the row, and append the event in the same transaction.

use super::rows::JOB_COLUMNS;
use super::Conn;
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
    /// The details the event (and webhook) carries.
    pub event_details: Option<&'a str>,
    pub lease: Lease,
    pub run_after: Option<i64>,
    /// None keeps the progress; Some(None) clears it.
    pub progress: Option<Option<String>>,
    /// The merged warning list, when it changed.
    pub warnings: Option<String>,
    /// Added to attempts, floored at zero.
    pub attempts_delta: i64,
}

impl<'a> Transition<'a> {
    pub fn to(to: JobState, details: Option<&'a str>) -> Self {
        Transition {
            to,
            details: Some(details),
            event_details: details,
            lease: Lease::Keep,
            run_after: None,
            progress: None,
            warnings: None,
            attempts_delta: 0,
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

/// Apply `t` to job `id`, currently `from`; the job as it now is. Two
/// statements.
pub async fn apply(
    conn: &mut Conn,
    id: &str,
    from: JobState,
    actor: Actor,
    t: Transition<'_>,
    notify_url: Option<&str>,
    now: i64,
) -> StoreResult<JobRecord> {
    check(from, t.to, actor)?;
    let row = sqlx::query(&format!(
        "UPDATE jobs SET state = $1,
           state_details = CASE WHEN $2 THEN $3 ELSE state_details END,
           lease_token = CASE WHEN $4 THEN NULL ELSE lease_token END,
           lease_expires_at = CASE WHEN $4 THEN NULL ELSE lease_expires_at END,
           node_id = CASE WHEN $5 THEN NULL ELSE node_id END,
           run_after = COALESCE($6, run_after),
           progress = CASE WHEN $7 THEN $8 ELSE progress END,
           warnings = COALESCE($9, warnings),
           attempts = CASE WHEN attempts + $10 < 0 THEN 0 ELSE attempts + $10 END,
           updated_at = $11, state_changed_at = $11
         WHERE id = $12 RETURNING {JOB_COLUMNS}"
    ))
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
    .fetch_one(&mut *conn)
    .await?;
    insert_event(conn, id, t.to, t.event_details, notify_url, true, now).await?;
    super::rows::job(&row)
}

/// Append the event of a state change. PENDING at submission notifies no one.
pub async fn insert_event(
    conn: &mut Conn,
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
        "INSERT INTO job_events (job_id, state, details, created_at, delivery, notify_url, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
