//! A real S3-compatible server for tests: s3s-fs (from crates.io, installed
//! by `scripts/install-deps.sh --test` into /var/tmp/nommer-tools), serving a
//! temporary directory on a loopback port, with signature checking on.
//! Buckets are directories under [`S3Server::root`]. It stops when the test
//! binary exits.

use std::path::PathBuf;
use std::process::Child;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub const ACCESS_KEY: &str = "AKIANOMMERTEST";
/// Contains `/`, as real AWS secrets may, to exercise the seed's URI form.
pub const SECRET_KEY: &str = "nommer/test+Secret/Key";

pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
    _process: Mutex<Child>,
}

fn binary() -> PathBuf {
    let installed = PathBuf::from("/var/tmp/nommer-tools/bin/s3s-fs");
    if installed.exists() {
        return installed;
    }
    panic!("s3s-fs is not installed: run scripts/install-deps.sh --test")
}

impl S3Server {
    pub fn shared() -> &'static S3Server {
        static SERVER: OnceLock<S3Server> = OnceLock::new();
        SERVER.get_or_init(S3Server::start)
    }

    fn start() -> S3Server {
        let root = tempfile::Builder::new()
            .prefix("nommer-s3-")
            .tempdir()
            .unwrap()
            .keep();
        let port = crate::free_port();
        // The shell stops the server and removes its data once our end of its
        // stdin closes, which happens when this process exits.
        let script = format!(
            "'{}' --host 127.0.0.1 --port {port} --access-key '{ACCESS_KEY}' --secret-key '{SECRET_KEY}' '{}' >'{}.log' 2>&1 & pid=$!; read _; kill $pid; rm -rf '{}' '{}.log'",
            binary().display(),
            root.display(),
            root.display(),
            root.display(),
            root.display(),
        );
        let child = crate::start_watched(&script, port, "s3s-fs", Duration::from_secs(20));
        S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
            _process: Mutex::new(child),
        }
    }

    /// A new, empty bucket; its name.
    pub fn bucket(&self, name: &str) -> String {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
        name.to_string()
    }

    /// Where the server keeps an object on disk.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// Settings that point nommer at this server (no credentials).
    pub fn config(&self) -> String {
        config_for(&self.endpoint)
    }
}

/// Settings that point nommer at an S3 endpoint such as this server, or a
/// proxy in front of it (no credentials).
pub fn config_for(endpoint: &str) -> String {
    format!(
        "[s3]\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\npath_style = true\nallow_http = true\n"
    )
}
