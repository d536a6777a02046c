//! The quality gate: every output a task wrote is read back in the scratch
//! before anything is published. Each output probes and decodes (its start
//! and end by default, every frame with `qc: "full"`), lasts as long as the
//! source (or its trim) within two frame durations, and holds the streams
//! it was asked for; a ladder's manifests name only files that exist and
//! probe. The report is the output's, whether it passed or not.

use nommer_media::manifests;
use nommer_media::outputs::{Layout, SourceInfo, DASH_MANIFEST, HLS_MASTER, SPRITE_VTT};
use nommer_media::probe::{probe, Probe};
use nommer_media::process::{Confinement, ToolCommand, ToolError};
use nommer_model::kinds::{Manifest, QcLevel, QcMetric, SegmentType};
use nommer_model::options::{OptionPair, Pass};
use nommer_model::outputs::{Abr, Body, Output, Sprite, Thumbnail, Times};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// How much of a file's start and end a sampled check decodes.
const SAMPLE_SECONDS: &str = "3";

pub struct Gate<'a> {
    pub ffmpeg: &'a str,
    pub ffprobe: &'a str,
    pub confinement: &'a Confinement,
    pub source: &'a SourceInfo,
    /// The source as ffprobe read it (its frame rate sets the tolerance).
    pub source_probe: Option<&'a Probe>,
    pub source_path: &'a Path,
    /// Where the gate may write its temporary files.
    pub scratch: &'a Path,
}

/// What the gate found: the figures, and why it failed if it did.
pub struct Report {
    pub json: Map<String, Value>,
    pub failure: Option<String>,
}

impl Report {
    fn new(level: QcLevel) -> Report {
        let mut json = Map::new();
        json.insert("level".into(), json!(level.as_str()));
        json.insert("checked".into(), json!([]));
        Report {
            json,
            failure: None,
        }
    }

    fn checked(&mut self, what: impl Into<String>) {
        if let Some(Value::Array(list)) = self.json.get_mut("checked") {
            list.push(Value::String(what.into()));
        }
    }

    fn set(&mut self, key: &str, value: Value) {
        self.json.insert(key.into(), value);
    }

    pub fn to_json(&self) -> Value {
        let mut json = self.json.clone();
        json.insert("passed".into(), json!(self.failure.is_none()));
        if let Some(failure) = &self.failure {
            json.insert("failure".into(), json!(failure));
        }
        Value::Object(json)
    }
}

fn ratio(text: Option<&str>) -> Option<f64> {
    let (n, d) = text?.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (n > 0.0 && d > 0.0).then(|| n / d)
}

/// An FFmpeg time (`5`, `5.5`, `00:01:02.5`, `500ms`) in seconds.
fn seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|v| v / 1e3);
    }
    if let Some(us) = text.strip_suffix("us") {
        return us.parse::<f64>().ok().map(|v| v / 1e6);
    }
    let text = text.strip_suffix('s').unwrap_or(text);
    text.split(':').try_fold(0.0, |total, part| {
        Some(total * 60.0 + part.parse::<f64>().ok()?)
    })
}

fn last_value(pairs: &[OptionPair], base: &str) -> Option<String> {
    pairs
        .iter()
        .rev()
        .find(|p| p.base() == base)
        .and_then(|p| p.value.render())
}

/// Options that change how long an output lasts in ways the gate does not
/// work out: its duration is then not checked (the report says so).
const RETIMING_FLAGS: &[&str] = &[
    "frames",
    "vframes",
    "aframes",
    "dframes",
    "fs",
    "itsscale",
    "itsoffset",
    "sseof",
    "stream_loop",
    "shortest",
];
const RETIMING_FILTERS: &[&str] = &[
    "setpts", "asetpts", "atempo", "trim", "atrim", "tpad", "apad", "loop", "aloop", "select",
    "aselect", "concat",
];

