//! API errors: a code and a message, answered as JSON with the code's status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nommer_model::{CodedError, ErrorCode};
use nommer_store::StoreError;

#[derive(Debug)]
pub struct ApiError(pub CodedError);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError(CodedError::new(code, message))
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<CodedError> for ApiError {
    fn from(e: CodedError) -> Self {
        ApiError(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = e.code();
        if matches!(code, ErrorCode::Internal | ErrorCode::StoreUnavailable) {
            tracing::error!(error = %e, "store failure");
        }
        ApiError::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.0.body())).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Read a whole body up to `max_body_bytes`, within `body_timeout`: a client
/// that trickles its body holds a connection no longer than that.
pub async fn read_body(
    body: axum::body::Body,
    config: &crate::config::FeederdConfig,
) -> Result<bytes::Bytes, CodedError> {
    let limit = config.max_body_bytes;
    match tokio::time::timeout(config.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(CodedError::new(
            ErrorCode::BodyTooLarge,
            format!("The request body is larger than {limit} bytes"),
        )),
        Err(_) => Err(CodedError::new(
            ErrorCode::RequestTimeout,
            format!(
                "The request body did not arrive within {} s",
                config.body_timeout.as_secs()
            ),
        )),
    }
}

pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid request body: {e}")))
}
