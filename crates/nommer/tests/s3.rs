//! Object storage against a real S3-compatible server (s3s-fs, with
//! signature checking) on loopback: whole jobs s3 -> encode -> s3, the copy
//! nommer on a 1 GiB object, and every failure a user will meet.

mod common;

use common::*;
use nommer_testkit::proxy::FaultProxy;
use nommer_testkit::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use serde_json::{json, Value};
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(90);

fn job(source: &str, dest: &str, nommer: &str, options: Value) -> Value {
    json!({"source_path": source, "dest_path": dest, "notify_url": null,
           "job_options": {"nommer": nommer, "options": options}})
}

fn encode() -> Value {
    json!([{"outfile_options": [["c:v", "libx264"], ["preset", "ultrafast"], ["c:a", "aac"]]}])
}

fn seed_uri(bucket: &str, key: &str) -> String {
    format!("s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/{key}")
}

fn ambient() -> [(&'static str, &'static str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
}

#[tokio::test]
async fn s3_in_encode_s3_out_with_seed_and_ambient_credentials() {
    let s3 = S3Server::shared();
    let bucket = s3.bucket("media");
    std::fs::create_dir_all(s3.object_path(&bucket, "in")).unwrap();
    std::fs::copy(
        clip("small.mp4", 2, "320x240"),
        s3.object_path(&bucket, "in/clip one.mp4"),
    )
    .unwrap();
    let (receiver, hook) = Receiver::start().await;
    let feederd = Feederd::start(&s3.config());
    let worker = feederd.worker_with_env(2, &s3.config(), &ambient());
    let api = Api::new(&feederd.url);

    // The seed's form: the job carries its own keys (the secret holds a '/').
    let mut seed_job = job(
        &seed_uri(&bucket, "in/clip%20one.mp4"),
        &seed_uri(&bucket, "out/seed.mp4"),
        "ffmpeg",
        encode(),
    );
    seed_job["notify_url"] = json!(hook);
    let seed_id = api.submit_id(&seed_job).await;
    // No keys in the URI: the worker's standard AWS chain (its environment).
    let ambient_id = api
        .submit_id(&job(
            &format!("s3://{bucket}/in/clip%20one.mp4"),
            &format!("s3://{bucket}/out/ambient.mp4"),
            "ffmpeg",
            encode(),
        ))
        .await;
    for (id, key) in [(&seed_id, "out/seed.mp4"), (&ambient_id, "out/ambient.mp4")] {
        let done = api.wait_for(id, &["FINISHED", "ERROR"], MINUTE).await;
        assert_eq!(done["state"], "FINISHED", "{done}");
        let probe = probe(&s3.object_path(&bucket, key));
        assert_eq!(stream(&probe, "video")["codec_name"], "h264");
        assert_eq!(stream(&probe, "audio")["codec_name"], "aac");
    }

    // The job's secret shows nowhere: API, listings, logs, webhooks.
    let shown = api.job(&seed_id).await;
    assert_eq!(
        shown["source_path"],
        format!("s3://REDACTED@{bucket}/in/clip%20one.mp4")
    );
    let listing = api.get("/v1/jobs").await.to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hooks: Vec<String> = receiver
        .hits
        .lock()
        .unwrap()
        .iter()
        .map(|(h, b)| format!("{h:?}{b}"))
        .collect();
    assert!(!hooks.is_empty());
    let status = std::process::Command::new(BIN)
        .args(["--feederd", &feederd.url, "status", &seed_id])
        .output()
        .unwrap();
    for (what, text) in [
        ("job", shown.to_string()),
        ("listing", listing),
        ("deliveries", api.deliveries(&seed_id).await.to_string()),
        ("feederd log", feederd.log()),
        ("nommerd log", worker.log()),
        ("webhooks", hooks.join("\n")),
        (
            "nommer status",
            String::from_utf8_lossy(&status.stdout).to_string(),
        ),
    ] {
        assert!(
            !text.contains("Secret/Key"),
            "the secret shows in the {what}"
        );
        assert!(
            !text.contains("test%2BSecret"),
            "the secret shows in the {what}"
        );
    }
}

#[tokio::test]
async fn copy_moves_a_gib_multipart_both_ways_in_bounded_memory() {
    let s3 = S3Server::shared();
    let bucket = s3.bucket("big");
    // Another bucket, so the bytes stream through the worker (within one
    // bucket S3 copies by itself).
    let out = s3.bucket("big-copies");
    let source = s3.object_path(&bucket, "master.bin");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        let block: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 + i / 4096) as u8).collect();
        for i in 0..1024u32 {
            file.write_all(&i.to_le_bytes()).unwrap();
            file.write_all(&block[4..]).unwrap();
        }
    }
    // A debug build computes checksums slowly; this test is about memory.
    let config = format!("{}checksum = false\n", s3.config());
    let feederd = Feederd::start(&config);
    let worker = feederd.worker_with_env(1, &config, &ambient());
    let api = Api::new(&feederd.url);
    let done = copy(
        &api,
        &format!("s3://{bucket}/master.bin"),
        &format!("s3://{out}/copy.bin"),
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    let copied = s3.object_path(&out, "copy.bin");
    assert_eq!(std::fs::metadata(&copied).unwrap().len(), 1 << 30);
    assert!(
        same_bytes(&source, &copied),
        "the copy differs from the source"
    );
    let peak = peak_rss(worker.proc.pid());
    eprintln!("nommerd peak RSS over a 1 GiB copy: {} MiB", peak >> 20);
    assert!(
        peak < 512 << 20,
        "nommerd peaked at {} MiB for a 1 GiB copy",
        peak >> 20
    );
    assert!(worker.log().contains("copied"), "{}", worker.log());
    assert!(
        !worker.log().contains("server-side copy"),
        "{}",
        worker.log()
    );

    // Within one bucket the store copies by itself, at commit.
    let small = s3.object_path(&bucket, "small.bin");
    std::fs::write(
        &small,
        (0..3u32 << 20).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let done = copy(
        &api,
        &format!("s3://{bucket}/small.bin"),
        &format!("s3://{bucket}/sub/small-copy.bin"),
        MINUTE,
    )
    .await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    assert!(same_bytes(
        &small,
        &s3.object_path(&bucket, "sub/small-copy.bin")
    ));
    assert!(
        worker.log().contains("server-side copy"),
        "{}",
        worker.log()
    );
}

fn same_bytes(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::io::Read;
    let (mut a, mut b) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        let mut filled = 0;
        while filled < n {
            let m = b.read(&mut y[filled..n]).unwrap();
            if m == 0 {
                return false;
            }
            filled += m;
        }
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if x[..n] != y[..n] {
            return false;
        }
    }
}

