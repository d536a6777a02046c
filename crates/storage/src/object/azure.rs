//! `az://container/blob`: Azure Blob Storage (and Azurite), through
//! object_store. Uploads are staged blocks made visible by Put Block List.
//! Credentials: an account key, a SAS token, anonymous, or else Azure's
//! chain (workload identity, managed identity on the VM's metadata endpoint).

use super::config::AzureConfig;
use super::store::{client_options, failed, retry, Buckets, Parts, Purpose, StoreBackend};
use crate::StorageError;
use async_trait::async_trait;
use nommer_model::uri::MediaUri;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::ObjectStore;
use std::sync::Arc;

pub struct Azure {
    config: AzureConfig,
}

impl Azure {
    pub fn backend(config: &AzureConfig) -> StoreBackend<Azure> {
        StoreBackend(Azure {
            config: config.clone(),
        })
    }
}

#[async_trait]
impl Buckets for Azure {
    async fn store(
        &self,
        _uri: &MediaUri,
        container: &str,
        purpose: Purpose,
    ) -> Result<Arc<dyn ObjectStore>, StorageError> {
        let azure = &self.config;
        let mut options = client_options(azure.allow_http);
        if let Some(path) = &azure.ca_certificate {
            let pem = std::fs::read(path)
                .map_err(|e| failed(format!("azure.ca_certificate {path}: {e}")))?;
            let certificate = object_store::Certificate::from_pem(&pem)
                .map_err(|e| failed(format!("azure.ca_certificate {path}: {e}")))?;
            options = options.with_root_certificate(certificate);
        }
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_container_name(container)
            .with_client_options(options)
            .with_allow_http(azure.allow_http)
            .with_retry(retry(purpose));
        if azure.anonymous {
            builder = builder.with_skip_signature(true);
        }
        if let Some(account) = &azure.account {
            builder = builder.with_account(account);
        }
        // What the config names wins over the AZURE_* environment.
        let credential = match (&azure.access_key, &azure.sas_token, azure.managed_identity) {
            (Some(key), None, false) => {
                builder = builder.with_access_key(key);
                Some("access_key")
            }
            (None, Some(sas), false) => {
                builder = builder.with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?'));
                Some("sas_token")
            }
            (None, None, true) => Some("managed_identity"),
            (None, None, false) => None,
            _ => {
                return Err(failed(
                    "azure: set one of access_key, sas_token and managed_identity".into(),
                ))
            }
        };
        if let Some(credential) = credential {
            builder = builder.with_config(AzureConfigKey::CredentialType, credential);
        }
        if let Some(id) = &azure.client_id {
            builder = builder.with_client_id(id);
        }
        if let Some(endpoint) = &azure.msi_endpoint {
            builder = builder.with_msi_endpoint(endpoint);
        }
        if let Some(endpoint) = &azure.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let store = builder
            .build()
            .map_err(|e| failed(format!("Azure settings for container {container}: {e}")))?;
        Ok(Arc::new(store))
    }

    fn parts(&self, _size_hint: Option<u64>) -> Parts {
        Parts {
            size: self.config.part_size(),
            concurrency: self.config.upload_concurrency,
        }
    }

    fn can_look(&self, _uri: &MediaUri) -> bool {
        self.config.access_key.is_some() || self.config.sas_token.is_some()
    }
}
