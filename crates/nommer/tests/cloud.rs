//! Google Cloud Storage and Azure Blob Storage end to end, against
//! emulators on loopback that the test command installs and starts:
//! fake-gcs-server (behind a gateway that checks service-account tokens as
//! GCS does) and Azurite (which checks shared keys and SAS). Jobs
//! gs -> encode -> gs, az -> encode -> az, s3 -> gs and az -> file; 64 MiB
//! streamed each way in bounded memory; missing objects, wrong credentials,
//! dropped connections and the source check at submit.

mod common;

use common::*;
use nommer_testkit::azurite::{Azurite, ACCOUNT_KEY};
use nommer_testkit::gcs::GcsServer;
use nommer_testkit::proxy::FaultProxy;
use nommer_testkit::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(90);
const BIG: usize = 64 << 20;

fn job(source: &str, dest: &str, nommer: &str, options: Value) -> Value {
    json!({"source_path": source, "dest_path": dest, "notify_url": null,
           "job_options": {"nommer": nommer, "options": options}})
}

fn encode() -> Value {
    json!([{"outfile_options": [["c:v", "libx264"], ["preset", "ultrafast"], ["c:a", "aac"]]}])
}

/// 64 MiB whose every MiB differs, so a misplaced range shows.
fn big_file(dir: &Path) -> PathBuf {
    let path = dir.join("big.bin");
    let block: Vec<u8> = (0..1 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    let mut bytes = Vec::with_capacity(BIG);
    for i in 0..(BIG >> 20) as u32 {
        bytes.extend_from_slice(&i.to_le_bytes());
        bytes.extend_from_slice(&block[4..]);
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A feederd with `config` and one worker with `worker_config`.
fn pair(config: &str, worker_config: &str) -> (Feederd, Worker, Api) {
    let feederd = Feederd::start(config);
    let worker = feederd.worker_with_env(
        2,
        worker_config,
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    );
    let api = Api::new(&feederd.url);
    (feederd, worker, api)
}

async fn run(api: &Api, body: &Value) -> Value {
    let id = api.submit_id(body).await;
    api.wait_for(&id, &["FINISHED", "ERROR"], MINUTE).await
}

async fn finished(api: &Api, body: &Value) -> Value {
    let done = run(api, body).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    done
}

/// A job that ends in ERROR with `expected` in its details; the job.
async fn fails_with(api: &Api, body: &Value, expected: &str) -> Value {
    let done = run(api, body).await;
    assert_eq!(done["state"], "ERROR", "{done}");
    let details = done["state_details"].as_str().unwrap();
    assert!(details.contains(expected), "{details}");
    done
}

/// A submit refused with `source_not_found` and the seed's message.
async fn refused_at_submit(api: &Api, body: &Value, uri: &str) {
    let answer = api
        .http
        .post(format!("{}/v1/jobs", api.url))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error_code"], "source_not_found", "{body}");
    let message = format!("The specified input file cannot be found: {uri}");
    assert_eq!(body["message"], message, "{body}");
}

fn assert_h264_aac(path: &Path) {
    let probe = probe(path);
    assert_eq!(stream(&probe, "video")["codec_name"], "h264");
    assert_eq!(stream(&probe, "audio")["codec_name"], "aac");
}

/// Asserts the worker stayed under the file's size: the 64 MiB streamed.
fn assert_streamed(worker: &Worker, what: &str) {
    let peak = peak_rss(worker.proc.pid());
    eprintln!("nommerd peak RSS over {what}: {} MiB", peak >> 20);
    assert!(
        peak < BIG as u64,
        "nommerd peaked at {} MiB over {what}",
        peak >> 20
    );
}

#[tokio::test]
async fn gcs_jobs_run_end_to_end_with_resumable_uploads() {
    let gcs = GcsServer::shared();
    let s3 = S3Server::shared();
    let media = gcs.bucket("gmedia").await;
    let out = gcs.bucket("gout").await;
    let dir = tempfile::tempdir().unwrap();
    gcs.put(&media, "in/clip one.mp4", &clip("small.mp4", 2, "320x240"))
        .await;
    let s3_bucket = s3.bucket("to-gcs");
    std::fs::copy(
        clip("small.mp4", 2, "320x240"),
        s3.object_path(&s3_bucket, "clip.mp4"),
    )
    .unwrap();
    // 4 MiB chunks: the 64 MiB upload is a resumable upload of 16.
    let config = format!("{}chunk_size_mib = 4\n{}", gcs.config(), s3.config());
    let (_feederd, worker, api) = pair(&config, &config);

    // gs -> encode -> gs, the key's '/' and ' ' escaped as GCS wants.
    finished(
        &api,
        &job(
            &format!("gs://{media}/in/clip%20one.mp4"),
            &format!("gs://{out}/encoded/clip.mp4"),
            "ffmpeg",
            encode(),
        ),
    )
    .await;
    let encoded = dir.path().join("encoded.mp4");
    std::fs::write(&encoded, gcs.get(&out, "encoded/clip.mp4").await.unwrap()).unwrap();
    assert_h264_aac(&encoded);

    // s3 -> encode -> gs.
    finished(
        &api,
        &job(
            &format!("s3://{s3_bucket}/clip.mp4"),
            &format!("gs://{out}/from-s3.mp4"),
            "ffmpeg",
            encode(),
        ),
    )
    .await;
    let from_s3 = dir.path().join("from-s3.mp4");
    std::fs::write(&from_s3, gcs.get(&out, "from-s3.mp4").await.unwrap()).unwrap();
    assert_h264_aac(&from_s3);

    // 64 MiB up (a resumable upload) and back down, streamed both ways.
    let big = big_file(dir.path());
    finished(
        &api,
        &job(
            &file_uri(&big),
            &format!("gs://{out}/big.bin"),
            "copy",
            json!([{}]),
        ),
    )
    .await;
    assert!(gcs.get(&out, "big.bin").await.unwrap() == std::fs::read(&big).unwrap());
    let back = dir.path().join("back.bin");
    finished(
        &api,
        &job(
            &format!("gs://{out}/big.bin"),
            &file_uri(&back),
            "copy",
            json!([{}]),
        ),
    )
    .await;
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&big).unwrap());
    assert_streamed(&worker, "64 MiB to and from GCS");

    // Between buckets GCS copies by itself (a rewrite).
    finished(
        &api,
        &job(
            &format!("gs://{out}/big.bin"),
            &format!("gs://{media}/copied.bin"),
            "copy",
            json!([{}]),
        ),
    )
    .await;
    assert!(gcs.get(&media, "copied.bin").await.unwrap() == std::fs::read(&big).unwrap());
    assert!(
        worker.log().contains("server-side copy"),
        "{}",
        worker.log()
    );

    // feederd holds a key: a missing source is refused at submit.
    let missing = format!("gs://{media}/in/none.mp4");
    let absent = job(
        &missing,
        &format!("gs://{out}/never.mp4"),
        "ffmpeg",
        encode(),
    );
    refused_at_submit(&api, &absent, &missing).await;

    // A missing bucket at the destination says so.
    fails_with(
        &api,
        &job(
            &format!("gs://{media}/in/clip%20one.mp4"),
            "gs://no-such-gcs-bucket/out.mp4",
            "copy",
            json!([{}]),
        ),
        "the bucket no-such-gcs-bucket does not exist",
    )
    .await;
}

#[tokio::test]
async fn gcs_failures_end_in_clear_errors() {
    let gcs = GcsServer::shared();
    let media = gcs.bucket("gfail").await;
    gcs.put(&media, "there.mp4", &clip("small.mp4", 2, "320x240"))
        .await;
    // feederd without credentials cannot look: the worker finds out.
    let (_f, _w, api) = pair("", &gcs.config());
    fails_with(
        &api,
        &job(
            &format!("gs://{media}/none.mp4"),
            &format!("gs://{media}/never1.mp4"),
            "ffmpeg",
            encode(),
        ),
        &format!("The specified input file cannot be found: gs://{media}/none.mp4"),
    )
    .await;

    // Another key for the account: GCS refuses it.
    let wrong = GcsServer::config_for(&gcs.endpoint, &gcs.wrong_service_account);
    let (_f, _w, api) = pair("", &wrong);
    fails_with(
        &api,
        &job(
            &format!("gs://{media}/there.mp4"),
            &format!("gs://{media}/never2.mp4"),
            "copy",
            json!([{}]),
        ),
        "was refused: check the credentials",
    )
    .await;
    assert!(gcs.list(&media, "never").await.is_empty());

    // An emulator takes unsigned requests (`anonymous`); GCS itself refuses
    // them for a private bucket.
    let unsigned = |endpoint: &str| {
        format!("[gcs]\nendpoint = \"{endpoint}\"\nallow_http = true\nanonymous = true\n")
    };
    let (_f, _w, api) = pair("", &unsigned(&gcs.direct));
    let copy = |dest: &str| {
        job(
            &format!("gs://{media}/there.mp4"),
            &format!("gs://{media}/{dest}"),
            "copy",
            json!([{}]),
        )
    };
    finished(&api, &copy("anonymous.mp4")).await;
    assert!(gcs.get(&media, "anonymous.mp4").await.is_some());
    let (_f, _w, api) = pair("", &unsigned(&gcs.endpoint));
    fails_with(
        &api,
        &copy("never3.mp4"),
        "was refused: check the credentials",
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let big = big_file(dir.path());
    gcs.put(&media, "big.bin", &big).await;
    let upstream = gcs.endpoint.trim_start_matches("http://");
    let proxy = FaultProxy::start(upstream, 4 << 20, 2).await;
    let through = GcsServer::config_for(&format!("http://{}", proxy.addr), &gcs.service_account);
    let source = format!("gs://{media}/big.bin");
    resumes_through(&proxy, &through, &source, &big).await;
}

/// Two connections cut mid-download by `proxy` (which `config` reaches the
/// store through): the copy of `source` (the bytes of `big`) to a file
/// resumes, says so, and streams.
async fn resumes_through(proxy: &FaultProxy, config: &str, source: &str, big: &Path) {
    let (_f, worker, api) = pair("", config);
    let back = big.with_extension("back");
    let done = finished(&api, &job(source, &file_uri(&back), "copy", json!([{}]))).await;
    assert_eq!(proxy.cuts(), 2);
    assert!(
        done["warnings"].to_string().contains("resumed 2 time(s)"),
        "{done}"
    );
    assert!(std::fs::read(&back).unwrap() == std::fs::read(big).unwrap());
    assert_streamed(&worker, &format!("a resumed 64 MiB download of {source}"));
}

#[tokio::test]
async fn azure_jobs_run_end_to_end_with_keys_and_sas() {
    let azure = Azurite::shared();
    let media = azure.container("media").await;
    let out = azure.container("out").await;
    let dir = tempfile::tempdir().unwrap();
    azure
        .put(&media, "in/clip one.mp4", &clip("small.mp4", 2, "320x240"))
        .await;
    // 4 MiB blocks, two at a time: the 64 MiB upload is 16 staged blocks.
    let config = format!(
        "{}part_size_mib = 4\nupload_concurrency = 2\n",
        azure.config()
    );
    let (_feederd, worker, api) = pair(&config, &config);

    // az -> encode -> az.
    finished(
        &api,
        &job(
            &format!("az://{media}/in/clip%20one.mp4"),
            &format!("az://{out}/encoded/clip.mp4"),
            "ffmpeg",
            encode(),
        ),
    )
    .await;
    let encoded = dir.path().join("encoded.mp4");
    assert!(azure.get(&out, "encoded/clip.mp4", &encoded).await);
    assert_h264_aac(&encoded);

    // 64 MiB up (staged blocks) and back down to file://, streamed.
    let big = big_file(dir.path());
    finished(
        &api,
        &job(
            &file_uri(&big),
            &format!("az://{out}/big.bin"),
            "copy",
            json!([{}]),
        ),
    )
    .await;
    let stored = dir.path().join("stored.bin");
    assert!(azure.get(&out, "big.bin", &stored).await);
    assert!(std::fs::read(&stored).unwrap() == std::fs::read(&big).unwrap());
    let back = dir.path().join("back.bin");
    finished(
        &api,
        &job(
            &format!("az://{out}/big.bin"),
            &file_uri(&back),
            "copy",
            json!([{}]),
        ),
    )
    .await;
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&big).unwrap());
    assert_streamed(&worker, "64 MiB to and from Azure");

    // feederd holds the key: a missing source is refused at submit.
    let missing = format!("az://{media}/in/none.mp4");
    let absent = job(
        &missing,
        &format!("az://{out}/never.mp4"),
        "ffmpeg",
        encode(),
    );
    refused_at_submit(&api, &absent, &missing).await;

    // A container SAS made by Microsoft's SDK, and nothing else.
    let sas = azure.sas(&out).await;
    let with_sas = nommer_testkit::azurite::Azurite::config_for(
        &azure.endpoint,
        &format!("sas_token = \"{sas}\""),
    );
    let (_f, _w, sas_api) = pair("", &with_sas);
    finished(
        &sas_api,
        &job(
            &format!("az://{out}/encoded/clip.mp4"),
            &format!("az://{out}/by-sas.mp4"),
            "ffmpeg",
            encode(),
        ),
    )
    .await;
    let by_sas = dir.path().join("by-sas.mp4");
    assert!(azure.get(&out, "by-sas.mp4", &by_sas).await);
    assert_h264_aac(&by_sas);
    // The SAS is for one container only.
    let refused = fails_with(
        &sas_api,
        &job(
            &format!("az://{media}/in/clip%20one.mp4"),
            &format!("az://{out}/never.mp4"),
            "copy",
            json!([{}]),
        ),
        "was refused: check the credentials",
    )
    .await;
    // The SAS shows nowhere, escaped or not.
    let signature = sas.split("sig=").nth(1).unwrap().split('&').next().unwrap();
    let unescaped = signature
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    let listing = sas_api.get("/v1/jobs").await.to_string();
    for (what, text) in [
        ("feederd log", _f.log()),
        ("nommerd log", _w.log()),
        ("failed job", refused.to_string()),
        ("job listing", listing),
    ] {
        assert!(!text.contains(signature), "the SAS shows in the {what}");
        assert!(!text.contains(&unescaped), "the SAS shows in the {what}");
    }
    assert!(!azure.get(&out, "never.mp4", &dir.path().join("x")).await);
}

