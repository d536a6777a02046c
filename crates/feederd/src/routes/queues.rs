//! `/v1/queues`: each queue with its depth; pause and resume (admin).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use nommer_model::api::{Queue, QueueList};
use nommer_model::{now_ms, ErrorCode};

/// Every queue: its limit, whether it is paused, and its depth.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", responses((status = 200, body = QueueList)))]
pub async fn list_queues(State(state): State<AppState>) -> ApiResult<Json<QueueList>> {
    let queues = state
        .store
        .list_queues()
        .await?
        .into_iter()
        .map(|q| Queue {
            name: q.name,
            max_concurrency: q.max_concurrency,
            paused: q.paused,
            pending: q.pending,
            running: q.running,
        })
        .collect();
    Ok(Json(QueueList { queues }))
}

async fn set_paused(
    state: &AppState,
    caller: &Caller,
    name: &str,
    paused: bool,
) -> ApiResult<Json<Queue>> {
    if !state.store.set_queue_paused(name, paused, now_ms()).await? {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no queue {name}"),
        ));
    }
    tracing::info!(queue = %name, paused, by = caller.name.as_deref().unwrap_or(""), "queue paused or resumed");
    let queue = list_queues(State(state.clone()))
        .await?
        .0
        .queues
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no queue {name}")))?;
    Ok(Json(queue))
}

/// Lease nothing new from the queue; it still takes jobs, and what runs finishes.
#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues", params(("name" = String, Path)),
    responses((status = 200, body = Queue), (status = 404, body = nommer_model::error::ApiErrorBody)))]
pub async fn pause_queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Queue>> {
    set_paused(&state, &caller, &name, true).await
}

#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues", params(("name" = String, Path)),
    responses((status = 200, body = Queue), (status = 404, body = nommer_model::error::ApiErrorBody)))]
pub async fn resume_queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Queue>> {
    set_paused(&state, &caller, &name, false).await
}
