//! Starting feederd and nommerd from settings, and stopping them on signals.

use crate::settings::Settings;
use anyhow::Context;
use nommer_feederd::config::FeederdConfig;
use nommer_feederd::AppState;
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

fn net_policy(s: &Settings) -> NetPolicy {
    NetPolicy {
        allow_link_local: s.allow_link_local_addresses,
        forbid_private: s.forbid_private_addresses,
    }
}

fn file_roots(s: &Settings, loopback: bool) -> FileRoots {
    if !s.file_roots.is_empty() {
        return FileRoots::Only(s.file_roots.iter().map(Into::into).collect());
    }
    if loopback {
        FileRoots::Any
    } else {
        FileRoots::Off
    }
}

pub fn feederd_config(s: &Settings, loopback: bool) -> FeederdConfig {
    FeederdConfig {
        api_tokens: s.api_tokens.clone(),
        worker_token: s.worker_token.clone(),
        webhook_secret: s.webhook_secret.clone(),
        file_roots: file_roots(s, loopback),
        objects: s.objects(),
        net_policy: net_policy(s),
        max_body_bytes: s.max_body_bytes,
        max_attempts: s.max_attempts,
        lease_ttl: Duration::from_secs(s.lease_ttl),
        lease_grace: Duration::from_secs(s.lease_grace.unwrap_or(s.lease_ttl)),
        heartbeat_interval: Duration::from_secs(s.nommerd_heartbeat_interval),
        abandon_inactive_jobs_thresh: Duration::from_secs(s.feederd_abandon_inactive_jobs_thresh),
        prune_jobs_interval: Duration::from_secs(s.feederd_prune_jobs_interval.max(1)),
        webhook_timeout: Duration::from_secs(s.webhook_timeout),
        webhook_retry_period: Duration::from_secs(s.webhook_retry_period),
        max_lease_wait: Duration::from_secs(25),
    }
}

pub fn nommerd_config(s: &Settings, feederd_url: &str) -> anyhow::Result<NommerdConfig> {
    let mut config = NommerdConfig::new(feederd_url);
    config.worker_token = s.worker_token.clone();
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
    config.net_policy = net_policy(s);
    config.objects = s.objects();
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
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop workers first (they hand their jobs back), then feederd.
    pub async fn stop(self) {
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
    let tokens_set = !settings.api_tokens.is_empty() && settings.worker_token.is_some();
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
    let state = AppState::new(store, feederd_config(settings, loopback), leadership);
    let server = tokio::spawn(nommer_feederd::run(listener, state, rx.clone()));
    let url = format!("http://{addr}");
    let mut workers = Vec::new();
    for i in 0..local_workers {
        let mut config = nommerd_config(settings, &url)?;
        config.fleet = "local".into();
        config.node_id = format!("{}-local{i}", config.node_id);
        workers.push(tokio::spawn(nommer_nommerd::run(config, rx.clone())));
    }
    tracing::info!(%addr, store = %nommer_model::uri::redact_str(&settings.store), local_workers, "feederd listening");
    Ok(Running {
        addr,
        shutdown,
        server,
        workers,
    })
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
    let listener = TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let running = start(&settings, listener, settings.local_workers).await?;
    signal().await;
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
