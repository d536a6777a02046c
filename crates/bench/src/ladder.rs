//! Ladder: a 4-rendition H.264 `abr` output in one job (one decode) against
//! four one-rendition jobs run one after another on the same worker, and
//! the one job against the raw ffmpeg command its nommer runs.

use crate::harness::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNGS: [(&str, u32, &str); 4] = [
    ("720p", 720, "3M"),
    ("480p", 480, "1500k"),
    ("360p", 360, "800k"),
    ("240p", 240, "400k"),
];

fn ladder(dest: &str, rungs: &[(&str, u32, &str)]) -> Value {
    let renditions: Vec<Value> = rungs
        .iter()
        .map(|(name, height, rate)| {
            json!({"name": name, "height": height, "video_bitrate": rate,
            "options": [["c:v", "libx264"], ["preset", "veryfast"]]})
        })
        .collect();
    json!({"kind": "abr", "dest_path": dest, "manifests": ["hls"], "segment_seconds": 6,
           "renditions": renditions, "audio": {"options": [["c:a", "aac"], ["b:a", "128k"]]}})
}

/// The command line the nommer runs for `outputs`, built by the same code,
/// run bare: no sandbox, no transfers, no check.
fn raw(src: &Path, dir: &Path, outputs: &Value) -> anyhow::Result<f64> {
    let parsed = nommer_model::outputs::parse_outputs(
        outputs,
        None,
        nommer_model::options::Allowlist::builtin(),
    )
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let scratch = dir.join("raw");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("out/0"))?;
    let source = nommer_media::outputs::SourceInfo {
        has_video: true,
        has_audio: true,
        width: Some(1280),
        height: Some(720),
        duration: Some(60.0),
    };
    let plan = nommer_media::outputs::plan("ffmpeg", src, &scratch, &parsed, &[None], &source);
    let started = Instant::now();
    let status = Command::new(&plan.argv[0])
        .args(&plan.argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "raw ffmpeg failed");
    Ok(started.elapsed().as_secs_f64())
}

pub async fn ladder_suite(env: &Env) -> anyhow::Result<()> {
    let rounds: usize = std::env::var("BENCH_LADDER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let dir = env.dir.path().join("ladder");
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("source.mp4");
    nommer_testkit::media::Clip {
        seconds: 60,
        size: "1280x720",
        rate: 30,
        gop: 60,
        preset: "veryfast",
        crf: 18,
    }
    .make(&src)?;
    let config = write_config(&dir, "bench.toml", "");
    let feederd = env.feederd(
        &config,
        &format!("sqlite://{}", dir.join("jobs.db").display()),
    );
    let _worker = env.nommerd(&config, &feederd.url, 1);
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    print(
        "ladder: source",
        "60 s 1280x720",
        "30 fps; HLS fMP4 6 s, x264 veryfast 720/480/360/240, aac 128k",
    );
    let source_uri = format!("file://{}", src.display());
    let (mut one, mut four, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let dest = format!("file://{}/one-{round}/", dir.display());
        let outputs = json!([ladder(&dest, &RUNGS)]);
        one.push(
            run_job(
                &http,
                &feederd.url,
                &json!({"source_path": source_uri, "outputs": outputs}),
            )
            .await?
            .1,
        );
        let mut total = 0.0;
        for (index, rung) in RUNGS.iter().enumerate() {
            let dest = format!("file://{}/four-{round}-{index}/", dir.display());
            let body = json!({"source_path": source_uri, "outputs": [ladder(&dest, std::slice::from_ref(rung))]});
            total += run_job(&http, &feederd.url, &body).await?.1;
        }
        four.push(total);
        bare.push(raw(&src, &dir, &outputs)?);
    }
    let (one, four, bare) = (median(&mut one), median(&mut four), median(&mut bare));
    print(
        "ladder: one job, 4 renditions",
        format!("{one:.1} s"),
        &format!("median of {rounds}, end to end"),
    );
    print(
        "ladder: four one-rendition jobs",
        format!("{four:.1} s"),
        "one after another, one worker",
    );
    print(
        "ladder: one job / four jobs",
        format!("{:.2}x", one / four),
        "target <= 0.75x",
    );
    print(
        "ladder: raw ffmpeg, the same command",
        format!("{bare:.1} s"),
        "no sandbox, transfers or check",
    );
    print(
        "ladder: one job / raw ffmpeg",
        format!("{:.2}x", one / bare),
        "target <= 1.05x",
    );
    Ok(())
}
