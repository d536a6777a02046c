//! `s3://`, `gs://` and `az://` storage through the `object_store` crate:
//! ranged, resumable GETs, and uploads as multipart uploads that become
//! visible only on commit (CompleteMultipartUpload), so a failed job leaves
//! nothing at the destination. Memory stays bounded: at most
//! `upload_concurrency` parts of `part_size_mib` are in flight.

mod aws;
pub mod config;

use crate::transfer::Opened;
use crate::{StorageError, StorageErrorKind};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use nommer_model::uri::{Credentials, Location, MediaUri, Scheme};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

pub use config::{ChecksumAlgorithm, ObjectConfig};

#[derive(Clone)]
pub struct ObjectStorage {
    config: Arc<ObjectConfig>,
    aws_chain: Arc<OnceCell<Arc<aws::AwsChain>>>,
}

/// One object: the store that holds it and its path there.
struct Target {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    bucket: String,
    /// The same store, typed, for what only S3 offers (creating buckets).
    s3: Option<Arc<AmazonS3>>,
}

/// Reads are retried (and counted) by the transfer loop, which resumes at
/// the byte reached; writes are retried per request by object_store.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Read,
    Write,
}

fn client_options(allow_http: bool) -> ClientOptions {
    // No overall request timeout: a GET of a large object streams for as long
    // as it takes. Stalls are caught per chunk by the transfer loop instead.
    ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(Duration::from_secs(10))
        .with_allow_http(allow_http)
}

