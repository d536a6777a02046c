//! Bearer tokens: one set for API clients, one token for workers.

use crate::error::ApiError;
use crate::AppState;
use axum::http::HeaderMap;
use nommer_model::ErrorCode;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn unauthorized() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "a valid bearer token is required")
}

pub fn token_is_api_token(state: &AppState, token: &str) -> bool {
    state
        .config
        .api_tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
}

/// API clients: any configured API token, when tokens are configured.
pub fn client(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.config.api_tokens.is_empty() {
        return Ok(());
    }
    match bearer(headers) {
        Some(token) if token_is_api_token(state, token) => Ok(()),
        _ => Err(unauthorized()),
    }
}

/// Workers: the worker token, when one is configured.
pub fn worker(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.config.worker_token else {
        return Ok(());
    };
    match bearer(headers) {
        Some(token) if constant_time_eq(expected.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(unauthorized()),
    }
}
