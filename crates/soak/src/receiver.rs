//! The webhook receiver: an HTTP server that records every delivery (its
//! `webhook-id`, job and state, in arrival order) and can be taken down, so
//! that connections are refused, and brought back on the same port.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub job_id: String,
    pub state: String,
}

type Seen = Arc<Mutex<Vec<Delivery>>>;

pub struct Receiver {
    port: u16,
    seen: Seen,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// Reads either body: a v1 job's JSON (`data.id`, `data.state`) or the
/// seed's form (`unique_id`, `job_state`).
async fn record(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> &'static str {
    let json = headers
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    let value: serde_json::Value = match json {
        true => serde_json::from_slice(&body).unwrap_or_default(),
        false => serde_json::Value::Null,
    };
    let field = |name: &str| match json {
        true => {
            let key = if name == "unique_id" { "id" } else { "state" };
            value["data"][key].as_str().unwrap_or_default().to_string()
        }
        false => url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default(),
    };
    let delivery = Delivery {
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        job_id: field("unique_id"),
        state: field("job_state"),
    };
    seen.lock().unwrap().push(delivery);
    "ok"
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let mut receiver = Receiver {
            port: nommer_testkit::free_port(),
            seen: Seen::default(),
            running: None,
        };
        receiver.up().await?;
        Ok(receiver)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }

    pub async fn up(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await?;
        let app = axum::Router::new()
            .route("/hook", post(record))
            .with_state(self.seen.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        self.running = Some((stop, task));
        Ok(())
    }

    /// Stop listening: new connections are refused until [`Receiver::up`].
    pub async fn down(&mut self) {
        if let Some((stop, mut task)) = self.running.take() {
            let _ = stop.send(());
            // Connections idle in a client's pool close at once; one stuck
            // mid-request is cut after a few seconds.
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Every delivery so far, in arrival order.
    pub fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }
}
