//! `/v1/jobs`: submit, read, list, cancel, tasks, and webhook deliveries.

use crate::auth::Caller;
use crate::error::{read_body, ApiError, ApiResult};
use crate::{submit, AppState};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use nommer_model::api::{Delivery, DeliveryList, Job, JobEvent, JobEventList, JobList, TaskList};
use nommer_model::{now_ms, rfc3339, ErrorCode, JobId, JobState};
use serde::Deserialize;
use std::time::Duration;

fn no_job(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no job {id}"))
}

/// The job, if it exists and the caller may see it: another token's job is
/// answered as missing, so its existence is not told either.
async fn visible_job(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<nommer_store::JobRecord> {
    match state.store.get_job(id).await? {
        Some(job) if caller.may_see(job.submitted_by.as_deref()) => Ok(job),
        _ => Err(no_job(id)),
    }
}

/// The job as the API shows it, with what its tasks reported of each
/// output once it has ended.
async fn shown(state: &AppState, job: &nommer_store::JobRecord) -> ApiResult<Job> {
    if !job.state.is_terminal() {
        return Ok(job.to_api());
    }
    let tasks = state.store.job_tasks(&job.id).await?;
    Ok(job.to_api_with(&tasks))
}

fn job_id(id: &str) -> ApiResult<&str> {
    if JobId::looks_valid(id) {
        return Ok(id);
    }
    Err(ApiError::new(
        ErrorCode::NotFound,
        format!("no job {}", id.chars().take(64).collect::<String>()),
    ))
}

/// The header that makes a submit idempotent, and the one on its replays.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";

/// Submit a job. The body is the seed's (`source_path`, `dest_path`,
/// `notify_url`, `job_options`) plus the optional `max_attempts`,
/// `priority`, `queue`, `notify_format`, `outputs` and `preset`. With an
/// `Idempotency-Key`, a repeat with the same body answers 200 with the
/// first job and `Idempotent-Replayed: true`.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body(content = Object),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submit return the first job (per token, for idempotency_ttl)")),
    responses((status = 201, body = Job), (status = 200, body = Job, description = "A replay of an earlier submit with the same Idempotency-Key and body"),
        (status = 400, body = nommer_model::error::ApiErrorBody), (status = 409, body = nommer_model::error::ApiErrorBody)))]
pub async fn submit_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidField,
                        "Idempotency-Key must be visible ASCII",
                    )
                })?
                .to_string(),
        ),
    };
    let bytes = read_body(body, &state.config).await?;
    let request = submit::Request {
        legacy: false,
        idempotency_key,
    };
    let accepted = submit::accept(&state, &caller, &bytes, &request).await?;
    let job = Json(accepted.job.to_api());
    if accepted.replayed {
        return Ok((StatusCode::OK, [(REPLAYED, "true")], job).into_response());
    }
    Ok((StatusCode::CREATED, job).into_response())
}

/// Submit an ERROR or CANCELED job again, as a new job with the same spec
/// (`retry_of` names the old one).
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path)),
    responses((status = 201, body = Job), (status = 404, body = nommer_model::error::ApiErrorBody), (status = 409, body = nommer_model::error::ApiErrorBody)))]
pub async fn retry_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let id = job_id(&id)?;
    let old = visible_job(&state, &caller, id).await?;
    let job = submit::retry(&state, &old).await?;
    Ok((StatusCode::CREATED, Json(job.to_api())))
}

/// The job's state changes, oldest first.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobEventList), (status = 404, body = nommer_model::error::ApiErrorBody)))]
pub async fn job_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobEventList>> {
    let id = job_id(&id)?;
    visible_job(&state, &caller, id).await?;
    let events = state
        .store
        .job_events(id)
        .await?
        .iter()
        .map(event_view)
        .collect();
    Ok(Json(JobEventList { events }))
}

pub fn event_view(event: &nommer_store::EventRecord) -> JobEvent {
    JobEvent {
        id: event.seq,
        state: event.state,
        details: event.details.clone(),
        at: rfc3339(event.created_at),
    }
}

/// Send one of the job's webhooks again, with the same `webhook-id`.
#[utoipa::path(post, path = "/v1/jobs/{id}/deliveries/{event_id}/redeliver", tag = "jobs",
    params(("id" = String, Path), ("event_id" = i64, Path)),
    responses((status = 202, body = Delivery), (status = 404, body = nommer_model::error::ApiErrorBody)))]
pub async fn redeliver(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, event_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
    let id = job_id(&id)?;
    visible_job(&state, &caller, id).await?;
    let no_delivery = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!("job {id} has no webhook {event_id}"),
        )
    };
    let seq: i64 = event_id.parse().map_err(|_| no_delivery())?;
    if !state.store.redeliver(id, seq, now_ms()).await? {
        return Err(no_delivery());
    }
    tracing::info!(job_id = %id, event_id = seq, by = caller.name.as_deref().unwrap_or(""), "webhook redelivery requested");
    let delivery = deliveries_of(&state, id)
        .await?
        .into_iter()
        .find(|d| d.event_id == seq)
        .ok_or_else(no_delivery)?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct GetQuery {
    /// Long-poll: with `state`, answer once the job has left that state, or
    /// after this many milliseconds (at most 30,000), whichever comes first.
    wait_ms: Option<String>,
    /// The state the caller last saw.
    state: Option<String>,
}

