//! A worker's life and death: SIGKILL during a long encode, and SIGTERM in
//! both shutdown modes.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(90);

fn sigterm(proc: &Proc) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(proc.pid() as i32, libc::SIGTERM) };
}

/// Wait for a child to exit on its own; its exit status.
fn wait_exit(proc: &mut Proc, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn ffmpeg_dies_with_its_worker_deep_into_a_long_encode() {
    let feederd = Feederd::start("");
    let mut worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let body = ffmpeg_job(
        &clip("long.mp4", 40, "1280x720"),
        &feederd.dir.path().join("long.mp4"),
        slow_options(),
    );
    let id = api.submit_id(&body).await;
    api.wait_for(&id, &["ENCODING"], MINUTE).await;
    let started = std::time::Instant::now();
    // Longer than a runtime's idle blocking threads live (10 s): a child
    // whose death signal were tied to such a thread would be dead already.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let job = api.job(&id).await;
    assert_eq!(job["state"], "ENCODING", "{job}");
    // Time spent plus ffmpeg's own estimate of what is left: the encode
    // must take more than a minute in all, whatever this machine's speed.
    let percent = job["progress"]["percent"].as_f64().unwrap();
    let eta = job["progress"]["eta_seconds"].as_f64().unwrap_or(0.0);
    assert!(
        percent > 0.0 && started.elapsed().as_secs_f64() + eta > 60.0,
        "the encode must run for more than a minute in all: {job}"
    );
    let ffmpeg = processes_mentioning(&id);
    assert!(!ffmpeg.is_empty(), "ffmpeg should still be running");

    worker.proc.kill9();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "ffmpeg {ffmpeg:?} outlived its SIGKILLed worker"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn sigterm_hands_running_jobs_back() {
    let feederd = Feederd::start("");
    let mut worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let body = ffmpeg_job(
        &clip("slow.mp4", 20, "1280x720"),
        &feederd.dir.path().join("handback.mp4"),
        slow_options(),
    );
    let id = api.submit_id(&body).await;
    api.wait_for(&id, &["ENCODING"], MINUTE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    sigterm(&worker.proc);
    let status = wait_exit(&mut worker.proc, Duration::from_secs(10));
    assert!(status.success(), "nommerd exited with {status}");
    assert!(
        processes_mentioning(&id).is_empty(),
        "ffmpeg outlived the handback"
    );
    let job = api.job(&id).await;
    assert_eq!(job["state"], "PENDING", "{job}");
    assert!(
        job["state_details"]
            .as_str()
            .unwrap()
            .contains("handed back"),
        "{job}"
    );
    assert_eq!(job["attempts"], 0, "a handback is not a failed attempt");
    assert!(!feederd.dir.path().join("handback.mp4").exists());
    let leftovers: Vec<_> = std::fs::read_dir(worker.work_dir()).unwrap().collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");

    // Another worker takes it up at once.
    let _next = feederd.worker(1, "");
    let job = api
        .wait_for(&id, &["ENCODING"], Duration::from_secs(20))
        .await;
    assert_eq!(job["attempts"], 1);
}

#[tokio::test]
async fn sigterm_in_finish_mode_completes_running_jobs_and_takes_no_more() {
    let feederd = Feederd::start("");
    let mut worker = feederd.worker(2, "nommerd_shutdown = \"finish\"\n");
    let api = Api::new(&feederd.url);
    let source = clip("medium.mp4", 6, "640x360");
    let options =
        json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "slow"], ["threads", "1"]]}]);
    let dest = feederd.dir.path().join("finished.mp4");
    let id = api
        .submit_id(&ffmpeg_job(&source, &dest, options.clone()))
        .await;
    api.wait_for(&id, &["ENCODING"], MINUTE).await;

    sigterm(&worker.proc);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = feederd.dir.path().join("later.mp4");
    let later_id = api.submit_id(&ffmpeg_job(&source, &later, options)).await;

    let status = wait_exit(&mut worker.proc, MINUTE);
    assert!(status.success(), "nommerd exited with {status}");
    let job = api.job(&id).await;
    assert_eq!(job["state"], "FINISHED", "{job}");
    assert_eq!(stream(&probe(&dest), "video")["codec_name"], "h264");
    let job = api.job(&later_id).await;
    assert_eq!(
        job["state"], "PENDING",
        "a draining worker took a job: {job}"
    );
    assert!(worker.log().contains("nommerd stopped"));
}

#[tokio::test]
async fn encodes_survive_feederd_being_down_longer_than_the_lease() {
    let mut feederd = Feederd::start("");
    let worker = feederd.worker(1, "");
    let api = Api::new(&feederd.url);
    let dest = feederd.dir.path().join("survivor.mp4");
    let options =
        json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "slow"], ["threads", "1"]]}]);
    let id = api
        .submit_id(&ffmpeg_job(
            &clip("medium.mp4", 6, "640x360"),
            &dest,
            options,
        ))
        .await;
    api.wait_for(&id, &["ENCODING"], MINUTE).await;

    feederd.proc.kill9();
    // Twice the 3 s lease: no heartbeat could renew it meanwhile. Without the
    // restart grace (lease_grace = 0) this job would be retried as attempt 2.
    tokio::time::sleep(Duration::from_secs(6)).await;
    feederd.restart();

    let job = api.wait_for(&id, &["FINISHED", "ERROR"], MINUTE).await;
    assert_eq!(job["state"], "FINISHED", "{job}");
    assert_eq!(job["attempts"], 1, "the running encode was kept: {job}");
    assert_eq!(stream(&probe(&dest), "video")["codec_name"], "h264");
    assert!(worker.log().contains("heartbeat failed"));
}
