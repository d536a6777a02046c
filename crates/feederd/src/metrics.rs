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
    /// Phases as this replica saw them: each job's wait for its first
    /// lease, and each task's download, encode and upload.
    pub phases: [Histogram; 4],
    pub encode_speed: Histogram,
    /// The running tasks this replica leased, for their phases.
    pub tracker: crate::phases::Tracker,
}

/// The phases, as `nommer_phase_seconds` labels them.
pub const PHASES: [&str; 4] = ["queue_wait", "download", "encode", "upload"];
const SECONDS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
const SPEEDS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// A Prometheus histogram: counts per upper bound, their sum and count.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// The sum, in millionths.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new(SECONDS)
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            encode_speed: Histogram::new(SPEEDS),
            ..Default::default()
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Count a task's phases (its FINISHED report) and a job's wait for a
    /// worker (its first lease).
    pub fn observe(&self, phases: &crate::phases::Phases) {
        let values = [
            phases.queue_wait_s,
            phases.download_s,
            phases.encode_s,
            phases.upload_s,
        ];
        for (histogram, value) in self.phases.iter().zip(values) {
            if let Some(value) = value {
                histogram.observe(value);
            }
        }
        if let Some(speed) = phases.encode_speed {
            self.encode_speed.observe(speed);
        }
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
    let queues = state.store.list_queues().await?;
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
    family(
        &mut out,
        "nommer_queue_tasks",
        "gauge",
        "Tasks of each queue, waiting and leased.",
    );
    for q in &queues {
        let _ = writeln!(
            out,
            "nommer_queue_tasks{{queue=\"{}\",state=\"pending\"}} {}",
            q.name, q.pending
        );
        let _ = writeln!(
            out,
            "nommer_queue_tasks{{queue=\"{}\",state=\"running\"}} {}",
            q.name, q.running
        );
    }
    family(
        &mut out,
        "nommer_queue_paused",
        "gauge",
        "1 for a paused queue.",
    );
    for q in &queues {
        let _ = writeln!(
            out,
            "nommer_queue_paused{{queue=\"{}\"}} {}",
            q.name,
            u8::from(q.paused)
        );
    }
    family(
        &mut out,
        "nommer_phase_seconds",
        "histogram",
        "Time in each phase: a job's wait for its first lease; a task's download, encode and upload (each counted by the replica that leased it and took its reports).",
    );
    for (phase, histogram) in PHASES.iter().zip(&m.phases) {
        histogram.write(
            &mut out,
            "nommer_phase_seconds",
            &format!("phase=\"{phase}\""),
        );
    }
    family(
        &mut out,
        "nommer_encode_speed",
        "histogram",
        "Each finished task's encode speed: media seconds per second of encoding.",
    );
    m.encode_speed.write(&mut out, "nommer_encode_speed", "");
    let loops = state.loops.snapshot();
    for (name, kind, help) in [
        (
            "nommer_loop_runs_total",
            "counter",
            "Passes of each background loop on this replica.",
        ),
        (
            "nommer_loop_errors_total",
            "counter",
            "Failed passes of each background loop on this replica.",
        ),
        (
            "nommer_loop_failing",
            "gauge",
            "Failed passes in a row of each background loop (0: healthy).",
        ),
        (
            "nommer_loop_last_run_timestamp_seconds",
            "gauge",
            "When each background loop last ended a pass (Unix seconds).",
        ),
    ] {
        family(&mut out, name, kind, help);
        for l in &loops {
            let value = match name {
                "nommer_loop_runs_total" => l.runs as f64,
                "nommer_loop_errors_total" => l.errors as f64,
                "nommer_loop_failing" => f64::from(l.failing),
                _ => l.last_run_s.unwrap_or(0.0),
            };
            let _ = writeln!(out, "{name}{{loop=\"{}\"}} {value}", l.name);
        }
    }
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
