//! Chunked encoding: one long encode split across the fleet, frame-exact.
//!
//! A chunked job starts as two tasks: `plan`, which probes the source and
//! chooses the cut points, and `cleanup`, which waits for the job's end and
//! removes the intermediates. The plan adds one `chunk` task per chunk, one
//! `audio` task that encodes the audio once, whole, and one `assemble` task
//! that waits for them, joins the chunks with the concat demuxer, muxes the
//! audio, and checks the result against the plan before it is published.
//!
//! Intermediates live under a work prefix every worker can reach
//! ([`work_prefix`]): beside the destination, or under `intermediate_store`.
//! Every internal command is built here from the job's checked passes, never
//! from text a user wrote.

use crate::error::{CodedError, ErrorCode};
use crate::kinds::TaskKind;
use crate::options::filtergraph;
use crate::options::{OptValue, OptionPair, Pass};
use crate::tasks::{TaskPlan, TaskSpec};
use crate::uri::{Location, MediaUri};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The video encoders whose chunks join cleanly (every chunk opens with a
/// fresh keyframe and the same stream parameters).
pub const ENCODERS: &[&str] = &[
    "libx264",
    "libx265",
    "libvpx-vp9",
    "libaom-av1",
    "libsvtav1",
];

/// The output muxers a chunked job may write.
pub const MUXERS: &[&str] = &["mp4", "matroska", "webm"];

/// Filters that work frame by frame: a chunk filtered alone gives the frames
/// the whole would. A filter not here (reverse, loop, fps, select, trim,
/// fade, a drawtext showing the time, ...) may need the whole timeline.
const FRAME_FILTERS: &[&str] = &[
    "scale",
    "crop",
    "pad",
    "format",
    "setsar",
    "setdar",
    "hflip",
    "vflip",
    "transpose",
    "rotate",
    "unsharp",
    "eq",
    "colorspace",
    "colormatrix",
    "lut",
    "lutrgb",
    "lutyuv",
    "null",
    "gblur",
    "boxblur",
    "deband",
    "zscale",
    "tonemap",
];

/// Flags that change which frames exist or when: a chunk could not give the
/// frames of the whole with them.
const TIMELINE_FLAGS: &[&str] = &[
    "ss",
    "t",
    "to",
    "sseof",
    "r",
    "framerate",
    "vsync",
    "fps_mode",
    "frames",
    "vframes",
    "shortest",
    "itsoffset",
    "stream_loop",
    "filter_complex",
    "lavfi",
    "force_key_frames",
    "map",
    "vn",
];

/// The smallest and largest `chunk_seconds`.
pub const MIN_CHUNK_SECONDS: f64 = 2.0;
pub const MAX_CHUNK_SECONDS: f64 = 3600.0;

/// The most chunks one job is split into.
pub const MAX_CHUNKS: u64 = 2000;

/// `"chunked": {"chunk_seconds": N, "scene_cuts": false}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChunkRequest {
    pub chunk_seconds: f64,
    #[serde(default)]
    pub scene_cuts: bool,
}

fn invalid(message: impl Into<String>) -> CodedError {
    CodedError::new(ErrorCode::InvalidField, message)
}

fn refused(message: impl Into<String>) -> CodedError {
    CodedError::new(ErrorCode::ChunkingNotSupported, message)
}

impl ChunkRequest {
    /// The `chunked` field of a submit; None when absent or null.
    pub fn parse(value: Option<&Value>) -> Result<Option<ChunkRequest>, CodedError> {
        let object = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(object)) => object,
            Some(_) => {
                return Err(invalid(
                    "chunked must be an object: {\"chunk_seconds\": N, \"scene_cuts\": false}",
                ))
            }
        };
        if let Some(key) = object
            .keys()
            .find(|k| !["chunk_seconds", "scene_cuts"].contains(&k.as_str()))
        {
            return Err(invalid(format!(
                "chunked has no field \"{key}\"; it takes chunk_seconds and scene_cuts"
            )));
        }
        let seconds = object.get("chunk_seconds").and_then(Value::as_f64);
        let Some(chunk_seconds) =
            seconds.filter(|s| (MIN_CHUNK_SECONDS..=MAX_CHUNK_SECONDS).contains(s))
        else {
            return Err(invalid(format!(
                "chunked.chunk_seconds must be a number from {MIN_CHUNK_SECONDS} to {MAX_CHUNK_SECONDS}"
            )));
        };
        let scene_cuts = match object.get("scene_cuts") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("chunked.scene_cuts must be true or false")),
        };
        Ok(Some(ChunkRequest {
            chunk_seconds,
            scene_cuts,
        }))
    }
}

