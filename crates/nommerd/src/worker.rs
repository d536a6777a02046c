//! The worker's main loop: lease while there are free slots (long-polling
//! when idle), run each leased task in a [`Slots`] set, and drain on shutdown.

use crate::config::{NommerdConfig, ShutdownMode};
use crate::ec2::Leaving;
use crate::pipeline::{End, Pipeline};
use crate::task::{RunningTask, Stop, TaskKey};
use nommer_client::Client;
use nommer_fleet::imds::Imds;
use nommer_media::sandbox::Sandbox;
use nommer_model::api::{HeartbeatRequest, LeaseGrant, LeaseRequest, NodeReport};
use nommer_model::{FailureCode, NodeState};
use nommer_storage::Storage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};

/// Between failed lease requests: 500 ms, doubling to 8 s.
const LEASE_BACKOFF: nommer_model::backoff::Backoff =
    nommer_model::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(8));

pub struct Shared {
    pub config: Arc<NommerdConfig>,
    pub client: Client,
    pub sandbox: Arc<Sandbox>,
    tasks: Mutex<HashMap<TaskKey, Arc<RunningTask>>>,
    draining: AtomicBool,
    /// When the last task ended (or the worker started).
    last_active: Mutex<Instant>,
    /// The node state reported while leaving (`terminating`).
    leaving_state: Mutex<Option<NodeState>>,
}

impl Shared {
    /// How long the node has had no task; None while tasks run.
    pub fn idle_for(&self) -> Option<Duration> {
        if !self.tasks.lock().unwrap().is_empty() {
            return None;
        }
        Some(self.last_active.lock().unwrap().elapsed())
    }

    pub fn running(&self) -> Vec<Arc<RunningTask>> {
        self.tasks.lock().unwrap().values().cloned().collect()
    }

    fn running_count(&self) -> u32 {
        self.tasks.lock().unwrap().len() as u32
    }

    /// The task's slot is free again: only this lease's entry (the same task
    /// may have been leased to this node again meanwhile).
    fn forget(&self, task: &RunningTask) {
        let mut tasks = self.tasks.lock().unwrap();
        if tasks
            .get(&task.key())
            .is_some_and(|t| t.token == task.token)
        {
            tasks.remove(&task.key());
        }
        drop(tasks);
        *self.last_active.lock().unwrap() = Instant::now();
    }

    pub fn node_report(&self) -> NodeReport {
        let config = &self.config;
        NodeReport {
            node_id: config.node_id.clone(),
            instance_id: config.instance_id.clone(),
            fleet: config.fleet,
            hostname: crate::config::hostname(),
            version: env!("CARGO_PKG_VERSION").into(),
            max_jobs: config.max_jobs,
            running_jobs: self.running_count(),
            state: match *self.leaving_state.lock().unwrap() {
                Some(state) => state,
                None if self.draining.load(Ordering::Relaxed) => NodeState::Draining,
                None => NodeState::Active,
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
    let imds = if config.fleet == nommer_model::FleetKind::Ec2 {
        let imds = Arc::new(Imds::new(&config.ec2.imds_endpoint));
        config.instance_id = Some(crate::ec2::instance_id(&imds).await?);
        Some(imds)
    } else {
        None
    };
    let (own_dir, swept) = crate::workdir::claim(&config.work_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot take a scratch directory in {}: {e}",
            config.work_dir.display()
        )
    })?;
    if swept.dirs > 0 {
        tracing::info!(
            dirs = swept.dirs,
            bytes = swept.bytes,
            "removed the scratch that stopped workers left behind"
        );
    }
    config.work_dir = own_dir.path.clone();
    let config = Arc::new(config);
    let client = Client::new(&config.feederd_url, config.worker_token.clone());
    let shared = Arc::new(Shared {
        config: config.clone(),
        client: client.clone(),
        sandbox: sandbox.clone(),
        tasks: Mutex::new(HashMap::new()),
        draining: AtomicBool::new(false),
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
        inputs: Arc::default(),
    });
    let (heartbeat_stop, heartbeat_rx) = watch::channel(false);
    let heartbeat = tokio::spawn(crate::heartbeat::run(shared.clone(), heartbeat_rx));
    tracing::info!(node_id = %config.node_id, feederd = %config.feederd_url, max_jobs = config.max_jobs, sandbox = %sandbox.describe(), "nommerd started");

    let mut slots = Slots {
        set: JoinSet::new(),
        by_id: HashMap::new(),
        reports: JoinSet::new(),
        shared: shared.clone(),
        pipeline: pipeline.clone(),
    };
    let mut failures = 0u32;
    let mut disk_full = false;
    while !*shutdown.borrow() {
        let free = config.max_jobs.saturating_sub(shared.running_count());
        // A full scratch disk would fail whatever is leased: lease nothing
        // until the space is back.
        let space = crate::space::free_bytes(&config.work_dir);
        let full = space.is_some_and(|b| b < config.min_free_scratch_bytes);
        if full != disk_full {
            disk_full = full;
            match full {
                true => tracing::warn!(
                    free_bytes = space,
                    min_free_scratch_bytes = config.min_free_scratch_bytes,
                    "scratch disk nearly full; leasing nothing until space is back"
                ),
                false => {
                    tracing::info!(free_bytes = space, "scratch disk has space again; leasing")
                }
            }
        }
        if full {
            tokio::select! {
                Some(ended) = slots.set.join_next_with_id() => slots.ended(ended),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            continue;
        }
        if free == 0 {
            tokio::select! {
                Some(ended) = slots.set.join_next_with_id() => slots.ended(ended),
                _ = shutdown.wait_for(|s| *s) => break,
            }
            continue;
        }
        let request = LeaseRequest {
            node: shared.node_report(),
            max: free,
            wait_ms: config.lease_wait.as_millis() as u64,
        };
        let asked_at = Instant::now();
        // Tasks that end while the request long-polls are taken off the set
        // meanwhile, so the request is not dropped half-way (feederd may have
        // leased tasks in it). Only shutdown drops it: a task it leased then
        // waits for its lease to expire.
        let lease = client.lease(&request);
        tokio::pin!(lease);
        let answer = loop {
            tokio::select! {
                answer = &mut lease => break Some(answer),
                Some(ended) = slots.set.join_next_with_id() => slots.ended(ended),
                _ = shutdown.wait_for(|s| *s) => break None,
            }
        };
        let Some(answer) = answer else { break };
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
                let wait = LEASE_BACKOFF.delay(failures);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot lease from feederd");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                continue;
            }
        };
        for grant in grants {
            slots.start(grant, asked_at);
        }
    }

