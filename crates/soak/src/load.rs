//! The load: a steady, seeded mix of copy jobs, tiny encodes, two-pass
//! encodes and chunked encodes, each with a `notify_url`, submitted through
//! the balancer while the backlog stays bounded.

use crate::cluster::{BUCKET_IN, BUCKET_OUT};
use crate::rng::Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobKind {
    Copy,
    Tiny,
    TwoPass,
    Chunked,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [
        JobKind::Copy,
        JobKind::Tiny,
        JobKind::TwoPass,
        JobKind::Chunked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JobKind::Copy => "copy",
            JobKind::Tiny => "tiny encode",
            JobKind::TwoPass => "two-pass encode",
            JobKind::Chunked => "chunked encode",
        }
    }

    /// Out of 100 submits.
    fn weight(self) -> usize {
        match self {
            JobKind::Copy => 50,
            JobKind::Tiny => 25,
            JobKind::TwoPass => 15,
            JobKind::Chunked => 10,
        }
    }

    /// The source object in [`BUCKET_IN`].
    pub fn source(self) -> &'static str {
        match self {
            JobKind::Chunked => "long.mp4",
            _ => "short.mp4",
        }
    }
}

/// The sources, written straight into the S3 server's directory.
pub fn make_sources(s3_root: &Path) -> anyhow::Result<()> {
    let dir = s3_root.join(BUCKET_IN);
    nommer_testkit::media::Clip {
        seconds: 2,
        size: "160x120",
        rate: 25,
        gop: 25,
        preset: "ultrafast",
        crf: 30,
    }
    .make(&dir.join("short.mp4"))?;
    nommer_testkit::media::Clip {
        seconds: 8,
        size: "192x144",
        rate: 25,
        gop: 50,
        preset: "ultrafast",
        crf: 30,
    }
    .make(&dir.join("long.mp4"))?;
    Ok(())
}

fn body(kind: JobKind, n: u64, notify_url: &str) -> Value {
    let source = format!("s3://{BUCKET_IN}/{}", kind.source());
    let dest = format!("s3://{BUCKET_OUT}/{}", dest_key(kind, n));
    let video = json!([
        ["c:v", "libx264"],
        ["preset", "ultrafast"],
        ["threads", "1"]
    ]);
    let with = |extra: Value| {
        let mut all = video.as_array().unwrap().clone();
        all.extend(extra.as_array().unwrap().iter().cloned());
        Value::Array(all)
    };
    let (nommer, options) = match kind {
        JobKind::Copy => ("copy", json!([{}])),
        JobKind::Tiny | JobKind::Chunked => (
            "ffmpeg",
            json!([{"outfile_options": with(json!([["c:a", "aac"], ["b:a", "64k"]]))}]),
        ),
        JobKind::TwoPass => (
            "ffmpeg",
            json!([
                {"outfile_options": with(json!([["b:v", "100k"], ["pass", "1"], ["an", null], ["f", "mp4"]]))},
                {"outfile_options": with(json!([["b:v", "100k"], ["pass", "2"], ["c:a", "aac"], ["b:a", "64k"]]))}
            ]),
        ),
    };
    let mut job = json!({"source_path": source, "dest_path": dest, "notify_url": notify_url,
                         "job_options": {"nommer": nommer, "options": options}});
    if kind == JobKind::Chunked {
        job["chunked"] = json!({"chunk_seconds": 2});
    }
    job
}

pub fn dest_key(kind: JobKind, n: u64) -> String {
    let folder = match kind {
        JobKind::Copy => "copy",
        JobKind::Tiny => "tiny",
        JobKind::TwoPass => "two-pass",
        JobKind::Chunked => "chunked",
    };
    format!("{folder}/{n}.mp4")
}

/// A job the API accepted.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: String,
    pub kind: JobKind,
    pub dest: PathBuf,
}

#[derive(Debug, Default)]
pub struct Load {
    pub submitted: Vec<Submitted>,
    /// Submits that got no job, by why (the balancer found no replica, a
    /// 503 while the database was down, a timeout).
    pub refused: BTreeMap<String, u64>,
}

/// Where and how fast to submit.
pub struct Plan {
    /// The balancer's URL.
    pub front: String,
    pub notify_url: String,
    pub store_url: String,
    pub s3_root: PathBuf,
    pub every: Duration,
    /// Most jobs unfinished before a turn is skipped.
    pub backlog: i64,
    pub end: Instant,
}

/// Submit one job every `every` until `end`, skipping a turn while more than
/// `backlog` are unfinished (by the store's count, when it answers).
pub async fn run(plan: Plan, mut rng: Rng) -> Load {
    let Plan {
        front,
        notify_url,
        store_url,
        s3_root,
        every,
        backlog,
        end,
    } = plan;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let mut load = Load::default();
    let mut unfinished = 0i64;
    let mut n = 0u64;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end {
        tick.tick().await;
        if let Some(count) = crate::report::unfinished(&store_url).await {
            unfinished = count;
        }
        if unfinished > backlog {
            continue;
        }
        let mut pick = rng.below(100);
        let kind = JobKind::ALL
            .into_iter()
            .find(|k| {
                let hit = pick < k.weight();
                pick = pick.saturating_sub(k.weight());
                hit
            })
            .unwrap_or(JobKind::Copy);
        n += 1;
        let sent = http
            .post(format!("{front}/v1/jobs"))
            .json(&body(kind, n, &notify_url))
            .send()
            .await;
        let refusal = match sent {
            Ok(response) if response.status().as_u16() == 201 => {
                match response.json::<Value>().await {
                    Ok(job) => {
                        load.submitted.push(Submitted {
                            id: job["id"].as_str().unwrap_or_default().to_string(),
                            kind,
                            dest: s3_root.join(BUCKET_OUT).join(dest_key(kind, n)),
                        });
                        unfinished += 1;
                        continue;
                    }
                    Err(_) => "answer cut short".to_string(),
                }
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let code = response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["error_code"].as_str().map(str::to_string))
                    .unwrap_or_default();
                format!("{status} {code}")
            }
            Err(e) if e.is_timeout() => "timed out".to_string(),
            Err(_) => "no connection".to_string(),
        };
        *load.refused.entry(refusal).or_default() += 1;
    }
    load
}
