//! Configuration: defaults, then a TOML file (`--config` or `NOMMER_CONFIG`),
//! then `NOMMER_*` environment variables, then flags. Names are the seed's
//! settings in snake_case where one exists (SPEC §8).

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;

/// Seed settings the lease design retired; accepted in files and ignored with a warning.
pub const RETIRED: &[(&str, &str)] = &[
    (
        "feederd_job_state_change_check_interval",
        "state changes are delivered from the event outbox as they happen",
    ),
    (
        "nommerd_new_job_check_interval",
        "idle workers long-poll feederd and start a job within milliseconds",
    ),
    (
        "nommerd_qtfaststart_bin_path",
        "faststart is done by ffmpeg itself (-movflags +faststart)",
    ),
];

/// A list, or (from an environment variable) comma-separated strings.
fn list_or_csv<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + From<String>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        List(Vec<T>),
        Csv(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::Csv(text) => text
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .map(T::from)
            .collect(),
    })
}

/// One entry of `api_tokens`: a named token with a role, or (the old form)
/// a bare string, which is an admin token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenEntry {
    Bare(String),
    Named(NamedToken),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding the token, read at start and on SIGHUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    pub role: nommer_feederd::auth::Role,
}

/// One `[queues.NAME]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueEntry {
    /// The most of its tasks running at once; none: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// `NOMMER_API_TOKENS=a,b` gives bare tokens.
impl From<String> for TokenEntry {
    fn from(token: String) -> TokenEntry {
        TokenEntry::Bare(token)
    }
}

