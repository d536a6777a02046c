//! Azurite, Microsoft's Azure Storage emulator (from npm, installed by
//! `scripts/install-deps.sh --test`), serving blobs on a loopback port with
//! shared-key and SAS checking; [`Azurite::shared_tls`] serves HTTPS (a test
//! CA's certificate) and takes OAuth bearer tokens too, as Azure does from a
//! managed identity. Fixtures go through Microsoft's own SDK
//! (`scripts/azure/blob.py`).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Azurite's well-known development account and key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    /// The blob service URL, account included (path-style, as Azurite serves).
    pub endpoint: String,
    pub port: u16,
    /// The CA that signed the HTTPS instance's certificate.
    pub ca: Option<PathBuf>,
    _dir: tempfile::TempDir,
    _process: Mutex<Child>,
}

fn binary() -> PathBuf {
    let installed = PathBuf::from("/var/tmp/nommer-tools/azurite/node_modules/.bin/azurite-blob");
    if installed.exists() {
        return installed;
    }
    panic!("azurite is not installed: run scripts/install-deps.sh --test")
}

fn python() -> &'static str {
    "/var/tmp/nommer-tools/venv/bin/python"
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/azure/blob.py")
}

impl Azurite {
    pub fn shared() -> &'static Azurite {
        static SERVER: OnceLock<Azurite> = OnceLock::new();
        SERVER.get_or_init(|| Azurite::start(false))
    }

    /// An HTTPS instance with OAuth (`--oauth basic`: Azurite checks a
    /// bearer token's issuer, audience and lifetime, not its signature).
    pub fn shared_tls() -> &'static Azurite {
        static SERVER: OnceLock<Azurite> = OnceLock::new();
        SERVER.get_or_init(|| Azurite::start(true))
    }

    fn start(tls: bool) -> Azurite {
        let dir = tempfile::Builder::new()
            .prefix("nommer-azurite-")
            .tempdir()
            .unwrap();
        let port = crate::free_port();
        let (ca, https) = if tls {
            let ca = certificates(dir.path());
            let d = dir.path().display();
            (
                Some(ca),
                format!(" --cert '{d}/cert.pem' --key '{d}/key.pem' --oauth basic"),
            )
        } else {
            (None, String::new())
        };
        // --skipApiVersionCheck: object_store may send a newer x-ms-version
        // than this Azurite knows.
        let command = format!(
            "'{}' --blobHost 127.0.0.1 --blobPort {port} --location '{}/data' --silent --skipApiVersionCheck{https} >/dev/null 2>&1 & pid=$!; read _; kill $pid",
            binary().display(),
            dir.path().display(),
        );
        let child = crate::start_watched(&command, port, "azurite", Duration::from_secs(30));
        let scheme = if tls { "https" } else { "http" };
        Azurite {
            endpoint: format!("{scheme}://127.0.0.1:{port}/{ACCOUNT}"),
            port,
            ca,
            _dir: dir,
            _process: Mutex::new(child),
        }
    }

    fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={};",
            self.endpoint
        )
    }

    async fn sdk(&self, args: &[&str]) -> std::process::Output {
        let mut command = tokio::process::Command::new(python());
        command
            .arg(script())
            .arg(self.connection_string())
            .args(args);
        if let Some(ca) = &self.ca {
            command.env("REQUESTS_CA_BUNDLE", ca);
        }
        command.output().await.expect("run scripts/azure/blob.py")
    }

    async fn sdk_ok(&self, args: &[&str]) -> String {
        let output = self.sdk(args).await;
        assert!(
            output.status.success(),
            "blob.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// A container (an existing one is kept); its name.
    pub async fn container(&self, name: &str) -> String {
        self.sdk_ok(&["container", name]).await;
        name.to_string()
    }

    pub async fn put(&self, container: &str, blob: &str, file: &Path) {
        self.sdk_ok(&["put", container, blob, file.to_str().unwrap()])
            .await;
    }

    /// Download a blob into `file`; false when it is not there.
    pub async fn get(&self, container: &str, blob: &str, file: &Path) -> bool {
        let output = self
            .sdk(&["get", container, blob, file.to_str().unwrap()])
            .await;
        match output.status.code() {
            Some(0) => true,
            Some(3) => false,
            _ => panic!("blob.py get: {}", String::from_utf8_lossy(&output.stderr)),
        }
    }

    /// A SAS for `container`, made by Microsoft's SDK.
    pub async fn sas(&self, container: &str) -> String {
        self.sdk_ok(&["sas", container]).await
    }

    /// `[azure]` settings for `endpoint` (this server, or a proxy before it)
    /// plus `credentials` (e.g. `access_key = "..."`).
    pub fn config_for(endpoint: &str, credentials: &str) -> String {
        format!(
            "[azure]\naccount = \"{ACCOUNT}\"\nendpoint = \"{endpoint}\"\nallow_http = true\n{credentials}\n"
        )
    }

    /// Settings with the account key.
    pub fn config(&self) -> String {
        Azurite::config_for(&self.endpoint, &format!("access_key = \"{ACCOUNT_KEY}\""))
    }
}

/// A test CA and a certificate it signed for 127.0.0.1 (`cert.pem`,
/// `key.pem`) in `dir`; the CA's path.
fn certificates(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=nommer-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    dir.join("ca.pem")
}
