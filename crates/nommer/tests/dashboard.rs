//! The dashboard in a real headless Chromium (Debian's, driven over CDP by
//! puppeteer-core, `scripts/browser/dashboard.mjs`) against the real
//! binary with tokens on: sign-in, a job seen reaching FINISHED without a
//! reload, cancel from the page, a read token without cancel buttons, the
//! CSRF check, and a screenshot of each page as a test artifact.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const ADMIN: &str = "ops-dashboard-t0ken";
const READ: &str = "dash-read-t0ken";
const WORKER: &str = "w0rker-dashboard-t0ken";

/// Where the screenshots go: `NOMMER_TEST_ARTIFACTS`, or under /var/tmp.
fn artifacts() -> PathBuf {
    let root = std::env::var_os("NOMMER_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/nommer-artifacts"));
    root.join("dashboard")
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 10_000 && b.starts_with(b"\x89PNG"))
}

#[tokio::test]
async fn the_dashboard_signs_in_follows_a_job_live_and_cancels_in_chromium() {
    for needed in [
        "/usr/bin/chromium",
        "/var/tmp/nommer-tools/node/node_modules/puppeteer-core",
    ] {
        assert!(
            Path::new(needed).exists(),
            "{needed} is missing: run scripts/install-deps.sh --test"
        );
    }
    let config = format!(
        "api_tokens = [
  {{name = \"ops\", token = \"{ADMIN}\", role = \"admin\"}},
  {{name = \"dash\", token = \"{READ}\", role = \"read\"}},
]
worker_token = \"{WORKER}\"
[queues.held]
"
    );
    let feederd = Feederd::start(&config);
    let _worker = feederd.worker(1, &format!("worker_token = \"{WORKER}\"\n"));
    let http = reqwest::Client::new();
    let paused = http
        .post(format!("{}/v1/queues/held/pause", feederd.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status(), 200);
    let source = clip("dash.mp4", 2, "640x360");
    let job = ffmpeg_job(
        &source,
        &feederd.dir.path().join("dash-out.mp4"),
        json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "veryfast"]]}]),
    );
    let mut held = ffmpeg_job(
        &source,
        &feederd.dir.path().join("held.mp4"),
        json!([{"outfile_options": [["vcodec", "libx264"]]}]),
    );
    held["queue"] = json!("held");
    let out = artifacts();
    let _ = std::fs::remove_dir_all(&out);
    let scenario = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        scenario.path(),
        json!({"url": feederd.url, "admin": ADMIN, "read": READ, "job": job, "held_job": held,
               "artifacts": out})
        .to_string(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/browser/dashboard.mjs");
    let ran = tokio::process::Command::new("node")
        .arg(script)
        .arg(scenario.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "{stdout}\n{}\n{}",
            String::from_utf8_lossy(&ran.stderr),
            feederd.log()
        )
    });
    assert!(ran.status.success(), "{seen:#}\n{}", feederd.log());

    assert_eq!(seen["sign_in_required"], true);
    assert_eq!(seen["wrong_token_message"], "That token is not valid.");
    assert_eq!(
        seen["cookie_visible_to_scripts"], false,
        "the session cookie is HttpOnly"
    );
    assert_eq!(seen["finished_without_reload"], true, "{seen:#}");
    assert_eq!(seen["empty_placeholder_left"], false);
    assert_eq!(seen["job_page_state"], "FINISHED");
    let timeline: Vec<&str> = seen["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        timeline,
        [
            "PENDING",
            "DOWNLOADING",
            "ENCODING",
            "UPLOADING",
            "FINISHED"
        ]
    );
    assert!(seen["outputs_shown"].as_u64() >= Some(1), "{seen:#}");
    assert_eq!(seen["canceled_from_page"], true);
    assert_eq!(seen["retry_offered"], true);
    assert_eq!(
        seen["without_csrf"], 403,
        "the cookie alone does not change state"
    );
    assert_eq!(seen["nodes_listed"], true);
    assert_eq!(seen["without_stream_state"], "FINISHED");
    assert_eq!(seen["read_cancel_buttons_in_list"], 0);
    assert_eq!(seen["read_sees_state"], "PENDING");
    assert_eq!(seen["read_cancel_button"], false);
    assert_eq!(seen["page_errors"], json!([]), "no script errors");

    // The API agrees with what the page showed.
    let id = seen["job"].as_str().unwrap();
    let api = Api::new(&feederd.url);
    let (status, job) = {
        let response = http
            .get(format!("{}/v1/jobs/{id}", api.url))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!((status, &job["state"]), (200, &json!("FINISHED")));

    for page in [
        "sign-in",
        "summary",
        "jobs",
        "job",
        "nodes",
        "fleet",
        "presets",
        "job-read-only",
    ] {
        let shot = out.join(format!("{page}.png"));
        assert!(
            is_png(&shot),
            "no screenshot of the {page} page at {shot:?}"
        );
    }
}