fn retry(purpose: Purpose) -> RetryConfig {
    RetryConfig {
        max_retries: if purpose == Purpose::Read { 0 } else { 3 },
        retry_timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

fn failed(message: String) -> StorageError {
    StorageError::new(StorageErrorKind::Failed, message)
}

/// An object_store error as a StorageError about `uri` (never its credentials).
fn classify(e: object_store::Error, uri: &MediaUri, bucket: &str) -> StorageError {
    let text = e.to_string();
    if text.contains("NoSuchBucket") || text.contains("ContainerNotFound") {
        return failed(format!(
            "the bucket {bucket} does not exist ({})",
            uri.redacted()
        ));
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
            "403 Forbidden",
        ]
        .iter()
        .any(|m| text.contains(m)) =>
        {
            failed(format!(
                "access to {} was refused: check the credentials",
                uri.redacted()
            ))
        }
        _ => StorageError::new(
            StorageErrorKind::Transient,
            format!(
                "{} ({})",
                nommer_model::tail_chars(&text, 300),
                uri.redacted()
            ),
        ),
    }
}

impl ObjectStorage {
    pub fn new(config: ObjectConfig) -> ObjectStorage {
        ObjectStorage {
            config: Arc::new(config),
            aws_chain: Arc::default(),
        }
    }

    pub fn config(&self) -> &ObjectConfig {
        &self.config
    }

    async fn chain(&self) -> Arc<aws::AwsChain> {
        self.aws_chain
            .get_or_init(|| async { Arc::new(aws::AwsChain::load().await) })
            .await
            .clone()
    }

    fn region(configured: Option<String>) -> String {
        configured
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into())
    }

    async fn s3(
        &self,
        bucket: &str,
        credentials: Option<&Credentials>,
        purpose: Purpose,
    ) -> Result<Arc<AmazonS3>, StorageError> {
        let settings = self.config.s3.for_bucket(bucket);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(Self::region(settings.region))
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_client_options(client_options(settings.allow_http))
            .with_retry(retry(purpose));
        if let Some(endpoint) = settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if self.config.s3.checksum {
            builder = match self.config.s3.checksum_algorithm {
                ChecksumAlgorithm::Crc64nvme => builder
                    .with_checksum_algorithm(object_store::aws::Checksum::CRC64NVME)
                    .with_unsigned_payload(true),
                ChecksumAlgorithm::Sha256 => {
                    builder.with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                }
            };
        }
        // The job's own keys first (the seed's s3://KEY:SECRET@bucket form),
        // then configured keys, then the standard AWS chain.
        builder = match (credentials, settings.static_keys) {
            (Some(c), _) => builder
                .with_access_key_id(&c.access_key)
                .with_secret_access_key(&c.secret),
            (None, Some((key, secret))) => builder
                .with_access_key_id(key)
                .with_secret_access_key(secret),
            (None, None) => builder.with_credentials(self.chain().await),
        };
        let store = builder
            .build()
            .map_err(|e| failed(format!("S3 settings for bucket {bucket}: {e}")))?;
        Ok(Arc::new(store))
    }

    fn gcs(&self, bucket: &str, purpose: Purpose) -> Result<Arc<dyn ObjectStore>, StorageError> {
        let gcs = &self.config.gcs;
        let mut builder = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(client_options(gcs.allow_http))
            .with_retry(retry(purpose));
        if let Some(url) = &gcs.endpoint {
            builder = builder.with_base_url(url);
        }
        if gcs.anonymous {
            builder = builder.with_skip_signature(true);
        }
        if let Some(path) = &gcs.service_account_path {
            builder = builder.with_service_account_path(path);
        }
        let store = builder
            .build()
            .map_err(|e| failed(format!("GCS settings for bucket {bucket}: {e}")))?;
        Ok(Arc::new(store))
    }

    fn azure(
        &self,
        container: &str,
        purpose: Purpose,
    ) -> Result<Arc<dyn ObjectStore>, StorageError> {
        let azure = &self.config.azure;
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_container_name(container)
            .with_client_options(client_options(azure.allow_http))
            .with_allow_http(azure.allow_http)
            .with_retry(retry(purpose));
        if azure.anonymous {
            builder = builder.with_skip_signature(true);
        }
        if let Some(account) = &azure.account {
            builder = builder.with_account(account);
        }
        if let Some(key) = &azure.access_key {
            builder = builder.with_access_key(key);
        }
        if let Some(endpoint) = &azure.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let store = builder
            .build()
            .map_err(|e| failed(format!("Azure settings for container {container}: {e}")))?;
        Ok(Arc::new(store))
    }

    async fn target(&self, uri: &MediaUri, purpose: Purpose) -> Result<Target, StorageError> {
        let Location::Object {
            bucket,
            key,
            credentials,
        } = uri.location()
        else {
            return Err(crate::unsupported(uri));
        };
        if key.is_empty() {
            return Err(failed(format!("{} names no object", uri.redacted())));
        }
        let (store, s3): (Arc<dyn ObjectStore>, _) = match uri.scheme() {
            Scheme::S3 => {
                let s3 = self.s3(bucket, credentials.as_ref(), purpose).await?;
                (s3.clone(), Some(s3))
            }
            Scheme::Gs => (self.gcs(bucket, purpose)?, None),
            Scheme::Az => (self.azure(bucket, purpose)?, None),
            _ => return Err(crate::unsupported(uri)),
        };
        let path = ObjectPath::parse(key)
            .map_err(|e| failed(format!("{}: not a valid object key: {e}", uri.redacted())))?;
        Ok(Target {
            store,
            path,
            bucket: bucket.clone(),
            s3,
        })
    }

    /// Before an upload: a missing bucket is a clear error, or is created
    /// when `create_missing_buckets` allows. (Some S3-compatible servers
    /// would create it silently on the first PUT.) A listing we may not do
    /// says nothing either way, and the upload goes ahead.
    async fn ensure_bucket(&self, target: &Target, uri: &MediaUri) -> Result<(), StorageError> {
        let Some(s3) = &target.s3 else {
            return Ok(());
        };
        let missing = match target.store.list_with_delimiter(Some(&target.path)).await {
            Ok(_) => false,
            Err(e) => e.to_string().contains("NoSuchBucket"),
        };
        if !missing {
            return Ok(());
        }
        if !self.config.s3.create_missing_buckets {
            return Err(failed(format!(
                "the bucket {} does not exist ({}); set s3.create_missing_buckets to create it",
                target.bucket,
                uri.redacted()
            )));
        }
        self.create_bucket(s3, &target.bucket).await?;
        tracing::info!(bucket = %target.bucket, "created the missing destination bucket");
        Ok(())
    }

    /// CreateBucket, sent to a URL presigned with the store's own credentials.
    async fn create_bucket(&self, s3: &AmazonS3, bucket: &str) -> Result<(), StorageError> {
        use object_store::signer::Signer;
        let region = Self::region(self.config.s3.for_bucket(bucket).region);
        let url = s3
            .signed_url(
                http::Method::PUT,
                &ObjectPath::from(""),
                Duration::from_secs(300),
            )
            .await
            .map_err(|e| failed(format!("cannot sign CreateBucket for {bucket}: {e}")))?;
        let body = if region == "us-east-1" {
            String::new()
        } else {
            format!("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>")
        };
        let response = reqwest::Client::new()
            .put(url)
            .body(body)
            .send()
            .await
            .map_err(|e| failed(format!("creating bucket {bucket}: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "creating bucket {bucket}: HTTP {}",
                response.status()
            )));
        }
        Ok(())
    }

    /// The object's bytes from `offset` on.
    pub async fn open(&self, uri: &MediaUri, offset: u64) -> Result<Opened, StorageError> {
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

    /// A copy S3 makes itself (CopyObject), when both ends are in the same
    /// bucket under the same credentials and the object fits one CopyObject:
    /// nothing moves through this machine. None when it cannot be one.
    pub async fn stage_server_copy(
        &self,
        src: &MediaUri,
        dest: &MediaUri,
    ) -> Result<Option<(ServerCopy, u64)>, StorageError> {
        /// S3's limit for a single CopyObject.
        const MAX_COPY_OBJECT: u64 = 5 * 1024 * 1024 * 1024;
        let same_place = match (src.location(), dest.location()) {
            (
                Location::Object {
                    bucket: from,
                    credentials: from_keys,
                    ..
                },
                Location::Object {
                    bucket: to,
                    credentials: to_keys,
                    ..
                },
            ) => from == to && from_keys == to_keys,
            _ => false,
        };
        if !same_place || src.scheme() != Scheme::S3 || dest.scheme() != Scheme::S3 {
            return Ok(None);
        }
        let from = self.target(src, Purpose::Write).await?;
        let size = match from.store.head(&from.path).await {
            Ok(meta) => meta.size,
            Err(e) => return Err(classify(e, src, &from.bucket)),
        };
        if size > MAX_COPY_OBJECT {
            return Ok(None);
        }
        let to = self.target(dest, Purpose::Write).await?;
        let copy = ServerCopy {
            store: to.store,
            from: from.path,
            to: to.path,
            bucket: to.bucket,
            dest: dest.clone(),
        };
        Ok(Some((copy, size)))
    }

    /// Remove every object whose key starts with `probe`'s key less its
    /// last `probe_name` characters (a prefix given as a URI of a name in
    /// it); how many.
    pub async fn remove_prefix(
        &self,
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

    /// Remove the object; one that is not there is no error.
    pub async fn delete(&self, uri: &MediaUri) -> Result<(), StorageError> {
        let target = self.target(uri, Purpose::Write).await?;
        match target.store.delete(&target.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify(e, uri, &target.bucket)),
        }
    }

    /// The object's size, or None when it does not exist.
    pub async fn head(&self, uri: &MediaUri) -> Result<Option<u64>, StorageError> {
        let target = self.target(uri, Purpose::Write).await?;
        match target.store.head(&target.path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { source, .. })
                if !source.to_string().contains("NoSuchBucket") =>
            {
                Ok(None)
            }
            Err(e) => Err(classify(e, uri, &target.bucket)),
        }
    }

    /// A writer towards `uri`; nothing is visible there until commit.
    pub async fn sink(
        &self,
        uri: &MediaUri,
        size_hint: Option<u64>,
    ) -> Result<ObjectSink, StorageError> {
        let target = self.target(uri, Purpose::Write).await?;
        self.ensure_bucket(&target, uri).await?;
        Ok(ObjectSink {
            part_size: self.config.s3.part_size(size_hint),
            concurrency: self.config.s3.upload_concurrency.max(1),
            target,
            uri: uri.clone(),
            buffer: BytesMut::new(),
            upload: None,
            parts: JoinSet::new(),
            written: 0,
        })
    }
}

