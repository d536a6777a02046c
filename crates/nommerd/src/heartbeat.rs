//! The node's heartbeat: renews every lease, carries progress, and brings
//! back cancels and lost leases. Sent each `progress_interval` while tasks run,
//! each `heartbeat_interval` when idle.

use crate::task::Stop;
use crate::worker::Shared;
use nommer_model::api::{HeartbeatRequest, LeaseReport};
use std::sync::Arc;
use tokio::sync::watch;

pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let config = &shared.config;
    let mut last_sent = tokio::time::Instant::now() - config.heartbeat_interval;
    loop {
        let running = shared.running();
        let due = !running.is_empty() || last_sent.elapsed() >= config.heartbeat_interval;
        if due {
            last_sent = tokio::time::Instant::now();
            let sent_at = std::time::Instant::now();
            let request = HeartbeatRequest {
                node: shared.node_report(),
                leases: running
                    .iter()
                    .map(|job| LeaseReport {
                        job_id: job.job_id.clone(),
                        task: job.task,
                        token: job.token.clone(),
                        progress: job.progress(),
                    })
                    .collect(),
            };
            match shared.client.heartbeat(&request).await {
                Ok(answer) => {
                    for status in answer.leases {
                        let found = running
                            .iter()
                            .find(|j| j.job_id == status.job_id && j.task == status.task);
                        let Some(job) = found else {
                            continue;
                        };
                        if !status.valid {
                            tracing::warn!(job_id = %job.job_id, task = job.task, "feederd says this lease is gone; stopping the task");
                            job.stop(Stop::LeaseLost);
                        } else if status.cancel_requested {
                            job.stop(Stop::Canceled);
                        } else {
                            job.renewed(sent_at);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.progress_interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
