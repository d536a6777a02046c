//! Object storage settings: `[s3]` (with per-bucket `[s3.buckets.NAME]`
//! overrides, for S3-compatible servers), `[gcs]` and `[azure]`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ObjectConfig {
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
}

/// Settings for S3 and S3-compatible servers (MinIO, Ceph, R2, Backblaze).
/// Unset fields fall back to the standard AWS chains (environment, profile,
/// instance role, web identity).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub region: Option<String>,
    /// e.g. `http://minio.internal:9000`; unset means AWS.
    pub endpoint: Option<String>,
    /// `bucket` in the path rather than the host name (most S3-compatibles).
    pub path_style: bool,
    /// Allow `http://` endpoints.
    pub allow_http: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Create a missing destination bucket instead of failing the job.
    pub create_missing_buckets: bool,
    /// Send a checksum with every upload request; the server rejects a body
    /// that does not match.
    pub checksum: bool,
    /// `crc64nvme` (the default; the payload is then sent unsigned, as the
    /// AWS CLI does, and hashed once with a fast CRC) or `sha256` (for
    /// servers without CRC64-NVME; the payload is hashed for the signature too).
    pub checksum_algorithm: ChecksumAlgorithm,
    /// Multipart part size in MiB (at least 5); grows for very large objects
    /// to stay under 10,000 parts.
    pub part_size_mib: u64,
    /// Parts uploaded at once per transfer.
    pub upload_concurrency: usize,
    /// Submit-time HEAD of s3/gs/az sources when credentials are at hand.
    pub check_sources_at_submit: bool,
    pub buckets: BTreeMap<String, S3Bucket>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            region: None,
            endpoint: None,
            path_style: false,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            create_missing_buckets: false,
            checksum: true,
            checksum_algorithm: ChecksumAlgorithm::Crc64nvme,
            part_size_mib: 8,
            upload_concurrency: 4,
            check_sources_at_submit: true,
            buckets: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    Crc64nvme,
    Sha256,
}

/// Per-bucket overrides of [`S3Config`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Bucket {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: Option<bool>,
    pub allow_http: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The effective settings for one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Resolved {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub allow_http: bool,
    pub static_keys: Option<(String, String)>,
}

impl S3Config {
    pub fn for_bucket(&self, bucket: &str) -> S3Resolved {
        let over = self.buckets.get(bucket).cloned().unwrap_or_default();
        let key = over.access_key_id.or_else(|| self.access_key_id.clone());
        let secret = over
            .secret_access_key
            .or_else(|| self.secret_access_key.clone());
        S3Resolved {
            region: over.region.or_else(|| self.region.clone()),
            endpoint: over.endpoint.or_else(|| self.endpoint.clone()),
            path_style: over.path_style.unwrap_or(self.path_style),
            allow_http: over.allow_http.unwrap_or(self.allow_http),
            static_keys: key.zip(secret),
        }
    }

    pub fn part_size(&self, size_hint: Option<u64>) -> usize {
        const MIB: u64 = 1024 * 1024;
        let floor = self.part_size_mib.max(5) * MIB;
        // S3 allows 10,000 parts; leave room for a size hint that was low.
        let needed = size_hint.map_or(0, |size| size.div_ceil(9_000).div_ceil(MIB) * MIB);
        floor.max(needed) as usize
    }
}

const MIB: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GcsConfig {
    /// A service account key file; unset means the standard chain
    /// (GOOGLE_APPLICATION_CREDENTIALS, workload identity, metadata server).
    pub service_account_path: Option<String>,
    /// Another base URL, e.g. an emulator's `http://127.0.0.1:4443`.
    pub endpoint: Option<String>,
    pub allow_http: bool,
    /// Send unsigned requests (public buckets, emulators).
    pub anonymous: bool,
    /// Resumable upload chunk size in MiB (at least 1): the memory an
    /// upload holds, twice over at most.
    pub chunk_size_mib: usize,
    /// A PEM file of a CA to trust besides the system's (a private endpoint).
    pub ca_certificate: Option<String>,
}

impl Default for GcsConfig {
    fn default() -> Self {
        GcsConfig {
            service_account_path: None,
            endpoint: None,
            allow_http: false,
            anonymous: false,
            chunk_size_mib: 8,
            ca_certificate: None,
        }
    }
}

