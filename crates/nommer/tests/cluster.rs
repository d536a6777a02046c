//! A cluster on PostgreSQL, proven by killing things: feederd replicas and
//! nommerd workers SIGKILLed mid-run, and a worker frozen past its lease.

mod common;

use common::*;
use nommer_testkit::postgres::PgServer;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn short_options() -> Value {
    json!([{"outfile_options": [["c:v", "libx264"], ["preset", "ultrafast"], ["c:a", "aac"], ["threads", "1"]]}])
}

async fn is_leader(api: &Api) -> bool {
    let Ok(response) = api.http.get(format!("{}/metrics", api.url)).send().await else {
        return false;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines().any(|l| l == "nommer_leader 1")
}

/// Jobs that ended, by state, across the cluster.
async fn states(api: &Api, ids: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in ids {
        let job = api.job(id).await;
        *counts
            .entry(job["state"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_jobs_survive_killing_the_leader_and_a_worker() {
    let store = PgServer::shared().fresh_database().await;
    let config = format!("webhook_secret = \"{SECRET}\"\n");
    let mut replicas = [
        Feederd::start_on(&store, &config),
        Feederd::start_on(&store, &config),
    ];
    let apis: Vec<Api> = replicas.iter().map(|f| Api::new(&f.url)).collect();
    let mut workers = vec![
        replicas[0].worker(2, ""),
        replicas[1].worker(2, ""),
        replicas[1].worker(2, ""),
    ];
    let (receiver, hook) = Receiver::start().await;
    let source = clip("tiny.mp4", 1, "320x240");
    let out = tempfile::tempdir().unwrap();

    let mut ids = Vec::new();
    let mut dests: Vec<PathBuf> = Vec::new();
    for i in 0..50 {
        let dest = out.path().join(format!("out{i}.mp4"));
        let mut body = ffmpeg_job(&source, &dest, short_options());
        body["notify_url"] = json!(hook);
        let job = apis[i % 2].submit(&body).await;
        ids.push(job["id"].as_str().unwrap().to_string());
        dests.push(dest);
    }

    // Mid-run: kill -9 the leader and a worker, then bring both back.
    let deadline = Instant::now() + Duration::from_secs(120);
    while states(&apis[0], &ids)
        .await
        .get("FINISHED")
        .copied()
        .unwrap_or(0)
        < 10
    {
        assert!(
            Instant::now() < deadline,
            "the cluster is not making progress"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leader = if is_leader(&apis[0]).await { 0 } else { 1 };
    assert!(is_leader(&apis[leader]).await, "one replica leads");
    replicas[leader].proc.kill9();
    workers[1].proc.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let survivor = 1 - leader;
    assert!(
        is_leader(&apis[survivor]).await,
        "the surviving replica took over within seconds"
    );
    replicas[leader].restart();
    workers[1] = replicas[1].worker(2, "");

    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let counts = states(&apis[survivor], &ids).await;
        if counts.get("FINISHED") == Some(&50) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all jobs finished: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let mut retried = 0;
    for (id, dest) in ids.iter().zip(&dests) {
        if apis[0].job(id).await["attempts"].as_u64() > Some(1) {
            retried += 1;
        }
        let deliveries = apis[0].deliveries(id).await;
        let finished = deliveries["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["job_state"] == "FINISHED")
            .count();
        assert_eq!(finished, 1, "job {id} has one FINISHED event: {deliveries}");
        assert_eq!(stream(&probe(dest), "video")["codec_name"], "h264");
    }

    assert!(
        retried > 0,
        "the killed worker's jobs were retried elsewhere"
    );

    // Every FINISHED webhook arrives, each job's under one webhook id.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut finished: HashMap<String, HashSet<String>> = HashMap::new();
        for hook in receiver.hooks() {
            if hook.state == "FINISHED" {
                let id = hook.headers["webhook-id"].to_str().unwrap().to_string();
                finished.entry(hook.job_id).or_default().insert(id);
            }
        }
        if finished.len() == 50 {
            for (job, webhook_ids) in &finished {
                assert_eq!(webhook_ids.len(), 1, "job {job}: {webhook_ids:?}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} FINISHED webhooks arrived",
            finished.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_past_its_lease_cannot_overwrite_the_new_result() {
    let store = PgServer::shared().fresh_database().await;
    let feederd = Feederd::start_on(&store, "");
    let api = Api::new(&feederd.url);
    let frozen = feederd.worker(1, "");
    let dest = feederd.dir.path().join("fenced.mp4");
    let options =
        json!([{"outfile_options": [["c:v", "libx264"], ["preset", "medium"], ["threads", "1"]]}]);
    let id = api
        .submit_id(&ffmpeg_job(
            &clip("medium.mp4", 6, "640x360"),
            &dest,
            options,
        ))
        .await;
    api.wait_for(&id, &["ENCODING"], Duration::from_secs(60))
        .await;
    // SAFETY: signals to a child we spawned and have not reaped.
    unsafe { libc::kill(frozen.proc.pid() as i32, libc::SIGSTOP) };

    let _other = feederd.worker(1, "");
    let job = api
        .wait_for(&id, &["FINISHED", "ERROR"], Duration::from_secs(120))
        .await;
    assert_eq!(job["state"], "FINISHED", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let before = std::fs::metadata(&dest).unwrap();
    use std::os::unix::fs::MetadataExt;

    unsafe { libc::kill(frozen.proc.pid() as i32, libc::SIGCONT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !frozen.log().contains("lease lost") && !frozen.log().contains("lease is gone") {
        assert!(
            Instant::now() < deadline,
            "the stale worker never said why it stopped:\n{}",
            frozen.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = std::fs::metadata(&dest).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec()),
        "the stale worker replaced the output"
    );
    let job = api.job(&id).await;
    assert_eq!(job["state"], "FINISHED");
    assert_ne!(job["node_id"], Value::Null);
    assert_eq!(stream(&probe(&dest), "video")["codec_name"], "h264");
}
