//! Starting feederd and nommerd from settings, and stopping them on signals.

use crate::settings::Settings;
use anyhow::Context;
use nommer_feederd::auth::TokenSet;
use nommer_feederd::autoscaler::{FleetSettings, FleetState};
use nommer_feederd::config::FeederdConfig;
use nommer_feederd::AppState;
use nommer_fleet::ec2::Ec2Client;
use nommer_fleet::members::{Ec2Fleet, Fleet, LocalFleet};
use nommer_fleet::userdata;
use nommer_model::netpolicy::NetPolicy;
use nommer_nommerd::{NommerdConfig, ShutdownMode};
use nommer_storage::FileRoots;
use nommer_store::leader::Leadership;
use nommer_store::sealer::Sealer;
use nommer_store::sql::{Dialect, PoolSettings, SqlStore};
use nommer_store::{LeasePolicy, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Private ranges are forbidden by default once feederd listens beyond
/// loopback (any token holder could otherwise make a worker read an internal
/// service); a worker applies feederd's policy, from the lease, as well as its own.
fn net_policy(s: &Settings, loopback: bool) -> NetPolicy {
    NetPolicy {
        allow_link_local: s.allow_link_local_addresses,
        forbid_private: s.forbid_private_addresses.unwrap_or(!loopback),
    }
}

fn file_roots(s: &Settings, loopback: bool) -> FileRoots {
    if !s.file_roots.is_empty() {
        return FileRoots::only(s.file_roots.iter().map(Into::into));
    }
    if loopback {
        FileRoots::Any
    } else {
        FileRoots::Off
    }
}

pub fn feederd_config(s: &Settings, loopback: bool) -> anyhow::Result<FeederdConfig> {
    if let Some(store) = &s.intermediate_store {
        nommer_model::chunked::check_intermediate_store(store)
            .map_err(|e| anyhow::anyhow!("intermediate_store: {e}"))?;
    }
    let allowlist = s.allowlist()?;
    let mut presets = Vec::new();
    for (name, body) in &s.presets {
        if nommer_model::presets::builtin()
            .iter()
            .any(|p| p["name"] == name.as_str())
        {
            anyhow::bail!("presets.{name}: a built-in preset has that name");
        }
        let checked = nommer_model::presets::check(name, body, &allowlist)
            .map_err(|e| anyhow::anyhow!("presets.{name}: {}", e.message))?;
        presets.push(checked);
    }
    let mut queues = vec![(nommer_model::submit::DEFAULT_QUEUE.to_string(), None)];
    for (name, queue) in &s.queues {
        if !nommer_model::presets::name_ok(name) {
            anyhow::bail!("queues.{name}: a queue name is 1 to 64 of a-z, 0-9, _ and -");
        }
        if queue.max_concurrency == Some(0) {
            anyhow::bail!(
                "queues.{name}: max_concurrency is at least 1 (pause a queue to stop it)"
            );
        }
        queues.retain(|(n, _)| n != name);
        queues.push((name.clone(), queue.max_concurrency));
    }
    Ok(FeederdConfig {
        intermediate_store: s.intermediate_store.clone(),
        presets,
        queues,
        idempotency_ttl: Duration::from_secs(s.idempotency_ttl.max(1)),
        job_retention: Duration::from_secs(s.job_retention.max(1)),
        webhook_format: s.webhook_format,
        tokens: Arc::new(TokenSet::new(s.tokens()?)),
        webhook_secret: s.webhook_secret.clone(),
        file_roots: file_roots(s, loopback),
        objects: s.objects(),
        net_policy: net_policy(s, loopback),
        max_body_bytes: s.max_body_bytes,
        max_attempts: s.max_attempts,
        lease_ttl: Duration::from_secs(s.lease_ttl),
        lease_grace: Duration::from_secs(s.lease_grace.unwrap_or(s.lease_ttl)),
        heartbeat_interval: Duration::from_secs(s.nommerd_heartbeat_interval),
        abandon_inactive_jobs_thresh: Duration::from_secs(s.feederd_abandon_inactive_jobs_thresh),
        prune_jobs_interval: Duration::from_secs(s.feederd_prune_jobs_interval.max(1)),
        webhook_timeout: Duration::from_secs(s.webhook_timeout),
        webhook_retry_period: Duration::from_secs(s.webhook_retry_period),
        allowlist,
        webhook_connect_timeout: Duration::from_secs(s.webhook_connect_timeout.max(1)),
        webhook_concurrency: s.webhook_concurrency.max(1),
        webhook_per_host: s.webhook_per_host.max(1),
        max_connections: s.max_connections.max(1),
        max_lease_batch: s.max_lease_batch.max(1),
        max_heartbeat_leases: s.max_heartbeat_leases.max(1),
        max_long_polls: s.max_long_polls,
        header_timeout: Duration::from_secs(s.header_timeout.max(1)),
        body_timeout: Duration::from_secs(s.body_timeout.max(1)),
        submit_check_timeout: Duration::from_secs(s.submit_check_timeout.max(1)),
        ..FeederdConfig::default()
    })
}

pub fn nommerd_config(s: &Settings, feederd_url: &str) -> anyhow::Result<NommerdConfig> {
    let mut config = NommerdConfig::new(feederd_url);
    config.worker_token = s.worker_token()?;
    config.max_jobs = s.max_encoding_jobs_per_ec2_instance.max(1);
    if let Some(dir) = &s.work_dir {
        config.work_dir = dir.clone();
    }
    if let Some(id) = &s.node_id {
        config.node_id = id.clone();
    }
    config.heartbeat_interval = Duration::from_secs(s.nommerd_heartbeat_interval.max(1));
    config.ffmpeg = s.ffmpeg_path.clone();
    config.ffprobe = s.ffprobe_path.clone();
    config.net_policy = net_policy(s, true);
    config.max_download_bytes = s.max_download_bytes;
    config.min_free_scratch_bytes = s.min_free_scratch_bytes;
    config.upload_files_concurrency = s.upload_files_concurrency.clamp(1, 64);
    config.objects = s.objects();
    config.fleet = s.fleet;
    config.ec2 = s.ec2.clone();
    config.max_inactivity = Duration::from_secs(s.nommerd_max_inactivity);
    config.terminate_when_idle = s.nommerd_terminate_when_idle;
    config.sandbox = s.sandbox();
    config.max_job_runtime = Duration::from_secs(s.max_job_runtime.max(1));
    config.max_tool_stall = Duration::from_secs(s.max_tool_stall.max(1));
    config.allowlist = s.allowlist()?;
    config.file_roots = if s.file_roots.is_empty() {
        FileRoots::Any
    } else {
        file_roots(s, false)
    };
    config.shutdown_mode = match s.nommerd_shutdown.as_str() {
        "handback" => ShutdownMode::Handback,
        "finish" => ShutdownMode::Finish,
        other => anyhow::bail!("nommerd_shutdown must be handback or finish, not {other}"),
    };
    Ok(config)
}

pub async fn open_store(s: &Settings) -> anyhow::Result<SqlStore> {
    let policy = LeasePolicy {
        ttl_ms: s.lease_ttl as i64 * 1000,
        retry_backoff_ms: s.lease_retry_backoff as i64 * 1000,
        retry_backoff_max_ms: 300_000,
    };
    let pool = PoolSettings {
        max_connections: s.store_pool_size,
        acquire_timeout: Duration::from_secs(s.store_acquire_timeout.max(1)),
        statement_timeout: Duration::from_secs(s.store_statement_timeout.max(1)),
    };
    let store = SqlStore::open(&s.store, policy, &pool)
        .await
        .with_context(|| format!("opening store {}", nommer_model::uri::redact_str(&s.store)))?;
    match &s.secrets_key {
        Some(key) => {
            let sealer = Sealer::from_base64(key).map_err(|e| anyhow::anyhow!(e))?;
            Ok(store.with_sealer(sealer))
        }
        None => {
            tracing::warn!(
                "secrets_key is not set: credentials in job URIs are stored unencrypted"
            );
            Ok(store)
        }
    }
}

/// A feederd (and its in-process workers) running in this process.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<anyhow::Result<()>>>,
    fleet: Option<Arc<FleetState>>,
    /// Replaced on SIGHUP, token files read again.
    pub tokens: Arc<TokenSet>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop workers first (they hand their jobs back), then feederd.
    pub async fn stop(self) {
        if let Some(fleet) = &self.fleet {
            if let Fleet::Local(local) = &fleet.fleet {
                local.stop_all();
                for _ in 0..100 {
                    if local.members().is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let _ = self.shutdown.send(true);
        for worker in self.workers {
            let _ = worker.await;
        }
        let _ = self.server.await;
    }
}

pub async fn start(
    settings: &Settings,
    listener: TcpListener,
    local_workers: u32,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let loopback = addr.ip().is_loopback();
    let config = feederd_config(settings, loopback)?;
    let tokens = config.tokens.current();
    let tokens_set = !tokens.api.is_empty() && tokens.worker.is_some();
    if !loopback && !tokens_set && !settings.insecure {
        anyhow::bail!(
            "refusing to listen on {addr} without api_tokens and worker_token configured; set them, or pass --insecure"
        );
    }
    let store = open_store(settings).await?;
    let (shutdown, rx) = watch::channel(false);
    let leadership = match store.dialect() {
        Dialect::Sqlite => Leadership::always(),
        Dialect::Postgres => Leadership::postgres(store.url(), &addr.to_string(), rx.clone()),
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let token_set = config.tokens.clone();
    let mut state = AppState::new(store, config, leadership);
    state.fleet = fleet(settings, addr, token_set.clone())
        .await?
        .map(Arc::new);
    let fleet_state = state.fleet.clone();
    let server = tokio::spawn(nommer_feederd::run(listener, state, rx.clone()));
    let url = format!("http://{addr}");
    let mut workers = Vec::new();
    for i in 0..local_workers {
        let mut config = nommerd_config(settings, &url)?;
        config.fleet = nommer_model::FleetKind::Local;
        config.node_id = format!("{}-local{i}", config.node_id);
        // A worker that cannot sandbox its tools stops feederd from starting.
        let sandbox = std::sync::Arc::new(nommer_nommerd::worker::start_sandbox(&config)?);
        workers.push(tokio::spawn(nommer_nommerd::worker::run_in(
            config,
            sandbox,
            rx.clone(),
        )));
    }
    tracing::info!(%addr, store = %nommer_model::uri::redact_str(&settings.store), local_workers, "feederd listening");
    Ok(Running {
        addr,
        shutdown,
        server,
        workers,
        fleet: fleet_state,
        tokens: token_set,
    })
}

/// The fleet feederd scales, from `fleet`.
async fn fleet(
    settings: &Settings,
    addr: SocketAddr,
    tokens: Arc<TokenSet>,
) -> anyhow::Result<Option<FleetState>> {
    let scaling = FleetSettings {
        max_nodes: settings.max_num_ec2_instances,
        per_node: settings.max_encoding_jobs_per_ec2_instance.max(1),
        overflow_thresh: settings.job_overflow_thresh,
        interval: Duration::from_secs(settings.feederd_auto_scale_interval.max(1)),
        max_launches_per_hour: settings.max_launches_per_hour,
        max_inactivity: Duration::from_secs(settings.nommerd_max_inactivity),
        boot_grace: Duration::from_secs(settings.ec2.boot_grace),
        zombie_after: Duration::from_secs(settings.ec2.zombie_after),
    };
    let fleet = match settings.fleet {
        nommer_model::FleetKind::Static => return Ok(None),
        nommer_model::FleetKind::Local => Fleet::Local(LocalFleet::new(
            std::env::current_exe()?,
            vec![
                "--feederd".into(),
                format!("http://{addr}"),
                "nommerd".into(),
                "--max-jobs".into(),
                scaling.per_node.to_string(),
            ],
            Vec::new(),
            &format!("feederd-{}", addr.port()),
        )),
        nommer_model::FleetKind::Ec2 => {
            let ec2 = &settings.ec2;
            let Some(feederd_url) = ec2.feederd_url.as_deref() else {
                anyhow::bail!(
                    "fleet = \"ec2\" needs ec2.feederd_url: the URL instances reach feederd at"
                );
            };
            if ec2.ami.is_empty() {
                anyhow::bail!("fleet = \"ec2\" needs ec2.ami");
            }
            let template = match &ec2.user_data_template {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading the user-data template {path}"))?,
                None => userdata::BUILT_IN.to_string(),
            };
            let (feederd_url, region) = (feederd_url.to_string(), ec2.region.clone());
            let (max_jobs, max_inactivity_s) = (scaling.per_node, settings.nommerd_max_inactivity);
            let user_data = Box::new(move || {
                let worker = tokens.current().worker.clone().unwrap_or_default();
                userdata::render(
                    &template,
                    &userdata::UserData {
                        feederd_url: &feederd_url,
                        worker_token: &worker,
                        max_jobs,
                        max_inactivity_s,
                        region: &region,
                    },
                )
            });
            let client = Ec2Client::new(&ec2.region, ec2.endpoint.as_deref()).await;
            Fleet::Ec2(Box::new(Ec2Fleet {
                client,
                config: ec2.clone(),
                user_data,
            }))
        }
    };
    tracing::info!(
        fleet = fleet.kind(),
        max_nodes = scaling.max_nodes,
        per_node = scaling.per_node,
        "autoscaling fleet"
    );
    Ok(Some(FleetState::new(fleet, scaling)))
}

/// SIGHUP reads the token files again; a set that does not load leaves the
/// old one in force.
async fn reload_tokens_on_sighup(settings: Settings, tokens: Arc<TokenSet>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler: token files are read at start only");
        return;
    };
    while hup.recv().await.is_some() {
        match settings.tokens() {
            Ok(fresh) => {
                let names: Vec<String> = fresh.api.iter().map(|t| t.name.clone()).collect();
                tokens.replace(fresh);
                tracing::info!(api_tokens = ?names, "SIGHUP: tokens reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: tokens not reloaded; the old ones stay in force")
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

pub async fn feederd(settings: Settings) -> anyhow::Result<()> {
    if settings.secrets_key.is_none() {
        tracing::warn!("secrets_key is not set: credentials in job URIs are stored unencrypted");
    }
    let listener = TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let running = start(&settings, listener, settings.local_workers).await?;
    let reload = tokio::spawn(reload_tokens_on_sighup(
        settings.clone(),
        running.tokens.clone(),
    ));
    signal().await;
    reload.abort();
    running.stop().await;
    Ok(())
}

pub async fn nommerd(settings: Settings) -> anyhow::Result<()> {
    let config = nommerd_config(&settings, &settings.feederd_url)?;
    let (shutdown, rx) = watch::channel(false);
    let mut worker = tokio::spawn(nommer_nommerd::run(config, rx));
    tokio::select! {
        _ = signal() => {
            let _ = shutdown.send(true);
            (&mut worker).await??;
        }
        result = &mut worker => result??,
    }
    Ok(())
}
