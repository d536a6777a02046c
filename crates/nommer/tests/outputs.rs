//! Jobs with many outputs, end to end on the real binary: ladders (HLS and
//! DASH from one set of segments, keyframes aligned), thumbnails, sprites
//! and files from one decode, the quality gate, and presets.

mod common;

use common::*;
use nommer_media::manifests;
use nommer_testkit::s3::S3Server;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const MINUTES: Duration = Duration::from_secs(240);

/// ffprobe's keyframe timestamps of a file.
fn keyframes(path: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains('K'))
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect()
}

/// A rendition as one file: its init and segments, joined.
fn joined(dir: &Path, init: &str, segments: &[String], into: &Path) {
    let mut bytes = std::fs::read(dir.join(init)).unwrap();
    for segment in segments {
        bytes.extend(std::fs::read(dir.join(segment)).unwrap_or_else(|e| panic!("{segment}: {e}")));
    }
    std::fs::write(into, bytes).unwrap();
}

fn ladder(dest: &str, manifests: Value) -> Value {
    json!({"kind": "abr", "dest_path": dest, "manifests": manifests, "segment_seconds": 2,
           "renditions": [{"name": "360p", "height": 360, "video_bitrate": "600k", "options": [["c:v", "libx264"], ["preset", "ultrafast"]]},
                          {"name": "240p", "height": 240, "video_bitrate": "300k", "options": [["c:v", "libx264"], ["preset", "ultrafast"]]}],
           "audio": {"options": [["c:a", "aac"], ["b:a", "64k"]]}})
}

/// The sheet sizes of a sprite output, and its VTT's cues as (sheet, x, y, w, h).
fn sprite_cues(dir: &Path) -> Vec<(String, u32, u32, u32, u32)> {
    let vtt = std::fs::read_to_string(dir.join("sprite.vtt")).unwrap();
    assert!(vtt.starts_with("WEBVTT"));
    vtt.lines()
        .filter_map(|line| {
            let (sheet, xywh) = line.split_once("#xywh=")?;
            let v: Vec<u32> = xywh.split(',').map(|n| n.parse().unwrap()).collect();
            Some((sheet.to_string(), v[0], v[1], v[2], v[3]))
        })
        .collect()
}

fn size_of(path: &Path) -> (u32, u32) {
    let probe = probe(path);
    let video = stream(&probe, "video");
    (
        video["width"].as_u64().unwrap() as u32,
        video["height"].as_u64().unwrap() as u32,
    )
}

