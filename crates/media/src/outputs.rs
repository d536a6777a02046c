//! The command line of a job with `outputs`: one ffmpeg, one decode of the
//! source, every output written beside the others into its own directory of
//! the scratch.
//!
//! ```text
//! ffmpeg -y -nostdin -progress pipe:1 -nostats -protocol_whitelist ... -i IN
//!        [file output: its last pass's options, -f FMT, -passlogfile, FILE]
//!        [abr: -map 0:v:0 per rendition, -filter:v:N scale, per-stream options,
//!              keyframes forced on the segment grid, the hls or dash muxer]
//!        [thumbnail: -map 0:v:0, -ss T -frames:v 1 (or a select), IMAGE]
//!        [sprite: -map 0:v:0, select, scale, tile, SHEETS]
//! ```
//!
//! The first pass of a two-pass file output runs before, on its own. Every
//! file name, muxer and muxer option here is the nommer's; a job's options
//! reach only the stream and output options the model's check let through.

use nommer_model::kinds::{Manifest, SegmentType};
use nommer_model::options::{OptValue, OptionPair, Pass};
use nommer_model::outputs::{Abr, Body, Output, Sprite, Thumbnail, Times};
use std::path::{Path, PathBuf};

/// The HLS master playlist's name, in every ladder that has HLS.
pub const HLS_MASTER: &str = "master.m3u8";
/// The DASH manifest's name.
pub const DASH_MANIFEST: &str = "manifest.mpd";
/// A sprite output's WebVTT track.
pub const SPRITE_VTT: &str = "sprite.vtt";

/// What the source holds, as ffprobe read it before the plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceInfo {
    pub has_video: bool,
    pub has_audio: bool,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration: Option<f64>,
}

/// Where one output is written in the scratch, and what the plan decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The output's own directory.
    pub dir: PathBuf,
    /// A file output's file.
    pub file: Option<PathBuf>,
    /// An abr output's renditions, in stream order.
    pub renditions: Vec<String>,
    /// Renditions left out because they are larger than the source.
    pub skipped: Vec<String>,
    /// Whether the ladder carries an audio rendition.
    pub audio: bool,
    /// A thumbnail output's times, as written (clamped into the source).
    pub times: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputsPlan {
    /// Each two-pass file output's first pass, run before `argv`.
    pub first_passes: Vec<Vec<String>>,
    pub argv: Vec<String>,
    pub layouts: Vec<Layout>,
}

fn push_pairs(argv: &mut Vec<String>, pairs: &[OptionPair]) {
    for pair in pairs {
        argv.push(format!("-{}", pair.flag));
        if let Some(value) = pair.value.render() {
            argv.push(value);
        }
    }
}

/// Per-stream options given to one output stream (`v:2`, `a:0`).
fn push_stream_pairs(argv: &mut Vec<String>, pairs: &[OptionPair], stream: &str) {
    for pair in pairs {
        argv.push(format!("-{}:{stream}", pair.base()));
        if let Some(value) = pair.value.render() {
            argv.push(value);
        }
    }
}

fn has(pairs: &[OptionPair], base: &str) -> bool {
    pairs.iter().any(|p| p.base() == base)
}

fn head(ffmpeg: &str, input: &Path, progress: bool) -> Vec<String> {
    let mut argv = vec![ffmpeg.to_string(), "-y".into(), "-nostdin".into()];
    if progress {
        argv.extend(["-progress".into(), "pipe:1".into()]);
    }
    argv.push("-nostats".into());
    argv.extend(crate::argv::input_whitelist());
    argv.extend(["-i".into(), input.display().to_string()]);
    argv
}

