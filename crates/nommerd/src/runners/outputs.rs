//! The `ffmpeg` task of a job with `outputs`: download the source, make
//! every output in one ffmpeg (one decode), check each, publish them all or
//! none.

use super::ffmpeg::Step;
use super::TaskRun;
use crate::pipeline::End;
use crate::publish::{self, Published, Upload};
use crate::qc::{Gate, Report};
use nommer_media::outputs::{Layout, OutputsPlan, SourceInfo, SPRITE_VTT};
use nommer_model::outputs::{Body, Output};
use nommer_model::uri::MediaUri;
use nommer_model::{FailureCode, JobState};
use serde_json::{json, Value};
use std::path::Path;

/// The most URIs an output's result lists; past it, its manifests and a count.
const LISTED_URIS: usize = 100;

/// What the source holds, for the plan and the gate.
pub fn source_info(probe: Option<&nommer_media::probe::Probe>) -> SourceInfo {
    let Some(probe) = probe else {
        return SourceInfo::default();
    };
    let video = probe.stream("video");
    SourceInfo {
        has_video: video.is_some(),
        has_audio: probe.stream("audio").is_some(),
        width: video.and_then(|v| v.width),
        height: video.and_then(|v| v.height),
        duration: probe.duration_seconds(),
    }
}

/// Each output's state and what it made, for the task's result: `states`
/// says how each ended.
fn result(
    outputs: &[Output],
    job_dest: &str,
    states: &[(&str, Option<&Report>, Option<&Published>)],
    layouts: &[Layout],
) -> Value {
    let entries: Vec<Value> = outputs
        .iter()
        .enumerate()
        .map(|(i, output)| {
            let dest = output.resolve(job_dest);
            let shown = nommer_model::outputs::shown(&dest);
            let (state, report, published) = states[i];
            let mut entry =
                json!({"kind": output.kind().as_str(), "dest_path": shown, "state": state});
            if let Some(report) = report {
                entry["qc"] = report.to_json();
                if let Some(duration) = report.json.get("duration_s") {
                    entry["duration_s"] = duration.clone();
                }
            }
            if let Some(layout) = layouts.get(i) {
                if !layout.renditions.is_empty() {
                    entry["renditions"] = json!(layout.renditions);
                }
                if !layout.skipped.is_empty() {
                    entry["skipped_renditions"] = json!(layout.skipped);
                }
                if !layout.times.is_empty() {
                    // As written: a time past the end moved to the last moment.
                    entry["at_seconds"] = json!(layout.times);
                }
            }
            if let Some(published) = published {
                entry["bytes"] = json!(published.bytes);
                entry["file_count"] = json!(published.uris.len());
                let uris: Vec<&String> = match published.uris.len() > LISTED_URIS {
                    true => published
                        .uris
                        .iter()
                        .filter(|u| publish::rank(u.rsplit('/').next().unwrap_or_default()) > 0)
                        .collect(),
                    false => published.uris.iter().collect(),
                };
                entry["uris"] = json!(uris);
            }
            entry
        })
        .collect();
    json!({ "outputs": entries })
}

/// The file output's muxer, when its passes name none: from its name.
fn file_format(output: &Output) -> Option<String> {
    let Body::File { passes } = &output.body else {
        return None;
    };
    if passes.last().and_then(|p| p.output_format()).is_some() {
        return None;
    }
    let name = output.resolve("");
    let probe = MediaUri::parse(&format!("file:///{}", name.rsplit('/').next()?)).ok()?;
    nommer_model::submit::inferred_format(&probe)
        .ok()
        .map(str::to_string)
}

fn dirs(plan: &OutputsPlan, scratch: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(scratch.join("out"))?;
    for layout in &plan.layouts {
        std::fs::create_dir_all(&layout.dir)?;
    }
    Ok(())
}

