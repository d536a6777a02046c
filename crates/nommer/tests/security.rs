//! Who may do what, within which bounds, without leaking a secret: token
//! roles on every route, the request bounds, webhook isolation, the address
//! policy beyond loopback, a full run grepped for every secret it used, and
//! the deployment units. Through the real binary on loopback.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP: &str = "app-t0ken-5ecret";
const APP2: &str = "app2-t0ken-5ecret";
const DASH: &str = "dash-t0ken-5ecret";
const OPS: &str = "ops-t0ken-5ecret";
const WORKER: &str = "w0rker-t0ken-5ecret";

fn tokens() -> String {
    format!(
        "api_tokens = [
  {{name = \"app\", token = \"{APP}\", role = \"submit\"}},
  {{name = \"app2\", token = \"{APP2}\", role = \"submit\"}},
  {{name = \"dash\", token = \"{DASH}\", role = \"read\"}},
  {{name = \"ops\", token = \"{OPS}\", role = \"admin\"}},
]
worker_token = \"{WORKER}\"
"
    )
}

fn pending_job() -> Value {
    json!({"source_path": "file:///in.mp4", "dest_path": "file:///out.mp4", "notify_url": null,
           "job_options": {"nommer": "ffmpeg", "options": [{}]}})
}

/// One request: its status and JSON body (Null when not JSON).
async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = match method {
        "GET" => http.get(url),
        "PUT" => http.put(url),
        "DELETE" => http.delete(url),
        _ => http.post(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    // An event stream never ends: its status is the answer.
    if response
        .headers()
        .get("content-type")
        .is_some_and(|t| t == "text/event-stream")
    {
        return (status, Value::Null);
    }
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Requests to one feederd as one caller: a token, or none.
#[derive(Clone)]
struct As {
    http: reqwest::Client,
    base: String,
    token: Option<&'static str>,
}

fn as_(feederd: &Feederd, token: Option<&'static str>) -> As {
    As {
        http: reqwest::Client::new(),
        base: feederd.url.clone(),
        token,
    }
}

impl As {
    async fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        call(&self.http, "GET", &url, self.token, None).await
    }

    async fn post(&self, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        call(&self.http, "POST", &url, self.token, body).await
    }
}

async fn submit_as(feederd: &Feederd, token: &'static str, body: &Value) -> String {
    let (status, job) = as_(feederd, Some(token)).post("/v1/jobs", Some(body)).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// Every operation of the served OpenAPI document answers as its security
/// says: 401 without a token, 403 with a role it does not name, and neither
/// with one it does. The document and the route table are the same list
/// (a unit test in feederd), so a new route is walked here too.
#[tokio::test]
async fn every_route_answers_each_token_as_its_security_says() {
    let feederd = Feederd::start(&tokens());
    let http = reqwest::Client::new();
    let id = submit_as(&feederd, APP, &pending_job()).await;
    let (status, doc) = as_(&feederd, None).get("/openapi.json").await;
    assert_eq!(status, 200);
    let by_role = [("submit", APP), ("read", DASH), ("admin", OPS)];
    let mut walked = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let method = method.to_uppercase();
            let url = |token: &str| {
                format!(
                    "{}{}",
                    feederd.url,
                    path.replace("{id}", &id)
                        .replace("{token}", token)
                        .replace("{name}", "walked")
                )
            };
            let body = matches!(method.as_str(), "POST" | "PUT").then(|| json!({}));
            let answer = |token: Option<&'static str>, in_path: Option<&'static str>| {
                let url = url(in_path.unwrap_or("no-such-token"));
                let (http, method, body) = (http.clone(), method.clone(), body.clone());
                async move { call(&http, &method, &url, token, body.as_ref()).await.0 }
            };
            let security = operation["security"].as_array().expect("security");
            let what = format!("{method} {path}");
            let Some(requirement) = security.first() else {
                let status = answer(None, None).await;
                // Signing in is public, and a token that is none is refused.
                let sign_in = what == "POST /ui/session" && status == 401;
                assert!(
                    sign_in || ![401, 403].contains(&status),
                    "{what}: public, answered {status}"
                );
                walked.insert(what, "public");
                continue;
            };
            let (scheme, scopes) = requirement.as_object().unwrap().iter().next().unwrap();
            let scopes: Vec<&str> = scopes
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            match scheme.as_str() {
                "worker_token" => {
                    assert_eq!(answer(None, None).await, 401, "{what} without a token");
                    assert_eq!(
                        answer(Some(OPS), None).await,
                        401,
                        "{what} with an API token"
                    );
                    let status = answer(Some(WORKER), None).await;
                    assert!(
                        ![401, 403].contains(&status),
                        "{what}: worker token, {status}"
                    );
                }
                "api_token" | "path_token" => {
                    let by_path = scheme == "path_token";
                    let with = |token: &'static str| {
                        if by_path {
                            answer(None, Some(token))
                        } else {
                            answer(Some(token), None)
                        }
                    };
                    // Without a token (for the path form, a path token that is none).
                    assert_eq!(answer(None, None).await, 401, "{what} without a token");
                    assert_eq!(with("not-a-token").await, 401, "{what} with a wrong token");
                    for (role, token) in by_role {
                        let status = with(token).await;
                        if scopes.contains(&role) {
                            assert!(
                                ![401, 403].contains(&status),
                                "{what}: {role} answered {status}"
                            );
                        } else {
                            assert_eq!(status, 403, "{what}: {role} must be refused");
                        }
                    }
                }
                other => panic!("{what}: unknown security scheme {other}"),
            }
            walked.insert(what, "guarded");
        }
    }
    for route in [
        "GET /healthz",
        "POST /v1/jobs",
        "POST /t/{token}/job/submit",
        "POST /v1/workers/lease",
        "GET /v1/nodes",
        "GET /metrics",
        "PUT /v1/presets/{name}",
        "DELETE /v1/presets/{name}",
    ] {
        assert!(walked.contains_key(route), "{route} not walked: {walked:?}");
    }
    assert!(walked.len() >= 17, "{walked:?}");
}

/// A submit token reads, lists and cancels only its own jobs (another's is
/// "not found"); read tokens see all and cancel none; the seed's routes
/// record the submitter too. The old flat token list still loads, as admin
/// tokens with names, and token files are read again on SIGHUP.
#[tokio::test]
async fn tokens_name_their_jobs_and_a_submit_token_sees_only_its_own() {
    let feederd = Feederd::start(&tokens());
    let mine = submit_as(&feederd, APP, &pending_job()).await;
    let theirs = submit_as(&feederd, APP2, &pending_job()).await;
    let (status, seed) = as_(&feederd, None)
        .post(&format!("/t/{APP}/job/submit"), Some(&pending_job()))
        .await;
    assert_eq!((status, &seed["success"]), (200, &json!(true)), "{seed}");
    let by_path = seed["job_id"].as_str().unwrap().to_string();

    let ids = |list: &Value| -> Vec<String> {
        list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, list) = as_(&feederd, Some(APP)).get("/v1/jobs").await;
    assert_eq!(ids(&list), vec![by_path.clone(), mine.clone()]);
    let (_, list) = as_(&feederd, Some(APP2)).get("/v1/jobs").await;
    assert_eq!(ids(&list), vec![theirs.clone()]);
    let (_, list) = as_(&feederd, Some(DASH)).get("/v1/jobs").await;
    assert_eq!(ids(&list).len(), 3);
    for job in list["jobs"].as_array().unwrap() {
        let expected = if job["id"] == theirs { "app2" } else { "app" };
        assert_eq!(job["submitted_by"], expected, "{job}");
    }

    for (method, path) in [
        ("GET", format!("/v1/jobs/{mine}")),
        ("GET", format!("/v1/jobs/{mine}/deliveries")),
        ("POST", format!("/v1/jobs/{mine}/cancel")),
    ] {
        let app2 = as_(&feederd, Some(APP2));
        let (status, body) = match method {
            "GET" => app2.get(&path).await,
            _ => app2.post(&path, None).await,
        };
        assert_eq!(
            (status, body["error_code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (_, job) = as_(&feederd, Some(APP))
        .get(&format!("/v1/jobs/{mine}"))
        .await;
    assert_eq!(
        job["state"], "PENDING",
        "another token's cancel changed nothing"
    );
    let (status, _) = as_(&feederd, Some(DASH))
        .post(&format!("/v1/jobs/{mine}/cancel"), None)
        .await;
    assert_eq!(status, 403);
    let (status, job) = as_(&feederd, Some(APP))
        .post(&format!("/v1/jobs/{mine}/cancel"), None)
        .await;
    assert_eq!(
        (status, job["state"].as_str()),
        (200, Some("CANCELED")),
        "{job}"
    );
    let (status, job) = as_(&feederd, Some(OPS))
        .post(&format!("/v1/jobs/{theirs}/cancel"), None)
        .await;
    assert_eq!(
        (status, job["state"].as_str()),
        (200, Some("CANCELED")),
        "{job}"
    );

    // The old form: strings are admin tokens named token-1, token-2, ...
    let flat = Feederd::start("api_tokens = [\"flat-one\", \"flat-two\"]\n");
    let id = submit_as(&flat, "flat-two", &pending_job()).await;
    let (_, job) = as_(&flat, Some("flat-one"))
        .get(&format!("/v1/jobs/{id}"))
        .await;
    assert_eq!(job["submitted_by"], "token-2");
    assert!(
        flat.log().contains("plain strings are admin tokens"),
        "{}",
        flat.log()
    );

    // Token files, read again on SIGHUP.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.token");
    std::fs::write(&file, "first-t0ken\n").unwrap();
    let rotating = Feederd::start(&format!(
        "api_tokens = [{{name = \"app\", token_file = \"{}\", role = \"submit\"}}]\n",
        file.display()
    ));
    submit_as(&rotating, "first-t0ken", &pending_job()).await;
    std::fs::write(&file, "second-t0ken\n").unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &rotating.proc.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rotating.log().contains("tokens reloaded") {
        assert!(Instant::now() < deadline, "{}", rotating.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = as_(&rotating, Some("first-t0ken"))
        .post("/v1/jobs", Some(&pending_job()))
        .await;
    assert_eq!(status, 401, "the old token is gone");
    submit_as(&rotating, "second-t0ken", &pending_job()).await;
}

/// A lease request takes at most the node's slots (and `max_lease_batch`);
/// past `max_long_polls` a long-poll answers at once; a client that never
/// finishes its headers is cut off after `header_timeout`.
#[tokio::test]
async fn requests_stay_within_their_bounds() {
    let feederd = Feederd::start("max_long_polls = 1\nmax_lease_batch = 2\nheader_timeout = 1\n");
    let api = Api::new(&feederd.url);
    let open = as_(&feederd, None);
    for _ in 0..4 {
        api.submit_id(&pending_job()).await;
    }
    let lease = |max_jobs: u32, max: u32| {
        let node = json!({"node_id": format!("n{max_jobs}"), "fleet": "static", "version": "t",
            "max_jobs": max_jobs, "running_jobs": 0, "state": "active"});
        let body = json!({"node": node, "max": max, "wait_ms": 0});
        let open = open.clone();
        async move { open.post("/v1/workers/lease", Some(&body)).await.1 }
    };
    assert_eq!(
        lease(1, 50).await["leases"].as_array().unwrap().len(),
        1,
        "the node's slots"
    );
    assert_eq!(
        lease(100, 100).await["leases"].as_array().unwrap().len(),
        2,
        "max_lease_batch"
    );

    // Two long-polls on a job that does not change: one holds the only slot,
    // the other answers at once; the held one answers when the job changes.
    let id = api.submit_id(&pending_job()).await;
    let poll = || {
        let (open, path) = (
            open.clone(),
            format!("/v1/jobs/{id}?state=PENDING&wait_ms=30000"),
        );
        tokio::spawn(async move { open.get(&path).await })
    };
    let (mut first, mut second) = (poll(), poll());
    let (done, still_waiting) = tokio::select! {
        done = &mut first => (done, second),
        done = &mut second => (done, first),
    };
    let (status, job) = done.unwrap();
    assert_eq!((status, job["state"].as_str()), (200, Some("PENDING")));
    assert!(
        !still_waiting.is_finished(),
        "the other poll holds the slot"
    );
    open.post(&format!("/v1/jobs/{id}/cancel"), None).await;
    let (status, job) = still_waiting.await.unwrap();
    assert_eq!((status, job["state"].as_str()), (200, Some("CANCELED")));

    // Headers that never end: the connection is closed.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", feederd.port))
        .await
        .unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), socket.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a connection with unfinished headers stays open"
    );
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    // Nothing at all, and nothing after a first request: closed as well.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", feederd.port))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(15), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a connection that sends nothing stays open");
    let mut kept = tokio::net::TcpStream::connect(("127.0.0.1", feederd.port))
        .await
        .unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), kept.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "an idle kept-alive connection stays open");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

/// A loopback server that accepts connections and never answers, counting
/// how many it holds at once.
async fn tarpit() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?token=t", listener.local_addr().unwrap());
    let (held, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h, m) = (held.clone(), most.clone());
    tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let now = h.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let h = h.clone();
            sockets.push(tokio::spawn(async move {
                // Read and discard until the client gives up; answer nothing.
                let mut sink = [0u8; 1024];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                h.fetch_sub(1, Ordering::SeqCst);
            }));
        }
    });
    (url, held, most)
}

/// Webhooks to a receiver that never answers hold at most
/// `webhook_per_host` deliveries, and another receiver's jobs are delivered
/// meanwhile, without waiting for them, even when the stuck receiver's
/// events would fill the notifier's whole batch (64).
#[tokio::test]
async fn a_webhook_receiver_that_never_answers_delays_only_its_own_jobs() {
    let feederd = Feederd::start("webhook_timeout = 60\n");
    let api = Api::new(&feederd.url);
    let (pit, held, most) = tarpit().await;
    let (receiver, hook) = Receiver::start().await;
    let mut stuck = Vec::new();
    for _ in 0..70 {
        let mut body = pending_job();
        body["notify_url"] = json!(pit);
        let id = api.submit_id(&body).await;
        api.http
            .post(format!("{}/v1/jobs/{id}/cancel", feederd.url))
            .send()
            .await
            .unwrap();
        stuck.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while held.load(Ordering::SeqCst) < 4 {
        assert!(
            Instant::now() < deadline,
            "the tarpit never filled its 4 slots"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another host (the per-host bound is by name): localhost, not 127.0.0.1.
    let mut body = pending_job();
    body["notify_url"] = json!(hook.replace("127.0.0.1", "localhost"));
    let healthy = api.submit_id(&body).await;
    api.http
        .post(format!("{}/v1/jobs/{healthy}/cancel", feederd.url))
        .send()
        .await
        .unwrap();
    while receiver.hooks().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the healthy receiver waited behind the tarpit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hook = &receiver.hooks()[0];
    assert_eq!(
        (hook.job_id.as_str(), hook.state.as_str()),
        (healthy.as_str(), "CANCELED"),
        "{hook:?}"
    );
    // Meanwhile no tarpit delivery has ended, and never more than 4 were open.
    for id in &stuck {
        let deliveries = api.deliveries(id).await;
        let attempts: usize = deliveries["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["attempts"].as_array().unwrap().len())
            .sum();
        assert_eq!(attempts, 0, "{deliveries}");
    }
    assert_eq!(most.load(Ordering::SeqCst), 4);
}

/// Beyond loopback, private addresses are refused by default, and the lease
/// carries the policy to the worker; an operator may allow them explicitly.
#[tokio::test]
async fn private_addresses_are_forbidden_beyond_loopback_unless_allowed() {
    let http_source = json!({"source_path": "http://127.0.0.1:9/in.mp4", "dest_path": "s3://b/out.mp4",
        "notify_url": null, "job_options": {"nommer": "copy", "options": [{}]}});
    let object = json!({"source_path": "s3://b/in.mp4", "dest_path": "s3://b/out.mp4",
        "notify_url": null, "job_options": {"nommer": "copy", "options": [{}]}});
    for (extra, forbidden) in [("", true), ("forbid_private_addresses = false\n", false)] {
        let feederd = Feederd::start_listening(&format!("{}{extra}", tokens()), "0.0.0.0");
        let ops = as_(&feederd, Some(OPS));
        let (status, answer) = ops.post("/v1/jobs", Some(&http_source)).await;
        if forbidden {
            assert_eq!(
                (status, answer["error_code"].as_str()),
                (400, Some("address_not_allowed")),
                "{answer}"
            );
            assert_eq!(ops.post("/v1/jobs", Some(&object)).await.0, 201);
        } else {
            assert_eq!(status, 201, "{answer}");
        }
        let node = json!({"node_id": "n", "fleet": "static", "version": "t", "max_jobs": 1,
            "running_jobs": 0, "state": "active"});
        let lease = json!({"node": node, "max": 1, "wait_ms": 0});
        let (_, leased) = as_(&feederd, Some(WORKER))
            .post("/v1/workers/lease", Some(&lease))
            .await;
        assert_eq!(
            leased["leases"][0]["net_policy"]["forbid_private"], forbidden,
            "{leased}"
        );
    }
}

/// A source over `max_download_bytes` ends the job in ERROR
/// `source_too_large` before it is read.
#[tokio::test]
async fn a_source_over_max_download_bytes_is_refused() {
    let feederd = Feederd::start("");
    let _worker = feederd.worker(1, "max_download_bytes = 1000\n");
    let api = Api::new(&feederd.url);
    let source = clip("big.mp4", 1, "320x240");
    let out = tempfile::tempdir().unwrap();
    let body = json!({"source_path": file_uri(&source), "dest_path": file_uri(&out.path().join("o.mp4")),
        "notify_url": null, "job_options": {"nommer": "copy", "options": [{}]}});
    let id = api.submit_id(&body).await;
    let job = api
        .ends_in_error(&id, "source_too_large", Duration::from_secs(60))
        .await;
    assert!(
        job["state_details"]
            .as_str()
            .unwrap()
            .contains("max_download_bytes"),
        "{job}"
    );
    assert!(!out.path().join("o.mp4").exists());
}

/// The shipped systemd units pass `systemd-analyze verify` and carry the
/// hardening; the cloud-init config is the unit user's alone.
#[test]
fn deployment_units_are_hardened_and_verify() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    for unit in ["nommer-feederd.service", "nommer-nommerd.service"] {
        let text = std::fs::read_to_string(root.join("deploy/systemd").join(unit)).unwrap();
        for directive in [
            "User=nommer",
            "NoNewPrivileges=true",
            "ProtectSystem=strict",
            "ProtectHome=true",
            "PrivateTmp=true",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "CapabilityBoundingSet=\n",
            "LockPersonality=true",
            "ReadWritePaths=/var/lib/nommer",
        ] {
            assert!(text.contains(directive), "{unit} lacks {directive:?}");
        }
        // verify checks that ExecStart's binary exists: point it at this build.
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/nommer", BIN)).unwrap();
        let verify = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (scripts/install-deps.sh --test installs systemd)");
        let said = String::from_utf8_lossy(&verify.stderr).to_string()
            + &String::from_utf8_lossy(&verify.stdout);
        assert!(
            verify.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
        let security = std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=true"])
            .arg(&path)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&security.stdout);
        let level: f64 = report
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for")?
                    .1
                    .split(": ")
                    .nth(1)
            })
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure level in {report}"));
        assert!(level <= 3.5, "{unit}: exposure {level}\n{report}");
    }
    let cloud = std::fs::read_to_string(root.join("deploy/cloud-init/nommerd.yaml")).unwrap();
    let entry = cloud
        .split("- path: /etc/nommer/nommerd.toml")
        .nth(1)
        .expect("cloud-init writes nommerd.toml");
    let field = |name: &str| {
        entry
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .map(|v| v.trim_matches('"').to_string())
    };
    assert_eq!(field("owner").as_deref(), Some("nommer:nommer"));
    assert_eq!(field("permissions").as_deref(), Some("0400"));
    assert_eq!(field("defer").as_deref(), Some("true"));
}

/// A whole run with every kind of secret (API and worker tokens, the
/// webhook secret, the secrets key, storage keys in the URIs, a token in the
/// notify_url's query string), logged at debug: no log line, API answer or
/// webhook shows any of them.
#[tokio::test]
async fn no_secret_shows_in_any_log_answer_or_webhook() {
    use nommer_testkit::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
    let s3 = S3Server::shared();
    let bucket = s3.bucket("secrets");
    std::fs::create_dir_all(s3.object_path(&bucket, "in")).unwrap();
    std::fs::copy(
        clip("small.mp4", 1, "160x120"),
        s3.object_path(&bucket, "in/a.mp4"),
    )
    .unwrap();
    const WEBHOOK: &str = "whsec_c2VjcmV0LXdlYmhvb2sta2V5LWZvci10ZXN0cw==";
    const SEALING: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const HOOK_TOKEN: &str = "h00k-qu3ry-5ecret";
    // Top-level keys first: s3.config() opens the [s3] table.
    let config = format!(
        "{}webhook_secret = \"{WEBHOOK}\"\nsecrets_key = \"{SEALING}\"\n{}",
        tokens(),
        s3.config()
    );
    let feederd = Feederd::start_logging(&config, "debug");
    let worker = Worker::start(
        &feederd.url,
        1,
        &format!("worker_token = \"{WORKER}\"\n{}", s3.config()),
        &[("NOMMER_LOG", "debug")],
    );
    let (receiver, hook) = Receiver::start().await;
    let seed = |key: &str| format!("s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/{key}");
    let body = json!({"source_path": seed("in/a.mp4"), "dest_path": seed("out/a.mp4"),
        "notify_url": format!("{hook}?token={HOOK_TOKEN}"),
        "job_options": {"nommer": "ffmpeg", "options": [{"outfile_options": [["c:v", "libx264"], ["preset", "ultrafast"]]}]}});
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    let url = |path: &str| format!("{}{path}", feederd.url);
    let (status, job) = as_(&feederd, Some(APP)).post("/v1/jobs", Some(&body)).await;
    assert_eq!(status, 201, "{job}");
    answers.push(job.to_string());
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, job) = as_(&feederd, Some(APP))
            .get(&format!("/v1/jobs/{id}"))
            .await;
        if job["state"] == "FINISHED" {
            break;
        }
        assert!(
            job["state"] != "ERROR" && Instant::now() < deadline,
            "{job}\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while !receiver.hooks().iter().any(|h| h.state == "FINISHED") {
        assert!(Instant::now() < deadline, "no FINISHED webhook");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (path, token) in [
        (format!("/v1/jobs/{id}"), APP),
        ("/v1/jobs".to_string(), DASH),
        (format!("/v1/jobs/{id}/deliveries"), OPS),
        ("/v1/nodes".to_string(), DASH),
        ("/v1/fleet".to_string(), DASH),
        ("/metrics".to_string(), DASH),
    ] {
        let response = http
            .get(url(&path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        answers.push(response.text().await.unwrap());
    }
    // The seed's path form: request spans name the route, not the path.
    let (status, _) = as_(&feederd, None)
        .post(&format!("/t/{APP}/job/submit"), Some(&json!({})))
        .await;
    assert_eq!(status, 200);
    let (_, job) = as_(&feederd, Some(APP))
        .get(&format!("/v1/jobs/{id}"))
        .await;
    assert_eq!(
        job["notify_url"],
        hook.replace("/hook", "/REDACTED?REDACTED"),
        "{job}"
    );
    assert_eq!(
        job["source_path"],
        format!("s3://REDACTED@{bucket}/in/a.mp4")
    );
    let hooks: Vec<String> = receiver
        .hits
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, body)| format!("{headers:?} {body}"))
        .collect();
    let seen = [
        ("feederd log", feederd.log()),
        ("nommerd log", worker.log()),
        ("API answers", answers.join("\n")),
        ("webhooks", hooks.join("\n")),
    ];
    assert!(feederd.log().contains("DEBUG"), "feederd logged at debug");
    assert!(
        feederd.log().contains("/t/{token}/job/submit"),
        "no route template logged"
    );
    assert!(!feederd.log().contains("secrets_key is not set"));
    let secrets = [
        APP,
        DASH,
        OPS,
        WORKER,
        WEBHOOK,
        &WEBHOOK["whsec_".len()..],
        SEALING,
        SECRET_KEY,
        HOOK_TOKEN,
    ];
    for (what, text) in &seen {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows {secret}");
        }
    }
    // The key is sealed at rest too: the store holds no plain notify_url.
    let db = std::fs::read(feederd.dir.path().join("jobs.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains(HOOK_TOKEN) && !db.contains(SECRET_KEY));
}

/// A job's scratch directory is named by the job, the attempt and a fresh
/// nonce: nothing of the lease token, which ffmpeg's stderr could show.
#[tokio::test]
async fn scratch_directories_carry_no_lease_token() {
    let feederd = Feederd::start("");
    let worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let out = tempfile::tempdir().unwrap();
    let source = clip("long.mp4", 20, "640x360");
    let id = api
        .submit_id(&ffmpeg_job(
            &source,
            &out.path().join("o.mp4"),
            slow_options(),
        ))
        .await;
    api.wait_for(&id, &["ENCODING"], Duration::from_secs(60))
        .await;
    let names: Vec<String> = std::fs::read_dir(worker.scratch_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let nonce = names[0]
        .strip_prefix(&format!("job-{id}-1-"))
        .unwrap_or_else(|| panic!("{names:?}"));
    assert!(
        nonce.len() == 8 && nonce.chars().all(|c| c.is_ascii_hexdigit()),
        "{nonce}"
    );
    api.http
        .post(format!("{}/v1/jobs/{id}/cancel", feederd.url))
        .send()
        .await
        .unwrap();
}
