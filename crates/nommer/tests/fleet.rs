//! The fleet for real: feederd's local fleet starting nommerd processes for a
//! burst of jobs, never more than the maximum, and stopping them when idle;
//! EC2 launches, zombies and a worker's own idle termination against moto's
//! EC2 and a metadata stand-in.

mod common;

use common::*;
use nommer_testkit::moto::MotoServer;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_burst_starts_local_workers_up_to_the_maximum_and_idle_ones_stop() {
    let feederd = Feederd::start(
        "fleet = \"local\"\nmax_num_ec2_instances = 2\nmax_encoding_jobs_per_ec2_instance = 1\njob_overflow_thresh = 0\nfeederd_auto_scale_interval = 1\nnommerd_max_inactivity = 3\n",
    );
    let api = Api::new(&feederd.url);
    let source = clip("small.mp4", 2, "320x240");
    let out = tempfile::tempdir().unwrap();
    let options =
        json!([{"outfile_options": [["c:v", "libx264"], ["preset", "medium"], ["threads", "1"]]}]);
    let mut ids = Vec::new();
    for i in 0..6 {
        let dest = out.path().join(format!("burst{i}.mp4"));
        ids.push(
            api.submit_id(&ffmpeg_job(&source, &dest, options.clone()))
                .await,
        );
    }
    let prefix = format!("feederd-{}-local", feederd.port);
    let mut seen = HashSet::new();
    let mut most_at_once = 0;
    let deadline = Instant::now() + MINUTE;
    loop {
        let nodes = api.get("/v1/nodes").await;
        let active: Vec<String> = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "active" && n["fleet"] == "local")
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
        most_at_once = most_at_once.max(active.len());
        seen.extend(active);
        let mut done = 0;
        for id in &ids {
            if api.job(id).await["state"] == "FINISHED" {
                done += 1;
            }
        }
        if done == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the burst did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(most_at_once, 2, "workers at once: {seen:?}");
    assert!(seen.iter().all(|id| id.starts_with(&prefix)), "{seen:?}");

    // Idle past nommerd_max_inactivity: feederd stops them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_mentioning(&prefix).is_empty() {
        assert!(Instant::now() < deadline, "idle local workers kept running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fleet = api.get("/v1/fleet").await;
    assert_eq!(fleet["fleet"], "local");
    let events: Vec<&str> = fleet["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.iter().filter(|e| **e == "launched").count() >= 2,
        "{fleet}"
    );
    assert!(events.contains(&"stopped_idle"), "{fleet}");
    let decisions = fleet["decisions"].as_array().unwrap();
    assert!(decisions
        .iter()
        .all(|d| d["inputs"]["running"].as_u64().unwrap()
            + d["inputs"]["booting"].as_u64().unwrap()
            <= 2));
    assert!(decisions
        .iter()
        .any(|d| d["decision"]["launch"].as_u64() > Some(0)));
}

#[tokio::test]
async fn one_chunked_job_brings_the_local_fleet_to_its_maximum() {
    let feederd = Feederd::start(
        "fleet = \"local\"\nmax_num_ec2_instances = 3\nmax_encoding_jobs_per_ec2_instance = 1\njob_overflow_thresh = 0\nfeederd_auto_scale_interval = 1\nnommerd_max_inactivity = 30\n",
    );
    let api = Api::new(&feederd.url);
    let source = clip("fleet-chunked.mp4", 16, "320x240");
    let out = tempfile::tempdir().unwrap();
    let options = json!([{"outfile_options": [["c:v", "libx264"], ["preset", "slower"], ["threads", "1"], ["c:a", "aac"]]}]);
    let mut body = ffmpeg_job(&source, &out.path().join("fleet.mp4"), options);
    body["chunked"] = json!({"chunk_seconds": 2});
    let id = api.submit_id(&body).await;
    let mut most_at_once = 0;
    let deadline = Instant::now() + MINUTE;
    loop {
        let nodes = api.get("/v1/nodes").await;
        let active = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "active" && n["fleet"] == "local")
            .count();
        most_at_once = most_at_once.max(active);
        let job = api.job(&id).await;
        if job["state"] == "FINISHED" {
            break;
        }
        assert_ne!(job["state"], "ERROR", "{job}");
        assert!(
            Instant::now() < deadline,
            "the chunked job did not finish: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its eight chunks are the backlog: one job, the whole fleet.
    assert_eq!(most_at_once, 3);
    let nodes = nodes_of(&api, &id, "chunk").await;
    assert!(nodes.len() >= 2, "{nodes:?}");
}

fn moto_env() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
}

#[tokio::test]
async fn ec2_fleet_launches_tagged_instances_and_terminates_zombies() {
    moto_env();
    let moto = MotoServer::shared();
    let cluster = format!("c{}", std::process::id());
    let config = format!(
        "fleet = \"ec2\"\nmax_num_ec2_instances = 3\nmax_encoding_jobs_per_ec2_instance = 2\nfeederd_auto_scale_interval = 1\nworker_token = \"w0rk\"\n[ec2]\nendpoint = \"{}\"\nami = \"ami-12c6146b\"\ninstance_type = \"t3.micro\"\ncluster = \"{cluster}\"\nfeederd_url = \"http://feederd.internal:8001\"\nboot_grace = 3\nzombie_after = 3\n",
        moto.endpoint
    );
    let feederd = Feederd::start(&config);
    let api = Api::new(&feederd.url);
    let http = reqwest::Client::new();
    for i in 0..10 {
        let body = json!({"source_path": format!("file:///in{i}.mp4"), "dest_path": "file:///out.mp4", "notify_url": null,
            "job_options": {"nommer": "copy", "options": [{}]}});
        let answer = http
            .post(format!("{}/v1/jobs", feederd.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
    }
    // Nothing boots in moto: launched instances never register, and after
    // boot_grace they are terminated as zombies.
    let deadline = Instant::now() + MINUTE;
    let fleet = loop {
        let fleet = api.get("/v1/fleet").await;
        let events = fleet["events"].to_string();
        if events.contains("zombie_terminated") {
            break fleet;
        }
        assert!(
            Instant::now() < deadline,
            "no zombie was terminated: {fleet}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let launched = fleet["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "launched")
        .count();
    assert!(launched >= 3, "launched up to the maximum: {fleet}");
    // Only this cluster's tagged instances count, never more than the maximum
    // at once (a zombie's replacement comes after it is gone).
    // Right after zombies go, their replacements may not be launched yet:
    // look until one is, never seeing more than the maximum.
    let ec2 = nommer_fleet::ec2::Ec2Client::new("us-east-1", Some(&moto.endpoint)).await;
    loop {
        let tagged = ec2
            .describe_instances(&[
                ("tag:nommer:cluster", vec![cluster.clone()]),
                (
                    "instance-state-name",
                    vec!["pending".into(), "running".into()],
                ),
            ])
            .await
            .unwrap();
        assert!(tagged.len() <= 3, "{tagged:?}");
        if !tagged.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no instance is running");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(fleet["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["inputs"]["running"].as_u64().unwrap()
            + d["inputs"]["booting"].as_u64().unwrap()
            <= 3));
    assert!(feederd.log().contains("zombie"), "{}", feederd.log());
}

/// An IMDSv2 stand-in for one instance, with a switchable spot notice.
async fn metadata(instance_id: String, spot: std::sync::Arc<std::sync::Mutex<bool>>) -> String {
    use axum::http::StatusCode;
    use axum::routing::{get, put};
    let app = axum::Router::new()
        .route("/latest/api/token", put(|| async { "T" }))
        .route(
            "/latest/meta-data/instance-id",
            get(move || {
                let id = instance_id.clone();
                async move { id }
            }),
        )
        .route(
            "/latest/meta-data/placement/region",
            get(|| async { "us-east-1" }),
        )
        .route(
            "/latest/meta-data/spot/instance-action",
            get(move || {
                let spot = spot.clone();
                async move {
                    if *spot.lock().unwrap() {
                        (StatusCode::OK, "{\"action\": \"terminate\"}".to_string())
                    } else {
                        (StatusCode::NOT_FOUND, String::new())
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn instance_state(ec2: &nommer_fleet::ec2::Ec2Client, id: &str) -> String {
    ec2.describe_instances(&[("instance-id", vec![id.to_string()])])
        .await
        .unwrap()
        .first()
        .map(|i| i.state.clone())
        .unwrap_or_default()
}

/// An instance in moto and the worker settings of EC2 mode on it: the
/// client, the instance id, and the worker's config with `top` settings first.
async fn instance(
    spot: std::sync::Arc<std::sync::Mutex<bool>>,
    top: &str,
) -> (nommer_fleet::ec2::Ec2Client, String, String) {
    moto_env();
    let moto = MotoServer::shared();
    let ec2 = nommer_fleet::ec2::Ec2Client::new("us-east-1", Some(&moto.endpoint)).await;
    let spec = nommer_fleet::ec2::LaunchSpec {
        image_id: "ami-12c6146b".into(),
        instance_type: "t3.micro".into(),
        ..Default::default()
    };
    let id = ec2.run_instances(&spec, 1).await.unwrap().remove(0);
    let imds = metadata(id.clone(), spot).await;
    let config = format!(
        "fleet = \"ec2\"\n{top}[ec2]\nendpoint = \"{}\"\nimds_endpoint = \"{imds}\"\n",
        moto.endpoint
    );
    (ec2, id, config)
}

#[tokio::test]
async fn an_idle_ec2_worker_reports_its_instance_and_terminates_itself() {
    let (ec2, id, worker_config) =
        instance(Default::default(), "nommerd_max_inactivity = 2\n").await;
    let feederd = Feederd::start("");
    let worker = feederd.worker_with_env(
        1,
        &worker_config,
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    let api = Api::new(&feederd.url);
    // Its heartbeats carry the instance id.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = api.get("/v1/nodes").await;
        if nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["instance_id"] == id.as_str())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no node with instance {id}: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Idle past nommerd_max_inactivity with no lease: it says so and goes.
    let mut worker = worker;
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.proc.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the idle worker did not leave:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = instance_state(&ec2, &id).await;
    assert!(
        state == "shutting-down" || state == "terminated",
        "instance {id} is {state}"
    );
    let nodes: Value = api.get("/v1/nodes").await;
    let node = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["instance_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(node["state"], "terminated", "{node}");
}

#[tokio::test]
async fn a_spot_notice_hands_the_running_job_back_at_once() {
    let spot = std::sync::Arc::new(std::sync::Mutex::new(false));
    let (ec2, id, worker_config) = instance(spot.clone(), "").await;
    let feederd = Feederd::start("");
    let mut worker = feederd.worker(1, &worker_config);
    let api = Api::new(&feederd.url);
    let job = api
        .submit_id(&ffmpeg_job(
            &clip("slow.mp4", 20, "1280x720"),
            &feederd.dir.path().join("spot.mp4"),
            slow_options(),
        ))
        .await;
    api.wait_for(&job, &["ENCODING"], MINUTE).await;
    *spot.lock().unwrap() = true;
    let deadline = Instant::now() + Duration::from_secs(15);
    while worker.proc.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the worker ignored the spot notice:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = api.job(&job).await;
    assert_eq!(done["state"], "PENDING", "{done}");
    assert!(done["state_details"]
        .as_str()
        .unwrap()
        .contains("handed back"));
    assert!(worker.log().contains("spot interruption"));
    assert_eq!(
        instance_state(&ec2, &id).await,
        "running",
        "a spot worker does not terminate itself"
    );
}