#[tokio::test]
async fn missing_sources_buckets_and_bad_keys_end_in_clear_errors() {
    let s3 = S3Server::shared();
    let bucket = s3.bucket("errors");
    std::fs::copy(
        clip("small.mp4", 2, "320x240"),
        s3.object_path(&bucket, "there.mp4"),
    )
    .unwrap();
    let feederd = Feederd::start(&s3.config());
    let _worker = feederd.worker_with_env(2, &s3.config(), &ambient());
    let api = Api::new(&feederd.url);

    // feederd holds keys for a job that carries them: a missing source is
    // refused at submit, on both APIs.
    let missing = job(
        &seed_uri(&bucket, "nothing.mp4"),
        &seed_uri(&bucket, "out.mp4"),
        "ffmpeg",
        encode(),
    );
    let answer = api
        .http
        .post(format!("{}/v1/jobs", api.url))
        .json(&missing)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error_code"], "source_not_found", "{body}");
    assert!(!body.to_string().contains("Secret"));
    let legacy: Value = api
        .http
        .post(format!("{}/job/submit/", api.url))
        .body(missing.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(legacy["success"], false);
    assert_eq!(legacy["error_code"], "source_not_found");

    // Without keys in the URI, feederd cannot look: the worker finds out.
    let cases = [
        (
            format!("s3://{bucket}/nothing.mp4"),
            format!("s3://{bucket}/never1.mp4"),
            "The specified input file cannot be found: s3://errors/nothing.mp4",
        ),
        (
            format!("s3://{bucket}/there.mp4"),
            "s3://no-such-bucket/out.mp4".to_string(),
            "the bucket no-such-bucket does not exist",
        ),
        (
            format!("s3://{bucket}/there.mp4"),
            format!("s3://WRONGKEY:wrong/secret@{bucket}/never2.mp4"),
            "was refused: check the credentials",
        ),
    ];
    for (source, dest, expected) in cases {
        let id = api
            .submit_id(&job(&source, &dest, "ffmpeg", encode()))
            .await;
        let done = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTE).await;
        assert_eq!(done["state"], "ERROR", "{done}");
        let details = done["state_details"].as_str().unwrap();
        assert!(details.contains(expected), "{details}");
        assert!(!details.contains("wrong/secret"), "{details}");
    }
    assert!(!s3.object_path(&bucket, "never1.mp4").exists());
    assert!(!s3.object_path(&bucket, "never2.mp4").exists());
    assert!(
        !s3.root.join("no-such-bucket").exists(),
        "a bucket was created"
    );
}

