//! `assemble` tasks: fetch a chunked job's intermediates, join the chunks
//! (the concat demuxer, no re-encoding), mux the audio, check the result
//! against the plan, and only then publish it at the job's destination. A
//! mismatch ends the job in ERROR `qc_failed` with the figures.

use super::{output_muxer, work_uri, Runner, TaskRun};
use crate::pipeline::End;
use nommer_media::process::{ToolCommand, ToolError};
use nommer_model::chunked::{self, AssembleSpec, Assembled, Rate};
use nommer_model::{FailureCode, JobState, TaskKind};
use std::path::{Path, PathBuf};

pub struct Assemble;

#[async_trait::async_trait]
impl Runner for Assemble {
    fn kind(&self) -> TaskKind {
        TaskKind::Assemble
    }

    async fn run(&self, run: TaskRun<'_>) -> End {
        let Some(plan) = run.grant.spec.assemble.clone() else {
            return End::failed(FailureCode::ToolFailed, "an assemble task without its plan");
        };
        let muxer = match output_muxer(&run) {
            Ok(muxer) => muxer,
            Err(end) => return end,
        };
        let (pipeline, task) = (run.pipeline, run.task);
        if let Err(end) = run.scratch.create().await {
            return end;
        }
        let mut names: Vec<String> = plan
            .chunks
            .iter()
            .map(|c| chunked::chunk_name(c.index))
            .collect();
        let (audio_name, _) = chunked::audio_file(&muxer);
        if plan.audio {
            names.push(audio_name.to_string());
        }
        let total = names.len() as f64;
        for (i, name) in names.iter().enumerate() {
            let uri = match work_uri(&run, name) {
                Ok(uri) => uri,
                Err(end) => return end,
            };
            let start = super::ENCODE_START * i as f64 / total;
            let progress =
                pipeline.transfer_progress(task, "downloading", start, super::ENCODE_START / total);
            let local = run.scratch.path.join(name);
            match pipeline
                .stoppable(task, run.storage.download(&uri, &local, progress))
                .await
            {
                Ok(Ok(done)) => {
                    tracing::info!(job_id = %task.job_id, task = task.task, bytes = done.bytes, name = %name, "fetched an intermediate");
                }
                Ok(Err(e)) => return e.into(),
                Err(stop) => return End::Stopped(stop),
            }
        }
        let list = run.scratch.path.join("chunks.ffconcat");
        if let Err(e) = tokio::fs::write(&list, chunked::concat_list(&plan.chunks)).await {
            return End::failed(
                FailureCode::StorageFailed,
                format!("writing the concat list: {e}"),
            );
        }
        if let Err(end) = pipeline.hand_over(&run.scratch.path, "scratch") {
            return end;
        }
        if let Err(end) = pipeline
            .report(task, JobState::Encoding, None, Vec::new())
            .await
        {
            return end;
        }
        let output = run.scratch.path.join(match run.dest.extension() {
            Some(ext) => format!("output.{ext}"),
            None => "output".into(),
        });
        let audio = plan.audio.then(|| run.scratch.path.join(audio_name));
        let faststart = run.passes.last().is_some_and(|p| p.move_atom_to_front);
        let argv = nommer_media::argv::concat_argv(
            &pipeline.config.ffmpeg,
            &list,
            audio.as_deref(),
            &muxer,
            faststart,
            &output,
        );
        tracing::info!(job_id = %task.job_id, task = task.task, chunks = plan.chunks.len(), argv = %argv.join(" "), "joining chunks");
        let confinement = pipeline.confinement(&run.scratch.path);
        let join = ToolCommand::new(&argv).confined(Some(confinement.clone()));
        match pipeline.stoppable(task, join.run(|_| {})).await {
            Ok(Ok(_)) => {}
            Ok(Err(ToolError::Failed { stderr_tail, .. })) => {
                return End::failed(FailureCode::ToolFailed, stderr_tail)
            }
            Ok(Err(e)) => return End::failed(FailureCode::ToolFailed, e.to_string()),
            Err(stop) => return End::Stopped(stop),
        }
        let checked = match check(pipeline, &output, &plan, &confinement).await {
            Ok(checked) => checked,
            Err(end) => return end,
        };
        if let Some(why) = chunked::verify(&plan, &checked) {
            tracing::warn!(job_id = %task.job_id, details = %why, "assembled output failed its check; nothing is published");
            return End::failed(FailureCode::QcFailed, why);
        }
        let result = serde_json::to_value(&checked).unwrap_or_default();
        pipeline
            .upload_to(&run, &output, run.dest, Some(result))
            .await
    }
}

/// The assembled output's figures, for [`chunked::verify`].
async fn check(
    pipeline: &crate::pipeline::Pipeline,
    output: &Path,
    plan: &AssembleSpec,
    confinement: &nommer_media::process::Confinement,
) -> Result<Assembled, End> {
    let ffprobe = &pipeline.config.ffprobe;
    let path = PathBuf::from(output);
    let probe = nommer_media::probe::probe(ffprobe, &path, Some(confinement.clone()));
    let frames = nommer_media::frames::video_frames(ffprobe, &path, Some(confinement.clone()));
    let (probe, frames) = tokio::try_join!(probe, frames).map_err(|e| {
        End::failed(
            FailureCode::QcFailed,
            format!("ffprobe cannot read the assembled output: {e}"),
        )
    })?;
    let count = |kind: &str| {
        probe
            .streams
            .iter()
            .filter(|s| s.codec_type.as_deref() == Some(kind))
            .count() as u32
    };
    let base = probe
        .stream("video")
        .and_then(|v| v.time_base.as_deref())
        .and_then(Rate::parse)
        .unwrap_or(Rate { num: 1, den: 1000 });
    let tick = base.den as f64 * plan.rate.den as f64 / (base.num as f64 * plan.rate.num as f64);
    let span = match (frames.pts.first(), frames.pts.last()) {
        (Some(first), Some(last)) => (last - first) as f64 + tick,
        _ => 0.0,
    };
    Ok(Assembled {
        frames: frames.count(),
        video_streams: count("video"),
        audio_streams: count("audio"),
        video_seconds: span * base.num as f64 / base.den as f64,
        audio_seconds: probe.stream("audio").and_then(|a| a.duration_seconds()),
        uneven_steps: frames.uneven_steps(tick),
    })
}
