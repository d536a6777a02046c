//! Harness for end-to-end tests: the real `nommer` binary, real ffmpeg, real
//! HTTP on loopback.
#![allow(dead_code)]

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nommer");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Feederd {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub proc: Proc,
    pub port: u16,
    pub store: String,
    /// NOMMER_LOG for the process.
    pub log_level: String,
    /// The address it listens on (`127.0.0.1:PORT`, or `0.0.0.0:PORT`).
    pub listen: String,
}

/// Settings every test daemon shares: short leases so failures show quickly.
pub const FAST: &str = "lease_ttl = 3\nlease_retry_backoff = 1\nnommerd_heartbeat_interval = 1\n";

impl Feederd {
    /// A feederd on its own SQLite store.
    pub fn start(config: &str) -> Feederd {
        Feederd::start_logging(config, "info")
    }

    /// A feederd on its own SQLite store, logging at `level` (`debug`, say).
    pub fn start_logging(config: &str, level: &str) -> Feederd {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}", dir.path().join("jobs.db").display());
        Feederd::launch(dir, config, store, level, "127.0.0.1")
    }

    /// A feederd listening on `host` (`0.0.0.0`: beyond loopback), reached
    /// through loopback.
    pub fn start_listening(config: &str, host: &str) -> Feederd {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}", dir.path().join("jobs.db").display());
        Feederd::launch(dir, config, store, "info", host)
    }

    /// A feederd replica on a shared store (PostgreSQL).
    pub fn start_on(store: &str, config: &str) -> Feederd {
        Feederd::launch(
            tempfile::tempdir().unwrap(),
            config,
            store.to_string(),
            "info",
            "127.0.0.1",
        )
    }

    fn launch(
        dir: tempfile::TempDir,
        config: &str,
        store: String,
        level: &str,
        host: &str,
    ) -> Feederd {
        std::fs::write(dir.path().join("feederd.toml"), format!("{FAST}{config}")).unwrap();
        let port = free_port();
        let listen = format!("{host}:{port}");
        let proc = Feederd::spawn(dir.path(), &listen, &store, level);
        let feederd = Feederd {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            proc,
            port,
            store,
            log_level: level.to_string(),
            listen,
        };
        feederd.wait_healthy();
        feederd
    }

    fn spawn(dir: &Path, listen: &str, store: &str, level: &str) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("feederd.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args([
                "--config",
                dir.join("feederd.toml").to_str().unwrap(),
                "feederd",
                "--listen",
                listen,
                "--store",
                store,
            ])
            .env("NOMMER_LOG", level)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Proc(child)
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if reqwest::blocking_get(&format!("{}/healthz", self.url)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("feederd did not start:\n{}", self.log());
    }

    /// Start it again on the same port, store and settings (after a kill).
    pub fn restart(&mut self) {
        self.proc.kill9();
        self.proc = Feederd::spawn(self.dir.path(), &self.listen, &self.store, &self.log_level);
        self.wait_healthy();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("feederd.log")).unwrap_or_default()
    }

    pub fn worker(&self, max_jobs: u32, extra: &str) -> Worker {
        Worker::start(&self.url, max_jobs, extra, &[])
    }

    /// A worker with extra environment variables (ambient credentials).
    pub fn worker_with_env(&self, max_jobs: u32, extra: &str, env: &[(&str, &str)]) -> Worker {
        Worker::start(&self.url, max_jobs, extra, env)
    }
}

mod reqwest {
    pub fn blocking_get(url: &str) -> bool {
        let Ok(url) = url::Url::parse(url) else {
            return false;
        };
        let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        use std::io::{Read, Write};
        let _ = write!(stream, "GET {} HTTP/1.0\r\nHost: x\r\n\r\n", url.path());
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    }
}

pub struct Worker {
    pub dir: tempfile::TempDir,
    pub proc: Proc,
}

impl Worker {
    pub fn start(feederd_url: &str, max_jobs: u32, extra: &str, env: &[(&str, &str)]) -> Worker {
        let dir = traversable_tempdir();
        let path = dir.path().join("nommerd.toml");
        std::fs::write(&path, format!("{FAST}{extra}")).unwrap();
        let log = std::fs::File::create(dir.path().join("nommerd.log")).unwrap();
        let child = Command::new(BIN)
            .args([
                "--config",
                path.to_str().unwrap(),
                "--feederd",
                feederd_url,
                "nommerd",
            ])
            .arg("--max-jobs")
            .arg(max_jobs.to_string())
            .arg("--work-dir")
            .arg(dir.path().join("work"))
            .env("NOMMER_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Worker {
            dir,
            proc: Proc(child),
        }
    }

    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The running worker's own scratch, `work_dir/run-NONCE/`: the one
    /// directory in its work_dir beside its lock.
    pub fn scratch_dir(&self) -> PathBuf {
        let runs: Vec<PathBuf> = std::fs::read_dir(self.work_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(runs.len(), 1, "one run directory: {runs:?}");
        let run = &runs[0];
        let lock = run.with_file_name(format!(
            "{}.lock",
            run.file_name().unwrap().to_string_lossy()
        ));
        assert!(lock.exists(), "{} has no lock file", run.display());
        run.clone()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nommerd.log")).unwrap_or_default()
    }
}

/// A temporary directory the sandbox user may pass through (tempfile makes
/// them 0700), as a worker's work_dir must be.
pub fn traversable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// Test sources made once per test binary with ffmpeg's lavfi sources.
pub fn clip(name: &str, seconds: u32, size: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(name);
    if !path.exists() {
        nommer_testkit::make_clip(&path, seconds, size).unwrap();
    }
    path
}

pub fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

pub fn ffmpeg_job(source: &Path, dest: &Path, options: Value) -> Value {
    json!({"source_path": file_uri(source), "dest_path": file_uri(dest), "notify_url": null,
           "job_options": {"nommer": "ffmpeg", "options": options}})
}

/// A single-pass encode slow enough to interrupt.
pub fn slow_options() -> Value {
    json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "veryslow"], ["threads", "1"], ["an", null]]}])
}

