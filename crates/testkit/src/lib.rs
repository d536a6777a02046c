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
/// 440 Hz tone, H.264 and AAC.
pub fn make_clip(path: &std::path::Path, seconds: u32, size: &str) -> std::io::Result<()> {
    let status = std::process::Command::new("ffmpeg")
        .args(["-y", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-shortest"])
        .arg(path)
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "ffmpeg could not make {}",
            path.display()
        )));
    }
    Ok(())
}
