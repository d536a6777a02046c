//! `gs://bucket/object`: Google Cloud Storage through its JSON API, the one
//! Google's own client libraries use. Reads are ranged GETs (`alt=media`).
//! Uploads are resumable uploads: chunks go up as they fill, and the object
//! appears only when the last chunk is sent, at commit; an aborted upload is
//! cancelled. (object_store's GCS client speaks the XML API, whose multipart
//! upload, PUT, DELETE and copy the emulators lack; its credential chain is
//! used here for the bearer token.) A copy within GCS is a server-side
//! rewrite.

use super::config::GcsConfig;
use super::store::{bucket_and_key, failed, no_bucket, refused};
use crate::backend::{Backend, Pending, Rules, Staged, Writer};
use crate::transfer::Opened;
use crate::{ProgressFn, StorageError, StorageErrorKind, Transferred};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use nommer_model::backoff::Backoff;
use nommer_model::uri::MediaUri;
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

const DEFAULT_BASE: &str = "https://storage.googleapis.com";
/// Tries per chunk, the first included.
const CHUNK_ATTEMPTS: u32 = 4;
const CHUNK_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
/// What a resumable upload answers while it is incomplete.
const INCOMPLETE: u16 = 308;

pub struct Gcs(Arc<Client>);

struct Client {
    config: GcsConfig,
    http: OnceCell<Result<reqwest::Client, String>>,
    /// Made on first use: the chain may read files or ask a metadata server.
    auth: OnceCell<Result<GcpCredentialProvider, String>>,
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn transient(message: String) -> StorageError {
    StorageError::new(StorageErrorKind::Transient, message)
}

impl Gcs {
    pub fn backend(config: &GcsConfig) -> Gcs {
        Gcs(Arc::new(Client {
            config: config.clone(),
            http: OnceCell::new(),
            auth: OnceCell::new(),
        }))
    }
}

/// The HTTP client, trusting `ca_certificate` besides the system's roots.
fn http_client(config: &GcsConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // A 308 is a resumable upload's "incomplete", never a redirect.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("media-nommer/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.ca_certificate {
        let pem = std::fs::read(path).map_err(|e| format!("gcs.ca_certificate {path}: {e}"))?;
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("gcs.ca_certificate {path}: {e}"))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|e| format!("the GCS client: {e}"))
}

impl Client {
    fn base(&self) -> Result<&str, StorageError> {
        let base = self
            .config
            .endpoint
            .as_deref()
            .unwrap_or(DEFAULT_BASE)
            .trim_end_matches('/');
        if base.starts_with("http://") && !self.config.allow_http {
            return Err(failed(format!(
                "gcs.endpoint {base} is plain http: set gcs.allow_http to use it"
            )));
        }
        Ok(base)
    }

