//! `http(s)://` storage: streamed GETs (resumed with Range requests) and
//! streamed PUT uploads (typically to presigned URLs), with timeouts and
//! retries.

use crate::backend::{Backend, Pending, Rules, Staged, Writer};
use crate::transfer::Opened;
use crate::{net, ProgressFn, StorageError, StorageErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use nommer_model::netpolicy::NetPolicy;
use nommer_model::uri::{Location, MediaUri};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

const ATTEMPTS: u32 = 3;
/// Between upload attempts: 1 s, then 2 s.
const PUT_BACKOFF: nommer_model::backoff::Backoff =
    nommer_model::backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(8));

/// Drop the first `skip` bytes of a stream.
fn skip_bytes(
    stream: BoxStream<'static, Result<Bytes, StorageError>>,
    skip: u64,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    let mut left = skip;
    stream
        .filter_map(move |chunk| {
            let out = match chunk {
                Ok(bytes) if left >= bytes.len() as u64 => {
                    left -= bytes.len() as u64;
                    None
                }
                Ok(bytes) => {
                    let rest = bytes.slice(left as usize..);
                    left = 0;
                    Some(Ok(rest))
                }
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        })
        .boxed()
}

/// A successful ranged GET's body as the source from `offset` on. A server
/// that ignored the range sends everything: what we have is skipped.
pub(crate) fn opened(response: reqwest::Response, uri: &MediaUri, offset: u64) -> Opened {
    let partial = response.status().as_u16() == 206;
    let total = response
        .content_length()
        .map(|len| if partial { len + offset } else { len });
    let shown = uri.clone();
    let mut stream = response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| transient(describe(&e, &shown))))
        .boxed();
    if offset > 0 && !partial {
        stream = skip_bytes(stream, offset);
    }
    Opened { total, stream }
}

#[derive(Clone)]
pub struct HttpStorage {
    client: reqwest::Client,
    policy: NetPolicy,
}

fn transient(e: impl std::fmt::Display) -> StorageError {
    StorageError::new(StorageErrorKind::Transient, e.to_string())
}

/// reqwest errors can include the URL; show the redacted one instead.
fn describe(e: &reqwest::Error, uri: &MediaUri) -> String {
    let e = e.to_string();
    let without = e.split(" for url (").next().unwrap_or(&e).to_string();
    format!("{without} ({})", uri.redacted())
}

impl HttpStorage {
    pub fn new(policy: NetPolicy) -> HttpStorage {
        HttpStorage {
            client: net::client(
                policy,
                None,
                concat!("media-nommer/", env!("CARGO_PKG_VERSION")),
            ),
            policy,
        }
    }

    pub fn policy(&self) -> NetPolicy {
        self.policy
    }

    /// The resource's bytes from `offset` on (a Range request when resuming).
    pub async fn open(
        &self,
        uri: &MediaUri,
        url: &url::Url,
        offset: u64,
    ) -> Result<Opened, StorageError> {
        net::check_literal(url, &self.policy)
            .map_err(|e| StorageError::new(StorageErrorKind::Denied, e))?;
        let mut request = self.client.get(url.clone());
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = request
            .send()
            .await
            .map_err(|e| transient(describe(&e, uri)))?;
        let status = response.status();
        if status.as_u16() == 404 || status.as_u16() == 410 || status.as_u16() == 403 {
            return Err(StorageError::new(
                StorageErrorKind::NotFound,
                format!(
                    "The specified input file cannot be found: HTTP {status} from {}",
                    uri.redacted()
                ),
            ));
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(transient(format!("HTTP {status} from {}", uri.redacted())));
        }
        if !status.is_success() {
            return Err(StorageError::new(
                StorageErrorKind::Failed,
                format!("HTTP {status} from {}", uri.redacted()),
            ));
        }
        Ok(opened(response, uri, offset))
    }

    pub fn stage(
        &self,
        uri: &MediaUri,
        url: &url::Url,
        src: &Path,
        progress: ProgressFn,
    ) -> StagedPut {
        StagedPut {
            storage: self.clone(),
            uri: uri.clone(),
            url: url.clone(),
            src: src.to_path_buf(),
            progress,
        }
    }
}

/// An HTTP PUT happens whole or not at all, so it runs at commit.
pub struct StagedPut {
    storage: HttpStorage,
    uri: MediaUri,
    url: url::Url,
    src: PathBuf,
    progress: ProgressFn,
}

