//! Wire types of the HTTP API: the public v1 API, the seed's `/job/submit`
//! answer, and the worker lease protocol.

use crate::kinds::{FleetKind, NodeState, TaskKind};
use crate::state::JobState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Live progress of a running job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// `downloading`, `encoding`, `encoding pass 1/2`, `uploading`, ...
    pub phase: String,
    /// Percent of the whole job, 0 to 100.
    pub percent: f64,
    pub fps: Option<f64>,
    /// Encoding speed as a multiple of real time.
    pub speed: Option<f64>,
    pub eta_seconds: Option<f64>,
    /// Tasks of the job finished, and in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_done: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_total: Option<u32>,
    /// A chunked job's chunks encoded, and in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks_done: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks_total: Option<u32>,
}

/// One task of a job, as `GET /v1/jobs/{id}/tasks` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub task: u32,
    pub kind: TaskKind,
    pub state: JobState,
    /// The node that ran it last.
    pub node: Option<String>,
    pub attempts: u32,
    pub progress: Option<Progress>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// What the task made (a chunk's frames and bytes, a plan's cuts, the
    /// assemble check's figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
}

/// A job as the v1 API shows it. Credentials in URIs are redacted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    pub state_details: Option<String>,
    /// Why the job ended in ERROR, as a stable code, when it did for a coded
    /// reason (see docs/API.md, "Job error codes").
    pub error_code: Option<String>,
    pub warnings: Vec<String>,
    pub progress: Option<Progress>,
    pub attempts: u32,
    pub max_attempts: u32,
    /// The job's own wall-clock limit per attempt, when it set one.
    pub max_runtime_s: Option<u64>,
    pub source_path: String,
    pub dest_path: String,
    /// Where state changes are sent, its query string and userinfo redacted.
    pub notify_url: Option<String>,
    /// The name of the API token that submitted the job (never the token);
    /// null when feederd runs without tokens.
    #[serde(default)]
    pub submitted_by: Option<String>,
    /// The `{nommer, options}` object, its passes in the canonical form the
    /// option check gives (docs/OPTIONS.md): what the worker runs.
    #[schema(value_type = Object)]
    pub job_options: Value,
    /// The node holding the job's lease, while one does.
    pub node_id: Option<String>,
    /// What the job writes, each with its state and, once its task has
    /// reported, what it made: the URIs written, bytes, duration and the
    /// quality check's report. A job without `outputs` has one file output.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub outputs: Vec<Value>,
    /// The preset the job was expanded from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Higher runs first, from -50 to 50.
    #[serde(default)]
    pub priority: i32,
    /// The queue the job runs in.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// How its webhooks are sent.
    #[serde(default = "form_format")]
    pub notify_format: crate::kinds::NotifyFormat,
    /// The job this one retries (`POST /v1/jobs/{id}/retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn default_queue() -> String {
    crate::submit::DEFAULT_QUEUE.to_string()
}

fn form_format() -> crate::kinds::NotifyFormat {
    crate::kinds::NotifyFormat::Form
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

/// The seed's answer to `POST /job/submit`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LegacySubmitResponse {
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub instance_id: Option<String>,
    pub fleet: FleetKind,
    /// `active`, `draining`, `gone` (said goodbye) or `lost` (heartbeats stopped).
    pub state: NodeState,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub max_jobs: u32,
    pub running_jobs: u32,
    /// What the node's tool sandbox enforces: `off`, or for example
    /// `landlock-abi-7+net+scope+seccomp`. Null for a node that never said.
    pub sandbox: Option<String>,
    pub started_at: String,
    pub last_heartbeat_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    pub nodes: Vec<Node>,
}

/// One try at delivering one webhook.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttempt {
    pub attempt: u32,
    pub attempted_at: String,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// The webhook of one state change and how its delivery went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// The event's id (as in `/v1/jobs/{id}/events` and the event stream).
    #[serde(default)]
    pub event_id: i64,
    pub webhook_id: String,
    pub job_state: JobState,
    pub job_state_details: Option<String>,
    /// `pending`, `delivered` or `failed` (retries ran out).
    pub status: String,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub attempts: Vec<DeliveryAttempt>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// One state change of a job, from the event outbox.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    /// Increasing across all jobs: the event stream's `id`.
    pub id: i64,
    pub state: JobState,
    pub details: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobEventList {
    pub events: Vec<JobEvent>,
}

/// A queue, its limit and whether it is paused, and its depth.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Queue {
    pub name: String,
    pub max_concurrency: Option<u32>,
    pub paused: bool,
    /// Tasks waiting for a worker.
    pub pending: u64,
    /// Tasks leased.
    pub running: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<Queue>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

// ---- worker lease protocol ----

