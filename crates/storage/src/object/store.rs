//! What the object_store-based backends (`s3://`, `az://`) share: ranged,
//! resumable GETs, and uploads as multipart uploads that become visible only
//! on commit (CompleteMultipartUpload, Put Block List), so a failed job leaves
//! nothing at the destination. Memory stays bounded: at most `concurrency`
//! parts of `part_size` are in flight. A backend says only how to reach a
//! bucket ([`Buckets`]); [`StoreBackend`] does the rest.

use crate::backend::{Backend, Pending, Rules, Staged, Writer};
use crate::transfer::Opened;
use crate::{ProgressFn, StorageError, StorageErrorKind, Transferred};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use nommer_model::uri::{Location, MediaUri};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// One object: the store that holds it and its path there.
pub struct Target {
    pub store: Arc<dyn ObjectStore>,
    pub path: ObjectPath,
    pub bucket: String,
}

/// Reads are retried (and counted) by the transfer loop, which resumes at
/// the byte reached; writes are retried per request by object_store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Read,
    Write,
}

/// How uploads are cut.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub size: usize,
    pub concurrency: usize,
}

/// How one object_store-based scheme reaches its buckets.
#[async_trait]
pub trait Buckets: Send + Sync + 'static {
    /// The store for the bucket `uri` names (built with the right settings
    /// and credentials for `purpose`).
    async fn store(
        &self,
        uri: &MediaUri,
        bucket: &str,
        purpose: Purpose,
    ) -> Result<Arc<dyn ObjectStore>, StorageError>;

    fn parts(&self, size_hint: Option<u64>) -> Parts;

    /// Before an upload (a missing bucket made, or refused clearly).
    async fn before_write(&self, _target: &Target, _uri: &MediaUri) -> Result<(), StorageError> {
        Ok(())
    }

    /// The largest object the store copies by itself between `src` and
    /// `dest` (None: it cannot copy these).
    fn server_copy_limit(&self, _src: &MediaUri, _dest: &MediaUri) -> Option<u64> {
        None
    }

    /// Whether feederd's own settings let it look at `uri`.
    fn can_look(&self, uri: &MediaUri) -> bool;
}

pub fn client_options(allow_http: bool) -> ClientOptions {
    // No overall request timeout: a GET of a large object streams for as long
    // as it takes. Stalls are caught per chunk by the transfer loop instead.
    ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(Duration::from_secs(10))
        .with_allow_http(allow_http)
}

pub fn retry(purpose: Purpose) -> RetryConfig {
    RetryConfig {
        max_retries: if purpose == Purpose::Read { 0 } else { 3 },
        retry_timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

pub fn failed(message: String) -> StorageError {
    StorageError::new(StorageErrorKind::Failed, message)
}

pub fn refused(uri: &MediaUri) -> StorageError {
    failed(format!(
        "access to {} was refused: check the credentials",
        uri.redacted()
    ))
}

pub fn no_bucket(uri: &MediaUri, bucket: &str) -> StorageError {
    failed(format!(
        "the bucket {bucket} does not exist ({})",
        uri.redacted()
    ))
}

/// `text` with every URL's query replaced: a SAS or presigned signature
/// travels there.
fn without_queries(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut in_url = false;
    let mut in_query = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>') {
            in_url = false;
            in_query = false;
        } else if text[i..].starts_with("http://") || text[i..].starts_with("https://") {
            in_url = true;
        } else if in_url && c == '?' && !in_query {
            in_query = true;
            shown.push_str("?REDACTED");
            continue;
        }
        if !in_query {
            shown.push(c);
        }
    }
    shown
}

/// An error and its sources, the reason a connection failed included (URL
/// queries hidden).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    without_queries(&text)
}

/// A certificate the client does not trust. Not worth a retry: the same
/// certificate comes back.
pub fn untrusted(uri: &MediaUri, reason: &str) -> StorageError {
    failed(format!(
        "the server's TLS certificate for {} is not trusted ({}); see ca_certificate in docs/STORAGE.md",
        uri.redacted(),
        nommer_model::tail_chars(reason, 200)
    ))
}

/// An object_store error as a StorageError about `uri` (never its credentials).
pub fn classify(e: object_store::Error, uri: &MediaUri, bucket: &str) -> StorageError {
    let text = without_queries(&e.to_string());
    let reason = chain(&e);
    if reason.contains("certificate") {
        return untrusted(uri, &reason);
    }
    if text.contains("NoSuchBucket") || text.contains("ContainerNotFound") {
        return no_bucket(uri, bucket);
    }
    match e {
        object_store::Error::NotFound { .. } => StorageError::not_found(uri),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => failed(format!(
            "access to {} was refused: check the credentials ({})",
            uri.redacted(),
            nommer_model::tail_chars(&text, 300)
        )),
        _ if [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "AuthenticationFailed",
            "AuthorizationFailure",
            "403 Forbidden",
        ]
        .iter()
        .any(|m| text.contains(m)) =>
        {
            refused(uri)
        }
        _ => StorageError::new(
            StorageErrorKind::Transient,
            format!(
                "{} ({})",
                nommer_model::tail_chars(&reason, 300),
                uri.redacted()
            ),
        ),
    }
}

