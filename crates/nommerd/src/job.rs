//! One running job as the worker tracks it: its lease, its progress, and why
//! it must stop, if it must.

use nommer_model::api::Progress;
use std::sync::Mutex;
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
    progress: Mutex<Option<Progress>>,
    stop: watch::Sender<Option<Stop>>,
}

impl RunningJob {
    pub fn new(job_id: String, token: String) -> RunningJob {
        RunningJob {
            job_id,
            token,
            progress: Mutex::new(None),
            stop: watch::channel(None).0,
        }
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
