//! A job is carried out by tasks, each leased on its own. The job's state and
//! progress are derived from its tasks' here, in the one place: the store
//! applies the result in the transaction that changed the task.

use crate::api::Progress;
use crate::chunked::{AssembleSpec, ChunkRequest, ChunkSpec};
use crate::kinds::{TaskKind, Waits};
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
    /// A plan task: how to split the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunking: Option<ChunkRequest>,
    /// A chunk task: its frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkSpec>,
    /// An assemble task: what it joins and checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assemble: Option<AssembleSpec>,
    /// Test builds only: the worker panics with this message while running
    /// the task (how tests show a panic costs only its task).
    #[cfg(feature = "test-nommers")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_panic: Option<String>,
}

/// A task a nommer plans for a job at submit, or a plan task adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPlan {
    pub kind: TaskKind,
    pub spec: TaskSpec,
    /// The task is made waiting (not claimable) until what its kind waits
    /// for has happened; the store reads this rather than the kind.
    #[serde(default)]
    pub waits: bool,
}

impl TaskPlan {
    pub fn new(kind: TaskKind, spec: TaskSpec) -> TaskPlan {
        TaskPlan {
            kind,
            spec,
            waits: kind.waits() != Waits::Nothing,
        }
    }

    pub fn of(kind: TaskKind) -> TaskPlan {
        TaskPlan::new(kind, TaskSpec::default())
    }
}

/// What a finished plan may add to its job: its chunks (at most
/// [`crate::chunked::MAX_CHUNKS`]), at most one audio task and one
/// assemble; or, for a job that runs unchunked after all, one plain ffmpeg
/// task. Why not, otherwise.
pub fn check_added(adds: &[TaskPlan]) -> Result<(), String> {
    let count = |kind: TaskKind| adds.iter().filter(|t| t.kind == kind).count();
    if let [only] = adds {
        if only.kind == TaskKind::Ffmpeg && only.spec == TaskSpec::default() {
            return Ok(());
        }
    }
    let chunks = count(TaskKind::Chunk);
    let known = chunks + count(TaskKind::Audio) + count(TaskKind::Assemble);
    let fits = (1..=crate::chunked::MAX_CHUNKS as usize).contains(&chunks)
        && count(TaskKind::Audio) <= 1
        && count(TaskKind::Assemble) == 1
        && known == adds.len();
    match fits {
        true => Ok(()),
        false => Err(format!(
            "a plan adds its chunks, at most one audio and one assemble task, or one plain ffmpeg task; not {} tasks of kinds {:?}",
            adds.len(),
            adds.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>()
        )),
    }
}

/// How far along the way to FINISHED a task's state puts its job: never
/// past the task's own state, nor past its kind's part of the job. A plan
/// is the job's download, chunks and audio its encoding, and the assemble
/// its upload, whatever further states each passes through.
fn task_stage(kind: TaskKind, state: JobState) -> u8 {
    let own = stage(state);
    match kind {
        TaskKind::Plan => own.min(1),
        TaskKind::Chunk | TaskKind::Audio => own.min(2),
        _ => own,
    }
}

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

/// The job's state once its tasks are in `tasks`, from `current`. Tasks
/// that do not count for the job (a cleanup) are passed over; then:
/// - a job of one task shows its task, retries (back to PENDING) included;
/// - any task in ERROR (out of attempts, or failed for good) makes it ERROR,
///   and any task ABANDONED (no worker took it in time) makes it ABANDONED;
/// - all tasks FINISHED make it FINISHED; all ended, some CANCELED, CANCELED;
/// - otherwise it is at the furthest stage any task reached, and never goes
///   back: a retried task does not move it.
///
/// Each task moves one step at a time, so the job passes through PENDING,
/// DOWNLOADING, ENCODING, UPLOADING and FINISHED once each.
pub fn job_state(current: JobState, all: &[(TaskKind, JobState)]) -> JobState {
    if current.is_terminal() {
        return current;
    }
    let counted: Vec<(TaskKind, JobState)> = all
        .iter()
        .copied()
        .filter(|(kind, _)| kind.counts_for_job())
        .collect();
    if let [(kind, only)] = counted[..] {
        // At the stage its kind puts it: a plan alone is the job's download.
        return match only.is_leased() {
            true => at_stage(task_stage(kind, only)),
            false => only,
        };
    }
    let tasks: Vec<JobState> = counted.iter().map(|(_, s)| *s).collect();
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
    let furthest = counted
        .iter()
        .map(|(kind, state)| task_stage(*kind, *state))
        .max()
        .unwrap_or(0);
    at_stage(furthest.max(stage(current)))
}

