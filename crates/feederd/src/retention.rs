//! Retention: jobs that ended more than `job_retention` ago are deleted with
//! their tasks, events, delivery attempts and idempotency keys, and so are
//! nodes unseen that long; on the leader, in bounded batches. A chunked
//! job's intermediates went with its cleanup task, long before.

use crate::loops::{Next, Worker};
use crate::AppState;
use nommer_model::now_ms;
use std::time::Duration;

/// Jobs deleted per transaction.
const BATCH: u32 = 500;
/// The longest between passes, whatever `feederd_prune_jobs_interval` says.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

pub struct Retention;

#[async_trait::async_trait]
impl Worker for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }

    async fn work(&mut self, state: &AppState) -> anyhow::Result<Next> {
        let before = now_ms() - state.config.job_retention.as_millis() as i64;
        let pruned = state.store.prune(before, BATCH).await?;
        if pruned.jobs > 0 || pruned.nodes > 0 {
            tracing::info!(
                jobs = pruned.jobs,
                nodes = pruned.nodes,
                retention_s = state.config.job_retention.as_secs(),
                "retention deleted ended jobs and unseen nodes"
            );
        }
        if pruned.jobs == u64::from(BATCH) {
            return Ok(Next::Busy);
        }
        Ok(Next::Idle(
            state.config.prune_jobs_interval.min(MAX_INTERVAL),
        ))
    }
}