#[tokio::test]
async fn one_decode_makes_a_ladder_thumbnails_a_sprite_and_a_file() {
    let source = clip("ladder.mp4", 6, "640x360");
    let out = traversable_tempdir();
    let root = out.path();
    let feederd = Feederd::start("");
    let worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let prefix = |name: &str| format!("{}/{name}/", file_uri(root));
    let mut measured = ladder(&prefix("stream"), json!(["hls", "dash"]));
    measured["qc_metrics"] = json!(["psnr", "ssim"]);
    let job = json!({"source_path": file_uri(&source), "outputs": [
        measured,
        {"kind": "thumbnail", "dest_path": prefix("poster"), "at_seconds": [1, 100], "width": 320},
        {"kind": "sprite", "dest_path": prefix("sprite"), "every_seconds": 1, "columns": 3, "rows": 2, "width": 80},
        {"kind": "file", "dest_path": format!("{}/download.mp4", file_uri(root)), "qc_metrics": ["psnr", "ssim", "vmaf"],
         "options": [{"outfile_options": [["c:v", "libx264"], ["preset", "ultrafast"], ["c:a", "aac"]], "move_atom_to_front": true}]}
    ]});
    let id = api.submit_id(&job).await;
    let done = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTES).await;
    assert_eq!(done["state"], "FINISHED", "{done}\n{}", worker.log());
    let outputs = done["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 4);
    for output in outputs {
        assert_eq!(output["state"], "finished", "{output}");
        assert_eq!(output["qc"]["passed"], true, "{output}");
        assert!(output["bytes"].as_u64().unwrap() > 0);
    }
    assert_eq!(outputs[0]["renditions"], json!(["360p", "240p"]));
    assert_eq!(
        outputs[1]["at_seconds"],
        json!([1.0, 5.5]),
        "100 s is past the end"
    );
    for rendition in outputs[0]["qc"]["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
    {
        let psnr = rendition["metrics"]["psnr"].as_f64().unwrap_or(0.0);
        assert!(psnr > 25.0, "{rendition}");
    }

    // One ffmpeg, one input: the outputs share a decode.
    let log = worker.log();
    let runs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("running ffmpeg for the job's outputs"))
        .collect();
    assert_eq!(runs.len(), 1, "{log}");
    assert_eq!(runs[0].matches(" -i ").count(), 1, "{}", runs[0]);

    // HLS and DASH name the same segments; every one is there and probes,
    // and every rendition has its keyframes at the same times.
    let stream_dir = root.join("stream");
    let mpd = std::fs::read_to_string(stream_dir.join("manifest.mpd")).unwrap();
    let reps = manifests::dash_references(&mpd).unwrap();
    assert_eq!(reps.len(), 3, "two renditions and the audio");
    let master = std::fs::read_to_string(stream_dir.join("master.m3u8")).unwrap();
    let playlists = manifests::hls_references(&master);
    assert_eq!(playlists.len(), 3, "{master}");
    for playlist in &playlists {
        let text = std::fs::read_to_string(stream_dir.join(playlist)).unwrap();
        for name in manifests::hls_references(&text) {
            assert!(reps.iter().any(|r| r.init.as_deref() == Some(name.as_str()) || r.segments.contains(&name)), "{name} is one of the MPD's");
        }
    }
    let mut grids = Vec::new();
    for rep in &reps {
        let file = root.join(format!("rep-{}.mp4", rep.id));
        joined(
            &stream_dir,
            rep.init.as_deref().unwrap(),
            &rep.segments,
            &file,
        );
        let probed = probe(&file);
        if probed["streams"][0]["codec_type"] == "video" {
            grids.push(keyframes(&file));
        }
    }
    assert_eq!(grids.len(), 2);
    assert!(grids[0].len() >= 3, "{grids:?}");
    assert_eq!(
        grids[0], grids[1],
        "IDR timestamps differ between renditions"
    );
    let sizes: Vec<(u32, u32)> = reps[..2]
        .iter()
        .map(|r| size_of(&root.join(format!("rep-{}.mp4", r.id))))
        .collect();
    assert_eq!(sizes, [(640, 360), (426, 240)]);

    // Thumbnails at their times (past the end: the last moment), at their width.
    for name in ["thumb_0000.jpg", "thumb_0001.jpg"] {
        assert_eq!(size_of(&root.join("poster").join(name)).0, 320);
    }
    // Six tiles a second over six seconds: one full sheet; every cue inside it.
    let cues = sprite_cues(&root.join("sprite"));
    assert_eq!(cues.len(), 6, "{cues:?}");
    for (sheet, x, y, w, h) in cues {
        let (sw, sh) = size_of(&root.join("sprite").join(&sheet));
        assert!(
            x + w <= sw && y + h <= sh,
            "{sheet} {x},{y},{w},{h} outside {sw}x{sh}"
        );
        assert_eq!((w, sw), (80, 240));
    }
    // The file: faststart MP4 with both streams, and its PSNR and SSIM.
    let download = probe(&root.join("download.mp4"));
    assert_eq!(stream(&download, "audio")["codec_name"], "aac");
    let metrics = &outputs[3]["qc"]["metrics"];
    assert!(metrics["psnr"].as_f64().unwrap() > 25.0, "{metrics}");
    assert!(metrics["ssim"].as_f64().unwrap() > 0.8, "{metrics}");
    assert!(
        metrics["vmaf"].as_str().unwrap().contains("libvmaf"),
        "{metrics}"
    );
    // nommer status shows each output and its check.
    let status = Command::new(BIN)
        .args(["--feederd", &feederd.url, "status", &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("output 0:    abr finished"), "{text}");
    assert!(text.contains("qc:        passed"), "{text}");
}

#[tokio::test]
async fn an_s3_ladder_publishes_its_manifests_last_and_a_broken_one_leaves_nothing() {
    let s3 = S3Server::shared();
    let bucket = s3.bucket("ladders");
    std::fs::create_dir_all(s3.object_path(&bucket, "in")).unwrap();
    std::fs::copy(
        clip("ladder-s3.mp4", 4, "640x360"),
        s3.object_path(&bucket, "in/movie.mp4"),
    )
    .unwrap();
    let feederd = Feederd::start(&s3.config());
    let keys = [
        ("AWS_ACCESS_KEY_ID", nommer_testkit::s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", nommer_testkit::s3::SECRET_KEY),
    ];
    let worker = feederd.worker_with_env(1, &s3.config(), &keys);
    let api = Api::new(&feederd.url);
    let source = format!("s3://{bucket}/in/movie.mp4");

    let good = json!({"source_path": source, "outputs": [ladder(&format!("s3://{bucket}/good/"), json!(["hls"]))]});
    let id = api.submit_id(&good).await;
    let done = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTES).await;
    assert_eq!(done["state"], "FINISHED", "{done}\n{}", worker.log());
    let dir = s3.object_path(&bucket, "good");
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    let modified = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap()
            .modified()
            .unwrap()
    };
    let mut media_newest = std::time::SystemTime::UNIX_EPOCH;
    for playlist in manifests::hls_references(&master) {
        let text = std::fs::read_to_string(dir.join(&playlist)).unwrap();
        for name in manifests::hls_references(&text) {
            media_newest = media_newest.max(modified(&name));
        }
        assert!(
            modified(&playlist) >= media_newest,
            "{playlist} went up before its segments"
        );
    }
    assert!(modified("master.m3u8") >= media_newest);
    assert_eq!(
        done["outputs"][0]["file_count"].as_u64().unwrap() as usize,
        std::fs::read_dir(&dir).unwrap().count()
    );

    // A segment gone after ffmpeg wrote it: the gate says which, nothing is published.
    let mut broken = ladder(&format!("s3://{bucket}/broken/"), json!(["hls"]));
    broken["test_break"] = json!("segment");
    let id = api
        .submit_id(&json!({"source_path": source, "outputs": [broken], "max_attempts": 1}))
        .await;
    let failed = api.ends_in_error(&id, "qc_failed", MINUTES).await;
    let details = failed["state_details"].as_str().unwrap();
    assert!(
        details.contains("outputs[0] (abr)") && details.contains("missing"),
        "{details}"
    );
    assert_eq!(failed["outputs"][0]["state"], "error");
    assert_eq!(failed["outputs"][0]["qc"]["passed"], false);
    assert!(
        !s3.object_path(&bucket, "broken").exists()
            || std::fs::read_dir(s3.object_path(&bucket, "broken"))
                .unwrap()
                .count()
                == 0
    );
}

