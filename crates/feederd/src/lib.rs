//! feederd: the HTTP API, the lease service and the background loops
//! (reaper, notifier) over a [`Store`].

pub mod auth;
pub mod config;
pub mod error;
pub mod notifier;
pub mod openapi;
pub mod reaper;
pub mod routes;
pub mod submit;

use crate::config::FeederdConfig;
use nommer_store::Store;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What every handler and loop shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<FeederdConfig>,
}

/// Serve the API on `listener` and run the background loops until `shutdown`
/// turns true.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let loops = vec![
        tokio::spawn(reaper::run(state.clone(), shutdown.clone())),
        tokio::spawn(notifier::run(state.clone(), shutdown.clone())),
    ];
    let app = routes::router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    for task in loops {
        let _ = task.await;
    }
    result
}
