//! The four EC2 calls the fleet needs (RunInstances, DescribeInstances,
//! TerminateInstances, CreateTags) as signed EC2 Query API requests: a
//! form-encoded POST signed with SigV4 (aws-sigv4), credentials from
//! aws-config's standard chain. The full SDK would cost minutes of compile
//! time for four calls. The endpoint is configurable for tests and private
//! clouds.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

const API_VERSION: &str = "2016-11-15";

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error("EC2 {code}: {message}")]
    Api { code: String, message: String },
    #[error("EC2 request failed: {0}")]
    Transport(String),
    #[error("EC2 answer not understood: {0}")]
    Parse(String),
    #[error("no AWS credentials for EC2: {0}")]
    Credentials(String),
}

/// What to launch.
#[derive(Debug, Clone, Default)]
pub struct LaunchSpec {
    pub image_id: String,
    pub instance_type: String,
    pub security_group_ids: Vec<String>,
    pub subnet_id: Option<String>,
    pub key_name: Option<String>,
    pub iam_instance_profile: Option<String>,
    pub spot: bool,
    /// Terminate (rather than stop) when the instance shuts itself down.
    pub terminate_on_shutdown: bool,
    pub user_data: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    /// pending, running, shutting-down, terminated, stopping, stopped
    pub state: String,
    pub launch_time: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// How the instance's metadata service answers (as EC2 reports it).
    pub metadata: Option<MetadataOptions>,
}

/// An instance's metadata service settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MetadataOptions {
    /// `required`: only session-token (IMDSv2) requests are answered.
    #[serde(rename = "httpTokens")]
    pub http_tokens: Option<String>,
    /// How many network hops the token's PUT answer may travel: 1 keeps it
    /// on the instance (no container or forwarded host can fetch one).
    #[serde(rename = "httpPutResponseHopLimit")]
    pub hop_limit: Option<u32>,
}

pub struct Ec2Client {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

#[derive(Deserialize)]
struct Items<T> {
    #[serde(rename = "item", default = "Vec::new")]
    item: Vec<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items { item: Vec::new() }
    }
}

#[derive(Deserialize)]
struct TagXml {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct StateXml {
    name: String,
}

#[derive(Deserialize)]
struct InstanceXml {
    #[serde(rename = "instanceId")]
    id: String,
    #[serde(rename = "instanceState")]
    state: StateXml,
    #[serde(rename = "launchTime")]
    launch_time: Option<String>,
    #[serde(rename = "tagSet", default)]
    tags: Items<TagXml>,
    #[serde(rename = "metadataOptions")]
    metadata: Option<MetadataOptions>,
}

impl From<InstanceXml> for Instance {
    fn from(x: InstanceXml) -> Instance {
        Instance {
            id: x.id,
            state: x.state.name,
            launch_time: x.launch_time,
            tags: x.tags.item.into_iter().map(|t| (t.key, t.value)).collect(),
            metadata: x.metadata,
        }
    }
}

#[derive(Deserialize)]
struct ReservationXml {
    #[serde(rename = "instancesSet", default)]
    instances: Items<InstanceXml>,
}

#[derive(Deserialize)]
struct DescribeXml {
    #[serde(rename = "reservationSet", default)]
    reservations: Items<ReservationXml>,
    #[serde(rename = "nextToken")]
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct RunXml {
    #[serde(rename = "instancesSet", default)]
    instances: Items<InstanceXml>,
}

#[derive(Deserialize)]
struct ErrorXml {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Deserialize)]
struct ErrorsXml {
    #[serde(rename = "Error", default)]
    error: Vec<ErrorXml>,
}

#[derive(Deserialize)]
struct ErrorResponseXml {
    #[serde(rename = "Errors")]
    errors: ErrorsXml,
}

fn parse<T: for<'de> Deserialize<'de>>(xml: &str) -> Result<T, Ec2Error> {
    quick_xml::de::from_str(xml).map_err(|e| Ec2Error::Parse(e.to_string()))
}

/// Query parameters for a set of tags, `prefix` being e.g. `TagSpecification.1.Tag`.
fn tag_params(prefix: &str, tags: &BTreeMap<String, String>) -> Vec<(String, String)> {
    tags.iter()
        .enumerate()
        .flat_map(|(i, (k, v))| {
            [
                (format!("{prefix}.{}.Key", i + 1), k.clone()),
                (format!("{prefix}.{}.Value", i + 1), v.clone()),
            ]
        })
        .collect()
}

impl Ec2Client {
    /// `endpoint` defaults to `https://ec2.REGION.amazonaws.com`.
    pub async fn new(region: &str, endpoint: Option<&str>) -> Ec2Client {
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .build()
            .await;
        Ec2Client {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("an HTTP client with default TLS"),
            endpoint: endpoint
                .map(|e| e.trim_end_matches('/').to_string() + "/")
                .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com/")),
            region: region.to_string(),
            credentials: SharedCredentialsProvider::new(chain),
        }
    }

