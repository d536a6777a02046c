//! A job is carried out by tasks, each leased on its own. The job's state and
//! progress are derived from its tasks' here, in the one place: the store
//! applies the result in the transaction that changed the task.

use crate::api::Progress;
use crate::kinds::TaskKind;
use crate::JobState;
use serde::{Deserialize, Serialize};

/// What one task of a job is to do, beyond its kind: stored with the task,
/// carried by its lease.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task writes its output at the job's destination with this appended
    /// (a job whose tasks each write their own file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_suffix: Option<String>,
    /// Test builds only: the worker panics with this message while running
    /// the task (how tests show a panic costs only its task).
    #[cfg(feature = "test-nommers")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_panic: Option<String>,
}

/// A task a nommer plans for a job at submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPlan {
    pub kind: TaskKind,
    pub spec: TaskSpec,
}

impl TaskPlan {
    pub fn of(kind: TaskKind) -> TaskPlan {
        TaskPlan {
            kind,
            spec: TaskSpec::default(),
        }
    }
}

/// How far along the way to FINISHED a running state is.
fn stage(state: JobState) -> u8 {
    match state {
        JobState::Pending | JobState::Canceled | JobState::Abandoned | JobState::Error => 0,
        JobState::Downloading => 1,
        JobState::Encoding => 2,
        // A finished task among running ones: the job is at its last stage.
        JobState::Uploading | JobState::Finished => 3,
    }
}

fn at_stage(stage: u8) -> JobState {
    match stage {
        0 => JobState::Pending,
        1 => JobState::Downloading,
        2 => JobState::Encoding,
        _ => JobState::Uploading,
    }
}

/// The job's state once its tasks are in `tasks`, from `current`:
/// - a job of one task shows its task, retries (back to PENDING) included;
/// - any task in ERROR (out of attempts, or failed for good) makes it ERROR,
///   and any task ABANDONED (no worker took it in time) makes it ABANDONED;
/// - all tasks FINISHED make it FINISHED; all ended, some CANCELED, CANCELED;
/// - otherwise it is at the furthest stage any task reached, and never goes
///   back: a retried task does not move it.
///
/// Each task moves one step at a time, so the job passes through PENDING,
/// DOWNLOADING, ENCODING, UPLOADING and FINISHED once each.
pub fn job_state(current: JobState, tasks: &[JobState]) -> JobState {
    if current.is_terminal() {
        return current;
    }
    if let [only] = tasks {
        return *only;
    }
    if tasks.contains(&JobState::Error) {
        return JobState::Error;
    }
    if tasks.contains(&JobState::Abandoned) {
        return JobState::Abandoned;
    }
    if !tasks.is_empty() && tasks.iter().all(|t| t.is_terminal()) {
        if tasks.iter().all(|t| *t == JobState::Finished) {
            return JobState::Finished;
        }
        return JobState::Canceled;
    }
    let furthest = tasks.iter().map(|t| stage(*t)).max().unwrap_or(0);
    at_stage(furthest.max(stage(current)))
}

/// The job's progress from its tasks': the mean of their percentages (a
/// finished task counts 100), their combined speed, and how many are done.
pub fn job_progress(state: JobState, tasks: &[(JobState, Option<&Progress>)]) -> Progress {
    let total = tasks.len().max(1) as f64;
    let done = tasks
        .iter()
        .filter(|(s, _)| *s == JobState::Finished)
        .count();
    let percent = tasks
        .iter()
        .map(|(s, p)| match (s, p) {
            (JobState::Finished, _) => 100.0,
            (_, Some(p)) => p.percent,
            (_, None) => 0.0,
        })
        .sum::<f64>()
        / total;
    let running = tasks.iter().filter(|(s, _)| s.is_leased());
    let speeds: Vec<f64> = running
        .filter_map(|(_, p)| p.and_then(|p| p.speed))
        .collect();
    Progress {
        phase: state.as_str().to_ascii_lowercase(),
        percent,
        fps: None,
        speed: (!speeds.is_empty()).then(|| speeds.iter().sum()),
        eta_seconds: None,
        tasks_done: Some(done as u32),
        tasks_total: Some(tasks.len() as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn a_job_of_one_task_shows_its_task() {
        for state in JobState::ALL {
            assert_eq!(job_state(Downloading, &[state]), state);
        }
        // The lost lease of its only task shows, as it always did.
        assert_eq!(job_state(Encoding, &[Pending]), Pending);
    }

    #[test]
    fn many_tasks_go_forward_each_state_once() {
        let mut job = Pending;
        let mut seen = vec![job];
        let steps: &[[JobState; 2]] = &[
            [Downloading, Pending],
            [Encoding, Pending],
            [Encoding, Downloading],
            [Uploading, Downloading],
            [Finished, Downloading],
            // The second task's lease was lost: the job does not go back.
            [Finished, Pending],
            [Finished, Downloading],
            [Finished, Encoding],
            [Finished, Uploading],
            [Finished, Finished],
        ];
        for tasks in steps {
            let next = job_state(job, tasks);
            if next != job {
                seen.push(next);
                job = next;
            }
        }
        assert_eq!(
            seen,
            vec![Pending, Downloading, Encoding, Uploading, Finished]
        );
    }

    #[test]
    fn one_failed_task_fails_the_job_and_cancels_end_it() {
        assert_eq!(job_state(Encoding, &[Error, Encoding]), Error);
        assert_eq!(job_state(Encoding, &[Canceled, Encoding]), Encoding);
        assert_eq!(job_state(Encoding, &[Canceled, Canceled]), Canceled);
        assert_eq!(job_state(Encoding, &[Finished, Canceled]), Canceled);
        assert_eq!(job_state(Pending, &[Abandoned, Abandoned]), Abandoned);
        assert_eq!(job_state(Pending, &[Abandoned, Pending]), Abandoned);
        assert_eq!(job_state(Finished, &[Pending, Pending]), Finished);
    }

    #[test]
    fn progress_is_the_mean_with_tasks_counted() {
        let half = Progress {
            percent: 50.0,
            speed: Some(2.0),
            ..Default::default()
        };
        let p = job_progress(Encoding, &[(Finished, None), (Encoding, Some(&half))]);
        assert_eq!(p.percent, 75.0);
        assert_eq!((p.tasks_done, p.tasks_total), (Some(1), Some(2)));
        assert_eq!(p.speed, Some(2.0));
        assert_eq!(p.phase, "encoding");
    }
}
