//! The fleet of workers: the autoscaling policy, the local fleet (nommerd
//! child processes of feederd), and EC2 (a signed Query API client, IMDSv2,
//! and cloud-init user-data).

pub mod config;
pub mod ec2;
pub mod imds;
pub mod members;
pub mod policy;
pub mod userdata;
