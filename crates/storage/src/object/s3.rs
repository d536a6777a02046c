//! `s3://`: AWS S3 and S3-compatible servers (MinIO, Ceph, R2, Backblaze),
//! through object_store. Credentials: the job's own (the seed's
//! `s3://KEY:SECRET@bucket/key`), then configured keys, then the standard AWS
//! chain (`aws.rs`).

use super::aws::AwsChain;
use super::config::{ChecksumAlgorithm, S3Config};
use super::store::{client_options, failed, retry, Buckets, Parts, Purpose, StoreBackend, Target};
use crate::StorageError;
use async_trait::async_trait;
use nommer_model::uri::{Credentials, Location, MediaUri};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// S3's limit for a single CopyObject.
const MAX_COPY_OBJECT: u64 = 5 * 1024 * 1024 * 1024;

pub struct S3 {
    config: S3Config,
    chain: OnceCell<Arc<AwsChain>>,
}

impl S3 {
    pub fn backend(config: &S3Config) -> StoreBackend<S3> {
        StoreBackend(S3 {
            config: config.clone(),
            chain: OnceCell::new(),
        })
    }

    async fn chain(&self) -> Arc<AwsChain> {
        self.chain
            .get_or_init(|| async { Arc::new(AwsChain::load().await) })
            .await
            .clone()
    }

    fn region(configured: Option<String>) -> String {
        configured
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into())
    }

    fn credentials(uri: &MediaUri) -> Option<&Credentials> {
        match uri.location() {
            Location::Object { credentials, .. } => credentials.as_ref(),
            _ => None,
        }
    }

    async fn typed(
        &self,
        bucket: &str,
        credentials: Option<&Credentials>,
        purpose: Purpose,
    ) -> Result<AmazonS3, StorageError> {
        let settings = self.config.for_bucket(bucket);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(Self::region(settings.region))
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_client_options(client_options(settings.allow_http))
            .with_retry(retry(purpose));
        if let Some(endpoint) = settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if self.config.checksum {
            builder = match self.config.checksum_algorithm {
                ChecksumAlgorithm::Crc64nvme => builder
                    .with_checksum_algorithm(object_store::aws::Checksum::CRC64NVME)
                    .with_unsigned_payload(true),
                ChecksumAlgorithm::Sha256 => {
                    builder.with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                }
            };
        }
        builder = match (credentials, settings.static_keys) {
            (Some(c), _) => builder
                .with_access_key_id(&c.access_key)
                .with_secret_access_key(&c.secret),
            (None, Some((key, secret))) => builder
                .with_access_key_id(key)
                .with_secret_access_key(secret),
            (None, None) => builder.with_credentials(self.chain().await),
        };
        builder
            .build()
            .map_err(|e| failed(format!("S3 settings for bucket {bucket}: {e}")))
    }

    /// CreateBucket, sent to a URL presigned with the store's own credentials.
    async fn create_bucket(&self, s3: &AmazonS3, bucket: &str) -> Result<(), StorageError> {
        use object_store::signer::Signer;
        let region = Self::region(self.config.for_bucket(bucket).region);
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
}

#[async_trait]
impl Buckets for S3 {
    async fn store(
        &self,
        uri: &MediaUri,
        bucket: &str,
        purpose: Purpose,
    ) -> Result<Arc<dyn ObjectStore>, StorageError> {
        let s3 = self.typed(bucket, Self::credentials(uri), purpose).await?;
        Ok(Arc::new(s3))
    }

    fn parts(&self, size_hint: Option<u64>) -> Parts {
        Parts {
            size: self.config.part_size(size_hint),
            concurrency: self.config.upload_concurrency,
        }
    }

    /// A missing bucket is a clear error, or is created when
    /// `create_missing_buckets` allows. (Some S3-compatible servers would
    /// create it silently on the first PUT.) A listing we may not do says
    /// nothing either way, and the upload goes ahead.
    async fn before_write(&self, target: &Target, uri: &MediaUri) -> Result<(), StorageError> {
        let missing = match target.store.list_with_delimiter(Some(&target.path)).await {
            Ok(_) => false,
            Err(e) => e.to_string().contains("NoSuchBucket"),
        };
        if !missing {
            return Ok(());
        }
        if !self.config.create_missing_buckets {
            return Err(failed(format!(
                "the bucket {} does not exist ({}); set s3.create_missing_buckets to create it",
                target.bucket,
                uri.redacted()
            )));
        }
        let s3 = self
            .typed(&target.bucket, Self::credentials(uri), Purpose::Write)
            .await?;
        self.create_bucket(&s3, &target.bucket).await?;
        tracing::info!(bucket = %target.bucket, "created the missing destination bucket");
        Ok(())
    }

    /// Within one bucket, under the same credentials, S3 copies by itself.
    fn server_copy_limit(&self, src: &MediaUri, dest: &MediaUri) -> Option<u64> {
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
        same_place.then_some(MAX_COPY_OBJECT)
    }

    fn can_look(&self, uri: &MediaUri) -> bool {
        let Location::Object { bucket, .. } = uri.location() else {
            return false;
        };
        uri.has_credentials() || self.config.for_bucket(bucket).static_keys.is_some()
    }
}
