//! The cluster under test: a private PostgreSQL, the S3 test server behind a
//! connection-cutting proxy, two feederd replicas behind a TCP balancer, and
//! nommerd workers whose scratch directories are small tmpfs mounts. Every
//! process can be killed, frozen and started again; its log is kept.

use anyhow::Context;
use nommer_testkit::postgres::PgServer;
use nommer_testkit::proxy::{Balancer, ChaosProxy};
use nommer_testkit::s3::{self, S3Server};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Lease settings: production's shape, shortened so a frozen or killed
/// worker's task moves on within seconds rather than half a minute.
pub const LEASE_TTL_S: u64 = 6;
const TIMINGS: &str = "lease_ttl = 6\nlease_retry_backoff = 1\nnommerd_heartbeat_interval = 1\n";
/// Each worker's scratch tmpfs, and the free space below which it leases
/// nothing.
const SCRATCH_BYTES: u64 = 96 << 20;
const MIN_FREE: u64 = 8 << 20;
pub const BUCKET_IN: &str = "soak-in";
pub const BUCKET_OUT: &str = "soak-out";

pub struct Cluster {
    pub dir: PathBuf,
    nommer: PathBuf,
    pub pg: &'static PgServer,
    pub store_url: String,
    pub s3: &'static S3Server,
    pub storage: ChaosProxy,
    /// The address clients and workers use: either replica.
    pub front: String,
    pub replicas: Vec<Daemon>,
    pub workers: Vec<Daemon>,
    pub pg_up: bool,
    shut: bool,
}

/// A feederd or nommerd process: how to start it, and whether it runs.
pub struct Daemon {
    pub name: String,
    args: Vec<String>,
    config: PathBuf,
    log: PathBuf,
    proc: Option<Child>,
    pub stopped: bool,
    /// Exits nobody asked for, as they were found.
    pub crashes: Vec<String>,
    /// A feederd's own port (a nommerd has none).
    pub port: Option<u16>,
    /// A nommerd's scratch mount.
    pub scratch: Option<PathBuf>,
}

