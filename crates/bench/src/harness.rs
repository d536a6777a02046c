//! Processes, measurements and figures for the suites.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Env {
    /// The release `nommer` binary beside this one, or `BENCH_NOMMER` (to
    /// measure another build, such as the previous commit's, with these suites).
    pub nommer: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> anyhow::Result<Env> {
        let me = std::env::current_exe()?;
        let nommer = match std::env::var_os("BENCH_NOMMER") {
            Some(path) => PathBuf::from(path),
            None => me.with_file_name("nommer"),
        };
        anyhow::ensure!(
            nommer.exists(),
            "{} is missing: build it with cargo build --release -p nommer",
            nommer.display()
        );
        let dir = tempfile::tempdir()?;
        // Workers' scratch directories live inside: the sandbox user must pass through.
        std::fs::set_permissions(
            dir.path(),
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o711),
        )?;
        Ok(Env { nommer, dir })
    }
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0);
    format!("{cpus} CPUs ({model}), {} GiB", mem >> 20)
}

pub fn print(name: &str, value: impl std::fmt::Display, note: &str) {
    println!("{name:<44} {value:>14}  {note}");
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

pub fn free_port() -> u16 {
    nommer_testkit::free_port()
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

pub fn rss_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

pub struct Feederd {
    pub url: String,
    pub proc: Proc,
}

/// Settings for every daemon of a benchmark: production defaults, quiet logs.
pub fn write_config(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, extra).unwrap();
    path
}

impl Env {
    pub fn feederd(&self, config: &Path, store: &str) -> Feederd {
        let port = free_port();
        let child = Command::new(&self.nommer)
            .arg("--config")
            .arg(config)
            .args([
                "feederd",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--store",
                store,
            ])
            .env("NOMMER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start feederd");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "feederd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Feederd {
            url,
            proc: Proc(child),
        }
    }

    pub fn nommerd(&self, config: &Path, feederd: &str, max_jobs: u32) -> Proc {
        let work = self.dir.path().join(format!("work-{}", free_port()));
        let child = Command::new(&self.nommer)
            .arg("--config")
            .arg(config)
            .args([
                "--feederd",
                feederd,
                "nommerd",
                "--max-jobs",
                &max_jobs.to_string(),
            ])
            .arg("--work-dir")
            .arg(work)
            .env("NOMMER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nommerd");
        Proc(child)
    }
}

/// One counter or gauge line of feederd's /metrics.
pub async fn metric(http: &reqwest::Client, url: &str, line_prefix: &str) -> f64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU seconds this process has used.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// Submit and wait for FINISHED: the job id and the seconds it took.
pub async fn run_job(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(String, f64)> {
    let started = std::time::Instant::now();
    let answer: serde_json::Value = http
        .post(format!("{url}/v1/jobs"))
        .json(body)
        .send()
        .await?
        .json()
        .await?;
    let id = answer["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("not submitted: {answer}"))?
        .to_string();
    let mut state = "PENDING".to_string();
    loop {
        // A long-poll that answers when the job leaves its state: the
        // benchmark itself takes no CPU from the pinned workers.
        let job: serde_json::Value = http
            .get(format!("{url}/v1/jobs/{id}?state={state}&wait_ms=5000"))
            .send()
            .await?
            .json()
            .await?;
        match job["state"].as_str() {
            Some("FINISHED") => return Ok((id, started.elapsed().as_secs_f64())),
            Some("ERROR" | "CANCELED" | "ABANDONED") => anyhow::bail!("job ended: {job}"),
            Some(now) => state = now.to_string(),
            None => anyhow::bail!("no job: {job}"),
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "job never ended"
        );
    }
}
