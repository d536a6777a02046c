//! What the test suites share: private PostgreSQL and S3 servers per test
//! binary, and a fault-injecting TCP proxy.

pub mod moto;
pub mod postgres;
pub mod proxy;
pub mod s3;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
