//! Liveness and the API description.

use crate::AppState;
use axum::extract::State;
use axum::Json;
use nommer_model::api::Health;

/// 200 when feederd can read its store.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health), (status = 503, body = nommer_model::error::ApiErrorBody)))]
pub async fn healthz(
    State(state): State<AppState>,
) -> Result<Json<Health>, crate::error::ApiError> {
    state.store.list_nodes().await?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, body = Object)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::spec())
}