    fn object_url(&self, bucket: &str, key: &str) -> Result<String, StorageError> {
        Ok(format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base()?,
            enc(bucket),
            enc(key)
        ))
    }

    /// Where uploads to `bucket` start.
    fn upload_url(&self, bucket: &str) -> Result<String, StorageError> {
        Ok(format!(
            "{}/upload/storage/v1/b/{}/o",
            self.base()?,
            enc(bucket)
        ))
    }

    /// The bearer token for the next request; None when anonymous.
    async fn bearer(&self) -> Result<Option<String>, StorageError> {
        if self.config.anonymous {
            return Ok(None);
        }
        let provider = self
            .auth
            .get_or_init(|| async {
                let mut builder =
                    GoogleCloudStorageBuilder::from_env().with_bucket_name("nommer-credentials");
                if let Some(path) = &self.config.service_account_path {
                    builder = builder.with_service_account_path(path);
                }
                builder
                    .build()
                    .map(|store| store.credentials().clone())
                    .map_err(|e| format!("the GCS credentials cannot be read: {e}"))
            })
            .await
            .as_ref()
            .map_err(|e| failed(e.clone()))?;
        let credential = provider
            .get_credential()
            .await
            .map_err(|e| failed(format!("cannot get a GCS access token: {e}")))?;
        Ok((!credential.bearer.is_empty()).then(|| credential.bearer.clone()))
    }

    async fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, StorageError> {
        let http = self
            .http
            .get_or_init(|| async { http_client(&self.config) })
            .await
            .as_ref()
            .map_err(|e| failed(e.clone()))?;
        let request = http.request(method, url);
        Ok(match self.bearer().await? {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    async fn send(
        &self,
        request: RequestBuilder,
        uri: &MediaUri,
    ) -> Result<Response, StorageError> {
        request.send().await.map_err(|e| {
            let e = e.without_url();
            let reason = super::store::chain(&e);
            if reason.contains("certificate") {
                return super::store::untrusted(uri, &reason);
            }
            transient(format!("{reason} ({})", uri.redacted()))
        })
    }

    async fn bucket_exists(&self, bucket: &str, uri: &MediaUri) -> Result<bool, StorageError> {
        let url = format!("{}/storage/v1/b/{}", self.base()?, enc(bucket));
        let response = self
            .send(self.request(Method::GET, &url).await?, uri)
            .await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.error(response, uri, bucket).await),
        }
    }

    /// What a failed answer means for `uri`.
    async fn error(&self, response: Response, uri: &MediaUri, bucket: &str) -> StorageError {
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return match Box::pin(self.bucket_exists(bucket, uri)).await {
                Ok(false) => no_bucket(uri, bucket),
                _ => StorageError::not_found(uri),
            };
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return refused(uri);
        }
        let body = response.text().await.unwrap_or_default();
        let message = format!(
            "HTTP {status} from GCS for {}: {}",
            uri.redacted(),
            nommer_model::tail_chars(&body, 300)
        );
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return transient(message);
        }
        failed(message)
    }

    async fn size(&self, uri: &MediaUri) -> Result<Option<u64>, StorageError> {
        let (bucket, key) = bucket_and_key(uri)?;
        let url = self.object_url(bucket, key)?;
        let response = self
            .send(self.request(Method::GET, &url).await?, uri)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            // Telling a missing bucket needs storage.buckets.get, which the
            // object roles lack: without it, the object is just missing.
            if let Ok(false) = self.bucket_exists(bucket, uri).await {
                return Err(no_bucket(uri, bucket));
            }
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.error(response, uri, bucket).await);
        }
        let meta = json(response, "GCS metadata of", uri).await?;
        object_size(&meta)
            .map(Some)
            .ok_or_else(|| failed(format!("GCS gave no size for {}", uri.redacted())))
    }
}

impl Client {
    /// Remove one object; one that is not there is no error.
    async fn delete(&self, uri: &MediaUri) -> Result<(), StorageError> {
        let (bucket, key) = bucket_and_key(uri)?;
        let url = self.object_url(bucket, key)?;
        let response = self
            .send(self.request(Method::DELETE, &url).await?, uri)
            .await?;
        match response.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.error(response, uri, bucket).await),
        }
    }
}

/// A successful answer's JSON body: `what` it is, of `uri`.
async fn json(
    response: Response,
    what: &str,
    uri: &MediaUri,
) -> Result<serde_json::Value, StorageError> {
    response
        .json()
        .await
        .map_err(|e| transient(format!("reading {what} {}: {e}", uri.redacted())))
}

/// An object resource's `size` (a decimal string in the JSON API).
fn object_size(meta: &serde_json::Value) -> Option<u64> {
    meta["size"].as_str()?.parse().ok()
}

