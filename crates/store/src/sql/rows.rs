//! Reading rows into records.

use crate::*;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::str::FromStr;

pub const JOB_COLUMNS: &str = "id, state, state_details, error_code, warnings, progress, attempts, max_attempts, max_runtime_s, source_path, dest_path, notify_url, notify_url_shown, submitted_by, nommer, job_options, node_id, cancel_requested, tasks_total, priority, queue, notify_format, retry_of, created_at, updated_at, state_changed_at";
pub const TASK_COLUMNS: &str = "job_id, task, kind, state, state_details, error_code, spec, progress, attempts, max_attempts, node_id, lease_expires_at, cancel_requested, mirrored, notifies, started_at, finished_at, result";
pub const EVENT_COLUMNS: &str =
    "seq, job_id, state, details, created_at, delivery, notify_url, next_attempt_at, attempts";

/// The task kinds that do not count for their job's state, as an SQL list.
pub fn kinds_not_counted() -> String {
    nommer_model::TaskKind::ALL
        .iter()
        .filter(|k| !k.counts_for_job())
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn parse_state(text: &str) -> StoreResult<JobState> {
    JobState::from_str(text).map_err(StoreError::Other)
}

pub fn job(row: &AnyRow) -> StoreResult<JobRecord> {
    let warnings: String = row.try_get("warnings")?;
    let progress: Option<String> = row.try_get("progress")?;
    let job_options: String = row.try_get("job_options")?;
    let state = parse_state(row.try_get("state")?)?;
    let tasks_total = row.try_get::<i64, _>("tasks_total")? as u32;
    let progress = progress
        .and_then(|p| serde_json::from_str::<nommer_model::api::Progress>(&p).ok())
        .map(|mut p| {
            // A job of one task shows its task's progress: say so.
            if p.tasks_total.is_none() {
                p.tasks_total = Some(tasks_total);
                p.tasks_done = Some(if state == JobState::Finished {
                    tasks_total
                } else {
                    0
                });
            }
            p
        });
    Ok(JobRecord {
        id: row.try_get("id")?,
        state,
        state_details: row.try_get("state_details")?,
        error_code: row.try_get("error_code")?,
        warnings: serde_json::from_str(&warnings).unwrap_or_default(),
        progress,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        max_runtime_s: row
            .try_get::<Option<i64>, _>("max_runtime_s")?
            .map(|s| s as u64),
        source_path: row.try_get("source_path")?,
        dest_path: row.try_get("dest_path")?,
        notify_url: shown_notify_url(row.try_get("notify_url_shown")?, row.try_get("notify_url")?),
        submitted_by: row.try_get("submitted_by")?,
        nommer: row.try_get("nommer")?,
        job_options: serde_json::from_str(&job_options).unwrap_or_default(),
        node_id: row.try_get("node_id")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        priority: row.try_get::<i64, _>("priority")? as i32,
        queue: row.try_get("queue")?,
        notify_format: parse(row.try_get("notify_format")?)?,
        retry_of: row.try_get("retry_of")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        state_changed_at: row.try_get("state_changed_at")?,
    })
}

/// A name the store keeps for a type (a CHECK constraint admits only these).
pub fn parse<T: FromStr<Err = String>>(text: &str) -> StoreResult<T> {
    T::from_str(text).map_err(StoreError::Other)
}

pub fn task(row: &AnyRow) -> StoreResult<TaskRecord> {
    let spec: String = row.try_get("spec")?;
    let progress: Option<String> = row.try_get("progress")?;
    Ok(TaskRecord {
        job_id: row.try_get("job_id")?,
        task: row.try_get::<i64, _>("task")? as u32,
        kind: parse(row.try_get("kind")?)?,
        state: parse_state(row.try_get("state")?)?,
        state_details: row.try_get("state_details")?,
        error_code: row.try_get("error_code")?,
        spec: serde_json::from_str(&spec).unwrap_or_default(),
        progress: progress.and_then(|p| serde_json::from_str(&p).ok()),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        node_id: row.try_get("node_id")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        mirrored: row.try_get::<i64, _>("mirrored")? != 0,
        notifies: row.try_get::<i64, _>("notifies")? != 0,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        result: row
            .try_get::<Option<String>, _>("result")?
            .and_then(|r| serde_json::from_str(&r).ok()),
    })
}

/// Rows written before notify_url was sealed hold it plain, with no shown form.
fn shown_notify_url(shown: Option<String>, stored: Option<String>) -> Option<String> {
    shown.or_else(|| {
        stored
            .filter(|s| !crate::sealer::is_sealed(s))
            .map(|s| nommer_model::uri::redact_notify_url(&s))
    })
}

pub fn event(row: &AnyRow) -> StoreResult<EventRecord> {
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

pub fn attempt(row: &AnyRow) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        attempted_at: row.try_get("attempted_at")?,
        status_code: row
            .try_get::<Option<i64>, _>("status_code")?
            .map(|c| c as u16),
        error: row.try_get("error")?,
        duration_ms: row.try_get::<i64, _>("duration_ms")? as u64,
    })
}

pub fn node(row: &AnyRow) -> StoreResult<NodeRecord> {
    Ok(NodeRecord {
        id: row.try_get("id")?,
        instance_id: row.try_get("instance_id")?,
        fleet: parse(row.try_get("fleet")?)?,
        state: parse(row.try_get("state")?)?,
        hostname: row.try_get("hostname")?,
        version: row.try_get("version")?,
        max_jobs: row.try_get::<i64, _>("max_jobs")? as u32,
        running_jobs: row.try_get::<i64, _>("running_jobs")? as u32,
        sandbox: row.try_get("sandbox")?,
        started_at: row.try_get("started_at")?,
        last_heartbeat_at: row.try_get("last_heartbeat_at")?,
    })
}
