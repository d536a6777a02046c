//! One running task as the worker tracks it: its lease, its progress, and
//! why it must stop, if it must. Keyed by job and task, so two tasks of one
//! job can run on one node.

use nommer_model::api::Progress;
use nommer_model::TaskKind;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The user canceled the job: end it CANCELED.
    Canceled,
    /// The lease is gone: another worker may hold the job; write nothing.
    LeaseLost,
    /// The worker is shutting down: hand the lease back.
    Handback,
}

/// Which task: its job and its number.
pub type TaskKey = (String, u32);

pub struct RunningTask {
    pub job_id: String,
    pub task: u32,
    pub kind: TaskKind,
    pub token: String,
    /// The lease's time to live: every accepted report or heartbeat renews it.
    pub ttl: Duration,
    /// Until when the lease surely holds, by this worker's clock: the send
    /// time of the last write feederd accepted, plus the TTL.
    held_until: Mutex<Instant>,
    progress: Mutex<Option<Progress>>,
    stop: watch::Sender<Option<Stop>>,
}

impl RunningTask {
    /// `asked_at`: when the lease request that granted it was sent.
    pub fn new(grant: &nommer_model::api::LeaseGrant, asked_at: Instant) -> RunningTask {
        let ttl = Duration::from_millis(grant.ttl_ms);
        RunningTask {
            job_id: grant.job_id.clone(),
            task: grant.task,
            kind: grant.task_kind(),
            token: grant.token.clone(),
            ttl,
            held_until: Mutex::new(asked_at + ttl),
            progress: Mutex::new(None),
            stop: watch::channel(None).0,
        }
    }

    /// Feederd accepted a write for this lease that was sent at `sent_at`.
    pub fn renewed(&self, sent_at: Instant) {
        let mut held = self.held_until.lock().unwrap();
        *held = (*held).max(sent_at + self.ttl);
    }

    /// How long the lease is sure to hold yet.
    pub fn lease_left(&self) -> Duration {
        self.held_until
            .lock()
            .unwrap()
            .saturating_duration_since(Instant::now())
    }

    pub fn set_progress(&self, progress: Progress) {
        *self.progress.lock().unwrap() = Some(progress);
    }

    pub fn progress(&self) -> Option<Progress> {
        self.progress.lock().unwrap().clone()
    }

    pub fn key(&self) -> TaskKey {
        (self.job_id.clone(), self.task)
    }

    /// Ask the task to stop; the first reason wins.
    pub fn stop(&self, reason: Stop) {
        self.stop.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
    }

    pub fn stopped(&self) -> Option<Stop> {
        *self.stop.borrow()
    }

    pub fn watch_stop(&self) -> watch::Receiver<Option<Stop>> {
        self.stop.subscribe()
    }
}
