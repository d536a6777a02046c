//! `GET /v1/events`: the event outbox as Server-Sent Events. Each state
//! change is an `event: state` whose `id` is the outbox event's, so a client
//! that reconnects with `Last-Event-ID` (or `?after=`) resumes where it was,
//! on any replica. `event: progress` carries a running job's progress; it
//! has no id and is never replayed.
//!
//! The stream reads the whole outbox in order and filters it here: on
//! PostgreSQL an event can commit after one with a higher id, so the stream
//! stops at a gap until the missing id shows up or [`GAP_WAIT`] passes (a
//! rolled-back insert leaves a gap for good).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Extension;
use nommer_model::{ErrorCode, JobId};
use nommer_store::{EventRecord, JobRecord};
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a stream waits for an event id that has not committed yet.
const GAP_WAIT: Duration = Duration::from_secs(2);
/// Events younger than this may follow a gap that is still to fill.
const RECENT_MS: i64 = 10_000;
/// Events read per look at the outbox.
const PAGE: u32 = 500;
/// How often progress is looked at, and the outbox when no signal comes
/// (another replica's change raises none here).
const TICK: Duration = Duration::from_millis(500);
/// Running jobs whose progress one stream follows.
const PROGRESS_JOBS: u32 = 200;
/// Job owners remembered per stream, for a submit token's filter.
const OWNERS_KEPT: usize = 10_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// Only this job's events.
    job: Option<String>,
    /// Resume after this event id (as `Last-Event-ID` does; the header wins).
    after: Option<String>,
}

/// What the stream sends of one state change.
#[derive(serde::Serialize)]
struct StateData<'a> {
    id: i64,
    job_id: &'a str,
    state: nommer_model::JobState,
    details: Option<&'a str>,
    at: String,
}

/// The event stream (text/event-stream).
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    responses((status = 200, description = "Server-Sent Events: `state` events with ids, `progress` events without", content_type = "text/event-stream")))]
pub async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> ApiResult<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>> {
    let job = match query.job.as_deref().filter(|j| !j.is_empty()) {
        Some(id) if JobId::looks_valid(id) => Some(id.to_string()),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "job is not a job id",
            ))
        }
        None => None,
    };
    if let Some(id) = &job {
        let visible = state.store.get_job(id).await?;
        if !visible.is_some_and(|j| caller.may_see(j.submitted_by.as_deref())) {
            return Err(ApiError::new(ErrorCode::NotFound, format!("no job {id}")));
        }
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(query.after.clone())
        .filter(|s| !s.is_empty());
    let resume = match resume {
        Some(text) => Some(text.trim().parse::<i64>().map_err(|_| {
            ApiError::new(ErrorCode::InvalidQuery, "Last-Event-ID must be an event id")
        })?),
        None => None,
    };
    // The start is fixed before the answer goes out, so a client that saw
    // the stream open misses nothing after it.
    let (cursor, history) = match resume {
        Some(after) => (after, false),
        None => (state.store.last_event_seq().await?, true),
    };
    let Ok(slot) = state.streams.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            ErrorCode::TooManyStreams,
            "this replica holds as many event streams as it may (max_long_polls)",
        ));
    };
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let stream = Streamer {
        _slot: slot,
        state: state.clone(),
        caller,
        job,
        tx,
        owners: HashMap::new(),
        progress: HashMap::new(),
    };
    tokio::spawn(stream.run(cursor, history));
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct Streamer {
    /// Held while the stream runs.
    _slot: tokio::sync::OwnedSemaphorePermit,
    state: AppState,
    caller: Caller,
    job: Option<String>,
    tx: mpsc::Sender<Event>,
    /// Each job's owner, for a submit token's stream.
    owners: HashMap<String, Option<String>>,
    /// The progress last sent of each running job.
    progress: HashMap<String, String>,
}

impl Streamer {
    async fn run(mut self, cursor: i64, history: bool) {
        if let Err(e) = self.stream(cursor, history).await {
            tracing::debug!(error = %e, "event stream ended");
        }
    }

    async fn send(&self, event: Event) -> Result<(), String> {
        self.tx
            .send(event)
            .await
            .map_err(|_| "the client went away".to_string())
    }

