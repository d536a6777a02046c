//! nommerd: leases jobs from feederd over HTTP (outbound only), runs each
//! through download -> nom -> upload in its own scratch directory, and reports
//! every state and its progress under the lease's token.

pub mod config;
mod ec2;
mod heartbeat;
mod job;
mod nommers;
mod pipeline;
mod reporter;
pub mod worker;

pub use config::{NommerdConfig, ShutdownMode};
pub use worker::run;
