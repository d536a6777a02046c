//! What an integrator relies on: idempotent submits, priorities and queues,
//! retries, the event feed and stream (resumed on another replica), JSON
//! webhooks verified with the Standard Webhooks reference library and
//! redelivered, and retention. The real binary, ffmpeg, PostgreSQL and the
//! reference library from PyPI.

mod common;

use common::*;
use nommer_testkit::postgres::PgServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(60);
const APP: &str = "app-t0ken-integrations";
const OTHER: &str = "other-t0ken-integrations";
const OPS: &str = "ops-t0ken-integrations";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn tokens() -> String {
    format!(
        "api_tokens = [
  {{name = \"app\", token = \"{APP}\", role = \"submit\"}},
  {{name = \"other\", token = \"{OTHER}\", role = \"submit\"}},
  {{name = \"ops\", token = \"{OPS}\", role = \"admin\"}},
]
"
    )
}

/// POST with a token and headers; the status, the headers and the JSON body.
async fn post(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn a_job(feederd: &Feederd, name: &str) -> Value {
    let source = clip("tiny.mp4", 1, "320x240");
    ffmpeg_job(
        &source,
        &feederd.dir.path().join(name),
        json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "ultrafast"]]}]),
    )
}

#[tokio::test]
async fn a_retried_submit_with_an_idempotency_key_gives_back_the_first_job() {
    let mut feederd = Feederd::start(&tokens());
    let jobs = format!("{}/v1/jobs", feederd.url);
    let body = a_job(&feederd, "once.mp4");
    let key = [("Idempotency-Key", "order-1017")];
    let (status, headers, first) = post(&jobs, Some(APP), &key, Some(&body)).await;
    assert_eq!(status, 201, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let id = first["id"].as_str().unwrap().to_string();

    // The same body, its keys in another order and spaced otherwise.
    let text = serde_json::to_string_pretty(&body).unwrap();
    let reordered: Value = serde_json::from_str(&text).unwrap();
    let (status, headers, again) = post(&jobs, Some(APP), &key, Some(&reordered)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["id"], id.as_str());

    let mut changed = body.clone();
    changed["priority"] = json!(5);
    let (status, _, refused) = post(&jobs, Some(APP), &key, Some(&changed)).await;
    assert_eq!(
        (status, refused["error_code"].as_str()),
        (409, Some("idempotency_conflict"))
    );

    let (status, _, theirs) = post(&jobs, Some(OTHER), &key, Some(&body)).await;
    assert_eq!(status, 201, "another token's key is its own: {theirs}");
    assert_ne!(theirs["id"], id.as_str());

    let bad = [("Idempotency-Key", "")];
    let (status, _, refused) = post(&jobs, Some(APP), &bad, Some(&body)).await;
    assert_eq!(
        (status, refused["error_code"].as_str()),
        (400, Some("invalid_field"))
    );

    // Kept in the store: a restarted feederd still knows the key.
    feederd.restart();
    let (status, headers, after) = post(&jobs, Some(APP), &key, Some(&body)).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(after["id"], id.as_str());
    let (_, list) = get(&jobs, Some(OPS)).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn queues_pause_and_resume_and_jobs_name_their_queue_and_priority() {
    let feederd = Feederd::start("[queues.slow]\nmax_concurrency = 1\n");
    let url = |path: &str| format!("{}{path}", feederd.url);
    let mut body = a_job(&feederd, "q.mp4");
    body["queue"] = json!("nosuch");
    let (status, _, refused) = post(&url("/v1/jobs"), None, &[], Some(&body)).await;
    assert_eq!(
        (status, refused["error_code"].as_str()),
        (400, Some("unknown_queue")),
        "{refused}"
    );
    assert!(refused["message"].as_str().unwrap().contains("slow"));
    body["queue"] = json!("default");
    body["priority"] = json!(51);
    let (status, _, refused) = post(&url("/v1/jobs"), None, &[], Some(&body)).await;
    assert_eq!(
        (status, refused["error_code"].as_str()),
        (400, Some("invalid_field"))
    );

    // A page of another site cannot ride the open API on loopback.
    for header in [
        ("Sec-Fetch-Site", "cross-site"),
        ("Origin", "https://evil.example"),
    ] {
        let (status, _, refused) =
            post(&url("/v1/queues/default/pause"), None, &[header], None).await;
        assert_eq!(
            (status, refused["error_code"].as_str()),
            (403, Some("forbidden")),
            "{header:?}"
        );
    }
    let (status, _, paused) = post(&url("/v1/queues/default/pause"), None, &[], None).await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    let mut waiting = a_job(&feederd, "waiting.mp4");
    waiting["priority"] = json!(-7);
    let waiting = post(&url("/v1/jobs"), None, &[], Some(&waiting)).await.2;
    assert_eq!(
        (&waiting["queue"], &waiting["priority"]),
        (&json!("default"), &json!(-7))
    );
    let mut slow = a_job(&feederd, "slow.mp4");
    slow["queue"] = json!("slow");
    let slow = post(&url("/v1/jobs"), None, &[], Some(&slow)).await.2;
    let _worker = feederd.worker(2, "");
    let api = Api::new(&feederd.url);
    let done = api
        .wait_for(slow["id"].as_str().unwrap(), &["FINISHED", "ERROR"], MINUTE)
        .await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    let id = waiting["id"].as_str().unwrap();
    assert_eq!(
        api.job(id).await["state"],
        "PENDING",
        "a paused queue leases nothing while another queue's job ran"
    );
    let (_, queues) = get(&url("/v1/queues"), None).await;
    let default = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(
        (&default["paused"], &default["pending"]),
        (&json!(true), &json!(1))
    );
    assert!(queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == "slow" && q["max_concurrency"] == 1));
    let (status, _, _) = post(&url("/v1/queues/default/resume"), None, &[], None).await;
    assert_eq!(status, 200);
    let done = api.wait_for(id, &["FINISHED", "ERROR"], MINUTE).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
}

#[tokio::test]
async fn pause_and_resume_are_for_admins_and_retry_for_the_jobs_owner() {
    let feederd = Feederd::start(&tokens());
    let url = |path: &str| format!("{}{path}", feederd.url);
    let (status, _, _) = post(&url("/v1/queues/default/pause"), Some(APP), &[], None).await;
    assert_eq!(status, 403);
    let (status, _, _) = post(&url("/v1/queues/nosuch/pause"), Some(OPS), &[], None).await;
    assert_eq!(status, 404);

    // A job that fails: its source does not exist.
    let mut body = a_job(&feederd, "r.mp4");
    body["source_path"] = json!(file_uri(&feederd.dir.path().join("missing.mp4")));
    body["priority"] = json!(9);
    let failed = post(&url("/v1/jobs"), Some(APP), &[], Some(&body)).await.2;
    let id = failed["id"].as_str().unwrap().to_string();
    let (status, _, refused) =
        post(&url(&format!("/v1/jobs/{id}/retry")), Some(APP), &[], None).await;
    assert_eq!(
        (status, refused["error_code"].as_str()),
        (409, Some("not_retryable")),
        "a PENDING job is not retried"
    );
    let _worker = feederd.worker(1, "");
    let deadline = Instant::now() + MINUTE;
    loop {
        let (_, job) = get(&url(&format!("/v1/jobs/{id}")), Some(APP)).await;
        if job["state"] == "ERROR" {
            break;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, _) = post(
        &url(&format!("/v1/jobs/{id}/retry")),
        Some(OTHER),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404, "another token's job is not seen");
    let (status, _, retry) =
        post(&url(&format!("/v1/jobs/{id}/retry")), Some(APP), &[], None).await;
    assert_eq!(status, 201, "{retry}");
    assert_eq!(retry["retry_of"], id.as_str());
    assert_ne!(retry["id"], id.as_str());
    assert_eq!(
        (
            &retry["priority"],
            &retry["job_options"],
            &retry["source_path"]
        ),
        (&json!(9), &failed["job_options"], &failed["source_path"]),
        "the same spec"
    );
    assert_eq!(retry["submitted_by"], "app");

    let (status, events) = get(&url(&format!("/v1/jobs/{id}/events")), Some(APP)).await;
    assert_eq!(status, 200);
    let events = events["events"].as_array().unwrap();
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"PENDING"));
    assert_eq!(states.last(), Some(&"ERROR"));
    assert!(events
        .windows(2)
        .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));
    assert!(events
        .iter()
        .all(|e| e["at"].as_str().unwrap().ends_with('Z')));
    let (status, _) = get(&url(&format!("/v1/jobs/{id}/events")), Some(OTHER)).await;
    assert_eq!(status, 404);
}

