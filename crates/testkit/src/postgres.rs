//! A private PostgreSQL server for tests: initdb into a temporary directory,
//! its own port, owned by the `postgres` user (initdb refuses root), and
//! stopped when the test binary exits, however it exits.
//!
//! The server binaries come from Debian's `postgresql` package
//! (`scripts/install-deps.sh` installs it); they live in
//! `/usr/lib/postgresql/<version>/bin`. A missing server fails the tests that
//! need it: they are never skipped.

use sqlx::{Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct PgServer {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    /// Its stdin closes when this process exits; it then stops the server.
    _watchdog: Mutex<Child>,
}

fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("postgres").exists());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server in /usr/lib/postgresql/*/bin: run scripts/install-deps.sh")
    })
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program args...`, as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    /// The server of this test binary, started on first use.
    pub fn shared() -> &'static PgServer {
        static SERVER: OnceLock<PgServer> = OnceLock::new();
        SERVER.get_or_init(PgServer::start)
    }

    fn start() -> PgServer {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("nommer-pg-")
            .tempdir()
            .unwrap()
            .keep();
        if running_as_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(&dir);
                    c
                },
                "chown the PostgreSQL directory",
            );
        }
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(dir.join("data")).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        let port = crate::free_port();
        let server = PgServer {
            port,
            _watchdog: Mutex::new(Self::watchdog(&bin, &dir)),
            bin,
            dir,
        };
        server.start_server();
        server
    }

    /// A shell that waits for its stdin to close, then stops the server and
    /// removes its files.
    fn watchdog(bin: &Path, dir: &Path) -> Child {
        let script = format!(
            "read _; {} -D {} stop -m immediate >/dev/null 2>&1; rm -rf {}",
            bin.join("pg_ctl").display(),
            dir.join("data").display(),
            dir.display()
        );
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the PostgreSQL watchdog")
    }

    fn pg_ctl(&self) -> Command {
        let mut command = as_postgres(&self.bin.join("pg_ctl"));
        command.arg("-D").arg(self.dir.join("data"));
        command
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let mut start = self.pg_ctl();
        start
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.join("server.log"))
            .arg("start");
        run(start, "start PostgreSQL");
    }

    /// Stop the server at once (as if it crashed) and start it again.
    pub fn restart(&self) {
        let mut stop = self.pg_ctl();
        stop.args(["stop", "-m", "immediate"]);
        run(stop, "stop PostgreSQL");
        self.start_server();
    }

    /// Stop the server (in-flight sessions are cut).
    pub fn stop(&self) {
        let mut stop = self.pg_ctl();
        stop.args(["stop", "-m", "immediate"]);
        run(stop, "stop PostgreSQL");
    }

    pub fn start_again(&self) {
        self.start_server();
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database on the shared server; its URL.
    pub async fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut admin = loop {
            match PgConnection::connect(&self.url("postgres")).await {
                Ok(conn) => break conn,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot reach the test PostgreSQL: {e}"),
            }
        };
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        self.url(&name)
    }
}
