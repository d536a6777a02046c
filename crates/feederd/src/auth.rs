//! Who may call what. API tokens have a name and a role; workers share one
//! token. The check is a layer on each route, set where the route is declared
//! (`routes/mod.rs`), so no handler decides it; a handler only narrows what a
//! `submit` caller sees to its own jobs ([`Caller::owner`]).

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nommer_model::{CodedError, ErrorCode};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submit jobs, and read and cancel its own.
    Submit,
    /// Read everything.
    Read,
    /// Everything, including cancelling anyone's job.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submit => "submit",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Submitting jobs: submit and admin tokens.
    Submit,
    /// The seed's `/t/TOKEN/job/submit`: a submit or admin token in the path.
    SubmitByPath,
    /// Reading jobs: every role; a submit token sees its own jobs only.
    ReadJobs,
    /// Acting on jobs (cancel, retry, redeliver a webhook): admin, and
    /// submit for its own jobs.
    CancelJobs,
    /// Nodes and the fleet: read and admin tokens.
    ReadFleet,
    /// Operator routes: admin tokens.
    Admin,
    /// The lease protocol: the worker token.
    Worker,
}

impl Access {
    pub const ALL: &'static [Access] = &[
        Access::Public,
        Access::Submit,
        Access::SubmitByPath,
        Access::ReadJobs,
        Access::CancelJobs,
        Access::ReadFleet,
        Access::Admin,
        Access::Worker,
    ];

    /// The roles an API token needs (none for public and worker routes).
    pub fn roles(self) -> &'static [Role] {
        match self {
            Access::Public | Access::Worker => &[],
            Access::Submit | Access::SubmitByPath => &[Role::Submit, Role::Admin],
            Access::ReadJobs => &[Role::Submit, Role::Read, Role::Admin],
            Access::CancelJobs => &[Role::Submit, Role::Admin],
            Access::ReadFleet => &[Role::Read, Role::Admin],
            Access::Admin => &[Role::Admin],
        }
    }

    /// The OpenAPI security scheme a route names, and its scopes (the roles).
    pub fn security(self) -> Option<(&'static str, Vec<&'static str>)> {
        match self {
            Access::Public => None,
            Access::Worker => Some(("worker_token", Vec::new())),
            Access::SubmitByPath => Some((
                "path_token",
                self.roles().iter().map(|r| r.as_str()).collect(),
            )),
            _ => Some((
                "api_token",
                self.roles().iter().map(|r| r.as_str()).collect(),
            )),
        }
    }
}

/// A configured API token. `Debug` never shows the token.
#[derive(Clone)]
pub struct ApiToken {
    pub name: String,
    pub secret: String,
    pub role: Role,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiToken({}, {})", self.name, self.role.as_str())
    }
}

/// Every token feederd accepts. No API tokens: the API is open (loopback
/// only, unless `insecure`); no worker token: so is the lease protocol.
#[derive(Clone, Default)]
pub struct Tokens {
    pub api: Vec<ApiToken>,
    pub worker: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tokens({:?}, worker: {})",
            self.api,
            self.worker.is_some()
        )
    }
}

impl Tokens {
    /// Names must be unique and tokens distinct, and the worker token is no
    /// API token, so a token names exactly one caller.
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for (i, token) in self.api.iter().enumerate() {
            let name_ok = !token.name.is_empty()
                && token.name.len() <= 64
                && token
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok {
                return Err(format!(
                    "api_tokens: token name {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                    token.name.chars().take(64).collect::<String>()
                ));
            }
            if !names.insert(token.name.as_str()) {
                return Err(format!("api_tokens: the name {} is used twice", token.name));
            }
            if token.secret.trim().is_empty() {
                return Err(format!(
                    "api_tokens: the token named {} is empty",
                    token.name
                ));
            }
            if self.api[..i].iter().any(|t| t.secret == token.secret) {
                return Err(format!(
                    "api_tokens: the token named {} is the same as another one",
                    token.name
                ));
            }
            if self.worker.as_deref() == Some(token.secret.as_str()) {
                return Err(format!(
                    "api_tokens: the token named {} is also the worker_token",
                    token.name
                ));
            }
        }
        if self.worker.as_deref().is_some_and(|w| w.trim().is_empty()) {
            return Err("worker_token is empty".into());
        }
        Ok(())
    }
}

