//! The worker lease protocol: lease (long-poll), heartbeat, state reports and
//! hand-backs. Every write is fenced by the lease token.

use crate::error::{parse_json, read_body, ApiError, ApiResult};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::Json;
use nommer_model::api::*;
use nommer_model::now_ms;
use nommer_store::HolderReport;
use std::time::Duration;

async fn body<T: serde::de::DeserializeOwned>(state: &AppState, body: Body) -> ApiResult<T> {
    let bytes = read_body(body, &state.config).await?;
    parse_json(&bytes)
}

/// Lease jobs: long-polls up to `wait_ms` (at most 25 s) for one to be ready.
#[utoipa::path(post, path = "/v1/workers/lease", tag = "workers", request_body = LeaseRequest,
    responses((status = 200, body = LeaseResponse), (status = 401, body = nommer_model::error::ApiErrorBody)))]
pub async fn lease(State(state): State<AppState>, request: Body) -> ApiResult<Json<LeaseResponse>> {
    let request: LeaseRequest = body(&state, request).await?;
    // A node takes at most as many jobs as it has slots, so one worker
    // cannot claim the backlog.
    let max = request
        .max
        .min(request.node.max_jobs)
        .min(state.config.max_lease_batch);
    let wait = Duration::from_millis(request.wait_ms).min(state.config.max_lease_wait);
    let slot = (!wait.is_zero())
        .then(|| state.lease_polls.clone().try_acquire_owned().ok())
        .flatten();
    // Past the replica's long-poll bound, a lease request is answered at once.
    let wait = if slot.is_some() { wait } else { Duration::ZERO };
    let mut deadline = tokio::time::Instant::now() + wait;
    let signal = state.store.jobs_signal();
    loop {
        // Register for wake-ups before looking, so a job submitted in between is not missed.
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let claimed = state.store.claim(&request.node, max, now_ms()).await?;
        let now = tokio::time::Instant::now();
        if !claimed.is_empty() || now >= deadline || max == 0 {
            let ttl_ms = state.config.lease_ttl.as_millis() as u64;
            crate::metrics::Metrics::add(&state.metrics.leases_granted, claimed.len() as u64);
            let leases = claimed
                .into_iter()
                .map(|c| {
                    tracing::info!(job_id = %c.job.id, task = c.task.task, kind = %c.task.kind, node_id = %request.node.node_id, attempt = c.task.attempts, "task leased");
                    let waited = state.metrics.tracker.leased(&c.job.id, c.task.task, c.task.attempts, now_ms());
                    if let Some(queue_wait_s) = waited {
                        state.metrics.observe(&crate::phases::Phases {
                            queue_wait_s: Some(queue_wait_s),
                            ..Default::default()
                        });
                    }
                    LeaseGrant {
                        job_id: c.job.id.clone(),
                        task: c.task.task,
                        kind: Some(c.task.kind),
                        spec: c.task.spec,
                        work_uri: c.work_uri.filter(|_| c.task.kind.is_chunked()),
                        token: c.token,
                        attempt: c.task.attempts,
                        ttl_ms,
                        source_uri: c.source_uri,
                        dest_uri: c.dest_uri,
                        job_options: c.job.job_options.clone(),
                        max_runtime_s: c.job.max_runtime_s,
                        file_roots: state.config.file_roots.list(),
                        files_off: state.config.file_roots == nommer_storage::FileRoots::Off,
                        net_policy: state.config.net_policy,
                    }
                })
                .collect();
            return Ok(Json(LeaseResponse { leases }));
        }
        // Backed-off retries become claimable without a signal: look again each second.
        let nap = (deadline - now).min(Duration::from_secs(1));
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(nap) => {}
            // Stopping: look once more, then answer.
            _ = state.stopping() => deadline = now,
        }
    }
}

/// Renew leases and report the node; answers which leases still hold.
#[utoipa::path(post, path = "/v1/workers/heartbeat", tag = "workers", request_body = HeartbeatRequest,
    responses((status = 200, body = HeartbeatResponse), (status = 400, body = nommer_model::error::ApiErrorBody)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    request: Body,
) -> ApiResult<Json<HeartbeatResponse>> {
    let request: HeartbeatRequest = body(&state, request).await?;
    if request.leases.len() > state.config.max_heartbeat_leases {
        return Err(ApiError::new(
            nommer_model::ErrorCode::TooManyLeases,
            format!(
                "a heartbeat lists at most {} leases, not {}",
                state.config.max_heartbeat_leases,
                request.leases.len()
            ),
        ));
    }
    let leases = state
        .store
        .heartbeat(&request.node, &request.leases, now_ms())
        .await?;
    for lost in leases.iter().filter(|l| !l.valid) {
        tracing::warn!(job_id = %lost.job_id, task = lost.task, node_id = %request.node.node_id, "heartbeat for a lease this node no longer holds");
    }
    Ok(Json(HeartbeatResponse {
        ttl_ms: state.config.lease_ttl.as_millis() as u64,
        leases,
    }))
}