    /// Events after `cursor`; with `history`, a one-job stream first sends
    /// that job's events up to it.
    async fn stream(&mut self, mut cursor: i64, history: bool) -> Result<(), String> {
        let store = self.state.store.clone();
        if let (true, Some(id)) = (history, self.job.clone()) {
            let past = store.job_events(&id).await.map_err(|e| e.to_string())?;
            for event in past.iter().filter(|e| e.seq <= cursor) {
                self.send(state_event(event)).await?;
            }
        }
        let changes = store.changes_signal();
        let mut gap_since: Option<Instant> = None;
        let mut last_progress = Instant::now() - TICK;
        loop {
            let changed = changes.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let events = store
                .events_after(cursor, None, PAGE)
                .await
                .map_err(|e| e.to_string())?;
            let full = events.len() as u32 == PAGE;
            for event in &events {
                // Only a recent event can have one before it still to commit;
                // older gaps are rolled-back inserts, or retention's.
                let recent = nommer_model::now_ms() - event.created_at < RECENT_MS;
                if event.seq != cursor + 1 && recent {
                    let since = *gap_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < GAP_WAIT {
                        break;
                    }
                }
                gap_since = None;
                cursor = event.seq;
                if self.wants(event).await {
                    self.send(state_event(event)).await?;
                }
            }
            if last_progress.elapsed() >= TICK {
                last_progress = Instant::now();
                if self.revoked() {
                    return Ok(());
                }
                self.send_progress().await?;
            }
            if full && gap_since.is_none() {
                continue;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = self.tx.closed() => return Ok(()),
                _ = self.state.stopping() => return Ok(()),
            }
        }
    }

    /// The caller's token was removed, or its role changed, since the
    /// stream opened (tokens reload on SIGHUP): the stream ends.
    fn revoked(&self) -> bool {
        let Some(name) = &self.caller.name else {
            return false;
        };
        let tokens = self.state.config.tokens.current();
        !tokens
            .api
            .iter()
            .any(|t| &t.name == name && t.role == self.caller.role)
    }

    /// Whether this stream shows the event: its job, and one the caller may see.
    async fn wants(&mut self, event: &EventRecord) -> bool {
        if let Some(job) = &self.job {
            return *job == event.job_id;
        }
        let Some(owner) = self.caller.owner().map(str::to_string) else {
            return true;
        };
        if !self.owners.contains_key(&event.job_id) {
            if self.owners.len() >= OWNERS_KEPT {
                self.owners.clear();
            }
            let found = match self.state.store.get_job(&event.job_id).await {
                Ok(job) => job.and_then(|j| j.submitted_by),
                Err(_) => None,
            };
            self.owners.insert(event.job_id.clone(), found);
        }
        self.owners[&event.job_id].as_deref() == Some(owner.as_str())
    }

    /// A progress event for each followed job whose progress changed.
    async fn send_progress(&mut self) -> Result<(), String> {
        let store = &self.state.store;
        let jobs: Vec<JobRecord> = match &self.job {
            Some(id) => store
                .get_job(id)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|j| !j.state.is_terminal())
                .collect(),
            None => store
                .running_jobs(self.caller.owner(), PROGRESS_JOBS)
                .await
                .map_err(|e| e.to_string())?,
        };
        let mut now = HashMap::with_capacity(jobs.len());
        for job in jobs {
            let Some(progress) = &job.progress else {
                continue;
            };
            let data =
                serde_json::json!({"job_id": job.id, "state": job.state, "progress": progress})
                    .to_string();
            if self.progress.get(&job.id) != Some(&data) {
                self.send(Event::default().event("progress").data(data.clone()))
                    .await?;
            }
            now.insert(job.id, data);
        }
        self.progress = now;
        Ok(())
    }
}

fn state_event(event: &EventRecord) -> Event {
    let data = StateData {
        id: event.seq,
        job_id: &event.job_id,
        state: event.state,
        details: event.details.as_deref(),
        at: nommer_model::rfc3339(event.created_at),
    };
    Event::default()
        .event("state")
        .id(event.seq.to_string())
        .data(serde_json::to_string(&data).unwrap_or_default())
}
