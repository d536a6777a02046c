//! The nommers: what a job asks to be done to its source (`job_options.nommer`).
//! Each checks its job's options at submit (feederd) and again before anything
//! runs (nommerd), and plans the tasks that carry the job out. A task's kind
//! picks its runner on the worker.
//!
//! Adding a nommer is a module here and one line in [`REGISTRY`].

mod copy;
mod ffmpeg;
#[cfg(feature = "test-nommers")]
mod testing;

use crate::options::{Allowlist, Pass};
use crate::tasks::TaskPlan;
use crate::uri::MediaUri;
use crate::CodedError;
use serde_json::Value;

/// The seed's dotted class path, accepted as an alias of `ffmpeg`.
pub const SEED_FFMPEG_NOMMER: &str = "media_nommer.ec2nommerd.nommers.ffmpeg.FFmpegNommer";

/// A job's options as its nommer accepted them.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The passes in canonical form: what is stored, leased and run.
    pub passes: Vec<Pass>,
    pub warnings: Vec<String>,
    /// The job's tasks, numbered from 0 in this order.
    pub tasks: Vec<TaskPlan>,
}

pub trait Nommer: Sync {
    /// The name `job_options.nommer` gives.
    fn name(&self) -> &'static str;
    /// Other names accepted for it (the seed's).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// Check the job's raw `options` for a job writing `dest`.
    fn check(&self, raw: &Value, dest: &MediaUri, allow: &Allowlist)
        -> Result<Checked, CodedError>;
}

impl std::fmt::Debug for dyn Nommer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

static REGISTRY: &[&dyn Nommer] = &[
    &ffmpeg::Ffmpeg,
    &copy::Copy,
    #[cfg(feature = "test-nommers")]
    &testing::Pair,
    #[cfg(feature = "test-nommers")]
    &testing::Panic,
];

/// The nommer of this name or alias.
pub fn find(name: &str) -> Option<&'static dyn Nommer> {
    REGISTRY
        .iter()
        .copied()
        .find(|n| n.name() == name || n.aliases().contains(&name))
}

/// Every nommer's name, for error messages.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|n| n.name()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_find_their_nommer() {
        assert_eq!(find("ffmpeg").unwrap().name(), "ffmpeg");
        assert_eq!(find(SEED_FFMPEG_NOMMER).unwrap().name(), "ffmpeg");
        assert_eq!(find("copy").unwrap().name(), "copy");
        assert!(find("FFmpegNommer").is_none());
        assert!(names().starts_with(&["ffmpeg", "copy"]));
    }
}
