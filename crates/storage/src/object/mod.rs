//! Object storage: `s3://` and `az://` through the `object_store` crate
//! (`store.rs` holds what they share), and `gs://` over GCS's JSON API
//! (`gcs.rs`). Their settings are `[s3]`, `[azure]` and `[gcs]` (`config.rs`).

mod aws;
pub mod azure;
pub mod config;
pub mod gcs;
pub mod s3;
pub mod store;

pub use config::{ChecksumAlgorithm, ObjectConfig};