/// The plan for `outputs` from `input`, each output in `scratch/out/N/`.
/// `formats` holds each file output's muxer when its passes name none.
pub fn plan(
    ffmpeg: &str,
    input: &Path,
    scratch: &Path,
    outputs: &[Output],
    formats: &[Option<String>],
    source: &SourceInfo,
) -> OutputsPlan {
    let mut argv = head(ffmpeg, input, true);
    let mut first_passes = Vec::new();
    let mut layouts = Vec::new();
    for (index, output) in outputs.iter().enumerate() {
        let dir = scratch.join("out").join(index.to_string());
        let mut layout = Layout {
            dir: dir.clone(),
            file: None,
            renditions: Vec::new(),
            skipped: Vec::new(),
            audio: false,
            times: Vec::new(),
        };
        match &output.body {
            Body::File { passes } => {
                let format = formats.get(index).cloned().flatten();
                let file = dir.join(file_name(output, format.as_deref()));
                let passlog = scratch.join(format!("pass-{index}"));
                if let [first, _] = passes.as_slice() {
                    let mut pre = head(ffmpeg, input, true);
                    push_file_pass(&mut pre, first, false, format.as_deref(), &passlog);
                    pre.push(crate::argv::NULL_OUTPUT.into());
                    first_passes.push(pre);
                }
                let last = passes.last().expect("a file output has a pass");
                push_file_pass(&mut argv, last, true, format.as_deref(), &passlog);
                argv.push(file.display().to_string());
                layout.file = Some(file);
            }
            Body::Abr(abr) => push_abr(&mut argv, abr, &dir, source, &mut layout),
            Body::Thumbnail(thumbnail) => {
                push_thumbnails(&mut argv, thumbnail, &dir, source, &mut layout)
            }
            Body::Sprite(sprite) => push_sprite(&mut argv, sprite, &dir),
        }
        layouts.push(layout);
    }
    OutputsPlan {
        first_passes,
        argv,
        layouts,
    }
}

/// A file output's file name in its directory: `output.EXT` from its
/// destination's name.
fn file_name(output: &Output, format: Option<&str>) -> String {
    let target = output.resolve("");
    let name = target.rsplit('/').next().unwrap_or_default();
    match name.rsplit_once('.') {
        Some((_, ext)) if !ext.is_empty() && ext.chars().all(|c| c.is_ascii_alphanumeric()) => {
            format!("output.{}", ext.to_ascii_lowercase())
        }
        _ => format!("output.{}", format.unwrap_or("bin")),
    }
}

fn push_file_pass(
    argv: &mut Vec<String>,
    pass: &Pass,
    last: bool,
    format: Option<&str>,
    passlog: &Path,
) {
    let mut options = pass.outfile_options.clone();
    if pass.move_atom_to_front && last {
        match options.iter_mut().find(|p| p.base() == "movflags") {
            Some(pair) => {
                let current = pair.value.render().unwrap_or_default();
                pair.value = OptValue::Str(format!("{current}+faststart"));
            }
            None => options.push(OptionPair::new(
                "movflags",
                OptValue::Str("+faststart".into()),
            )),
        }
    }
    push_pairs(argv, &options);
    if pass.output_format().is_none() {
        if let Some(format) = format {
            argv.extend(["-f".into(), format.into()]);
        }
    }
    argv.extend(["-passlogfile".into(), passlog.display().to_string()]);
}

/// The renditions a ladder makes from this source: all with `upscale`;
/// otherwise those no larger than the source, and at least the smallest.
fn kept_renditions<'a>(
    abr: &'a Abr,
    source: &SourceInfo,
) -> (Vec<&'a nommer_model::outputs::Rendition>, Vec<String>) {
    if abr.upscale {
        return (abr.renditions.iter().collect(), Vec::new());
    }
    let within = |asked: Option<u32>, has: Option<u32>| match (asked, has) {
        (Some(asked), Some(has)) => asked <= has,
        _ => true,
    };
    let fits = |r: &&nommer_model::outputs::Rendition| {
        within(r.height, source.height) && within(r.width, source.width)
    };
    let (kept, skipped): (Vec<_>, Vec<_>) = abr.renditions.iter().partition(fits);
    if !kept.is_empty() {
        return (kept, skipped.iter().map(|r| r.name.clone()).collect());
    }
    let smallest = abr
        .renditions
        .iter()
        .min_by_key(|r| (r.height.unwrap_or(u32::MAX), r.width.unwrap_or(u32::MAX)))
        .expect("a ladder has a rendition");
    let skipped = abr
        .renditions
        .iter()
        .filter(|r| r.name != smallest.name)
        .map(|r| r.name.clone())
        .collect();
    (vec![smallest], skipped)
}

