//! The seed's `POST /job/submit`, compatible on the wire: the raw body is JSON
//! whatever the Content-Type; the seed's five checks answer HTTP 200 with
//! `success: false` and the seed's message; other failures answer a 4xx with
//! the same body shape plus `error_code`.

use crate::error::read_body;
use crate::{auth, submit, AppState};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nommer_model::api::LegacySubmitResponse;
use nommer_model::{CodedError, ErrorCode};

fn failure(error: CodedError) -> Response {
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

async fn handle(state: AppState, body: Body) -> Response {
    let bytes = match read_body(body, state.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(e) => return failure(e),
    };
    match submit::accept(&state, &bytes).await {
        Ok(job) => Json(LegacySubmitResponse {
            success: true,
            job_id: Some(job.id),
            message: None,
            error_code: None,
        })
        .into_response(),
        Err(e) => failure(e),
    }
}

/// Submit a job (the seed's API).
#[utoipa::path(post, path = "/job/submit", tag = "legacy",
    request_body(content = Object, description = "The seed's job body, sent as JSON whatever the Content-Type"),
    responses((status = 200, body = LegacySubmitResponse), (status = 400, body = LegacySubmitResponse)))]
pub async fn legacy_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = auth::client(&state, &headers) {
        return failure(e.0);
    }
    handle(state, body).await
}

/// The same, for clients that cannot send headers: the token is a path prefix
/// (`connect("http://host:8001/t/TOKEN")` in the seed's Python client).
pub async fn legacy_submit_with_path_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Body,
) -> Response {
    if !state.config.api_tokens.is_empty() && !auth::token_is_api_token(&state, &token) {
        return failure(CodedError::new(
            ErrorCode::Unauthorized,
            "a valid token is required",
        ));
    }
    handle(state, body).await
}
