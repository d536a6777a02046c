//! The dashboard: its page and assets, embedded in the binary (no CDN, no
//! build step), and its session: sign in with an API token, which is kept
//! in an HttpOnly cookie (`session.rs`). The page itself calls the v1 API.

use crate::error::{read_body, ApiError, ApiResult};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nommer_model::ErrorCode;
use serde_json::{json, Value};

const INDEX: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");

/// Only the page's own scripts, styles and API; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's page.
#[utoipa::path(get, path = "/", tag = "dashboard", responses((status = 200, description = "The dashboard", content_type = "text/html")))]
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

#[utoipa::path(get, path = "/ui/app.js", tag = "dashboard", responses((status = 200, description = "The dashboard's script", content_type = "text/javascript")))]
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

#[utoipa::path(get, path = "/ui/app.css", tag = "dashboard", responses((status = 200, description = "The dashboard's styles", content_type = "text/css")))]
pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Who the page is signed in as: the caller its session cookie names.
fn signed_in(state: &AppState, token: &str) -> Option<Value> {
    let tokens = state.config.tokens.current();
    let found = crate::auth::find(&tokens, token)?;
    Some(
        json!({"signed_in": true, "tokens_required": true, "name": found.name,
        "role": found.role.as_str(), "csrf": crate::session::csrf(token)}),
    )
}

fn open_access() -> Value {
    json!({"signed_in": true, "tokens_required": false, "name": null, "role": "admin", "csrf": null})
}

/// The page's session: whether tokens are required, and who is signed in.
#[utoipa::path(get, path = "/ui/session", tag = "dashboard", responses((status = 200, body = Object)))]
pub async fn get_session(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    if state.config.tokens.current().api.is_empty() {
        return Json(open_access());
    }
    let session = crate::session::token(&headers).and_then(|t| signed_in(&state, &t));
    Json(session.unwrap_or_else(|| json!({"signed_in": false, "tokens_required": true})))
}

/// Sign in: `{"token": "..."}`, an API token; answered with a session cookie.
#[utoipa::path(post, path = "/ui/session", tag = "dashboard", request_body(content = Object),
    responses((status = 200, body = Object), (status = 401, body = nommer_model::error::ApiErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if state.config.tokens.current().api.is_empty() {
        return Ok(Json(open_access()).into_response());
    }
    let bytes = read_body(body, &state.config).await?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let token = body["token"].as_str().unwrap_or_default();
    let Some(session) = signed_in(&state, token) else {
        tracing::warn!("dashboard sign-in refused");
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "that is not an API token",
        ));
    };
    tracing::info!(name = %session["name"].as_str().unwrap_or(""), "dashboard sign-in");
    let cookie = crate::session::set_cookie(token, &headers);
    let mut response = Json(session).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Sign out: the session cookie is cleared.
#[utoipa::path(delete, path = "/ui/session", tag = "dashboard", responses((status = 200, body = Object)))]
pub async fn sign_out(headers: HeaderMap) -> Response {
    let mut response = Json(json!({"signed_in": false})).into_response();
    if let Ok(value) = HeaderValue::from_str(&crate::session::clear_cookie(&headers)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
