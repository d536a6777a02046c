//! S3 credentials from aws-config's standard chain (environment, shared
//! profile, web identity, ECS, instance role), served to object_store through
//! its credential-provider interface, so S3 and EC2 resolve credentials the
//! same way. object_store itself no longer reads AWS profiles.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::aws::AwsCredential;
use object_store::CredentialProvider;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Refresh this long before the chain's credentials expire.
const EARLY: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct AwsChain {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl AwsChain {
    pub async fn load() -> AwsChain {
        let provider =
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .build()
                .await;
        AwsChain {
            provider: SharedCredentialsProvider::new(provider),
            cached: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AwsChain {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|at| SystemTime::now() + EARLY < at);
            if fresh {
                return Ok(credential.clone());
            }
        }
        let found = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: format!("no AWS credentials from the standard chain: {e}").into(),
            }
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: found.access_key_id().to_string(),
            secret_key: found.secret_access_key().to_string(),
            token: found.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), found.expiry()));
        Ok(credential)
    }
}
