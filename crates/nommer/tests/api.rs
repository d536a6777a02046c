//! The HTTP API of the real binary: the seed's `/job/submit` on the wire, and
//! every error code.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// The request the seed's Python 2 client sends: `urllib2.Request(url, json.dumps(data))`.
async fn python_client_post(url: &str, body: &str) -> (u16, String, Value) {
    let response = ::reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("User-Agent", "Python-urllib/2.7")
        .header("Connection", "close")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let text = response.text().await.unwrap();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(json!({"raw": text})),
    )
}

#[tokio::test]
async fn seed_submit_endpoint_is_compatible_on_the_wire() {
    let feederd = Feederd::start("");
    let source = clip("tiny.mp4", 1, "320x240");
    // Python 2 json.dumps: ", " and ": " separators, notify_url always present.
    let body = format!(
        r#"{{"dest_path": "file:///tmp/nommer-compat-out.mp4", "notify_url": null, "source_path": "file://{}", "job_options": {{"nommer": "media_nommer.ec2nommerd.nommers.ffmpeg.FFmpegNommer", "options": [{{"outfile_options": [["vcodec", "libx264"], ["preset", "medium"], ["vprofile", "baseline"], ["b", "400k"], ["bufsize", "400k"], ["vf", "yadif,scale='640:trunc(ow/a/2)*2'"], ["pass", "1"], ["f", "mp4"], ["keyint_min", "60"], ["g", "120"], ["an", null]]}}, {{"outfile_options": [["vcodec", "libx264"], ["preset", "medium"], ["vprofile", "baseline"], ["b", "400k"], ["bufsize", "400k"], ["vf", "yadif,scale='640:trunc(ow/a/2)*2'"], ["pass", "2"], ["acodec", "libfaac"], ["ab", "128k"], ["async", "480"], ["keyint_min", "60"], ["g", "120"], ["f", "mp4"]], "move_atom_to_front": true}}]}}}}"#,
        source.display()
    );
    for path in ["/job/submit", "/job/submit/"] {
        let (status, content_type, answer) =
            python_client_post(&format!("{}{path}", feederd.url), &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(content_type, "application/json");
        assert_eq!(answer["success"], true);
        let id = answer["job_id"].as_str().unwrap();
        assert_eq!(id.len(), 50);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // The same id everywhere: v1 shows the job, PENDING, with the libfaac warning.
        let job = Api::new(&feederd.url).job(id).await;
        assert_eq!(job["id"], id);
        assert_eq!(job["state"], "PENDING");
        assert!(job["warnings"][0].as_str().unwrap().contains("libfaac"));
    }

    let seed_checks = [
        (
            json!({}),
            "Missing/invalid required key+val: ['source_path']",
        ),
        (
            json!({"source_path": "file:///a.mp4"}),
            "Missing/invalid required key+val: ['dest_path']",
        ),
        (
            json!({"source_path": "file:///a.mp4", "dest_path": "file:///b.mp4", "job_options": null}),
            "Missing/invalid required key+val: ['job_options']",
        ),
        (
            json!({"source_path": "file:///a.mp4", "dest_path": "file:///b.mp4", "job_options": {"nommer": "ffmpeg"}}),
            "Missing/invalid required key+val: ['job_options'][options]",
        ),
        (
            json!({"source_path": "file:///a.mp4", "dest_path": "file:///b.mp4", "job_options": {"options": [{}], "nommer": ""}}),
            "Missing/invalid required key+val: ['job_options'][nommer]",
        ),
    ];
    for (body, message) in seed_checks {
        let (status, _, answer) =
            python_client_post(&format!("{}/job/submit", feederd.url), &body.to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(answer["success"], false);
        assert_eq!(answer["message"], message);
        assert!(answer.get("job_id").is_none());
    }

    // Where the seed crashed with an HTML 500: a 4xx with a readable JSON body.
    for (body, code) in [
        ("", "empty_body"),
        ("{not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
    ] {
        let (status, content_type, answer) =
            python_client_post(&format!("{}/job/submit", feederd.url), body).await;
        assert_eq!(status, 400);
        assert_eq!(content_type, "application/json");
        assert_eq!(answer["success"], false);
        assert_eq!(answer["error_code"], code);
    }
    let client = ::reqwest::Client::new();
    let get = client
        .get(format!("{}/job/submit", feederd.url))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let missing = client
        .post(format!("{}/job/nope", feederd.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

struct Probe {
    api: Api,
    seen: BTreeSet<String>,
}

impl Probe {
    async fn expect(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
        status: u16,
        code: &str,
    ) {
        self.expect_with(method, path, &[], body, status, code)
            .await
    }

    async fn expect_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
        status: u16,
        code: &str,
    ) {
        let url = format!("{}{path}", self.api.url);
        let mut request = self.api.http.request(method.parse().unwrap(), url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, answer["error_code"].as_str().unwrap_or("")),
            (status, code),
            "{method} {path}: {answer}"
        );
        assert!(code.is_empty() || !answer["message"].as_str().unwrap_or("").is_empty());
        self.seen.insert(code.to_string());
    }
}

fn job(options: Value) -> String {
    json!({"source_path": "file:///in/a.mp4", "dest_path": "file:///out/b.mp4", "job_options": {"nommer": "ffmpeg", "options": options}}).to_string()
}

fn with(field: &str, value: Value) -> String {
    let mut body: Value =
        serde_json::from_str(&job(json!([{"outfile_options": [["f", "mp4"]]}]))).unwrap();
    body[field] = value;
    body.to_string()
}

#[tokio::test]
async fn every_error_code_is_answered() {
    let feederd = Feederd::start("max_body_bytes = 4096\n");
    let mut p = Probe {
        api: Api::new(&feederd.url),
        seen: BTreeSet::new(),
    };
    let post = "POST";
    p.expect(post, "/v1/jobs", Some("{}".into()), 400, "missing_field")
        .await;
    p.expect(post, "/v1/jobs", Some("".into()), 400, "empty_body")
        .await;
    p.expect(post, "/v1/jobs", Some("{".into()), 400, "invalid_json")
        .await;
    p.expect(post, "/v1/jobs", Some("\"x\"".into()), 400, "not_an_object")
        .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(format!("{{\"pad\": \"{}\"}}", "x".repeat(5000))),
        413,
        "body_too_large",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(with("source_path", json!(7))),
        400,
        "invalid_field",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(with("job_options", json!("text"))),
        400,
        "invalid_job_options",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(with(
            "job_options",
            json!({"nommer": "x.Y", "options": [{}]}),
        )),
        400,
        "unknown_nommer",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(job(json!("[]"))),
        400,
        "empty_passes",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(with("chunked", json!({"chunk_seconds": 10}))),
        400,
        "chunking_not_supported",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(job(json!([{}, {}, {}]))),
        400,
        "too_many_passes",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(job(json!([{"outfile_options": [["b"]]}]))),
        400,
        "invalid_option_pair",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(job(json!([{"outfile_options": [["b", [1]]]}]))),
        400,
        "invalid_option_value",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(job(json!([{"outfile_options": [["i", "/etc/passwd"]]}]))),
        400,
        "option_not_allowed",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(job(json!([{"outfile_options": [["b:v", null]]}]))),
        400,
        "option_missing_value",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(job(json!([{"outfile_options": [["an", "/x.mp4"]]}]))),
        400,
        "option_unexpected_value",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(job(
            json!([{"outfile_options": [["vf", "movie=/etc/passwd"]]}]),
        )),
        400,
        "filter_not_allowed",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(job(json!([{"infile_options": [["f", "LAVFI"]]}]))),
        400,
        "format_not_allowed",
    )
    .await;
    let noext = json!({"source_path": "file:///in/a.mp4", "dest_path": "file:///out/b", "job_options": {"nommer": "ffmpeg", "options": [{}]}});
    p.expect(
        post,
        "/v1/jobs",
        Some(noext.to_string()),
        400,
        "output_format_unknown",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(with("source_path", json!("file://relative.mp4"))),
        400,
        "uri_malformed",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(with("source_path", json!("ftp://host/a.mp4"))),
        400,
        "uri_unknown_scheme",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(with(
            "source_path",
            json!("http://169.254.169.254/latest/meta-data/x.mp4"),
        )),
        400,
        "address_not_allowed",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(with("notify_url", json!("http://[fe80::1]/hook"))),
        400,
        "address_not_allowed",
    )
    .await;
    p.expect("GET", "/v1/jobs?state=NOPE", None, 400, "invalid_query")
        .await;
    p.expect("GET", "/v1/jobs?limit=0", None, 400, "invalid_query")
        .await;
    p.expect("GET", "/v1/jobs?cursor=zz", None, 400, "invalid_query")
        .await;
    p.expect(
        "GET",
        &format!("/v1/jobs/{}", "0".repeat(50)),
        None,
        404,
        "not_found",
    )
    .await;
    p.expect("GET", "/nope", None, 404, "not_found").await;
    p.expect("DELETE", "/v1/jobs", None, 405, "method_not_allowed")
        .await;

    // A job to cancel twice, and one leased by hand to exercise the worker protocol.
    let source = clip("tiny.mp4", 1, "320x240");
    let body = ffmpeg_job(
        &source,
        &feederd.dir.path().join("x.mp4"),
        json!([{"outfile_options": [["f", "mp4"]]}]),
    );
    let first = p.api.submit(&body).await;
    let id = first["id"].as_str().unwrap();
    p.expect(
        post,
        &format!("/v1/jobs/{id}/cancel"),
        Some("{}".into()),
        200,
        "",
    )
    .await;
    p.seen.remove("");
    p.expect(
        post,
        &format!("/v1/jobs/{id}/cancel"),
        Some("{}".into()),
        409,
        "job_finished",
    )
    .await;
    let second = p.api.submit(&body).await;
    let id = second["id"].as_str().unwrap();
    let lease = p.api.lease_as("hand", 1, 0).await;
    let token = lease["leases"][0]["token"].as_str().unwrap().to_string();
    p.expect(
        post,
        &format!("/v1/workers/jobs/{id}/state"),
        Some(json!({"token": "bogus", "state": "ENCODING"}).to_string()),
        409,
        "lease_lost",
    )
    .await;
    p.expect(
        post,
        &format!("/v1/workers/jobs/{id}/state"),
        Some(json!({"token": token, "state": "FINISHED"}).to_string()),
        409,
        "invalid_transition",
    )
    .await;

    // Outputs and presets.
    p.expect(
        post,
        "/v1/jobs",
        Some(json!({"source_path": "file:///in/a.mp4", "outputs": [{"kind": "abr", "dest_path": "file:///out/s"}]}).to_string()),
        400,
        "invalid_outputs",
    )
    .await;
    p.expect(
        post,
        "/v1/jobs",
        Some(json!({"source_path": "file:///in/a.mp4", "dest_path": "file:///out/", "preset": "no_such_preset"}).to_string()),
        400,
        "unknown_preset",
    )
    .await;
    p.expect(
        "PUT",
        "/v1/presets/mine",
        Some(json!({"outputs": [{"kind": "sprite", "dest_path": "file:///out/s/", "every_seconds": 5}]}).to_string()),
        400,
        "invalid_preset",
    )
    .await;
    p.expect(
        "DELETE",
        "/v1/presets/web_medium",
        None,
        409,
        "preset_builtin",
    )
    .await;

    // Queues, idempotency keys and retries.
    p.expect(
        post,
        "/v1/jobs",
        Some(with("queue", json!("nosuch"))),
        400,
        "unknown_queue",
    )
    .await;
    let key = [("Idempotency-Key", "k-1")];
    p.expect_with(post, "/v1/jobs", &key, Some(job(json!([{}]))), 201, "")
        .await;
    p.expect_with(
        post,
        "/v1/jobs",
        &key,
        Some(with("priority", json!(3))),
        409,
        "idempotency_conflict",
    )
    .await;
    let pending = p
        .api
        .submit_id(&serde_json::from_str(&job(json!([{}]))).unwrap())
        .await;
    p.expect(
        post,
        &format!("/v1/jobs/{pending}/retry"),
        None,
        409,
        "not_retryable",
    )
    .await;

    let node = json!({"node_id": "n", "fleet": "static", "version": "t", "max_jobs": 1,
        "running_jobs": 0, "state": "active"});
    let leases: Vec<Value> = (0..257)
        .map(|i| json!({"job_id": format!("j{i}"), "token": "t"}))
        .collect();

    // File roots, tokens and a short body timeout need their own feederd.
    let strict = Feederd::start(
        "file_roots = [\"/srv/media\"]\nbody_timeout = 1\napi_tokens = [{name = \"ops\", token = \"s3cret\", role = \"admin\"}, {name = \"dash\", token = \"r3ad\", role = \"read\"}]\n",
    );
    let mut q = Probe {
        api: Api::new(&strict.url),
        seen: BTreeSet::new(),
    };
    q.expect(
        post,
        "/v1/jobs",
        Some(job(json!([{}]))),
        401,
        "unauthorized",
    )
    .await;
    // (The first feederd's max_body_bytes is too small for 257 leases.)
    q.expect(
        post,
        "/v1/workers/heartbeat",
        Some(json!({"node": node, "leases": leases}).to_string()),
        400,
        "too_many_leases",
    )
    .await;
    let denied = q
        .api
        .http
        .post(format!("{}/v1/jobs", strict.url))
        .bearer_auth("s3cret")
        .body(job(json!([{}])))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 400);
    assert_eq!(
        denied.json::<Value>().await.unwrap()["error_code"],
        "uri_not_allowed"
    );
    let forbidden = q
        .api
        .http
        .post(format!("{}/v1/jobs", strict.url))
        .bearer_auth("r3ad")
        .body(job(json!([{}])))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(
        forbidden.json::<Value>().await.unwrap()["error_code"],
        "forbidden"
    );
    // A body that stops arriving: the answer comes once body_timeout is over.
    let slow = slow_body(strict.port, "s3cret").await;
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    assert!(slow.contains("\"request_timeout\""), "{slow}");
    p.seen.extend(q.seen);
    p.seen
        .extend(["uri_not_allowed", "forbidden", "request_timeout"].map(String::from));

    // One event stream a replica: the second waits for none.
    let narrow = Feederd::start("max_long_polls = 1\n");
    let open = reqwest::get(format!("{}/v1/events", narrow.url))
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let mut r = Probe {
        api: Api::new(&narrow.url),
        seen: BTreeSet::new(),
    };
    r.expect("GET", "/v1/events", None, 503, "too_many_streams")
        .await;
    drop(open);
    p.seen.extend(r.seen);

    // Not reachable from outside on a healthy machine: a down store, an internal
    // bug. source_not_found needs an S3 server: tests/s3.rs answers it.
    let unreachable = ["store_unavailable", "internal", "source_not_found"];
    let missing: Vec<_> = nommer_model_codes()
        .into_iter()
        .filter(|c| !p.seen.contains(*c) && !unreachable.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "error codes never exercised: {missing:?}"
    );
}

/// POST a body that promises 100 bytes and sends 10; what feederd answers.
async fn slow_body(port: u16, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n{{\"source_\""
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), socket.read(&mut answer))
        .await
        .expect("feederd answers a stalled body")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

fn nommer_model_codes() -> Vec<&'static str> {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    // The docs list every code; keep this list and docs/API.md in step.
    let docs = include_str!("../../../docs/API.md");
    let codes = docs
        .split("## Error codes")
        .nth(1)
        .expect("docs/API.md has an error code table");
    codes
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
        .collect()
}

#[tokio::test]
async fn metrics_count_jobs_by_state_and_need_a_token_when_tokens_are_on() {
    let feederd = Feederd::start("api_tokens = [\"t0k\"]\nworker_token = \"w0rk\"\n");
    let http = reqwest::Client::new();
    let body = json!({"source_path": "file:///in.mp4", "dest_path": "file:///out.mp4", "notify_url": null,
        "job_options": {"nommer": "ffmpeg", "options": [{}]}});
    for _ in 0..2 {
        let answer = http
            .post(format!("{}/v1/jobs", feederd.url))
            .bearer_auth("t0k")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
    }
    let refused = http
        .get(format!("{}/metrics", feederd.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let answer = http
        .get(format!("{}/metrics", feederd.url))
        .bearer_auth("t0k")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = answer.text().await.unwrap();
    for line in [
        "nommer_jobs{state=\"PENDING\"} 2",
        "nommer_jobs{state=\"FINISHED\"} 0",
        "nommer_jobs_submitted_total 2",
        "nommer_leader 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
}

/// A batch of state reports: each is applied or refused on its own, in order,
/// and a batch over the limit is refused whole before anything is written.
#[tokio::test]
async fn batched_state_reports_are_answered_one_by_one() {
    let feederd = Feederd::start("");
    let api = Api::new(&feederd.url);
    let body = json!({"source_path": "file:///in.mp4", "dest_path": "file:///out.mp4", "notify_url": null,
        "job_options": {"nommer": "ffmpeg", "options": [{}]}});
    let (a, b) = (api.submit_id(&body).await, api.submit_id(&body).await);
    let lease = api.lease_as("hand", 2, 0).await;
    let token = |id: &str| {
        lease["leases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["job_id"] == id)
            .unwrap()["token"]
            .clone()
    };
    let post = |reports: Value| {
        api.http
            .post(format!("{}/v1/workers/reports", api.url))
            .json(&json!({ "reports": reports }))
            .send()
    };
    let too_many: Vec<Value> = (0..257)
        .map(|_| json!({"job_id": a, "token": token(&a), "state": "ENCODING"}))
        .collect();
    let refused = post(json!(too_many)).await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error_code"],
        "invalid_field"
    );
    assert_eq!(
        api.get(&format!("/v1/jobs/{a}")).await["state"],
        "DOWNLOADING"
    );

    let answer = post(json!([
        {"job_id": a, "token": token(&a), "state": "ENCODING", "warnings": ["resumed once"]},
        {"job_id": b, "token": "bogus", "state": "ENCODING"},
        {"job_id": a, "token": token(&a), "state": "UPLOADING"},
        {"job_id": b, "token": token(&b), "state": "FINISHED"},
        {"job_id": "nope", "token": "x", "state": "ENCODING"},
    ]))
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let results: Value = answer.json().await.unwrap();
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["state"], "ENCODING");
    assert_eq!(results[1]["error"]["error_code"], "lease_lost");
    assert_eq!(results[2]["state"], "UPLOADING");
    assert_eq!(results[3]["error"]["error_code"], "invalid_transition");
    assert_eq!(results[4]["error"]["error_code"], "not_found");
    let job_a = api.get(&format!("/v1/jobs/{a}")).await;
    assert_eq!(job_a["state"], "UPLOADING");
    assert_eq!(job_a["warnings"], json!(["resumed once"]));
    assert_eq!(
        api.get(&format!("/v1/jobs/{b}")).await["state"],
        "DOWNLOADING"
    );
}

/// `GET /v1/jobs/{id}?state=S&wait_ms=N` answers when the job leaves S, or
/// after N ms with the job unchanged.
#[tokio::test]
async fn a_job_read_can_wait_for_its_next_state() {
    let feederd = Feederd::start("");
    let api = Api::new(&feederd.url);
    let body = json!({"source_path": "file:///in.mp4", "dest_path": "file:///out.mp4", "notify_url": null,
        "job_options": {"nommer": "ffmpeg", "options": [{}]}});
    let id = api.submit_id(&body).await;
    let bad = api
        .http
        .get(format!(
            "{}/v1/jobs/{id}?state=PENDING&wait_ms=soon",
            api.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error_code"],
        "invalid_query"
    );

    let started = std::time::Instant::now();
    let unchanged = api
        .get(&format!("/v1/jobs/{id}?state=PENDING&wait_ms=300"))
        .await;
    assert_eq!(unchanged["state"], "PENDING");
    assert!(started.elapsed() >= Duration::from_millis(300));

    let waiting = {
        let api = Api::new(&feederd.url);
        let id = id.clone();
        tokio::spawn(async move {
            api.get(&format!("/v1/jobs/{id}?state=PENDING&wait_ms=20000"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    api.lease_as("hand", 1, 0).await;
    let changed = waiting.await.unwrap();
    assert_eq!(changed["state"], "DOWNLOADING");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait ended with the change, not at its deadline"
    );
}

/// Every metric `deploy/grafana/nommer.json` queries is one `/metrics`
/// serves; a finished job is counted in the phase and speed histograms
/// once, and each background loop reports its passes.
#[tokio::test]
async fn the_grafana_dashboard_names_only_metrics_that_exist() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let body = ffmpeg_job(
        &clip("metrics.mp4", 2, "320x240"),
        &feederd.dir.path().join("metrics-out.mp4"),
        json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "ultrafast"]]}]),
    );
    let id = api.submit_id(&body).await;
    let job = api
        .wait_for(&id, &["FINISHED", "ERROR"], Duration::from_secs(60))
        .await;
    assert_eq!(job["state"], "FINISHED", "{job}");
    let scrape = || async {
        reqwest::get(format!("{}/metrics", feederd.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // The phases are read off the request path: wait for them to land.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape().await;
        if text.contains("nommer_phase_seconds_count{phase=\"upload\"} 1") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no phases counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for phase in ["queue_wait", "download", "encode", "upload"] {
        let line = format!("nommer_phase_seconds_count{{phase=\"{phase}\"}} 1");
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.lines().any(|l| l == "nommer_encode_speed_count 1"),
        "{text}"
    );
    for name in ["reaper", "notifier", "retention"] {
        let runs = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("nommer_loop_runs_total{{loop=\"{name}\"}} ")))
            .and_then(|n| n.parse::<f64>().ok());
        assert!(runs.is_some_and(|n| n >= 1.0), "{name}: {runs:?}");
    }

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/nommer.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut named = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("nommer_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                named.insert(name);
            }
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    let served: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in &named {
        assert!(
            served.contains(name.as_str()),
            "the dashboard queries {name}, which /metrics does not serve"
        );
    }
}
