//! moto's server (from PyPI, installed by `scripts/install-deps.sh --test`
//! into a virtualenv under /var/tmp/nommer-tools) on a loopback port: an EC2
//! API stand-in. Stopped when the test binary exits.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const BIN: &str = "/var/tmp/nommer-tools/venv/bin/moto_server";

pub struct MotoServer {
    pub endpoint: String,
    _process: Mutex<Child>,
}

impl MotoServer {
    pub fn shared() -> &'static MotoServer {
        static SERVER: OnceLock<MotoServer> = OnceLock::new();
        SERVER.get_or_init(MotoServer::start)
    }

    fn start() -> MotoServer {
        assert!(
            std::path::Path::new(BIN).exists(),
            "moto is not installed: run scripts/install-deps.sh --test"
        );
        let port = crate::free_port();
        let script =
            format!("'{BIN}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; read _; kill $pid");
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        MotoServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            _process: Mutex::new(child),
        }
    }
}