/// The length a file output should have: the source's, cut by the input's
/// and then the output's `ss`, `t` and `to`. An error saying why when its
/// options retime it otherwise.
fn expected_duration(source: f64, pass: &Pass) -> Result<f64, String> {
    let all = || {
        pass.global_options
            .iter()
            .chain(&pass.infile_options)
            .chain(&pass.outfile_options)
    };
    if let Some(flag) = all().find(|p| RETIMING_FLAGS.contains(&p.base())) {
        return Err(format!("-{} retimes it", flag.flag));
    }
    let input = window(source, &pass.infile_options);
    let pairs = &pass.outfile_options;
    for pair in all() {
        if !matches!(
            pair.base(),
            "vf" | "af" | "filter" | "filter_complex" | "lavfi"
        ) {
            continue;
        }
        let graph = pair.value.render().unwrap_or_default();
        if let Some(filter) = RETIMING_FILTERS.iter().find(|f| {
            graph
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == **f)
        }) {
            return Err(format!("the {filter} filter retimes it"));
        }
    }
    Ok(window(input, pairs))
}

/// How much of `length` seconds `ss`, `t` and `to` among `pairs` keep.
fn window(length: f64, pairs: &[OptionPair]) -> f64 {
    let start = last_value(pairs, "ss")
        .and_then(|v| seconds(&v))
        .unwrap_or(0.0);
    let mut end = length;
    if let Some(to) = last_value(pairs, "to").and_then(|v| seconds(&v)) {
        end = end.min(to);
    }
    let mut kept = (end - start).max(0.0);
    if let Some(t) = last_value(pairs, "t").and_then(|v| seconds(&v)) {
        kept = kept.min(t);
    }
    kept
}

/// The codec an encoder writes, for the ones a job names most.
fn codec_of(encoder: &str) -> Option<&'static str> {
    Some(match encoder {
        "libx264" | "h264" => "h264",
        "libx265" | "hevc" => "hevc",
        "libvpx" => "vp8",
        "libvpx-vp9" => "vp9",
        "libaom-av1" | "libsvtav1" | "av1" => "av1",
        "mpeg4" | "libxvid" => "mpeg4",
        "mpeg2video" => "mpeg2video",
        "mjpeg" => "mjpeg",
        "prores" | "prores_ks" => "prores",
        "aac" => "aac",
        "libopus" | "opus" => "opus",
        "libmp3lame" => "mp3",
        "libvorbis" | "vorbis" => "vorbis",
        "flac" => "flac",
        "ac3" => "ac3",
        "pcm_s16le" => "pcm_s16le",
        _ => return None,
    })
}

/// The encoder the options name for a stream type (`v` or `a`).
/// With `general`, a `c` or `codec` without a stream counts too.
fn encoder_for(pairs: &[OptionPair], stream: &str, general: bool) -> Option<String> {
    let alias = match stream {
        "v" => "vcodec",
        _ => "acodec",
    };
    pairs
        .iter()
        .rev()
        .find(|p| {
            p.flag == alias
                || p.flag == format!("c:{stream}")
                || p.flag == format!("codec:{stream}")
                || (general && (p.flag == "c" || p.flag == "codec"))
        })
        .and_then(|p| p.value.render())
}

/// The duration of one frame, from a stream's frame rate (None when it
/// names none that makes sense).
fn frame_of(stream: Option<&nommer_media::probe::ProbeStream>) -> Option<f64> {
    let stream = stream?;
    let fps = ratio(stream.avg_frame_rate.as_deref()).or(ratio(stream.r_frame_rate.as_deref()))?;
    (1.0..=240.0).contains(&fps).then(|| 1.0 / fps)
}