/// One state change by the lease holder, fenced by its token.
#[utoipa::path(post, path = "/v1/workers/jobs/{id}/state", tag = "workers", params(("id" = String, Path)), request_body = StateReport,
    responses((status = 200, body = Job), (status = 409, body = nommer_model::error::ApiErrorBody)))]
pub async fn report_state(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Body,
) -> ApiResult<Json<Job>> {
    let report: StateReport = body(&state, request).await?;
    let holder = HolderReport {
        job_id: &id,
        task: report.task,
        token: &report.token,
        to: report.state,
        details: report.details.as_deref(),
        warnings: &report.warnings,
        error_code: report.error_code.as_deref(),
        result: report.result.as_ref(),
        adds: &report.tasks,
    };
    let result = state
        .store
        .report_states(&[holder], now_ms())
        .await?
        .pop()
        .unwrap_or(Err(nommer_store::StoreError::NotFound));
    match result {
        Ok(change) => {
            tracing::info!(job_id = %id, task = change.task, state = %change.state, job_state = %change.job_state, "task state changed");
            observe(&state, &change, report.result.as_ref());
            Ok(Json(current_job(&state, &id).await?))
        }
        Err(e) => {
            tracing::warn!(job_id = %id, task = report.task, state = %report.state, error = %e, "worker state report refused");
            Err(ApiError::from(e))
        }
    }
}

/// Several state reports in one request: a worker with many slots sends
/// what queued up while its previous request was in flight.
#[utoipa::path(post, path = "/v1/workers/reports", tag = "workers", request_body = StateReportBatch,
    responses((status = 200, body = StateReportResults), (status = 400, body = nommer_model::error::ApiErrorBody)))]
pub async fn report_states(
    State(state): State<AppState>,
    request: Body,
) -> ApiResult<Json<StateReportResults>> {
    let batch: StateReportBatch = body(&state, request).await?;
    if batch.reports.len() > MAX_REPORTS_PER_BATCH {
        return Err(ApiError::new(
            nommer_model::ErrorCode::InvalidField,
            format!("at most {MAX_REPORTS_PER_BATCH} reports per request"),
        ));
    }
    let reports: Vec<HolderReport> = batch
        .reports
        .iter()
        .map(|r| HolderReport {
            job_id: &r.job_id,
            task: r.task,
            token: &r.token,
            to: r.state,
            details: r.details.as_deref(),
            warnings: &r.warnings,
            error_code: r.error_code.as_deref(),
            result: r.result.as_ref(),
            adds: &r.tasks,
        })
        .collect();
    let outcomes = state.store.report_states(&reports, now_ms()).await?;
    let results = reports
        .iter()
        .zip(outcomes)
        .map(|(report, outcome)| match outcome {
            Ok(change) => {
                tracing::info!(job_id = %report.job_id, task = change.task, state = %change.state, job_state = %change.job_state, "task state changed");
                observe(&state, &change, report.result);
                StateReportResult {
                    job_id: change.job_id,
                    task: change.task,
                    state: Some(change.state),
                    error: None,
                }
            }
            Err(e) => {
                tracing::warn!(job_id = %report.job_id, task = report.task, state = %report.to, error = %e, "worker state report refused");
                StateReportResult {
                    job_id: report.job_id.to_string(),
                    task: report.task,
                    state: None,
                    error: Some(ApiError::from(e).0.body()),
                }
            }
        })
        .collect();
    Ok(Json(StateReportResults { results }))
}

/// Hand a leased job back unfinished: after a shutdown or spot interruption
/// it is claimable again at once and the attempt does not count; after a
/// node's failure (`failed`) the attempt counts and it is retried after the
/// backoff.
#[utoipa::path(post, path = "/v1/workers/jobs/{id}/release", tag = "workers", params(("id" = String, Path)), request_body = ReleaseRequest,
    responses((status = 200, body = Job), (status = 409, body = nommer_model::error::ApiErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Body,
) -> ApiResult<Json<Job>> {
    let request: ReleaseRequest = body(&state, request).await?;
    state
        .store
        .release(
            &id,
            request.task,
            &request.token,
            &request.reason,
            request.failed.as_deref(),
            now_ms(),
        )
        .await?;
    tracing::info!(job_id = %id, task = request.task, reason = %request.reason, "task handed back");
    Ok(Json(current_job(&state, &id).await?))
}

/// A task's state change, for the phase histograms.
fn observe(
    state: &AppState,
    change: &nommer_store::TaskChange,
    result: Option<&serde_json::Value>,
) {
    let tracker = &state.metrics.tracker;
    if let Some(phases) =
        tracker.reported(&change.job_id, change.task, change.state, result, now_ms())
    {
        state.metrics.observe(&phases);
    }
}

/// The job as it is after a report on one of its tasks.
async fn current_job(state: &AppState, id: &str) -> ApiResult<Job> {
    let job = state.store.get_job(id).await?;
    job.map(|j| j.to_api())
        .ok_or_else(|| ApiError::from(nommer_store::StoreError::NotFound))
}
