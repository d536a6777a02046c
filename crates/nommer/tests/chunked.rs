//! Chunked encoding through the real binary and real ffmpeg: a job split
//! across two workers gives the frames, timestamps and audio of the same job
//! unchunked; each chunkable encoder joins exactly; what cannot be chunked
//! is refused at submit or runs unchunked with a warning; a broken chunk is
//! caught before anything is published; a cancel stops every task and
//! leaves no intermediates; a killed worker costs only its chunk; a feederd
//! restart resumes from the tasks done.

mod common;

use common::*;
use nommer_testkit::media::{video_bytes, video_pts};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(240);

/// A constant-frame-rate source with a keyframe every `gop` frames and a tone.
fn source(name: &str, seconds: u32, rate: u32, size: &str, gop: u32) -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(name);
    if path.exists() {
        return path;
    }
    let clip = nommer_testkit::media::Clip {
        seconds,
        size,
        rate,
        gop,
        preset: "ultrafast",
        crf: 23,
    };
    clip.make(&path).unwrap();
    path
}

fn ffprobe(args: &[&str], path: &Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Each stream's kind, start and end time in seconds.
fn streams(path: &Path) -> Vec<(String, f64, f64)> {
    let json: Value =
        serde_json::from_str(&ffprobe(&["-show_streams", "-of", "json"], path)).unwrap();
    json["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let start: f64 = s["start_time"].as_str().unwrap().parse().unwrap();
            let duration: f64 = s["duration"].as_str().unwrap().parse().unwrap();
            (
                s["codec_type"].as_str().unwrap().to_string(),
                start,
                start + duration,
            )
        })
        .collect()
}

fn job(source: &Path, dest: &Path, options: Value, chunked: Option<Value>) -> Value {
    let mut job = ffmpeg_job(source, dest, options);
    if let Some(chunked) = chunked {
        job["chunked"] = chunked;
    }
    job
}

async fn tasks(api: &Api, id: &str) -> Vec<Value> {
    api.get(&format!("/v1/jobs/{id}/tasks")).await["tasks"]
        .as_array()
        .unwrap()
        .clone()
}