#[tokio::test]
async fn dropped_connections_are_resumed_or_fail_cleanly() {
    let s3 = S3Server::shared();
    let bucket = s3.bucket("flaky");
    s3.bucket("flaky-out");
    let source = s3.object_path(&bucket, "in.bin");
    std::fs::write(
        &source,
        (0..8u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let upstream = s3.endpoint.trim_start_matches("http://").to_string();

    // Two connections cut mid-download: the copy resumes and says so.
    let proxy = FaultProxy::start(&upstream, 1 << 20, 2).await;
    let done = copy_through(&proxy, &bucket, "resumed.bin").await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    assert_eq!(proxy.cuts(), 2);
    assert!(
        done["warnings"].to_string().contains("resumed 2 time(s)"),
        "{done}"
    );
    assert!(same_bytes(
        &source,
        &s3.object_path("flaky-out", "resumed.bin")
    ));

    // Every connection cut: each attempt gives up after its resumes, the
    // task is retried as a transient failure, and once its attempts are
    // spent the job fails, with nothing left at the destination.
    let always = FaultProxy::start(&upstream, 1 << 20, u32::MAX).await;
    let done = copy_through(&always, &bucket, "never.bin").await;
    assert_eq!(done["state"], "ERROR", "{done}");
    assert_eq!(done["error_code"], "storage_failed", "{done}");
    assert_eq!(done["attempts"], 3, "{done}");
    let details = done["state_details"].as_str().unwrap();
    assert!(details.contains("gave up after 3 retries"), "{details}");
    assert!(details.contains("no attempts are left"), "{details}");
    assert!(!s3.object_path("flaky-out", "never.bin").exists());
}

#[tokio::test]
async fn missing_buckets_are_created_when_allowed_and_job_keys_are_sealed_at_rest() {
    let s3 = S3Server::shared();
    let bucket = s3.bucket("sealed");
    std::fs::copy(
        clip("small.mp4", 2, "320x240"),
        s3.object_path(&bucket, "in.mp4"),
    )
    .unwrap();
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let feederd = Feederd::start(&format!("secrets_key = \"{key}\"\n{}", s3.config()));
    let worker_config = format!("{}create_missing_buckets = true\n", s3.config());
    let _worker = feederd.worker(1, &worker_config);
    let api = Api::new(&feederd.url);
    let done = copy(
        &api,
        &seed_uri(&bucket, "in.mp4"),
        &seed_uri("fresh-bucket", "out.mp4"),
        MINUTE,
    )
    .await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    assert!(same_bytes(
        &s3.object_path(&bucket, "in.mp4"),
        &s3.object_path("fresh-bucket", "out.mp4")
    ));
    // Every file of the store: the job's keys are nowhere in clear.
    for entry in std::fs::read_dir(feederd.dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("jobs.db") {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("Secret/Key"),
            "the secret is in clear in {name}"
        );
    }
    assert!(!feederd.log().contains("stored unencrypted"));
    let unsealed = Feederd::start("");
    assert!(unsealed.log().contains("secrets_key is not set"));
}

/// A copy job of `in.bin` to `dest` in the bucket `flaky-out` (another
/// bucket, so the bytes stream through the worker) with feederd and a worker
/// that reach the S3 server through `proxy`; the job as it ended.
async fn copy_through(proxy: &FaultProxy, bucket: &str, dest: &str) -> Value {
    let config = nommer_testkit::s3::config_for(&format!("http://{}", proxy.addr));
    let feederd = Feederd::start(&config);
    let _worker = feederd.worker_with_env(1, &config, &ambient());
    let api = Api::new(&feederd.url);
    copy(
        &api,
        &format!("s3://{bucket}/in.bin"),
        &format!("s3://flaky-out/{dest}"),
        MINUTE,
    )
    .await
}

/// Submit a `copy` job from `source` to `dest`; the job once it ended, or
/// as it was after `patience`.
async fn copy(api: &Api, source: &str, dest: &str, patience: Duration) -> Value {
    let id = api.submit_id(&job(source, dest, "copy", json!([{}]))).await;
    api.wait_for(&id, &["FINISHED", "ERROR"], patience).await
}

/// Files under a directory, at any depth (s3s-fs keeps objects as files).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| match e.path().is_dir() {
            true => files_under(&e.path()),
            false => vec![e.path()],
        })
        .collect()
}

