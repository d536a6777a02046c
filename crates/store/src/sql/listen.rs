//! PostgreSQL LISTEN: wakes this replica's waiters when any replica writes a
//! claimable job or a deliverable event (the migration's triggers NOTIFY).

use sqlx::postgres::PgListener;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

pub const JOBS_CHANNEL: &str = "nommer_jobs";
pub const EVENTS_CHANNEL: &str = "nommer_events";

/// Runs until the store that owns the signals is dropped.
pub fn spawn(url: &str, jobs: Arc<Notify>, events: Arc<Notify>) {
    let url = url.to_string();
    let (jobs, events) = (Arc::downgrade(&jobs), Arc::downgrade(&events));
    tokio::spawn(async move {
        while jobs.strong_count() > 0 {
            match listen(&url, &jobs, &events).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "store notifications lost; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

fn wake(signal: &Weak<Notify>) {
    if let Some(signal) = signal.upgrade() {
        signal.notify_waiters();
    }
}

async fn listen(url: &str, jobs: &Weak<Notify>, events: &Weak<Notify>) -> sqlx::Result<()> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen_all([JOBS_CHANNEL, EVENTS_CHANNEL]).await?;
    // Anything written while we were not listening: let the waiters look.
    wake(jobs);
    wake(events);
    loop {
        if jobs.strong_count() == 0 {
            return Ok(());
        }
        let Ok(received) = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await
        else {
            continue;
        };
        match received? {
            Some(n) if n.channel() == JOBS_CHANNEL => wake(jobs),
            Some(_) => wake(events),
            // The connection dropped; the next call reconnects. Notifications
            // sent meanwhile are gone, so wake everyone to look again.
            None => {
                tracing::warn!("store notification connection dropped; reconnecting");
                wake(jobs);
                wake(events);
            }
        }
    }
}
