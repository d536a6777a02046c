//! The EC2 instance metadata service, version 2: a session token from a PUT,
//! then GETs that present it. nommerd uses it for its instance id and region
//! and to watch for spot interruption notices.

use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const TOKEN_TTL_S: u64 = 21_600;

pub struct Imds {
    http: reqwest::Client,
    endpoint: String,
    token: Mutex<Option<(String, Instant)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("instance metadata: {0}")]
pub struct ImdsError(String);

impl Imds {
    pub fn new(endpoint: &str) -> Imds {
        Imds {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .no_proxy()
                .build()
                .expect("an HTTP client"),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: Mutex::new(None),
        }
    }

    async fn token(&self) -> Result<String, ImdsError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let response = self
            .http
            .put(format!("{}/latest/api/token", self.endpoint))
            .header(
                "X-aws-ec2-metadata-token-ttl-seconds",
                TOKEN_TTL_S.to_string(),
            )
            .send()
            .await
            .map_err(|e| ImdsError(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ImdsError(format!(
                "token request: HTTP {}",
                response.status()
            )));
        }
        let token = response
            .text()
            .await
            .map_err(|e| ImdsError(e.to_string()))?;
        let until = Instant::now() + Duration::from_secs(TOKEN_TTL_S - 60);
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// `latest/meta-data/PATH`; None when it does not exist (404).
    pub async fn get(&self, path: &str) -> Result<Option<String>, ImdsError> {
        for fresh_token in [false, true] {
            if fresh_token {
                *self.token.lock().await = None;
            }
            let token = self.token().await?;
            let response = self
                .http
                .get(format!("{}/latest/meta-data/{path}", self.endpoint))
                .header("X-aws-ec2-metadata-token", token)
                .send()
                .await
                .map_err(|e| ImdsError(e.to_string()))?;
            match response.status().as_u16() {
                200 => {
                    let text = response
                        .text()
                        .await
                        .map_err(|e| ImdsError(e.to_string()))?;
                    return Ok(Some(text));
                }
                404 => return Ok(None),
                // An expired token: get a new one once.
                401 if !fresh_token => continue,
                status => return Err(ImdsError(format!("{path}: HTTP {status}"))),
            }
        }
        Err(ImdsError(format!("{path}: the token was refused")))
    }

    pub async fn instance_id(&self) -> Result<String, ImdsError> {
        self.get("instance-id")
            .await?
            .ok_or_else(|| ImdsError("no instance-id".into()))
    }

    pub async fn region(&self) -> Result<Option<String>, ImdsError> {
        self.get("placement/region").await
    }

    /// The spot interruption notice, when one was given.
    pub async fn spot_interruption(&self) -> Result<Option<String>, ImdsError> {
        self.get("spot/instance-action").await
    }
}