/// The encoder a pass names for its video stream.
pub fn video_codec(pass: &Pass) -> Option<&str> {
    let mut codec = None;
    for pair in &pass.outfile_options {
        let video = match pair.flag.as_str() {
            "vcodec" | "c:v" | "codec:v" | "c:v:0" | "codec:v:0" => true,
            "c" | "codec" => codec.is_none(),
            _ => false,
        };
        if video {
            codec = pair.value.as_str();
        }
    }
    codec
}

/// Whether chunking can give what the unchunked job would, as far as its
/// options show; `muxer` is the output's (named, or inferred from the
/// destination). The error says why not.
pub fn check(passes: &[Pass], muxer: &str, nommer: &str) -> Result<(), CodedError> {
    if nommer != "ffmpeg" {
        return Err(refused(format!(
            "the {nommer} nommer does not encode; only ffmpeg jobs are chunked"
        )));
    }
    if !MUXERS.contains(&muxer) {
        return Err(refused(format!(
            "the output is {muxer}; a chunked job writes one video file: MP4, MKV or WebM"
        )));
    }
    for pass in passes {
        let Some(codec) = video_codec(pass) else {
            return Err(refused(format!(
                "name the video encoder (one of {}) in every pass",
                ENCODERS.join(", ")
            )));
        };
        if !ENCODERS.contains(&codec) {
            return Err(refused(format!(
                "{codec} is not an encoder chunks are joined from; use one of {}",
                ENCODERS.join(", ")
            )));
        }
        let graphs = pass
            .outfile_options
            .iter()
            .filter(|p| is_video_filter(p))
            .count();
        if graphs > 1 {
            return Err(refused(
                "give the video one filtergraph: a chunk's own filter is joined to it",
            ));
        }
        let pairs = pass
            .global_options
            .iter()
            .chain(&pass.infile_options)
            .chain(&pass.outfile_options);
        for pair in pairs {
            if TIMELINE_FLAGS.contains(&pair.base()) {
                return Err(refused(format!(
                    "-{} changes which frames the output has or when; it cannot be split into chunks",
                    pair.flag
                )));
            }
            if is_video_filter(pair) {
                check_graph(pair)?;
            }
        }
    }
    Ok(())
}

/// The stream specifier of a flag (`v:0` of `filter:v:0`).
fn specifier(pair: &OptionPair) -> &str {
    pair.flag.split_once(':').map_or("", |(_, spec)| spec)
}

/// An audio filtergraph: `-af`, or `-filter` for audio streams.
fn is_audio_filter(pair: &OptionPair) -> bool {
    pair.base() == "af" || (pair.base() == "filter" && specifier(pair).starts_with('a'))
}

/// Any other filtergraph, whatever its specifier (`-vf`, `-filter`,
/// `-filter:v:0`, `-filter:0`, ...): all are checked as the video's.
fn is_video_filter(pair: &OptionPair) -> bool {
    matches!(pair.base(), "vf" | "filter") && !is_audio_filter(pair)
}

/// Names in filter expressions that count time or frames: in a chunk
/// they would restart from zero.
const TIMELINE_NAMES: &[&str] = &["t", "n", "pos", "time", "frame", "pts"];

fn check_graph(pair: &OptionPair) -> Result<(), CodedError> {
    let text = pair.value.render().unwrap_or_default();
    let graph = filtergraph::parse(&text).map_err(|e| refused(e.0))?;
    for (_, filter) in &graph.filters {
        // A chunk's own filter goes in front of the graph: one plain chain.
        if !filter.inputs.is_empty() || !filter.outputs.is_empty() {
            return Err(refused(
                "a chunked job's video filters are one chain without link labels",
            ));
        }
        if !FRAME_FILTERS.contains(&filter.name.as_str()) {
            return Err(refused(format!(
                "the {} filter may need the whole timeline; chunks take filters that work frame by frame ({})",
                filter.name,
                FRAME_FILTERS.join(", ")
            )));
        }
        for arg in &filter.args {
            let value = match arg {
                filtergraph::RawArg::Positional(v) | filtergraph::RawArg::Keyed(_, v) => v,
            };
            let mut names = value.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            if let Some(name) = names.find(|n| TIMELINE_NAMES.contains(n)) {
                return Err(refused(format!(
                    "the {} filter's expression uses {name}, which would restart in every chunk",
                    filter.name
                )));
            }
        }
    }
    Ok(())
}