fn kinds(tasks: &[Value]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| t["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Until the job's cleanup task has ended; its state.
async fn cleanup_done(api: &Api, id: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let listed = tasks(api, id).await;
        let cleanup = listed
            .iter()
            .find(|t| t["kind"] == "cleanup")
            .expect("a cleanup task");
        let state = cleanup["state"].as_str().unwrap().to_string();
        if ["FINISHED", "ERROR", "CANCELED", "ABANDONED"].contains(&state.as_str()) {
            return state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cleanup never ended: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn work_dir_of(dest: &Path, id: &str) -> PathBuf {
    dest.parent().unwrap().join(format!(".nommer-{id}"))
}

const X264: fn() -> Value = || json!([{"outfile_options": [["c:v", "libx264"], ["preset", "veryfast"], ["crf", 23], ["vf", "scale=160:-2"], ["c:a", "aac"], ["b:a", "96k"]]}]);

#[tokio::test]
async fn a_chunked_job_on_two_workers_matches_the_same_job_unchunked() {
    let feederd = Feederd::start("");
    let a = feederd.worker(1, "");
    let b = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    // 12 s at 25 fps in 3 s chunks, keyframes every 2 s: four chunks, cut
    // off the source's keyframes.
    let src = source("two-workers.mp4", 12, 25, "320x240", 50);
    let out = feederd.dir.path();
    let (chunked_out, whole_out) = (out.join("chunked.mp4"), out.join("whole.mp4"));
    let chunked = api
        .submit_id(&job(
            &src,
            &chunked_out,
            X264(),
            Some(json!({"chunk_seconds": 3})),
        ))
        .await;
    let done = api.wait_for(&chunked, &["FINISHED", "ERROR"], WAIT).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    // The unchunked job goes after, so it keeps neither worker from the chunks.
    let whole = api.submit_id(&job(&src, &whole_out, X264(), None)).await;
    let done = api.wait_for(&whole, &["FINISHED", "ERROR"], WAIT).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    let done = api.job(&chunked).await;
    assert_eq!(done["progress"]["chunks_done"], 4, "{done}");
    assert_eq!(done["progress"]["chunks_total"], 4, "{done}");
    let listed = tasks(&api, &chunked).await;
    let mut names = kinds(&listed);
    names.sort();
    assert_eq!(
        names,
        ["assemble", "audio", "chunk", "chunk", "chunk", "chunk", "cleanup", "plan"],
        "{listed:?}"
    );
    let plan = listed.iter().find(|t| t["kind"] == "plan").unwrap();
    assert_eq!(plan["result"]["frames"], 300, "{plan}");
    let nodes = nodes_of(&api, &chunked, "chunk").await;
    assert_eq!(nodes.len(), 2, "the chunks ran on both workers: {listed:?}");
    // Each worker fetched the source once for all its tasks of the job.
    for worker in [&a, &b] {
        let log = worker.log();
        let fetches = log
            .lines()
            .filter(|l| l.contains("downloading the job's source") && l.contains(&chunked))
            .count();
        assert_eq!(fetches, 1, "{log}");
    }

    // The same frames, one frame apart each, as the encode of the whole.
    let (pts, base) = video_pts(&chunked_out);
    let (whole_pts, whole_base) = video_pts(&whole_out);
    assert_eq!(pts.len(), 300);
    assert_eq!(pts.len(), whole_pts.len());
    let tick = 1.0 / 25.0 / base;
    assert!(
        pts.windows(2).all(|w| (w[1] - w[0]) as f64 == tick),
        "uneven steps in {pts:?}"
    );
    assert_eq!(pts[0] as f64 * base, whole_pts[0] as f64 * whole_base);
    // Video and audio start and end where the whole's do, within 1 ms.
    let (got, want) = (streams(&chunked_out), streams(&whole_out));
    assert_eq!(
        got.iter().map(|s| &s.0).collect::<Vec<_>>(),
        ["video", "audio"]
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        assert!(
            (g.1 - w.1).abs() <= 0.001,
            "{} starts at {} vs {}",
            g.0,
            g.1,
            w.1
        );
        assert!(
            (g.2 - w.2).abs() <= 0.001,
            "{} ends at {} vs {}",
            g.0,
            g.2,
            w.2
        );
    }
    // It plays: every frame decodes.
    assert_eq!(nommer_testkit::media::decoded_frames(&chunked_out), Ok(300));
    // The intermediates are gone once the cleanup ran.
    assert_eq!(cleanup_done(&api, &chunked).await, "FINISHED");
    assert!(!work_dir_of(&chunked_out, &chunked).exists());
}

#[tokio::test]
async fn each_chunkable_encoder_joins_to_the_exact_frame_count() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let src = source("encoders.mp4", 6, 25, "160x120", 25);
    let cases = [
        (
            "x265.mp4",
            json!([
                ["c:v", "libx265"],
                ["preset", "ultrafast"],
                ["crf", 30],
                ["c:a", "aac"]
            ]),
        ),
        (
            "vp9.webm",
            json!([
                ["c:v", "libvpx-vp9"],
                ["deadline", "realtime"],
                ["cpu-used", 8],
                ["crf", 40],
                ["b:v", 0],
                ["c:a", "libopus"]
            ]),
        ),
        (
            "av1.mkv",
            json!([
                ["c:v", "libsvtav1"],
                ["preset", 12],
                ["crf", 45],
                ["c:a", "aac"]
            ]),
        ),
    ];
    let mut ids = Vec::new();
    for (name, options) in &cases {
        let dest = feederd.dir.path().join(name);
        let body = job(
            &src,
            &dest,
            json!([{"outfile_options": options}]),
            Some(json!({"chunk_seconds": 2})),
        );
        ids.push((api.submit_id(&body).await, dest));
    }
    for (id, dest) in &ids {
        let done = api.wait_for(id, &["FINISHED", "ERROR"], WAIT).await;
        assert_eq!(done["state"], "FINISHED", "{}: {done}", dest.display());
        let (pts, base) = video_pts(dest);
        assert_eq!(pts.len(), 150, "{}", dest.display());
        // MP4 steps exactly one frame; Matroska's 1 ms timebase rounds 40 ms exactly too.
        let tick = 1.0 / 25.0 / base;
        let uneven = pts
            .windows(2)
            .filter(|w| ((w[1] - w[0]) as f64 - tick).abs() >= 1.0)
            .count();
        assert_eq!(uneven, 0, "{}: {pts:?}", dest.display());
        let chunks = tasks(&api, id)
            .await
            .iter()
            .filter(|t| t["kind"] == "chunk")
            .count();
        assert_eq!(chunks, 3, "{}", dest.display());
    }
}

#[tokio::test]
async fn what_cannot_be_chunked_is_refused_with_its_code() {
    let feederd = Feederd::start("");
    let api = Api::new(&feederd.url);
    let src = source("refused.mp4", 2, 25, "160x120", 25);
    let dest = feederd.dir.path().join("refused.mp4");
    let cases = [
        (
            json!([{"outfile_options": [["c:v", "libx264"], ["vf", "reverse"]]}]),
            json!({"chunk_seconds": 2}),
            "chunking_not_supported",
            "reverse",
        ),
        (
            json!([{"outfile_options": [["c:v", "libx264"], ["af", "areverse"], ["vf", "fps=10"]]}]),
            json!({"chunk_seconds": 2}),
            "chunking_not_supported",
            "fps",
        ),
        (
            json!([{"outfile_options": [["c:v", "mpeg4"]]}]),
            json!({"chunk_seconds": 2}),
            "chunking_not_supported",
            "mpeg4",
        ),
        (
            X264(),
            json!({"chunk_seconds": 0.5}),
            "invalid_field",
            "chunk_seconds",
        ),
    ];
    for (options, chunked, code, why) in cases {
        let body = job(&src, &dest, options, Some(chunked));
        let answer = api
            .http
            .post(format!("{}/v1/jobs", feederd.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400);
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["error_code"], code, "{error}");
        assert!(error["message"].as_str().unwrap().contains(why), "{error}");
    }
    // The seed's endpoint takes the same field, and answers in its own shape.
    let body = job(
        &src,
        &dest,
        json!([{"outfile_options": [["c:v", "libx264"], ["vf", "reverse"]]}]),
        Some(json!({"chunk_seconds": 2})),
    );
    let seed = api
        .http
        .post(format!("{}/job/submit", feederd.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let seed: Value = seed.json().await.unwrap();
    assert_eq!(seed["success"], false, "{seed}");
    assert!(
        seed["message"].as_str().unwrap().contains("reverse"),
        "{seed}"
    );
}

#[tokio::test]
async fn a_source_shorter_than_two_chunks_runs_unchunked_and_says_why() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let src = source("short.mp4", 3, 25, "160x120", 25);
    let dest = feederd.dir.path().join("short-out.mp4");
    let id = api
        .submit_id(&job(&src, &dest, X264(), Some(json!({"chunk_seconds": 2}))))
        .await;
    let done = api.wait_for(&id, &["FINISHED", "ERROR"], WAIT).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    let warnings = done["warnings"].to_string();
    assert!(
        warnings.contains("not chunked: the source (3.0 s) is shorter than two chunks of 2 s"),
        "{done}"
    );
    assert_eq!(
        kinds(&tasks(&api, &id).await),
        ["plan", "cleanup", "ffmpeg"]
    );
    assert_eq!(video_pts(&dest).0.len(), 75);
}

#[tokio::test]
async fn a_broken_chunk_is_caught_before_anything_is_published() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker_with_env(2, "", &[("NOMMERD_TEST_SHORT_CHUNK", "1")]);
    let api = Api::new(&feederd.url);
    let src = source("broken.mp4", 6, 25, "160x120", 25);
    let dest = feederd.dir.path().join("broken-out.mp4");
    let id = api
        .submit_id(&job(&src, &dest, X264(), Some(json!({"chunk_seconds": 2}))))
        .await;
    let done = api.ends_in_error(&id, "qc_failed", WAIT).await;
    let details = done["state_details"].as_str().unwrap();
    assert!(
        details.contains("149 video frames, the plan has 150"),
        "{done}"
    );
    assert!(
        !dest.exists(),
        "a failed check published {}",
        dest.display()
    );
    assert_eq!(cleanup_done(&api, &id).await, "FINISHED");
    assert!(!work_dir_of(&dest, &id).exists());
}

/// Slow enough that a chunk is still encoding when the test acts.
const SLOW: fn() -> Value = || json!([{"outfile_options": [["c:v", "libx264"], ["preset", "slower"], ["crf", 20], ["threads", 1], ["c:a", "aac"]]}]);

/// Until some task of `kind` is in `state` (on `node`, if given); that task.
async fn task_in(api: &Api, id: &str, kind: &str, state: &str, node: Option<&str>) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let listed = tasks(api, id).await;
        let found = listed.iter().find(|t| {
            t["kind"] == kind && t["state"] == state && node.is_none_or(|n| t["node"] == n)
        });
        if let Some(task) = found {
            return task.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} task {state}: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_cancel_stops_every_task_and_leaves_no_intermediates() {
    let feederd = Feederd::start("");
    let _a = feederd.worker(1, "");
    let _b = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let src = source("cancel.mp4", 24, 25, "640x360", 50);
    let dest = feederd.dir.path().join("cancel-out.mp4");
    let id = api
        .submit_id(&job(&src, &dest, SLOW(), Some(json!({"chunk_seconds": 4}))))
        .await;
    task_in(&api, &id, "chunk", "FINISHED", None).await;
    task_in(&api, &id, "chunk", "ENCODING", None).await;
    let asked = std::time::Instant::now();
    let answer = api
        .http
        .post(format!("{}/v1/jobs/{id}/cancel", feederd.url))
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap()
    );
    let done = api
        .wait_for(&id, &["CANCELED", "FINISHED", "ERROR"], WAIT)
        .await;
    assert_eq!(done["state"], "CANCELED", "{done}");
    // Within a heartbeat (1 s here) and the time to stop ffmpeg and report.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    let listed = tasks(&api, &id).await;
    let counted: Vec<&Value> = listed.iter().filter(|t| t["kind"] != "cleanup").collect();
    assert!(
        counted
            .iter()
            .all(|t| ["FINISHED", "CANCELED"].contains(&t["state"].as_str().unwrap())),
        "{listed:?}"
    );
    assert_eq!(cleanup_done(&api, &id).await, "FINISHED");
    assert!(
        !work_dir_of(&dest, &id).exists(),
        "intermediates left behind"
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn a_worker_killed_mid_chunk_costs_only_that_chunk() {
    let feederd = Feederd::start("");
    let mut a = feederd.worker(1, "node_id = \"node-a\"\n");
    let _b = feederd.worker(1, "node_id = \"node-b\"\n");
    let api = Api::new(&feederd.url);
    let src = source("killed.mp4", 16, 25, "320x240", 50);
    let dest = feederd.dir.path().join("killed-out.mp4");
    let id = api
        .submit_id(&job(&src, &dest, SLOW(), Some(json!({"chunk_seconds": 4}))))
        .await;
    let victim = task_in(&api, &id, "chunk", "ENCODING", Some("node-a")).await;
    a.proc.kill9();
    let done = api.wait_for(&id, &["FINISHED", "ERROR"], WAIT).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    assert_eq!(video_pts(&dest).0.len(), 400);
    for task in tasks(&api, &id).await {
        let twice = task["task"] == victim["task"];
        assert_eq!(task["attempts"], if twice { 2 } else { 1 }, "{task}");
        if twice {
            assert_eq!(task["node"], "node-b", "{task}");
        }
    }
}

#[tokio::test]
async fn a_chunked_job_goes_on_across_a_feederd_restart() {
    let mut feederd = Feederd::start("");
    let _a = feederd.worker(1, "");
    let _b = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let src = source("restart.mp4", 16, 25, "320x240", 50);
    let dest = feederd.dir.path().join("restart-out.mp4");
    let id = api
        .submit_id(&job(&src, &dest, SLOW(), Some(json!({"chunk_seconds": 4}))))
        .await;
    let finished = task_in(&api, &id, "chunk", "FINISHED", None).await;
    feederd.restart();
    // A new client: the old one's pooled connections died with feederd.
    let api = Api::new(&feederd.url);
    let done = api.wait_for(&id, &["FINISHED", "ERROR"], WAIT).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    assert_eq!(video_pts(&dest).0.len(), 400);
    // What was done before the restart was not done again.
    let listed = tasks(&api, &id).await;
    let plan = listed.iter().find(|t| t["kind"] == "plan").unwrap();
    assert_eq!(plan["attempts"], 1, "{plan}");
    let before = listed
        .iter()
        .find(|t| t["task"] == finished["task"])
        .unwrap();
    assert_eq!(before["attempts"], 1, "{before}");
    assert_eq!(before["finished_at"], finished["finished_at"]);
}

#[tokio::test]
async fn a_two_pass_chunked_job_keeps_its_bitrate() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let src = source("two-pass.mp4", 12, 25, "320x240", 50);
    let video = json!([["c:v", "libx264"], ["preset", "veryfast"], ["b:v", "150k"]]);
    let mut first = video.as_array().unwrap().clone();
    first.extend([
        json!(["pass", "1"]),
        json!(["an", null]),
        json!(["f", "mp4"]),
    ]);
    let mut second = video.as_array().unwrap().clone();
    second.extend([
        json!(["pass", "2"]),
        json!(["c:a", "aac"]),
        json!(["b:a", "64k"]),
    ]);
    let options = json!([{"outfile_options": first}, {"outfile_options": second}]);
    let (chunked_out, whole_out) = (
        feederd.dir.path().join("2p-chunked.mp4"),
        feederd.dir.path().join("2p-whole.mp4"),
    );
    let chunked = api
        .submit_id(&job(
            &src,
            &chunked_out,
            options.clone(),
            Some(json!({"chunk_seconds": 3})),
        ))
        .await;
    let whole = api.submit_id(&job(&src, &whole_out, options, None)).await;
    for id in [&chunked, &whole] {
        let done = api.wait_for(id, &["FINISHED", "ERROR"], WAIT).await;
        assert_eq!(done["state"], "FINISHED", "{done}");
    }
    assert_eq!(video_pts(&chunked_out).0.len(), 300);
    let (got, want) = (
        video_bytes(&chunked_out) as f64,
        video_bytes(&whole_out) as f64,
    );
    let off = (got - want).abs() / want;
    eprintln!(
        "two-pass video bytes: chunked {got}, unchunked {want} ({:+.2} %)",
        (got - want) / want * 100.0
    );
    assert!(
        off <= 0.05,
        "two-pass chunks: {got} bytes of video against {want} unchunked ({:.1} % off)",
        off * 100.0
    );
    assert_eq!(streams(&chunked_out).len(), 2, "audio is muxed in");
}

/// 7 s of one picture, then 5 s of another: one scene change, at frame 175.
fn two_scenes() -> PathBuf {
    let path = std::env::temp_dir().join(format!("nommer-two-scenes-{}.mp4", std::process::id()));
    if path.exists() {
        return path;
    }
    let status = std::process::Command::new("ffmpeg")
        .args(["-y", "-nostdin", "-loglevel", "error"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25:duration=7",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "smptebars=size=160x120:rate=25:duration=5",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=12",
        ])
        .args([
            "-filter_complex",
            "[0:v][1:v]concat=n=2:v=1[v]",
            "-map",
            "[v]",
            "-map",
            "2:a",
            "-t",
            "12",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "250",
            "-c:a",
            "aac",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

#[tokio::test]
async fn scene_cuts_move_a_cut_and_intermediates_can_live_in_their_own_store() {
    let store = tempfile::tempdir().unwrap();
    let feederd = Feederd::start(&format!(
        "intermediate_store = \"file://{}\"\n",
        store.path().display()
    ));
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let src = two_scenes();
    let dest = feederd.dir.path().join("scenes.mp4");
    let id = api
        .submit_id(&job(
            &src,
            &dest,
            X264(),
            Some(json!({"chunk_seconds": 6, "scene_cuts": true})),
        ))
        .await;
    let done = api.wait_for(&id, &["FINISHED", "ERROR"], WAIT).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    let listed = tasks(&api, &id).await;
    let plan = listed.iter().find(|t| t["kind"] == "plan").unwrap();
    assert!(
        plan["result"]["scene_cuts"].as_u64().unwrap() >= 1,
        "{plan}"
    );
    // Two 6 s chunks would cut at frame 150; the scene change moves it to 175.
    let first = listed.iter().find(|t| t["kind"] == "chunk").unwrap();
    assert_eq!(first["result"]["frames"], 175, "{first}");
    assert_eq!(video_pts(&dest).0.len(), 300);
    // Nothing beside the destination; the store's own directory is gone.
    assert_eq!(cleanup_done(&api, &id).await, "FINISHED");
    assert!(!work_dir_of(&dest, &id).exists());
    assert!(!store.path().join(&id).exists());
}
