//! nommerd: leases tasks from feederd over HTTP (outbound only), runs each
//! with its kind's runner (download -> nom -> upload) in its own scratch
//! directory, and reports every state and its progress under the lease's token.

pub mod config;
mod ec2;
mod heartbeat;
mod inputs;
mod pipeline;
mod publish;
mod qc;
mod reporter;
mod runners;
mod space;
mod task;
mod workdir;
pub mod worker;

pub use config::{NommerdConfig, ShutdownMode};
pub use worker::run;