#[tokio::test]
async fn the_gate_catches_a_truncated_file_and_a_wrong_stream_layout() {
    let source = clip("gate.mp4", 3, "320x240");
    let out = traversable_tempdir();
    let feederd = Feederd::start("");
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let file = |name: &str, options: Value, how: &str| {
        json!({"source_path": file_uri(&source), "max_attempts": 1, "outputs": [
            {"kind": "file", "dest_path": file_uri(&out.path().join(name)), "test_break": how,
             "options": [{"outfile_options": options}]},
            {"kind": "thumbnail", "dest_path": format!("{}/{name}-thumbs/", file_uri(out.path())), "every_seconds": 1}]})
    };
    let truncated = api
        .submit_id(&file(
            "cut.mp4",
            json!([["c:v", "libx264"], ["preset", "ultrafast"]]),
            "truncate",
        ))
        .await;
    let layout = api
        .submit_id(&file(
            "video-only.mp4",
            json!([["c:v", "libx264"], ["preset", "ultrafast"], ["an", null]]),
            "streams",
        ))
        .await;
    for (id, says) in [
        (&truncated, "ffprobe cannot read it"),
        (&layout, "audio stream it was not asked for"),
    ] {
        let failed = api.ends_in_error(id, "qc_failed", MINUTES).await;
        let details = failed["state_details"].as_str().unwrap();
        assert!(
            details.contains("outputs[0] (file)") && details.contains(says),
            "{details}"
        );
        assert_eq!(failed["outputs"][0]["state"], "error");
        assert_eq!(failed["outputs"][1]["state"], "discarded", "{failed}");
    }
    // A segment cut after ffmpeg wrote it still parses: the gate sees it is short.
    let mut cut = ladder(
        &format!("{}/cut-ladder/", file_uri(out.path())),
        json!(["hls"]),
    );
    cut["test_break"] = json!("cut_segment");
    let cut = api
        .submit_id(&json!({"source_path": file_uri(&source), "max_attempts": 1, "outputs": [cut]}))
        .await;
    let failed = api.ends_in_error(&cut, "qc_failed", MINUTES).await;
    let details = failed["state_details"].as_str().unwrap();
    // ffprobe says so while it reads, or the rendition reads back short.
    assert!(
        details.contains("outputs[0] (abr): rendition")
            && (details.contains("reported") || details.contains("reads back as")),
        "{details}"
    );
    let left: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing is published: {left:?}");

    // A plain job goes through the same gate, and shows its one output.
    let plain = api
        .submit_id(&ffmpeg_job(&source, &out.path().join("plain.mp4"), json!([{"outfile_options": [["c:v", "libx264"], ["preset", "ultrafast"], ["t", "1.5"]]}])))
        .await;
    let done = api.wait_for(&plain, &["FINISHED", "ERROR"], MINUTES).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    let report = &done["outputs"][0]["qc"];
    assert_eq!(report["passed"], true);
    assert_eq!(report["expected_duration_s"], 1.5, "{report}");
}

