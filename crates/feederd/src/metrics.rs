//! `/metrics` in the Prometheus text format: this replica's counters, and the
//! cluster's job and node counts read from the store at scrape time.

use crate::error::ApiResult;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since this replica started.
#[derive(Default)]
pub struct Metrics {
    pub http_requests: AtomicU64,
    pub jobs_submitted: AtomicU64,
    pub leases_granted: AtomicU64,
    pub webhooks_delivered: AtomicU64,
    pub webhooks_retried: AtomicU64,
    pub webhooks_failed: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Prometheus metrics; needs a read or admin token when tokens are configured.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let jobs = state.store.count_jobs().await?;
    let nodes = state.store.list_nodes().await?;
    let m = &state.metrics;
    let mut out = String::new();

    family(
        &mut out,
        "nommer_jobs",
        "gauge",
        "Jobs in the store, by state.",
    );
    let mut by_state: BTreeMap<&str, u64> = nommer_model::JobState::ALL
        .iter()
        .map(|s| (s.as_str(), 0))
        .collect();
    for (job_state, n) in &jobs {
        by_state.insert(job_state.as_str(), *n);
    }
    for (job_state, n) in by_state {
        let _ = writeln!(out, "nommer_jobs{{state=\"{job_state}\"}} {n}");
    }

    family(
        &mut out,
        "nommer_nodes",
        "gauge",
        "Workers known to feederd, by state.",
    );
    let mut node_states: BTreeMap<&str, u64> = BTreeMap::new();
    for node in &nodes {
        *node_states.entry(node.state.as_str()).or_default() += 1;
    }
    for (node_state, n) in node_states {
        let _ = writeln!(out, "nommer_nodes{{state=\"{node_state}\"}} {n}");
    }
    family(
        &mut out,
        "nommer_node_slots",
        "gauge",
        "Job slots of active workers, and how many are busy.",
    );
    let active = nodes
        .iter()
        .filter(|n| n.state == nommer_model::NodeState::Active);
    let (slots, busy) = active.fold((0u64, 0u64), |(s, b), n| {
        (s + u64::from(n.max_jobs), b + u64::from(n.running_jobs))
    });
    let _ = writeln!(out, "nommer_node_slots{{kind=\"total\"}} {slots}");
    let _ = writeln!(out, "nommer_node_slots{{kind=\"busy\"}} {busy}");

    let counters = [
        (
            "nommer_http_requests_total",
            "HTTP requests this replica answered.",
            &m.http_requests,
        ),
        (
            "nommer_jobs_submitted_total",
            "Jobs accepted by this replica.",
            &m.jobs_submitted,
        ),
        (
            "nommer_leases_granted_total",
            "Leases granted by this replica.",
            &m.leases_granted,
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
    family(
        &mut out,
        "nommer_webhook_attempts_total",
        "counter",
        "Webhook delivery attempts by this replica, by outcome.",
    );
    for (outcome, value) in [
        ("delivered", &m.webhooks_delivered),
        ("retry", &m.webhooks_retried),
        ("failed", &m.webhooks_failed),
    ] {
        let _ = writeln!(
            out,
            "nommer_webhook_attempts_total{{outcome=\"{outcome}\"}} {}",
            value.load(Ordering::Relaxed)
        );
    }
    family(
        &mut out,
        "nommer_leader",
        "gauge",
        "1 while this replica runs the background loops.",
    );
    let _ = writeln!(
        out,
        "nommer_leader {}",
        u8::from(state.leadership.is_leader())
    );
    family(
        &mut out,
        "nommer_store_statements_total",
        "counter",
        "SQL statements this replica ran.",
    );
    let _ = writeln!(
        out,
        "nommer_store_statements_total {}",
        state.store.statements()
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

/// Counts every request (for requests-per-job figures).
pub async fn count_requests(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    Metrics::add(&state.metrics.http_requests, 1);
    next.run(request).await
}
