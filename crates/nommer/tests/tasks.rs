//! Jobs carried out by tasks, through the real binary: a plain job is one
//! task; two tasks of one job run side by side on one node; a panic costs
//! only its task; an older worker's reports (no `task`) mean task 0.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn copy_job(source: &str, dest: &std::path::Path, nommer: &str) -> Value {
    json!({"source_path": source, "dest_path": file_uri(dest), "notify_url": null,
        "job_options": {"nommer": nommer, "options": [{}]}})
}

async fn tasks(api: &Api, id: &str) -> Vec<Value> {
    let answer = api.get(&format!("/v1/jobs/{id}/tasks")).await;
    answer["tasks"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_plain_job_is_one_task_and_lists_it() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let source = clip("tasks-plain.mp4", 1, "320x240");
    let dest = feederd.dir.path().join("plain-out.mp4");
    let id = api
        .submit_id(&copy_job(&file_uri(&source), &dest, "copy"))
        .await;
    let job = api.wait_for(&id, &["FINISHED", "ERROR"], WAIT).await;
    assert_eq!(job["state"], "FINISHED", "{job}");
    assert_eq!(job["progress"]["tasks_done"], 1, "{job}");
    assert_eq!(job["progress"]["tasks_total"], 1, "{job}");
    let listed = tasks(&api, &id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let task = &listed[0];
    assert_eq!(task["task"], 0);
    assert_eq!(task["kind"], "copy");
    assert_eq!(task["state"], "FINISHED");
    assert_eq!(task["node"], job["node_id"]);
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["progress"]["percent"], 100.0);
    assert!(task["started_at"].as_str().unwrap() <= task["finished_at"].as_str().unwrap());
    // Another's job, or none: 404 as for the job itself.
    let missing = api
        .http
        .get(format!(
            "{}/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/tasks",
            feederd.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// A source server that answers no request until two have arrived: a job
/// whose two tasks download from it finishes only if they run at once.
async fn rendezvous_server(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::watch::channel(0usize);
    let tx = Arc::new(tx);
    let count = arrived.clone();
    let app = axum::Router::new().route(
        "/source.bin",
        axum::routing::get(move || {
            let (count, tx, mut rx, body) = (count.clone(), tx.clone(), rx.clone(), body.clone());
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                tx.send_replace(n);
                let _ = rx.wait_for(|n| *n >= 2).await;
                body
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/source.bin", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, arrived)
}

#[tokio::test]
async fn two_tasks_of_one_job_run_side_by_side_on_one_node() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (source, arrived) = rendezvous_server(bytes.clone()).await;
    let dest = feederd.dir.path().join("pair.bin");
    let id = api.submit_id(&copy_job(&source, &dest, "pair")).await;
    let job = api.wait_for(&id, &["FINISHED", "ERROR"], WAIT).await;
    assert_eq!(job["state"], "FINISHED", "{job}");
    assert!(arrived.load(Ordering::SeqCst) >= 2);
    for n in 0..2 {
        let written = std::fs::read(format!("{}.{n}", dest.display())).unwrap();
        assert_eq!(written, bytes, "task {n}'s output");
    }
    let listed = tasks(&api, &id).await;
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|t| t["state"] == "FINISHED"),
        "{listed:?}"
    );
    assert_eq!(listed[0]["node"], listed[1]["node"], "one node ran both");
    assert_eq!(job["progress"]["tasks_done"], 2, "{job}");
}

#[tokio::test]
async fn a_panic_in_a_task_fails_only_that_task() {
    let feederd = Feederd::start("");
    let worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let source = file_uri(&clip("tasks-panic.mp4", 1, "320x240"));
    let dest = feederd.dir.path().join("panic-out.mp4");
    let id = api.submit_id(&copy_job(&source, &dest, "panic")).await;
    let job = api.ends_in_error(&id, "tool_failed", WAIT).await;
    let details = job["state_details"].as_str().unwrap();
    assert!(
        details.contains("worker panicked: a test nommer panicked on purpose"),
        "{job}"
    );
    // Its slot is free again: the worker's one slot takes the next job.
    let after = feederd.dir.path().join("after-panic.mp4");
    let next = api.submit_id(&copy_job(&source, &after, "copy")).await;
    let done = api.wait_for(&next, &["FINISHED", "ERROR"], WAIT).await;
    assert_eq!(done["state"], "FINISHED", "{done}\n{}", worker.log());
    assert_eq!(done["node_id"], job["node_id"]);
}

#[tokio::test]
async fn reports_without_a_task_mean_task_0() {
    let feederd = Feederd::start("");
    let api = Api::new(&feederd.url);
    let source = file_uri(&clip("tasks-old.mp4", 1, "320x240"));
    let id = api
        .submit_id(&copy_job(
            &source,
            &feederd.dir.path().join("old.mp4"),
            "copy",
        ))
        .await;
    let lease = api.lease_as("old-worker", 1, 0).await;
    let grant = &lease["leases"][0];
    assert_eq!(grant["task"], 0);
    assert_eq!(grant["kind"], "copy");
    let token = grant["token"].as_str().unwrap();
    let post = |path: String, body: Value| {
        let http = api.http.clone();
        async move { http.post(path).json(&body).send().await.unwrap() }
    };
    let single = post(
        format!("{}/v1/workers/jobs/{id}/state", feederd.url),
        json!({"token": token, "state": "ENCODING"}),
    )
    .await;
    assert_eq!(single.status(), 200);
    let node = json!({"node_id": "old-worker", "fleet": "static", "version": "t",
        "max_jobs": 1, "running_jobs": 1, "state": "active"});
    let beat = post(
        format!("{}/v1/workers/heartbeat", feederd.url),
        json!({"node": node, "leases": [{"job_id": id, "token": token, "progress": null}]}),
    )
    .await;
    let beat: Value = beat.json().await.unwrap();
    assert_eq!(beat["leases"][0]["valid"], true, "{beat}");
    let batch = post(
        format!("{}/v1/workers/reports", feederd.url),
        json!({"reports": [{"job_id": id, "token": token, "state": "UPLOADING", "details": null}]}),
    )
    .await;
    let batch: Value = batch.json().await.unwrap();
    assert_eq!(batch["results"][0]["state"], "UPLOADING", "{batch}");
    let listed = tasks(&api, &id).await;
    assert_eq!(listed[0]["state"], "UPLOADING");
    assert_eq!(api.job(&id).await["state"], "UPLOADING");
}
