//! `/v1/presets`: named job shapes, read by everyone, written by admins.

use crate::error::{read_body, ApiError, ApiResult};
use crate::presets;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use nommer_model::{now_ms, ErrorCode};
use serde_json::{json, Value};

fn no_preset(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no preset {}", name.chars().take(64).collect::<String>()),
    )
}

fn builtin(found: &presets::Found, name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PresetBuiltin,
        format!(
            "the preset {name} is {}: it cannot be changed or deleted through the API",
            match found.origin {
                nommer_model::presets::Origin::Config => "from feederd's config",
                _ => "built in",
            }
        ),
    )
}

#[utoipa::path(get, path = "/v1/presets", tag = "presets", responses((status = 200, body = Object)))]
pub async fn list_presets(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let all: Vec<Value> = presets::list(&state)
        .await?
        .iter()
        .map(|p| p.to_api())
        .collect();
    Ok(Json(json!({ "presets": all })))
}

#[utoipa::path(get, path = "/v1/presets/{name}", tag = "presets", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = nommer_model::error::ApiErrorBody)))]
pub async fn get_preset(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    match presets::find(&state, &name).await? {
        Some(found) => Ok(Json(found.to_api())),
        None => Err(no_preset(&name)),
    }
}

/// Write a preset; it is checked as a job would be, and stored canonical.
#[utoipa::path(put, path = "/v1/presets/{name}", tag = "presets", params(("name" = String, Path)), request_body(content = Object),
    responses((status = 201, body = Object), (status = 200, body = Object), (status = 400, body = nommer_model::error::ApiErrorBody), (status = 409, body = nommer_model::error::ApiErrorBody)))]
pub async fn put_preset(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if let Some(found) = presets::fixed(&state, &name) {
        return Err(builtin(&found, &name));
    }
    let bytes = read_body(body, &state.config).await?;
    let value = nommer_model::submit::decode(&bytes)?;
    let checked =
        nommer_model::presets::check(&name, &Value::Object(value), &state.config.allowlist)?;
    let created = state.store.put_preset(&name, &checked, now_ms()).await?;
    tracing::info!(preset = %name, created, "preset written");
    let found = presets::Found {
        body: checked,
        origin: nommer_model::presets::Origin::Api,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(found.to_api())))
}

#[utoipa::path(delete, path = "/v1/presets/{name}", tag = "presets", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = nommer_model::error::ApiErrorBody), (status = 409, body = nommer_model::error::ApiErrorBody)))]
pub async fn delete_preset(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if let Some(found) = presets::fixed(&state, &name) {
        return Err(builtin(&found, &name));
    }
    match state.store.delete_preset(&name).await? {
        true => {
            tracing::info!(preset = %name, "preset deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        false => Err(no_preset(&name)),
    }
}
