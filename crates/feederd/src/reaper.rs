//! Maintenance: expired leases go back to the queue (or to ERROR after the
//! last attempt), silent nodes are marked lost, and PENDING jobs nobody took for
//! `feederd_abandon_inactive_jobs_thresh` become ABANDONED.
//!
//! Runs on the leader only. A new leader (a feederd that just started, or a
//! replica that took over) waits `lease_grace` before it reaps leases: workers
//! could not renew them while no feederd was up, and their encodes go on.

use crate::loops::{Next, Worker};
use crate::AppState;
use nommer_model::now_ms;
use std::time::Duration;
use tokio::time::Instant;

const TICK: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Reaper {
    leading_since: Option<Instant>,
    next_abandon_check: Option<Instant>,
}

#[async_trait::async_trait]
impl Worker for Reaper {
    fn name(&self) -> &'static str {
        "reaper"
    }

    fn led(&mut self) {
        self.leading_since = None;
    }

    async fn work(&mut self, state: &AppState) -> anyhow::Result<Next> {
        let config = &state.config;
        let lost_after = (config.heartbeat_interval * 3)
            .max(config.lease_ttl)
            .as_millis() as i64;
        let since = *self.leading_since.get_or_insert_with(|| {
            tracing::info!(
                grace_s = config.lease_grace.as_secs(),
                "reaper running; expired leases get a grace period first"
            );
            Instant::now()
        });
        let now = now_ms();
        if since.elapsed() >= config.lease_grace {
            for change in state.store.reap_expired(now).await? {
                tracing::warn!(job_id = %change.job_id, task = change.task, state = %change.state, job_state = %change.job_state, "lease expired");
            }
        }
        for node_id in state.store.mark_lost_nodes(now, lost_after).await? {
            tracing::warn!(node_id = %node_id, "node stopped sending heartbeats");
        }
        let next_check = self.next_abandon_check.get_or_insert_with(Instant::now);
        if Instant::now() >= *next_check {
            let threshold = config.abandon_inactive_jobs_thresh.as_millis() as i64;
            for job_id in state.store.abandon_stale(now, threshold).await? {
                tracing::warn!(job_id = %job_id, "job abandoned: no worker took it in time");
            }
            *next_check = Instant::now() + config.prune_jobs_interval;
        }
        Ok(Next::Idle(TICK))
    }
}
