//! How long work spends in each phase: the wait for a worker, the download,
//! the encode and the upload; and the encode speed (media seconds per encode
//! second). The dashboard's summary reads finished jobs' phases from their
//! events in the store ([`of`], whichever replica answers). `/metrics`
//! counts them as they happen, with no reads ([`Tracker`]): the replica
//! that leases a task notes the time, each report of its states adds one,
//! and its FINISHED report gives the phases; a task whose reports went to
//! several replicas is not counted.

use nommer_model::JobState;
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    pub queue_wait_s: Option<f64>,
    pub download_s: Option<f64>,
    pub encode_s: Option<f64>,
    pub upload_s: Option<f64>,
    /// × real time: the media's length over the encode's wall time.
    pub encode_speed: Option<f64>,
}

/// The job's phases from its events (state, at ms) in order, and its
/// tasks' results (for the media's length). A retried job counts its last
/// attempt; its wait is from submit to the first lease.
pub fn of(events: &[(JobState, i64)], results: &[Value]) -> Phases {
    let first = |state: JobState| events.iter().find(|(s, _)| *s == state).map(|(_, at)| *at);
    let last_download = events
        .iter()
        .rposition(|(s, _)| *s == JobState::Downloading);
    let after = |from: Option<usize>, state: JobState| {
        let from = from?;
        events[from..]
            .iter()
            .position(|(s, _)| *s == state)
            .map(|i| (from + i, events[from + i].1))
    };
    let secs = |a: Option<i64>, b: Option<i64>| Some((b? - a?).max(0) as f64 / 1000.0);
    let download_at = last_download.map(|i| events[i].1);
    let encoding = after(last_download, JobState::Encoding);
    let uploading = after(encoding.map(|(i, _)| i), JobState::Uploading);
    let finished = after(uploading.map(|(i, _)| i), JobState::Finished);
    let encode_s = secs(encoding.map(|e| e.1), uploading.map(|u| u.1));
    let media_s = results
        .iter()
        .filter_map(|r| r.get("outputs")?.as_array().cloned())
        .flatten()
        .filter_map(|o| o.get("duration_s")?.as_f64())
        .fold(None, |most: Option<f64>, d| {
            Some(most.map_or(d, |m| m.max(d)))
        });
    Phases {
        queue_wait_s: secs(first(JobState::Pending), first(JobState::Downloading)),
        download_s: secs(download_at, encoding.map(|e| e.1)),
        encode_s,
        upload_s: secs(uploading.map(|u| u.1), finished.map(|f| f.1)),
        encode_speed: match (media_s, encode_s) {
            (Some(media), Some(encode)) if encode > 0.0 => Some(media / encode),
            _ => None,
        },
    }
}

/// When this replica saw a running task enter each state.
#[derive(Debug, Clone, Copy, Default)]
struct Marks {
    downloading: i64,
    encoding: Option<i64>,
    uploading: Option<i64>,
}

/// The tasks running now whose lease this replica granted.
#[derive(Debug, Default)]
pub struct Tracker(std::sync::Mutex<std::collections::HashMap<(String, u32), Marks>>);

/// More running tasks than this and the marks start again (a replica that
/// granted leases whose reports all went elsewhere).
const MAX_TRACKED: usize = 100_000;

impl Tracker {
    /// A lease granted at `now` (ms); the first lease of a job's first task
    /// ends its wait for a worker, which is given back.
    pub fn leased(&self, job_id: &str, task: u32, attempt: u32, now: i64) -> Option<f64> {
        let mut tasks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.len() >= MAX_TRACKED {
            tasks.clear();
        }
        tasks.insert(
            (job_id.to_string(), task),
            Marks {
                downloading: now,
                ..Default::default()
            },
        );
        let created = nommer_model::JobId::created_ms(job_id)?;
        (task == 0 && attempt == 1).then(|| (now - created).max(0) as f64 / 1000.0)
    }

    /// A state change reported at `now`; the phases once the task finished.
    pub fn reported(
        &self,
        job_id: &str,
        task: u32,
        state: JobState,
        result: Option<&Value>,
        now: i64,
    ) -> Option<Phases> {
        let mut tasks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (job_id.to_string(), task);
        if state.is_terminal() {
            let marks = tasks.remove(&key)?;
            if state != JobState::Finished {
                return None;
            }
            let events = [
                Some((JobState::Downloading, marks.downloading)),
                marks.encoding.map(|at| (JobState::Encoding, at)),
                marks.uploading.map(|at| (JobState::Uploading, at)),
                Some((JobState::Finished, now)),
            ];
            let events: Vec<_> = events.into_iter().flatten().collect();
            let mut phases = of(
                &events,
                result.into_iter().cloned().collect::<Vec<_>>().as_slice(),
            );
            phases.queue_wait_s = None;
            return Some(phases);
        }
        let marks = tasks.get_mut(&key)?;
        match state {
            JobState::Encoding => marks.encoding = Some(now),
            JobState::Uploading => marks.uploading = Some(now),
            _ => {}
        }
        None
    }
}

/// The median of what is there.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Some(values[values.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn phases_come_from_the_last_attempt() {
        let events = [
            (Pending, 0),
            (Downloading, 2_000),
            (Pending, 3_000),
            (Downloading, 10_000),
            (Encoding, 11_000),
            (Uploading, 15_000),
            (Finished, 15_500),
        ];
        let results = [serde_json::json!({"outputs": [{"duration_s": 8.0}]})];
        let p = of(&events, &results);
        assert_eq!(p.queue_wait_s, Some(2.0));
        assert_eq!(p.download_s, Some(1.0));
        assert_eq!(p.encode_s, Some(4.0));
        assert_eq!(p.upload_s, Some(0.5));
        assert_eq!(p.encode_speed, Some(2.0));
        assert_eq!(of(&events[..2], &[]).encode_s, None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn a_tracked_task_gives_its_phases_when_it_finishes() {
        let tracker = Tracker::default();
        let id = nommer_model::JobId::generate(1_000).0;
        assert_eq!(tracker.leased(&id, 0, 1, 3_000), Some(2.0));
        assert_eq!(tracker.reported(&id, 0, Encoding, None, 4_000), None);
        assert_eq!(tracker.reported(&id, 0, Uploading, None, 8_000), None);
        let result = serde_json::json!({"outputs": [{"duration_s": 12.0}]});
        let p = tracker
            .reported(&id, 0, Finished, Some(&result), 9_000)
            .unwrap();
        assert_eq!(
            (p.download_s, p.encode_s, p.upload_s),
            (Some(1.0), Some(4.0), Some(1.0))
        );
        assert_eq!(p.encode_speed, Some(3.0));
        assert_eq!(
            tracker.reported(&id, 0, Finished, None, 9_500),
            None,
            "once"
        );
        assert_eq!(
            tracker.leased(&id, 1, 1, 3_000),
            None,
            "a later task waited on its job, not the queue"
        );
    }
}