/// The tasks waiting in a job (assemble, cleanup) that may now be claimed,
/// once its state is `job` and its tasks' are `tasks`: an assemble once
/// every task that waits for nothing has finished, a cleanup once the job
/// has ended and none of its tasks still runs.
pub fn released(job: JobState, tasks: &[(TaskKind, JobState)]) -> Vec<TaskKind> {
    let siblings_done = tasks
        .iter()
        .filter(|(kind, _)| kind.waits() == Waits::Nothing)
        .all(|(_, state)| *state == JobState::Finished);
    // Not while a task of the job still runs: a chunk told to stop may yet
    // upload its intermediate.
    let stopped = !tasks
        .iter()
        .any(|(kind, state)| kind.counts_for_job() && state.is_leased());
    let mut kinds = Vec::new();
    if siblings_done && !job.is_terminal() {
        kinds.push(TaskKind::Assemble);
    }
    if job.is_terminal() && stopped {
        kinds.push(TaskKind::Cleanup);
    }
    kinds
}

/// The job's progress from its tasks': the mean of their percentages (a
/// finished task counts 100), their combined speed, and how many are done.
pub fn job_progress(state: JobState, all: &[(TaskKind, JobState, Option<&Progress>)]) -> Progress {
    let tasks: Vec<(JobState, Option<&Progress>)> = all
        .iter()
        .filter(|(kind, _, _)| kind.counts_for_job())
        .map(|(_, s, p)| (*s, *p))
        .collect();
    let chunks: Vec<JobState> = all
        .iter()
        .filter(|(kind, _, _)| *kind == TaskKind::Chunk)
        .map(|(_, s, _)| *s)
        .collect();
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
    let running: Vec<_> = running.collect();
    let speeds: Vec<f64> = running
        .iter()
        .filter_map(|(_, p)| p.and_then(|p| p.speed))
        .collect();
    // The tasks still to do, at the pace of those running now.
    let left = tasks.iter().filter(|(s, _)| !s.is_terminal()).count();
    let eta = running
        .iter()
        .filter_map(|(_, p)| p.and_then(|p| p.eta_seconds))
        .fold(None, |most: Option<f64>, e| {
            Some(most.map_or(e, |m| m.max(e)))
        })
        .map(|longest| longest * (left as f64 / running.len().max(1) as f64).max(1.0));
    Progress {
        phase: state.as_str().to_ascii_lowercase(),
        percent,
        fps: None,
        speed: (!speeds.is_empty()).then(|| speeds.iter().sum()),
        eta_seconds: eta,
        tasks_done: Some(done as u32),
        tasks_total: Some(tasks.len() as u32),
        chunks_done: (!chunks.is_empty())
            .then(|| chunks.iter().filter(|s| **s == JobState::Finished).count() as u32),
        chunks_total: (!chunks.is_empty()).then_some(chunks.len() as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    /// A job of ffmpeg tasks in these states.
    fn ff(states: &[JobState]) -> Vec<(TaskKind, JobState)> {
        states.iter().map(|s| (TaskKind::Ffmpeg, *s)).collect()
    }

    #[test]
    fn a_job_of_one_task_shows_its_task() {
        for state in JobState::ALL {
            assert_eq!(job_state(Downloading, &ff(&[state])), state);
        }
        // The lost lease of its only task shows, as it always did.
        assert_eq!(job_state(Encoding, &ff(&[Pending])), Pending);
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
            let next = job_state(job, &ff(tasks));
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
        assert_eq!(job_state(Encoding, &ff(&[Error, Encoding])), Error);
        assert_eq!(job_state(Encoding, &ff(&[Canceled, Encoding])), Encoding);
        assert_eq!(job_state(Encoding, &ff(&[Canceled, Canceled])), Canceled);
        assert_eq!(job_state(Encoding, &ff(&[Finished, Canceled])), Canceled);
        assert_eq!(job_state(Pending, &ff(&[Abandoned, Abandoned])), Abandoned);
        assert_eq!(job_state(Pending, &ff(&[Abandoned, Pending])), Abandoned);
        assert_eq!(job_state(Finished, &ff(&[Pending, Pending])), Finished);
    }

    #[test]
    fn progress_is_the_mean_with_tasks_counted() {
        let half = Progress {
            percent: 50.0,
            speed: Some(2.0),
            ..Default::default()
        };
        let ffmpeg = TaskKind::Ffmpeg;
        let p = job_progress(
            Encoding,
            &[(ffmpeg, Finished, None), (ffmpeg, Encoding, Some(&half))],
        );
        assert_eq!(p.percent, 75.0);
        assert_eq!((p.tasks_done, p.tasks_total), (Some(1), Some(2)));
        assert_eq!(p.speed, Some(2.0));
        assert_eq!(p.phase, "encoding");
        assert_eq!(p.chunks_total, None);
    }

    #[test]
    fn a_chunked_job_goes_plan_encode_assemble_and_its_cleanup_does_not_count() {
        use TaskKind::*;
        let plan_only = [(Plan, Uploading), (Cleanup, Pending)];
        assert_eq!(job_state(Downloading, &plan_only), Downloading);
        let mut tasks = vec![
            (Plan, Finished),
            (Chunk, Pending),
            (Chunk, Pending),
            (Audio, Pending),
            (Assemble, Pending),
            (Cleanup, Pending),
        ];
        assert_eq!(job_state(Downloading, &tasks), Downloading);
        assert!(released(Downloading, &tasks).is_empty());
        tasks[1].1 = Downloading;
        assert_eq!(job_state(Downloading, &tasks), Downloading);
        tasks[1].1 = Encoding;
        assert_eq!(job_state(Downloading, &tasks), Encoding);
        tasks[1].1 = Finished;
        tasks[2].1 = Finished;
        tasks[3].1 = Finished;
        assert_eq!(job_state(Encoding, &tasks), Encoding);
        assert_eq!(released(Encoding, &tasks), vec![Assemble]);
        tasks[4].1 = Uploading;
        assert_eq!(job_state(Encoding, &tasks), Uploading);
        tasks[4].1 = Finished;
        assert_eq!(job_state(Uploading, &tasks), Finished);
        assert_eq!(released(Finished, &tasks), vec![Cleanup]);
        // A failed chunk fails the job and releases only the cleanup.
        let failed = [
            (Plan, Finished),
            (Chunk, Error),
            (Chunk, Encoding),
            (Assemble, Pending),
            (Cleanup, Pending),
        ];
        assert_eq!(job_state(Encoding, &failed), Error);
        assert!(released(Error, &failed).is_empty(), "a chunk still runs");
        let stopped = [
            (Plan, Finished),
            (Chunk, Error),
            (Chunk, Canceled),
            (Assemble, Canceled),
            (Cleanup, Pending),
        ];
        assert_eq!(released(Error, &stopped), vec![Cleanup]);
        let half = Progress {
            percent: 50.0,
            ..Default::default()
        };
        let p = job_progress(
            Encoding,
            &[
                (Plan, Finished, None),
                (Chunk, Finished, None),
                (Chunk, Encoding, Some(&half)),
                (Cleanup, Pending, None),
            ],
        );
        assert_eq!((p.chunks_done, p.chunks_total), (Some(1), Some(2)));
        assert_eq!(p.tasks_total, Some(3));
    }
}
