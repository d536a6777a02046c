//! Whole jobs through the real binary and real ffmpeg: encodes, webhooks,
//! failures, cancels, dead workers, fencing and concurrency.

mod common;

use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn seed_example_and_web_medium_encode_with_webhooks() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let feederd = Feederd::start(&format!("webhook_secret = \"{secret}\"\n"));
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let (receiver, hook) = Receiver::start().await;
    let source = clip("clip720.mp4", 3, "1280x720");

    let example = json!([
        {"infile_options": [], "outfile_options": [["threads", 0], ["vcodec", "libx264"], ["preset", "medium"], ["profile", "baseline"], ["b", "400k"], ["vf", "yadif,scale=640:-1"], ["pass", "1"], ["f", "mp4"], ["an", null]]},
        {"outfile_options": [["threads", 0], ["vcodec", "libx264"], ["preset", "medium"], ["profile", "baseline"], ["b", "400k"], ["vf", "yadif,scale=640:-1"], ["pass", "2"], ["acodec", "libfaac"], ["ab", "128k"], ["ar", "48000"], ["ac", "2"], ["f", "mp4"]]}]);
    let web_medium: Value = serde_json::from_str(r#"[{"outfile_options": [["vcodec", "libx264"], ["preset", "medium"], ["vprofile", "baseline"], ["b", "400k"], ["bufsize", "400k"], ["vf", "yadif,scale='640:trunc(ow/a/2)*2'"], ["pass", "1"], ["f", "mp4"], ["keyint_min", "60"], ["g", "120"], ["an", null]]}, {"outfile_options": [["vcodec", "libx264"], ["preset", "medium"], ["vprofile", "baseline"], ["b", "400k"], ["bufsize", "400k"], ["vf", "yadif,scale='640:trunc(ow/a/2)*2'"], ["pass", "2"], ["acodec", "libfaac"], ["ab", "128k"], ["async", "480"], ["keyint_min", "60"], ["g", "120"], ["f", "mp4"]], "move_atom_to_front": true}]"#).unwrap();

    let mut ids = Vec::new();
    for (name, options) in [("example.mp4", example), ("web medium.mp4", web_medium)] {
        let dest = feederd.dir.path().join(name);
        let mut body = ffmpeg_job(&source, &dest, options);
        body["dest_path"] = json!(format!("file://{}", dest.display()).replace(' ', "%20"));
        body["notify_url"] = json!(hook);
        // The seed's form, as the seed's clients read it.
        body["notify_format"] = json!("form");
        let job = api.submit(&body).await;
        ids.push((job["id"].as_str().unwrap().to_string(), dest));
    }
    for (id, dest) in &ids {
        let job = api.wait_for(id, &["FINISHED", "ERROR"], MINUTE).await;
        assert_eq!(job["state"], "FINISHED", "{job}");
        let probe = probe(dest);
        let video = stream(&probe, "video");
        assert_eq!(video["codec_name"], "h264");
        // 640 wide from 1280x720; web_medium's scale='640:trunc(ow/a/2)*2'
        // is w=640:h=trunc(ow/a/2)*2, so its height is 360 too.
        assert_eq!(video["width"], 640);
        assert_eq!(video["height"], 360);
        assert_eq!(stream(&probe, "audio")["codec_name"], "aac");
    }
    // web_medium asked for faststart: the moov atom comes before mdat.
    let bytes = std::fs::read(&ids[1].1).unwrap();
    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "faststart: moov at {moov}, mdat at {mdat}");

    // Each job's receiver saw every state after PENDING, in order, signed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let finished = receiver
            .hooks()
            .iter()
            .filter(|h| h.state == "FINISHED")
            .count();
        if finished == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "webhooks missing: {:?}",
            receiver.hooks()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    for (id, _) in &ids {
        let hits: Vec<_> = receiver
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| b.contains(id.as_str()))
            .cloned()
            .collect();
        let states: Vec<String> = hits
            .iter()
            .map(|(_, body)| {
                url::form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "job_state")
                    .unwrap()
                    .1
                    .to_string()
            })
            .collect();
        assert_eq!(states, ["DOWNLOADING", "ENCODING", "UPLOADING", "FINISHED"]);
        for (headers, body) in &hits {
            assert_eq!(headers["user-agent"], "media-nommer feederd");
            assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
            assert!(body.contains("job_state_details=") && !body.contains("None"));
            let webhook_id = headers["webhook-id"].to_str().unwrap();
            let timestamp = headers["webhook-timestamp"].to_str().unwrap();
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            mac.update(format!("{webhook_id}.{timestamp}.{body}").as_bytes());
            let expected = format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            );
            assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
        }
        let deliveries = api.deliveries(id).await;
        let list = deliveries["deliveries"].as_array().unwrap();
        assert_eq!(list.len(), 4);
        assert!(list
            .iter()
            .all(|d| d["status"] == "delivered" && d["attempts"][0]["status_code"] == 200));
    }
}

