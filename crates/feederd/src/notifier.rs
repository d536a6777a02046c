//! Webhook delivery from the event outbox: in order per job, at least once,
//! with exponential backoff for `webhook_retry_period`, signed per Standard
//! Webhooks when a secret is configured.
//!
//! Deliveries run as their own tasks, at most `webhook_concurrency` at once and
//! `webhook_per_host` to any one host: a receiver that never answers holds
//! only its own slots, and its other events wait (when they would fill a
//! whole batch, postponed without an attempt) while the rest of the outbox
//! flows.
//!
//! Each job's `notify_format` picks the body: `json` (the v1 default) is
//! `{"type": "job.<state>", "timestamp", "data": <the job's view, with
//! event_id>}`; `form` is the seed's form-urlencoded `unique_id`,
//! `job_state`, `job_state_details` (empty, never "None"). Both carry
//! `User-Agent: media-nommer feederd` and the same Standard Webhooks headers.

use crate::loops::{Next, Worker};
use crate::AppState;
use base64::Engine;
use hmac::{Hmac, Mac};
use nommer_model::backoff::Backoff;
use nommer_model::kinds::NotifyFormat;
use nommer_model::{now_ms, rfc3339, JobState};
use nommer_store::{AttemptRecord, DeliveryOutcome, EventRecord, JobRecord, TaskRecord};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const BATCH: u32 = 64;

pub const USER_AGENT: &str = "media-nommer feederd";

/// The seed's form body; a job that ended adds `outputs`, what each of its
/// outputs made (JSON, as `GET /v1/jobs/{id}` shows it).
pub fn form_body(event: &EventRecord, outputs: Option<&str>) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("unique_id", &event.job_id)
        .append_pair("job_state", event.state.as_str())
        .append_pair("job_state_details", event.details.as_deref().unwrap_or(""));
    if let Some(outputs) = outputs {
        form.append_pair("outputs", outputs);
    }
    form.finish()
}

/// What the ended job's task reported of its outputs, if it did.
fn reported_outputs(event: &EventRecord, tasks: &[TaskRecord]) -> Option<String> {
    if !matches!(event.state, JobState::Finished | JobState::Error) {
        return None;
    }
    tasks
        .iter()
        .filter(|t| t.state == event.state)
        .filter_map(|t| t.result.as_ref()?.get("outputs").map(|o| o.to_string()))
        .next_back()
}

/// The JSON body: the job as `GET /v1/jobs/{id}` shows it, at the event's
/// state and details, with the event's id. `tasks` are read for an event
/// that ended the job only, as that view reads them.
pub fn json_body(event: &EventRecord, job: &JobRecord, tasks: &[TaskRecord]) -> String {
    let mut view = job.to_api_with(tasks);
    view.state = event.state;
    view.state_details = event.details.clone();
    let mut data = serde_json::to_value(&view).unwrap_or_default();
    data["event_id"] = serde_json::json!(event.seq);
    serde_json::json!({
        "type": format!("job.{}", event.state.as_str().to_ascii_lowercase()),
        "timestamp": rfc3339(event.created_at),
        "data": data,
    })
    .to_string()
}

