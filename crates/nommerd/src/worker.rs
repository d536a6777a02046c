//! The worker's main loop: lease while there are free slots (long-polling
//! when idle), run each job in its own task, and drain on shutdown.

use crate::config::{NommerdConfig, ShutdownMode};
use crate::ec2::Leaving;
use crate::job::{RunningJob, Stop};
use crate::pipeline::Pipeline;
use nommer_client::Client;
use nommer_fleet::imds::Imds;
use nommer_media::sandbox::Sandbox;
use nommer_model::api::{HeartbeatRequest, LeaseRequest, NodeReport};
use nommer_storage::Storage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

pub struct Shared {
    pub config: Arc<NommerdConfig>,
    pub client: Client,
    pub sandbox: Arc<Sandbox>,
    jobs: Mutex<HashMap<String, Arc<RunningJob>>>,
    draining: AtomicBool,
    slot_freed: Notify,
    /// When the last job ended (or the worker started).
    last_active: Mutex<Instant>,
    /// The node state reported while leaving (`terminating`).
    leaving_state: Mutex<Option<&'static str>>,
}

impl Shared {
    /// How long the node has had no job; None while jobs run.
    pub fn idle_for(&self) -> Option<Duration> {
        if !self.jobs.lock().unwrap().is_empty() {
            return None;
        }
        Some(self.last_active.lock().unwrap().elapsed())
    }

    pub fn running(&self) -> Vec<Arc<RunningJob>> {
        self.jobs.lock().unwrap().values().cloned().collect()
    }

    pub fn node_report(&self) -> NodeReport {
        let config = &self.config;
        NodeReport {
            node_id: config.node_id.clone(),
            instance_id: config.instance_id.clone(),
            fleet: config.fleet.clone(),
            hostname: crate::config::hostname(),
            version: env!("CARGO_PKG_VERSION").into(),
            max_jobs: config.max_jobs,
            running_jobs: self.jobs.lock().unwrap().len() as u32,
            state: match *self.leaving_state.lock().unwrap() {
                Some(state) => state.into(),
                None if self.draining.load(Ordering::Relaxed) => "draining".into(),
                None => "active".into(),
            },
            sandbox: Some(self.sandbox.describe()),
        }
    }
}

/// Run a worker until `shutdown` turns true, then drain per `shutdown_mode`.
pub async fn run(config: NommerdConfig, external: watch::Receiver<bool>) -> anyhow::Result<()> {
    let sandbox = Arc::new(start_sandbox(&config)?);
    run_in(config, sandbox, external).await
}

