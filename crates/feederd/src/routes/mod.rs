//! The HTTP surface: one module per resource.

mod health;
mod jobs;
mod legacy;
mod nodes;
mod workers;

use crate::error::ApiError;
use crate::AppState;
use axum::routing::{get, post};
use axum::Router;
use nommer_model::ErrorCode;
use tower_http::trace::TraceLayer;

pub use health::__path_healthz;
pub use jobs::{
    __path_cancel_job, __path_get_job, __path_job_deliveries, __path_list_jobs, __path_submit_job,
};
pub use legacy::__path_legacy_submit;
pub use nodes::__path_list_nodes;

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/job/submit",
            post(legacy::legacy_submit).fallback(method_not_allowed),
        )
        .route(
            "/job/submit/",
            post(legacy::legacy_submit).fallback(method_not_allowed),
        )
        .route(
            "/t/{token}/job/submit",
            post(legacy::legacy_submit_with_path_token).fallback(method_not_allowed),
        )
        .route(
            "/t/{token}/job/submit/",
            post(legacy::legacy_submit_with_path_token).fallback(method_not_allowed),
        )
        .route(
            "/v1/jobs",
            post(jobs::submit_job)
                .get(jobs::list_jobs)
                .fallback(method_not_allowed),
        )
        .route(
            "/v1/jobs/{id}",
            get(jobs::get_job).fallback(method_not_allowed),
        )
        .route(
            "/v1/jobs/{id}/cancel",
            post(jobs::cancel_job).fallback(method_not_allowed),
        )
        .route(
            "/v1/jobs/{id}/deliveries",
            get(jobs::job_deliveries).fallback(method_not_allowed),
        )
        .route(
            "/v1/nodes",
            get(nodes::list_nodes).fallback(method_not_allowed),
        )
        .route(
            "/v1/fleet",
            get(crate::autoscaler::fleet_view).fallback(method_not_allowed),
        )
        .route(
            "/v1/workers/lease",
            post(workers::lease).fallback(method_not_allowed),
        )
        .route(
            "/v1/workers/heartbeat",
            post(workers::heartbeat).fallback(method_not_allowed),
        )
        .route(
            "/v1/workers/jobs/{id}/state",
            post(workers::report_state).fallback(method_not_allowed),
        )
        .route(
            "/v1/workers/reports",
            post(workers::report_states).fallback(method_not_allowed),
        )
        .route(
            "/v1/workers/jobs/{id}/release",
            post(workers::release).fallback(method_not_allowed),
        )
        .route("/healthz", get(health::healthz))
        .route("/openapi.json", get(health::openapi))
        .route("/metrics", get(crate::metrics::metrics))
        .fallback(not_found)
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::count_requests,
        ))
        .with_state(state)
}