/// Verify webhooks with the reference library (`scripts/webhooks/verify.py`).
fn verify_with_reference_library(hooks: &[Hook]) -> Vec<Value> {
    use std::io::Write;
    let input: Vec<Value> = hooks
        .iter()
        .map(|h| {
            let headers: serde_json::Map<String, Value> = h
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
                .collect();
            json!({"headers": headers, "body": h.body})
        })
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/webhooks/verify.py"
    );
    let mut child = std::process::Command::new("/var/tmp/nommer-tools/venv/bin/python")
        .arg(script)
        .arg(SECRET)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the test venv's python (scripts/install-deps.sh --test)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn hooks_until(receiver: &Receiver, n: usize) -> Vec<Hook> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hooks = receiver.hooks();
        if hooks.len() >= n {
            return hooks;
        }
        assert!(
            Instant::now() < deadline,
            "{} webhooks of {n}: {hooks:?}",
            hooks.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn json_webhooks_verify_with_the_reference_library_and_can_be_redelivered() {
    let feederd = Feederd::start(&format!("webhook_secret = \"{SECRET}\"\n"));
    let _worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let (receiver, hook) = Receiver::start().await;
    let mut body = a_job(&feederd, "hooked.mp4");
    body["notify_url"] = json!(hook);
    let id = api.submit_id(&body).await;
    let job = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTE).await;
    assert_eq!(job["state"], "FINISHED", "{job}");
    let hooks = hooks_until(&receiver, 4).await;
    assert!(hooks
        .iter()
        .all(|h| h.headers["content-type"] == "application/json"));
    let verified = verify_with_reference_library(&hooks);
    let types: Vec<&str> = verified
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "job.downloading",
            "job.encoding",
            "job.uploading",
            "job.finished"
        ]
    );
    let events = api.get(&format!("/v1/jobs/{id}/events")).await;
    let event_ids: Vec<i64> = events["events"].as_array().unwrap()[1..]
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let data_ids: Vec<i64> = verified
        .iter()
        .map(|p| p["data"]["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(data_ids, event_ids, "each webhook names its event");
    let finished = &verified[3];
    assert!(
        chrono_like(finished["timestamp"].as_str().unwrap()),
        "{finished}"
    );
    let data = &finished["data"];
    assert_eq!(
        (&data["id"], &data["state"]),
        (&json!(id), &json!("FINISHED"))
    );
    assert_eq!(data["outputs"][0]["state"], "finished", "{data}");
    assert_eq!(data["dest_path"], job["dest_path"]);

    // Redelivered: the same webhook-id, verified again.
    let first_id = hooks[3].headers["webhook-id"].clone();
    let finished_event = data_ids[3];
    let (status, _, delivery) = post(
        &format!(
            "{}/v1/jobs/{id}/deliveries/{finished_event}/redeliver",
            feederd.url
        ),
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 202, "{delivery}");
    assert_eq!(delivery["event_id"], finished_event);
    let hooks = hooks_until(&receiver, 5).await;
    assert_eq!(hooks[4].headers["webhook-id"], first_id);
    let again = verify_with_reference_library(&hooks[4..]);
    assert_eq!(again[0]["type"], "job.finished");
    let (status, _, _) = post(
        &format!(
            "{}/v1/jobs/{id}/deliveries/999999999/redeliver",
            feederd.url
        ),
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404);

    // The seed's API keeps the seed's form.
    let mut legacy = a_job(&feederd, "legacy.mp4");
    legacy["notify_url"] = json!(hook);
    let (status, _, answer) = post(
        &format!("{}/job/submit", feederd.url),
        None,
        &[],
        Some(&legacy),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let legacy_id = answer["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + MINUTE;
    loop {
        let hooks = receiver.hooks();
        if let Some(h) = hooks
            .iter()
            .find(|h| h.job_id == legacy_id && h.state == "FINISHED")
        {
            assert_eq!(
                h.headers["content-type"],
                "application/x-www-form-urlencoded"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no form webhook for the seed's job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `2026-12-02T01:02:03.456Z`: RFC 3339 in UTC.
fn chrono_like(text: &str) -> bool {
    text.len() >= 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T'
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
}

/// Read SSE events from `url` until `done` holds for one; every event read.
async fn read_stream(
    url: &str,
    last_event_id: Option<&str>,
    done: impl Fn(&Sse) -> bool,
) -> Vec<Sse> {
    let mut request = reqwest::Client::new().get(url);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + MINUTE;
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the stream went quiet")
            .unwrap()
            .expect("the stream ended");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let sse = Sse {
                id,
                event,
                data: serde_json::from_str(&data).unwrap(),
            };
            let stop = done(&sse);
            events.push(sse);
            if stop {
                return events;
            }
        }
    }
}

#[tokio::test]
async fn the_event_stream_resumes_from_last_event_id_on_another_replica() {
    let store = PgServer::shared().fresh_database().await;
    let a = Feederd::start_on(&store, "");
    let b = Feederd::start_on(&store, "");
    let _worker = a.worker(1, "");
    let api = Api::new(&a.url);
    let source = clip("clip720.mp4", 3, "1280x720");
    let body = ffmpeg_job(
        &source,
        &a.dir.path().join("streamed.mp4"),
        json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "slow"], ["threads", "1"]]}]),
    );
    // Opened before the submit: the stream starts at the newest event.
    let stream_url = format!("{}/v1/events", a.url);
    let reader = tokio::spawn(async move {
        read_stream(&stream_url, None, |e| {
            e.event == "state" && e.data["state"] == "FINISHED"
        })
        .await
    });
    let id = api.submit_id(&body).await;
    let events = reader.await.unwrap();
    let states: Vec<&Sse> = events.iter().filter(|e| e.event == "state").collect();
    let names: Vec<&str> = states
        .iter()
        .map(|e| e.data["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "PENDING",
            "DOWNLOADING",
            "ENCODING",
            "UPLOADING",
            "FINISHED"
        ]
    );
    assert!(states.iter().all(|e| e.data["job_id"] == id.as_str()));
    assert!(states
        .iter()
        .all(|e| e.id.as_deref() == Some(e.data["id"].to_string().as_str())));
    let progress: Vec<&Sse> = events.iter().filter(|e| e.event == "progress").collect();
    assert!(
        !progress.is_empty(),
        "a running job's progress is streamed: {events:?}"
    );
    assert!(progress
        .iter()
        .all(|e| e.id.is_none() && e.data["job_id"] == id.as_str()));

    // Resumed on the other replica after the second state event: the rest
    // of them, the same ids, and no progress replayed.
    let resume_from = states[1].id.clone().unwrap();
    let resumed = read_stream(
        &format!("{}/v1/events?job={id}", b.url),
        Some(&resume_from),
        |e| e.event == "state" && e.data["state"] == "FINISHED",
    )
    .await;
    let resumed_ids: Vec<String> = resumed
        .iter()
        .filter(|e| e.event == "state")
        .map(|e| e.id.clone().unwrap())
        .collect();
    let expected: Vec<String> = states[2..].iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(resumed_ids, expected);
    assert!(resumed.iter().all(|e| e.event == "state"), "{resumed:?}");

    // An idempotency key holds across the replicas too.
    let key = [("Idempotency-Key", "replicated-1")];
    let once = a_job(&a, "once-across.mp4");
    let (status, _, first) = post(&format!("{}/v1/jobs", a.url), None, &key, Some(&once)).await;
    assert_eq!(status, 201, "{first}");
    let (status, headers, again) =
        post(&format!("{}/v1/jobs", b.url), None, &key, Some(&once)).await;
    assert_eq!((status, &again["id"]), (200, &first["id"]), "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn retention_deletes_ended_jobs_with_their_events() {
    let feederd = Feederd::start("job_retention = 1\nfeederd_prune_jobs_interval = 1\n");
    let api = Api::new(&feederd.url);
    let id = api.submit_id(&a_job(&feederd, "kept-briefly.mp4")).await;
    let (status, _, canceled) = post(
        &format!("{}/v1/jobs/{id}/cancel", feederd.url),
        None,
        &[],
        None,
    )
    .await;
    assert_eq!((status, &canceled["state"]), (200, &json!("CANCELED")));
    let pending = api.submit_id(&a_job(&feederd, "still-pending.mp4")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&format!("{}/v1/jobs/{id}", feederd.url), None).await;
        if status == 404 {
            assert_eq!(body["error_code"], "not_found");
            break;
        }
        assert!(Instant::now() < deadline, "the ended job was never deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = get(&format!("{}/v1/jobs/{id}/events", feederd.url), None).await;
    assert_eq!(status, 404);
    assert_eq!(
        api.job(&pending).await["state"],
        "PENDING",
        "an unfinished job stays"
    );
}

#[tokio::test]
async fn nommer_jobs_watch_prints_each_change_as_it_happens() {
    use std::io::{BufRead, BufReader};
    let feederd = Feederd::start("");
    let _worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let earlier = api.submit_id(&a_job(&feederd, "earlier.mp4")).await;
    api.wait_for(&earlier, &["FINISHED", "ERROR"], MINUTE).await;
    let mut watch = std::process::Command::new(BIN)
        .args(["--feederd", &feederd.url, "jobs", "--watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        lines_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a line")
    };
    assert!(next_line().starts_with("ID"), "the table's head first");
    let listed = next_line();
    assert!(
        listed.starts_with(&earlier) && listed.contains("FINISHED"),
        "{listed}"
    );
    let id = api.submit_id(&a_job(&feederd, "watched.mp4")).await;
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("FINISHED") {
        let line = next_line();
        let mut fields = line.split_whitespace();
        if fields.next() != Some(id.as_str()) {
            continue;
        }
        let state = fields.next().unwrap().to_string();
        if states.last() != Some(&state) {
            states.push(state);
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(
        states,
        [
            "PENDING",
            "DOWNLOADING",
            "ENCODING",
            "UPLOADING",
            "FINISHED"
        ]
    );
}
