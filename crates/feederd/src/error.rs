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

/// Read a whole body up to `limit` bytes.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, CodedError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        CodedError::new(
            ErrorCode::BodyTooLarge,
            format!("The request body is larger than {limit} bytes"),
        )
    })
}

pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid request body: {e}")))
}
