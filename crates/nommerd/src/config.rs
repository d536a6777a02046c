//! nommerd's settings, as resolved by the CLI.

use nommer_model::netpolicy::NetPolicy;
use nommer_storage::FileRoots;
use std::path::PathBuf;
use std::time::Duration;

/// What SIGTERM/SIGINT does to running jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Stop ffmpeg and hand the leases back at once; the jobs go back to PENDING.
    Handback,
    /// Take no new jobs and finish the running ones first.
    Finish,
}

#[derive(Debug, Clone)]
pub struct NommerdConfig {
    pub feederd_url: String,
    pub worker_token: Option<String>,
    pub node_id: String,
    pub fleet: nommer_model::FleetKind,
    pub instance_id: Option<String>,
    /// The seed's MAX_ENCODING_JOBS_PER_EC2_INSTANCE.
    pub max_jobs: u32,
    pub work_dir: PathBuf,
    pub heartbeat_interval: Duration,
    /// How often progress is pushed while jobs run.
    pub progress_interval: Duration,
    pub lease_wait: Duration,
    pub ffmpeg: String,
    pub ffprobe: String,
    pub file_roots: FileRoots,
    /// The option allowlist, with the operator's additions.
    pub allowlist: std::sync::Arc<nommer_model::options::Allowlist>,
    pub net_policy: NetPolicy,
    pub shutdown_mode: ShutdownMode,
    /// Object storage settings (endpoints, regions, credentials).
    pub objects: nommer_storage::ObjectConfig,
    /// EC2 mode (`fleet = "ec2"`): IMDS and EC2 endpoints, shutdown fallback.
    pub ec2: nommer_fleet::config::Ec2Config,
    /// The seed's NOMMERD_MAX_INACTIVITY.
    pub max_inactivity: Duration,
    pub terminate_when_idle: bool,
    /// The sandbox every tool runs in, and its limits.
    pub sandbox: nommer_media::sandbox::SandboxSettings,
    /// Wall-clock limit for one leased job on this worker, download to commit.
    pub max_job_runtime: Duration,
    /// How long ffmpeg may report no progress before it is stopped (`tool_stalled`).
    pub max_tool_stall: Duration,
    /// The largest source a job may download.
    pub max_download_bytes: u64,
    /// The worker leases nothing while its scratch file system has less free.
    pub min_free_scratch_bytes: u64,
    /// How many files of a job's outputs are uploaded at once.
    pub upload_files_concurrency: usize,
}

impl NommerdConfig {
    pub fn new(feederd_url: &str) -> NommerdConfig {
        NommerdConfig {
            feederd_url: feederd_url.to_string(),
            worker_token: None,
            node_id: default_node_id(),
            fleet: nommer_model::FleetKind::Static,
            instance_id: None,
            max_jobs: 2,
            work_dir: std::env::temp_dir().join("nommer-work"),
            heartbeat_interval: Duration::from_secs(5),
            progress_interval: Duration::from_secs(1),
            lease_wait: Duration::from_secs(20),
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            file_roots: FileRoots::Any,
            allowlist: std::sync::Arc::new(nommer_model::options::Allowlist::builtin().clone()),
            net_policy: NetPolicy::default(),
            shutdown_mode: ShutdownMode::Handback,
            objects: Default::default(),
            ec2: Default::default(),
            max_inactivity: Duration::from_secs(600),
            terminate_when_idle: true,
            sandbox: Default::default(),
            max_job_runtime: Duration::from_secs(24 * 3600),
            max_tool_stall: Duration::from_secs(600),
            max_download_bytes: 256 << 30,
            min_free_scratch_bytes: 256 << 20,
            upload_files_concurrency: 8,
        }
    }
}

/// The machine's name, read once: every lease request and heartbeat carries it.
pub fn hostname() -> Option<String> {
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
    })
    .clone()
}

/// `HOSTNAME-xxxxxxxx`, unique per process.
pub fn default_node_id() -> String {
    format!(
        "{}-{:08x}",
        hostname().unwrap_or_else(|| "node".into()),
        rand::random::<u32>()
    )
}
