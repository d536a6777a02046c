//! The HTTP surface: one module per resource, and one table of every route
//! with who may call it. A route can only be added through [`Routes::add`],
//! which puts the access check on it as a layer; a test walks the table and
//! the OpenAPI document together.

mod dashboard;
mod events;
mod health;
mod jobs;
mod legacy;
mod nodes;
mod presets;
mod queues;
mod summary;
mod workers;

use crate::auth::{Access, Guard, Shape};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::MatchedPath;
use axum::http::{Method, Request};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use nommer_model::ErrorCode;
use tower_http::trace::TraceLayer;

pub use crate::autoscaler::__path_fleet_view;
pub use dashboard::{
    __path_app_css, __path_app_js, __path_get_session, __path_index, __path_sign_in,
    __path_sign_out,
};
pub use events::__path_events;
pub use health::{__path_healthz, __path_openapi};
pub use jobs::{
    __path_cancel_job, __path_get_job, __path_job_deliveries, __path_job_events, __path_job_tasks,
    __path_list_jobs, __path_redeliver, __path_retry_job, __path_submit_job,
};
pub use legacy::{__path_legacy_submit, __path_legacy_submit_with_path_token, legacy_failure};
pub use nodes::__path_list_nodes;
pub use presets::{
    __path_delete_preset, __path_get_preset, __path_list_presets, __path_put_preset,
};
pub use queues::{__path_list_queues, __path_pause_queue, __path_resume_queue};
pub use summary::__path_summary;
pub use workers::{
    __path_heartbeat, __path_lease, __path_release, __path_report_state, __path_report_states,
};

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// One route: where, which method, and who may call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

struct Routes {
    /// None when only the table is wanted (the OpenAPI document).
    state: Option<AppState>,
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Routes {
        let shape = if path.ends_with("/job/submit") || path.ends_with("/job/submit/") {
            Shape::Legacy
        } else {
            Shape::V1
        };
        if let Some(state) = &self.state {
            let guard = Guard {
                tokens: state.config.tokens.clone(),
                access,
                shape,
            };
            let handler = handler.layer(axum::middleware::from_fn_with_state(
                guard,
                crate::auth::guard,
            ));
            self.router = self.router.route(path, handler);
        }
        self.table.push(RouteInfo {
            method,
            path,
            access,
        });
        self
    }
}

fn routes(state: Option<&AppState>) -> Routes {
    use Access::*;
    let routes = Routes {
        state: state.cloned(),
        router: Router::new(),
        table: Vec::new(),
    };
    routes
        .add(Method::GET, "/", Public, get(dashboard::index))
        .add(Method::GET, "/ui/app.js", Public, get(dashboard::app_js))
        .add(Method::GET, "/ui/app.css", Public, get(dashboard::app_css))
        .add(
            Method::GET,
            "/ui/session",
            Public,
            get(dashboard::get_session),
        )
        .add(
            Method::POST,
            "/ui/session",
            Public,
            post(dashboard::sign_in),
        )
        .add(
            Method::DELETE,
            "/ui/session",
            Public,
            delete(dashboard::sign_out),
        )
        .add(Method::GET, "/healthz", Public, get(health::healthz))
        .add(Method::GET, "/openapi.json", Public, get(health::openapi))
        .add(
            Method::GET,
            "/metrics",
            ReadFleet,
            get(crate::metrics::metrics),
        )
        .add(
            Method::POST,
            "/job/submit",
            Submit,
            post(legacy::legacy_submit),
        )
        .add(
            Method::POST,
            "/job/submit/",
            Submit,
            post(legacy::legacy_submit),
        )
        .add(
            Method::POST,
            "/t/{token}/job/submit",
            SubmitByPath,
            post(legacy::legacy_submit_with_path_token),
        )
        .add(
            Method::POST,
            "/t/{token}/job/submit/",
            SubmitByPath,
            post(legacy::legacy_submit_with_path_token),
        )
        .add(Method::POST, "/v1/jobs", Submit, post(jobs::submit_job))
        .add(Method::GET, "/v1/jobs", ReadJobs, get(jobs::list_jobs))
        .add(Method::GET, "/v1/jobs/{id}", ReadJobs, get(jobs::get_job))
        .add(
            Method::POST,
            "/v1/jobs/{id}/cancel",
            CancelJobs,
            post(jobs::cancel_job),
        )
        .add(
            Method::GET,
            "/v1/jobs/{id}/deliveries",
            ReadJobs,
            get(jobs::job_deliveries),
        )
        .add(
            Method::GET,
            "/v1/jobs/{id}/tasks",
            ReadJobs,
            get(jobs::job_tasks),
        )
        .add(
            Method::GET,
            "/v1/jobs/{id}/events",
            ReadJobs,
            get(jobs::job_events),
        )
        .add(
            Method::POST,
            "/v1/jobs/{id}/retry",
            CancelJobs,
            post(jobs::retry_job),
        )
        .add(
            Method::POST,
            "/v1/jobs/{id}/deliveries/{event_id}/redeliver",
            CancelJobs,
            post(jobs::redeliver),
        )
        .add(Method::GET, "/v1/events", ReadJobs, get(events::events))
        .add(
            Method::GET,
            "/v1/queues",
            ReadJobs,
            get(queues::list_queues),
        )
        .add(
            Method::POST,
            "/v1/queues/{name}/pause",
            Admin,
            post(queues::pause_queue),
        )
        .add(
            Method::POST,
            "/v1/queues/{name}/resume",
            Admin,
            post(queues::resume_queue),
        )
        .add(
            Method::GET,
            "/v1/presets",
            ReadJobs,
            get(presets::list_presets),
        )
        .add(
            Method::GET,
            "/v1/presets/{name}",
            ReadJobs,
            get(presets::get_preset),
        )
        .add(
            Method::PUT,
            "/v1/presets/{name}",
            Admin,
            put(presets::put_preset),
        )
        .add(
            Method::DELETE,
            "/v1/presets/{name}",
            Admin,
            delete(presets::delete_preset),
        )
        .add(Method::GET, "/v1/nodes", ReadFleet, get(nodes::list_nodes))
        .add(Method::GET, "/v1/summary", ReadFleet, get(summary::summary))
        .add(
            Method::GET,
            "/v1/fleet",
            ReadFleet,
            get(crate::autoscaler::fleet_view),
        )
        .add(
            Method::POST,
            "/v1/workers/lease",
            Worker,
            post(workers::lease),
        )
        .add(
            Method::POST,
            "/v1/workers/heartbeat",
            Worker,
            post(workers::heartbeat),
        )
        .add(
            Method::POST,
            "/v1/workers/jobs/{id}/state",
            Worker,
            post(workers::report_state),
        )
        .add(
            Method::POST,
            "/v1/workers/reports",
            Worker,
            post(workers::report_states),
        )
        .add(
            Method::POST,
            "/v1/workers/jobs/{id}/release",
            Worker,
            post(workers::release),
        )
}

/// Every route feederd serves.
pub fn table() -> Vec<RouteInfo> {
    routes(None).table
}

/// The route's template (`/t/{token}/job/submit`), never the raw path, which
/// may carry a token.
fn span_for<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("unmatched");
    tracing::debug_span!("request", method = %request.method(), route)
}

pub fn router(state: AppState) -> Router {
    routes(Some(&state))
        .router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::auth::same_site_changes))
        .layer(TraceLayer::new_for_http().make_span_with(span_for))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::count_requests,
        ))
        .with_state(state)
}