/// An object URI's bucket and key, the key checked.
pub fn bucket_and_key(uri: &MediaUri) -> Result<(&str, &str), StorageError> {
    let Location::Object { bucket, key, .. } = uri.location() else {
        return Err(StorageError::unsupported(uri, "read this URI"));
    };
    if key.is_empty() {
        return Err(failed(format!("{} names no object", uri.redacted())));
    }
    Ok((bucket, key))
}

/// A backend over object_store for the buckets `B` reaches.
pub struct StoreBackend<B>(pub B);

impl<B: Buckets> StoreBackend<B> {
    pub async fn target(&self, uri: &MediaUri, purpose: Purpose) -> Result<Target, StorageError> {
        let (bucket, key) = bucket_and_key(uri)?;
        let store = self.0.store(uri, bucket, purpose).await?;
        let path = ObjectPath::parse(key)
            .map_err(|e| failed(format!("{}: not a valid object key: {e}", uri.redacted())))?;
        Ok(Target {
            store,
            path,
            bucket: bucket.to_string(),
        })
    }
}

#[async_trait]
impl<B: Buckets> Backend for StoreBackend<B> {
    async fn open(
        &self,
        _rules: &Rules,
        uri: &MediaUri,
        offset: u64,
    ) -> Result<Opened, StorageError> {
        let target = self.target(uri, Purpose::Read).await?;
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..Default::default()
        };
        let result = target
            .store
            .get_opts(&target.path, options)
            .await
            .map_err(|e| classify(e, uri, &target.bucket))?;
        let total = result.meta.size;
        let shown = uri.clone();
        let bucket = target.bucket.clone();
        let stream = result
            .into_stream()
            .map(move |chunk| chunk.map_err(|e| classify(e, &shown, &bucket)))
            .boxed();
        Ok(Opened {
            total: Some(total),
            stream,
        })
    }

    async fn head(&self, _rules: &Rules, uri: &MediaUri) -> Result<Option<u64>, StorageError> {
        let target = self.target(uri, Purpose::Write).await?;
        match target.store.head(&target.path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { source, .. })
                if !source.to_string().contains("NoSuchBucket")
                    && !source.to_string().contains("ContainerNotFound") =>
            {
                Ok(None)
            }
            Err(e) => Err(classify(e, uri, &target.bucket)),
        }
    }

    async fn writer(
        &self,
        _rules: &Rules,
        uri: &MediaUri,
        size_hint: Option<u64>,
    ) -> Result<Box<dyn Writer>, StorageError> {
        let target = self.target(uri, Purpose::Write).await?;
        self.0.before_write(&target, uri).await?;
        Ok(Box::new(ObjectWriter {
            parts: self.0.parts(size_hint),
            target,
            uri: uri.clone(),
            buffer: BytesMut::new(),
            upload: None,
            sending: JoinSet::new(),
            written: 0,
        }))
    }

    async fn delete(&self, _rules: &Rules, uri: &MediaUri) -> Result<(), StorageError> {
        let target = self.target(uri, Purpose::Write).await?;
        match target.store.delete(&target.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify(e, uri, &target.bucket)),
        }
    }

    async fn remove_prefix(
        &self,
        _rules: &Rules,
        probe: &MediaUri,
        probe_name: &str,
    ) -> Result<u64, StorageError> {
        let target = self.target(probe, Purpose::Write).await?;
        let key = target.path.as_ref();
        let prefix = ObjectPath::from(key.strip_suffix(probe_name).unwrap_or(key));
        let listed: Vec<ObjectPath> = target
            .store
            .list(Some(&prefix))
            .map(|meta| meta.map(|m| m.location))
            .try_collect()
            .await
            .map_err(|e| classify(e, probe, &target.bucket))?;
        for path in &listed {
            match target.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(classify(e, probe, &target.bucket)),
            }
        }
        Ok(listed.len() as u64)
    }

    /// A copy the store makes itself (S3's CopyObject) when the backend
    /// allows it for these two ends: nothing moves through this machine.
    async fn server_copy(
        &self,
        rules: &Rules,
        src: &MediaUri,
        dest: &MediaUri,
        _progress: ProgressFn,
    ) -> Result<Option<(Staged, Transferred)>, StorageError> {
        let Some(limit) = self.0.server_copy_limit(src, dest) else {
            return Ok(None);
        };
        let from = self.target(src, Purpose::Write).await?;
        let size = match from.store.head(&from.path).await {
            Ok(meta) => meta.size,
            Err(e) => return Err(classify(e, src, &from.bucket)),
        };
        if size > rules.max_download_bytes {
            return Err(crate::transfer::too_large(
                src,
                size,
                rules.max_download_bytes,
            ));
        }
        if size > limit {
            return Ok(None);
        }
        let to = self.target(dest, Purpose::Write).await?;
        tracing::info!(source = %src, dest = %dest, bytes = size, "server-side copy: the object store makes it at commit");
        let copy = ServerCopy {
            store: to.store,
            from: from.path,
            to: to.path,
            bucket: to.bucket,
            dest: dest.clone(),
        };
        let done = Transferred {
            bytes: size,
            retries: 0,
        };
        Ok(Some((Staged::new(copy), done)))
    }

    fn can_look(&self, uri: &MediaUri) -> bool {
        self.0.can_look(uri)
    }
}