#[tokio::test]
async fn ffmpeg_failure_is_an_error_with_its_stderr_and_no_output() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let dest = feederd.dir.path().join("never.mp4");
    let body = ffmpeg_job(
        &clip("tiny.mp4", 1, "320x240"),
        &dest,
        // Allowed by the check, refused by libx264 itself.
        json!([{"outfile_options": [["vcodec", "libx264"], ["profile:v", "no_such_profile"]]}]),
    );
    let job = api.submit(&body).await;
    let job = api
        .wait_for(job["id"].as_str().unwrap(), &["FINISHED", "ERROR"], MINUTE)
        .await;
    assert_eq!(job["state"], "ERROR");
    let details = job["state_details"].as_str().unwrap();
    assert!(details.contains("no_such_profile"), "{details}");
    assert!(details.chars().count() <= 1023);
    assert!(!dest.exists());
    assert!(std::fs::read_dir(feederd.dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("never")));

    let missing = ffmpeg_job(
        &feederd.dir.path().join("missing.mp4"),
        &dest,
        json!([{"outfile_options": [["f", "mp4"]]}]),
    );
    let job = api.submit(&missing).await;
    let job = api
        .wait_for(job["id"].as_str().unwrap(), &["FINISHED", "ERROR"], MINUTE)
        .await;
    assert_eq!(job["state"], "ERROR");
    assert!(job["state_details"]
        .as_str()
        .unwrap()
        .starts_with("The specified input file cannot be found"));
}

#[tokio::test]
async fn cancel_stops_ffmpeg_and_cleans_up() {
    let feederd = Feederd::start("");
    let worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let body = ffmpeg_job(
        &clip("slow.mp4", 20, "1280x720"),
        &feederd.dir.path().join("c.mp4"),
        slow_options(),
    );
    let id = api.submit_id(&body).await;
    api.wait_for(&id, &["ENCODING"], MINUTE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !processes_mentioning(&id).is_empty(),
        "ffmpeg should be running"
    );
    let answer: Value = api
        .http
        .post(format!("{}/v1/jobs/{id}/cancel", api.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["state"], "ENCODING");
    let job = api
        .wait_for(&id, &["CANCELED"], Duration::from_secs(10))
        .await;
    assert_eq!(job["state"], "CANCELED");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        processes_mentioning(&id).is_empty(),
        "ffmpeg survived the cancel"
    );
    let leftovers: Vec<_> = std::fs::read_dir(worker.scratch_dir()).unwrap().collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
}