/// A secret given inline or in a file (trailing whitespace dropped).
fn inline_or_file(
    what: &str,
    inline: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    match (inline, file) {
        (Some(_), Some(_)) => anyhow::bail!("{what}: give the token or a token file, not both"),
        (Some(token), None) => Ok(Some(token.to_string())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{what}: reading {}: {e}", path.display()))?;
            Ok(Some(text.trim_end().to_string()))
        }
        (None, None) => Ok(None),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    // ---- feederd ----
    /// Address of the API (the seed's port 8001).
    pub listen: String,
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB` (migrated on start).
    pub store: String,
    /// PostgreSQL connections per feederd replica.
    pub store_pool_size: u32,
    /// Seconds a request waits for a store connection before a 503.
    pub store_acquire_timeout: u64,
    /// Seconds any one SQL statement may run (PostgreSQL).
    pub store_statement_timeout: u64,
    /// Workers run inside feederd's process.
    pub local_workers: u32,
    /// Allow listening beyond loopback without tokens.
    pub insecure: bool,
    /// `[{name, token | token_file, role}]`; roles are `submit`, `read`, `admin`.
    #[serde(deserialize_with = "list_or_csv")]
    pub api_tokens: Vec<TokenEntry>,
    pub worker_token: Option<String>,
    /// A file holding the worker token, read at start and on SIGHUP.
    pub worker_token_file: Option<PathBuf>,
    pub webhook_secret: Option<String>,
    /// 32 bytes, base64: encrypts job URIs (which may hold storage
    /// credentials) in the store. Unset: stored as given, with a warning.
    pub secrets_key: Option<String>,
    /// Directories `file://` URIs may name; empty: any path while on loopback, none otherwise.
    #[serde(deserialize_with = "list_or_csv")]
    pub file_roots: Vec<String>,
    /// Where chunked jobs keep their intermediates (a file, s3, gs or az
    /// prefix every worker reaches); unset: beside each job's destination.
    pub intermediate_store: Option<String>,
    /// Presets of the operator's own (`[presets.NAME]`), in the API's shape.
    pub presets: std::collections::BTreeMap<String, serde_json::Value>,
    /// Queues jobs may name (`[queues.NAME] max_concurrency = N`); `default`
    /// always exists, without a limit unless given one here.
    pub queues: std::collections::BTreeMap<String, QueueEntry>,
    /// Seconds an `Idempotency-Key` is kept.
    pub idempotency_ttl: u64,
    /// Seconds an ended job (and a node unseen) is kept before it is deleted.
    pub job_retention: u64,
    /// The webhook body of v1 jobs that do not say (`json` or `form`); the
    /// seed's `/job/submit` always sends the seed's form.
    pub webhook_format: nommer_model::kinds::NotifyFormat,
    pub allow_link_local_addresses: bool,
    /// Refuse private and loopback addresses in http(s) sources and
    /// notify_urls. Default: true when feederd listens beyond loopback.
    pub forbid_private_addresses: Option<bool>,
    pub max_body_bytes: usize,
    /// Attempts before a job whose lease keeps expiring goes to ERROR.
    pub max_attempts: u32,
    /// Seconds a lease lives without a heartbeat.
    pub lease_ttl: u64,
    /// Seconds a new leader (a restarted feederd) waits before reaping expired
    /// leases, so workers that could not reach it can renew them. Default: lease_ttl.
    pub lease_grace: Option<u64>,
    /// Seconds before the first retry of an expired lease; doubles each time.
    pub lease_retry_backoff: u64,
    /// Seed: PENDING jobs nobody took for this many seconds become ABANDONED.
    pub feederd_abandon_inactive_jobs_thresh: u64,
    /// Seed: how often the abandon check runs, in seconds.
    pub feederd_prune_jobs_interval: u64,
    pub webhook_timeout: u64,
    /// Seconds a webhook receiver has to accept the connection.
    pub webhook_connect_timeout: u64,
    /// Webhook deliveries in flight at once.
    pub webhook_concurrency: usize,
    /// Deliveries in flight to any one receiving host.
    pub webhook_per_host: usize,
    /// Connections feederd holds open at once; past it, accepting waits.
    pub max_connections: usize,
    /// The most jobs one lease request takes (also bounded by the node's slots).
    pub max_lease_batch: u32,
    /// The most leases one heartbeat may list (400 too_many_leases past it).
    pub max_heartbeat_leases: usize,
    /// Long-polls one feederd replica holds at once; past it they answer at once.
    pub max_long_polls: usize,
    /// Seconds a client has to send its request headers.
    pub header_timeout: u64,
    /// Seconds a client has to send its request body (408 request_timeout).
    pub body_timeout: u64,
    /// Seconds the DNS and source checks at submit may take.
    pub submit_check_timeout: u64,
    /// Seconds a webhook is retried before its delivery is marked failed.
    pub webhook_retry_period: u64,

    // ---- object storage (feederd and nommerd) ----
    /// `[s3]`, with `[s3.buckets.NAME]` overrides for S3-compatible servers.
    pub s3: nommer_storage::object::config::S3Config,
    pub gcs: nommer_storage::object::config::GcsConfig,
    pub azure: nommer_storage::object::config::AzureConfig,

    // ---- the fleet ----
    /// `static` (you start workers), `local` (feederd starts nommerd
    /// processes) or `ec2` (feederd launches instances; on a worker: EC2 mode).
    pub fleet: nommer_model::FleetKind,
    /// Seed: MAX_NUM_EC2_INSTANCES, the most nodes the autoscaler runs (any fleet).
    pub max_num_ec2_instances: u32,
    /// Seed: JOB_OVERFLOW_THRESH, backlog beyond capacity tolerated before launching.
    pub job_overflow_thresh: u32,
    /// Seed: FEEDERD_AUTO_SCALE_INTERVAL, seconds.
    pub feederd_auto_scale_interval: u64,
    pub max_launches_per_hour: u32,
    /// Seed: NOMMERD_MAX_INACTIVITY, seconds idle before a node stops.
    pub nommerd_max_inactivity: u64,
    /// EC2 mode: terminate the instance when idle that long.
    pub nommerd_terminate_when_idle: bool,
    pub ec2: nommer_fleet::config::Ec2Config,

    // ---- nommerd ----
    pub feederd_url: String,
    /// Seed: MAX_ENCODING_JOBS_PER_EC2_INSTANCE, jobs one node runs at once
    /// (in any fleet, despite the name).
    pub max_encoding_jobs_per_ec2_instance: u32,
    /// Seed: NOMMERD_HEARTBEAT_INTERVAL, in seconds (seed default 60).
    pub nommerd_heartbeat_interval: u64,
    pub work_dir: Option<PathBuf>,
    pub node_id: Option<String>,
    pub ffmpeg_path: String,
    pub ffprobe_path: String,
    /// `handback` or `finish`: what SIGTERM does to running jobs.
    pub nommerd_shutdown: String,
    /// `required` (refuse to start without Landlock ABI 3 and seccomp),
    /// `best_effort` (apply what the kernel offers, and warn) or `off`.
    pub sandbox: nommer_media::sandbox::SandboxMode,
    /// Who tools run as when nommerd runs as root: a user name or UID:GID.
    pub sandbox_user: String,
    /// The most one file a tool writes, and its scratch directory in all, may hold.
    pub max_output_bytes: u64,
    /// Seconds one leased job may take on a worker, download to commit.
    pub max_job_runtime: u64,
    /// The largest source a worker downloads; larger ends in ERROR `source_too_large`.
    pub max_download_bytes: u64,
    /// A worker leases nothing while its scratch file system has less free.
    pub min_free_scratch_bytes: u64,
    /// How many files of one output a worker uploads at once.
    pub upload_files_concurrency: usize,
    /// Seconds ffmpeg may report no progress before it is stopped.
    pub max_tool_stall: u64,
    /// Address space a tool may map (RLIMIT_AS).
    pub max_tool_memory_bytes: u64,
    /// Threads and processes of all tools under the sandbox user (RLIMIT_NPROC).
    pub max_tool_threads: u64,
    /// Flags added to the option allowlist: `{name, kind, place, spec}`.
    pub extra_allowed_options: Vec<nommer_model::options::allow::ExtraOption>,
    /// Filters added to the allowlist: `{name, options = [...]}`.
    pub extra_allowed_filters: Vec<nommer_model::options::allow::ExtraFilter>,

    // ---- clients ----
    /// Token the CLI's client commands send.
    pub api_token: Option<String>,

    /// Retired seed settings, kept so old files still load.
    #[serde(flatten, skip_serializing)]
    pub other: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8001".into(),
            store: "sqlite://nommer.db".into(),
            store_pool_size: 10,
            store_acquire_timeout: 5,
            store_statement_timeout: 10,
            local_workers: 0,
            insecure: false,
            api_tokens: Vec::new(),
            worker_token: None,
            worker_token_file: None,
            webhook_secret: None,
            secrets_key: None,
            file_roots: Vec::new(),
            intermediate_store: None,
            presets: Default::default(),
            queues: Default::default(),
            idempotency_ttl: 86_400,
            job_retention: 30 * 86_400,
            webhook_format: nommer_model::kinds::NotifyFormat::Json,
            allow_link_local_addresses: false,
            forbid_private_addresses: None,
            max_body_bytes: 1024 * 1024,
            max_attempts: 3,
            lease_ttl: 30,
            lease_grace: None,
            lease_retry_backoff: 10,
            feederd_abandon_inactive_jobs_thresh: 32_400,
            feederd_prune_jobs_interval: 300,
            webhook_timeout: 10,
            webhook_connect_timeout: 3,
            webhook_concurrency: 16,
            webhook_per_host: 4,
            max_connections: 4096,
            max_lease_batch: 64,
            max_heartbeat_leases: 256,
            max_long_polls: 1024,
            header_timeout: 10,
            body_timeout: 60,
            submit_check_timeout: 5,
            webhook_retry_period: 86_400,
            s3: Default::default(),
            gcs: Default::default(),
            azure: Default::default(),
            fleet: nommer_model::FleetKind::Static,
            max_num_ec2_instances: 3,
            job_overflow_thresh: 2,
            feederd_auto_scale_interval: 60,
            max_launches_per_hour: 20,
            nommerd_max_inactivity: 600,
            nommerd_terminate_when_idle: true,
            ec2: Default::default(),
            feederd_url: "http://127.0.0.1:8001".into(),
            max_encoding_jobs_per_ec2_instance: 2,
            nommerd_heartbeat_interval: 5,
            work_dir: None,
            node_id: None,
            ffmpeg_path: "ffmpeg".into(),
            ffprobe_path: "ffprobe".into(),
            nommerd_shutdown: "handback".into(),
            sandbox: nommer_media::sandbox::SandboxMode::Required,
            sandbox_user: "nobody".into(),
            max_output_bytes: 64 << 30,
            max_job_runtime: 24 * 3600,
            max_download_bytes: 256 << 30,
            min_free_scratch_bytes: 256 << 20,
            upload_files_concurrency: 8,
            max_tool_stall: 600,
            max_tool_memory_bytes: 16 << 30,
            max_tool_threads: 512,
            extra_allowed_options: Vec::new(),
            extra_allowed_filters: Vec::new(),
            api_token: None,
            other: Default::default(),
        }
    }
}