impl Daemon {
    pub fn running(&self) -> bool {
        self.proc.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Child::id)
    }

    fn start(&mut self, nommer: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(nommer)
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            .env("NOMMER_LOG", "info")
            .env("NO_COLOR", "1")
            .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.name))?;
        self.proc = Some(child);
        self.stopped = false;
        Ok(())
    }

    /// Note an exit nobody asked for; the process then counts as down.
    pub fn check(&mut self) {
        let exited = self.proc.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            self.crashes.push(format!("{} ({status})", self.name));
            self.proc = None;
            self.stopped = false;
        }
    }

    /// SIGKILL, as a crash or a lost machine.
    pub fn kill(&mut self) {
        self.check();
        if let Some(mut child) = self.proc.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }

    fn signal(&mut self, signal: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill has no memory preconditions; pid is our own child.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
    }

    /// SIGSTOP: the process is frozen (a stalled VM, a long GC pause).
    pub fn freeze(&mut self) {
        self.signal(libc::SIGSTOP);
        self.stopped = true;
    }

    pub fn thaw(&mut self) {
        self.signal(libc::SIGCONT);
        self.stopped = false;
    }
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = command.output().with_context(|| what.to_string())?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Cluster {
    pub async fn start(nommer: &Path, workers: usize) -> anyhow::Result<Cluster> {
        anyhow::ensure!(
            running_as_root(),
            "the soak runs as root: it mounts tmpfs scratch directories and runs the sandbox"
        );
        let dir = tempfile::Builder::new()
            .prefix("nommer-soak-")
            .tempdir()?
            .keep();
        // Workers' scratch lives inside: the sandbox user must pass through.
        std::fs::set_permissions(
            &dir,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o711),
        )?;
        let pg = PgServer::shared();
        let store_url = pg.fresh_database().await;
        let s3 = S3Server::shared();
        s3.bucket(BUCKET_IN);
        s3.bucket(BUCKET_OUT);
        let endpoint = s3.endpoint.trim_start_matches("http://").to_string();
        let storage = ChaosProxy::start(&endpoint).await;
        let storage_config = s3::config_for(&format!("http://{}", storage.addr));

        let ports = [nommer_testkit::free_port(), nommer_testkit::free_port()];
        let front = Balancer::start(ports.iter().map(|p| format!("127.0.0.1:{p}")).collect())
            .await
            .addr;
        let mut cluster = Cluster {
            dir: dir.clone(),
            nommer: nommer.to_path_buf(),
            pg,
            store_url: store_url.clone(),
            s3,
            storage,
            front: format!("http://{front}"),
            replicas: Vec::new(),
            workers: Vec::new(),
            pg_up: true,
            shut: false,
        };
        for (i, port) in ports.into_iter().enumerate() {
            let name = format!("feederd-{i}");
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(&config, format!("{TIMINGS}{storage_config}"))?;
            let mut replica = Daemon {
                args: vec![
                    "feederd".into(),
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--store".into(),
                    store_url.clone(),
                ],
                config,
                log: dir.join(format!("{name}.log")),
                proc: None,
                stopped: false,
                crashes: Vec::new(),
                port: Some(port),
                scratch: None,
                name,
            };
            replica.start(nommer)?;
            cluster.replicas.push(replica);
        }
        for i in 0..2 {
            cluster.wait_listening(i, Duration::from_secs(60))?;
        }
        for i in 0..workers {
            let name = format!("nommerd-{i}");
            let scratch = dir.join(format!("scratch-{i}"));
            std::fs::create_dir_all(&scratch)?;
            run(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o"])
                    .arg(format!("size={SCRATCH_BYTES},mode=0711"))
                    .arg("tmpfs")
                    .arg(&scratch),
                "mount a scratch tmpfs",
            )?;
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!("{TIMINGS}node_id = \"soak-{i}\"\nmin_free_scratch_bytes = {MIN_FREE}\n{storage_config}"),
            )?;
            let mut worker = Daemon {
                args: vec![
                    "--feederd".into(),
                    cluster.front.clone(),
                    "nommerd".into(),
                    "--max-jobs".into(),
                    "2".into(),
                    "--work-dir".into(),
                    scratch.join("work").display().to_string(),
                ],
                config,
                log: dir.join(format!("{name}.log")),
                proc: None,
                stopped: false,
                crashes: Vec::new(),
                port: None,
                scratch: Some(scratch),
                name,
            };
            worker.start(nommer)?;
            cluster.workers.push(worker);
        }
        Ok(cluster)
    }

    fn wait_listening(&self, replica: usize, patience: Duration) -> anyhow::Result<()> {
        let port = self.replicas[replica].port.expect("a replica has a port");
        let deadline = Instant::now() + patience;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not start listening",
                self.replicas[replica].name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn restart_replica(&mut self, i: usize) -> anyhow::Result<()> {
        let nommer = self.nommer.clone();
        self.replicas[i].kill();
        self.replicas[i].start(&nommer)
    }

    pub fn restart_worker(&mut self, i: usize) -> anyhow::Result<()> {
        let nommer = self.nommer.clone();
        self.workers[i].kill();
        self.workers[i].start(&nommer)
    }

    /// The replica that leads now, by its own /metrics.
    pub async fn leader(&self, http: &reqwest::Client) -> Option<usize> {
        for (i, replica) in self.replicas.iter().enumerate() {
            if !replica.running() {
                continue;
            }
            let url = format!("http://127.0.0.1:{}/metrics", replica.port?);
            let Ok(response) = http.get(url).send().await else {
                continue;
            };
            let text = response.text().await.unwrap_or_default();
            if text.lines().any(|l| l == "nommer_leader 1") {
                return Some(i);
            }
        }
        None
    }

    /// PostgreSQL stops at once, as if it crashed.
    pub fn stop_pg(&mut self) {
        self.pg.stop();
        self.pg_up = false;
    }

    pub fn start_pg(&mut self) {
        self.pg.start_again();
        self.pg_up = true;
    }

    /// Fill worker `i`'s scratch tmpfs to the last byte; the file that does
    /// it, to remove later.
    pub fn fill_scratch(&self, i: usize) -> anyhow::Result<PathBuf> {
        let scratch = self.workers[i]
            .scratch
            .as_ref()
            .expect("a worker has scratch");
        let path = scratch.join("filler");
        let file = std::fs::File::create(&path)?;
        let free = free_bytes(scratch)?;
        if free == 0 {
            return Ok(path);
        }
        // SAFETY: fd is an open file we own; posix_fallocate has no memory preconditions.
        let rc = unsafe {
            libc::posix_fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
                free as libc::off_t,
            )
        };
        anyhow::ensure!(rc == 0 || rc == libc::ENOSPC, "fallocate: error {rc}");
        Ok(path)
    }

    /// Everything back up: processes running and thawed, the database up.
    pub fn recover(&mut self) -> anyhow::Result<()> {
        self.check();
        if !self.pg_up {
            self.start_pg();
        }
        for i in 0..self.replicas.len() {
            if !self.replicas[i].running() {
                self.restart_replica(i)?;
            }
        }
        for i in 0..self.workers.len() {
            if self.workers[i].stopped {
                self.workers[i].thaw();
            }
            if !self.workers[i].running() {
                self.restart_worker(i)?;
            }
            if let Some(scratch) = &self.workers[i].scratch {
                let _ = std::fs::remove_file(scratch.join("filler"));
            }
        }
        Ok(())
    }

    /// Bytes in use on the workers' scratch mounts.
    pub fn scratch_used(&self) -> u64 {
        self.workers
            .iter()
            .filter_map(|w| w.scratch.as_ref())
            .filter_map(|s| statvfs(s).ok())
            .map(|s| (s.f_blocks - s.f_bfree) * s.f_frsize)
            .sum()
    }

    /// Look for daemons that exited on their own (none should); a fault
    /// or a recovery then finds them down.
    pub fn check(&mut self) {
        for daemon in self.replicas.iter_mut().chain(self.workers.iter_mut()) {
            daemon.check();
        }
    }

    /// Every exit nobody asked for so far.
    pub fn crashed(&mut self) -> Vec<String> {
        self.check();
        self.replicas
            .iter()
            .chain(self.workers.iter())
            .flat_map(|d| d.crashes.iter().cloned())
            .collect()
    }

    /// Stop every process and unmount the scratch directories; the logs stay
    /// when `keep_logs`.
    pub fn shut_down(&mut self, keep_logs: bool) {
        if std::mem::replace(&mut self.shut, true) {
            return;
        }
        for daemon in self.replicas.iter_mut().chain(self.workers.iter_mut()) {
            if daemon.stopped {
                daemon.thaw();
            }
            daemon.kill();
            if let Some(scratch) = &daemon.scratch {
                let _ = Command::new("umount").arg("-l").arg(scratch).status();
            }
        }
        if !keep_logs {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A run that ends early (an error, a panic) still stops its processes and
/// unmounts its scratch; the logs stay.
impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.shut {
            eprintln!("soak: stopped early; logs kept in {}", self.dir.display());
        }
        self.shut_down(true);
    }
}

fn statvfs(path: &Path) -> anyhow::Result<libc::statvfs> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: statvfs writes into the struct we pass; c is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    anyhow::ensure!(
        unsafe { libc::statvfs(c.as_ptr(), &mut stat) } == 0,
        "statvfs {}",
        path.display()
    );
    Ok(stat)
}

fn free_bytes(path: &Path) -> anyhow::Result<u64> {
    let stat = statvfs(path)?;
    Ok(stat.f_bavail * stat.f_frsize)
}
