//! The seed's `POST /job/submit`, compatible on the wire: the raw body is JSON
//! whatever the Content-Type; the seed's five checks answer HTTP 200 with
//! `success: false` and the seed's message; other failures answer a 4xx with
//! the same body shape plus `error_code`.

use crate::auth::Caller;
use crate::error::read_body;
use crate::{submit, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use nommer_model::api::LegacySubmitResponse;
use nommer_model::{CodedError, ErrorCode};

/// A refusal in the seed's body shape.
pub fn legacy_failure(error: CodedError) -> Response {
    // The seed answered its own validation failures with 200.
    let status = match error.code {
        ErrorCode::MissingField => StatusCode::OK,
        code => StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    };
    let body = LegacySubmitResponse {
        success: false,
        job_id: None,
        message: Some(error.message),
        error_code: Some(error.code.as_str().to_string()),
    };
    (status, Json(body)).into_response()
}

async fn handle(state: AppState, caller: Caller, body: Body) -> Response {
    let bytes = match read_body(body, &state.config).await {
        Ok(bytes) => bytes,
        Err(e) => return legacy_failure(e),
    };
    let request = submit::Request {
        legacy: true,
        idempotency_key: None,
    };
    match submit::accept(&state, &caller, &bytes, &request).await {
        Ok(accepted) => Json(LegacySubmitResponse {
            success: true,
            job_id: Some(accepted.job.id),
            message: None,
            error_code: None,
        })
        .into_response(),
        Err(e) => legacy_failure(e),
    }
}

/// Submit a job (the seed's API).
#[utoipa::path(post, path = "/job/submit", tag = "legacy",
    request_body(content = Object, description = "The seed's job body, sent as JSON whatever the Content-Type"),
    responses((status = 200, body = LegacySubmitResponse), (status = 400, body = LegacySubmitResponse)))]
pub async fn legacy_submit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    handle(state, caller, body).await
}

/// The same, for clients that cannot send headers: the token is a path prefix
/// (`connect("http://host:8001/t/TOKEN")` in the seed's Python client).
#[utoipa::path(post, path = "/t/{token}/job/submit", tag = "legacy", params(("token" = String, Path)),
    request_body(content = Object, description = "The seed's job body, sent as JSON whatever the Content-Type"),
    responses((status = 200, body = LegacySubmitResponse), (status = 400, body = LegacySubmitResponse)))]
pub async fn legacy_submit_with_path_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    handle(state, caller, body).await
}