fn scale_filter(width: Option<u32>, height: Option<u32>) -> String {
    match (width, height) {
        (Some(w), Some(h)) => format!("scale={w}:{h}"),
        (Some(w), None) => format!("scale={w}:-2"),
        (None, Some(h)) => format!("scale=-2:{h}"),
        (None, None) => "null".into(),
    }
}

fn push_abr(
    argv: &mut Vec<String>,
    abr: &Abr,
    dir: &Path,
    source: &SourceInfo,
    layout: &mut Layout,
) {
    let (kept, skipped) = kept_renditions(abr, source);
    let audio = abr.audio.as_ref().filter(|_| source.has_audio);
    for _ in &kept {
        argv.extend(["-map".into(), "0:v:0".into()]);
    }
    if audio.is_some() {
        argv.extend(["-map".into(), "0:a:0".into()]);
    }
    let segment = abr.segment_seconds;
    for (index, rendition) in kept.iter().enumerate() {
        let stream = format!("v:{index}");
        // scale keeps the display aspect (its SAR absorbs the rounding of an
        // even width), which DASH needs to be the same in an adaptation set.
        let mut filter = scale_filter(rendition.width, rendition.height);
        if !has(&rendition.options, "pix_fmt") {
            // Players decode 4:2:0; a 4:4:4 or RGB source would not play.
            filter.push_str(",format=yuv420p");
        }
        argv.extend([format!("-filter:{stream}"), filter]);
        if !has(&rendition.options, "c") && !has(&rendition.options, "codec") {
            argv.extend([format!("-c:{stream}"), "libx264".into()]);
        }
        if let Some(bitrate) = &rendition.video_bitrate {
            argv.extend([format!("-b:{stream}"), bitrate.clone()]);
        }
        push_stream_pairs(argv, &rendition.options, &stream);
        // Every rendition's keyframes on the same grid, and only there: the
        // segments line up and players switch cleanly.
        argv.extend([
            format!("-force_key_frames:{stream}"),
            format!("expr:gte(t,n_forced*{segment})"),
            format!("-sc_threshold:{stream}"),
            "0".into(),
        ]);
    }
    if let Some(options) = audio {
        if !has(options, "c") && !has(options, "codec") {
            argv.extend(["-c:a:0".into(), "aac".into()]);
        }
        push_stream_pairs(argv, options, "a:0");
    }
    let d = |name: &str| dir.join(name).display().to_string();
    if abr.manifests.contains(&Manifest::Dash) {
        let sets = match audio {
            Some(_) => "id=0,streams=v id=1,streams=a",
            None => "id=0,streams=v",
        };
        argv.extend(
            [
                "-f",
                "dash",
                "-seg_duration",
                &segment.to_string(),
                "-use_template",
                "1",
                "-use_timeline",
                "1",
                "-adaptation_sets",
                sets,
                "-init_seg_name",
                "init_$RepresentationID$.m4s",
                "-media_seg_name",
                "seg_$RepresentationID$_$Number%05d$.m4s",
            ]
            .map(String::from),
        );
        if abr.manifests.contains(&Manifest::Hls) {
            argv.extend(["-hls_playlist".into(), "1".into()]);
        }
        argv.push(d(DASH_MANIFEST));
    } else {
        let ext = match abr.segment_type {
            SegmentType::Fmp4 => "m4s",
            SegmentType::Ts => "ts",
        };
        let mut map: Vec<String> = kept
            .iter()
            .enumerate()
            .map(|(i, r)| match audio {
                Some(_) => format!("v:{i},agroup:aud,name:{}", r.name),
                None => format!("v:{i},name:{}", r.name),
            })
            .collect();
        if audio.is_some() {
            map.push("a:0,agroup:aud,name:audio,default:yes".into());
        }
        argv.extend(
            [
                "-f",
                "hls",
                "-hls_time",
                &segment.to_string(),
                "-hls_playlist_type",
                "vod",
            ]
            .map(String::from),
        );
        argv.extend([
            "-hls_segment_type".into(),
            match abr.segment_type {
                SegmentType::Fmp4 => "fmp4".into(),
                SegmentType::Ts => "mpegts".into(),
            },
        ]);
        if abr.segment_type == SegmentType::Fmp4 {
            argv.extend(["-hls_fmp4_init_filename".into(), "init.mp4".into()]);
        }
        argv.extend([
            "-hls_segment_filename".into(),
            d(&format!("seg_%v_%05d.{ext}")),
            "-master_pl_name".into(),
            HLS_MASTER.into(),
            "-var_stream_map".into(),
            map.join(" "),
            d("stream_%v.m3u8"),
        ]);
    }
    layout.renditions = kept.iter().map(|r| r.name.clone()).collect();
    layout.skipped = skipped;
    layout.audio = audio.is_some();
}