    async fn call(
        &self,
        action: &str,
        mut params: Vec<(String, String)>,
    ) -> Result<String, Ec2Error> {
        params.insert(0, ("Action".into(), action.into()));
        params.insert(1, ("Version".into(), API_VERSION.into()));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| Ec2Error::Credentials(e.to_string()))?;
        let identity = credentials.into();
        let signing = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Ec2Error::Credentials(e.to_string()))?
            .into();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let headers = [("content-type", content_type)];
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            headers.into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| Ec2Error::Transport(e.to_string()))?;
        let (instructions, _) = sign(signable, &signing)
            .map_err(|e| Ec2Error::Transport(e.to_string()))?
            .into_parts();
        let mut request = self
            .http
            .post(&self.endpoint)
            .header("content-type", content_type)
            .body(body);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Ec2Error::Transport(e.without_url().to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Ec2Error::Transport(e.to_string()))?;
        if status.is_success() {
            return Ok(text);
        }
        match parse::<ErrorResponseXml>(&text) {
            Ok(errors) => {
                let first = errors.errors.error.into_iter().next();
                Err(first.map_or(
                    Ec2Error::Api {
                        code: status.to_string(),
                        message: String::new(),
                    },
                    |e| Ec2Error::Api {
                        code: e.code,
                        message: e.message,
                    },
                ))
            }
            Err(_) => Err(Ec2Error::Api {
                code: status.to_string(),
                message: nommer_model::tail_chars(&text, 300),
            }),
        }
    }

    /// Launch `count` instances; their ids.
    pub async fn run_instances(
        &self,
        spec: &LaunchSpec,
        count: u32,
    ) -> Result<Vec<String>, Ec2Error> {
        use base64::Engine;
        let mut params: Vec<(String, String)> = vec![
            ("ImageId".into(), spec.image_id.clone()),
            ("InstanceType".into(), spec.instance_type.clone()),
            ("MinCount".into(), count.to_string()),
            ("MaxCount".into(), count.to_string()),
            (
                "UserData".into(),
                base64::engine::general_purpose::STANDARD.encode(&spec.user_data),
            ),
            // The user-data holds the worker token: the metadata service
            // answers only session-token requests, and only on the instance.
            ("MetadataOptions.HttpEndpoint".into(), "enabled".into()),
            ("MetadataOptions.HttpTokens".into(), "required".into()),
            ("MetadataOptions.HttpPutResponseHopLimit".into(), "1".into()),
        ];
        if !spec.tags.is_empty() {
            params.push(("TagSpecification.1.ResourceType".into(), "instance".into()));
            params.extend(tag_params("TagSpecification.1.Tag", &spec.tags));
        }
        for (i, group) in spec.security_group_ids.iter().enumerate() {
            params.push((format!("SecurityGroupId.{}", i + 1), group.clone()));
        }
        if let Some(subnet) = &spec.subnet_id {
            params.push(("SubnetId".into(), subnet.clone()));
        }
        if let Some(key) = &spec.key_name {
            params.push(("KeyName".into(), key.clone()));
        }
        if let Some(profile) = &spec.iam_instance_profile {
            params.push(("IamInstanceProfile.Name".into(), profile.clone()));
        }
        if spec.terminate_on_shutdown && !spec.spot {
            params.push((
                "InstanceInitiatedShutdownBehavior".into(),
                "terminate".into(),
            ));
        }
        if spec.spot {
            params.push(("InstanceMarketOptions.MarketType".into(), "spot".into()));
            params.push((
                "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior".into(),
                "terminate".into(),
            ));
        }
        let xml = self.call("RunInstances", params).await?;
        let run: RunXml = parse(&xml)?;
        Ok(run.instances.item.into_iter().map(|i| i.id).collect())
    }

    /// Instances matching every filter (`tag:NAME`, `instance-state-name`, ...),
    /// all pages.
    pub async fn describe_instances(
        &self,
        filters: &[(&str, Vec<String>)],
    ) -> Result<Vec<Instance>, Ec2Error> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params: Vec<(String, String)> = vec![("MaxResults".into(), "50".into())];
            for (i, (name, values)) in filters.iter().enumerate() {
                params.push((format!("Filter.{}.Name", i + 1), name.to_string()));
                for (j, value) in values.iter().enumerate() {
                    params.push((format!("Filter.{}.Value.{}", i + 1, j + 1), value.clone()));
                }
            }
            if let Some(token) = &token {
                params.push(("NextToken".into(), token.clone()));
            }
            let xml = self.call("DescribeInstances", params).await?;
            let page: DescribeXml = parse(&xml)?;
            for reservation in page.reservations.item {
                found.extend(reservation.instances.item.into_iter().map(Instance::from));
            }
            match page.next_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(found),
            }
        }
    }

    pub async fn terminate_instances(&self, ids: &[String]) -> Result<(), Ec2Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let params = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("InstanceId.{}", i + 1), id.clone()))
            .collect();
        self.call("TerminateInstances", params).await.map(|_| ())
    }

    pub async fn create_tags(
        &self,
        ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        let mut params: Vec<(String, String)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("ResourceId.{}", i + 1), id.clone()))
            .collect();
        params.extend(tag_params("Tag", tags));
        self.call("CreateTags", params).await.map(|_| ())
    }
}
