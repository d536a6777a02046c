//! Rows as the store returns them, and their API views.

use nommer_model::api::{self, Progress};
use nommer_model::kinds::NotifyFormat;
use nommer_model::tasks::{TaskPlan, TaskSpec};
use nommer_model::{rfc3339, FleetKind, JobState, NodeState, TaskKind};
use serde_json::Value;

/// A job to insert, already validated.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub source_uri: String,
    pub dest_uri: String,
    pub source_path: String,
    pub dest_path: String,
    /// As given: sealed at rest, shown redacted.
    pub notify_url: Option<String>,
    /// The name of the API token that submitted the job.
    pub submitted_by: Option<String>,
    pub nommer: String,
    pub job_options: Value,
    pub warnings: Vec<String>,
    pub max_attempts: u32,
    pub max_runtime_s: Option<u64>,
    /// What carries the job out, numbered from 0: at least one.
    pub tasks: Vec<TaskPlan>,
    /// A chunked job's work prefix, chosen once at submit; sealed with the
    /// URIs (it may hold the destination's credentials).
    pub work_uri: Option<String>,
    /// Higher runs first (-50 to 50).
    pub priority: i32,
    /// A queue feederd's config names.
    pub queue: String,
    pub notify_format: NotifyFormat,
    /// The job this one retries.
    pub retry_of: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    pub state: JobState,
    pub state_details: Option<String>,
    pub error_code: Option<String>,
    pub warnings: Vec<String>,
    pub progress: Option<Progress>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub max_runtime_s: Option<u64>,
    pub source_path: String,
    pub dest_path: String,
    /// Redacted: no query string, no userinfo.
    pub notify_url: Option<String>,
    pub submitted_by: Option<String>,
    pub nommer: String,
    pub job_options: Value,
    pub node_id: Option<String>,
    pub cancel_requested: bool,
    pub priority: i32,
    pub queue: String,
    pub notify_format: NotifyFormat,
    pub retry_of: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub state_changed_at: i64,
}

impl JobRecord {
    /// The job's outputs as the API shows them before its task reports
    /// what they made: each with the job's state.
    pub fn outputs_view(&self) -> Vec<serde_json::Value> {
        let state = self.state.as_str().to_ascii_lowercase();
        let Some(outputs) = self.job_options["outputs"].as_array() else {
            return vec![
                serde_json::json!({"kind": "file", "dest_path": self.dest_path, "state": state}),
            ];
        };
        outputs
            .iter()
            .map(|output| {
                let dest = match (&output["dest_path"], &output["path"]) {
                    (serde_json::Value::String(uri), _) => uri.clone(),
                    (_, serde_json::Value::String(path)) => format!("{}{path}", self.dest_path),
                    _ => String::new(),
                };
                serde_json::json!({"kind": output["kind"], "dest_path": dest, "state": state})
            })
            .collect()
    }

    /// [`to_api`](Self::to_api), with what its tasks reported of each output.
    pub fn to_api_with(&self, tasks: &[TaskRecord]) -> api::Job {
        let mut job = self.to_api();
        let reported = tasks
            .iter()
            .filter(|t| t.state.is_terminal())
            .filter_map(|t| t.result.as_ref()?.get("outputs")?.as_array().cloned())
            .next_back();
        if let Some(outputs) = reported {
            if outputs.len() == job.outputs.len() {
                job.outputs = outputs;
            }
        }
        job
    }

    pub fn to_api(&self) -> api::Job {
        api::Job {
            id: self.id.clone(),
            state: self.state,
            state_details: self.state_details.clone(),
            error_code: self.error_code.clone(),
            warnings: self.warnings.clone(),
            progress: self.progress.clone(),
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            max_runtime_s: self.max_runtime_s,
            source_path: self.source_path.clone(),
            dest_path: self.dest_path.clone(),
            notify_url: self.notify_url.clone(),
            submitted_by: self.submitted_by.clone(),
            job_options: self.job_options.clone(),
            node_id: self.node_id.clone(),
            outputs: self.outputs_view(),
            preset: self.job_options["preset"].as_str().map(str::to_string),
            priority: self.priority,
            queue: self.queue.clone(),
            notify_format: self.notify_format,
            retry_of: self.retry_of.clone(),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// One task of a job.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub job_id: String,
    pub task: u32,
    pub kind: TaskKind,
    pub state: JobState,
    pub state_details: Option<String>,
    pub error_code: Option<String>,
    pub spec: TaskSpec,
    pub progress: Option<Progress>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub node_id: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub cancel_requested: bool,
    /// The job's only task: the job shows it as it is.
    pub mirrored: bool,
    /// The job has a notify_url.
    pub notifies: bool,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub result: Option<serde_json::Value>,
}

impl TaskRecord {
    pub fn to_api(&self) -> api::Task {
        api::Task {
            task: self.task,
            kind: self.kind,
            state: self.state,
            node: self.node_id.clone(),
            attempts: self.attempts,
            progress: self.progress.clone(),
            started_at: self.started_at.map(rfc3339),
            finished_at: self.finished_at.map(rfc3339),
            result: self.result.clone(),
        }
    }
}

/// What a lease holder's report did: its task's state, and its job's.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChange {
    pub job_id: String,
    pub task: u32,
    pub state: JobState,
    pub job_state: JobState,
    /// The change made tasks claimable (a plan added them, or a waiting
    /// task was released): workers waiting for a lease are woken.
    pub unblocked: bool,
}

/// Unfinished work, for the autoscaler and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Waiting for a worker (retries backing off included).
    pub pending: u64,
    /// Leased to a worker.
    pub running: u64,
}