/// A filter that keeps the first frame of every `every`-second stretch.
fn every_filter(every: f64) -> String {
    format!(
        "select='isnan(prev_selected_t)+gte(floor(t/{every}),floor(prev_selected_t/{every})+1)'"
    )
}

fn image_options(argv: &mut Vec<String>, format: nommer_model::kinds::ImageFormat) {
    argv.extend(["-c:v".into(), format.encoder().into()]);
    if format == nommer_model::kinds::ImageFormat::Jpg {
        argv.extend(["-q:v".into(), "3".into()]);
    }
}

fn push_thumbnails(
    argv: &mut Vec<String>,
    thumbnail: &Thumbnail,
    dir: &Path,
    source: &SourceInfo,
    layout: &mut Layout,
) {
    let ext = thumbnail.format.as_str();
    let scale = thumbnail.width.map(|w| format!("scale={w}:-2"));
    match &thumbnail.times {
        Times::At(times) => {
            for (n, asked) in times.iter().enumerate() {
                // A time past the end shows the last moment instead of nothing.
                let at = match source.duration {
                    Some(duration) if *asked >= duration => (duration - 0.5).max(0.0),
                    _ => *asked,
                };
                argv.extend([
                    "-map".into(),
                    "0:v:0".into(),
                    "-ss".into(),
                    format!("{at:.3}"),
                ]);
                argv.extend(["-frames:v".into(), "1".into()]);
                if let Some(scale) = &scale {
                    argv.extend(["-vf".into(), scale.clone()]);
                }
                image_options(argv, thumbnail.format);
                argv.extend(["-update".into(), "1".into()]);
                argv.push(
                    dir.join(format!("thumb_{n:04}.{ext}"))
                        .display()
                        .to_string(),
                );
                layout.times.push(at);
            }
        }
        Times::Every(every) => {
            let mut filter = every_filter(*every);
            if let Some(scale) = &scale {
                filter = format!("{filter},{scale}");
            }
            argv.extend(["-map".into(), "0:v:0".into(), "-vf".into(), filter]);
            argv.extend(["-fps_mode".into(), "vfr".into()]);
            image_options(argv, thumbnail.format);
            argv.extend(["-start_number".into(), "0".into()]);
            argv.push(dir.join(format!("thumb_%04d.{ext}")).display().to_string());
        }
    }
}

fn push_sprite(argv: &mut Vec<String>, sprite: &Sprite, dir: &Path) {
    let filter = format!(
        "{},scale={}:-2,tile={}x{}",
        every_filter(sprite.every_seconds),
        sprite.width,
        sprite.columns,
        sprite.rows
    );
    argv.extend(["-map".into(), "0:v:0".into(), "-vf".into(), filter]);
    argv.extend(["-fps_mode".into(), "vfr".into()]);
    image_options(argv, sprite.format);
    argv.extend(["-start_number".into(), "0".into()]);
    argv.push(
        dir.join(format!("sprite_%d.{}", sprite.format.as_str()))
            .display()
            .to_string(),
    );
}

