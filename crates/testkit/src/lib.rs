//! What the test suites share: private PostgreSQL, S3, GCS and Azure servers
//! per test binary, and a fault-injecting TCP proxy.

pub mod azurite;
pub mod gcs;
pub mod media;
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

/// Run `script` under `sh` with its stdin on a pipe that closes when this
/// process exits (the script stops its server then), and wait until
/// `port` on loopback accepts connections.
pub fn start_watched(
    script: &str,
    port: u16,
    what: &str,
    timeout: std::time::Duration,
) -> std::process::Child {
    use std::process::{Command, Stdio};
    let child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let deadline = std::time::Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

/// A test clip from ffmpeg's lavfi sources: `testsrc2` video at 25 fps and a
/// 440 Hz tone, H.264 (x264's default GOP and CRF) and AAC.
pub fn make_clip(path: &std::path::Path, seconds: u32, size: &str) -> std::io::Result<()> {
    media::Clip {
        seconds,
        size,
        rate: 25,
        gop: 250,
        preset: "ultrafast",
        crf: 23,
    }
    .make(path)
}