impl Gate<'_> {
    /// Two frame durations (the source's or the output's, whichever is
    /// longer, and never less than an AAC frame), plus however much the
    /// source's own streams differ in length: containers end with the
    /// longest stream.
    fn tolerance(&self, output: Option<&Probe>) -> f64 {
        let source = self.source_probe;
        let frame = [
            frame_of(source.and_then(|p| p.stream("video"))),
            frame_of(output.and_then(|p| p.stream("video"))),
            Some(1024.0 / 48_000.0),
        ]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max);
        let streams = source.map(|p| {
            let length = |kind: &str| p.stream(kind).and_then(|s| s.duration_seconds());
            match (length("video"), length("audio")) {
                (Some(v), Some(a)) => (v - a).abs(),
                _ => 0.0,
            }
        });
        2.0 * frame + streams.unwrap_or(0.0)
    }

    async fn probe(&self, path: &Path) -> Result<Probe, String> {
        probe(self.ffprobe, path, Some(self.confinement.clone()))
            .await
            .map_err(|e| format!("ffprobe cannot read it: {}", tool_error(e)))
    }

    /// Decode `path` (its start and end, or all of it) and fail on any error.
    async fn decode(&self, path: &Path, level: QcLevel) -> Result<(), String> {
        let base = |sseof: bool| {
            let mut argv: Vec<String> = [self.ffmpeg, "-nostdin", "-v", "error", "-xerror"]
                .map(String::from)
                .to_vec();
            if sseof {
                argv.extend(["-sseof".into(), format!("-{SAMPLE_SECONDS}")]);
            }
            argv.extend(nommer_media::argv::input_whitelist());
            argv.extend(["-i".into(), path.display().to_string()]);
            if level == QcLevel::Sampled && !sseof {
                argv.extend(["-t".into(), SAMPLE_SECONDS.into()]);
            }
            argv.extend([
                "-f".into(),
                "null".into(),
                nommer_media::argv::NULL_OUTPUT.into(),
            ]);
            argv
        };
        let runs = match level {
            QcLevel::Full => vec![base(false)],
            QcLevel::Sampled => vec![base(false), base(true)],
        };
        for argv in runs {
            let ran = ToolCommand::new(&argv)
                .confined(Some(self.confinement.clone()))
                .run(|_| {})
                .await;
            match ran {
                Ok(out) if out.stderr_tail.trim().is_empty() => {}
                Ok(out) => {
                    return Err(format!(
                        "decoding it reported: {}",
                        nommer_model::tail_chars(out.stderr_tail.trim(), 300)
                    ))
                }
                Err(e) => return Err(format!("it does not decode: {}", tool_error(e))),
            }
        }
        Ok(())
    }

    /// Check one output as its plan laid it out.
    pub async fn check(&self, output: &Output, layout: &Layout) -> Report {
        let mut report = Report::new(output.qc.level);
        let result = match &output.body {
            Body::File { passes } => {
                let file = layout.file.clone().unwrap_or_default();
                self.file(output, passes.last(), &file, &mut report).await
            }
            Body::Abr(abr) => self.abr(output, abr, layout, &mut report).await,
            Body::Thumbnail(thumbnail) => self.thumbnails(thumbnail, layout, &mut report).await,
            Body::Sprite(sprite) => self.sprite(sprite, layout, &mut report).await,
        };
        if let Err(why) = result {
            report.failure = Some(why);
        }
        report
    }

    /// A file: it probes, holds the streams asked for, lasts as long as it
    /// should, decodes; with `qc_metrics`, its PSNR and SSIM.
    pub async fn file(
        &self,
        output: &Output,
        pass: Option<&Pass>,
        file: &Path,
        report: &mut Report,
    ) -> Result<(), String> {
        let probe = self.probe(file).await?;
        if probe.streams.is_empty() {
            return Err("it has no streams".into());
        }
        report.checked("probe");
        report.set("streams", json!(probe.summary()));
        let empty = Pass::default();
        let pass = pass.unwrap_or(&empty);
        let pairs = &pass.outfile_options;
        let has = |base: &str| pairs.iter().any(|p| p.base() == base);
        if !has("map") {
            for (kind, stream, drop, present) in [
                ("video", "v", "vn", self.source.has_video),
                ("audio", "a", "an", self.source.has_audio),
            ] {
                let kept = present && !has(drop);
                let got = probe.stream(kind).is_some();
                // A stream is asked for when its encoder is named: a muxer
                // without that kind of stream (.wav, .gif) leaves it out.
                let named = encoder_for(pairs, stream, false).is_some();
                if kept && named && !got {
                    return Err(format!(
                        "it has no {kind} stream, but the source has one and the options name its encoder"
                    ));
                }
                if got && !kept {
                    return Err(format!("it has a {kind} stream it was not asked for"));
                }
            }
            report.checked("streams");
        }
        for (kind, stream) in [("video", "v"), ("audio", "a")] {
            let Some(encoder) = encoder_for(pairs, stream, true) else {
                continue;
            };
            let expected = match encoder.as_str() {
                "copy" => self
                    .source_probe
                    .and_then(|p| p.stream(kind))
                    .and_then(|s| s.codec_name.clone()),
                name => codec_of(name).map(str::to_string),
            };
            let (Some(expected), Some(found)) = (expected, probe.stream(kind)) else {
                continue;
            };
            let got = found.codec_name.clone().unwrap_or_default();
            if got != expected {
                return Err(format!(
                    "its {kind} is {got}, not the {expected} that {encoder} writes"
                ));
            }
            report.checked(format!("{kind} codec {got}"));
        }
        let (duration, source) = (probe.duration_seconds(), self.source.duration);
        if let (Some(duration), Some(source)) = (duration, source) {
            match expected_duration(source, pass) {
                Ok(expected) => self.duration_within(report, duration, expected, &probe)?,
                Err(why) => report.set("duration_not_checked", json!(why)),
            }
        }
        self.decode(file, output.qc.level).await?;
        report.checked(match output.qc.level {
            QcLevel::Full => "decode: every frame",
            QcLevel::Sampled => "decode: start and end",
        });
        if !output.qc.metrics.is_empty() && probe.stream("video").is_some() {
            self.metrics(output, file, report).await?;
        }
        Ok(())
    }

    fn duration_within(
        &self,
        report: &mut Report,
        duration: f64,
        expected: f64,
        output: &Probe,
    ) -> Result<(), String> {
        let tolerance = self.tolerance(Some(output));
        report.set("duration_s", json!(round3(duration)));
        report.set("expected_duration_s", json!(round3(expected)));
        report.set("tolerance_s", json!(round3(tolerance)));
        if (duration - expected).abs() > tolerance {
            return Err(format!(
                "it lasts {duration:.3} s, not the {expected:.3} s it should (within {tolerance:.3} s)"
            ));
        }
        report.checked("duration");
        Ok(())
    }

    /// PSNR and SSIM of the output's video against the source's, the
    /// output scaled to the source's size; VMAF where this FFmpeg has it.
    async fn metrics(
        &self,
        output: &Output,
        file: &Path,
        report: &mut Report,
    ) -> Result<(), String> {
        let (metrics, below) = self.compare(output, file).await?;
        report.set("metrics", metrics);
        if let Some(why) = below {
            return Err(why);
        }
        report.checked("metrics");
        Ok(())
    }

    /// The figures of `file`'s video against the source's, and why it
    /// fails `qc_min_psnr` if it does.
    async fn compare(
        &self,
        output: &Output,
        file: &Path,
    ) -> Result<(Value, Option<String>), String> {
        let (Some(width), Some(height)) = (self.source.width, self.source.height) else {
            return Ok((json!({"not_run": "the source's size is unknown"}), None));
        };
        let graph = format!(
            "[0:v]scale={width}:{height},setsar=1,format=yuv420p,split[o1][o2];[1:v]setsar=1,format=yuv420p,split[s1][s2];[o1][s1]psnr=stats_file=-[p];[o2][s2]ssim=stats_file=-[q]"
        );
        let mut argv: Vec<String> = [self.ffmpeg, "-nostdin", "-v", "error"]
            .map(String::from)
            .to_vec();
        argv.extend(nommer_media::argv::input_whitelist());
        argv.extend(["-i".into(), file.display().to_string()]);
        argv.extend(nommer_media::argv::input_whitelist());
        argv.extend(["-i".into(), self.source_path.display().to_string()]);
        argv.extend(["-filter_complex".into(), graph]);
        for label in ["[p]", "[q]"] {
            argv.extend([
                "-map".into(),
                label.into(),
                "-f".into(),
                "null".into(),
                nommer_media::argv::NULL_OUTPUT.into(),
            ]);
        }
        let (mut mse, mut ssim) = (Vec::new(), Vec::new());
        ToolCommand::new(&argv)
            .confined(Some(self.confinement.clone()))
            .run(|line| {
                for field in line.split_whitespace() {
                    if let Some(v) = field
                        .strip_prefix("mse_avg:")
                        .and_then(|v| v.parse::<f64>().ok())
                    {
                        mse.push(v);
                    }
                    if let Some(v) = field
                        .strip_prefix("All:")
                        .and_then(|v| v.parse::<f64>().ok())
                    {
                        ssim.push(v);
                    }
                }
            })
            .await
            .map_err(|e| format!("the PSNR/SSIM comparison failed: {}", tool_error(e)))?;
        let mut metrics = Map::new();
        let mut below = None;
        if output.qc.metrics.contains(&QcMetric::Psnr) && !mse.is_empty() {
            let mean = mse.iter().sum::<f64>() / mse.len() as f64;
            let psnr = if mean <= 0.0 {
                100.0
            } else {
                (10.0 * (255.0f64 * 255.0 / mean).log10()).min(100.0)
            };
            metrics.insert("psnr".into(), json!(round3(psnr)));
            if let Some(min) = output.qc.min_psnr.filter(|min| psnr < *min) {
                below = Some(format!(
                    "its PSNR is {psnr:.2} dB, under the {min} dB asked for"
                ));
            }
        }
        if output.qc.metrics.contains(&QcMetric::Ssim) && !ssim.is_empty() {
            metrics.insert(
                "ssim".into(),
                json!(round3(ssim.iter().sum::<f64>() / ssim.len() as f64)),
            );
        }
        if output.qc.metrics.contains(&QcMetric::Vmaf) {
            metrics.insert(
                "vmaf".into(),
                json!(crate::qc::vmaf_note(self.ffmpeg).await),
            );
        }
        metrics.insert("frames".into(), json!(mse.len().max(ssim.len())));
        Ok((Value::Object(metrics), below))
    }

    /// A named file of the output's directory, which must be there and hold bytes.
    fn present(&self, dir: &Path, name: &str) -> Result<PathBuf, String> {
        let plain = !name.is_empty()
            && !name.contains('/')
            && !name.starts_with('.')
            && !name.contains("://");
        if !plain {
            return Err(format!(
                "a manifest names \"{name}\", which is not a file of the ladder"
            ));
        }
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() > 0 => Ok(path),
            Ok(_) => Err(format!("{name} is empty")),
            Err(_) => Err(format!("{name}, which a manifest names, is missing")),
        }
    }

    /// A rendition read back whole: its init and every segment joined in
    /// order, every packet read (`-count_packets`), and any error ffprobe
    /// reports while it reads one is the rendition's failure; with `full`,
    /// every frame decoded too. One process per rendition, not per segment.
    async fn rendition(
        &self,
        name: &str,
        init: Option<&Path>,
        segments: &[PathBuf],
        level: QcLevel,
    ) -> Result<Probe, String> {
        let joined = self.scratch.join("qc-rendition");
        let _ = std::fs::remove_file(&joined);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&joined)
            .map_err(|e| format!("writing {}: {e}", joined.display()))?;
        for part in init
            .into_iter()
            .chain(segments.iter().map(PathBuf::as_path))
        {
            let mut input = std::fs::File::open(part)
                .map_err(|e| format!("reading {}: {e}", part.display()))?;
            std::io::copy(&mut input, &mut out)
                .map_err(|e| format!("joining {}: {e}", part.display()))?;
        }
        drop(out);
        let read =
            nommer_media::probe::read_whole(self.ffprobe, &joined, Some(self.confinement.clone()))
                .await;
        let result = match read {
            Ok((probe, errors)) if errors.trim().is_empty() => Ok(probe),
            Ok((_, errors)) => Err(format!(
                "rendition {name}: reading its segments reported: {}",
                nommer_model::tail_chars(errors.trim(), 300)
            )),
            Err(e) => Err(format!(
                "rendition {name}: ffprobe cannot read its segments: {}",
                tool_error(e)
            )),
        };
        let probe = result?;
        if probe.streams.is_empty() {
            return Err(format!("rendition {name} has no streams"));
        }
        if level == QcLevel::Full {
            self.decode(&joined, QcLevel::Full)
                .await
                .map_err(|e| format!("rendition {name}: {e}"))?;
        }
        Ok(probe)
    }

    /// A ladder: every manifest there, every file it names there and
    /// probing, each rendition its size and the source's length.
    async fn abr(
        &self,
        output: &Output,
        abr: &Abr,
        layout: &Layout,
        report: &mut Report,
    ) -> Result<(), String> {
        let dir = &layout.dir;
        let read = |name: &str| -> Result<String, String> {
            let path = self.present(dir, name)?;
            std::fs::read_to_string(&path).map_err(|e| format!("reading {name}: {e}"))
        };
        // (rendition name or "audio", init, segments, length)
        let mut tracks: Vec<(String, Option<String>, Vec<String>, f64)> = Vec::new();
        let fmp4 = abr.segment_type == SegmentType::Fmp4;
        if abr.manifests.contains(&Manifest::Dash) {
            let mpd = read(DASH_MANIFEST)?;
            let reps =
                manifests::dash_references(&mpd).map_err(|e| format!("{DASH_MANIFEST}: {e}"))?;
            let mut names: Vec<String> = layout.renditions.clone();
            if layout.audio {
                names.push("audio".into());
            }
            if reps.len() != names.len() {
                return Err(format!(
                    "{DASH_MANIFEST} has {} representations, not the {} made",
                    reps.len(),
                    names.len()
                ));
            }
            for (rep, name) in reps.into_iter().zip(names) {
                tracks.push((name, rep.init, rep.segments, rep.duration));
            }
            report.checked(format!("{DASH_MANIFEST}: every segment named is there"));
        }
        if abr.manifests.contains(&Manifest::Hls) {
            let master = read(HLS_MASTER)?;
            let playlists = manifests::hls_references(&master);
            let expected = layout.renditions.len() + usize::from(layout.audio);
            if playlists.len() != expected {
                return Err(format!(
                    "{HLS_MASTER} names {} playlists, not the {expected} made",
                    playlists.len()
                ));
            }
            let dash = abr.manifests.contains(&Manifest::Dash);
            for playlist in &playlists {
                let text = read(playlist)?;
                let mut names = manifests::hls_references(&text);
                let init = match fmp4 {
                    true if !names.is_empty() => Some(names.remove(0)),
                    _ => None,
                };
                if dash {
                    // The same segments as the MPD's: each is there; they probe below.
                    for name in init.iter().chain(names.iter()) {
                        self.present(dir, name)?;
                    }
                    continue;
                }
                // HLS alone names its playlists stream_NAME.m3u8.
                let name = playlist
                    .strip_prefix("stream_")
                    .and_then(|p| p.strip_suffix(".m3u8"))
                    .unwrap_or(playlist)
                    .to_string();
                tracks.push((name, init, names, manifests::hls_duration(&text)));
            }
            report.checked(format!(
                "{HLS_MASTER}: every playlist and segment named is there"
            ));
        }
        let expected = self.source.duration;
        let tolerance = self.tolerance(None);
        let mut renditions = Vec::new();
        let mut segments_probed = 0;
        for (name, init, segments, length) in &tracks {
            if segments.is_empty() {
                return Err(format!("rendition {name} has no segments"));
            }
            let init_path = match init {
                Some(init) => Some(self.present(dir, init)?),
                None => None,
            };
            let paths = segments
                .iter()
                .map(|segment| self.present(dir, segment))
                .collect::<Result<Vec<_>, _>>()?;
            let probe = self
                .rendition(name, init_path.as_deref(), &paths, output.qc.level)
                .await?;
            segments_probed += paths.len();
            // A cut segment still parses: what it holds is then shorter than
            // what the manifest says it holds.
            if let Some(read) = probe.duration_seconds() {
                if (read - length).abs() > tolerance.max(0.05) {
                    return Err(format!(
                        "rendition {name} reads back as {read:.3} s of the {length:.3} s its manifest lists"
                    ));
                }
            }
            let rendition = abr.renditions.iter().find(|r| &r.name == name);
            let mut figures =
                json!({"name": name, "segments": segments.len(), "duration_s": round3(*length)});
            match rendition {
                Some(rendition) => {
                    let video = probe
                        .stream("video")
                        .ok_or(format!("rendition {name} has no video"))?;
                    for (what, asked, got) in [
                        ("height", rendition.height, video.height),
                        ("width", rendition.width, video.width),
                    ] {
                        if let (Some(asked), Some(got)) = (asked, got) {
                            if asked != got {
                                return Err(format!(
                                    "rendition {name} is {got} pixels in {what}, not {asked}"
                                ));
                            }
                        }
                    }
                    figures["width"] = json!(video.width);
                    figures["height"] = json!(video.height);
                    figures["codec"] = json!(video.codec_name);
                }
                None => {
                    let audio = probe
                        .stream("audio")
                        .ok_or("the audio rendition has no audio")?;
                    figures["codec"] = json!(audio.codec_name);
                }
            }
            if let Some(expected) = expected {
                if (length - expected).abs() > tolerance.max(0.05) {
                    return Err(format!("rendition {name} lasts {length:.3} s, not the source's {expected:.3} s (within {tolerance:.3} s)"));
                }
            }
            let joined = self.scratch.join("qc-rendition");
            if rendition.is_some() && !output.qc.metrics.is_empty() {
                let (metrics, below) = self.compare(output, &joined).await?;
                figures["metrics"] = metrics;
                if let Some(why) = below {
                    return Err(format!("rendition {name}: {why}"));
                }
            }
            let _ = std::fs::remove_file(&joined);
            renditions.push(figures);
        }
        report.set("renditions", Value::Array(renditions));
        report.set("segments_probed", json!(segments_probed));
        if !layout.skipped.is_empty() {
            report.set("skipped", json!(layout.skipped));
        }
        report.checked(match output.qc.level {
            QcLevel::Full => {
                "each rendition reads back whole, as long as its manifest says, and decodes"
            }
            QcLevel::Sampled => "each rendition reads back whole, as long as its manifest says",
        });
        Ok(())
    }

    async fn image(&self, path: &Path, width: Option<u32>) -> Result<(u32, u32), String> {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let probe = self.probe(path).await.map_err(|e| format!("{name}: {e}"))?;
        let video = probe
            .stream("video")
            .ok_or(format!("{name} holds no image"))?;
        let (w, h) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
        if let Some(asked) = width {
            if asked != w {
                return Err(format!("{name} is {w} pixels wide, not {asked}"));
            }
        }
        Ok((w, h))
    }

    async fn thumbnails(
        &self,
        thumbnail: &Thumbnail,
        layout: &Layout,
        report: &mut Report,
    ) -> Result<(), String> {
        let ext = thumbnail.format.as_str();
        let names: Vec<String> = match &thumbnail.times {
            Times::At(times) => (0..times.len())
                .map(|n| format!("thumb_{n:04}.{ext}"))
                .collect(),
            Times::Every(every) => {
                let found = numbered(&layout.dir, "thumb_", ext, 4);
                let expected = self.source.duration.map(|d| (d / every).ceil() as usize);
                if let Some(expected) = expected {
                    if found.len() + 1 < expected || found.is_empty() {
                        return Err(format!(
                            "{} thumbnails were written, not the {expected} of one every {every} s",
                            found.len()
                        ));
                    }
                }
                found
            }
        };
        for name in &names {
            let path = self.present(&layout.dir, name)?;
            self.image(&path, thumbnail.width).await?;
        }
        report.set("images", json!(names.len()));
        report.checked("every image probes at its width");
        Ok(())
    }

    async fn sprite(
        &self,
        sprite: &Sprite,
        layout: &Layout,
        report: &mut Report,
    ) -> Result<(), String> {
        let ext = sprite.format.as_str();
        let sheets = numbered(&layout.dir, "sprite_", ext, 0);
        if sheets.is_empty() {
            return Err("no sprite sheet was written".into());
        }
        let mut sizes = Vec::new();
        for name in &sheets {
            let path = self.present(&layout.dir, name)?;
            sizes.push(
                self.image(&path, Some(sprite.width * sprite.columns))
                    .await?,
            );
        }
        let vtt = std::fs::read_to_string(self.present(&layout.dir, SPRITE_VTT)?)
            .map_err(|e| format!("reading {SPRITE_VTT}: {e}"))?;
        let mut cues = 0;
        for line in vtt.lines() {
            let Some((sheet, xywh)) = line.split_once("#xywh=") else {
                continue;
            };
            let index = sheets
                .iter()
                .position(|s| s == sheet)
                .ok_or(format!("{SPRITE_VTT} names {sheet}, which was not written"))?;
            let v: Vec<u32> = xywh.split(',').filter_map(|n| n.parse().ok()).collect();
            let (w, h) = sizes[index];
            if v.len() != 4 || v[0] + v[2] > w || v[1] + v[3] > h {
                return Err(format!(
                    "{SPRITE_VTT} cue {line} lies outside {sheet} ({w}x{h})"
                ));
            }
            cues += 1;
        }
        if cues == 0 {
            return Err(format!("{SPRITE_VTT} has no cues"));
        }
        report.set("sheets", json!(sheets.len()));
        report.set("cues", json!(cues));
        report.checked("every sheet probes; every cue lies inside its sheet");
        Ok(())
    }
}