impl GcsConfig {
    /// In bytes; a whole number of MiB is the multiple of 256 KiB GCS asks.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size_mib.max(1) * MIB
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    /// The storage account `az://container/blob` URIs live in.
    pub account: Option<String>,
    /// The account's shared key.
    pub access_key: Option<String>,
    /// A SAS token (`sv=...&sig=...`) for the account or a container.
    pub sas_token: Option<String>,
    /// Use the VM's (or pod's) managed identity, even where other
    /// credentials are in the environment.
    pub managed_identity: bool,
    /// A user-assigned managed identity's client id.
    pub client_id: Option<String>,
    /// Another identity endpoint than the VM's metadata service.
    pub msi_endpoint: Option<String>,
    /// The blob service URL, e.g. Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`; unset means
    /// `https://ACCOUNT.blob.core.windows.net`.
    pub endpoint: Option<String>,
    pub allow_http: bool,
    /// A PEM file of a CA to trust besides the system's (a private
    /// endpoint, Azure Stack).
    pub ca_certificate: Option<String>,
    /// Send unsigned requests (public containers, emulators).
    pub anonymous: bool,
    /// Block size in MiB (at least 1) for staged uploads.
    pub part_size_mib: usize,
    /// Blocks uploaded at once per transfer.
    pub upload_concurrency: usize,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            account: None,
            access_key: None,
            sas_token: None,
            managed_identity: false,
            client_id: None,
            msi_endpoint: None,
            endpoint: None,
            allow_http: false,
            ca_certificate: None,
            anonymous: false,
            part_size_mib: 8,
            upload_concurrency: 4,
        }
    }
}

impl AzureConfig {
    pub fn part_size(&self) -> usize {
        self.part_size_mib.max(1) * MIB
    }
}

impl ObjectConfig {
    /// The same settings with every secret replaced, for display.
    pub fn redacted(&self) -> ObjectConfig {
        let hide = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some("REDACTED".into());
            }
        };
        let mut shown = self.clone();
        hide(&mut shown.s3.secret_access_key);
        for bucket in shown.s3.buckets.values_mut() {
            hide(&mut bucket.secret_access_key);
        }
        hide(&mut shown.azure.access_key);
        hide(&mut shown.azure.sas_token);
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_settings_override_the_defaults() {
        let mut config = S3Config {
            region: Some("eu-west-1".into()),
            access_key_id: Some("AK".into()),
            secret_access_key: Some("SK".into()),
            ..Default::default()
        };
        config.buckets.insert(
            "minio".into(),
            S3Bucket {
                endpoint: Some("http://127.0.0.1:9000".into()),
                path_style: Some(true),
                allow_http: Some(true),
                ..Default::default()
            },
        );
        let minio = config.for_bucket("minio");
        assert_eq!(minio.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(minio.path_style && minio.allow_http);
        assert_eq!(minio.region.as_deref(), Some("eu-west-1"));
        assert_eq!(minio.static_keys, Some(("AK".into(), "SK".into())));
        let aws = config.for_bucket("other");
        assert_eq!(aws.endpoint, None);
        assert!(!aws.path_style);
    }

    #[test]
    fn parts_grow_to_stay_under_the_part_limit() {
        let config = S3Config::default();
        assert_eq!(config.part_size(None), 8 << 20);
        assert_eq!(config.part_size(Some(1 << 30)), 8 << 20);
        let five_tb = 5u64 << 40;
        let part = config.part_size(Some(five_tb)) as u64;
        assert!(five_tb.div_ceil(part) <= 10_000, "{part}");
    }

    #[test]
    fn redaction_hides_every_secret() {
        let mut config = ObjectConfig::default();
        config.s3.secret_access_key = Some("s3cret".into());
        config.azure.access_key = Some("azk3y".into());
        config.azure.sas_token = Some("sv=1&sig=s4s".into());
        config.s3.buckets.insert(
            "b".into(),
            S3Bucket {
                secret_access_key: Some("b-s3cret".into()),
                ..Default::default()
            },
        );
        let shown = format!("{:?}", config.redacted());
        for secret in ["s3cret", "azk3y", "b-s3cret", "s4s"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
