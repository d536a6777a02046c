//! PostgreSQL restarted under a running cluster: feederd and nommerd
//! reconnect by themselves and every job completes. Its own test binary, so
//! the restart hits no other test's database server.

mod common;

use common::*;
use nommer_testkit::postgres::PgServer;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_completes_across_a_database_restart() {
    let server = PgServer::shared();
    let store = server.fresh_database().await;
    let replicas = [Feederd::start_on(&store, ""), Feederd::start_on(&store, "")];
    let workers = [replicas[0].worker(2, ""), replicas[1].worker(2, "")];
    let api = Api::new(&replicas[0].url);
    let source = clip("small.mp4", 2, "320x240");
    let out = tempfile::tempdir().unwrap();
    let options =
        json!([{"outfile_options": [["c:v", "libx264"], ["preset", "fast"], ["threads", "1"]]}]);
    let mut jobs = Vec::new();
    for i in 0..20 {
        let dest = out.path().join(format!("out{i}.mp4"));
        let id = api
            .submit_id(&ffmpeg_job(&source, &dest, options.clone()))
            .await;
        jobs.push((id, dest));
    }
    api.wait_for(&jobs[3].0, &["FINISHED"], Duration::from_secs(60))
        .await;

    server.stop();
    // While the database is down the API says so, with a stable code.
    let answer = api
        .http
        .get(format!("{}/v1/jobs/{}", api.url, jobs[0].0))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error_code"], "store_unavailable", "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again();

    let deadline = Instant::now() + Duration::from_secs(180);
    for (id, dest) in &jobs {
        let job = loop {
            let response = api
                .http
                .get(format!("{}/v1/jobs/{id}", api.url))
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                let job: serde_json::Value = response.json().await.unwrap();
                if ["FINISHED", "ERROR", "CANCELED", "ABANDONED"]
                    .contains(&job["state"].as_str().unwrap())
                {
                    break job;
                }
            }
            assert!(Instant::now() < deadline, "job {id} never ended");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        if job["state"] != "FINISHED" {
            let mentions = |log: String| -> String {
                log.lines()
                    .filter(|l| l.contains(id.as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            panic!(
                "{job}\nworker 0:\n{}\nworker 1:\n{}\nreplica 0:\n{}\nreplica 1:\n{}",
                mentions(workers[0].log()),
                mentions(workers[1].log()),
                mentions(replicas[0].log()),
                mentions(replicas[1].log())
            );
        }
        assert_eq!(stream(&probe(dest), "video")["codec_name"], "h264");
    }
    for replica in &replicas {
        assert!(
            reqwest_ok(&replica.url).await,
            "replica {} died with the database:\n{}",
            replica.url,
            replica.log()
        );
    }
}

async fn reqwest_ok(url: &str) -> bool {
    reqwest::get(format!("{url}/healthz"))
        .await
        .is_ok_and(|r| r.status() == 200)
}
