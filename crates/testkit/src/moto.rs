//! moto's server (from PyPI, installed by `scripts/install-deps.sh --test`
//! into a virtualenv under /var/tmp/nommer-tools) on a loopback port: an EC2
//! API stand-in. Stopped when the test binary exits.

use std::process::Child;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

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
        let child = crate::start_watched(&script, port, "moto", Duration::from_secs(60));
        MotoServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            _process: Mutex::new(child),
        }
    }
}