/// What a lease carries of a task's job.
#[derive(Debug, Clone)]
pub struct LeasedJob {
    pub id: String,
    pub job_options: Value,
    pub max_runtime_s: Option<u64>,
}

/// A task leased to a worker, with its job and what only the lease holder may see.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: LeasedJob,
    pub task: TaskRecord,
    pub token: String,
    pub source_uri: String,
    pub dest_uri: String,
    /// A chunked job's work prefix.
    pub work_uri: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventRecord {
    pub seq: i64,
    pub job_id: String,
    pub state: JobState,
    pub details: Option<String>,
    pub created_at: i64,
    /// `none`, `pending`, `delivered` or `failed`.
    pub delivery: String,
    pub notify_url: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub attempts: u32,
}

impl EventRecord {
    /// Stable across retries (Standard Webhooks `webhook-id`).
    pub fn webhook_id(&self) -> String {
        format!("msg_{}_{}", self.job_id, self.seq)
    }
}

#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub attempted_at: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl AttemptRecord {
    pub fn to_api(&self) -> api::DeliveryAttempt {
        api::DeliveryAttempt {
            attempt: self.attempt,
            attempted_at: rfc3339(self.attempted_at),
            status_code: self.status_code,
            error: self.error.clone(),
            duration_ms: self.duration_ms,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub id: String,
    pub instance_id: Option<String>,
    pub fleet: FleetKind,
    pub state: NodeState,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub max_jobs: u32,
    pub running_jobs: u32,
    pub sandbox: Option<String>,
    pub started_at: i64,
    pub last_heartbeat_at: i64,
}

impl NodeRecord {
    pub fn to_api(&self) -> api::Node {
        api::Node {
            id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            fleet: self.fleet,
            state: self.state,
            hostname: self.hostname.clone(),
            version: self.version.clone(),
            max_jobs: self.max_jobs,
            running_jobs: self.running_jobs,
            sandbox: self.sandbox.clone(),
            started_at: rfc3339(self.started_at),
            last_heartbeat_at: rfc3339(self.last_heartbeat_at),
        }
    }
}

/// A state change reported by a lease holder, fenced by its token.
#[derive(Debug, Clone, Copy)]
pub struct HolderReport<'a> {
    pub job_id: &'a str,
    pub task: u32,
    pub token: &'a str,
    pub to: JobState,
    pub details: Option<&'a str>,
    pub warnings: &'a [String],
    /// Why an ERROR happened, as a stable code.
    pub error_code: Option<&'a str>,
    /// Kept with the task (`tasks.result`).
    pub result: Option<&'a serde_json::Value>,
    /// A plan task's FINISHED report: the tasks it adds to its job.
    pub adds: &'a [nommer_model::tasks::TaskPlan],
}

/// A submit's `Idempotency-Key`: who it belongs to, and its body's digest.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The token's name ('' when tokens are off: one global scope).
    pub scope: String,
    pub key: String,
    /// SHA-256 of the body as canonical JSON.
    pub digest: String,
    /// A key written before this time has expired and may be used again.
    pub expired_before: i64,
}

/// What became of a submit under an idempotency key.
#[derive(Debug, Clone)]
pub enum Inserted {
    New(JobRecord),
    /// The key's first submit had the same body: its job.
    Replayed(JobRecord),
    /// The key's first submit had a different body.
    Conflict,
}

/// What a retry of a job takes from it beside its record.
#[derive(Debug, Clone)]
pub struct Resubmission {
    pub source_uri: String,
    pub dest_uri: String,
    pub notify_url: Option<String>,
    /// It had a work prefix (a chunked job): the retry gets its own.
    pub chunked: bool,
    pub tasks: Vec<TaskPlan>,
}

/// A queue as the store keeps it, with its depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    pub name: String,
    pub max_concurrency: Option<u32>,
    pub paused: bool,
    /// Tasks waiting to be claimed (claimable now or later).
    pub pending: u64,
    /// Tasks leased.
    pub running: u64,
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub nodes: u64,
}

/// A job that finished, with what its phases are read from.
#[derive(Debug, Clone)]
pub struct FinishedJob {
    pub id: String,
    /// Its events' states and times, oldest first.
    pub events: Vec<(JobState, i64)>,
    /// Its tasks' results.
    pub results: Vec<Value>,
}