/// The tasks a chunked job starts with: its plan, and its cleanup.
pub fn start_tasks(request: ChunkRequest) -> Vec<TaskPlan> {
    vec![
        TaskPlan::new(
            TaskKind::Plan,
            TaskSpec {
                chunking: Some(request),
                ..Default::default()
            },
        ),
        TaskPlan::of(TaskKind::Cleanup),
    ]
}

/// Where a job's intermediates go: `intermediate_store` joined with the
/// job's id, or a directory beside the destination. Every worker must reach
/// it, and it must be removable, so an http(s) destination needs a store.
pub fn work_prefix(
    dest: &MediaUri,
    intermediate_store: Option<&str>,
    job_id: &str,
) -> Result<String, CodedError> {
    if let Some(store) = intermediate_store {
        return Ok(format!("{}/{job_id}/", store.trim_end_matches('/')));
    }
    if matches!(dest.location(), Location::Http { .. }) {
        return Err(refused(
            "intermediates cannot be written beside an http(s) destination; the service needs an intermediate_store",
        ));
    }
    let raw = dest.expose();
    let dir = raw.rsplit_once('/').map(|(dir, _)| dir).unwrap_or(raw);
    Ok(format!("{dir}/.nommer-{job_id}/"))
}

/// An `intermediate_store` setting: a prefix of a scheme whose objects can
/// be listed and removed (file, s3, gs, az).
pub fn check_intermediate_store(store: &str) -> Result<(), CodedError> {
    let probe = MediaUri::parse(&format!("{}/probe", store.trim_end_matches('/')))?;
    if matches!(probe.location(), Location::Http { .. }) {
        return Err(refused("intermediate_store cannot be an http(s) URI"));
    }
    Ok(())
}

/// A frame rate as a fraction, as ffprobe gives it (`30000/1001`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub num: u32,
    pub den: u32,
}

impl Rate {
    pub fn parse(text: &str) -> Option<Rate> {
        let (num, den) = text.split_once('/')?;
        let rate = Rate {
            num: num.trim().parse().ok()?,
            den: den.trim().parse().ok()?,
        };
        (rate.num > 0 && rate.den > 0).then_some(rate)
    }

    pub fn fps(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// The time of frame `n`, in seconds.
    pub fn seconds(self, frames: u64) -> f64 {
        frames as f64 * self.den as f64 / self.num as f64
    }

    /// `frames` frames as an exact decimal number of seconds when it has
    /// one, else to the nanosecond (the concat list's `duration`).
    pub fn duration_text(self, frames: u64) -> String {
        format!("{:.9}", self.seconds(frames))
    }
}

/// One chunk's frames: `[start, end)` of the source's video.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChunkSpec {
    pub index: u32,
    pub start: u64,
    pub end: u64,
    pub rate: Rate,
    /// Where the chunk's input `-ss` seeks, in seconds from the file's
    /// start ([`seek_seconds`]).
    pub seek: f64,
}

impl ChunkSpec {
    pub fn frames(&self) -> u64 {
        self.end - self.start
    }
}

/// Where to seek for a chunk whose first frame is at `first_pts_seconds`
/// in a file whose timeline starts at `file_start` (what an input `-ss`
/// counts from): half a frame before it, so the decoder's rounding cannot
/// land on its neighbour.
pub fn seek_seconds(first_pts_seconds: f64, file_start: f64, rate: Rate) -> f64 {
    (first_pts_seconds - file_start - rate.seconds(1) / 2.0).max(0.0)
}

/// What the assemble task joins, and what it checks the result against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssembleSpec {
    pub chunks: Vec<ChunkSpec>,
    pub rate: Rate,
    /// The source's video frames: the output must have exactly these.
    pub frames: u64,
    /// An audio task encoded the audio: the output carries one audio stream.
    pub audio: bool,
    /// The source's audio duration, when it has audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_seconds: Option<f64>,
}

