//! Chunked: one encode unchunked on one worker against the same job chunked
//! across N workers, each worker pinned to its own core (`taskset`) as N
//! one-core machines. End to end: plan, transfers and assembly included.

use crate::harness::*;
use nommer_testkit::media::{video_bytes, video_pts};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A clip with a keyframe every 2 s (`-g 2×fps`), a tone, and enough detail
/// that the encoders work for their bits.
fn source(path: &Path, seconds: u32, size: &str) -> anyhow::Result<()> {
    let clip = nommer_testkit::media::Clip {
        seconds,
        size,
        rate: 30,
        gop: 60,
        preset: "veryfast",
        crf: 18,
    };
    Ok(clip.make(path)?)
}

fn options() -> Value {
    json!([{"outfile_options": [["c:v", "libx264"], ["preset", "veryfast"], ["crf", 23],
        ["vf", "scale=640:-2"], ["c:a", "aac"], ["b:a", "128k"]]}])
}

/// A worker pinned to `core`, logging to `log`.
fn pinned_worker(
    env: &Env,
    config: &Path,
    feederd: &str,
    core: usize,
    log: &Path,
) -> anyhow::Result<Proc> {
    let work = env.dir.path().join(format!("chunked-work-{}", free_port()));
    let child = Command::new("taskset")
        .args(["-c", &core.to_string()])
        .arg(&env.nommer)
        .arg("--config")
        .arg(config)
        .args(["--feederd", feederd, "nommerd", "--max-jobs", "1"])
        .arg("--work-dir")
        .arg(work)
        .env("NOMMER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    Ok(Proc(child))
}

/// PSNR of `output` against the source scaled as the job scaled it.
fn psnr(output: &Path, source: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-i"])
        .arg(output)
        .arg("-i")
        .arg(source)
        .args([
            "-lavfi",
            "[1:v]scale=640:-2[ref];[0:v][ref]psnr",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter_map(|l| l.split("average:").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|v| v.parse::<f64>().ok())
        .next_back()
        .unwrap_or(0.0)
}

/// Bytes each worker's log says it moved for job `id`: its downloads
/// (source, intermediates) and uploads (intermediates, output).
fn moved(logs: &[PathBuf], id: &str) -> (u64, u64) {
    let (mut down, mut up) = (0, 0);
    for log in logs {
        let text = crate::suites::strip_ansi(&std::fs::read_to_string(log).unwrap_or_default());
        for line in text.lines().filter(|l| l.contains(id)) {
            let bytes = line
                .split("bytes=")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            if line.contains(" uploaded") {
                up += bytes;
            } else if line.contains(" downloaded") || line.contains("fetched an intermediate") {
                down += bytes;
            }
        }
    }
    (down, up)
}

fn millis(rfc3339: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or(0.0, |t| t.timestamp_millis() as f64)
}

/// Each kind's wall time (first start to last end), and the mean chunk.
fn task_times(tasks: &Value) -> String {
    let list = tasks["tasks"].as_array().cloned().unwrap_or_default();
    let spans = |kind: &str| -> Vec<(f64, f64)> {
        list.iter()
            .filter(|t| t["kind"] == kind)
            .filter_map(|t| {
                Some((
                    millis(t["started_at"].as_str()?),
                    millis(t["finished_at"].as_str()?),
                ))
            })
            .collect()
    };
    let first = list
        .iter()
        .filter_map(|t| t["started_at"].as_str())
        .map(millis)
        .fold(f64::MAX, f64::min);
    let mut parts = Vec::new();
    for kind in ["plan", "chunk", "audio", "assemble"] {
        let s = spans(kind);
        if s.is_empty() {
            continue;
        }
        let start = s.iter().map(|x| x.0).fold(f64::MAX, f64::min);
        let end = s.iter().map(|x| x.1).fold(0.0, f64::max);
        let mean = s.iter().map(|x| x.1 - x.0).sum::<f64>() / s.len() as f64;
        parts.push(format!(
            "{kind} {:.1}-{:.1} (each {:.1})",
            (start - first) / 1e3,
            (end - first) / 1e3,
            mean / 1e3
        ));
    }
    parts.join(", ")
}

pub async fn chunked(env: &Env) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // 10-minute 1080p where there are more cores than here.
    let (seconds, size) = if cores > 4 {
        (600, "1920x1080")
    } else {
        (120, "1280x720")
    };
    let rounds: usize = std::env::var("BENCH_CHUNKED_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let n = cores.max(2);
    let dir = env.dir.path().join("chunked");
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("source.mp4");
    source(&src, seconds, size)?;
    let source_bytes = std::fs::metadata(&src)?.len();
    let config = write_config(&dir, "bench.toml", "");
    let feederd = env.feederd(
        &config,
        &format!("sqlite://{}", dir.join("jobs.db").display()),
    );
    let http = reqwest::Client::new();
    let mut logs = Vec::new();
    let mut workers = Vec::new();
    for core in 0..n {
        let log = dir.join(format!("worker-{core}.log"));
        workers.push(pinned_worker(
            env,
            &config,
            &feederd.url,
            core % cores,
            &log,
        )?);
        logs.push(log);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    print(
        "chunked: source",
        format!("{seconds} s {size}"),
        &format!(
            "{} MB, 30 fps, -g 60; x264 veryfast crf 23 to 640 wide, aac; chunk_seconds 10",
            source_bytes / 1_000_000
        ),
    );
    let (mut whole_s, mut chunked_s) = (Vec::new(), Vec::new());
    let mut last = None;
    for round in 0..rounds {
        // Unchunked: one task, so one worker (one core) encodes it all.
        let whole_out = dir.join(format!("whole-{round}.mp4"));
        let body = json!({"source_path": format!("file://{}", src.display()), "dest_path": format!("file://{}", whole_out.display()),
            "job_options": {"nommer": "ffmpeg", "options": options()}});
        let (_, s) = run_job(&http, &feederd.url, &body).await?;
        whole_s.push(s);
        let chunked_out = dir.join(format!("chunked-{round}.mp4"));
        let mut body = body.clone();
        body["dest_path"] = json!(format!("file://{}", chunked_out.display()));
        body["chunked"] = json!({"chunk_seconds": 10});
        let (id, s) = run_job(&http, &feederd.url, &body).await?;
        chunked_s.push(s);
        last = Some((id, whole_out, chunked_out));
    }
    let (id, whole_out, chunked_out) = last.expect("at least one round");
    let (whole, chunked) = (median(&mut whole_s), median(&mut chunked_s));
    print(
        "chunked: unchunked, 1 worker",
        format!("{whole:.1} s"),
        &format!("median of {rounds}, end to end"),
    );
    print(
        &format!("chunked: chunked, {n} workers"),
        format!("{chunked:.1} s"),
        &format!("median of {rounds}, plan + chunks + assemble + transfers"),
    );
    print(
        "chunked: speed-up",
        format!("{:.2}x", whole / chunked),
        "target >= 1.7x with 2 workers (each pinned to one core)",
    );
    let (fw, fc) = (
        video_pts(&whole_out).0.len(),
        video_pts(&chunked_out).0.len(),
    );
    print(
        "chunked: frames (unchunked / chunked)",
        format!("{fw} / {fc}"),
        if fw == fc { "equal" } else { "DIFFER" },
    );
    let (pw, pc) = (psnr(&whole_out, &src), psnr(&chunked_out, &src));
    print(
        "chunked: PSNR vs source (unchunked / chunked)",
        format!("{pw:.2} / {pc:.2} dB"),
        &format!("{:+.3} dB; target within 0.1", pc - pw),
    );
    let (bw, bc) = (video_bytes(&whole_out), video_bytes(&chunked_out));
    print(
        "chunked: video bytes (unchunked / chunked)",
        format!("{bw} / {bc}"),
        &format!(
            "{:+.2} %; target at most +2 %",
            (bc as f64 - bw as f64) / bw as f64 * 100.0
        ),
    );
    let tasks: Value = http
        .get(format!("{}/v1/jobs/{id}/tasks", feederd.url))
        .send()
        .await?
        .json()
        .await?;
    let mut nodes: Vec<&str> = tasks["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["kind"] != "cleanup")
        .filter_map(|t| t["node"].as_str())
        .collect();
    nodes.sort();
    nodes.dedup();
    print(
        "chunked: where the time went",
        task_times(&tasks),
        "seconds, from the tasks' started_at and finished_at",
    );
    let output_bytes = std::fs::metadata(&chunked_out)?.len();
    let (down, up) = moved(&logs, &id);
    // Without the final upload, which an unchunked job makes too.
    let moved = down + up - output_bytes;
    let bound = nodes.len() as u64 * source_bytes + 2 * output_bytes;
    print("chunked: bytes moved", format!("{:.1} MB", moved as f64 / 1e6), &format!(
        "down {:.1} MB, up {:.1} MB less the {:.1} MB output; bound {} workers x source + 2 x output = {:.1} MB",
        down as f64 / 1e6, up as f64 / 1e6, output_bytes as f64 / 1e6, nodes.len(), bound as f64 / 1e6));
    drop(workers);
    Ok(())
}
