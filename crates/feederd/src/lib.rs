//! feederd: the HTTP API, the lease service and the background loops
//! (reaper, notifier) over a [`Store`]. Every replica serves the API; the
//! loops run only while this replica is the [`Leadership`] leader.

pub mod auth;
pub mod autoscaler;
pub mod config;
pub mod error;
pub mod metrics;
pub mod notifier;
pub mod openapi;
pub mod reaper;
pub mod routes;
pub mod serve;
pub mod submit;

use crate::config::FeederdConfig;
use nommer_store::leader::Leadership;
use nommer_store::Store;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What every handler and loop shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<FeederdConfig>,
    pub leadership: Leadership,
    pub metrics: Arc<metrics::Metrics>,
    /// For submit-time checks of object storage sources.
    pub storage: nommer_storage::Storage,
    /// The fleet this feederd scales (none for a static fleet).
    pub fleet: Option<Arc<autoscaler::FleetState>>,
    /// Slots for long-polls, `max_long_polls` of them.
    pub long_polls: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: FeederdConfig, leadership: Leadership) -> AppState {
        let storage = nommer_storage::Storage::new(
            config.file_roots.clone(),
            config.net_policy,
            config.objects.clone(),
        );
        AppState {
            store,
            long_polls: Arc::new(tokio::sync::Semaphore::new(config.max_long_polls)),
            config: Arc::new(config),
            leadership,
            metrics: Arc::default(),
            storage,
            fleet: None,
        }
    }

    /// Resolves once this replica leads, or returns false on shutdown.
    pub async fn lead(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        if self.leadership.is_leader() {
            return true;
        }
        let mut leadership = self.leadership.clone();
        tokio::select! {
            led = leadership.wait_until_leader() => led,
            _ = shutdown.wait_for(|stop| *stop) => false,
        }
    }
}

/// Serve the API on `listener` and run the background loops until `shutdown`
/// turns true.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let loops = vec![
        tokio::spawn(reaper::run(state.clone(), shutdown.clone())),
        tokio::spawn(notifier::run(state.clone(), shutdown.clone())),
        tokio::spawn(autoscaler::run(state.clone(), shutdown.clone())),
    ];
    let header_timeout = state.config.header_timeout;
    let app = routes::router(state);
    let result = serve::serve(listener, app, header_timeout, shutdown.clone()).await;
    for task in loops {
        let _ = task.await;
    }
    result
}
