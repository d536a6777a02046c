//! `plan` tasks: probe a chunked job's source, choose frame-exact cuts
//! about `chunk_seconds` apart, and add the chunk, audio and assemble tasks.
//! What only the probe can tell (no video, a variable frame rate, a source
//! shorter than two chunks) makes the job run unchunked, with a warning.

use super::{output_muxer, Runner, TaskRun};
use crate::pipeline::End;
use nommer_media::frames::{self, VideoFrames};
use nommer_media::probe::Probe;
use nommer_model::chunked::{self, AssembleSpec, ChunkSpec, Rate};
use nommer_model::tasks::TaskPlan;
use nommer_model::{FailureCode, JobState, TaskKind};
use serde_json::json;

pub struct Plan;

#[async_trait::async_trait]
impl Runner for Plan {
    fn kind(&self) -> TaskKind {
        TaskKind::Plan
    }

    async fn run(&self, run: TaskRun<'_>) -> End {
        let Some(request) = run.grant.spec.chunking else {
            return End::failed(
                FailureCode::ToolFailed,
                "a plan task without its chunking request",
            );
        };
        if let Err(end) = output_muxer(&run) {
            return end;
        }
        let (pipeline, task) = (run.pipeline, run.task);
        if let Err(end) = run.scratch.create().await {
            return end;
        }
        let (held, input) = match pipeline.held_input(&run).await {
            Ok(held) => held,
            Err(end) => return end,
        };
        if let Err(end) = pipeline
            .report(task, JobState::Encoding, None, Vec::new())
            .await
        {
            return end;
        }
        let confinement = pipeline.confinement_reading(&run.scratch.path, &[held.dir().clone()]);
        let config = &pipeline.config;
        let probe = nommer_media::probe::probe(&config.ffprobe, &input, Some(confinement.clone()));
        let scan = frames::video_frames(&config.ffprobe, &input, Some(confinement.clone()));
        let (probe, scan) = match tokio::try_join!(probe, scan) {
            Ok(both) => both,
            Err(e) => {
                return End::failed(
                    FailureCode::ToolFailed,
                    format!("ffprobe cannot read the source: {e}"),
                )
            }
        };
        let layout = match Layout::of(&probe, &scan, request.chunk_seconds) {
            Ok(layout) => layout,
            Err(why) => return unchunked(&run, why).await,
        };
        let scenes = match request.scene_cuts {
            true => match frames::scene_cuts(&config.ffmpeg, &input, Some(confinement)).await {
                Ok(scenes) => scenes,
                Err(e) => {
                    return End::failed(
                        FailureCode::ToolFailed,
                        format!("scene detection failed: {e}"),
                    )
                }
            },
            false => Vec::new(),
        };
        let cuts = chunked::cut_points(
            scan.count(),
            layout.rate,
            request.chunk_seconds,
            &scan.keyframes,
            &scenes,
        );
        if cuts.len() < 3 {
            let seconds = layout.rate.seconds(scan.count());
            return unchunked(
                &run,
                format!(
                    "the source ({seconds:.1} s) is shorter than two chunks of {} s",
                    request.chunk_seconds
                ),
            )
            .await;
        }
        let chunks: Vec<ChunkSpec> = cuts
            .windows(2)
            .enumerate()
            .map(|(index, w)| ChunkSpec {
                index: index as u32,
                start: w[0],
                end: w[1],
                rate: layout.rate,
                seek: chunked::seek_seconds(
                    scan.pts[w[0] as usize] as f64 * layout.time_base,
                    layout.file_start,
                    layout.rate,
                ),
            })
            .collect();
        let muted = run
            .passes
            .last()
            .is_some_and(|p| p.outfile_options.iter().any(|o| o.flag == "an"));
        let audio = layout.audio_seconds.is_some() && !muted;
        let result = json!({
            "frames": scan.count(),
            "rate": format!("{}/{}", layout.rate.num, layout.rate.den),
            "chunks": chunks.len(),
            "keyframes": scan.keyframes.len(),
            "scene_cuts": scenes.len(),
            "audio": audio,
        });
        tracing::info!(job_id = %task.job_id, frames = scan.count(), chunks = chunks.len(), scene_cuts = scenes.len(), audio, "planned chunks");
        let spec = AssembleSpec {
            frames: scan.count(),
            rate: layout.rate,
            audio,
            audio_seconds: layout.audio_seconds.flatten().filter(|_| audio),
            chunks,
        };
        pipeline
            .finish(
                task,
                JobState::Encoding,
                Some(result),
                chunked::planned_tasks(spec),
                Vec::new(),
            )
            .await
    }
}

/// What the probe says of the source, when it can be chunked.
struct Layout {
    rate: Rate,
    /// Seconds per time-base unit of the video's timestamps.
    time_base: f64,
    /// Where the file's timeline starts (what `-ss` counts from).
    file_start: f64,
    /// Some when the source has audio: its duration, when it says.
    audio_seconds: Option<Option<f64>>,
}

impl Layout {
    fn of(probe: &Probe, scan: &VideoFrames, chunk_seconds: f64) -> Result<Layout, String> {
        let Some(video) = probe.stream("video") else {
            return Err("the source has no video stream".into());
        };
        let videos = probe
            .streams
            .iter()
            .filter(|s| s.codec_type.as_deref() == Some("video"))
            .count();
        if videos > 1 {
            return Err(format!("the source has {videos} video streams"));
        }
        if scan.missing_pts > 0 {
            return Err(format!(
                "{} of the source's video packets have no timestamp",
                scan.missing_pts
            ));
        }
        let rate = video.r_frame_rate.as_deref().and_then(Rate::parse);
        let mean = video.avg_frame_rate.as_deref().and_then(Rate::parse);
        let base = video.time_base.as_deref().and_then(Rate::parse);
        let (Some(rate), Some(base)) = (rate, base) else {
            return Err("the source's video has no frame rate".into());
        };
        // One frame in time-base units: base is num/den seconds per unit.
        let tick = base.den as f64 * rate.den as f64 / (base.num as f64 * rate.num as f64);
        let uneven = scan.uneven_steps(tick);
        let mean_differs = mean.is_some_and(|m| (m.fps() - rate.fps()).abs() > 0.01);
        if uneven > 0 || mean_differs {
            return Err(format!(
                "the source has a variable frame rate ({uneven} of {} frame steps are not 1/{:.3} s)",
                scan.count().saturating_sub(1),
                rate.fps()
            ));
        }
        if scan.count() == 0 || rate.seconds(scan.count()) < 2.0 * chunk_seconds {
            return Err(format!(
                "the source ({:.1} s) is shorter than two chunks of {chunk_seconds} s",
                rate.seconds(scan.count())
            ));
        }
        // An audio stream without a duration of its own (Matroska) is
        // still encoded; the check then has no duration to hold it to.
        let audio_seconds = probe.stream("audio").map(|a| a.duration_seconds());
        let file_start = probe
            .format
            .start_time
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        Ok(Layout {
            rate,
            time_base: base.num as f64 / base.den as f64,
            file_start,
            audio_seconds,
        })
    }
}

/// The job runs as one ffmpeg task after all, and says why.
async fn unchunked(run: &TaskRun<'_>, why: String) -> End {
    tracing::info!(job_id = %run.task.job_id, reason = %why, "not chunked");
    let warning = format!("not chunked: {why}; the job ran as one task");
    run.pipeline
        .finish(
            run.task,
            JobState::Encoding,
            Some(json!({"chunked": false, "reason": why})),
            vec![TaskPlan::of(TaskKind::Ffmpeg)],
            vec![warning],
        )
        .await
}
