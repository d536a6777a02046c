//! Runners: how a worker carries out a task of each kind. A job's nommer
//! (`nommer_model::nommers`) plans its tasks at submit; each task's kind picks
//! its runner here. Adding a kind is a module here and one line in [`RUNNERS`].

mod assemble;
mod chunk;
mod cleanup;
mod copy;
mod ffmpeg;
pub mod outputs;
mod plan;

use crate::pipeline::{End, Pipeline, Scratch};
use crate::task::{RunningTask, Stop};
use nommer_model::api::LeaseGrant;
use nommer_model::options::Pass;
use nommer_model::uri::MediaUri;
use nommer_model::{FailureCode, TaskKind};
use nommer_storage::Storage;
use std::sync::Arc;

/// Why a tool ended early.
pub enum NomError {
    /// The tool failed: the task's error code and details.
    Failed(FailureCode, String),
    Stopped(Stop),
}

/// Share of the task's percent that encoding covers (download before, upload after).
pub const ENCODE_START: f64 = 10.0;
pub const ENCODE_SPAN: f64 = 80.0;

/// Everything a runner works with: the lease, the task's own destination,
/// the storage the lease allows, its checked passes and its scratch directory.
pub struct TaskRun<'a> {
    pub pipeline: &'a Pipeline,
    pub grant: &'a LeaseGrant,
    pub task: &'a Arc<RunningTask>,
    pub storage: &'a Storage,
    pub source: &'a MediaUri,
    /// The job's destination with the task's `dest_suffix`, if any.
    pub dest: &'a MediaUri,
    /// The job's passes as its nommer's check returned them.
    pub passes: &'a [Pass],
    /// The job's outputs, when it has them (its passes are then none).
    pub outputs: &'a [nommer_model::outputs::Output],
    pub scratch: &'a mut Scratch,
}

#[async_trait::async_trait]
pub trait Runner: Sync {
    fn kind(&self) -> TaskKind;
    /// Carry the task out, from DOWNLOADING (set by its lease) to its last
    /// report; how it ended.
    async fn run(&self, run: TaskRun<'_>) -> End;
}

static RUNNERS: &[&dyn Runner] = &[
    &ffmpeg::Ffmpeg,
    &copy::Copy,
    &plan::Plan,
    &chunk::Chunk,
    &chunk::Audio,
    &assemble::Assemble,
    &cleanup::Cleanup,
];

/// A chunked job's intermediate `name`, under the work prefix its lease names.
pub fn work_uri(run: &TaskRun<'_>, name: &str) -> Result<MediaUri, End> {
    let Some(prefix) = run.grant.work_uri.as_deref().filter(|p| !p.is_empty()) else {
        return Err(End::failed(
            FailureCode::StorageFailed,
            "the lease names no work prefix for the job's intermediates",
        ));
    };
    MediaUri::parse(&format!("{prefix}{name}")).map_err(|e| End::Error(e.code.as_str(), e.message))
}

/// The muxer the job's output is written with: its own `-f`, or the one
/// its destination's extension names.
pub fn output_muxer(run: &TaskRun<'_>) -> Result<String, End> {
    if let Some(format) = run.passes.last().and_then(Pass::output_format) {
        return Ok(format.to_ascii_lowercase());
    }
    nommer_model::submit::inferred_format(run.dest)
        .map(str::to_string)
        .map_err(|e| End::Error(e.code.as_str(), e.message))
}

/// The runner of tasks of `kind`.
pub fn runner(kind: TaskKind) -> Option<&'static dyn Runner> {
    RUNNERS.iter().copied().find(|r| r.kind() == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_kind_has_one_runner() {
        for kind in TaskKind::ALL {
            let count = RUNNERS.iter().filter(|r| r.kind() == *kind).count();
            assert_eq!(count, 1, "{kind}");
        }
    }
}