#[async_trait]
impl Backend for Gcs {
    async fn open(
        &self,
        _rules: &Rules,
        uri: &MediaUri,
        offset: u64,
    ) -> Result<Opened, StorageError> {
        let client = &self.0;
        let (bucket, key) = bucket_and_key(uri)?;
        let url = format!("{}?alt=media", client.object_url(bucket, key)?);
        let mut request = client.request(Method::GET, &url).await?;
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = client.send(request, uri).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(client.error(response, uri, bucket).await);
        }
        Ok(crate::http::opened(response, uri, offset))
    }

    async fn head(&self, _rules: &Rules, uri: &MediaUri) -> Result<Option<u64>, StorageError> {
        self.0.size(uri).await
    }

    async fn writer(
        &self,
        _rules: &Rules,
        uri: &MediaUri,
        _size_hint: Option<u64>,
    ) -> Result<Box<dyn Writer>, StorageError> {
        let (bucket, key) = bucket_and_key(uri)?;
        Ok(Box::new(Upload {
            client: self.0.clone(),
            uri: uri.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            chunk: self.0.config.chunk_size(),
            buffer: BytesMut::new(),
            session: None,
            sent: 0,
            written: 0,
        }))
    }

    async fn delete(&self, _rules: &Rules, uri: &MediaUri) -> Result<(), StorageError> {
        self.0.delete(uri).await
    }

    async fn remove_prefix(
        &self,
        rules: &Rules,
        probe: &MediaUri,
        probe_name: &str,
    ) -> Result<u64, StorageError> {
        let client = &self.0;
        let (bucket, key) = bucket_and_key(probe)?;
        let prefix = key.strip_suffix(probe_name).unwrap_or(key);
        let url = format!("{}/storage/v1/b/{}/o", client.base()?, enc(bucket));
        let mut names = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut request = client
                .request(Method::GET, &url)
                .await?
                .query(&[("prefix", prefix), ("fields", "items(name),nextPageToken")]);
            if let Some(token) = &page {
                request = request.query(&[("pageToken", token)]);
            }
            let response = client.send(request, probe).await?;
            if !response.status().is_success() {
                return Err(client.error(response, probe, bucket).await);
            }
            let listed = json(response, "the listing of", probe).await?;
            let items = listed["items"].as_array().into_iter().flatten();
            names.extend(items.filter_map(|i| i["name"].as_str().map(String::from)));
            page = listed["nextPageToken"].as_str().map(String::from);
            if page.is_none() {
                break;
            }
        }
        for name in &names {
            let uri = MediaUri::parse(&format!("gs://{bucket}/{}", enc(name)))
                .map_err(|e| failed(e.message))?;
            self.delete(rules, &uri).await?;
        }
        Ok(names.len() as u64)
    }

    /// GCS copies between any two of its buckets by itself (a rewrite), at
    /// commit.
    async fn server_copy(
        &self,
        rules: &Rules,
        src: &MediaUri,
        dest: &MediaUri,
        _progress: ProgressFn,
    ) -> Result<Option<(Staged, Transferred)>, StorageError> {
        let Some(size) = self.0.size(src).await? else {
            return Err(StorageError::not_found(src));
        };
        if size > rules.max_download_bytes {
            return Err(crate::transfer::too_large(
                src,
                size,
                rules.max_download_bytes,
            ));
        }
        let (from_bucket, from_key) = bucket_and_key(src)?;
        let (to_bucket, to_key) = bucket_and_key(dest)?;
        let url = format!(
            "{}/rewriteTo/b/{}/o/{}",
            self.0.object_url(from_bucket, from_key)?,
            enc(to_bucket),
            enc(to_key)
        );
        tracing::info!(source = %src, dest = %dest, bytes = size, "server-side copy: the object store makes it at commit");
        let rewrite = Rewrite {
            client: self.0.clone(),
            url,
            dest: dest.clone(),
            bucket: to_bucket.to_string(),
        };
        let done = Transferred {
            bytes: size,
            retries: 0,
        };
        Ok(Some((Staged::new(rewrite), done)))
    }

    fn can_look(&self, _uri: &MediaUri) -> bool {
        self.0.config.service_account_path.is_some()
    }
}

/// A resumable upload: whole chunks go up as they fill; the last, which
/// makes the object appear, waits for commit.
struct Upload {
    client: Arc<Client>,
    uri: MediaUri,
    bucket: String,
    key: String,
    chunk: usize,
    buffer: BytesMut,
    /// The session URI, once the first chunk went.
    session: Option<String>,
    /// Bytes the session holds.
    sent: u64,
    /// Bytes handed to the writer.
    written: u64,
}

