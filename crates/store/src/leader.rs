//! Which feederd replica runs the background loops (reaper, notifier,
//! autoscaler). With SQLite there is one feederd, always the leader. With
//! PostgreSQL the leader is the replica holding a session advisory lock on a
//! connection of its own: the lock goes with the session, so a replica that
//! dies, or is cut off, hands leadership on without anyone deciding.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};
use std::time::Duration;
use tokio::sync::watch;

/// The advisory lock key: "nommer" in ASCII.
const LOCK_KEY: i64 = 0x6e6f_6d6d_6572;
/// How often a follower tries the lock and the leader checks its session.
const TICK: Duration = Duration::from_secs(1);
/// The server ends a leader session silent this long (a frozen or cut-off
/// leader), which frees the lock for another replica.
const SESSION_TIMEOUT_S: u32 = 5;

#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// A single feederd: leader from the start.
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive so the value never reads as closed.
        std::mem::forget(tx);
        Leadership { rx }
    }

    /// Contend for the cluster's lock on `url` until `shutdown`.
    pub fn postgres(url: &str, replica: &str, shutdown: watch::Receiver<bool>) -> Leadership {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(contend(url.to_string(), replica.to_string(), tx, shutdown));
        Leadership { rx }
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Wait until this replica leads; false if it never will (shutdown).
    pub async fn wait_until_leader(&mut self) -> bool {
        self.rx.wait_for(|leader| *leader).await.is_ok()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

async fn contend(
    url: String,
    replica: String,
    tx: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<PgConnection> = None;
    loop {
        let was_leader = *tx.borrow();
        match tick(&url, &mut conn, was_leader).await {
            Ok(leader) => {
                if leader != was_leader {
                    if leader {
                        tracing::info!(replica = %replica, "this replica is now the leader");
                    }
                    tx.send_replace(leader);
                }
            }
            Err(e) => {
                if was_leader {
                    tracing::warn!(replica = %replica, error = %e, "leadership lost with the store connection");
                    tx.send_replace(false);
                }
                conn = None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    tx.send_replace(false);
    if let Some(conn) = conn {
        // Closing the session releases the lock at once.
        let _ = conn.close().await;
    }
}

/// One round: connect if needed; a leader proves its session is alive, a
/// follower tries the lock. Returns whether this replica leads.
async fn tick(url: &str, conn: &mut Option<PgConnection>, leader: bool) -> sqlx::Result<bool> {
    if conn.is_none() {
        let mut fresh = PgConnection::connect(url).await?;
        let settings = format!(
            "SET idle_session_timeout = '{SESSION_TIMEOUT_S}s'; SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3"
        );
        fresh.execute(settings.as_str()).await?;
        *conn = Some(fresh);
    }
    let conn = conn.as_mut().expect("connected above");
    if leader {
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        return Ok(true);
    }
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *conn)
        .await
}