/// Write a file of the worker's own in a directory the tools could write:
/// whatever stands at the name goes first, and the file is made new (never
/// opened through a link someone left there).
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The files `PREFIX<n>.EXT` of `dir` (`n` zero-padded to `width`), in order.
pub fn numbered(dir: &Path, prefix: &str, ext: &str, width: usize) -> Vec<String> {
    (0..)
        .map(|n| format!("{prefix}{n:0width$}.{ext}"))
        .take_while(|name| dir.join(name).is_file())
        .collect()
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn tool_error(e: ToolError) -> String {
    match e {
        ToolError::Failed { stderr_tail, .. } => nommer_model::tail_chars(stderr_tail.trim(), 300),
        other => other.to_string(),
    }
}

/// Whether this worker's FFmpeg can compute VMAF: Debian's has no libvmaf.
pub async fn vmaf_note(ffmpeg: &str) -> String {
    let argv: Vec<String> = [ffmpeg, "-hide_banner", "-h", "filter=libvmaf"]
        .map(String::from)
        .to_vec();
    let mut text = String::new();
    let _ = ToolCommand::new(&argv)
        .run(|line| {
            text.push_str(line);
            text.push('\n');
        })
        .await;
    match text.contains("libvmaf") && !text.contains("Unknown filter") {
        true => "available on this worker, not run: ask for psnr and ssim".into(),
        false => "not available: this worker's FFmpeg is built without libvmaf".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nommer_model::options::OptValue;

    fn pass(pairs: &[(&str, OptValue)]) -> Pass {
        Pass {
            outfile_options: pairs
                .iter()
                .map(|(f, v)| OptionPair::new(f, v.clone()))
                .collect(),
            ..Pass::default()
        }
    }

    #[test]
    fn trims_set_the_expected_length() {
        let s = |t: &str| OptValue::Str(t.into());
        assert_eq!(expected_duration(10.0, &pass(&[])).unwrap(), 10.0);
        assert_eq!(
            expected_duration(10.0, &pass(&[("t", s("4"))])).unwrap(),
            4.0
        );
        assert_eq!(
            expected_duration(10.0, &pass(&[("ss", s("00:00:02.5"))])).unwrap(),
            7.5
        );
        assert_eq!(
            expected_duration(10.0, &pass(&[("ss", OptValue::Int(2)), ("to", s("6"))])).unwrap(),
            4.0
        );
        assert_eq!(
            expected_duration(10.0, &pass(&[("t", s("500ms"))])).unwrap(),
            0.5
        );
        let mut trimmed_input = pass(&[("t", s("3"))]);
        trimmed_input.infile_options =
            vec![OptionPair::new("ss", s("8")), OptionPair::new("t", s("5"))];
        assert_eq!(expected_duration(10.0, &trimmed_input).unwrap(), 2.0);
        assert!(expected_duration(10.0, &pass(&[("vf", s("setpts=0.5*PTS"))])).is_err());
        assert!(expected_duration(10.0, &pass(&[("vframes", OptValue::Int(3))])).is_err());
        assert!(expected_duration(10.0, &pass(&[("vf", s("scale=640:-2"))])).is_ok());
    }

    #[test]
    fn encoders_name_their_codecs() {
        let p = pass(&[
            ("c:v", OptValue::Str("libx264".into())),
            ("acodec", OptValue::Str("libopus".into())),
        ]);
        assert_eq!(
            encoder_for(&p.outfile_options, "v", true).as_deref(),
            Some("libx264")
        );
        assert_eq!(
            encoder_for(&p.outfile_options, "a", true).as_deref(),
            Some("libopus")
        );
        assert_eq!(codec_of("libsvtav1"), Some("av1"));
    }
}
