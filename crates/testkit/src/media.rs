//! Media for tests and benchmarks: clips made with ffmpeg's lavfi sources,
//! and what ffprobe says of an output's video, packet by packet.

use std::path::Path;
use std::process::Command;

/// A clip: `testsrc2` video at `rate` fps with a keyframe every `gop`
/// frames, and a 440 Hz tone; H.264 (`preset`, `crf`) and AAC.
pub struct Clip<'a> {
    pub seconds: u32,
    pub size: &'a str,
    pub rate: u32,
    pub gop: u32,
    pub preset: &'a str,
    pub crf: u32,
}

impl Clip<'_> {
    pub fn make(&self, path: &Path) -> std::io::Result<()> {
        let status = Command::new("ffmpeg")
            .args(["-y", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg(format!(
                "testsrc2=size={}:rate={}:duration={}",
                self.size, self.rate, self.seconds
            ))
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:sample_rate=48000:duration={}",
                self.seconds
            ))
            .args(["-c:v", "libx264", "-preset", self.preset, "-crf"])
            .arg(self.crf.to_string())
            .arg("-g")
            .arg(self.gop.to_string())
            .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
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
}

/// ffprobe's values for the first video stream's packets (`packet=FIELD`),
/// one per packet, in file order.
fn video_packets(path: &Path, field: &str) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg(format!("packet={field}"))
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The video's presentation timestamps in its time base, ascending, and
/// the time base in seconds.
pub fn video_pts(path: &Path) -> (Vec<i64>, f64) {
    let mut pts: Vec<i64> = video_packets(path, "pts")
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    pts.sort();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=time_base", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let base = String::from_utf8_lossy(&out.stdout);
    let (num, den) = base.trim().split_once('/').unwrap_or(("1", "1"));
    let seconds = num.parse::<f64>().unwrap_or(1.0) / den.parse::<f64>().unwrap_or(1.0);
    (pts, seconds)
}

/// The video stream's bytes, from its packets.
pub fn video_bytes(path: &Path) -> u64 {
    video_packets(path, "size")
        .iter()
        .filter_map(|s| s.parse::<u64>().ok())
        .sum()
}

/// The first video stream's frames, every one decoded: an output that plays
/// to the end, or the reason it does not (any error ffprobe prints fails it).
pub fn decoded_frames(path: &Path) -> Result<u64, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| format!("ffprobe: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        return Err(format!("ffprobe: {}", stderr.trim()));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_end_matches(',')
        .parse()
        .map_err(|_| "ffprobe counted no frames".to_string())
}