#[tokio::test]
async fn killed_worker_takes_ffmpeg_with_it_and_the_job_is_retried_once() {
    let feederd = Feederd::start("");
    let mut first = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let dest = feederd.dir.path().join("retried.mp4");
    let body = ffmpeg_job(
        &clip("medium.mp4", 6, "640x360"),
        &dest,
        json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "slower"], ["threads", "1"]]}]),
    );
    let id = api.submit_id(&body).await;
    api.wait_for(&id, &["ENCODING"], MINUTE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ffmpeg = processes_mentioning(&id);
    assert!(!ffmpeg.is_empty());
    first.proc.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        processes_mentioning(&id).is_empty(),
        "ffmpeg outlived its SIGKILLed worker: {ffmpeg:?}"
    );

    let _second = feederd.worker(1, "");
    let job = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTE).await;
    assert_eq!(job["state"], "FINISHED", "{job}");
    assert_eq!(job["attempts"], 2);
    assert_eq!(stream(&probe(&dest), "video")["codec_name"], "h264");
    let deliveries_log = feederd.log();
    assert!(deliveries_log.contains("lease expired"), "{deliveries_log}");
}

#[tokio::test]
async fn a_stale_worker_cannot_finish_a_job_it_lost() {
    let feederd = Feederd::start("");
    let api = Api::new(&feederd.url);
    let body = ffmpeg_job(
        &clip("tiny.mp4", 1, "320x240"),
        &feederd.dir.path().join("f.mp4"),
        json!([{"outfile_options": [["f", "mp4"]]}]),
    );
    let id = api.submit_id(&body).await;
    let lease = |name: &'static str| {
        let api = &api;
        async move {
            let answer = api.lease_as(name, 1, 8000).await;
            answer["leases"][0]["token"].as_str().unwrap().to_string()
        }
    };
    let stale = lease("stale").await;
    // No heartbeats: after the 3 s TTL and 1 s backoff the job is leased again.
    let fresh = lease("fresh").await;
    assert_ne!(stale, fresh);
    for state in ["ENCODING", "UPLOADING", "FINISHED", "ERROR"] {
        let answer = api
            .http
            .post(format!("{}/v1/workers/jobs/{id}/state", api.url))
            .json(&json!({"token": stale, "state": state}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 409);
        assert_eq!(
            answer.json::<Value>().await.unwrap()["error_code"],
            "lease_lost"
        );
    }
    let job = api.job(&id).await;
    assert_eq!(job["state"], "DOWNLOADING");
    assert_eq!(job["node_id"], "fresh");
    let ok = api
        .http
        .post(format!("{}/v1/workers/jobs/{id}/state", api.url))
        .json(&json!({"token": fresh, "state": "ENCODING"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn two_two_pass_jobs_run_at_once_on_one_worker() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let source = clip("medium.mp4", 6, "640x360");
    let two_pass = |b: &str| {
        json!([
        {"outfile_options": [["vcodec", "libx264"], ["b:v", b], ["pass", "1"], ["f", "mp4"], ["an", null]]},
        {"outfile_options": [["vcodec", "libx264"], ["b:v", b], ["pass", "2"], ["c:a", "aac"]]}])
    };
    let a = api
        .submit(&ffmpeg_job(
            &source,
            &feederd.dir.path().join("a.mp4"),
            two_pass("300k"),
        ))
        .await;
    let b = api
        .submit(&ffmpeg_job(
            &source,
            &feederd.dir.path().join("b.mp4"),
            two_pass("600k"),
        ))
        .await;
    let (a, b) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );
    // Both encode at the same time on the one node.
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        let (ja, jb) = (api.job(&a).await, api.job(&b).await);
        if ja["state"] == "ENCODING" && jb["state"] == "ENCODING" {
            break;
        }
        assert!(
            ["PENDING", "DOWNLOADING", "ENCODING"].contains(&ja["state"].as_str().unwrap()),
            "{ja}"
        );
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (id, name) in [(&a, "a.mp4"), (&b, "b.mp4")] {
        let job = api.wait_for(id, &["FINISHED", "ERROR"], MINUTE).await;
        assert_eq!(job["state"], "FINISHED", "{job}");
        let probe = probe(&feederd.dir.path().join(name));
        assert_eq!(stream(&probe, "video")["codec_name"], "h264");
    }
    let sizes: Vec<u64> = ["a.mp4", "b.mp4"]
        .iter()
        .map(|n| std::fs::metadata(feederd.dir.path().join(n)).unwrap().len())
        .collect();
    assert!(
        sizes[1] > sizes[0],
        "each pass 2 read its own pass-1 log: {sizes:?}"
    );
}

/// Runs `nommer ARGS JOB.json` for a job that encodes and for one whose
/// encoder does not exist. The first must exit 0 and leave an H.264 output; the
/// second must exit 1 and show ERROR with ffmpeg's complaint. Returns the
/// first's stdout and stderr.
fn cli_exit_codes(args: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let source = clip("tiny.mp4", 1, "320x240");
    let run = |options: Value, name: &str| {
        let job = ffmpeg_job(&source, &dir.path().join(name), options);
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, job.to_string()).unwrap();
        std::process::Command::new(BIN)
            .current_dir(dir.path())
            .args(args)
            .arg(&path)
            .output()
            .unwrap()
    };
    let ok = run(json!([{"outfile_options": [["c:v", "libx264"]]}]), "ok.mp4");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&ok.stdout).to_string(),
        String::from_utf8_lossy(&ok.stderr).to_string(),
    );
    assert!(ok.status.success(), "{stderr}");
    assert_eq!(
        stream(&probe(&dir.path().join("ok.mp4")), "video")["codec_name"],
        "h264"
    );
    let bad = run(
        json!([{"outfile_options": [["c:v", "libx264"], ["profile:v", "no_such_profile"]]}]),
        "bad.mp4",
    );
    assert_eq!(bad.status.code(), Some(1));
    let bad_stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        bad_stderr.contains("ERROR") && bad_stderr.contains("no_such_profile"),
        "{bad_stderr}"
    );
    (stdout, stderr)
}

