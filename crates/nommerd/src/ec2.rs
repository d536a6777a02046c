//! nommerd on EC2 (set by configuration, which user-data writes; never
//! guessed). It learns its instance id from IMDSv2 and reports it in every
//! heartbeat; it watches for spot interruption notices and then hands its
//! leases back at once; and, idle longer than `max_inactivity` with no lease
//! and `terminate_when_idle` set, it tells feederd it is going and terminates
//! its own instance.

use crate::worker::Shared;
use nommer_fleet::ec2::Ec2Client;
use nommer_fleet::imds::Imds;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Why the watcher ended the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    SpotInterruption,
    IdleTermination,
}

/// The instance id, asked of the metadata service (a few tries while the
/// instance settles).
pub async fn instance_id(imds: &Imds) -> anyhow::Result<String> {
    let mut last = None;
    for _ in 0..5 {
        match imds.instance_id().await {
            Ok(id) => return Ok(id),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!(
        "fleet is ec2 but the instance metadata service does not answer: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )
}

pub async fn watch(
    shared: Arc<Shared>,
    imds: Arc<Imds>,
    stop: watch::Sender<Option<Leaving>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = shared.config.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match imds.spot_interruption().await {
            Ok(Some(notice)) => {
                tracing::warn!(instance_id = ?config.instance_id, notice = %notice, "spot interruption notice: handing every lease back");
                stop.send_replace(Some(Leaving::SpotInterruption));
                return;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read the spot notice"),
        }
        let idle = shared.idle_for();
        let may_go = config.terminate_when_idle
            && shared.running().is_empty()
            && idle.is_some_and(|idle| idle > config.max_inactivity);
        if may_go {
            tracing::info!(instance_id = ?config.instance_id, idle_s = idle.unwrap_or_default().as_secs(), "idle past nommerd_max_inactivity: terminating this instance");
            stop.send_replace(Some(Leaving::IdleTermination));
            return;
        }
    }
}

/// Terminate this instance through its role; if that fails and the instance
/// was launched to terminate on shutdown, shut down.
pub async fn terminate_self(shared: &Shared, imds: &Imds) {
    let config = &shared.config;
    let Some(id) = config.instance_id.clone() else {
        return;
    };
    let region = match imds.region().await {
        Ok(Some(region)) => region,
        _ => config.ec2.region.clone(),
    };
    let ec2 = Ec2Client::new(&region, config.ec2.endpoint.as_deref()).await;
    match ec2.terminate_instances(std::slice::from_ref(&id)).await {
        Ok(()) => tracing::info!(instance_id = %id, "TerminateInstances accepted; goodbye"),
        Err(e) if config.ec2.shutdown_fallback => {
            tracing::warn!(instance_id = %id, error = %e, "TerminateInstances failed; shutting down instead");
            let _ = tokio::process::Command::new("shutdown")
                .args(["-h", "now"])
                .status()
                .await;
        }
        Err(e) => {
            tracing::error!(instance_id = %id, error = %e, "TerminateInstances failed; feederd will terminate this instance as a zombie")
        }
    }
}
