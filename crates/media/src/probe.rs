//! ffprobe: the source's duration (for progress) and a summary of outputs.

use crate::process::{Confinement, ToolCommand, ToolError};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ProbeStream {
    pub codec_type: Option<String>,
    pub codec_name: Option<String>,
    pub profile: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub sample_rate: Option<String>,
    pub channels: Option<u32>,
    /// `30000/1001`: the stream's base rate, and its mean one.
    pub r_frame_rate: Option<String>,
    pub avg_frame_rate: Option<String>,
    /// `1/15360`.
    pub time_base: Option<String>,
    pub start_time: Option<String>,
    pub duration: Option<String>,
}

impl ProbeStream {
    pub fn start_seconds(&self) -> Option<f64> {
        self.start_time.as_deref()?.parse().ok()
    }

    pub fn duration_seconds(&self) -> Option<f64> {
        self.duration.as_deref()?.parse().ok()
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ProbeFormat {
    pub format_name: Option<String>,
    /// Where the file's timeline starts: what an input `-ss` counts from.
    pub start_time: Option<String>,
    pub duration: Option<String>,
    pub size: Option<String>,
    pub bit_rate: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Probe {
    #[serde(default)]
    pub streams: Vec<ProbeStream>,
    #[serde(default)]
    pub format: ProbeFormat,
}

impl Probe {
    pub fn parse(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn duration_seconds(&self) -> Option<f64> {
        self.format
            .duration
            .as_deref()?
            .parse()
            .ok()
            .filter(|d: &f64| *d > 0.0)
    }

    pub fn stream(&self, codec_type: &str) -> Option<&ProbeStream> {
        self.streams
            .iter()
            .find(|s| s.codec_type.as_deref() == Some(codec_type))
    }

    /// One line per stream, for people.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!(
            "format {} duration {}s size {} bytes",
            self.format.format_name.as_deref().unwrap_or("?"),
            self.format.duration.as_deref().unwrap_or("?"),
            self.format.size.as_deref().unwrap_or("?")
        )];
        for s in &self.streams {
            let mut line = format!(
                "{}: {} {}",
                s.codec_type.as_deref().unwrap_or("?"),
                s.codec_name.as_deref().unwrap_or("?"),
                s.profile.as_deref().unwrap_or("")
            );
            if let (Some(w), Some(h)) = (s.width, s.height) {
                line.push_str(&format!(" {w}x{h}"));
            }
            if let Some(rate) = &s.sample_rate {
                line.push_str(&format!(" {rate} Hz {} ch", s.channels.unwrap_or(0)));
            }
            lines.push(line.trim_end().to_string());
        }
        lines.join("\n")
    }
}

/// Probe `path`; confined, when it is a job's file, to the job's sandbox.
pub async fn probe(
    ffprobe: &str,
    path: &Path,
    confinement: Option<Confinement>,
) -> Result<Probe, ToolError> {
    run(ffprobe, path, confinement, false)
        .await
        .map(|(probe, _)| probe)
}

/// Probe `path` reading every packet (`-count_packets`): what ffprobe
/// makes of it, and what it reported as errors on the way (empty when it
/// read the whole file cleanly).
pub async fn read_whole(
    ffprobe: &str,
    path: &Path,
    confinement: Option<Confinement>,
) -> Result<(Probe, String), ToolError> {
    run(ffprobe, path, confinement, true).await
}

async fn run(
    ffprobe: &str,
    path: &Path,
    confinement: Option<Confinement>,
    every_packet: bool,
) -> Result<(Probe, String), ToolError> {
    let mut argv = vec![ffprobe.to_string(), "-v".into(), "error".into()];
    if every_packet {
        argv.push("-count_packets".into());
    }
    argv.extend(["-print_format", "json", "-show_format", "-show_streams"].map(String::from));
    // A job's source may open only itself, whatever its content says.
    if confinement.is_some() {
        argv.extend(crate::argv::input_whitelist());
    }
    argv.push(path.display().to_string());
    let mut json = String::new();
    let out = ToolCommand::new(&argv)
        .confined(confinement)
        .run(|line| {
            json.push_str(line);
            json.push('\n');
        })
        .await?;
    let probe = Probe::parse(&json).map_err(|e| ToolError::Io {
        program: "ffprobe".into(),
        source: std::io::Error::other(e),
    })?;
    Ok((probe, out.stderr_tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_ffprobe_json() {
        let probe = Probe::parse(include_str!("../tests/fixtures/ffprobe.json")).unwrap();
        assert!((probe.duration_seconds().unwrap() - 2.0).abs() < 0.1);
        let video = probe.stream("video").unwrap();
        assert_eq!(video.codec_name.as_deref(), Some("h264"));
        assert_eq!(video.width, Some(320));
        assert!(probe.stream("audio").is_some());
        assert!(probe.summary().contains("video: h264"));
    }
}