/// A sprite's WebVTT track: one cue per tile, in order, naming its sheet
/// and its place on it (`sprite_N.jpg#xywh=X,Y,W,H`).
pub fn sprite_vtt(sprite: &Sprite, tile: (u32, u32), tiles: u32, duration: f64) -> String {
    let per_sheet = sprite.columns * sprite.rows;
    let (w, h) = tile;
    let mut vtt = String::from("WEBVTT\n");
    for i in 0..tiles {
        let start = i as f64 * sprite.every_seconds;
        let end = ((i + 1) as f64 * sprite.every_seconds).min(duration.max(start));
        let (sheet, place) = (i / per_sheet, i % per_sheet);
        let (x, y) = ((place % sprite.columns) * w, (place / sprite.columns) * h);
        vtt.push_str(&format!(
            "\n{} --> {}\nsprite_{sheet}.{}#xywh={x},{y},{w},{h}\n",
            vtt_time(start),
            vtt_time(end),
            sprite.format.as_str()
        ));
    }
    vtt
}

fn vtt_time(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nommer_model::options::Allowlist;
    use nommer_model::outputs::parse_outputs;
    use serde_json::json;

    fn outputs(value: serde_json::Value) -> Vec<Output> {
        parse_outputs(&value, None, Allowlist::builtin()).unwrap()
    }

    fn source(height: u32) -> SourceInfo {
        SourceInfo {
            has_video: true,
            has_audio: true,
            width: Some(height * 16 / 9),
            height: Some(height),
            duration: Some(10.0),
        }
    }

    fn ladder(manifests: serde_json::Value) -> Vec<Output> {
        outputs(
            json!([{"kind": "abr", "dest_path": "s3://o/s/", "manifests": manifests, "segment_seconds": 4,
            "renditions": [{"name": "720p", "height": 720, "video_bitrate": "3M", "options": [["c:v", "libx264"], ["preset", "veryfast"]]},
                           {"name": "360p", "height": 360, "options": [["crf", 23]]}],
            "audio": {"options": [["b:a", "128k"]]}}]),
        )
    }

    /// The plan of `outputs` from `/s/in.mov` into the scratch `/s`.
    fn plan_for(outputs: &[Output], source: &SourceInfo) -> OutputsPlan {
        plan(
            "ffmpeg",
            Path::new("/s/in.mov"),
            Path::new("/s"),
            outputs,
            &[None],
            source,
        )
    }

    fn window<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
        argv.iter()
            .enumerate()
            .filter(|(_, a)| a.as_str() == flag)
            .map(|(i, _)| argv[i + 1].as_str())
            .collect()
    }

    #[test]
    fn a_ladder_decodes_once_and_gives_each_rendition_its_stream() {
        let plan = plan_for(&ladder(json!(["hls"])), &source(1080));
        let argv = &plan.argv;
        assert_eq!(argv.iter().filter(|a| *a == "-i").count(), 1);
        assert_eq!(window(argv, "-map"), ["0:v:0", "0:v:0", "0:a:0"]);
        assert_eq!(window(argv, "-filter:v:0"), ["scale=-2:720,format=yuv420p"]);
        assert_eq!(window(argv, "-preset:v:0"), ["veryfast"]);
        assert_eq!(window(argv, "-crf:v:1"), ["23"]);
        assert_eq!(window(argv, "-c:v:1"), ["libx264"]);
        assert_eq!(window(argv, "-b:a:0"), ["128k"]);
        assert_eq!(
            window(argv, "-force_key_frames:v:1"),
            ["expr:gte(t,n_forced*4)"]
        );
        assert_eq!(window(argv, "-var_stream_map"), ["v:0,agroup:aud,name:720p v:1,agroup:aud,name:360p a:0,agroup:aud,name:audio,default:yes"]);
        assert_eq!(
            window(argv, "-hls_segment_filename"),
            ["/s/out/0/seg_%v_%05d.m4s"]
        );
        assert_eq!(argv.last().unwrap(), "/s/out/0/stream_%v.m3u8");
        assert_eq!(plan.layouts[0].renditions, ["720p", "360p"]);
    }

    #[test]
    fn hls_and_dash_share_one_set_of_segments() {
        let plan = plan_for(&ladder(json!(["hls", "dash"])), &source(1080));
        assert_eq!(window(&plan.argv, "-f"), ["dash"]);
        assert_eq!(window(&plan.argv, "-hls_playlist"), ["1"]);
        assert_eq!(plan.argv.last().unwrap(), "/s/out/0/manifest.mpd");
    }

    #[test]
    fn renditions_larger_than_the_source_are_left_out_unless_asked() {
        let plan = plan_for(&ladder(json!(["hls"])), &source(360));
        assert_eq!(plan.layouts[0].renditions, ["360p"]);
        assert_eq!(plan.layouts[0].skipped, ["720p"]);
        let plan2 = plan_for(&ladder(json!(["hls"])), &source(240));
        assert_eq!(plan2.layouts[0].renditions, ["360p"], "the smallest stays");
    }

    #[test]
    fn thumbnails_sprites_and_files_share_the_invocation() {
        let list = outputs(json!([
            {"kind": "file", "dest_path": "file:///o/a.mp4", "options": [{"outfile_options": [["c:v", "libx264"], ["pass", 1]]}, {"outfile_options": [["c:v", "libx264"], ["pass", 2]], "move_atom_to_front": true}]},
            {"kind": "thumbnail", "dest_path": "file:///o/t/", "at_seconds": [1, 30], "width": 320},
            {"kind": "sprite", "dest_path": "file:///o/s/", "every_seconds": 2, "columns": 3, "rows": 2, "width": 160}
        ]));
        let plan = plan(
            "ffmpeg",
            Path::new("/s/in.mov"),
            Path::new("/s"),
            &list,
            &[Some("mp4".into()), None, None],
            &source(360),
        );
        assert_eq!(plan.first_passes.len(), 1);
        assert_eq!(plan.first_passes[0].last().unwrap(), "/dev/null");
        assert_eq!(window(&plan.first_passes[0], "-passlogfile"), ["/s/pass-0"]);
        assert_eq!(window(&plan.argv, "-passlogfile"), ["/s/pass-0"]);
        assert_eq!(window(&plan.argv, "-movflags"), ["+faststart"]);
        assert!(plan.argv.contains(&"/s/out/0/output.mp4".to_string()));
        assert_eq!(
            window(&plan.argv, "-ss"),
            ["1.000", "9.500"],
            "past the end: the last moment"
        );
        assert!(plan.argv.contains(&"/s/out/2/sprite_%d.jpg".to_string()));
        assert!(window(&plan.argv, "-vf")
            .iter()
            .any(|f| f.ends_with("scale=160:-2,tile=3x2")));
    }

    #[test]
    fn the_vtt_maps_each_tile_to_its_sheet() {
        let Body::Sprite(sprite) = outputs(json!([{"kind": "sprite", "dest_path": "file:///o/s/", "every_seconds": 2, "columns": 2, "rows": 1, "width": 160}])).remove(0).body else { panic!() };
        let vtt = sprite_vtt(&sprite, (160, 90), 3, 5.0);
        assert!(vtt.starts_with("WEBVTT\n"));
        assert!(vtt.contains("00:00:00.000 --> 00:00:02.000\nsprite_0.jpg#xywh=0,0,160,90"));
        assert!(vtt.contains("00:00:02.000 --> 00:00:04.000\nsprite_0.jpg#xywh=160,0,160,90"));
        assert!(vtt.contains("00:00:04.000 --> 00:00:05.000\nsprite_1.jpg#xywh=0,0,160,90"));
    }
}