/// Bytes on their way to an object: buffered into parts, each uploaded as
/// soon as it is full.
struct ObjectWriter {
    target: Target,
    uri: MediaUri,
    parts: Parts,
    buffer: BytesMut,
    upload: Option<Box<dyn MultipartUpload>>,
    sending: JoinSet<object_store::Result<()>>,
    written: u64,
}

impl ObjectWriter {
    fn error(&self, e: object_store::Error) -> StorageError {
        classify(e, &self.uri, &self.target.bucket)
    }

    async fn send_part(&mut self, part: Bytes) -> Result<(), StorageError> {
        if self.upload.is_none() {
            let upload = self
                .target
                .store
                .put_multipart(&self.target.path)
                .await
                .map_err(|e| self.error(e))?;
            self.upload = Some(upload);
        }
        let upload = self.upload.as_mut().expect("started above");
        self.sending
            .spawn(upload.put_part(PutPayload::from_bytes(part)));
        // Backpressure: at most `concurrency` parts in memory and in flight.
        while self.sending.len() >= self.parts.concurrency.max(1) {
            self.join_one().await?;
        }
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), StorageError> {
        match self.sending.join_next().await {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(self.error(e)),
            Some(Err(e)) => Err(failed(format!("an upload task failed: {e}"))),
        }
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        if self.upload.is_some() && !self.buffer.is_empty() {
            let last = self.buffer.split().freeze();
            self.send_part(last).await?;
        }
        while !self.sending.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Writer for ObjectWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.written += chunk.len() as u64;
        self.buffer.extend_from_slice(&chunk);
        while self.buffer.len() >= self.parts.size {
            let part = self.buffer.split_to(self.parts.size).freeze();
            self.send_part(part).await?;
        }
        Ok(())
    }

    /// Upload whatever is left; the object is still not visible.
    async fn finish(mut self: Box<Self>) -> Result<Staged, StorageError> {
        if let Err(e) = self.flush().await {
            self.abort().await;
            return Err(e);
        }
        Ok(Staged::new(StagedObject {
            store: self.target.store.clone(),
            path: self.target.path.clone(),
            bucket: self.target.bucket.clone(),
            uri: self.uri.clone(),
            small: self.upload.is_none().then(|| self.buffer.split().freeze()),
            upload: self.upload.take(),
            size: self.written,
        }))
    }

    /// Give up: parts already sent are discarded by the store.
    async fn abort(mut self: Box<Self>) {
        self.sending.abort_all();
        if let Some(mut upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(dest = %self.uri.redacted(), error = %chain(&e), "cannot abort the multipart upload");
            }
        }
    }
}

/// An upload whose bytes are all with the store (or, when smaller than one
/// part, in memory), waiting to be made visible.
struct StagedObject {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    bucket: String,
    uri: MediaUri,
    small: Option<Bytes>,
    upload: Option<Box<dyn MultipartUpload>>,
    size: u64,
}

#[async_trait]
impl Pending for StagedObject {
    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        let result = match (self.small.take(), self.upload.as_mut()) {
            (Some(bytes), _) => self
                .store
                .put(&self.path, PutPayload::from_bytes(bytes))
                .await
                .map(|_| ()),
            (None, Some(upload)) => upload.complete().await.map(|_| ()),
            (None, None) => Ok(()),
        };
        result.map_err(|e| classify(e, &self.uri, &self.bucket))?;
        // Verify what the store now holds.
        let meta = self
            .store
            .head(&self.path)
            .await
            .map_err(|e| classify(e, &self.uri, &self.bucket))?;
        if meta.size != self.size {
            let _ = self.store.delete(&self.path).await;
            return Err(failed(format!(
                "{} holds {} bytes after the upload, not {}; removed it",
                self.uri.redacted(),
                meta.size,
                self.size
            )));
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(mut upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(dest = %self.uri.redacted(), error = %chain(&e), "cannot abort the multipart upload");
            }
        }
    }
}

/// A copy staged for the store to make itself; it happens at commit, so it
/// is fenced like any other upload.
struct ServerCopy {
    store: Arc<dyn ObjectStore>,
    from: ObjectPath,
    to: ObjectPath,
    bucket: String,
    dest: MediaUri,
}

#[async_trait]
impl Pending for ServerCopy {
    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        self.store
            .copy(&self.from, &self.to)
            .await
            .map_err(|e| classify(e, &self.dest, &self.bucket))
    }

    async fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_queries_are_hidden_in_error_text() {
        let text = "error sending request for url (https://a.blob/c/b.mp4?sv=1&sig=s3cret): boom";
        assert_eq!(
            without_queries(text),
            "error sending request for url (https://a.blob/c/b.mp4?REDACTED): boom"
        );
        assert_eq!(without_queries("what? no url"), "what? no url");
    }
}