/// What a node says about itself with every lease request and heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeReport {
    pub node_id: String,
    pub instance_id: Option<String>,
    pub fleet: FleetKind,
    pub hostname: Option<String>,
    pub version: String,
    pub max_jobs: u32,
    pub running_jobs: u32,
    /// `active`, `draining` (takes no new leases) or `gone`.
    pub state: NodeState,
    /// What the node's tool sandbox enforces (`off`, `landlock-abi-7+net+scope+seccomp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseRequest {
    pub node: NodeReport,
    /// How many jobs the node can take now.
    pub max: u32,
    /// How long to wait for a job when none is ready (long-poll).
    pub wait_ms: u64,
}

/// A leased job, with its full URIs: the only answer that carries a job's
/// storage credentials.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseGrant {
    pub job_id: String,
    /// The leased task of the job (a plain job has only task 0).
    pub task: u32,
    /// What the task does; the worker runs it with this kind's runner. An
    /// older feederd sends none: see [`LeaseGrant::task_kind`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TaskKind>,
    /// The task's own part of the job (`dest_suffix`, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub spec: crate::tasks::TaskSpec,
    /// A chunked job's tasks: the prefix its intermediates live under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_uri: Option<String>,
    pub token: String,
    pub attempt: u32,
    pub ttl_ms: u64,
    pub source_uri: String,
    pub dest_uri: String,
    #[schema(value_type = Object)]
    pub job_options: Value,
    /// The job's own wall-clock limit (`max_runtime_s`), when it set one;
    /// the worker applies the lower of this and its `max_job_runtime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runtime_s: Option<u64>,
    /// feederd's `file_roots`, resolved: a worker with none of its own opens
    /// `file://` paths only beneath these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_roots: Vec<String>,
    /// feederd allows no `file://` at all (it listens beyond loopback with no
    /// `file_roots`): a worker with no roots of its own allows none either.
    #[serde(default)]
    pub files_off: bool,
    /// feederd's address policy: the worker applies the stricter of this and
    /// its own to every address a job makes it contact.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub net_policy: crate::netpolicy::NetPolicy,
}

impl LeaseGrant {
    /// The task's kind; from a feederd older than tasks, the kind of its
    /// job's nommer (a job was then one task).
    pub fn task_kind(&self) -> TaskKind {
        self.kind
            .unwrap_or(match self.job_options["nommer"].as_str() {
                Some("copy") => TaskKind::Copy,
                _ => TaskKind::Ffmpeg,
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseResponse {
    pub leases: Vec<LeaseGrant>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseReport {
    pub job_id: String,
    /// The job's task; a report without one (an older nommerd) means task 0.
    #[serde(default)]
    pub task: u32,
    pub token: String,
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatRequest {
    pub node: NodeReport,
    pub leases: Vec<LeaseReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseStatus {
    pub job_id: String,
    #[serde(default)]
    pub task: u32,
    /// False when the lease expired or was taken over: stop and write nothing.
    pub valid: bool,
    /// Time left on the renewed lease.
    pub remaining_ms: u64,
    pub cancel_requested: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    pub ttl_ms: u64,
    pub leases: Vec<LeaseStatus>,
}

/// A state change reported by the lease holder.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateReport {
    /// The job's task; a report without one (an older nommerd) means task 0.
    #[serde(default)]
    pub task: u32,
    pub token: String,
    pub state: JobState,
    pub details: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Why an ERROR happened, as a stable code (`tool_failed`, `output_too_large`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What the task made, kept with it (a chunk's frames, a plan's cuts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// A plan task's FINISHED report: the tasks it adds to its job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub tasks: Vec<crate::tasks::TaskPlan>,
}

/// Most state reports one batch may carry.
pub const MAX_REPORTS_PER_BATCH: usize = 256;

/// One state report in a batch: for which job, and what.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobStateReport {
    pub job_id: String,
    /// The job's task; a report without one (an older nommerd) means task 0.
    #[serde(default)]
    pub task: u32,
    pub token: String,
    pub state: JobState,
    pub details: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What the task made, kept with it (a chunk's frames, a plan's cuts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// A plan task's FINISHED report: the tasks it adds to its job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub tasks: Vec<crate::tasks::TaskPlan>,
}

/// Several state reports from one worker in one request. Each is applied or
/// refused on its own, in order; the answer has one result per report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateReportBatch {
    pub reports: Vec<JobStateReport>,
}

/// What became of one report in a batch: the job's new state, or why not.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateReportResult {
    pub job_id: String,
    #[serde(default)]
    pub task: u32,
    pub state: Option<JobState>,
    pub error: Option<crate::error::ApiErrorBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateReportResults {
    pub results: Vec<StateReportResult>,
}

/// A lease handed back unfinished: the worker is shutting down, or the task
/// could not run on this node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseRequest {
    /// The job's task; a report without one (an older nommerd) means task 0.
    #[serde(default)]
    pub task: u32,
    pub token: String,
    pub reason: String,
    /// Set when the attempt failed for a reason outside the job (the
    /// scratch disk filled, a transfer kept failing transiently): the attempt
    /// counts, the task is retried after the backoff, and once no attempts
    /// are left the job ends ERROR with this code. Absent for a shutdown's
    /// hand-back, which does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}