impl StagedPut {
    pub async fn commit(self) -> Result<(), StorageError> {
        net::check_literal(&self.url, &self.storage.policy)
            .map_err(|e| StorageError::new(StorageErrorKind::Denied, e))?;
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            match self.try_put().await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind == StorageErrorKind::Transient => {
                    tracing::warn!(attempt, error = %e.message, "upload failed, retrying");
                    last = Some(e);
                    tokio::time::sleep(PUT_BACKOFF.delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| transient("upload failed")))
    }

    async fn try_put(&self) -> Result<(), StorageError> {
        let file = tokio::fs::File::open(&self.src)
            .await
            .map_err(|e| StorageError::new(StorageErrorKind::Failed, e.to_string()))?;
        let total = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let progress = self.progress.clone();
        let mut sent = 0u64;
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 1024 * 1024).map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    sent += bytes.len() as u64;
                    progress(sent, Some(total));
                }
                chunk
            });
        let response = self
            .storage
            .client
            .put(self.url.clone())
            .header(reqwest::header::CONTENT_LENGTH, total)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| transient(describe(&e, &self.uri)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("HTTP {status} for the upload to {}", self.uri.redacted());
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(transient(message));
        }
        Err(StorageError::new(StorageErrorKind::Failed, message))
    }
}

/// The `http(s)://` backend: a client per address policy, made once (a
/// feederd's lease carries the same policy every time).
#[derive(Default)]
pub struct HttpBackend {
    clients: Mutex<Vec<HttpStorage>>,
}

/// Clients kept, one per policy seen.
const CLIENTS_KEPT: usize = 4;

impl HttpBackend {
    fn client(&self, policy: NetPolicy) -> HttpStorage {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.iter().find(|c| c.policy == policy) {
            return client.clone();
        }
        if clients.len() >= CLIENTS_KEPT {
            clients.remove(0);
        }
        let client = HttpStorage::new(policy);
        clients.push(client.clone());
        client
    }

    fn url(uri: &MediaUri) -> Result<&url::Url, StorageError> {
        match uri.location() {
            Location::Http { url } => Ok(url),
            _ => Err(StorageError::unsupported(uri, "read this URI")),
        }
    }
}

#[async_trait]
impl Backend for HttpBackend {
    async fn open(
        &self,
        rules: &Rules,
        uri: &MediaUri,
        offset: u64,
    ) -> Result<Opened, StorageError> {
        let url = Self::url(uri)?;
        self.client(rules.policy).open(uri, url, offset).await
    }

    async fn head(&self, _rules: &Rules, uri: &MediaUri) -> Result<Option<u64>, StorageError> {
        Err(StorageError::unsupported(uri, "tell a size without a GET"))
    }

    async fn writer(
        &self,
        _rules: &Rules,
        uri: &MediaUri,
        _size_hint: Option<u64>,
    ) -> Result<Box<dyn Writer>, StorageError> {
        Err(StorageError::unsupported(uri, "take a streamed upload"))
    }

    async fn delete(&self, _rules: &Rules, uri: &MediaUri) -> Result<(), StorageError> {
        Err(StorageError::unsupported(uri, "delete"))
    }

    async fn remove_prefix(
        &self,
        _rules: &Rules,
        probe: &MediaUri,
        _probe_name: &str,
    ) -> Result<u64, StorageError> {
        Err(StorageError::unsupported(probe, "remove a prefix"))
    }

    async fn stage_file(
        &self,
        rules: &Rules,
        src: &Path,
        uri: &MediaUri,
        progress: ProgressFn,
    ) -> Result<Option<Staged>, StorageError> {
        let url = Self::url(uri)?;
        let put = self.client(rules.policy).stage(uri, url, src, progress);
        Ok(Some(Staged::new(put)))
    }

    fn streams_writes(&self) -> bool {
        false
    }
}

#[async_trait]
impl Pending for StagedPut {
    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        StagedPut::commit(*self).await
    }

    async fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_made_once_per_policy() {
        let backend = HttpBackend::default();
        let strict = NetPolicy {
            forbid_private: true,
            ..Default::default()
        };
        backend.client(strict);
        backend.client(NetPolicy::default());
        backend.client(strict);
        assert_eq!(backend.clients.lock().unwrap().len(), 2);
    }
}