/// Longest a GET on a job waits for it to change.
const MAX_JOB_WAIT: Duration = Duration::from_secs(30);

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path), GetQuery),
    responses((status = 200, body = Job), (status = 400, body = nommer_model::error::ApiErrorBody), (status = 404, body = nommer_model::error::ApiErrorBody)))]
pub async fn get_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<GetQuery>,
) -> ApiResult<Json<Job>> {
    let id = job_id(&id)?;
    let wait = match query.wait_ms.as_deref().filter(|w| !w.is_empty()) {
        None => Duration::ZERO,
        Some(text) => text
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    "wait_ms must be a whole number of milliseconds",
                )
            })?,
    };
    let seen = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<JobState>()
                .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e))?,
        ),
    };
    // Past the replica's long-poll bound, a wait is answered at once.
    let slot = (!wait.is_zero())
        .then(|| state.long_polls.clone().try_acquire_owned().ok())
        .flatten();
    let wait = if slot.is_some() { wait } else { Duration::ZERO };
    let deadline = tokio::time::Instant::now() + wait.min(MAX_JOB_WAIT);
    let changes = state.store.changes_signal();
    loop {
        // Register before reading, so a change in between is not missed.
        let changed = changes.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let job = visible_job(&state, &caller, id).await?;
        let now = tokio::time::Instant::now();
        if seen != Some(job.state) || now >= deadline {
            return Ok(Json(shown(&state, &job).await?));
        }
        // Another replica's change raises no signal here: look again soon.
        let nap = (deadline - now).min(Duration::from_millis(250));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(nap) => {}
            _ = state.stopping() => return Ok(Json(shown(&state, &job).await?)),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only jobs in this state.
    state: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Jobs, newest first, in pages.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, body = JobList), (status = 400, body = nommer_model::error::ApiErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<JobList>> {
    let filter = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<JobState>()
                .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e))?,
        ),
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => 50,
        Some(text) => match text.parse::<u32>() {
            Ok(n @ 1..=500) => n,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    "limit must be an integer from 1 to 500",
                ))
            }
        },
    };
    let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) if !JobId::looks_valid(c) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "cursor is not one this API gave",
            ))
        }
        other => other,
    };
    let query = nommer_store::JobQuery {
        state: filter,
        submitted_by: caller.owner(),
        limit: limit + 1,
        before: cursor,
    };
    let jobs = state.store.list_jobs(&query).await?;
    let more = jobs.len() > limit as usize;
    let jobs: Vec<Job> = jobs
        .iter()
        .take(limit as usize)
        .map(|j| j.to_api())
        .collect();
    let next_cursor = if more {
        jobs.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(Json(JobList { jobs, next_cursor }))
}

/// Cancel a job: a pending job ends at once; a running one within one heartbeat.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = nommer_model::error::ApiErrorBody), (status = 409, body = nommer_model::error::ApiErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    let id = job_id(&id)?;
    visible_job(&state, &caller, id).await?;
    let job = state.store.cancel(id, now_ms()).await?;
    tracing::info!(job_id = %id, state = %job.state, by = caller.name.as_deref().unwrap_or(""), "cancel requested");
    Ok(Json(job.to_api()))
}

/// Every webhook of a job and each attempt to deliver it.
#[utoipa::path(get, path = "/v1/jobs/{id}/deliveries", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryList), (status = 404, body = nommer_model::error::ApiErrorBody)))]
pub async fn job_deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryList>> {
    let id = job_id(&id)?;
    visible_job(&state, &caller, id).await?;
    let deliveries = deliveries_of(&state, id).await?;
    Ok(Json(DeliveryList { deliveries }))
}

async fn deliveries_of(state: &AppState, id: &str) -> ApiResult<Vec<Delivery>> {
    Ok(state
        .store
        .deliveries(id)
        .await?
        .into_iter()
        .map(|(event, attempts)| Delivery {
            event_id: event.seq,
            webhook_id: event.webhook_id(),
            job_state: event.state,
            job_state_details: event.details.clone(),
            status: event.delivery.clone(),
            created_at: rfc3339(event.created_at),
            next_attempt_at: event
                .next_attempt_at
                .filter(|_| event.delivery == "pending")
                .map(rfc3339),
            attempts: attempts.iter().map(|a| a.to_api()).collect(),
        })
        .collect())
}

/// The tasks that carry the job out, in order, with the node each last ran on.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = TaskList), (status = 404, body = nommer_model::error::ApiErrorBody)))]
pub async fn job_tasks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskList>> {
    let id = job_id(&id)?;
    visible_job(&state, &caller, id).await?;
    let tasks = state.store.job_tasks(id).await?;
    Ok(Json(TaskList {
        tasks: tasks.iter().map(|t| t.to_api()).collect(),
    }))
}