    shared.draining.store(true, Ordering::Relaxed);
    let leaving = *leave_tx.borrow();
    if leaving == Some(Leaving::IdleTermination) {
        *shared.leaving_state.lock().unwrap() = Some(NodeState::Terminating);
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
    slots.drain().await;
    let _ = heartbeat_stop.send(true);
    let _ = heartbeat.await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let mut goodbye = shared.node_report();
    goodbye.state = match leaving {
        Some(Leaving::IdleTermination) => NodeState::Terminated,
        Some(Leaving::SpotInterruption) => NodeState::Interrupted,
        None => NodeState::Gone,
    };
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
    own_dir.remove();
    tracing::info!(node_id = %config.node_id, "nommerd stopped");
    Ok(())
}

/// The tasks running on this node, each in its slot of a `JoinSet`. A task
/// that panics frees its slot and ends in ERROR; draining waits on the set.
struct Slots {
    set: JoinSet<()>,
    /// Which task each entry of the set runs, for a panic's report.
    by_id: HashMap<Id, Arc<RunningTask>>,
    /// ERROR reports of tasks that panicked, sent beside the loop.
    reports: JoinSet<()>,
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
}

impl Slots {
    fn start(&mut self, grant: LeaseGrant, asked_at: Instant) {
        let task = Arc::new(RunningTask::new(&grant, asked_at));
        self.shared
            .tasks
            .lock()
            .unwrap()
            .insert(task.key(), task.clone());
        tracing::info!(job_id = %grant.job_id, task = grant.task, kind = %task.kind, attempt = grant.attempt, "task leased");
        let (pipeline, shared, running) =
            (self.pipeline.clone(), self.shared.clone(), task.clone());
        let handle = self.set.spawn(async move {
            pipeline.run(grant, running.clone()).await;
            shared.forget(&running);
        });
        self.by_id.insert(handle.id(), task);
    }

    /// One entry of the set ended: normally (it freed its slot itself), or
    /// by a panic, which is the task's ERROR.
    fn ended(&mut self, ended: Result<(Id, ()), JoinError>) {
        let id = match &ended {
            Ok((id, ())) => *id,
            Err(e) => e.id(),
        };
        // Panic reports sent since: off the set.
        while self.reports.try_join_next().is_some() {}
        let Some(task) = self.by_id.remove(&id) else {
            return;
        };
        let Err(e) = ended else {
            return;
        };
        self.shared.forget(&task);
        if !e.is_panic() {
            return;
        }
        let message = panic_message(e.into_panic());
        tracing::error!(job_id = %task.job_id, task = task.task, panic = %message, "task panicked");
        // Reported from its own task: the loop must not wait on feederd.
        let pipeline = self.pipeline.clone();
        self.reports.spawn(async move {
            let end = End::failed(
                FailureCode::ToolFailed,
                format!("worker panicked: {message}"),
            );
            pipeline.end(&task, end).await;
        });
    }

    /// Wait for every running task to end.
    async fn drain(&mut self) {
        while let Some(ended) = self.set.join_next_with_id().await {
            self.ended(ended);
        }
        while self.reports.join_next().await.is_some() {}
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        return text.to_string();
    }
    if let Some(text) = payload.downcast_ref::<String>() {
        return text.clone();
    }
    "a panic with no message".into()
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
