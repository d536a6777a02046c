//! feederd: the HTTP API, the lease service and the background loops
//! (reaper, notifier) over a [`Store`]. Every replica serves the API; the
//! loops run only while this replica is the [`Leadership`] leader.

pub mod auth;
pub mod autoscaler;
pub mod config;
pub mod error;
pub mod loops;
pub mod metrics;
pub mod notifier;
pub mod openapi;
pub mod phases;
pub mod presets;
pub mod reaper;
pub mod retention;
pub mod routes;
pub mod serve;
pub mod session;
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
    /// The background loops' status on this replica.
    pub loops: Arc<loops::Loops>,
    /// For submit-time checks of object storage sources.
    pub storage: nommer_storage::Storage,
    /// The fleet this feederd scales (none for a static fleet).
    pub fleet: Option<Arc<autoscaler::FleetState>>,
    /// Slots for clients' long-polls (job GETs that wait), `max_long_polls`.
    pub long_polls: Arc<tokio::sync::Semaphore>,
    /// Slots for workers' lease waits, as many again: clients cannot starve
    /// the workers of theirs.
    pub lease_polls: Arc<tokio::sync::Semaphore>,
    /// Slots for event streams (`GET /v1/events`), as many again.
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Turns true when feederd stops: long-polls answer at once.
    pub shutdown: watch::Receiver<bool>,
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
            long_polls: Arc::new(tokio::sync::Semaphore::new(config.max_long_polls.max(1))),
            lease_polls: Arc::new(tokio::sync::Semaphore::new(config.max_long_polls.max(1))),
            streams: Arc::new(tokio::sync::Semaphore::new(config.max_long_polls.max(1))),
            shutdown: watch::channel(false).1,
            config: Arc::new(config),
            leadership,
            metrics: Arc::new(metrics::Metrics::new()),
            loops: Arc::default(),
            storage,
            fleet: None,
        }
    }

    /// Resolves when feederd begins to stop (never, without a shutdown signal).
    pub async fn stopping(&self) {
        let mut shutdown = self.shutdown.clone();
        if shutdown.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
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

/// Write the configured queues' limits to the store, retrying until it answers.
async fn sync_queues(state: AppState) {
    let backoff = nommer_model::backoff::Backoff::new(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    );
    let mut failures = 0;
    loop {
        match state
            .store
            .sync_queues(&state.config.queues, nommer_model::now_ms())
            .await
        {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot write the queues to the store; retrying");
                tokio::time::sleep(backoff.delay(failures)).await;
            }
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
    tokio::spawn(sync_queues(state.clone()));
    let mut loops = vec![
        tokio::spawn(loops::run(
            state.clone(),
            reaper::Reaper::default(),
            shutdown.clone(),
        )),
        tokio::spawn(loops::run(
            state.clone(),
            notifier::Notifier::new(&state),
            shutdown.clone(),
        )),
        tokio::spawn(loops::run(
            state.clone(),
            retention::Retention,
            shutdown.clone(),
        )),
    ];
    if let Some(fleet) = state.fleet.clone() {
        loops.push(tokio::spawn(loops::run(
            state.clone(),
            autoscaler::Autoscaler(fleet),
            shutdown.clone(),
        )));
    }
    let (header_timeout, max_connections) =
        (state.config.header_timeout, state.config.max_connections);
    let mut state = state;
    state.shutdown = shutdown.clone();
    let app = routes::router(state);
    let result = serve::serve(
        listener,
        app,
        header_timeout,
        max_connections,
        shutdown.clone(),
    )
    .await;
    for task in loops {
        let _ = task.await;
    }
    result
}
