//! Kinds and states other than a job's, as types: each maps to and from its
//! wire and store name in one place, and the store's CHECK constraints list
//! the same names.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An enum whose variants each have one lower-case name, on the wire and in
/// the store.
macro_rules! named {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("invalid {}: {s}", stringify!($name)))
            }
        }
    };
}

named!(
    /// What a worker node says it is doing, and what feederd concludes when
    /// it falls silent.
    NodeState {
        /// Takes leases.
        Active = "active",
        /// Finishing its tasks; takes no new leases.
        Draining = "draining",
        /// An EC2 node idle past its limit, about to terminate itself.
        Terminating = "terminating",
        /// Gone after an idle termination.
        Terminated = "terminated",
        /// Gone after a spot interruption.
        Interrupted = "interrupted",
        /// Stopped cleanly.
        Gone = "gone",
        /// Heartbeats stopped (feederd's conclusion, never reported).
        Lost = "lost",
    }
);

impl NodeState {
    /// The node has left for good: its slots count for nothing.
    pub fn has_left(self) -> bool {
        matches!(
            self,
            NodeState::Terminated | NodeState::Interrupted | NodeState::Gone
        )
    }
}

named!(
    /// How a node came to be, and who may stop it.
    FleetKind {
        /// Started by the operator; never scaled.
        Static = "static",
        /// Worker processes feederd spawns on its own machine.
        Local = "local",
        /// EC2 instances feederd launches, which terminate themselves when idle.
        Ec2 = "ec2",
    }
);

named!(
    /// What a task does. Each kind has one runner on the worker.
    TaskKind {
        /// FFmpeg runs the job's passes: download, encode, upload.
        Ffmpeg = "ffmpeg",
        /// The source goes to the destination unchanged.
        Copy = "copy",
        /// A chunked job's first task: probe the source, choose the cuts,
        /// and add the tasks below (`nommer_model::chunked`).
        Plan = "plan",
        /// One chunk of a chunked job's video, encoded on its own.
        Chunk = "chunk",
        /// A chunked job's audio, encoded once, whole.
        Audio = "audio",
        /// Join the chunks, mux the audio, check, publish.
        Assemble = "assemble",
        /// Remove a chunked job's intermediates, however the job ended.
        Cleanup = "cleanup",
    }
);

named!(
    /// What one of a job's outputs makes (`outputs[].kind`).
    OutputKind {
        /// One media file, from the job's own passes.
        File = "file",
        /// An adaptive ladder: renditions with aligned keyframes, HLS and/or
        /// DASH manifests, in a destination prefix.
        Abr = "abr",
        /// Still images at given times, or every so many seconds.
        Thumbnail = "thumbnail",
        /// Tile sheets of small frames and the WebVTT track that maps them.
        Sprite = "sprite",
    }
);

named!(
    /// A manifest an `abr` output writes.
    Manifest {
        /// `master.m3u8` and one media playlist per rendition.
        Hls = "hls",
        /// `manifest.mpd`.
        Dash = "dash",
    }
);

named!(
    /// The container of an `abr` output's segments.
    SegmentType {
        /// Fragmented MP4: one set serves HLS and DASH.
        Fmp4 = "fmp4",
        /// MPEG-TS, for HLS alone.
        Ts = "ts",
    }
);

named!(
    /// How much of an output its quality check decodes.
    QcLevel {
        /// Headers, streams and duration, and a decode of the start and end.
        Sampled = "sampled",
        /// Every frame.
        Full = "full",
    }
);

named!(
    /// A comparison of an output with its source, reported by the quality check.
    QcMetric {
        Psnr = "psnr",
        Ssim = "ssim",
        /// Only where the worker's FFmpeg has libvmaf; the report says when not.
        Vmaf = "vmaf",
    }
);

named!(
    /// The image format of thumbnails and sprite sheets.
    ImageFormat {
        Jpg = "jpg",
        Png = "png",
        Webp = "webp",
    }
);

/// What a task waits for before it may be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waits {
    Nothing,
    /// Every other task of its job that counts towards the job's state to
    /// have finished.
    Siblings,
    /// Its job to end, however it ends.
    JobEnd,
}

impl TaskKind {
    pub fn waits(self) -> Waits {
        match self {
            TaskKind::Assemble => Waits::Siblings,
            TaskKind::Cleanup => Waits::JobEnd,
            _ => Waits::Nothing,
        }
    }

    /// A task of a chunked job: it works with the job's intermediates.
    pub fn is_chunked(self) -> bool {
        !matches!(self, TaskKind::Ffmpeg | TaskKind::Copy)
    }

    /// Whether the task's state counts towards its job's: a cleanup runs
    /// after the job has ended, and does not change how it ended.
    pub fn counts_for_job(self) -> bool {
        self.waits() != Waits::JobEnd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_on_the_wire_and_as_text() {
        for state in NodeState::ALL {
            assert_eq!(state.as_str().parse::<NodeState>().unwrap(), *state);
            let wire = serde_json::to_string(state).unwrap();
            assert_eq!(wire, format!("\"{}\"", state.as_str()));
        }
        for kind in FleetKind::ALL {
            assert_eq!(kind.as_str().parse::<FleetKind>().unwrap(), *kind);
        }
        for kind in TaskKind::ALL {
            assert_eq!(kind.as_str().parse::<TaskKind>().unwrap(), *kind);
        }
        assert!("ACTIVE".parse::<NodeState>().is_err());
    }
}

named!(
    /// How a job's webhooks are sent.
    NotifyFormat {
        /// `{"type", "timestamp", "data"}`, signed per Standard Webhooks.
        Json = "json",
        /// The seed's form post (`job_id`, `job_state`, `job_state_details`).
        Form = "form",
    }
);