/// An intermediate chunk's name under the work prefix. Chunks are always
/// MP4 with the frame rate as the timescale, so every timestamp is exact.
pub fn chunk_name(index: u32) -> String {
    format!("chunk-{index:05}.mp4")
}

/// The audio intermediate's name and muxer, in the output's own family so
/// its timestamps and priming carry over unchanged.
pub fn audio_file(muxer: &str) -> (&'static str, &'static str) {
    match muxer {
        "webm" => ("audio.webm", "webm"),
        "matroska" => ("audio.mka", "matroska"),
        _ => ("audio.m4a", "mp4"),
    }
}

/// How many frames past a source keyframe a chunk should start for its seek
/// to land on that keyframe: ffmpeg's input `-ss` backs off 3/23 s before
/// the target for a stream with B-frames, then goes to the keyframe before,
/// and a chunk's seek is half a frame before its first frame. A cut right
/// on a keyframe would decode the whole GOP before it and throw it away.
/// (A cut is exact wherever it falls; this only saves decoding.)
pub fn past_keyframe(rate: Rate) -> u64 {
    (0.5 + rate.fps() * 3.0 / 23.0).ceil() as u64 + 1
}

/// Cut points about `chunk_seconds` apart over `frames` frames: the chunk
/// starts, then `frames`. A cut moves to the nearest scene cut, or else
/// just past the nearest source keyframe ([`past_keyframe`]), within a
/// quarter of a chunk of where it would fall. One chunk (`[0, frames]`)
/// when the source is shorter than two.
pub fn cut_points(
    frames: u64,
    rate: Rate,
    chunk_seconds: f64,
    keyframes: &[u64],
    scenes: &[u64],
) -> Vec<u64> {
    let target = ((chunk_seconds * rate.fps()).round() as u64).max(1);
    if frames < 2 * target {
        return vec![0, frames];
    }
    let count = ((frames as f64 / target as f64).round() as u64).clamp(2, MAX_CHUNKS);
    let window = (target / 4) as i64;
    let nearest = |list: &[u64], ideal: u64| -> Option<u64> {
        list.iter()
            .copied()
            .filter(|&f| f > 0 && f < frames && (f as i64 - ideal as i64).abs() <= window)
            .min_by_key(|&f| (f as i64 - ideal as i64).abs())
    };
    let past: Vec<u64> = keyframes.iter().map(|k| k + past_keyframe(rate)).collect();
    let mut cuts = vec![0];
    for k in 1..count {
        let ideal = k * frames / count;
        let cut = nearest(scenes, ideal)
            .or_else(|| nearest(&past, ideal))
            .unwrap_or(ideal);
        // Every chunk keeps at least half a target's frames.
        if cut >= cuts[cuts.len() - 1] + target / 2 && cut + target / 2 <= frames {
            cuts.push(cut);
        }
    }
    cuts.push(frames);
    cuts
}

fn keep(pairs: &[OptionPair], drop: impl Fn(&OptionPair) -> bool) -> Vec<OptionPair> {
    pairs.iter().filter(|p| !drop(p)).cloned().collect()
}

fn pair(flag: &str, value: &str) -> OptionPair {
    OptionPair::new(flag, OptValue::Str(value.into()))
}

fn flag(flag: &str) -> OptionPair {
    OptionPair::new(flag, OptValue::Null)
}

/// One pass of a chunk: the job's pass on the chunk's frames only, video
/// only, its timestamps from zero, into MP4 with the frame rate as the
/// timescale. x264 writes headers every chunk shares (`stitchable`); x265
/// is tagged `hvc1` as MP4 players expect.
pub fn chunk_pass(pass: &Pass, chunk: &ChunkSpec) -> Pass {
    let mut infile = pass.infile_options.clone();
    infile.push(pair("ss", &format!("{:.6}", chunk.seek)));
    let mut out = keep(&pass.outfile_options, |p| {
        matches!(p.base(), "f" | "movflags") || is_audio_filter(p)
    });
    let reset = "setpts=PTS-STARTPTS";
    match out.iter_mut().find(|p| is_video_filter(p)) {
        Some(graph) => {
            let user = graph.value.render().unwrap_or_default();
            graph.value = OptValue::Str(format!("{reset},{user}"));
        }
        None => out.push(pair("vf", reset)),
    }
    match video_codec(pass) {
        Some("libx264") => match out.iter_mut().find(|p| p.base() == "x264-params") {
            Some(params) => {
                let user = params.value.render().unwrap_or_default();
                params.value = OptValue::Str(format!("{user}:stitchable=1"));
            }
            None => out.push(pair("x264-params", "stitchable=1")),
        },
        Some("libx265") => out.push(pair("tag:v", "hvc1")),
        _ => {}
    }
    out.push(pair("frames:v", &chunk.frames().to_string()));
    out.push(pair("fps_mode", "passthrough"));
    out.push(flag("an"));
    out.push(flag("sn"));
    out.push(pair("video_track_timescale", &chunk.rate.num.to_string()));
    out.push(pair("f", "mp4"));
    Pass {
        global_options: pass.global_options.clone(),
        infile_options: infile,
        outfile_options: out,
        move_atom_to_front: false,
    }
}