#[tokio::test]
async fn one_shot_run_exits_zero_only_when_finished() {
    cli_exit_codes(&["run"]);
}

#[tokio::test]
async fn submit_wait_exits_zero_only_when_finished() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(2, "");
    let (stdout, stderr) = cli_exit_codes(&["--feederd", &feederd.url, "submit", "--wait"]);
    let id = stdout.trim();
    assert_eq!(id.len(), 50, "stdout is the job id: {id:?}");
    assert!(stderr.contains("FINISHED"), "{stderr}");
    assert_eq!(Api::new(&feederd.url).job(id).await["state"], "FINISHED");
}

#[tokio::test]
async fn http_source_in_and_http_put_out() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let server = FileServer::start().await;
    std::fs::copy(
        clip("tiny.mp4", 1, "320x240"),
        server.dir.path().join("in.mp4"),
    )
    .unwrap();
    let options = json!([{"outfile_options": [["c:v", "libx264"], ["c:a", "aac"]]}]);
    let body = json!({"source_path": format!("{}/in.mp4", server.url),
        "dest_path": format!("{}/out.mp4", server.url), "notify_url": null,
        "job_options": {"nommer": "ffmpeg", "options": options}});
    let id = api.submit_id(&body).await;
    let job = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTE).await;
    assert_eq!(job["state"], "FINISHED", "{job}");
    let probe = probe(&server.dir.path().join("out.mp4"));
    assert_eq!(stream(&probe, "video")["codec_name"], "h264");
    assert_eq!(stream(&probe, "audio")["codec_name"], "aac");

    let mut missing = body.clone();
    missing["source_path"] = json!(format!("{}/nothing.mp4", server.url));
    missing["dest_path"] = json!(format!("{}/never.mp4", server.url));
    let id = api.submit_id(&missing).await;
    let job = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTE).await;
    assert_eq!(job["state"], "ERROR", "{job}");
    let details = job["state_details"].as_str().unwrap();
    assert!(
        details.starts_with("The specified input file cannot be found: HTTP 404")
            && details.contains("/nothing.mp4"),
        "{details}"
    );
    assert!(!server.dir.path().join("never.mp4").exists());
}