#[tokio::test]
async fn a_chunked_job_keeps_its_intermediates_in_the_bucket_and_removes_them() {
    let s3 = S3Server::shared();
    let bucket = s3.bucket("chunked");
    std::fs::create_dir_all(s3.object_path(&bucket, "in")).unwrap();
    std::fs::copy(
        clip("chunks.mp4", 8, "320x240"),
        s3.object_path(&bucket, "in/chunks.mp4"),
    )
    .unwrap();
    let feederd = Feederd::start(&s3.config());
    let worker = feederd.worker(2, &s3.config());
    let api = Api::new(&feederd.url);
    let mut body = job(
        &seed_uri(&bucket, "in/chunks.mp4"),
        &seed_uri(&bucket, "out/chunks.mp4"),
        "ffmpeg",
        encode(),
    );
    body["chunked"] = json!({"chunk_seconds": 2});
    let id = api.submit_id(&body).await;
    let done = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTE).await;
    assert_eq!(done["state"], "FINISHED", "{done}");
    assert_eq!(done["progress"]["chunks_total"], 4, "{done}");
    let probe = probe(&s3.object_path(&bucket, "out/chunks.mp4"));
    assert_eq!(stream(&probe, "video")["nb_frames"], "200");
    assert_eq!(stream(&probe, "audio")["codec_name"], "aac");
    // The cleanup removed every intermediate beside the output.
    let deadline = std::time::Instant::now() + MINUTE;
    let work = s3.object_path(&bucket, &format!("out/.nommer-{id}"));
    loop {
        let tasks = api.get(&format!("/v1/jobs/{id}/tasks")).await;
        let cleanup = tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "cleanup")
            .cloned()
            .unwrap();
        if cleanup["state"] == "FINISHED" {
            assert!(
                cleanup["result"]["removed"].as_u64().unwrap() >= 5,
                "{cleanup}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{tasks}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(files_under(&work), Vec::<std::path::PathBuf>::new());
    // The work prefix carries the job's keys, and they show nowhere.
    for (what, text) in [
        ("nommerd log", worker.log()),
        ("feederd log", feederd.log()),
        (
            "tasks",
            api.get(&format!("/v1/jobs/{id}/tasks")).await.to_string(),
        ),
    ] {
        assert!(
            !text.contains("Secret/Key") && !text.contains("test%2BSecret"),
            "the secret shows in the {what}"
        );
    }
}