/// The tokens in force; replaced whole on SIGHUP when token files change.
#[derive(Debug, Default)]
pub struct TokenSet(RwLock<Arc<Tokens>>);

impl TokenSet {
    pub fn new(tokens: Tokens) -> TokenSet {
        TokenSet(RwLock::new(Arc::new(tokens)))
    }

    pub fn current(&self) -> Arc<Tokens> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, tokens: Tokens) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
    }
}

/// Who called an API route, as the layer found them.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name; None when the API runs without tokens.
    pub name: Option<String>,
    pub role: Role,
}

impl Caller {
    fn open() -> Caller {
        Caller {
            name: None,
            role: Role::Admin,
        }
    }

    /// A submit token sees and cancels only the jobs it submitted.
    pub fn owner(&self) -> Option<&str> {
        match self.role {
            Role::Submit => Some(self.name.as_deref().unwrap_or("")),
            Role::Read | Role::Admin => None,
        }
    }

    pub fn may_see(&self, submitted_by: Option<&str>) -> bool {
        self.owner().is_none_or(|owner| submitted_by == Some(owner))
    }
}

/// Compares digests, so neither a token's bytes nor its length shows in the time taken.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The API token `presented` is, comparing with every token in constant time.
pub(crate) fn find<'a>(tokens: &'a Tokens, presented: &str) -> Option<&'a ApiToken> {
    let mut found = None;
    for token in &tokens.api {
        if constant_time_eq(token.secret.as_bytes(), presented.as_bytes()) {
            found = Some(token);
        }
    }
    found
}

/// How a route answers a refusal: the v1 error body or the seed's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    V1,
    Legacy,
}

/// What the layer on one route checks.
#[derive(Clone)]
pub struct Guard {
    /// Only the tokens: the guard's state is cloned for every request.
    pub tokens: Arc<TokenSet>,
    pub access: Access,
    pub shape: Shape,
}

fn refuse(shape: Shape, code: ErrorCode, message: &str) -> Response {
    let error = CodedError::new(code, message);
    match shape {
        Shape::V1 => ApiError(error).into_response(),
        Shape::Legacy => crate::routes::legacy_failure(error),
    }
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenFrom {
    Header,
    Path,
    /// The dashboard's session cookie: a state change must carry its CSRF token.
    Session,
}

/// The token a request presents: the bearer header, or for the seed's
/// path form the segment after `/t/`, or the dashboard's session cookie.
fn presented(access: Access, request: &Request) -> Option<(String, TokenFrom)> {
    if access == Access::SubmitByPath {
        let path = request.uri().path();
        let token = path.strip_prefix("/t/")?.split('/').next()?;
        return percent_encoding::percent_decode_str(token)
            .decode_utf8()
            .ok()
            .map(|t| (t.into_owned(), TokenFrom::Path));
    }
    if let Some(token) = bearer(request.headers()) {
        return Some((token.to_string(), TokenFrom::Header));
    }
    crate::session::token(request.headers()).map(|t| (t, TokenFrom::Session))
}

/// A session's request that changes state without the session's CSRF token.
fn forged(request: &Request, token: &str) -> bool {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return false;
    }
    let sent = request
        .headers()
        .get(crate::session::CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    !constant_time_eq(sent, crate::session::csrf(token).as_bytes())
}

/// A request a browser marks as from another site (`Sec-Fetch-Site`, or an
/// `Origin` that is not this host) may not change anything: it could ride
/// the dashboard's session cookie, or an API open on loopback. Clients
/// other than browsers send neither header.
pub async fn same_site_changes(request: Request, next: Next) -> Response {
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes && cross_site(request.headers()) {
        return refuse(
            Shape::V1,
            ErrorCode::Forbidden,
            "a page of another site may not change anything here",
        );
    }
    next.run(request).await
}

fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let (Some(origin), Some(host)) = (
        headers.get(axum::http::header::ORIGIN),
        headers.get(axum::http::header::HOST),
    ) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    !origin_host.eq_ignore_ascii_case(host.to_str().unwrap_or_default())
}

