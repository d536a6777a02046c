//! feederd's settings, as resolved by the CLI from file, environment and flags.

use nommer_model::netpolicy::NetPolicy;
use nommer_storage::FileRoots;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FeederdConfig {
    /// API tokens with their roles, and the worker token (`auth.rs`).
    pub tokens: std::sync::Arc<crate::auth::TokenSet>,
    /// Standard Webhooks secret (`whsec_...` base64, or raw text).
    pub webhook_secret: Option<String>,
    pub file_roots: FileRoots,
    /// Where chunked jobs keep their intermediates; None: beside each
    /// job's destination (`nommer_model::chunked::work_prefix`).
    pub intermediate_store: Option<String>,
    /// Presets from config (`[presets.NAME]`), each checked and canonical.
    pub presets: Vec<serde_json::Value>,
    /// The queues jobs may name, each with its `max_concurrency`; `default`
    /// is always one.
    pub queues: Vec<(String, Option<u32>)>,
    /// How long an `Idempotency-Key` is kept.
    pub idempotency_ttl: Duration,
    /// How long an ended job, and a node unseen, is kept.
    pub job_retention: Duration,
    /// The webhook body of v1 jobs that do not choose one.
    pub webhook_format: nommer_model::kinds::NotifyFormat,
    /// The option allowlist, with the operator's additions.
    pub allowlist: std::sync::Arc<nommer_model::options::Allowlist>,
    /// Object storage settings, for submit-time checks of s3/gs/az sources.
    pub objects: nommer_storage::ObjectConfig,
    pub net_policy: NetPolicy,
    pub max_body_bytes: usize,
    pub max_attempts: u32,
    pub lease_ttl: Duration,
    /// How long a new leader waits before reaping expired leases.
    pub lease_grace: Duration,
    pub heartbeat_interval: Duration,
    pub abandon_inactive_jobs_thresh: Duration,
    pub prune_jobs_interval: Duration,
    pub webhook_timeout: Duration,
    pub webhook_connect_timeout: Duration,
    /// Deliveries in flight at once, and to one receiving host.
    pub webhook_concurrency: usize,
    pub webhook_per_host: usize,
    pub webhook_retry_period: Duration,
    /// Longest a lease request waits for a job.
    pub max_lease_wait: Duration,
    /// The most jobs one lease request takes, whatever slots a node claims.
    pub max_lease_batch: u32,
    /// The most leases one heartbeat may list.
    pub max_heartbeat_leases: usize,
    /// Long-polls (lease requests and job GETs that wait) one replica holds
    /// at once; past it, they are answered at once.
    pub max_long_polls: usize,
    /// Connections open at once; past it, accepting waits.
    pub max_connections: usize,
    /// How long a request's headers may take to arrive.
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
    /// How long the DNS and source checks at submit may take.
    pub submit_check_timeout: Duration,
}

impl Default for FeederdConfig {
    fn default() -> Self {
        FeederdConfig {
            tokens: Default::default(),
            webhook_secret: None,
            file_roots: FileRoots::Any,
            intermediate_store: None,
            presets: Vec::new(),
            queues: vec![(nommer_model::submit::DEFAULT_QUEUE.to_string(), None)],
            idempotency_ttl: Duration::from_secs(86_400),
            job_retention: Duration::from_secs(30 * 86_400),
            webhook_format: nommer_model::kinds::NotifyFormat::Json,
            allowlist: std::sync::Arc::new(nommer_model::options::Allowlist::builtin().clone()),
            objects: Default::default(),
            net_policy: NetPolicy::default(),
            max_body_bytes: 1024 * 1024,
            max_attempts: 3,
            lease_ttl: Duration::from_secs(30),
            lease_grace: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            abandon_inactive_jobs_thresh: Duration::from_secs(32_400),
            prune_jobs_interval: Duration::from_secs(300),
            webhook_timeout: Duration::from_secs(10),
            webhook_connect_timeout: Duration::from_secs(3),
            webhook_concurrency: 16,
            webhook_per_host: 4,
            webhook_retry_period: Duration::from_secs(86_400),
            max_lease_wait: Duration::from_secs(25),
            max_lease_batch: 64,
            max_heartbeat_leases: 256,
            max_long_polls: 1024,
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            submit_check_timeout: Duration::from_secs(5),
        }
    }
}
