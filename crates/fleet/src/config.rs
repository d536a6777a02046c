//! Fleet settings: which fleet, its size limits, and `[ec2]`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[ec2]`: what feederd launches, and how nommerd on an instance reaches EC2.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Ec2Config {
    pub region: String,
    /// The EC2 API endpoint; unset means AWS's for the region.
    pub endpoint: Option<String>,
    /// The instance metadata service (tests point it elsewhere).
    pub imds_endpoint: String,
    pub ami: String,
    pub instance_type: String,
    pub security_group_ids: Vec<String>,
    pub subnet_id: Option<String>,
    pub key_name: Option<String>,
    /// The instance profile whose role nommerd uses (storage, TerminateInstances).
    pub iam_instance_profile: Option<String>,
    pub spot: bool,
    /// This cluster's name: instances are tagged `nommer:cluster=NAME` and
    /// only those count.
    pub cluster: String,
    pub tags: BTreeMap<String, String>,
    /// The feederd URL written into user-data (the load balancer's).
    pub feederd_url: Option<String>,
    /// A cloud-init template file to use instead of the built-in one.
    pub user_data_template: Option<String>,
    /// Seconds an instance may take to register before it is a zombie.
    pub boot_grace: u64,
    /// Seconds without a heartbeat before a registered instance is a zombie.
    pub zombie_after: u64,
    /// nommerd: when TerminateInstances fails, run `shutdown -h now` (the
    /// instance is launched to terminate on shutdown). Off unless user-data
    /// turns it on, so a misconfigured worker never powers off its host.
    pub shutdown_fallback: bool,
}

impl Default for Ec2Config {
    fn default() -> Self {
        Ec2Config {
            region: "us-east-1".into(),
            endpoint: None,
            imds_endpoint: crate::imds::DEFAULT_ENDPOINT.into(),
            ami: String::new(),
            instance_type: "c6i.large".into(),
            security_group_ids: Vec::new(),
            subnet_id: None,
            key_name: None,
            iam_instance_profile: None,
            spot: false,
            cluster: "default".into(),
            tags: BTreeMap::new(),
            feederd_url: None,
            user_data_template: None,
            boot_grace: 600,
            zombie_after: 300,
            shutdown_fallback: false,
        }
    }
}

pub const CLUSTER_TAG: &str = "nommer:cluster";
