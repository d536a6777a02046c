//! The five suites of BENCHMARKS.md.

use crate::harness::*;
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

/// A fresh store for `backend`: a SQLite file in `dir`, or a new database
/// on the shared PostgreSQL server.
async fn store_url(backend: &str, dir: &Path) -> String {
    match backend {
        "sqlite" => format!("sqlite://{}", dir.join("jobs.db").display()),
        _ => {
            nommer_testkit::postgres::PgServer::shared()
                .fresh_database()
                .await
        }
    }
}

/// One line of a 1 GiB transfer's speed, from its seconds.
fn rate(label: &str, seconds: f64, note: &str) {
    print(label, format!("{:.0} MB/s", 1073.7 / seconds), note);
}

fn ffmpeg_clip(path: &Path, seconds: u32, size: &str) -> anyhow::Result<()> {
    Ok(nommer_testkit::make_clip(path, seconds, size)?)
}

fn job(source: &str, dest: &str, nommer: &str, options: Value, notify: Option<&str>) -> Value {
    json!({"source_path": source, "dest_path": dest, "notify_url": notify,
           "job_options": {"nommer": nommer, "options": options}})
}

fn two_pass() -> Value {
    let common = json!([
        ["c:v", "libx264"],
        ["preset", "veryfast"],
        ["b:v", "1M"],
        ["vf", "scale=640:-2"]
    ]);
    let mut first = common.as_array().unwrap().clone();
    first.extend([
        json!(["pass", "1"]),
        json!(["an", null]),
        json!(["f", "mp4"]),
    ]);
    let mut second = common.as_array().unwrap().clone();
    second.extend([
        json!(["pass", "2"]),
        json!(["c:a", "aac"]),
        json!(["b:a", "128k"]),
    ]);
    json!([{"outfile_options": first}, {"outfile_options": second}])
}