/// The audio task's one pass: the job's last pass with no video, into the
/// audio intermediate's muxer.
pub fn audio_pass(pass: &Pass, muxer: &str) -> Pass {
    let mut out = keep(&pass.outfile_options, |p| {
        matches!(p.base(), "f" | "movflags" | "pass" | "passlogfile") || is_video_filter(p)
    });
    out.push(flag("vn"));
    out.push(flag("sn"));
    out.push(pair("f", audio_file(muxer).1));
    Pass {
        global_options: pass.global_options.clone(),
        infile_options: pass.infile_options.clone(),
        outfile_options: out,
        move_atom_to_front: false,
    }
}

/// The concat demuxer's list of the chunks, each with its exact duration
/// (without it, each seam drifts by a fraction of a millisecond).
pub fn concat_list(chunks: &[ChunkSpec]) -> String {
    let mut list = String::from("ffconcat version 1.0\n");
    for chunk in chunks {
        list.push_str(&format!(
            "file {}\nduration {}\n",
            chunk_name(chunk.index),
            chunk.rate.duration_text(chunk.frames())
        ));
    }
    list
}

/// The audio task, the chunk tasks and the assemble task a plan adds. The
/// audio goes first: it is one task over the whole file, the longest, and
/// tasks are claimed in order.
pub fn planned_tasks(assemble: AssembleSpec) -> Vec<TaskPlan> {
    let mut tasks = Vec::new();
    if assemble.audio {
        tasks.push(TaskPlan::of(TaskKind::Audio));
    }
    tasks.extend(assemble.chunks.iter().map(|chunk| {
        TaskPlan::new(
            TaskKind::Chunk,
            TaskSpec {
                chunk: Some(*chunk),
                ..Default::default()
            },
        )
    }));
    tasks.push(TaskPlan::new(
        TaskKind::Assemble,
        TaskSpec {
            assemble: Some(assemble),
            ..Default::default()
        },
    ));
    tasks
}

/// How far from the plan an assembled output may be before it is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assembled {
    pub frames: u64,
    pub video_streams: u32,
    pub audio_streams: u32,
    pub video_seconds: f64,
    pub audio_seconds: Option<f64>,
    /// Presentation-timestamp steps that are not one frame (beyond the
    /// container's rounding).
    pub uneven_steps: u64,
}