/// The key of a Standard Webhooks secret: base64 after `whsec_`, else the raw bytes.
pub fn secret_key(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_else(|_| encoded.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// A failed delivery waits 1 s, then twice as long each time, at most 10 minutes.
const BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(600));

/// The host a delivery goes to, for the per-host bound.
fn host_of(event: &EventRecord) -> String {
    event
        .notify_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

async fn deliver(state: AppState, client: reqwest::Client, event: EventRecord) {
    let Some(url) = event.notify_url.clone() else {
        return;
    };
    // The body is the job's view: without it (the store unreachable) the
    // event stays pending, no attempt counted, for the next pass.
    let job = match state.store.get_job(&event.job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(job_id = %event.job_id, error = %e, "cannot read the job of a webhook; it waits");
            return;
        }
    };
    let tasks = match event.state.is_terminal() {
        true => state
            .store
            .job_tasks(&event.job_id)
            .await
            .unwrap_or_default(),
        false => Vec::new(),
    };
    let (content_type, body) = match job.notify_format {
        NotifyFormat::Json => ("application/json", json_body(&event, &job, &tasks)),
        NotifyFormat::Form => (
            "application/x-www-form-urlencoded",
            form_body(&event, reported_outputs(&event, &tasks).as_deref()),
        ),
    };
    let webhook_id = event.webhook_id();
    let timestamp = now_ms() / 1000;
    let mut request = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header("webhook-id", &webhook_id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = &state.config.webhook_secret {
        request = request.header(
            "webhook-signature",
            sign(&secret_key(secret), &webhook_id, timestamp, &body),
        );
    }
    let started = Instant::now();
    let result = request.body(body).send().await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (status_code, error) = match &result {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(e) => (None, Some(e.without_url_ref())),
    };
    let delivered = status_code.is_some_and(|c| (200..300).contains(&c));
    let now = now_ms();
    let attempt = AttemptRecord {
        attempt: event.attempts + 1,
        attempted_at: now,
        status_code,
        error: error.clone(),
        duration_ms,
    };
    let expired = now - event.created_at >= state.config.webhook_retry_period.as_millis() as i64;
    let outcome = if delivered {
        DeliveryOutcome::Delivered
    } else if expired {
        DeliveryOutcome::Failed
    } else {
        DeliveryOutcome::Retry {
            next_attempt_at: now + BACKOFF.delay_ms(event.attempts + 1),
        }
    };
    let counter = match &outcome {
        DeliveryOutcome::Delivered => &state.metrics.webhooks_delivered,
        DeliveryOutcome::Retry { .. } => &state.metrics.webhooks_retried,
        DeliveryOutcome::Failed => &state.metrics.webhooks_failed,
    };
    crate::metrics::Metrics::add(counter, 1);
    match &outcome {
        DeliveryOutcome::Delivered => {
            tracing::debug!(job_id = %event.job_id, webhook_id, state = %event.state, "webhook delivered")
        }
        DeliveryOutcome::Retry { .. } => {
            tracing::warn!(job_id = %event.job_id, webhook_id, status = ?status_code, error = ?error, attempt = attempt.attempt, "webhook delivery failed; will retry")
        }
        DeliveryOutcome::Failed => {
            tracing::error!(job_id = %event.job_id, webhook_id, attempt = attempt.attempt, "webhook delivery gave up: retry period over")
        }
    }
    if let Err(e) = state
        .store
        .record_delivery(event.seq, &attempt, outcome)
        .await
    {
        tracing::error!(error = %e, job_id = %event.job_id, "cannot record a webhook delivery");
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        let text = text.split(" for url (").next().unwrap_or(&text).to_string();
        let mut source = std::error::Error::source(self);
        let mut detail = text;
        while let Some(inner) = source {
            detail = format!("{detail}: {inner}");
            source = inner.source();
        }
        detail
    }
}

type Done = Result<(tokio::task::Id, ()), tokio::task::JoinError>;

/// Deliveries in flight: their tasks, their events, and how many per host.
#[derive(Default)]
struct InFlight {
    tasks: HashMap<tokio::task::Id, (i64, String, Instant)>,
    events: HashSet<i64>,
    hosts: HashMap<String, usize>,
}

impl InFlight {
    fn start(&mut self, task: tokio::task::Id, seq: i64, host: String) {
        self.events.insert(seq);
        *self.hosts.entry(host.clone()).or_default() += 1;
        self.tasks.insert(task, (seq, host, Instant::now()));
    }

    /// A task ended, delivered, failed or panicked: its slots are free.
    fn finish(&mut self, done: Done) {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => e.id(),
        };
        let Some((seq, host, _)) = self.tasks.remove(&id) else {
            return;
        };
        self.events.remove(&seq);
        if let Some(n) = self.hosts.get_mut(&host) {
            *n -= 1;
            if *n == 0 {
                self.hosts.remove(&host);
            }
        }
    }

    fn on_host(&self, host: &str) -> usize {
        self.hosts.get(host).copied().unwrap_or(0)
    }

    /// How long the host's oldest delivery in flight has run: long for a
    /// receiver that does not answer, milliseconds for a busy healthy one.
    fn stuck_for(&self, host: &str) -> Duration {
        self.tasks
            .values()
            .filter(|(_, h, _)| h == host)
            .map(|(_, _, started)| started.elapsed())
            .max()
            .unwrap_or_default()
    }
}

/// The notifier's loop: each pass starts the deliveries that are due; while
/// idle it waits for a new event or a delivery to end.
pub struct Notifier {
    client: reqwest::Client,
    in_flight: InFlight,
    tasks: JoinSet<()>,
}

impl Notifier {
    pub fn new(state: &AppState) -> Notifier {
        Notifier {
            client: nommer_storage::net::client_with_connect_timeout(
                state.config.net_policy,
                Some(state.config.webhook_timeout),
                state.config.webhook_connect_timeout,
                USER_AGENT,
            ),
            in_flight: InFlight::default(),
            tasks: JoinSet::new(),
        }
    }
}

/// How long an idle notifier waits before it looks at the outbox again
/// (another replica's events raise no signal here).
const IDLE: Duration = Duration::from_millis(500);

#[async_trait::async_trait]
impl Worker for Notifier {
    fn name(&self) -> &'static str {
        "notifier"
    }

    async fn work(&mut self, state: &AppState) -> anyhow::Result<Next> {
        while let Some(done) = self.tasks.try_join_next_with_id() {
            self.in_flight.finish(done);
        }
        let per_host = state.config.webhook_per_host.max(1);
        let concurrency = state.config.webhook_concurrency.max(1);
        let now = now_ms();
        let due = state.store.due_deliveries(now, BATCH).await?;
        let crowded = due.len() as u32 == BATCH;
        let (mut started, mut waiting) = (false, Vec::new());
        for event in due {
            if self.in_flight.events.contains(&event.seq) {
                continue;
            }
            if self.in_flight.events.len() >= concurrency {
                break;
            }
            let host = host_of(&event);
            if self.in_flight.on_host(&host) >= per_host {
                waiting.push((event.seq, host));
                continue;
            }
            let seq = event.seq;
            let task = self
                .tasks
                .spawn(deliver(state.clone(), self.client.clone(), event));
            self.in_flight.start(task.id(), seq, host);
            started = true;
        }
        // A full batch of events whose hosts are all busy would hide every
        // other host's events: put them off (no attempt is counted) for as
        // long as their host has kept its oldest delivery, between 250 ms and
        // webhook_timeout, and look again at once. Not when every slot is
        // busy: then the next free one decides.
        let free = self.in_flight.events.len() < concurrency;
        if crowded && !started && free && !waiting.is_empty() {
            for (seq, host) in waiting {
                let least = Duration::from_millis(250);
                let wait = self
                    .in_flight
                    .stuck_for(&host)
                    .clamp(least, state.config.webhook_timeout.max(least));
                state
                    .store
                    .postpone_delivery(seq, now + wait.as_millis() as i64)
                    .await?;
            }
            return Ok(Next::Busy);
        }
        Ok(Next::Idle(IDLE))
    }

    async fn wait_for_work(&mut self, state: &AppState) {
        let signal = state.store.events_signal();
        tokio::select! {
            Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.in_flight.finish(done),
            _ = signal.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_signature() {
        // The example from the Standard Webhooks specification.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn form_body_has_empty_details_never_none() {
        let event = EventRecord {
            seq: 1,
            job_id: "abc".into(),
            state: nommer_model::JobState::Encoding,
            details: None,
            created_at: 0,
            delivery: "pending".into(),
            notify_url: None,
            next_attempt_at: None,
            attempts: 0,
        };
        assert_eq!(
            form_body(&event, None),
            "unique_id=abc&job_state=ENCODING&job_state_details="
        );
    }
}
