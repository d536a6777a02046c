//! The verdict: every job and event read back from the store, the receiver's
//! log and the outputs checked against them, and the table that says so.

use crate::faults::{FaultKind, Injected};
use crate::load::{JobKind, Load};
use crate::receiver::Delivery;
use nommer_model::JobState;
use nommer_testkit::media::decoded_frames;
use sqlx::{Connection, PgConnection, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::path::Path;

/// Jobs not yet terminal, by the store (None while it cannot be reached).
pub async fn unfinished(store_url: &str) -> Option<i64> {
    let mut conn = PgConnection::connect(store_url).await.ok()?;
    let terminal = terminal_list();
    sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM jobs WHERE state NOT IN ({terminal})"
    ))
    .fetch_one(&mut conn)
    .await
    .ok()
}

/// Events the notifier has still to deliver.
pub async fn undelivered(store_url: &str) -> Option<i64> {
    let mut conn = PgConnection::connect(store_url).await.ok()?;
    sqlx::query_scalar("SELECT COUNT(*) FROM job_events WHERE delivery = 'pending'")
        .fetch_one(&mut conn)
        .await
        .ok()
}

fn terminal_list() -> String {
    JobState::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

struct JobRow {
    state: String,
    error_code: Option<String>,
    created_at: i64,
}

struct EventRow {
    seq: i64,
    job_id: String,
    state: String,
    created_at: i64,
    delivery: String,
}

/// When each phase ran, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub faults_from: i64,
    pub faults_until: i64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub minutes: f64,
    pub submitted: BTreeMap<JobKind, u64>,
    pub refused: BTreeMap<String, u64>,
    /// Jobs in the store whose submit answer never reached us.
    pub unanswered: u64,
    pub finished: u64,
    pub errored: BTreeMap<String, u64>,
    pub error_samples: Vec<String>,
    /// Jobs that ended ERROR because a scratch disk filled while they had
    /// attempts left: the node's fault is retried elsewhere, never the job's.
    pub disk_full_errors: Vec<String>,
    pub canceled: u64,
    pub lost: Vec<String>,
    pub duplicate: Vec<String>,
    pub out_of_order: Vec<String>,
    /// Terminal jobs whose last event is not their state.
    pub state_mismatch: Vec<String>,
    /// Jobs that did not finish, yet their output is at the destination.
    pub published_unfinished: Vec<String>,
    pub probed: BTreeMap<JobKind, u64>,
    pub corrupt: Vec<String>,
    pub missing_webhooks: Vec<String>,
    pub failed_webhooks: u64,
    pub webhook_deliveries: u64,
    pub webhook_events: u64,
    pub faults: Injected,
    pub crashed: Vec<String>,
    /// Submit-to-FINISHED of copy jobs, seconds: (calm, during faults).
    pub copy_latency: (Vec<f64>, Vec<f64>),
    pub drained_s: f64,
    /// Scratch still in use on the workers once the drain was over.
    pub scratch_left_bytes: u64,
}