pub async fn run(mut run: TaskRun<'_>) -> End {
    let outputs = run.outputs;
    let input = match run.pipeline.download(&mut run).await {
        Ok(input) => input,
        Err(end) => return end,
    };
    let (pipeline, task) = (run.pipeline, run.task);
    let config = &pipeline.config;
    let scratch = run.scratch.path.clone();
    let confinement = pipeline.confinement(&scratch);
    let source_probe = nommer_media::probe::probe(
        &config.ffprobe,
        &input,
        Some(confinement.clone()),
    )
    .await
    .map_err(
        |e| tracing::warn!(job_id = %task.job_id, error = %e, "ffprobe cannot read the source"),
    )
    .ok();
    let source = source_info(source_probe.as_ref());
    let needs_video = outputs.iter().any(|o| !matches!(o.body, Body::File { .. }));
    if needs_video && !source.has_video {
        return End::failed(
            FailureCode::ToolFailed,
            "the source has no video stream, which abr, thumbnail and sprite outputs are made from",
        );
    }
    let formats: Vec<Option<String>> = outputs.iter().map(file_format).collect();
    let plan =
        nommer_media::outputs::plan(&config.ffmpeg, &input, &scratch, outputs, &formats, &source);
    if let Err(e) = dirs(&plan, &scratch) {
        return End::failed(
            FailureCode::StorageFailed,
            format!("cannot make the output directories: {e}"),
        );
    }
    // The tools write as the sandbox user: the new directories are theirs too.
    if let Err(end) = pipeline
        .hand_over(&scratch, "scratch")
        .and_then(|()| pipeline.hand_over(&scratch.join("out"), "output"))
    {
        return end;
    }
    let duration_s = std::sync::OnceLock::new();
    if let Some(duration) = source.duration {
        let _ = duration_s.set(duration);
    }
    let steps: Vec<&Vec<String>> = plan.first_passes.iter().chain([&plan.argv]).collect();
    let count = steps.len();
    for (index, argv) in steps.into_iter().enumerate() {
        tracing::info!(job_id = %task.job_id, task = task.task, step = index + 1, argv = %argv.join(" "), "running ffmpeg for the job's outputs");
        let step = Step {
            argv,
            index,
            count,
            phase: match count {
                1 => "encoding".into(),
                _ => format!("encoding {}/{count}", index + 1),
            },
            duration_s: &duration_s,
            confinement: &confinement,
            max_stall: config.max_tool_stall,
        };
        if let Err(e) = step.run(task).await {
            return e.into();
        }
    }
    let gate = Gate {
        ffmpeg: &config.ffmpeg,
        ffprobe: &config.ffprobe,
        confinement: &confinement,
        source: &source,
        source_probe: source_probe.as_ref(),
        source_path: &input,
        scratch: &scratch,
    };
    for layout in &plan.layouts {
        let plain = match &layout.file {
            Some(file) => nommer_media::sandbox::plain_output(file)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => plain_files(&layout.dir).map(|_| ()),
        };
        if let Err(why) = plain {
            return End::failed(FailureCode::ToolFailed, why);
        }
    }
    for (output, layout) in outputs.iter().zip(&plan.layouts) {
        if let Body::Sprite(sprite) = &output.body {
            if let Err(why) = write_vtt(&gate, sprite, layout, source.duration.unwrap_or(0.0)).await
            {
                return End::failed(
                    FailureCode::QcFailed,
                    format!("sprite: {why}; nothing was published"),
                );
            }
        }
        #[cfg(feature = "test-nommers")]
        if let Some(how) = &output.test_break {
            test_break(how, layout, &input);
        }
    }
    let job_dest = run.grant.dest_uri.as_str();
    let mut reports = Vec::new();
    for (index, (output, layout)) in outputs.iter().zip(&plan.layouts).enumerate() {
        let report = gate.check(output, layout).await;
        if let Some(why) = report.failure.clone() {
            reports.push(report);
            let states: Vec<_> = (0..outputs.len())
                .map(|i| match (i.cmp(&index), reports.get(i)) {
                    (std::cmp::Ordering::Equal, r) => ("error", r, None),
                    (_, r) => ("discarded", r, None),
                })
                .collect();
            let details = format!(
                "outputs[{index}] ({}): {why}; nothing was published",
                output.kind()
            );
            return End::ErrorWith(
                FailureCode::QcFailed.as_str(),
                details,
                result(outputs, job_dest, &states, &plan.layouts),
            );
        }
        reports.push(report);
    }
    let mut uploads = Vec::new();
    for (index, (output, layout)) in outputs.iter().zip(&plan.layouts).enumerate() {
        let dest = output.resolve(job_dest);
        // Directories under the job's own prefix are made as needed, from the
        // prefix down.
        if let nommer_model::outputs::Target::Path(path) = &output.target {
            let mut dir = job_dest.to_string();
            let levels: Vec<&str> = path.split('/').collect();
            for level in std::iter::once("").chain(levels[..levels.len() - 1].iter().copied()) {
                dir.push_str(level);
                if !level.is_empty() {
                    dir.push('/');
                }
                if let Err(e) = run.storage.make_prefix(&dir).await {
                    return e.into();
                }
            }
        }
        if let Some(file) = &layout.file {
            match MediaUri::parse(&dest) {
                Ok(uri) => uploads.push(Upload {
                    output: index,
                    local: file.clone(),
                    dest: uri,
                    rank: 0,
                }),
                Err(e) => return End::Error(e.code.as_str(), e.message),
            }
            continue;
        }
        if matches!(output.target, nommer_model::outputs::Target::Uri(_)) {
            if let Err(e) = run.storage.make_prefix(&dest).await {
                return e.into();
            }
        }
        let names = match plain_files(&layout.dir) {
            Ok(names) => names,
            Err(why) => return End::failed(FailureCode::ToolFailed, why),
        };
        for name in names {
            match MediaUri::parse(&format!("{dest}{name}")) {
                Ok(uri) => uploads.push(Upload {
                    output: index,
                    local: layout.dir.join(&name),
                    rank: publish::rank(&name),
                    dest: uri,
                }),
                Err(e) => return End::Error(e.code.as_str(), e.message),
            }
        }
    }
    if let Err(end) = pipeline
        .report(task, JobState::Uploading, None, Vec::new())
        .await
    {
        return end;
    }
    tracing::info!(job_id = %task.job_id, task = task.task, files = uploads.len(), "publishing the job's outputs");
    let published =
        match publish::publish(pipeline, task, run.storage, uploads, outputs.len()).await {
            Ok(published) => published,
            Err(End::Error(code, details)) => {
                let states: Vec<_> = reports.iter().map(|r| ("error", Some(r), None)).collect();
                return End::ErrorWith(
                    code,
                    format!("publishing failed, and what was published is removed: {details}"),
                    result(outputs, job_dest, &states, &plan.layouts),
                );
            }
            Err(end) => return end,
        };
    let states: Vec<_> = reports
        .iter()
        .zip(&published)
        .map(|(r, p)| ("finished", Some(r), Some(p)))
        .collect();
    let warnings: Vec<String> = plan
        .layouts
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.skipped.is_empty())
        .map(|(i, l)| {
            format!(
                "outputs[{i}]: renditions {} are larger than the source and were not made",
                l.skipped.join(", ")
            )
        })
        .collect();
    let value = result(outputs, job_dest, &states, &plan.layouts);
    pipeline
        .finish(task, JobState::Uploading, Some(value), Vec::new(), warnings)
        .await
}