pub struct Api {
    pub url: String,
    pub http: ::reqwest::Client,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api {
            url: url.to_string(),
            http: ::reqwest::Client::new(),
        }
    }

    pub async fn submit(&self, body: &Value) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/jobs", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let job: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{job}");
        job
    }

    /// Submit and return the new job's id.
    pub async fn submit_id(&self, body: &Value) -> String {
        self.submit(body).await["id"].as_str().unwrap().to_string()
    }

    /// GET a path of the API as JSON.
    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Lease up to `max` jobs by hand as the worker `node`, waiting up to
    /// `wait_ms`; the lease answer (`{"leases": [...]}`).
    pub async fn lease_as(&self, node: &str, max: u32, wait_ms: u64) -> Value {
        let node = serde_json::json!({"node_id": node, "fleet": "static", "version": "t",
            "max_jobs": max, "running_jobs": 0, "state": "active"});
        let answer = self
            .http
            .post(format!("{}/v1/workers/lease", self.url))
            .json(&serde_json::json!({"node": node, "max": max, "wait_ms": wait_ms}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json().await.unwrap()
    }

    pub async fn deliveries(&self, id: &str) -> Value {
        self.get(&format!("/v1/jobs/{id}/deliveries")).await
    }

    pub async fn job(&self, id: &str) -> Value {
        self.get(&format!("/v1/jobs/{id}")).await
    }

    /// Wait for the job to end, and assert it ended in ERROR with `code`.
    pub async fn ends_in_error(&self, id: &str, code: &str, timeout: Duration) -> Value {
        let job = self.wait_for(id, &["FINISHED", "ERROR"], timeout).await;
        assert_eq!(job["state"], "ERROR", "{job}");
        assert_eq!(job["error_code"], code, "{job}");
        job
    }

    /// Poll until the job reaches one of `states`.
    pub async fn wait_for(&self, id: &str, states: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id).await;
            if states.contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job never reached {states:?}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn probe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn stream<'a>(probe: &'a Value, kind: &str) -> &'a Value {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
        .unwrap_or(&Value::Null)
}

/// Every process whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// A webhook receiver on loopback that records every request.
#[derive(Clone, Default)]
pub struct Receiver {
    pub hits: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl Receiver {
    pub async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route(
                "/hook",
                post(
                    |State(r): State<Receiver>, headers: HeaderMap, body: String| async move {
                        r.hits.lock().unwrap().push((headers, body));
                        "ok"
                    },
                ),
            )
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    /// Every webhook received, read whichever its format: a v1 job's JSON
    /// (`{"type", "timestamp", "data"}`) or the seed's form.
    pub fn hooks(&self) -> Vec<Hook> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .map(|(headers, body)| Hook::read(headers, body))
            .collect()
    }
}

/// One webhook as a receiver reads it.
#[derive(Debug, Clone)]
pub struct Hook {
    pub headers: HeaderMap,
    pub body: String,
    pub job_id: String,
    pub state: String,
    pub details: String,
    /// The JSON body, for a JSON webhook.
    pub json: Option<Value>,
}

impl Hook {
    fn read(headers: &HeaderMap, body: &str) -> Hook {
        let json = headers["content-type"] == "application/json";
        let field = |form_key: &str, json_key: &str| -> String {
            match json {
                true => {
                    let value: Value = serde_json::from_str(body).unwrap();
                    value["data"][json_key]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                }
                false => url::form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == form_key)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default(),
            }
        };
        Hook {
            headers: headers.clone(),
            body: body.to_string(),
            job_id: field("unique_id", "id"),
            state: field("job_state", "state"),
            details: field("job_state_details", "state_details"),
            json: json.then(|| serde_json::from_str(body).unwrap()),
        }
    }
}

/// A loopback HTTP server over a directory: GET reads a file, PUT writes one.
pub struct FileServer {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl FileServer {
    pub async fn start() -> FileServer {
        use axum::body::Bytes;
        use axum::extract::Path as UrlPath;
        use axum::http::StatusCode;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let get_root = root.clone();
        let app = axum::Router::new().route(
            "/{name}",
            axum::routing::get(move |UrlPath(name): UrlPath<String>| {
                let path = get_root.join(name);
                async move {
                    match std::fs::read(path) {
                        Ok(bytes) => Ok(bytes),
                        Err(_) => Err(StatusCode::NOT_FOUND),
                    }
                }
            })
            .put(move |UrlPath(name): UrlPath<String>, body: Bytes| {
                let path = root.join(name);
                async move {
                    std::fs::write(path, body).unwrap();
                    StatusCode::CREATED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FileServer { url, dir }
    }
}

/// The distinct nodes that ran a job's tasks of `kind`, from its task list.
pub async fn nodes_of(api: &Api, id: &str, kind: &str) -> Vec<String> {
    let tasks = api.get(&format!("/v1/jobs/{id}/tasks")).await;
    let mut nodes: Vec<String> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == kind)
        .filter_map(|t| t["node"].as_str().map(str::to_string))
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Peak resident memory of a process, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}
