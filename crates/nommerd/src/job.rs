//! One running job as the worker tracks it: its lease, its progress, and why
//! it must stop, if it must.

use nommer_model::api::Progress;
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

pub struct RunningJob {
    pub job_id: String,
    pub token: String,
    /// The lease's time to live: every accepted report or heartbeat renews it.
    pub ttl: Duration,
    /// Until when the lease surely holds, by this worker's clock: the send
    /// time of the last write feederd accepted, plus the TTL.
    held_until: Mutex<Instant>,
    progress: Mutex<Option<Progress>>,
    stop: watch::Sender<Option<Stop>>,
}

impl RunningJob {
    /// `asked_at`: when the lease request that granted it was sent.
    pub fn new(job_id: String, token: String, ttl: Duration, asked_at: Instant) -> RunningJob {
        RunningJob {
            job_id,
            token,
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

    /// Ask the job to stop; the first reason wins.
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