pub fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn submit_wait(env: &Env, feederd: &str, job_file: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new(&env.nommer)
        .args(["--feederd", feederd, "submit", "--wait"])
        .arg(job_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "job failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(started.elapsed())
}

/// Overhead: the two-pass encode through the whole pipeline against the two ffmpeg
/// commands the nommer runs (taken from its log), run directly.
pub async fn overhead(env: &Env) -> anyhow::Result<()> {
    let dir = env.dir.path().join("overhead");
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("source.mp4");
    ffmpeg_clip(&source, 60, "1280x720")?;
    let config = write_config(&dir, "bench.toml", "");
    let feederd = env.feederd(
        &config,
        &format!("sqlite://{}", dir.join("jobs.db").display()),
    );
    let log = dir.join("nommerd.log");
    let work = dir.join("work");
    let _worker = Proc(
        Command::new(&env.nommer)
            .arg("--config")
            .arg(&config)
            .args(["--feederd", &feederd.url, "nommerd", "--max-jobs", "1"])
            .arg("--work-dir")
            .arg(&work)
            .env("NOMMER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let write_job = |name: &str| -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("{name}.json"));
        let body = job(
            &format!("file://{}", source.display()),
            &format!("file://{}", dir.join(format!("{name}.mp4")).display()),
            "ffmpeg",
            two_pass(),
            None,
        );
        std::fs::write(&path, body.to_string())?;
        Ok(path)
    };
    // A warm-up job; its log gives the nommer's own argv.
    submit_wait(env, &feederd.url, &write_job("warmup")?)?;
    // The pipeline's tools run in the worker's sandbox (NOMMER_SANDBOX=off
    // turns it off); the raw commands below run unconfined.
    let nodes: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/nodes", feederd.url))
        .send()
        .await?
        .json()
        .await?;
    print(
        "overhead: worker sandbox",
        nodes["nodes"][0]["sandbox"].as_str().unwrap_or("?"),
        "what the pipeline's ffmpeg runs under",
    );
    let text = strip_ansi(&std::fs::read_to_string(&log)?);
    let argvs: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.contains("running ffmpeg"))
        .filter_map(|l| l.split(" argv=").nth(1))
        .map(|a| a.split(' ').map(str::to_string).collect())
        .collect();
    anyhow::ensure!(argvs.len() == 2, "expected two logged ffmpeg commands");
    let input = argvs[0]
        .iter()
        .skip_while(|a| *a != "-i")
        .nth(1)
        .unwrap()
        .clone();
    let scratch = Path::new(&input).parent().unwrap().display().to_string();
    let direct_dir = dir.join("direct");
    std::fs::create_dir_all(&direct_dir)?;
    let direct: Vec<Vec<String>> = argvs
        .iter()
        .map(|argv| {
            argv.iter()
                .map(|a| {
                    a.replace(
                        &format!("{scratch}/source.mp4"),
                        &source.display().to_string(),
                    )
                    .replace(
                        &format!("{scratch}/output.mp4"),
                        &dir.join("direct.mp4").display().to_string(),
                    )
                    .replace(&scratch, &direct_dir.display().to_string())
                })
                .collect()
        })
        .collect();
    println!("# direct argv: {}", direct[0].join(" "));
    println!("# direct argv: {}", direct[1].join(" "));
    let (mut raw, mut pipeline) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let started = Instant::now();
        for argv in &direct {
            let status = Command::new(&argv[0])
                .args(&argv[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "direct ffmpeg failed");
        }
        raw.push(started.elapsed().as_secs_f64());
        pipeline.push(
            submit_wait(env, &feederd.url, &write_job(&format!("run{round}"))?)?.as_secs_f64(),
        );
    }
    let (raw, pipeline) = (median(&mut raw), median(&mut pipeline));
    print(
        "overhead: raw ffmpeg, median",
        format!("{raw:.2} s"),
        "two passes, 60 s 1280x720 -> 640 wide",
    );
    print(
        "overhead: pipeline, median",
        format!("{pipeline:.2} s"),
        "feederd + nommerd + submit --wait",
    );
    print(
        "overhead: ratio",
        format!("{:.3}x", pipeline / raw),
        "target <= 1.03x",
    );
    Ok(())
}

/// A loopback HTTP endpoint that answers 200 to anything (a webhook sink).
async fn sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    url
}