/// The assemble check: None when the output matches the plan, else what
/// differs, with the figures (the job's `qc_failed` details).
pub fn verify(plan: &AssembleSpec, got: &Assembled) -> Option<String> {
    let mut wrong = Vec::new();
    if got.frames != plan.frames {
        wrong.push(format!(
            "{} video frames, the plan has {}",
            got.frames, plan.frames
        ));
    }
    if got.video_streams != 1 {
        wrong.push(format!("{} video streams, expected 1", got.video_streams));
    }
    let audio = u32::from(plan.audio);
    if got.audio_streams != audio {
        wrong.push(format!(
            "{} audio streams, expected {audio}",
            got.audio_streams
        ));
    }
    let expected = plan.rate.seconds(plan.frames);
    let frame = plan.rate.seconds(1);
    if (got.video_seconds - expected).abs() > frame / 2.0 + 0.001 {
        wrong.push(format!(
            "video lasts {:.3} s, the plan {:.3} s",
            got.video_seconds, expected
        ));
    }
    if let (Some(want), Some(have)) = (plan.audio_seconds, got.audio_seconds) {
        // The audio was encoded whole; its muxing may round by a packet.
        if (want - have).abs() > 0.1 {
            wrong.push(format!("audio lasts {have:.3} s, the source {want:.3} s"));
        }
    }
    if got.uneven_steps > 0 {
        wrong.push(format!(
            "{} timestamp steps are not one frame",
            got.uneven_steps
        ));
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "the assembled output does not match its plan: {}",
            wrong.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{check_passes, parse_passes, Allowlist};
    use serde_json::json;

    fn passes(options: Value) -> Vec<Pass> {
        check_passes(parse_passes(&options).unwrap(), Allowlist::builtin()).unwrap()
    }

    const RATE: Rate = Rate { num: 30, den: 1 };

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        let ok = ChunkRequest::parse(Some(&json!({"chunk_seconds": 10}))).unwrap();
        assert_eq!(ok.unwrap().chunk_seconds, 10.0);
        assert!(ChunkRequest::parse(None).unwrap().is_none());
        for bad in [
            json!(5),
            json!({"chunk_seconds": 1}),
            json!({"chunk_seconds": "10"}),
            json!({"chunk_seconds": 10, "scene_cuts": "yes"}),
            json!({"chunk_seconds": 10, "frames": 3}),
        ] {
            let e = ChunkRequest::parse(Some(&bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidField, "{bad}");
        }
    }

    #[test]
    fn options_that_need_the_whole_timeline_are_refused() {
        let ok = passes(
            json!([{"outfile_options": [["c:v", "libx264"], ["crf", 23], ["vf", "scale=640:-2"], ["c:a", "aac"]]}]),
        );
        check(&ok, "mp4", "ffmpeg").unwrap();
        let cases = [
            (
                json!([{"outfile_options": [["c:v", "libx264"], ["vf", "reverse"]]}]),
                "reverse",
            ),
            (
                json!([{"outfile_options": [["c:v", "libx264"], ["vf", "scale=320:-2,fps=10"]]}]),
                "fps",
            ),
            (json!([{"outfile_options": [["c:v", "mpeg4"]]}]), "mpeg4"),
            (
                json!([{"outfile_options": [["c:a", "aac"]]}]),
                "name the video encoder",
            ),
            (
                json!([{"outfile_options": [["c:v", "libx264"], ["t", 5]]}]),
                "-t",
            ),
            (
                json!([{"outfile_options": [["c:v", "libx264"], ["filter:v:0", "reverse"]]}]),
                "reverse",
            ),
            (
                json!([{"outfile_options": [["c:v", "libx264"], ["vf", "crop=w=100:h=100:x=t*10"]]}]),
                "uses t",
            ),
            (
                json!([{"outfile_options": [["c:v", "libx264"], ["vf", "[in]scale=320:-2[out]"]]}]),
                "link labels",
            ),
        ];
        for (options, why) in cases {
            let e = check(&passes(options), "mp4", "ffmpeg").unwrap_err();
            assert_eq!(e.code, ErrorCode::ChunkingNotSupported);
            assert!(e.message.contains(why), "{}", e.message);
        }
        assert!(check(&ok, "mpegts", "ffmpeg")
            .unwrap_err()
            .message
            .contains("MP4, MKV or WebM"));
        assert!(check(&ok, "mp4", "copy").is_err());
    }

    #[test]
    fn cuts_are_about_chunk_seconds_apart_and_prefer_scenes_then_keyframes() {
        // 120 s at 30 fps in 10 s chunks: 12 chunks of 300 frames.
        let cuts = cut_points(3600, RATE, 10.0, &[], &[]);
        assert_eq!(cuts.len(), 13);
        assert!(cuts.windows(2).all(|w| w[1] - w[0] == 300));
        // A keyframe near a cut moves it; a scene cut nearer still wins.
        let cuts = cut_points(3600, RATE, 10.0, &[330], &[280]);
        assert_eq!(cuts[1], 280);
        // Just past the keyframe, where the seek lands on it: 30 fps, 6 frames.
        assert_eq!(past_keyframe(RATE), 6);
        let cuts = cut_points(3600, RATE, 10.0, &[330], &[]);
        assert_eq!(cuts[1], 336);
        // Shorter than two chunks: one.
        assert_eq!(cut_points(500, RATE, 10.0, &[], &[]), vec![0, 500]);
        assert_eq!(*cut_points(601, RATE, 10.0, &[], &[]).last().unwrap(), 601);
    }

    #[test]
    fn the_work_prefix_is_beside_the_destination_or_in_the_store() {
        let dest = MediaUri::parse("s3://out/movies/film.mp4").unwrap();
        assert_eq!(
            work_prefix(&dest, None, "j1").unwrap(),
            "s3://out/movies/.nommer-j1/"
        );
        assert_eq!(
            work_prefix(&dest, Some("s3://scratch/tmp/"), "j1").unwrap(),
            "s3://scratch/tmp/j1/"
        );
        check_intermediate_store("s3://scratch/tmp/").unwrap();
        assert!(check_intermediate_store("https://example.com/x").is_err());
        let web = MediaUri::parse("https://example.com/up/film.mp4").unwrap();
        assert_eq!(
            work_prefix(&web, None, "j1").unwrap_err().code,
            ErrorCode::ChunkingNotSupported
        );
    }

    #[test]
    fn a_chunk_pass_takes_its_frames_alone_from_zero() {
        let pass = &passes(
            json!([{"outfile_options": [["c:v", "libx264"], ["vf", "scale=640:-2"], ["c:a", "aac"], ["f", "mp4"]], "move_atom_to_front": true}]),
        )[0];
        let seek = seek_seconds(20.0, 0.0, RATE);
        let chunk = ChunkSpec {
            index: 2,
            start: 600,
            end: 900,
            rate: RATE,
            seek,
        };
        let p = chunk_pass(pass, &chunk);
        let flags: Vec<(String, Option<String>)> = p
            .outfile_options
            .iter()
            .map(|p| (p.flag.clone(), p.value.render()))
            .collect();
        assert!(
            flags.contains(&(
                "vf".into(),
                Some("setpts=PTS-STARTPTS,scale=w=640:h=-2".into())
            )),
            "{flags:?}"
        );
        assert!(flags.contains(&("frames:v".into(), Some("300".into()))));
        assert!(flags.contains(&("x264-params".into(), Some("stitchable=1".into()))));
        assert_eq!(p.output_format(), Some("mp4"));
        assert_eq!(
            p.infile_options.last().unwrap().value.render().unwrap(),
            "19.983333"
        );
        // A video that starts after the file's timeline does: seek from the file's start.
        assert!((seek_seconds(20.5, 0.5, RATE) - 19.983333).abs() < 1e-6);
        assert_eq!(seek_seconds(0.0, 0.0, RATE), 0.0);
        let audio = audio_pass(pass, "mp4");
        assert!(audio.outfile_options.iter().all(|p| p.flag != "vf"));
        assert!(audio.outfile_options.iter().any(|p| p.flag == "vn"));
    }

    #[test]
    fn the_check_names_every_difference() {
        let plan = AssembleSpec {
            chunks: vec![],
            rate: RATE,
            frames: 300,
            audio: true,
            audio_seconds: Some(10.0),
        };
        let good = Assembled {
            frames: 300,
            video_streams: 1,
            audio_streams: 1,
            video_seconds: 10.0,
            audio_seconds: Some(10.02),
            uneven_steps: 0,
        };
        assert_eq!(verify(&plan, &good), None);
        let bad = Assembled {
            frames: 290,
            video_seconds: 9.667,
            audio_streams: 0,
            ..good
        };
        let why = verify(&plan, &bad).unwrap();
        assert!(why.contains("290 video frames, the plan has 300"), "{why}");
        assert!(why.contains("0 audio streams"), "{why}");
        assert!(why.contains("video lasts 9.667 s"), "{why}");
    }

    #[test]
    fn the_concat_list_gives_exact_durations() {
        let rate = Rate {
            num: 30000,
            den: 1001,
        };
        let chunks = [
            ChunkSpec {
                index: 0,
                start: 0,
                end: 101,
                rate,
                seek: 0.0,
            },
            ChunkSpec {
                index: 1,
                start: 101,
                end: 233,
                rate,
                seek: 3.35,
            },
        ];
        let list = concat_list(&chunks);
        assert!(
            list.starts_with("ffconcat version 1.0\nfile chunk-00000.mp4\nduration 3.370033333\n"),
            "{list}"
        );
    }
}