/// A sprite's VTT, from the size of its first sheet and the source's length.
async fn write_vtt(
    gate: &Gate<'_>,
    sprite: &nommer_model::outputs::Sprite,
    layout: &Layout,
    duration: f64,
) -> Result<(), String> {
    let ext = sprite.format.as_str();
    let sheets = crate::qc::numbered(&layout.dir, "sprite_", ext, 0);
    let Some(first) = sheets.first() else {
        return Err("ffmpeg wrote no sprite sheet".into());
    };
    let probe = nommer_media::probe::probe(
        gate.ffprobe,
        &layout.dir.join(first),
        Some(gate.confinement.clone()),
    )
    .await
    .map_err(|e| format!("{first} cannot be read back: {e}"))?;
    let video = probe
        .stream("video")
        .ok_or(format!("{first} holds no image"))?;
    let (w, h) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
    let tile = (w / sprite.columns, h / sprite.rows);
    let per_sheet = sprite.columns * sprite.rows;
    let wanted = ((duration / sprite.every_seconds).ceil() as u32).max(1);
    let tiles = wanted.min(sheets.len() as u32 * per_sheet);
    let vtt = nommer_media::outputs::sprite_vtt(sprite, tile, tiles, duration);
    crate::qc::write_new(&layout.dir.join(SPRITE_VTT), vtt.as_bytes())
}

/// The names in an output's directory, each a plain file (no link, device,
/// pipe or directory: what is uploaded is only what the tool wrote).
fn plain_files(dir: &Path) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        nommer_media::sandbox::plain_output(&entry.path()).map_err(|e| e.to_string())?;
        names.push(entry.file_name().to_string_lossy().to_string());
    }
    names.sort();
    Ok(names)
}

/// Test builds: break an output the way `how` says, after ffmpeg wrote it.
#[cfg(feature = "test-nommers")]
fn test_break(how: &str, layout: &Layout, source: &Path) {
    let mut files: Vec<_> = std::fs::read_dir(&layout.dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    match how {
        // The file cut to a third: a trailer-less MP4, or a short one.
        "truncate" => {
            for file in files.iter().filter(|f| layout.file.as_ref() == Some(f)) {
                let size = std::fs::metadata(file).map_or(0, |m| m.len());
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .open(file)
                    .and_then(|f| f.set_len(size / 3));
            }
        }
        // The source in the output's place: streams it was not asked for.
        "streams" => {
            if let Some(file) = &layout.file {
                let _ = std::fs::copy(source, file);
            }
        }
        // A segment cut to half: it still parses, and holds less.
        "cut_segment" => {
            if let Some(segment) = files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "m4s" || e == "ts"))
                .nth(1)
            {
                let size = std::fs::metadata(segment).map_or(0, |m| m.len());
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .open(segment)
                    .and_then(|f| f.set_len(size / 2));
            }
        }
        // A segment a manifest names, gone.
        "segment" => {
            if let Some(segment) = files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "m4s" || e == "ts"))
                .nth(1)
            {
                let _ = std::fs::remove_file(segment);
            }
        }
        _ => {}
    }
}
