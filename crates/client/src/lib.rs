//! Typed HTTP client for feederd, used by the CLI, nommerd and the tests.

use nommer_model::api::*;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// feederd answered with an error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// feederd could not be reached or answered garbage.
    #[error("cannot reach feederd: {0}")]
    Transport(String),
}

impl ClientError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            ClientError::Transport(_) => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("nommer/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("build the HTTP client");
        Client {
            base: base.trim_end_matches('/').to_string(),
            http,
            token,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Transport(format!("bad answer from feederd: {e}")));
        }
        Err(
            match serde_json::from_slice::<nommer_model::error::ApiErrorBody>(&bytes) {
                Ok(body) => ClientError::Api {
                    status: status.as_u16(),
                    code: body.error_code,
                    message: body.message,
                },
                Err(_) => ClientError::Api {
                    status: status.as_u16(),
                    code: if status == StatusCode::SERVICE_UNAVAILABLE {
                        "store_unavailable".into()
                    } else {
                        "http".into()
                    },
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                },
            },
        )
    }

    const SHORT: Duration = Duration::from_secs(30);

    pub async fn submit(&self, body: &serde_json::Value) -> Result<Job, ClientError> {
        self.call(Method::POST, "/v1/jobs", Some(body), Self::SHORT)
            .await
    }

    pub async fn job(&self, id: &str) -> Result<Job, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/jobs/{id}"),
            None::<&()>,
            Self::SHORT,
        )
        .await
    }

    /// The job once it has left `seen`, or after `wait` (a long-poll).
    pub async fn job_changed(
        &self,
        id: &str,
        seen: nommer_model::JobState,
        wait: Duration,
    ) -> Result<Job, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/jobs/{id}?state={seen}&wait_ms={}", wait.as_millis()),
            None::<&()>,
            wait + Self::SHORT,
        )
        .await
    }

    pub async fn jobs(
        &self,
        state: Option<&str>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<JobList, ClientError> {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", &limit.to_string());
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", cursor);
        }
        self.call(
            Method::GET,
            &format!("/v1/jobs?{}", query.finish()),
            None::<&()>,
            Self::SHORT,
        )
        .await
    }

    /// The event stream (`GET /v1/events`), from `after` when given.
    pub async fn events(&self, after: Option<i64>) -> Result<Events, ClientError> {
        let mut request = self.http.get(format!("{}/v1/events", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(ClientError::Api {
                status: response.status().as_u16(),
                code: "http".into(),
                message: "the event stream was refused".into(),
            });
        }
        Ok(Events {
            response,
            buffer: String::new(),
        })
    }

    pub async fn cancel(&self, id: &str) -> Result<Job, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            Some(&serde_json::json!({})),
            Self::SHORT,
        )
        .await
    }

    pub async fn deliveries(&self, id: &str) -> Result<DeliveryList, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/jobs/{id}/deliveries"),
            None::<&()>,
            Self::SHORT,
        )
        .await
    }

    pub async fn nodes(&self) -> Result<NodeList, ClientError> {
        self.call(Method::GET, "/v1/nodes", None::<&()>, Self::SHORT)
            .await
    }

    /// Every preset, as `GET /v1/presets` answers (`{"presets": [...]}`).
    pub async fn presets(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, "/v1/presets", None::<&()>, Self::SHORT)
            .await
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/healthz", None::<&()>, Self::SHORT)
            .await
    }

    // ---- worker lease protocol ----

    pub async fn lease(&self, request: &LeaseRequest) -> Result<LeaseResponse, ClientError> {
        let timeout = Duration::from_millis(request.wait_ms) + Self::SHORT;
        self.call(Method::POST, "/v1/workers/lease", Some(request), timeout)
            .await
    }

    pub async fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.call(
            Method::POST,
            "/v1/workers/heartbeat",
            Some(request),
            Self::SHORT,
        )
        .await
    }

    pub async fn report_state(
        &self,
        job_id: &str,
        report: &StateReport,
    ) -> Result<Job, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/workers/jobs/{job_id}/state"),
            Some(report),
            Self::SHORT,
        )
        .await
    }

    /// Several state reports in one request; one result per report, in order.
    pub async fn report_states(
        &self,
        batch: &StateReportBatch,
    ) -> Result<StateReportResults, ClientError> {
        self.call(
            Method::POST,
            "/v1/workers/reports",
            Some(batch),
            Self::SHORT,
        )
        .await
    }

    pub async fn release(
        &self,
        job_id: &str,
        request: &ReleaseRequest,
    ) -> Result<Job, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/workers/jobs/{job_id}/release"),
            Some(request),
            Self::SHORT,
        )
        .await
    }
}

/// One Server-Sent Event of `GET /v1/events`.
#[derive(Debug, Clone)]
pub struct Event {
    /// `state` or `progress`.
    pub kind: String,
    /// A state event's outbox id; progress events have none.
    pub id: Option<i64>,
    pub data: serde_json::Value,
}

/// An open event stream.
pub struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// The next event; None when the stream ends.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    kind: "message".into(),
                    id: None,
                    data: serde_json::Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.kind = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                // A comment line alone is a keep-alive.
                if data.is_empty() {
                    continue;
                }
                event.data = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                return Ok(Some(event));
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            let Some(chunk) = chunk else {
                return Ok(None);
            };
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