/// Flag values that override everything else (only those given).
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_workers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feederd_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_encoding_jobs_per_ec2_instance: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl Settings {
    /// The tool sandbox these settings ask for.
    pub fn sandbox(&self) -> nommer_media::sandbox::SandboxSettings {
        nommer_media::sandbox::SandboxSettings {
            mode: self.sandbox,
            user: self.sandbox_user.clone(),
            limits: nommer_media::sandbox::Limits {
                max_output_bytes: self.max_output_bytes,
                max_memory_bytes: self.max_tool_memory_bytes,
                max_threads: self.max_tool_threads,
            },
        }
    }

    /// The option allowlist with this config's additions; feederd and
    /// nommerd each build it, so both run the same check.
    pub fn allowlist(&self) -> anyhow::Result<std::sync::Arc<nommer_model::options::Allowlist>> {
        let allow = nommer_model::options::Allowlist::with_extras(
            &self.extra_allowed_options,
            &self.extra_allowed_filters,
        )
        .map_err(anyhow::Error::msg)?;
        Ok(std::sync::Arc::new(allow))
    }

    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let file = file
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("NOMMER_CONFIG").map(PathBuf::from));
        if let Some(path) = &file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(
                Env::prefixed("NOMMER_")
                    .ignore(&["config", "log"])
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides));
        let settings: Settings = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        for key in settings.other.keys() {
            match RETIRED.iter().find(|(name, _)| name == key) {
                Some((_, why)) => tracing::warn!(setting = %key, "retired setting ignored: {why}"),
                None => anyhow::bail!("configuration: unknown setting `{key}`"),
            }
        }
        Ok(settings)
    }

    /// The worker token, from `worker_token` or `worker_token_file`.
    pub fn worker_token(&self) -> anyhow::Result<Option<String>> {
        inline_or_file(
            "worker_token",
            self.worker_token.as_deref(),
            self.worker_token_file.as_deref(),
        )
    }

    /// Every token feederd accepts, token files read now.
    pub fn tokens(&self) -> anyhow::Result<nommer_feederd::auth::Tokens> {
        use nommer_feederd::auth::{ApiToken, Role};
        let mut api = Vec::with_capacity(self.api_tokens.len());
        let mut bare = 0;
        for (i, entry) in self.api_tokens.iter().enumerate() {
            api.push(match entry {
                TokenEntry::Bare(secret) => {
                    bare += 1;
                    ApiToken {
                        name: format!("token-{}", i + 1),
                        secret: secret.clone(),
                        role: Role::Admin,
                    }
                }
                TokenEntry::Named(named) => {
                    let what = format!("api_tokens: {}", named.name);
                    let secret =
                        inline_or_file(&what, named.token.as_deref(), named.token_file.as_deref())?
                            .ok_or_else(|| anyhow::anyhow!("{what}: give token or token_file"))?;
                    ApiToken {
                        name: named.name.clone(),
                        secret,
                        role: named.role,
                    }
                }
            });
        }
        if bare > 0 {
            tracing::warn!(
                count = bare,
                "api_tokens given as plain strings are admin tokens named token-1, token-2, ...; name them and give each the least role it needs: api_tokens = [{{name = \"app\", token_file = \"/etc/nommer/app.token\", role = \"submit\"}}]"
            );
        }
        let tokens = nommer_feederd::auth::Tokens {
            api,
            worker: self.worker_token()?,
        };
        tokens.check().map_err(anyhow::Error::msg)?;
        Ok(tokens)
    }

    pub fn objects(&self) -> nommer_storage::ObjectConfig {
        nommer_storage::ObjectConfig {
            s3: self.s3.clone(),
            gcs: self.gcs.clone(),
            azure: self.azure.clone(),
        }
    }

    /// The effective configuration as TOML, secrets replaced.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        let hide = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some("REDACTED".into());
            }
        };
        hide(&mut shown.worker_token);
        hide(&mut shown.webhook_secret);
        hide(&mut shown.secrets_key);
        hide(&mut shown.intermediate_store);
        hide(&mut shown.api_token);
        shown.store = nommer_model::uri::redact_str(&shown.store);
        let objects = self.objects().redacted();
        (shown.s3, shown.gcs, shown.azure) = (objects.s3, objects.gcs, objects.azure);
        for entry in &mut shown.api_tokens {
            match entry {
                TokenEntry::Bare(token) => *token = "REDACTED".into(),
                TokenEntry::Named(named) => hide(&mut named.token),
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nommer_feederd::auth::Role;

    #[test]
    fn docs_storage_examples_load() {
        let docs = include_str!("../../../docs/STORAGE.md");
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<&str> = docs
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .collect();
        assert!(blocks.len() >= 8, "{} examples", blocks.len());
        for (i, block) in blocks.iter().enumerate() {
            let path = dir.path().join(format!("example-{i}.toml"));
            std::fs::write(&path, block).unwrap();
            Settings::load(Some(&path), &Overrides::default())
                .unwrap_or_else(|e| panic!("docs/STORAGE.md example {i}: {e}\n{block}"));
        }
        // A misspelt key is refused, not ignored.
        let path = dir.path().join("typo.toml");
        std::fs::write(&path, "[gcs]\nservice_acount_path = \"/x.json\"\n").unwrap();
        let e = Settings::load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("service_acount_path"), "{e}");
    }

    #[test]
    fn the_shipped_configs_load_and_tokens_take_both_forms() {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        for file in ["feederd.toml", "nommerd.toml"] {
            Settings::load(Some(&deploy.join(file)), &Overrides::default())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ops.token"), "0ps-t0ken\n").unwrap();
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "api_tokens = [\"flat\", {{name = \"ops\", token_file = \"{}\", role = \"admin\"}}, {{name = \"app\", token = \"app-t\", role = \"submit\"}}]\nworker_token = \"w\"\n",
                dir.path().join("ops.token").display()
            ),
        )
        .unwrap();
        let settings = Settings::load(Some(&config), &Overrides::default()).unwrap();
        let tokens = settings.tokens().unwrap();
        let got: Vec<(&str, &str, Role)> = tokens
            .api
            .iter()
            .map(|t| (t.name.as_str(), t.secret.as_str(), t.role))
            .collect();
        assert_eq!(
            got,
            vec![
                ("token-1", "flat", Role::Admin),
                ("ops", "0ps-t0ken", Role::Admin),
                ("app", "app-t", Role::Submit)
            ]
        );
        let shown = settings.redacted_toml();
        for secret in ["flat", "0ps-t0ken", "app-t"] {
            assert!(!shown.contains(&format!("\"{secret}\"")), "{shown}");
        }
        // A typo in a named token is an error, not a token.
        std::fs::write(
            &config,
            "api_tokens = [{name = \"x\", token = \"t\", rol = \"admin\"}]\n",
        )
        .unwrap();
        assert!(Settings::load(Some(&config), &Overrides::default()).is_err());
        std::fs::write(
            &config,
            "worker_token = \"a\"\nworker_token_file = \"/x\"\n",
        )
        .unwrap();
        let both = Settings::load(Some(&config), &Overrides::default()).unwrap();
        assert!(both.worker_token().is_err());
    }
}