/// Bytes on their way to an object: buffered into parts, each uploaded as
/// soon as it is full.
pub struct ObjectSink {
    target: Target,
    uri: MediaUri,
    part_size: usize,
    concurrency: usize,
    buffer: BytesMut,
    upload: Option<Box<dyn MultipartUpload>>,
    parts: JoinSet<object_store::Result<()>>,
    written: u64,
}

impl ObjectSink {
    fn error(&self, e: object_store::Error) -> StorageError {
        classify(e, &self.uri, &self.target.bucket)
    }

    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.written += chunk.len() as u64;
        self.buffer.extend_from_slice(&chunk);
        while self.buffer.len() >= self.part_size {
            let part = self.buffer.split_to(self.part_size).freeze();
            self.send_part(part).await?;
        }
        Ok(())
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
        self.parts
            .spawn(upload.put_part(PutPayload::from_bytes(part)));
        // Backpressure: at most `concurrency` parts in memory and in flight.
        while self.parts.len() >= self.concurrency {
            self.join_one().await?;
        }
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), StorageError> {
        match self.parts.join_next().await {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(self.error(e)),
            Some(Err(e)) => Err(failed(format!("an upload task failed: {e}"))),
        }
    }

    /// Upload whatever is left; the object is still not visible.
    pub async fn finish(mut self) -> Result<StagedObject, StorageError> {
        let result = self.flush().await;
        if let Err(e) = result {
            self.abort().await;
            return Err(e);
        }
        Ok(StagedObject {
            store: self.target.store.clone(),
            path: self.target.path.clone(),
            bucket: self.target.bucket.clone(),
            uri: self.uri.clone(),
            small: self.upload.is_none().then(|| self.buffer.split().freeze()),
            upload: self.upload.take(),
            size: self.written,
        })
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        if self.upload.is_some() && !self.buffer.is_empty() {
            let last = self.buffer.split().freeze();
            self.send_part(last).await?;
        }
        while !self.parts.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }

    /// Give up: parts already sent are discarded by the store.
    pub async fn abort(mut self) {
        self.parts.abort_all();
        if let Some(mut upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(dest = %self.uri.redacted(), error = %e, "cannot abort the multipart upload");
            }
        }
    }
}

/// An upload whose bytes are all with the store (or, when smaller than one
/// part, in memory), waiting to be made visible.
pub struct StagedObject {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    bucket: String,
    uri: MediaUri,
    small: Option<Bytes>,
    upload: Option<Box<dyn MultipartUpload>>,
    size: u64,
}

impl StagedObject {
    pub async fn commit(mut self) -> Result<(), StorageError> {
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

    pub async fn abort(mut self) {
        if let Some(mut upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(dest = %self.uri.redacted(), error = %e, "cannot abort the multipart upload");
            }
        }
    }
}

/// A copy staged for the store to make itself; it happens at commit, so it
/// is fenced like any other upload.
pub struct ServerCopy {
    store: Arc<dyn ObjectStore>,
    from: ObjectPath,
    to: ObjectPath,
    bucket: String,
    dest: MediaUri,
}

impl ServerCopy {
    pub async fn commit(self) -> Result<(), StorageError> {
        self.store
            .copy(&self.from, &self.to)
            .await
            .map_err(|e| classify(e, &self.dest, &self.bucket))
    }
}