impl Upload {
    async fn start(&mut self) -> Result<String, StorageError> {
        let client = &self.client;
        let url = client.upload_url(&self.bucket)?;
        let request = client
            .request(Method::POST, &url)
            .await?
            .query(&[("uploadType", "resumable"), ("name", &self.key)])
            .json(&serde_json::json!({ "name": self.key }));
        let response = client.send(request, &self.uri).await?;
        if !response.status().is_success() {
            return Err(client.error(response, &self.uri, &self.bucket).await);
        }
        let session = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url::Url::parse(l).ok())
            .ok_or_else(|| {
                failed(format!(
                    "GCS gave no upload session for {}",
                    self.uri.redacted()
                ))
            })?;
        // The token goes to the session too: never in the clear unless allowed.
        if session.scheme() != "https" && !(session.scheme() == "http" && client.config.allow_http)
        {
            return Err(failed(format!(
                "GCS gave a {}:// upload session for {}; set gcs.allow_http to use it",
                session.scheme(),
                self.uri.redacted()
            )));
        }
        Ok(session.to_string())
    }

    /// Send `bytes` at `self.sent`; `total` on the last chunk. GCS may keep
    /// less than a request carried: what it says it holds is where the next
    /// request starts. A dropped connection is resumed the same way, after
    /// asking the session.
    async fn send(
        &mut self,
        bytes: Bytes,
        total: Option<u64>,
    ) -> Result<Option<serde_json::Value>, StorageError> {
        let session = match &self.session {
            Some(session) => session.clone(),
            None => {
                let session = self.start().await?;
                self.session = Some(session.clone());
                session
            }
        };
        let start = self.sent;
        let end = start + bytes.len() as u64;
        let mut failures = 0;
        loop {
            let rest = bytes.slice((self.sent - start) as usize..);
            let answer = if failures == 0 {
                self.put(&session, rest, total).await
            } else {
                tokio::time::sleep(CHUNK_BACKOFF.delay(failures)).await;
                self.put(&session, Bytes::new(), None).await
            };
            match answer {
                Ok(Answer::Done(object)) => {
                    self.sent = end;
                    return Ok(Some(object));
                }
                Ok(Answer::Held(held)) => {
                    // A status query (failures > 0) only says where to go on.
                    failures = 0;
                    if held < start || held > end {
                        return Err(failed(format!(
                            "GCS holds {held} bytes of the upload to {}, outside {start}..{end}",
                            self.uri.redacted()
                        )));
                    }
                    self.sent = held;
                    if held == end && total.is_none() {
                        return Ok(None);
                    }
                }
                Err(e)
                    if e.kind == StorageErrorKind::Transient && failures + 1 < CHUNK_ATTEMPTS =>
                {
                    failures += 1;
                    tracing::warn!(dest = %self.uri.redacted(), attempt = failures, error = %e.message, "a GCS upload chunk failed; resuming");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One PUT to the session of `rest` at `self.sent` (`total` on the last
    /// chunk); an empty `rest` with no total asks what the session holds.
    async fn put(
        &self,
        session: &str,
        rest: Bytes,
        total: Option<u64>,
    ) -> Result<Answer, StorageError> {
        let total_shown = total.map_or("*".to_string(), |t| t.to_string());
        let range = if rest.is_empty() {
            format!("bytes */{total_shown}")
        } else {
            format!(
                "bytes {}-{}/{total_shown}",
                self.sent,
                self.sent + rest.len() as u64 - 1
            )
        };
        let request = self
            .client
            .request(Method::PUT, session)
            .await?
            .header(reqwest::header::CONTENT_RANGE, range)
            // hyper sends no length for an empty body; GCS wants one.
            .header(reqwest::header::CONTENT_LENGTH, rest.len())
            .body(rest);
        let response = self.client.send(request, &self.uri).await?;
        match response.status().as_u16() {
            INCOMPLETE => {
                // `Range: bytes=0-N` means N + 1 bytes are held; none, none.
                let held = response
                    .headers()
                    .get(reqwest::header::RANGE)
                    .and_then(|r| r.to_str().ok())
                    .and_then(|r| r.rsplit('-').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .map_or(0, |n| n + 1);
                Ok(Answer::Held(held))
            }
            200 | 201 => json(response, "the upload's answer for", &self.uri)
                .await
                .map(Answer::Done),
            // The session is gone (expired, or cancelled): start again.
            404 | 410 => Err(failed(format!(
                "the GCS upload session for {} has expired",
                self.uri.redacted()
            ))),
            _ => Err(self.client.error(response, &self.uri, &self.bucket).await),
        }
    }

    async fn cancel(&self) {
        let Some(session) = &self.session else {
            return;
        };
        // GCS answers 499 to a cancelled session.
        if let Ok(request) = self.client.request(Method::DELETE, session).await {
            let request = request.header(reqwest::header::CONTENT_LENGTH, 0);
            if let Err(e) = request.send().await {
                tracing::warn!(dest = %self.uri.redacted(), error = %e.without_url(), "cannot cancel the GCS upload");
            }
        }
    }

    /// The last bytes, sent: the object appears. A small object goes in one
    /// request.
    async fn complete(mut self) -> Result<(), StorageError> {
        let total = self.written;
        let rest = self.buffer.split().freeze();
        let object = if self.session.is_none() {
            self.simple(rest).await
        } else {
            self.send(rest, Some(total)).await
        };
        let object = match object {
            Ok(object) => object,
            Err(e) => {
                self.cancel().await;
                return Err(e);
            }
        };
        let size = object.as_ref().and_then(object_size);
        if size != Some(total) {
            let _ = self.client.delete(&self.uri).await;
            return Err(failed(format!(
                "{} holds {size:?} bytes after the upload, not {total}; removed it",
                self.uri.redacted()
            )));
        }
        Ok(())
    }

    async fn simple(&self, bytes: Bytes) -> Result<Option<serde_json::Value>, StorageError> {
        let url = self.client.upload_url(&self.bucket)?;
        let request = self
            .client
            .request(Method::POST, &url)
            .await?
            .query(&[("uploadType", "media"), ("name", &self.key)])
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, bytes.len())
            .body(bytes);
        let response = self.client.send(request, &self.uri).await?;
        if !response.status().is_success() {
            return Err(self.client.error(response, &self.uri, &self.bucket).await);
        }
        json(response, "the upload's answer for", &self.uri)
            .await
            .map(Some)
    }
}

/// What a session said to a PUT.
enum Answer {
    /// Incomplete: it holds this many bytes.
    Held(u64),
    /// Complete: the object resource.
    Done(serde_json::Value),
}

#[async_trait]
impl Writer for Upload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.written += chunk.len() as u64;
        self.buffer.extend_from_slice(&chunk);
        // Strictly more than a chunk: the last bytes always wait for commit.
        while self.buffer.len() > self.chunk {
            let piece = self.buffer.split_to(self.chunk).freeze();
            self.send(piece, None).await?;
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<Staged, StorageError> {
        Ok(Staged::new(*self))
    }

    async fn abort(self: Box<Self>) {
        self.cancel().await
    }
}

#[async_trait]
impl Pending for Upload {
    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let upload = *self;
        upload.complete().await
    }

    async fn abort(self: Box<Self>) {
        self.cancel().await
    }
}

/// A rewrite GCS makes itself, in as many calls as it asks for.
struct Rewrite {
    client: Arc<Client>,
    url: String,
    dest: MediaUri,
    bucket: String,
}

#[async_trait]
impl Pending for Rewrite {
    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let mut token: Option<String> = None;
        loop {
            let mut request = self.client.request(Method::POST, &self.url).await?;
            if let Some(token) = &token {
                request = request.query(&[("rewriteToken", token)]);
            }
            let response = self
                .client
                .send(request.json(&serde_json::json!({})), &self.dest)
                .await?;
            if !response.status().is_success() {
                return Err(self.client.error(response, &self.dest, &self.bucket).await);
            }
            let answer = json(response, "the rewrite of", &self.dest).await?;
            if answer["done"].as_bool() == Some(true) {
                return Ok(());
            }
            token = answer["rewriteToken"].as_str().map(String::from);
            if token.is_none() {
                return Err(failed(format!(
                    "GCS stopped the rewrite to {}",
                    self.dest.redacted()
                )));
            }
        }
    }

    async fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode as Status};
    use axum::response::IntoResponse;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Session {
        held: Vec<u8>,
        data_puts: u32,
    }

    /// A resumable-upload endpoint that answers as GCS documents it does:
    /// status queries, and a `Range` short of what was sent. (fake-gcs-server
    /// completes an upload on a status query, so it cannot show a resume.) It
    /// keeps only 256 KiB of the second chunk it is sent and refuses the third
    /// with 503.
    async fn stand_in() -> (String, Arc<Mutex<Session>>) {
        let session = Arc::new(Mutex::new(Session::default()));
        let state = session.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let location = format!("{base}/session");
        let app = axum::Router::new()
            .route(
                "/upload/storage/v1/b/bkt/o",
                axum::routing::post(move || {
                    let location = location.clone();
                    async move { (Status::OK, [("location", location)]).into_response() }
                }),
            )
            .route(
                "/session",
                axum::routing::put(move |headers: HeaderMap, body: Bytes| {
                    let state = state.clone();
                    async move {
                        let range = headers["content-range"].to_str().unwrap().to_string();
                        let (span, total) = range["bytes ".len()..].split_once('/').unwrap();
                        let total: Option<usize> = total.parse().ok();
                        let mut s = state.lock().unwrap();
                        if span != "*" {
                            let start: usize = span.split('-').next().unwrap().parse().unwrap();
                            assert_eq!(start, s.held.len(), "a chunk sent from the wrong offset");
                            s.data_puts += 1;
                            match s.data_puts {
                                3 => {
                                    return (Status::SERVICE_UNAVAILABLE, "try again")
                                        .into_response()
                                }
                                2 => s.held.extend_from_slice(&body[..256 << 10]),
                                _ => s.held.extend_from_slice(&body),
                            }
                        }
                        if total == Some(s.held.len()) {
                            let object = serde_json::json!({"size": s.held.len().to_string()});
                            return axum::Json(object).into_response();
                        }
                        let held = format!("bytes=0-{}", s.held.len() - 1);
                        (Status::PERMANENT_REDIRECT, [("range", held)]).into_response()
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, session)
    }

    #[tokio::test]
    async fn an_upload_goes_on_from_what_gcs_says_it_holds() {
        let (base, session) = stand_in().await;
        let gcs = Gcs::backend(&GcsConfig {
            endpoint: Some(base),
            allow_http: true,
            anonymous: true,
            chunk_size_mib: 1,
            ..Default::default()
        });
        let rules = Rules {
            file_roots: crate::FileRoots::Off,
            policy: Default::default(),
            max_download_bytes: u64::MAX,
        };
        let uri = MediaUri::parse("gs://bkt/out/a.bin").unwrap();
        let data: Vec<u8> = (0..(7u32 << 19)).map(|i| (i % 251) as u8).collect();
        let mut writer = gcs.writer(&rules, &uri, None).await.unwrap();
        for piece in data.chunks(64 << 10) {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        let staged = writer.finish().await.unwrap();
        // Everything but the last chunk is with GCS; nothing is an object yet.
        assert_eq!(session.lock().unwrap().held.len(), 3 << 20);
        staged.commit().await.unwrap();
        let session = session.lock().unwrap();
        assert!(
            session.held == data,
            "the object differs from what was written"
        );
        assert_eq!(session.data_puts, 6);
    }
}
