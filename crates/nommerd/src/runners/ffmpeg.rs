//! `ffmpeg` tasks: download the source, run the job's passes in the
//! sandbox, upload the output.

use super::{NomError, Runner, TaskRun, ENCODE_SPAN, ENCODE_START};
use crate::pipeline::{AbortOnDrop, End};
use crate::task::{RunningTask, Stop};
use nommer_media::argv::PassPlan;
use nommer_media::process::{Confinement, ToolCommand, ToolError};
use nommer_media::progress::ProgressReader;
use nommer_model::api::Progress;
use nommer_model::options::Pass;
use nommer_model::{FailureCode, TaskKind};
use std::path::Path;
use std::sync::Arc;

pub struct Ffmpeg;

#[async_trait::async_trait]
impl Runner for Ffmpeg {
    fn kind(&self) -> TaskKind {
        TaskKind::Ffmpeg
    }

    async fn run(&self, mut run: TaskRun<'_>) -> End {
        if !run.outputs.is_empty() {
            return super::outputs::run(run).await;
        }
        let inferred = match run.passes.iter().all(|pass| pass.output_format().is_some()) {
            true => None,
            false => match nommer_model::submit::inferred_format(run.dest) {
                Ok(format) => Some(format),
                Err(e) => return End::Error(e.code.as_str(), e.message),
            },
        };
        let input = match run.pipeline.download(&mut run).await {
            Ok(input) => input,
            Err(end) => return end,
        };
        let (pipeline, task) = (run.pipeline, run.task);
        let scratch = run.scratch.path.clone();
        let output = scratch.join(match run.dest.extension() {
            Some(ext) => format!("output.{ext}"),
            None => "output".into(),
        });
        let confinement = pipeline.confinement(&scratch);
        // The duration only scales progress: ffprobe reads it beside the
        // first pass instead of before it.
        let duration_s = Arc::new(std::sync::OnceLock::new());
        let probe = {
            let (ffprobe, input) = (pipeline.config.ffprobe.clone(), input.clone());
            let (duration_s, job_id) = (duration_s.clone(), task.job_id.clone());
            let confinement = confinement.clone();
            AbortOnDrop(tokio::spawn(async move {
                match nommer_media::probe::probe(&ffprobe, &input, Some(confinement)).await {
                    Ok(probe) => {
                        if let Some(seconds) = probe.duration_seconds() {
                            let _ = duration_s.set(seconds);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(job_id = %job_id, error = %e, "ffprobe cannot read the source; encoding without a duration")
                    }
                }
            }))
        };
        let ffmpeg = FfmpegRun {
            ffmpeg: &pipeline.config.ffmpeg,
            ffprobe: &pipeline.config.ffprobe,
            passes: run.passes,
            input: &input,
            output: &output,
            scratch: &scratch,
            inferred_format: inferred,
            duration_s: &duration_s,
            confinement: &confinement,
            max_stall: pipeline.config.max_tool_stall,
        };
        let ran = ffmpeg.run(task).await;
        drop(probe);
        if let Err(e) = ran {
            return e.into();
        }
        if let Err(e) = nommer_media::sandbox::plain_output(&output) {
            return End::failed(FailureCode::ToolFailed, e.to_string());
        }
        // The job's one file output, through the same gate as any other.
        let output_spec = nommer_model::outputs::Output {
            target: nommer_model::outputs::Target::Uri(run.dest.expose().to_string()),
            qc: Default::default(),
            body: nommer_model::outputs::Body::File {
                passes: run.passes.to_vec(),
            },
            #[cfg(feature = "test-nommers")]
            test_break: None,
        };
        let source_probe =
            nommer_media::probe::probe(&pipeline.config.ffprobe, &input, Some(confinement.clone()))
                .await
                .ok();
        let source = super::outputs::source_info(source_probe.as_ref());
        let gate = crate::qc::Gate {
            ffmpeg: &pipeline.config.ffmpeg,
            ffprobe: &pipeline.config.ffprobe,
            confinement: &confinement,
            source: &source,
            source_probe: source_probe.as_ref(),
            source_path: &input,
            scratch: &scratch,
        };
        let layout = nommer_media::outputs::Layout {
            dir: scratch.clone(),
            file: Some(output.clone()),
            renditions: Vec::new(),
            skipped: Vec::new(),
            audio: false,
            times: Vec::new(),
        };
        let report = gate.check(&output_spec, &layout).await;
        let shown = run.dest.redacted();
        if let Some(why) = &report.failure {
            return End::ErrorWith(
                FailureCode::QcFailed.as_str(),
                format!("the output did not pass its check: {why}; nothing was published"),
                serde_json::json!({"outputs": [{"kind": "file", "dest_path": shown, "state": "error", "qc": report.to_json()}]}),
            );
        }
        let bytes = std::fs::metadata(&output).map_or(0, |m| m.len());
        let mut entry = serde_json::json!({"kind": "file", "dest_path": shown, "state": "finished",
            "qc": report.to_json(), "bytes": bytes, "file_count": 1, "uris": [shown]});
        if let Some(duration) = report.json.get("duration_s") {
            entry["duration_s"] = duration.clone();
        }
        // A job named a preset with a dest_path prefix: the prefix is made.
        if run.grant.job_options.get("preset").is_some() {
            let shown = run.grant.dest_uri.as_str();
            if let Some((prefix, _)) = shown.rsplit_once('/') {
                if let Err(e) = run.storage.make_prefix(&format!("{prefix}/")).await {
                    return e.into();
                }
            }
        }
        let dest = run.dest;
        pipeline
            .upload_to(
                &run,
                &output,
                dest,
                Some(serde_json::json!({"outputs": [entry]})),
            )
            .await
    }
}

pub struct FfmpegRun<'a> {
    pub ffmpeg: &'a str,
    /// Reads the output back once the last pass is done.
    pub ffprobe: &'a str,
    pub passes: &'a [Pass],
    pub input: &'a Path,
    pub output: &'a Path,
    pub scratch: &'a Path,
    pub inferred_format: Option<&'a str>,
    /// The source's duration, once ffprobe (running beside the first pass)
    /// has read it; until then progress shows no percentage.
    pub duration_s: &'a std::sync::OnceLock<f64>,
    /// How long ffmpeg may report no progress before it is stopped.
    pub max_stall: std::time::Duration,
    /// The sandbox and jail every pass runs in.
    pub confinement: &'a Confinement,
}

