//! The background loops (reaper, notifier, autoscaler, retention) as one
//! small abstraction: each is a [`Worker`] with a name, run by [`run`] on
//! the leader. A pass that fails backs off (1 s, doubling to a minute)
//! instead of spinning; a pass still running when feederd stops has
//! [`SHUTDOWN_DEADLINE`] to end. Each loop's status (last run, last error,
//! next run) is kept in [`Loops`], for the dashboard and `/metrics`.

use crate::AppState;
use nommer_model::backoff::Backoff;
use nommer_model::{now_ms, rfc3339};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// How long a pass may go on once feederd begins to stop.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// After a failed pass.
const ERROR_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// What a pass found.
pub enum Next {
    /// More to do: run again at once.
    Busy,
    /// Nothing more for now: run again after this long, or sooner when
    /// [`Worker::wait_for_work`] resolves.
    Idle(Duration),
}

#[async_trait::async_trait]
pub trait Worker: Send + 'static {
    fn name(&self) -> &'static str;
    /// This replica has become the leader (again).
    fn led(&mut self) {}
    /// One pass of the loop's work.
    async fn work(&mut self, state: &AppState) -> anyhow::Result<Next>;
    /// While idle: resolves when there may be work before the idle time is
    /// up (a signal, a delivery finishing). The default waits the time out.
    async fn wait_for_work(&mut self, _state: &AppState) {
        std::future::pending::<()>().await
    }
}

/// Where a loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// This replica does not lead: the loop waits to.
    Standby,
    Running,
    Idle,
    /// The last pass failed; the next waits its backoff.
    BackingOff,
    Stopped,
}

/// One loop's status.
#[derive(Debug, Clone, Serialize)]
pub struct LoopStatus {
    pub name: &'static str,
    pub phase: Phase,
    pub runs: u64,
    pub errors: u64,
    /// Failed passes in a row.
    pub failing: u32,
    pub last_run_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub next_run_at: Option<String>,
    /// Seconds since the Unix epoch of the last pass that ended, for `/metrics`.
    #[serde(skip)]
    pub last_run_s: Option<f64>,
}

/// Every loop's status on this replica.
#[derive(Debug, Default)]
pub struct Loops(Mutex<BTreeMap<&'static str, LoopStatus>>);

impl Loops {
    pub fn snapshot(&self) -> Vec<LoopStatus> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn update(&self, name: &'static str, change: impl FnOnce(&mut LoopStatus)) {
        let mut loops = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let status = loops.entry(name).or_insert_with(|| LoopStatus {
            name,
            phase: Phase::Standby,
            runs: 0,
            errors: 0,
            failing: 0,
            last_run_at: None,
            last_error: None,
            last_error_at: None,
            next_run_at: None,
            last_run_s: None,
        });
        change(status);
    }
}

/// Resolves `SHUTDOWN_DEADLINE` after feederd begins to stop.
async fn deadline(mut shutdown: watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(SHUTDOWN_DEADLINE).await;
}

/// Run `worker` on the leader until feederd stops.
pub async fn run<W: Worker>(state: AppState, mut worker: W, mut shutdown: watch::Receiver<bool>) {
    let name = worker.name();
    let loops = state.loops.clone();
    let stop = |loops: &Loops| loops.update(name, |s| s.phase = Phase::Stopped);
    loops.update(name, |_| {});
    if state.leadership.is_leader() {
        worker.led();
    }
    loop {
        if !state.leadership.is_leader() {
            loops.update(name, |s| s.phase = Phase::Standby);
            if !state.lead(&mut shutdown).await {
                return stop(&loops);
            }
            worker.led();
        }
        loops.update(name, |s| s.phase = Phase::Running);
        let result = tokio::select! {
            result = worker.work(&state) => result,
            _ = deadline(shutdown.clone()) => {
                tracing::warn!(worker = name, deadline_s = SHUTDOWN_DEADLINE.as_secs(), "loop stopped at its shutdown deadline");
                return stop(&loops);
            }
        };
        if *shutdown.borrow() {
            return stop(&loops);
        }
        let now = now_ms();
        let (wait, idle) = match result {
            Ok(next) => {
                loops.update(name, |s| {
                    s.runs += 1;
                    s.failing = 0;
                    s.last_run_at = Some(rfc3339(now));
                    s.last_run_s = Some(now as f64 / 1000.0);
                });
                match next {
                    Next::Busy => continue,
                    Next::Idle(wait) => (wait, true),
                }
            }
            Err(e) => {
                let mut wait = Duration::ZERO;
                loops.update(name, |s| {
                    s.runs += 1;
                    s.errors += 1;
                    s.failing += 1;
                    s.last_run_at = Some(rfc3339(now));
                    s.last_run_s = Some(now as f64 / 1000.0);
                    s.last_error = Some(format!("{e:#}"));
                    s.last_error_at = Some(rfc3339(now));
                    wait = ERROR_BACKOFF.delay(s.failing);
                });
                tracing::error!(worker = name, error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "background loop failed; backing off");
                (wait, false)
            }
        };
        let next = now + wait.as_millis() as i64;
        loops.update(name, |s| {
            s.phase = if idle { Phase::Idle } else { Phase::BackingOff };
            s.next_run_at = Some(rfc3339(next));
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = worker.wait_for_work(&state), if idle => {}
            _ = shutdown.wait_for(|stop| *stop) => return stop(&loops),
        }
    }
}
