//! Maintenance: expired leases go back to the queue (or to ERROR after the
//! last attempt), silent nodes are marked lost, and PENDING jobs nobody took for
//! `feederd_abandon_inactive_jobs_thresh` become ABANDONED.
//!
//! Runs on the leader only. A new leader (a feederd that just started, or a
//! replica that took over) waits `lease_grace` before it reaps leases: workers
//! could not renew them while no feederd was up, and their encodes go on.

use crate::AppState;
use nommer_model::now_ms;
use std::time::Duration;
use tokio::sync::watch;

const TICK: Duration = Duration::from_millis(500);

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let config = state.config.clone();
    let lost_after = (config.heartbeat_interval * 3)
        .max(config.lease_ttl)
        .as_millis() as i64;
    let mut next_prune = tokio::time::Instant::now();
    let mut leading_since: Option<tokio::time::Instant> = None;
    loop {
        if !state.leadership.is_leader() {
            leading_since = None;
            if !state.lead(&mut shutdown).await {
                return;
            }
        }
        let since = *leading_since.get_or_insert_with(|| {
            tracing::info!(
                grace_s = config.lease_grace.as_secs(),
                "reaper running; expired leases get a grace period first"
            );
            tokio::time::Instant::now()
        });
        let now = now_ms();
        if since.elapsed() >= config.lease_grace {
            match state.store.reap_expired(now).await {
                Ok(changes) => {
                    for change in changes {
                        tracing::warn!(job_id = %change.job_id, task = change.task, state = %change.state, job_state = %change.job_state, "lease expired");
                    }
                }
                Err(e) => tracing::error!(error = %e, "reaper cannot read expired leases"),
            }
        }
        match state.store.mark_lost_nodes(now, lost_after).await {
            Ok(lost) => {
                for node_id in lost {
                    tracing::warn!(node_id = %node_id, "node stopped sending heartbeats");
                }
            }
            Err(e) => tracing::error!(error = %e, "reaper cannot update nodes"),
        }
        if tokio::time::Instant::now() >= next_prune {
            next_prune += config.prune_jobs_interval;
            let threshold = config.abandon_inactive_jobs_thresh.as_millis() as i64;
            match state.store.abandon_stale(now, threshold).await {
                Ok(ids) => {
                    for job_id in ids {
                        tracing::warn!(job_id = %job_id, "job abandoned: no worker took it in time");
                    }
                }
                Err(e) => tracing::error!(error = %e, "reaper cannot abandon stale jobs"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