/// One ffmpeg run of a task's several, its progress shown as its share.
pub struct Step<'a> {
    pub argv: &'a [String],
    /// 0-based, of `count`.
    pub index: usize,
    pub count: usize,
    pub phase: String,
    pub duration_s: &'a std::sync::OnceLock<f64>,
    pub confinement: &'a Confinement,
    pub max_stall: std::time::Duration,
}

impl Step<'_> {
    pub async fn run(&self, job: &Arc<RunningTask>) -> Result<(), NomError> {
        let (index, count) = (self.index, self.count);
        let running = ToolCommand::new(self.argv)
            .confined(Some(self.confinement.clone()))
            .silent_for_at_most(Some(self.max_stall))
            .start()
            .await
            .map_err(|e| NomError::Failed(FailureCode::ToolFailed, e.to_string()))?;
        let mut stop = job.watch_stop();
        let mut reader = ProgressReader::default();
        let finished = running.finish(|line| {
            let Some(sample) = reader.line(line) else {
                return;
            };
            let duration = self.duration_s.get().copied();
            let done_s = sample
                .out_time_us
                .map(|us| us as f64 / 1e6)
                .unwrap_or(0.0)
                .max(0.0);
            let fraction = match duration {
                Some(total) => (done_s / total).clamp(0.0, 1.0),
                None => 0.0,
            };
            let overall = (index as f64 + fraction) / count as f64;
            let eta = match (duration, sample.speed) {
                (Some(total), Some(speed)) if speed > 0.0 => {
                    let left_this = (total - done_s).max(0.0);
                    let left_later = total * (count - index - 1) as f64;
                    Some((left_this + left_later) / speed)
                }
                _ => None,
            };
            job.set_progress(Progress {
                phase: self.phase.clone(),
                percent: ENCODE_START + ENCODE_SPAN * overall,
                fps: sample.fps,
                speed: sample.speed,
                eta_seconds: eta,
                ..Default::default()
            });
        });
        // Dropping `finished` (the other branch) kills ffmpeg.
        let result = tokio::select! {
            result = finished => result,
            _ = stop.wait_for(|s| s.is_some()) => {
                return Err(NomError::Stopped(job.stopped().unwrap_or(Stop::LeaseLost)));
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(ToolError::Failed { stderr_tail, .. }) => {
                Err(NomError::Failed(FailureCode::ToolFailed, stderr_tail))
            }
            Err(ToolError::Limit { code, message, .. }) => Err(NomError::Failed(code, message)),
            Err(ToolError::Killed { program }) => Err(match job.stopped() {
                Some(stop) => NomError::Stopped(stop),
                None => NomError::Failed(FailureCode::ToolFailed, format!("{program} was killed")),
            }),
            Err(other) => Err(NomError::Failed(FailureCode::ToolFailed, other.to_string())),
        }
    }
}

impl FfmpegRun<'_> {
    pub async fn run(&self, job: &Arc<RunningTask>) -> Result<(), NomError> {
        let count = self.passes.len();
        for (index, pass) in self.passes.iter().enumerate() {
            let plan = PassPlan {
                ffmpeg: self.ffmpeg,
                pass,
                index,
                pass_count: count,
                input: self.input,
                output: self.output,
                scratch: self.scratch,
                inferred_format: self.inferred_format,
            };
            let argv = plan.argv();
            tracing::info!(job_id = %job.job_id, task = job.task, pass = index + 1, argv = %argv.join(" "), "running ffmpeg");
            let phase = if count > 1 {
                format!("encoding pass {}/{count}", index + 1)
            } else {
                "encoding".to_string()
            };
            let step = Step {
                argv: &argv,
                index,
                count,
                phase,
                duration_s: self.duration_s,
                confinement: self.confinement,
                max_stall: self.max_stall,
            };
            step.run(job).await?;
        }
        self.read_back().await
    }

    /// ffmpeg exits 0 when only its trailer failed to write (a full disk
    /// leaves an MP4 without its `moov`): what it wrote must read back, with
    /// a stream, before anything uploads it.
    async fn read_back(&self) -> Result<(), NomError> {
        let probed =
            nommer_media::probe::probe(self.ffprobe, self.output, Some(self.confinement.clone()))
                .await;
        let why = match probed {
            Ok(probe) if !probe.streams.is_empty() => return Ok(()),
            Ok(_) => "it has no streams".to_string(),
            Err(e) => format!("it cannot be read back: {e}"),
        };
        Err(NomError::Failed(
            FailureCode::QcFailed,
            format!("ffmpeg exited 0, but {why}; nothing was published"),
        ))
    }
}