#[tokio::test]
async fn azure_failures_end_in_clear_errors() {
    let azure = Azurite::shared();
    let media = azure.container("failing").await;
    azure
        .put(&media, "there.mp4", &clip("small.mp4", 2, "320x240"))
        .await;
    // feederd without credentials cannot look: the worker finds out.
    let (_f, _w, api) = pair("", &azure.config());
    fails_with(
        &api,
        &job(
            &format!("az://{media}/none.mp4"),
            &format!("az://{media}/never1.mp4"),
            "ffmpeg",
            encode(),
        ),
        &format!("The specified input file cannot be found: az://{media}/none.mp4"),
    )
    .await;
    fails_with(
        &api,
        &job(
            &format!("az://{media}/there.mp4"),
            "az://no-such-container/out.mp4",
            "copy",
            json!([{}]),
        ),
        "the bucket no-such-container does not exist",
    )
    .await;

    // A key that is not the account's.
    let wrong_key = ACCOUNT_KEY.replace('E', "F");
    let wrong = Azurite::config_for(&azure.endpoint, &format!("access_key = \"{wrong_key}\""));
    let (_f, w, api) = pair("", &wrong);
    fails_with(
        &api,
        &job(
            &format!("az://{media}/there.mp4"),
            &format!("az://{media}/never2.mp4"),
            "copy",
            json!([{}]),
        ),
        "was refused: check the credentials",
    )
    .await;
    assert!(!w.log().contains(&wrong_key));

    let dir = tempfile::tempdir().unwrap();
    let big = big_file(dir.path());
    azure.put(&media, "big.bin", &big).await;
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", azure.port), 4 << 20, 2).await;
    let through = Azurite::config_for(
        &format!("http://{}/devstoreaccount1", proxy.addr),
        &format!("access_key = \"{ACCOUNT_KEY}\""),
    );
    resumes_through(&proxy, &through, &format!("az://{media}/big.bin"), &big).await;
    assert!(!azure.get(&media, "never2.mp4", &dir.path().join("x")).await);
}