impl Report {
    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Every must-be-zero figure is zero.
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.duplicate.is_empty()
            && self.out_of_order.is_empty()
            && self.corrupt.is_empty()
            && self.missing_webhooks.is_empty()
            && self.crashed.is_empty()
            && self.disk_full_errors.is_empty()
            && self.state_mismatch.is_empty()
            && self.published_unfinished.is_empty()
    }
}

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    Some(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// Read everything back and judge it.
pub async fn judge(
    store_url: &str,
    s3_root: &Path,
    load: &Load,
    seen: &[Delivery],
    phases: Phases,
) -> anyhow::Result<Report> {
    let mut conn = PgConnection::connect(store_url).await?;
    let mut jobs = HashMap::new();
    for row in sqlx::query("SELECT id, state, error_code, state_details, created_at FROM jobs")
        .fetch_all(&mut conn)
        .await?
    {
        let job = JobRow {
            state: row.try_get("state")?,
            error_code: row.try_get("error_code")?,
            created_at: row.try_get("created_at")?,
        };
        let details: Option<String> = row.try_get("state_details")?;
        jobs.insert(row.try_get::<String, _>("id")?, (job, details));
    }
    let events: Vec<EventRow> =
        sqlx::query("SELECT seq, job_id, state, created_at, delivery FROM job_events ORDER BY seq")
            .fetch_all(&mut conn)
            .await?
            .iter()
            .map(|row| {
                Ok(EventRow {
                    seq: row.try_get("seq")?,
                    job_id: row.try_get("job_id")?,
                    state: row.try_get("state")?,
                    created_at: row.try_get("created_at")?,
                    delivery: row.try_get("delivery")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;

    let mut report = Report {
        refused: load.refused.clone(),
        ..Report::default()
    };
    let ours: HashSet<&str> = load.submitted.iter().map(|s| s.id.as_str()).collect();
    for s in &load.submitted {
        *report.submitted.entry(s.kind).or_default() += 1;
    }
    report.unanswered = jobs.keys().filter(|id| !ours.contains(id.as_str())).count() as u64;

    // Every job in the store, ours or one whose answer was lost, must end.
    let mut ids: Vec<&String> = jobs.keys().collect();
    ids.sort();
    for id in ids {
        let (job, details) = &jobs[id];
        match job.state.parse::<JobState>().ok() {
            Some(JobState::Finished) => report.finished += 1,
            Some(JobState::Error) | Some(JobState::Abandoned) => {
                let code = job.error_code.clone().unwrap_or_else(|| job.state.clone());
                let text = details.as_deref().unwrap_or("");
                // A full disk may be the last of a task's attempts (each of
                // which some fault ended); it must never be the only reason.
                let disk =
                    text.contains("No space left on device") || text.contains("scratch disk");
                if disk && !text.contains("no attempts are left") {
                    report.disk_full_errors.push(format!("{id} {code}"));
                }
                *report.errored.entry(code.clone()).or_default() += 1;
                if report.error_samples.len() < 12 {
                    report.error_samples.push(format!(
                        "{id} {code}: {}",
                        details
                            .as_deref()
                            .unwrap_or("")
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ));
                }
            }
            Some(JobState::Canceled) => report.canceled += 1,
            _ => report.lost.push(format!("{id} ({})", job.state)),
        }
    }

    // The event table, per job.
    let mut table: HashMap<&str, Vec<&EventRow>> = HashMap::new();
    for e in &events {
        table.entry(e.job_id.as_str()).or_default().push(e);
    }
    for (id, list) in &table {
        let terminal = list
            .iter()
            .filter(|e| e.state.parse::<JobState>().is_ok_and(JobState::is_terminal))
            .count();
        if terminal > 1 {
            report
                .duplicate
                .push(format!("{id}: {terminal} terminal events"));
        }
    }
    // A terminal job's last event is its state: nothing ended unannounced.
    for (id, (job, _)) in &jobs {
        let ended = job
            .state
            .parse::<JobState>()
            .is_ok_and(JobState::is_terminal);
        let last = table.get(id.as_str()).and_then(|list| list.last());
        let announced = matches!(last, Some(e) if e.state == job.state);
        if ended && !announced {
            report.state_mismatch.push(format!(
                "{id}: {}, its last event {}",
                job.state,
                last.map_or("none", |e| e.state.as_str())
            ));
        }
    }

    // What the receiver saw: distinct events in first-seen order.
    report.webhook_deliveries = seen.len() as u64;
    let mut first_seen: HashMap<&str, Vec<(i64, &str)>> = HashMap::new();
    let mut ids_seen = HashSet::new();
    let mut finished_ids: HashMap<&str, HashSet<&str>> = HashMap::new();
    for d in seen {
        if d.state == "FINISHED" {
            finished_ids
                .entry(d.job_id.as_str())
                .or_default()
                .insert(d.webhook_id.as_str());
        }
        if !ids_seen.insert(d.webhook_id.as_str()) {
            continue;
        }
        let seq = d
            .webhook_id
            .rsplit('_')
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(-1);
        first_seen
            .entry(d.job_id.as_str())
            .or_default()
            .push((seq, d.state.as_str()));
    }
    for (id, webhook_ids) in &finished_ids {
        if webhook_ids.len() > 1 {
            report
                .duplicate
                .push(format!("{id}: {} FINISHED webhooks", webhook_ids.len()));
        }
    }
    let by_seq: HashMap<i64, &EventRow> = events.iter().map(|e| (e.seq, e)).collect();
    for (id, got) in &first_seen {
        let in_order = got.windows(2).all(|w| w[0].0 < w[1].0);
        let true_to_table = got.iter().all(|(seq, state)| {
            by_seq
                .get(seq)
                .is_some_and(|e| e.job_id == *id && e.state == *state)
        });
        if !in_order || !true_to_table {
            let seqs: Vec<String> = got.iter().map(|(s, st)| format!("{s}:{st}")).collect();
            report
                .out_of_order
                .push(format!("{id}: received {}", seqs.join(" ")));
        }
    }
    for e in &events {
        if e.delivery == "none" {
            continue;
        }
        report.webhook_events += 1;
        if e.delivery == "failed" {
            report.failed_webhooks += 1;
        }
        let webhook_id = format!("msg_{}_{}", e.job_id, e.seq);
        if !ids_seen.contains(webhook_id.as_str()) {
            report
                .missing_webhooks
                .push(format!("{webhook_id} ({}, {})", e.state, e.delivery));
        }
    }

    // Outputs: each finished job's object, probed.
    let mut source_frames = HashMap::new();
    for kind in JobKind::ALL {
        let path = s3_root.join(crate::cluster::BUCKET_IN).join(kind.source());
        source_frames.insert(kind, decoded_frames(&path).map_err(anyhow::Error::msg)?);
    }
    for s in &load.submitted {
        let Some((job, _)) = jobs.get(&s.id) else {
            report
                .lost
                .push(format!("{} (accepted, not in the store)", s.id));
            continue;
        };
        if job.state != "FINISHED" {
            if s.dest.exists() {
                report.published_unfinished.push(format!(
                    "{} ({}, {})",
                    s.id,
                    s.kind.name(),
                    job.state
                ));
            }
            continue;
        }
        *report.probed.entry(s.kind).or_default() += 1;
        let verdict = match s.kind {
            JobKind::Copy => {
                let source = s3_root
                    .join(crate::cluster::BUCKET_IN)
                    .join(s.kind.source());
                match (std::fs::read(&source), std::fs::read(&s.dest)) {
                    (Ok(a), Ok(b)) if a == b => Ok(()),
                    (_, Ok(b)) => Err(format!("{} bytes differ from the source", b.len())),
                    (_, Err(e)) => Err(format!("no output: {e}")),
                }
            }
            _ => match decoded_frames(&s.dest) {
                Ok(n) if n == source_frames[&s.kind] => Ok(()),
                Ok(n) => Err(format!(
                    "{n} frames, the source has {}",
                    source_frames[&s.kind]
                )),
                Err(e) => Err(e),
            },
        };
        if let Err(why) = verdict {
            report
                .corrupt
                .push(format!("{} ({}): {why}", s.id, s.kind.name()));
        }
    }

    // Submit to FINISHED, copy jobs only: without faults when it all
    // happened before they began, during them when submitted while they ran.
    for s in load.submitted.iter().filter(|s| s.kind == JobKind::Copy) {
        let Some((job, _)) = jobs.get(&s.id) else {
            continue;
        };
        let Some(done) = table
            .get(s.id.as_str())
            .and_then(|list| list.iter().find(|e| e.state == "FINISHED"))
        else {
            continue;
        };
        let seconds = (done.created_at - job.created_at) as f64 / 1000.0;
        if done.created_at < phases.faults_from {
            report.copy_latency.0.push(seconds);
        } else if job.created_at < phases.faults_until {
            report.copy_latency.1.push(seconds);
        }
    }
    Ok(report)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        let row = |out: &mut String, name: &str, value: String| {
            let _ = writeln!(out, "  {name:<52} {value:>10}");
        };
        let zero = |out: &mut String, name: &str, n: usize| {
            let mark = if n == 0 { "ok" } else { "FAIL" };
            let _ = writeln!(out, "  {name:<52} {n:>10}  {mark} (must be 0)");
        };
        let _ = writeln!(
            out,
            "soak: {} minutes of faults, seed {}",
            self.minutes, self.seed
        );
        let _ = writeln!(out, "jobs");
        let submitted: u64 = self.submitted.values().sum();
        row(&mut out, "submitted (answered 201)", submitted.to_string());
        for (kind, n) in &self.submitted {
            row(&mut out, &format!("  {}", kind.name()), n.to_string());
        }
        row(
            &mut out,
            "in the store, submit answer lost",
            self.unanswered.to_string(),
        );
        for (why, n) in &self.refused {
            row(&mut out, &format!("submit refused: {why}"), n.to_string());
        }
        row(&mut out, "finished", self.finished.to_string());
        let errored: u64 = self.errored.values().sum();
        row(&mut out, "errored", errored.to_string());
        for (code, n) in &self.errored {
            row(&mut out, &format!("  {code}"), n.to_string());
        }
        row(&mut out, "canceled", self.canceled.to_string());
        zero(
            &mut out,
            "errored by a full scratch disk, attempts left",
            self.disk_full_errors.len(),
        );
        zero(
            &mut out,
            "lost (not terminal after the drain)",
            self.lost.len(),
        );
        zero(&mut out, "duplicate", self.duplicate.len());
        zero(&mut out, "out of order", self.out_of_order.len());
        zero(
            &mut out,
            "terminal, but not the last event",
            self.state_mismatch.len(),
        );
        let _ = writeln!(out, "outputs");
        for (kind, n) in &self.probed {
            row(&mut out, &format!("{} probed", kind.name()), n.to_string());
        }
        zero(&mut out, "corrupt", self.corrupt.len());
        zero(
            &mut out,
            "published by a job that did not finish",
            self.published_unfinished.len(),
        );
        let _ = writeln!(out, "webhooks");
        row(
            &mut out,
            "events to deliver",
            self.webhook_events.to_string(),
        );
        row(
            &mut out,
            "deliveries received (retries included)",
            self.webhook_deliveries.to_string(),
        );
        row(
            &mut out,
            "given up (webhook_retry_period over)",
            self.failed_webhooks.to_string(),
        );
        zero(
            &mut out,
            "missing at the receiver",
            self.missing_webhooks.len(),
        );
        let _ = writeln!(out, "faults injected");
        for kind in FaultKind::ALL {
            let n = self.faults.get(&kind).copied().unwrap_or(0);
            row(&mut out, kind.describe(), n.to_string());
        }
        row(&mut out, "total", self.faults_total().to_string());
        zero(
            &mut out,
            "daemons that exited by themselves",
            self.crashed.len(),
        );
        let _ = writeln!(out, "copy jobs, submit to FINISHED");
        for (name, values) in [
            ("without faults", &self.copy_latency.0),
            ("during faults", &self.copy_latency.1),
        ] {
            let shown = |p| percentile(values, p).map_or("-".to_string(), |v| format!("{v:.2} s"));
            row(
                &mut out,
                &format!("{name}: p50 / p99 (n = {})", values.len()),
                format!("{} / {}", shown(0.5), shown(0.99)),
            );
        }
        row(
            &mut out,
            "drained (faults end to all terminal and delivered)",
            format!("{:.1} s", self.drained_s),
        );
        row(
            &mut out,
            "scratch left on the workers after the drain",
            format!("{} KiB", self.scratch_left_bytes >> 10),
        );
        for (title, list) in [
            ("lost", &self.lost),
            ("duplicate", &self.duplicate),
            ("out of order", &self.out_of_order),
            ("state and last event differ", &self.state_mismatch),
            ("published, not finished", &self.published_unfinished),
            ("corrupt", &self.corrupt),
            ("missing webhooks", &self.missing_webhooks),
            ("crashed", &self.crashed),
            ("errors (first few)", &self.error_samples),
        ] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{title}:");
            for item in list.iter().take(20) {
                let _ = writeln!(out, "  {item}");
            }
        }
        f.write_str(&out)
    }
}