/// [`run`] with a sandbox already checked by [`start_sandbox`].
pub async fn run_in(
    mut config: NommerdConfig,
    sandbox: Arc<Sandbox>,
    external: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let imds = if config.fleet == "ec2" {
        let imds = Arc::new(Imds::new(&config.ec2.imds_endpoint));
        config.instance_id = Some(crate::ec2::instance_id(&imds).await?);
        Some(imds)
    } else {
        None
    };
    let config = Arc::new(config);
    let client = Client::new(&config.feederd_url, config.worker_token.clone());
    let shared = Arc::new(Shared {
        config: config.clone(),
        client: client.clone(),
        sandbox: sandbox.clone(),
        jobs: Mutex::new(HashMap::new()),
        draining: AtomicBool::new(false),
        slot_freed: Notify::new(),
        last_active: Mutex::new(Instant::now()),
        leaving_state: Mutex::new(None),
    });
    // Stop on the caller's signal, or when the EC2 watcher decides to leave.
    let (leave_tx, mut leave_rx) = watch::channel(None);
    let (stop_tx, mut shutdown) = watch::channel(false);
    {
        let mut external = external.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = external.wait_for(|s| *s) => {}
                _ = leave_rx.wait_for(|l| l.is_some()) => {}
            }
            let _ = stop_tx.send(true);
        });
    }
    let watcher = imds.as_ref().map(|imds| {
        tokio::spawn(crate::ec2::watch(
            shared.clone(),
            imds.clone(),
            leave_tx.clone(),
            shutdown.clone(),
        ))
    });
    let node_shared = shared.clone();
    let pipeline = Arc::new(Pipeline {
        config: config.clone(),
        client: client.clone(),
        sandbox: sandbox.clone(),
        reporter: crate::reporter::Reporter::spawn(client.clone()),
        storage: Storage::new(
            config.file_roots.clone(),
            config.net_policy,
            config.objects.clone(),
        )
        .with_max_download_bytes(config.max_download_bytes),
        node: Arc::new(move || node_shared.node_report()),
    });
    let (heartbeat_stop, heartbeat_rx) = watch::channel(false);
    let heartbeat = tokio::spawn(crate::heartbeat::run(shared.clone(), heartbeat_rx));
    tracing::info!(node_id = %config.node_id, feederd = %config.feederd_url, max_jobs = config.max_jobs, sandbox = %sandbox.describe(), "nommerd started");

    let mut failures = 0u32;
    while !*shutdown.borrow() {
        let free = config
            .max_jobs
            .saturating_sub(shared.jobs.lock().unwrap().len() as u32);
        if free == 0 {
            let freed = shared.slot_freed.notified();
            tokio::select! {
                _ = freed => {}
                _ = shutdown.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let request = LeaseRequest {
            node: shared.node_report(),
            max: free,
            wait_ms: config.lease_wait.as_millis() as u64,
        };
        let asked_at = Instant::now();
        let answer = tokio::select! {
            answer = client.lease(&request) => answer,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let grants = match answer {
            Ok(answer)
                if answer.leases.is_empty() && asked_at.elapsed() < config.lease_wait / 2 =>
            {
                // An empty answer long before the wait was over: feederd is
                // out of long-poll slots or stopping. Ask again in a moment,
                // not at once.
                failures = 0;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                continue;
            }
            Ok(answer) => {
                failures = 0;
                answer.leases
            }
            Err(e) => {
                failures += 1;
                let wait = Duration::from_millis(250 * 2u64.pow(failures.min(5)));
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot lease from feederd");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                continue;
            }
        };
        for grant in grants {
            let job = Arc::new(RunningJob::new(
                grant.job_id.clone(),
                grant.token.clone(),
                Duration::from_millis(grant.ttl_ms),
                asked_at,
            ));
            shared
                .jobs
                .lock()
                .unwrap()
                .insert(grant.job_id.clone(), job.clone());
            tracing::info!(job_id = %grant.job_id, attempt = grant.attempt, "job leased");
            let pipeline = pipeline.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let job_id = grant.job_id.clone();
                let token = grant.token.clone();
                pipeline.run(grant, job).await;
                *shared.last_active.lock().unwrap() = Instant::now();
                // Only this lease's entry: the same job may have been leased
                // to this node again meanwhile.
                let mut jobs = shared.jobs.lock().unwrap();
                if jobs.get(&job_id).is_some_and(|j| j.token == token) {
                    jobs.remove(&job_id);
                }
                drop(jobs);
                shared.slot_freed.notify_waiters();
            });
        }
    }

    shared.draining.store(true, Ordering::Relaxed);
    let leaving = *leave_tx.borrow();
    if leaving == Some(Leaving::IdleTermination) {
        *shared.leaving_state.lock().unwrap() = Some("terminating");
    }
    let running = shared.running();
    tracing::info!(node_id = %config.node_id, running = running.len(), mode = ?config.shutdown_mode, "nommerd shutting down");
    // A spot interruption leaves two minutes: hand everything back at once.
    let handback = config.shutdown_mode == ShutdownMode::Handback
        || leaving == Some(Leaving::SpotInterruption);
    if handback {
        for job in &running {
            job.stop(Stop::Handback);
        }
    }
    while !shared.jobs.lock().unwrap().is_empty() {
        let freed = shared.slot_freed.notified();
        tokio::select! {
            _ = freed => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let _ = heartbeat_stop.send(true);
    let _ = heartbeat.await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let mut goodbye = shared.node_report();
    goodbye.state = match leaving {
        Some(Leaving::IdleTermination) => "terminated",
        Some(Leaving::SpotInterruption) => "interrupted",
        None => "gone",
    }
    .into();
    // Tell feederd first, so it leases nothing more here, then go.
    let _ = client
        .heartbeat(&HeartbeatRequest {
            node: goodbye,
            leases: Vec::new(),
        })
        .await;
    if let (Some(Leaving::IdleTermination), Some(imds)) = (leaving, &imds) {
        crate::ec2::terminate_self(&shared, imds).await;
    }
    tracing::info!(node_id = %config.node_id, "nommerd stopped");
    Ok(())
}

/// The sandbox this worker's tools run in, or why the worker cannot start:
/// a kernel short of what `sandbox` demands, an unknown `sandbox_user`, or a
/// `work_dir` that user cannot reach and write in.
pub fn start_sandbox(config: &NommerdConfig) -> anyhow::Result<Sandbox> {
    let sandbox = Sandbox::new(&config.sandbox).map_err(|e| anyhow::anyhow!("{e}"))?;
    sandbox
        .check_work_dir(&config.work_dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(identity) = sandbox.identity() {
        tracing::info!(user = %identity.name, uid = identity.uid, "tools run as the sandbox user");
    }
    Ok(sandbox)
}