const CLIENT_ID: &str = "6a2b9d1e-0000-4000-8000-00000000c11d";

/// An identity endpoint standing in for the VM's metadata service (which
/// cannot exist off Azure): it hands out a token for the storage audience,
/// shaped as Microsoft Entra ID's, and records each request's query and
/// `Metadata` header.
async fn identity_endpoint() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use base64::Engine;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let log = log.clone();
            async move {
                let metadata = headers.get("metadata").and_then(|v| v.to_str().ok());
                log.lock().unwrap().push(format!(
                    "{}?{} metadata={}",
                    uri.path(),
                    uri.query().unwrap_or(""),
                    metadata.unwrap_or("")
                ));
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let header = b64.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
                let claims = b64.encode(
                    json!({"aud": "https://storage.azure.com",
                           "iss": "https://sts.windows.net/72f988bf-0000-4000-8000-000000000000/",
                           "iat": now, "nbf": now - 60, "exp": now + 3600,
                           "appid": CLIENT_ID})
                    .to_string(),
                );
                let token = format!("{header}.{claims}.{}", b64.encode("signature"));
                axum::Json(json!({
                    "access_token": token,
                    "expires_on": (now + 3600).to_string(),
                    "expires_in": "3600",
                    "resource": "https://storage.azure.com",
                    "token_type": "Bearer",
                }))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/metadata/identity/oauth2/token",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn azure_managed_identity_and_a_private_ca() {
    let azure = Azurite::shared_tls();
    let media = azure.container("identity").await;
    let source = clip("small.mp4", 2, "320x240");
    azure.put(&media, "in.mp4", &source).await;
    let (endpoint, seen) = identity_endpoint().await;
    let ca = azure.ca.as_ref().unwrap().display().to_string();
    let identity = format!(
        "managed_identity = true\nclient_id = \"{CLIENT_ID}\"\nmsi_endpoint = \"{endpoint}\"\n"
    );
    let config = Azurite::config_for(
        &azure.endpoint,
        &format!("{identity}ca_certificate = \"{ca}\""),
    );
    let (_f, _w, api) = pair("", &config);
    finished(
        &api,
        &job(
            &format!("az://{media}/in.mp4"),
            &format!("az://{media}/by-identity.mp4"),
            "copy",
            json!([{}]),
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let copied = dir.path().join("copied.mp4");
    assert!(azure.get(&media, "by-identity.mp4", &copied).await);
    assert!(std::fs::read(&copied).unwrap() == std::fs::read(&source).unwrap());
    let requests = seen.lock().unwrap().clone();
    assert!(!requests.is_empty(), "the identity endpoint was not asked");
    for request in &requests {
        assert!(
            request.contains("resource=https%3A%2F%2Fstorage.azure.com")
                && request.contains(&format!("client_id={CLIENT_ID}"))
                && request.ends_with("metadata=true"),
            "{request}"
        );
    }

    // Without the CA the endpoint's certificate is not trusted.
    let untrusted = Azurite::config_for(&azure.endpoint, &identity);
    let (_f, _w, api) = pair("", &untrusted);
    let done = run(
        &api,
        &job(
            &format!("az://{media}/in.mp4"),
            &format!("az://{media}/never.mp4"),
            "copy",
            json!([{}]),
        ),
    )
    .await;
    assert_eq!(done["state"], "ERROR", "{done}");
    let details = done["state_details"].as_str().unwrap();
    assert!(
        details.contains("TLS certificate for az://identity/in.mp4 is not trusted"),
        "{details}"
    );
    assert_eq!(
        done["attempts"], 1,
        "a certificate error is not retried: {done}"
    );
    assert!(!azure.get(&media, "never.mp4", &copied).await);
}
