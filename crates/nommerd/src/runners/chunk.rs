//! `chunk` and `audio` tasks: encode one chunk of a chunked job's video, or
//! its audio whole, from the job's source held on this worker, and upload
//! the intermediate under the job's work prefix.

use super::ffmpeg::FfmpegRun;
use super::{output_muxer, work_uri, Runner, TaskRun};
use crate::pipeline::End;
use nommer_model::chunked;
use nommer_model::options::Pass;
use nommer_model::{FailureCode, JobState, TaskKind};
use serde_json::json;
use std::path::Path;

pub struct Chunk;

pub struct Audio;

#[async_trait::async_trait]
impl Runner for Chunk {
    fn kind(&self) -> TaskKind {
        TaskKind::Chunk
    }

    async fn run(&self, run: TaskRun<'_>) -> End {
        let Some(chunk) = run.grant.spec.chunk else {
            return End::failed(FailureCode::ToolFailed, "a chunk task without its frames");
        };
        let chunk = test_hooks::shortened(chunk);
        let passes: Vec<Pass> = run
            .passes
            .iter()
            .map(|p| chunked::chunk_pass(p, &chunk))
            .collect();
        let name = chunked::chunk_name(chunk.index);
        let seconds = chunk.rate.seconds(chunk.frames());
        let made = json!({"index": chunk.index, "frames": chunk.frames()});
        encode(run, &passes, &name, seconds, made).await
    }
}

#[async_trait::async_trait]
impl Runner for Audio {
    fn kind(&self) -> TaskKind {
        TaskKind::Audio
    }

    async fn run(&self, run: TaskRun<'_>) -> End {
        let muxer = match output_muxer(&run) {
            Ok(muxer) => muxer,
            Err(end) => return end,
        };
        let Some(last) = run.passes.last() else {
            return End::failed(FailureCode::ToolFailed, "a job without passes");
        };
        let passes = [chunked::audio_pass(last, &muxer)];
        let (name, _) = chunked::audio_file(&muxer);
        encode(run, &passes, name, 0.0, json!({})).await
    }
}

/// Run `passes` on the held source into `name`, and upload it under the
/// work prefix; FINISHED carries `made` and the bytes.
async fn encode(
    run: TaskRun<'_>,
    passes: &[Pass],
    name: &str,
    seconds: f64,
    mut made: serde_json::Value,
) -> End {
    let (pipeline, task) = (run.pipeline, run.task);
    let dest = match work_uri(&run, name) {
        Ok(dest) => dest,
        Err(end) => return end,
    };
    if let Err(end) = run.scratch.create().await {
        return end;
    }
    let (held, input) = match pipeline.held_input(&run).await {
        Ok(held) => held,
        Err(end) => return end,
    };
    if let Err(end) = pipeline.hand_over(&run.scratch.path, "scratch") {
        return end;
    }
    if let Err(end) = pipeline
        .report(task, JobState::Encoding, None, Vec::new())
        .await
    {
        return end;
    }
    let output = run.scratch.path.join(name);
    let confinement = pipeline.confinement_reading(&run.scratch.path, &[held.dir().clone()]);
    let duration_s = std::sync::OnceLock::new();
    if seconds > 0.0 {
        let _ = duration_s.set(seconds);
    }
    let ffmpeg = FfmpegRun {
        ffmpeg: &pipeline.config.ffmpeg,
        ffprobe: &pipeline.config.ffprobe,
        passes,
        input: &input,
        output: &output,
        scratch: &run.scratch.path,
        inferred_format: None,
        duration_s: &duration_s,
        confinement: &confinement,
        max_stall: pipeline.config.max_tool_stall,
    };
    if let Err(e) = ffmpeg.run(task).await {
        return e.into();
    }
    drop(held);
    if let Err(e) = nommer_media::sandbox::plain_output(&output) {
        return End::failed(FailureCode::ToolFailed, e.to_string());
    }
    let bytes = file_size(&output).await;
    made["bytes"] = json!(bytes);
    if let Err(e) = run.storage.make_prefix(work_prefix(&run)).await {
        return e.into();
    }
    pipeline.upload_to(&run, &output, &dest, Some(made)).await
}

fn work_prefix<'a>(run: &'a TaskRun<'_>) -> &'a str {
    run.grant.work_uri.as_deref().unwrap_or_default()
}

async fn file_size(path: &Path) -> u64 {
    tokio::fs::metadata(path)
        .await
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Test builds only: `NOMMERD_TEST_SHORT_CHUNK=N` encodes chunk N one frame
/// short, so tests show the assemble check catches a broken intermediate.
mod test_hooks {
    use nommer_model::chunked::ChunkSpec;

    #[cfg(feature = "test-nommers")]
    pub fn shortened(mut chunk: ChunkSpec) -> ChunkSpec {
        let short = std::env::var("NOMMERD_TEST_SHORT_CHUNK").ok();
        if short.and_then(|n| n.parse::<u32>().ok()) == Some(chunk.index) && chunk.frames() > 1 {
            chunk.end -= 1;
        }
        chunk
    }

    #[cfg(not(feature = "test-nommers"))]
    pub fn shortened(chunk: ChunkSpec) -> ChunkSpec {
        chunk
    }
}
