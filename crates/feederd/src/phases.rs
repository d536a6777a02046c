//! How long a finished job spent in each phase, read from its events: the
//! wait for a worker, the download, the encode and the upload; and its
//! encode speed (media seconds per encode second). For `/metrics` (each
//! job observed once, by the replica that took its last report) and the
//! dashboard's summary (from the store, whichever replica answers).

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
}