#[tokio::test]
async fn presets_are_listed_written_and_expanded() {
    let small = clip("preset-small.mp4", 2, "320x240");
    let tall = clip("preset-360.mp4", 2, "640x360");
    let out = traversable_tempdir();
    let feederd = Feederd::start(
        "[presets.stills]\ndescription = \"two stills\"\noutputs = [{ kind = \"thumbnail\", path = \"stills/\", at_seconds = [0, 1] }]\n",
    );
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let http = reqwest::Client::new();

    let listed = api.get("/v1/presets").await;
    let names: Vec<&str> = listed["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "web_medium",
        "android_low",
        "cb_low",
        "cb_medium",
        "cb_high",
        "hls_h264_ladder",
        "dash_av1_ladder",
        "poster_and_sprite",
    ] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
    let put = |name: &str, body: Value| {
        http.put(format!("{}/v1/presets/{name}", feederd.url))
            .json(&body)
            .send()
    };
    let answer = put("web_medium", json!({"outputs": []})).await.unwrap();
    assert_eq!(answer.status(), 409);
    assert_eq!(
        answer.json::<Value>().await.unwrap()["error_code"],
        "preset_builtin"
    );
    let gone = http
        .delete(format!("{}/v1/presets/cb_low", feederd.url))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 409);
    let bad = put(
        "mine",
        json!({"outputs": [{"kind": "thumbnail", "dest_path": "file:///x/", "every_seconds": 1}]}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error_code"],
        "invalid_preset"
    );
    // A config preset is listed, and is not the API's to change.
    let stills = api.get("/v1/presets/stills").await;
    assert_eq!(stills["origin"], "config", "{stills}");
    assert_eq!(
        put("stills", json!({"outputs": []}))
            .await
            .unwrap()
            .status(),
        409
    );
    let mine = json!({"description": "two stills", "outputs": [{"kind": "thumbnail", "path": "stills/", "at_seconds": [0, 1]}]});
    assert_eq!(put("mine", mine.clone()).await.unwrap().status(), 201);
    assert_eq!(put("mine", mine).await.unwrap().status(), 200);
    assert_eq!(api.get("/v1/presets/mine").await["origin"], "api");

    let job = |source: &Path, preset: &str, dest: &str| json!({"source_path": file_uri(source), "dest_path": format!("{}/{dest}/", file_uri(out.path())), "preset": preset});
    let unknown = http
        .post(format!("{}/v1/jobs", feederd.url))
        .json(&job(&small, "no_such_preset", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error_code"],
        "unknown_preset"
    );
    let mut ids = Vec::new();
    for preset in [
        "web_medium",
        "android_low",
        "cb_low",
        "cb_medium",
        "cb_high",
        "mine",
    ] {
        ids.push((preset, api.submit_id(&job(&small, preset, preset)).await));
    }
    let ladder = api
        .submit_id(&job(&tall, "hls_h264_ladder", "ladder"))
        .await;
    ids.push(("hls_h264_ladder", ladder.clone()));
    let av1 = api.submit_id(&job(&tall, "dash_av1_ladder", "av1")).await;
    ids.push(("dash_av1_ladder", av1.clone()));
    for (preset, id) in &ids {
        let done = api.wait_for(id, &["FINISHED", "ERROR"], MINUTES).await;
        assert_eq!(done["state"], "FINISHED", "{preset}: {done}");
        assert_eq!(done["preset"], *preset);
    }
    for seed in [
        "web_medium",
        "android_low",
        "cb_low",
        "cb_medium",
        "cb_high",
    ] {
        let path = out.path().join(seed).join(format!("{seed}.mp4"));
        let probed = probe(&path);
        assert_eq!(stream(&probed, "video")["codec_name"], "h264", "{seed}");
        assert_eq!(stream(&probed, "audio")["codec_name"], "aac", "{seed}");
    }
    assert_eq!(size_of(&out.path().join("cb_high/cb_high.mp4")).0, 1280);
    assert!(out.path().join("mine/stills/thumb_0001.jpg").is_file());
    // A 360p source makes only the 360p rung of the ladder.
    let done = api.job(&ladder).await;
    assert_eq!(done["outputs"][0]["renditions"], json!(["360p"]), "{done}");
    assert_eq!(
        done["outputs"][0]["skipped_renditions"],
        json!(["1080p", "720p", "480p"])
    );
    let master = std::fs::read_to_string(out.path().join("ladder/hls/master.m3u8")).unwrap();
    assert_eq!(
        manifests::hls_references(&master).len(),
        2,
        "360p and audio: {master}"
    );
    // SVT-AV1 in DASH, from the same 360p source: one AV1 rung and the audio.
    let done = api.job(&av1).await;
    assert_eq!(done["outputs"][0]["renditions"], json!(["360p"]), "{done}");
    assert_eq!(
        done["outputs"][0]["qc"]["renditions"][0]["codec"], "av1",
        "{done}"
    );
    let mpd = std::fs::read_to_string(out.path().join("av1/dash/manifest.mpd")).unwrap();
    assert_eq!(manifests::dash_references(&mpd).unwrap().len(), 2);
    assert_eq!(
        http.delete(format!("{}/v1/presets/mine", feederd.url))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

/// The page, hls.js and the ladder from one loopback origin.
async fn serve_player(ladder: std::path::PathBuf) -> String {
    use axum::extract::Path as UrlPath;
    use axum::http::{header, StatusCode};
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/browser");
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::get(move |UrlPath(path): UrlPath<String>| {
            let file = match path.as_str() {
                "player.html" => Some(scripts.join("player.html")),
                "hls.min.js" => {
                    Some("/var/tmp/nommer-tools/node/node_modules/hls.js/dist/hls.min.js".into())
                }
                _ => path
                    .strip_prefix("stream/")
                    .filter(|name| !name.contains('/') && !name.starts_with('.'))
                    .map(|name| ladder.join(name)),
            };
            async move {
                let Some(bytes) = file.and_then(|f| std::fs::read(f).ok()) else {
                    return Err(StatusCode::NOT_FOUND);
                };
                let kind = match path.rsplit('.').next() {
                    Some("html") => "text/html",
                    Some("js") => "text/javascript",
                    Some("m3u8") => "application/vnd.apple.mpegurl",
                    _ => "application/octet-stream",
                };
                Ok(([(header::CONTENT_TYPE, kind)], bytes))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/player.html", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn the_master_playlist_plays_in_chromium_with_hls_js() {
    for needed in [
        "/usr/bin/chromium",
        "/var/tmp/nommer-tools/node/node_modules/hls.js/dist/hls.min.js",
        "/var/tmp/nommer-tools/node/node_modules/puppeteer-core",
    ] {
        assert!(
            Path::new(needed).exists(),
            "{needed} is missing: run scripts/install-deps.sh --test"
        );
    }
    let source = clip("play.mp4", 4, "640x360");
    let out = traversable_tempdir();
    let feederd = Feederd::start("");
    let _worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let dest = format!("{}/stream/", file_uri(out.path()));
    let id = api
        .submit_id(
            &json!({"source_path": file_uri(&source), "outputs": [ladder(&dest, json!(["hls"]))]}),
        )
        .await;
    let done = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTES).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    let url = serve_player(out.path().join("stream")).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/browser/play-hls.mjs");
    let ran = tokio::process::Command::new("node")
        .arg(script)
        .arg(&url)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let seen: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("chromium saw: {seen}");
    assert!(seen["error"].is_null(), "{seen}");
    assert_eq!(seen["started"], true, "{seen}");
    assert!(seen["levels"].as_u64().unwrap() >= 2, "{seen}");
    let (at, duration) = (
        seen["currentTime"].as_f64().unwrap(),
        seen["duration"].as_f64().unwrap(),
    );
    assert!(
        duration > 3.5 && at >= duration - 0.1,
        "played to {at} of {duration}: {seen}"
    );
}
