//! `GET /v1/summary`: what the dashboard's first page shows at a glance:
//! jobs by state, the last hour's throughput, encode speed and queue wait
//! (from the store, whichever replica answers), the queues, the running
//! tasks and this replica's background loops.

use crate::error::ApiResult;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use nommer_model::now_ms;
use serde_json::{json, Value};

/// The window of the throughput figures.
const WINDOW_MS: i64 = 3_600_000;
/// Finished jobs read for the figures.
const SAMPLE: u32 = 500;
/// Running tasks listed.
const RUNNING: u32 = 500;

#[utoipa::path(get, path = "/v1/summary", tag = "nodes", responses((status = 200, body = Object)))]
pub async fn summary(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let store = &state.store;
    let now = now_ms();
    let jobs: serde_json::Map<String, Value> = store
        .count_jobs()
        .await?
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
        .collect();
    let finished = store.finished_since(now - WINDOW_MS, SAMPLE).await?;
    let phases: Vec<_> = finished
        .iter()
        .map(|job| crate::phases::of(&job.events, &job.results))
        .collect();
    let median = |pick: fn(&crate::phases::Phases) -> Option<f64>| {
        crate::phases::median(phases.iter().filter_map(pick).collect())
    };
    let queues: Vec<Value> = store
        .list_queues()
        .await?
        .into_iter()
        .map(|q| json!({"name": q.name, "max_concurrency": q.max_concurrency, "paused": q.paused, "pending": q.pending, "running": q.running}))
        .collect();
    let running: Vec<Value> = store
        .running_tasks(RUNNING)
        .await?
        .into_iter()
        .map(|task| {
            json!({"job_id": task.job_id, "task": task.task, "kind": task.kind, "state": task.state,
                "node_id": task.node_id, "percent": task.progress.as_ref().map(|p| p.percent)})
        })
        .collect();
    Ok(Json(json!({
        "jobs": jobs,
        "last_hour": {
            "finished": finished.len(),
            "sampled": (finished.len() as u32) == SAMPLE,
            "encode_speed_median": median(|p| p.encode_speed),
            "queue_wait_median_s": median(|p| p.queue_wait_s),
            "encode_median_s": median(|p| p.encode_s),
        },
        "queues": queues,
        "running": running,
        "loops": state.loops.snapshot(),
        "leader": state.leadership.is_leader(),
    })))
}