fn millis(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

/// The ids of a page of `GET /v1/jobs`.
fn job_ids(page: &Value) -> Vec<String> {
    let jobs = page["jobs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    jobs.iter()
        .filter_map(|j| j["id"].as_str().map(String::from))
        .collect()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// Dispatch: submit -> DOWNLOADING, with idle workers long-polling: the time between
/// the job's creation and its DOWNLOADING event, both stamped by feederd.
pub async fn dispatch(env: &Env) -> anyhow::Result<()> {
    let hook = sink().await;
    for backend in ["sqlite", "postgres"] {
        let dir = env.dir.path().join(format!("dispatch-{backend}"));
        std::fs::create_dir_all(&dir)?;
        let config = write_config(&dir, "bench.toml", "");
        let store = store_url(backend, &dir).await;
        let api = env.feederd(&config, &store);
        // On PostgreSQL the workers poll another replica than the API's.
        let second = (backend == "postgres").then(|| env.feederd(&config, &store));
        let poll_url = second.as_ref().map_or(api.url.clone(), |f| f.url.clone());
        let _workers: Vec<Proc> = (0..2).map(|_| env.nommerd(&config, &poll_url, 2)).collect();
        let source = dir.join("tiny.bin");
        std::fs::write(&source, vec![7u8; 1024])?;
        let http = reqwest::Client::new();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut latencies = Vec::new();
        for i in 0..200 {
            let body = job(
                &format!("file://{}", source.display()),
                &format!("file://{}", dir.join(format!("out{i}.bin")).display()),
                "copy",
                json!([{}]),
                Some(&hook),
            );
            let created: Value = http
                .post(format!("{}/v1/jobs", api.url))
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            let id = created["id"].as_str().unwrap().to_string();
            loop {
                let state = get_json(&http, &format!("{}/v1/jobs/{id}", api.url)).await;
                if state["state"] == "FINISHED" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let deliveries = get_json(&http, &format!("{}/v1/jobs/{id}/deliveries", api.url)).await;
            let downloading = deliveries["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["job_state"] == "DOWNLOADING")
                .map(|d| millis(d["created_at"].as_str().unwrap()))
                .unwrap();
            latencies.push((downloading - millis(created["created_at"].as_str().unwrap())) as f64);
            // Let the worker go back to its long-poll.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let p50 = percentile(&mut latencies, 0.5);
        let p99 = percentile(&mut latencies, 0.99);
        let where_ = if backend == "postgres" {
            "API and workers on different replicas"
        } else {
            "one feederd"
        };
        print(
            &format!("dispatch {backend}: p50"),
            format!("{p50:.0} ms"),
            &format!("{where_}; target p50 <= 20 ms"),
        );
        print(
            &format!("dispatch {backend}: p99"),
            format!("{p99:.0} ms"),
            "200 jobs",
        );
    }
    Ok(())
}

/// Throughput: 10,000 tiny copy jobs end to end through the HTTP lease protocol,
/// against a raw-SQL loop of insert, claim and complete at the same
/// concurrency.
pub async fn throughput(env: &Env) -> anyhow::Result<()> {
    const JOBS: usize = 10_000;
    const WORKERS: u32 = 4;
    // Slots per worker, BENCH_SLOTS or 16: reports and leases batch better
    // the more jobs a worker runs at once.
    let slots: u32 = std::env::var("BENCH_SLOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let backends: Vec<String> = std::env::var("BENCH_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".into())
        .split(',')
        .map(str::to_string)
        .collect();
    // The jobs' own files (a 1 KiB source, 10,000 outputs) go to tmpfs unless
    // BENCH_PAYLOAD_DIR says otherwise: this suite measures the queue, and on
    // a disk that has seen many deletes, ext4's inode allocator alone costs
    // the workers a third of their CPU. The store stays on disk.
    let payload_root = std::env::var("BENCH_PAYLOAD_DIR").unwrap_or_else(|_| "/dev/shm".into());
    for backend in backends.iter().map(String::as_str) {
        let dir = env.dir.path().join(format!("throughput-{backend}"));
        std::fs::create_dir_all(&dir)?;
        let payload = tempfile::tempdir_in(&payload_root)?;
        let files = payload.path();
        std::fs::create_dir_all(files.join("out"))?;
        let config = write_config(&dir, "bench.toml", "");
        let store = store_url(backend, &dir).await;
        let feederd = env.feederd(&config, &store);
        let workers: Vec<Proc> = (0..WORKERS)
            .map(|_| env.nommerd(&config, &feederd.url, slots))
            .collect();
        let source = files.join("tiny.bin");
        std::fs::write(&source, vec![7u8; 1024])?;
        let http = reqwest::Client::new();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu0 = (
            cpu_seconds(feederd.proc.pid()),
            workers.iter().map(|w| cpu_seconds(w.pid())).sum::<f64>(),
            own_cpu_seconds(),
        );
        let statements0 = metric(&http, &feederd.url, "nommer_store_statements_total").await;
        let requests0 = metric(&http, &feederd.url, "nommer_http_requests_total").await;
        let started = Instant::now();
        let bodies: Vec<Value> = (0..JOBS)
            .map(|i| {
                job(
                    &format!("file://{}", source.display()),
                    &format!(
                        "file://{}",
                        files.join("out").join(format!("{i}.bin")).display()
                    ),
                    "copy",
                    json!([{}]),
                    None,
                )
            })
            .collect();
        let submit_url = format!("{}/v1/jobs", feederd.url);
        futures::stream::iter(bodies)
            .for_each_concurrent(16, |body| {
                let http = http.clone();
                let url = submit_url.clone();
                async move {
                    let answer = http.post(url).json(&body).send().await.unwrap();
                    assert_eq!(answer.status(), 201);
                }
            })
            .await;
        let mut polls = 0.0;
        loop {
            polls += 1.0;
            let finished = metric(&http, &feederd.url, "nommer_jobs{state=\"FINISHED\"}").await;
            if finished as usize >= JOBS {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(900),
                "throughput run stalled at {finished}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = (
            cpu_seconds(feederd.proc.pid()) - cpu0.0,
            workers.iter().map(|w| cpu_seconds(w.pid())).sum::<f64>() - cpu0.1,
            own_cpu_seconds() - cpu0.2,
        );
        let statements =
            metric(&http, &feederd.url, "nommer_store_statements_total").await - statements0;
        let requests = metric(&http, &feederd.url, "nommer_http_requests_total").await
            - requests0
            - polls
            - 2.0;
        let rate = JOBS as f64 / elapsed;
        let raw = raw_ceiling(backend, &dir, JOBS, (WORKERS * slots) as usize).await?;
        print(
            &format!("throughput {backend}: pipeline"),
            format!("{rate:.0} jobs/s"),
            &format!(
                "{JOBS} copy jobs, {WORKERS} workers x {slots} slots, files in {payload_root}"
            ),
        );
        print(
            &format!("throughput {backend}: raw SQL ceiling"),
            format!("{raw:.0} jobs/s"),
            "insert + claim + complete, same concurrency",
        );
        print(
            &format!("throughput {backend}: ratio"),
            format!("{:.0}%", 100.0 * rate / raw),
            "pipeline / ceiling",
        );
        print(
            &format!("throughput {backend}: SQL statements/job"),
            format!("{:.1}", statements / JOBS as f64),
            "feederd's store, submit to FINISHED",
        );
        print(
            &format!("throughput {backend}: HTTP requests/job"),
            format!("{:.1}", requests / JOBS as f64),
            "submit, lease, reports, heartbeats",
        );
        print(
            &format!("throughput {backend}: CPU ms/job"),
            format!(
                "{:.2}/{:.2}/{:.2}",
                1e3 * cpu.0 / JOBS as f64,
                1e3 * cpu.1 / JOBS as f64,
                1e3 * cpu.2 / JOBS as f64
            ),
            "feederd / all nommerds / submitting client",
        );
    }
    Ok(())
}

async fn raw_ceiling(
    backend: &str,
    dir: &Path,
    jobs: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    use sqlx::any::AnyPoolOptions;
    sqlx::any::install_default_drivers();
    let (url, pool_size, skip) = match backend {
        "sqlite" => (
            format!("sqlite://{}?mode=rwc", dir.join("raw.db").display()),
            1,
            "",
        ),
        _ => (
            nommer_testkit::postgres::PgServer::shared()
                .fresh_database()
                .await,
            concurrency as u32,
            " FOR UPDATE SKIP LOCKED",
        ),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(pool_size)
        .connect(&url)
        .await?;
    if backend == "sqlite" {
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&pool)
            .await?;
    }
    sqlx::query("CREATE TABLE raw (id TEXT PRIMARY KEY, state TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let started = Instant::now();
    let claim = format!("UPDATE raw SET state = 'RUNNING' WHERE id = (SELECT id FROM raw WHERE state = 'PENDING' LIMIT 1{skip}) RETURNING id");
    futures::stream::iter(0..jobs)
        .for_each_concurrent(concurrency, |i| {
            let pool = pool.clone();
            let claim = claim.clone();
            async move {
                sqlx::query("INSERT INTO raw (id, state) VALUES ($1, 'PENDING')")
                    .bind(format!("job{i:08}"))
                    .execute(&pool)
                    .await
                    .unwrap();
                let id: Option<String> = sqlx::query_scalar(&claim)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                if let Some(id) = id {
                    sqlx::query("UPDATE raw SET state = 'DONE' WHERE id = $1")
                        .bind(id)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            }
        })
        .await;
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

/// Memory: peak resident memory: feederd idle and with 100,000 jobs stored;
/// nommerd idle and during an encode (ffmpeg is its own process).
pub async fn memory(env: &Env) -> anyhow::Result<()> {
    let dir = env.dir.path().join("memory");
    std::fs::create_dir_all(&dir)?;
    let config = write_config(&dir, "bench.toml", "");
    let feederd = env.feederd(
        &config,
        &format!("sqlite://{}", dir.join("jobs.db").display()),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    print(
        "memory: feederd idle",
        format!(
            "{:.1} MB",
            rss_bytes(feederd.proc.pid(), "VmRSS:") as f64 / 1e6
        ),
        "RSS",
    );
    let http = reqwest::Client::new();
    let url = format!("{}/v1/jobs", feederd.url);
    futures::stream::iter(0..100_000)
        .for_each_concurrent(16, |i| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let body = job(
                    &format!("file:///in/{i}.mp4"),
                    "file:///out/x.mp4",
                    "copy",
                    json!([{}]),
                    None,
                );
                http.post(url).json(&body).send().await.unwrap();
            }
        })
        .await;
    let _ = get_json(&http, &format!("{}/v1/jobs?limit=100", feederd.url)).await;
    let _ = metric(&http, &feederd.url, "nommer_jobs").await;
    print(
        "memory: feederd, 100,000 jobs stored",
        format!(
            "{:.1} MB",
            rss_bytes(feederd.proc.pid(), "VmHWM:") as f64 / 1e6
        ),
        "peak RSS; target <= 64 MB",
    );
    // What counting costs once most jobs have ended: a metrics scrape (jobs
    // by state) with the newest 500 of the 100,000 still PENDING.
    let page = get_json(&http, &format!("{}/v1/jobs?limit=500", feederd.url)).await;
    let keep: std::collections::HashSet<String> = job_ids(&page).into_iter().collect();
    let mut ended = 0usize;
    let mut before: Option<String> = None;
    loop {
        let mut list = format!("{}/v1/jobs?limit=500&state=PENDING", feederd.url);
        if let Some(id) = &before {
            list.push_str(&format!("&cursor={id}"));
        }
        let page = get_json(&http, &list).await;
        let ids = job_ids(&page);
        let Some(last) = ids.last().cloned() else {
            break;
        };
        let cancels = ids.into_iter().filter(|id| !keep.contains(id));
        ended += futures::stream::iter(cancels)
            .map(|id| {
                let http = http.clone();
                let url = format!("{}/v1/jobs/{id}/cancel", feederd.url);
                async move {
                    http.post(url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            })
            .buffer_unordered(16)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        before = Some(last);
    }
    let _ = metric(&http, &feederd.url, "nommer_jobs").await;
    let mut scrapes = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let _ = metric(&http, &feederd.url, "nommer_jobs").await;
        scrapes.push(started.elapsed().as_secs_f64() * 1e3);
    }
    print(
        "memory: metrics scrape, 100,000 jobs stored",
        format!("{:.2} ms", median(&mut scrapes)),
        &format!("median of 20; {ended} ended, the rest PENDING"),
    );

    let worker = env.nommerd(&config, &feederd.url, 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    print(
        "memory: nommerd idle",
        format!("{:.1} MB", rss_bytes(worker.pid(), "VmRSS:") as f64 / 1e6),
        "RSS",
    );
    drop(feederd);
    let feederd = env.feederd(
        &config,
        &format!("sqlite://{}", dir.join("encode.db").display()),
    );
    let worker = env.nommerd(&config, &feederd.url, 1);
    let source = dir.join("clip.mp4");
    ffmpeg_clip(&source, 20, "1280x720")?;
    let job_file = dir.join("encode.json");
    std::fs::write(
        &job_file,
        job(
            &format!("file://{}", source.display()),
            &format!("file://{}", dir.join("enc.mp4").display()),
            "ffmpeg",
            two_pass(),
            None,
        )
        .to_string(),
    )?;
    submit_wait(env, &feederd.url, &job_file)?;
    print(
        "memory: nommerd during an encode",
        format!("{:.1} MB", rss_bytes(worker.pid(), "VmHWM:") as f64 / 1e6),
        "peak RSS, ffmpeg not counted",
    );
    Ok(())
}

/// Transfer: a 1 GiB file through the copy nommer against cp (file://), and s3 to
/// s3 against the aws CLI on the same loopback S3 server.
pub async fn transfer(env: &Env) -> anyhow::Result<()> {
    let dir = env.dir.path().join("transfer");
    std::fs::create_dir_all(&dir)?;
    let big = dir.join("big.bin");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&big)?);
        let block: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for _ in 0..1024 {
            file.write_all(&block)?;
        }
    }
    let config = write_config(&dir, "bench.toml", "");
    let feederd = env.feederd(
        &config,
        &format!("sqlite://{}", dir.join("jobs.db").display()),
    );
    let _worker = env.nommerd(&config, &feederd.url, 1);
    let (mut cp, mut nommer) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let dest = dir.join(format!("cp{round}.bin"));
        let started = Instant::now();
        let status = Command::new("cp").arg(&big).arg(&dest).status()?;
        anyhow::ensure!(status.success());
        // cp leaves dirty pages; the copy nommer syncs before it commits.
        Command::new("sync").status()?;
        cp.push(started.elapsed().as_secs_f64());
        std::fs::remove_file(&dest)?;
        let job_file = dir.join(format!("copy{round}.json"));
        let dest = dir.join(format!("nommer{round}.bin"));
        std::fs::write(
            &job_file,
            job(
                &format!("file://{}", big.display()),
                &format!("file://{}", dest.display()),
                "copy",
                json!([{}]),
                None,
            )
            .to_string(),
        )?;
        nommer.push(submit_wait(env, &feederd.url, &job_file)?.as_secs_f64());
        std::fs::remove_file(&dest)?;
    }
    let (cp, nommer) = (median(&mut cp), median(&mut nommer));
    rate("transfer file: cp + sync, median", cp, "1 GiB");
    rate(
        "transfer file: copy nommer, median",
        nommer,
        "submit --wait, file:// to file://",
    );
    print(
        "transfer file: nommer / cp",
        format!("{:.0}%", 100.0 * cp / nommer),
        "target >= 80%",
    );

    let s3 = nommer_testkit::s3::S3Server::shared();
    let bucket = s3.bucket("bench");
    std::fs::copy(&big, s3.object_path(&bucket, "big.bin"))?;
    let aws = PathBuf::from("/var/tmp/nommer-tools/venv/bin/aws");
    let s3_config = write_config(&dir, "s3.toml", &s3.config());
    let s3_feederd = env.feederd(
        &s3_config,
        &format!("sqlite://{}", dir.join("s3.db").display()),
    );
    let mut worker_cmd = Command::new(&env.nommer);
    worker_cmd
        .arg("--config")
        .arg(&s3_config)
        .args(["--feederd", &s3_feederd.url, "nommerd", "--max-jobs", "1"])
        .env("AWS_ACCESS_KEY_ID", nommer_testkit::s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", nommer_testkit::s3::SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _s3_worker = Proc(worker_cmd.spawn()?);
    // Two ways each, alternated: within one bucket (the store copies by itself:
    // CopyObject) and into another bucket (the bytes stream down and up
    // through this machine). The CLI reads with multipart_threshold above the
    // object's size: its default ranged GETs and UploadPartCopy make s3s-fs
    // hash the whole object once per range, which measures the server. It
    // writes a stream with its defaults (8 MiB parts, 10 at once); above the
    // threshold it would hold the whole stream in memory for one PutObject.
    let run_cli = aws.exists() && std::env::var_os("BENCH_AWS").is_some();
    let out = s3.bucket("bench-out");
    let aws_config = dir.join("aws.cfg");
    std::fs::write(
        &aws_config,
        "[default]\ns3 =\n  multipart_threshold = 5GB\n",
    )?;
    let cli = |args: &[&str], stdin: Stdio, stdout: Stdio| {
        let mut command = Command::new(&aws);
        command
            .args(["s3", "cp", "--quiet", "--endpoint-url", &s3.endpoint])
            .args(args);
        if args[0] != "-" {
            command.env("AWS_CONFIG_FILE", &aws_config);
        }
        command
            .env("AWS_ACCESS_KEY_ID", nommer_testkit::s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", nommer_testkit::s3::SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .stdin(stdin)
            .stdout(stdout);
        command
    };
    let source = format!("s3://{bucket}/big.bin");
    let ours_copy = |dest: String, round: usize| -> anyhow::Result<f64> {
        let job_file = dir.join(format!("s3copy{round}.json"));
        std::fs::write(
            &job_file,
            job(&source, &dest, "copy", json!([{}]), None).to_string(),
        )?;
        Ok(submit_wait(env, &s3_feederd.url, &job_file)?.as_secs_f64())
    };
    let (mut ours_server, mut ours_streamed) = (Vec::new(), Vec::new());
    let (mut cli_server, mut cli_streamed) = (Vec::new(), Vec::new());
    for round in 0..5 {
        ours_server.push(ours_copy(format!("s3://{bucket}/ours{round}.bin"), round)?);
        ours_streamed.push(ours_copy(format!("s3://{out}/ours{round}.bin"), round)?);
        if !run_cli {
            continue;
        }
        let started = Instant::now();
        let status = cli(
            &[&source, &format!("s3://{bucket}/cli{round}.bin")],
            Stdio::null(),
            Stdio::null(),
        )
        .status()?;
        anyhow::ensure!(status.success(), "aws s3 cp failed");
        cli_server.push(started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut down = cli(&[&source, "-"], Stdio::null(), Stdio::piped()).spawn()?;
        let pipe = down.stdout.take().expect("piped stdout");
        let up = cli(
            &["-", &format!("s3://{out}/cli{round}.bin")],
            Stdio::from(pipe),
            Stdio::null(),
        )
        .status()?;
        anyhow::ensure!(
            down.wait()?.success() && up.success(),
            "aws s3 cp (streamed) failed"
        );
        cli_streamed.push(started.elapsed().as_secs_f64());
    }
    let (ours_server, ours_streamed) = (median(&mut ours_server), median(&mut ours_streamed));
    rate(
        "transfer s3: copy nommer, same bucket",
        ours_server,
        "median; the store copies it (CopyObject)",
    );
    rate(
        "transfer s3: copy nommer, across buckets",
        ours_streamed,
        "median; streamed through the worker",
    );
    if !run_cli {
        print(
            "transfer s3: aws CLI",
            "not run",
            "set BENCH_AWS=1 (awscli in /var/tmp/nommer-tools/venv)",
        );
        return Ok(());
    }
    let (cli_server, cli_streamed) = (median(&mut cli_server), median(&mut cli_streamed));
    rate(
        "transfer s3: aws s3 cp, same bucket",
        cli_server,
        "median; CopyObject",
    );
    rate(
        "transfer s3: aws s3 cp - | aws s3 cp -, across buckets",
        cli_streamed,
        "median; streamed through this machine",
    );
    print(
        "transfer s3: nommer / aws CLI, same bucket",
        format!("{:.0}%", 100.0 * cli_server / ours_server),
        "target >= 100%",
    );
    print(
        "transfer s3: nommer / aws CLI, across buckets",
        format!("{:.0}%", 100.0 * cli_streamed / ours_streamed),
        "target >= 100%",
    );
    Ok(())
}
