//! A video stream frame by frame, for chunked encoding: every frame's
//! presentation timestamp and which are keyframes (ffprobe, from the
//! packets, without decoding), and where scenes change (ffmpeg's `scdet`,
//! which decodes). Every run is confined to the job's sandbox.

use crate::process::{Confinement, ToolCommand, ToolError};
use std::path::Path;

/// The first video stream's frames, in presentation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoFrames {
    /// Presentation timestamps in the stream's time base, ascending.
    pub pts: Vec<i64>,
    /// The indexes (in presentation order) of the keyframes.
    pub keyframes: Vec<u64>,
    /// Packets without a timestamp: their frames' places are unknown.
    pub missing_pts: u64,
}

impl VideoFrames {
    pub fn count(&self) -> u64 {
        self.pts.len() as u64
    }

    /// Steps between neighbouring timestamps that are not one frame of
    /// `tick` time-base units, beyond the rounding of the time base itself
    /// (a 1 ms time base gives 33 and 34 for 30 fps, both one frame).
    pub fn uneven_steps(&self, tick: f64) -> u64 {
        self.pts
            .windows(2)
            .filter(|w| ((w[1] - w[0]) as f64 - tick).abs() >= 1.0 - 1e-9)
            .count() as u64
    }

    /// Parse ffprobe's `-show_entries packet=pts,flags -of csv=p=0` lines.
    /// Packets the demuxer marks for discard (`D`) are no frames.
    pub fn parse(text: &str) -> VideoFrames {
        let mut missing_pts = 0;
        let mut packets: Vec<(i64, bool)> = Vec::new();
        for line in text.lines() {
            let Some((pts, flags)) = line.trim().split_once(',') else {
                continue;
            };
            if flags.contains('D') {
                continue;
            }
            match pts.parse() {
                Ok(pts) => packets.push((pts, flags.starts_with('K'))),
                Err(_) => missing_pts += 1,
            }
        }
        packets.sort_by_key(|(pts, _)| *pts);
        VideoFrames {
            keyframes: packets
                .iter()
                .enumerate()
                .filter(|(_, (_, key))| *key)
                .map(|(i, _)| i as u64)
                .collect(),
            pts: packets.into_iter().map(|(pts, _)| pts).collect(),
            missing_pts,
        }
    }
}

/// The frames of `path`'s first video stream.
pub async fn video_frames(
    ffprobe: &str,
    path: &Path,
    confinement: Option<Confinement>,
) -> Result<VideoFrames, ToolError> {
    let mut argv: Vec<String> = [
        ffprobe,
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts,flags",
        "-of",
        "csv=p=0",
    ]
    .map(String::from)
    .to_vec();
    argv.extend(crate::argv::input_whitelist());
    argv.push(path.display().to_string());
    let mut text = String::new();
    ToolCommand::new(&argv)
        .confined(confinement)
        .run(|line| {
            text.push_str(line);
            text.push('\n');
        })
        .await?;
    Ok(VideoFrames::parse(&text))
}

/// The frames (by index) where a scene changes, by `scdet` at its default
/// threshold.
pub async fn scene_cuts(
    ffmpeg: &str,
    path: &Path,
    confinement: Option<Confinement>,
) -> Result<Vec<u64>, ToolError> {
    let mut argv: Vec<String> = [ffmpeg, "-nostdin", "-v", "error"]
        .map(String::from)
        .to_vec();
    argv.extend(crate::argv::input_whitelist());
    argv.extend(
        [
            "-i",
            &path.display().to_string(),
            "-map",
            "0:v:0",
            "-vf",
            "scdet,metadata=mode=print:key=lavfi.scd.time:file=-",
            "-f",
            "null",
            "-",
        ]
        .map(String::from),
    );
    let mut cuts = Vec::new();
    ToolCommand::new(&argv)
        .confined(confinement)
        .run(|line| {
            // `frame:120  pts:61440  pts_time:4`, then the key's line.
            let frame = line
                .strip_prefix("frame:")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(frame) = frame {
                cuts.push(frame);
            }
        })
        .await?;
    Ok(cuts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_in_decode_order_give_frames_in_presentation_order() {
        // B-frames: decode order 0, 3, 1, 2 (in ticks of 512).
        let frames = VideoFrames::parse("0,K_\n1536,__\n512,__\n1024,__\n2048,K_\n");
        assert_eq!(frames.pts, vec![0, 512, 1024, 1536, 2048]);
        assert_eq!(frames.keyframes, vec![0, 4]);
        assert_eq!(frames.uneven_steps(512.0), 0);
        // A 1 ms time base rounds 33.3 ms frames to 33 or 34: still even.
        let mkv = VideoFrames::parse("0,K\n33,_\n67,_\n100,_\n");
        assert_eq!(mkv.uneven_steps(1000.0 / 30.0), 0);
        let gap = VideoFrames::parse("0,K\n512,_\n1536,_\n");
        assert_eq!(gap.uneven_steps(512.0), 1);
        // Discarded packets are no frames; a packet without pts is counted.
        let odd = VideoFrames::parse("0,K_\n512,_D\nN/A,__\n1024,__\n");
        assert_eq!((odd.count(), odd.missing_pts), (2, 1));
    }
}