/// The layer: 401 without a valid token, 403 with one whose role may not.
pub async fn guard(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let tokens = guard.tokens.current();
    let shape = guard.shape;
    match guard.access {
        Access::Public => {}
        Access::Worker => {
            if let Some(expected) = &tokens.worker {
                let ok = bearer(request.headers())
                    .is_some_and(|t| constant_time_eq(expected.as_bytes(), t.as_bytes()));
                if !ok {
                    return refuse(
                        shape,
                        ErrorCode::Unauthorized,
                        "the worker token is required",
                    );
                }
            }
        }
        access => {
            let caller = if tokens.api.is_empty() {
                Caller::open()
            } else {
                let Some((token, from)) = presented(access, &request) else {
                    return refuse(
                        shape,
                        ErrorCode::Unauthorized,
                        "a valid API token is required",
                    );
                };
                let Some(found) = find(&tokens, &token) else {
                    return refuse(
                        shape,
                        ErrorCode::Unauthorized,
                        "a valid API token is required",
                    );
                };
                if from == TokenFrom::Session && forged(&request, &token) {
                    return refuse(
                        shape,
                        ErrorCode::Forbidden,
                        "a signed-in page must send its X-CSRF-Token with each change",
                    );
                }
                Caller {
                    name: Some(found.name.clone()),
                    role: found.role,
                }
            };
            if !access.roles().contains(&caller.role) {
                let message = format!(
                    "a {} token may not do this; it needs one of: {}",
                    caller.role.as_str(),
                    access
                        .roles()
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return refuse(shape, ErrorCode::Forbidden, &message);
            }
            request.extensions_mut().insert(caller);
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, role: Role) -> ApiToken {
        ApiToken {
            name: name.into(),
            secret: secret.into(),
            role,
        }
    }

    #[test]
    fn a_browser_request_from_another_site_is_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(!cross_site(&headers(&[])), "curl and SDKs send neither");
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        let same = [
            ("origin", "http://127.0.0.1:8001"),
            ("host", "127.0.0.1:8001"),
        ];
        assert!(!cross_site(&headers(&same)));
        let other = [
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8001"),
        ];
        assert!(cross_site(&headers(&other)));
    }

    #[test]
    fn roles_reach_what_the_issue_says() {
        use Access::*;
        let may = |role, access: Access| access.roles().contains(&role);
        assert!(may(Role::Submit, Submit) && may(Role::Submit, ReadJobs));
        assert!(may(Role::Submit, CancelJobs) && !may(Role::Submit, ReadFleet));
        assert!(!may(Role::Read, Submit) && !may(Role::Read, CancelJobs));
        assert!(may(Role::Read, ReadJobs) && may(Role::Read, ReadFleet));
        for access in Access::ALL {
            if !matches!(access, Public | Worker) {
                assert!(may(Role::Admin, *access), "{access:?}");
            }
        }
        assert!(!may(Role::Read, Admin) && !may(Role::Submit, Admin));
    }

    #[test]
    fn a_submit_caller_sees_its_own_jobs_only() {
        let app = Caller {
            name: Some("app".into()),
            role: Role::Submit,
        };
        assert!(app.may_see(Some("app")));
        assert!(!app.may_see(Some("other")) && !app.may_see(None));
        let ops = Caller {
            name: Some("ops".into()),
            role: Role::Read,
        };
        assert!(ops.may_see(Some("app")) && ops.may_see(None));
    }

    #[test]
    fn token_sets_must_name_each_caller_once() {
        let ok = Tokens {
            api: vec![
                token("app", "a-token", Role::Submit),
                token("ops", "o-token", Role::Admin),
            ],
            worker: Some("w-token".into()),
        };
        assert!(ok.check().is_ok());
        assert!(find(&ok, "o-token").is_some_and(|t| t.name == "ops"));
        assert!(find(&ok, "o-toke").is_none());
        let mut twice = ok.clone();
        twice.api[1].name = "app".into();
        assert!(twice.check().unwrap_err().contains("used twice"));
        let mut same = ok.clone();
        same.api[1].secret = "a-token".into();
        assert!(same.check().unwrap_err().contains("same as another"));
        let mut worker = ok.clone();
        worker.worker = Some("a-token".into());
        assert!(worker.check().unwrap_err().contains("worker_token"));
        let mut bad_name = ok.clone();
        bad_name.api[0].name = "has space".into();
        assert!(bad_name.check().is_err());
        assert!(!format!("{ok:?}").contains("a-token"));
    }
}
