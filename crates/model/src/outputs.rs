//! A job's outputs (`outputs` on a v1 job): what one decode of the source
//! becomes. Files, adaptive ladders, thumbnails and sprite sheets, each
//! checked here at submit and again by the worker before it runs, and given
//! back in canonical form: what is stored, leased and run.
//!
//! File names inside an output (segments, playlists, tiles, the VTT track)
//! are the nommer's: nothing here lets a job name one, and the options a
//! rendition may carry are per-stream encoder options only.

use crate::error::{CodedError, ErrorCode};
use crate::kinds::{ImageFormat, Manifest, OutputKind, QcLevel, QcMetric, SegmentType};
use crate::options::{self, allow::Verdict, Allowlist, OptionPair, Pass};
use crate::uri::{Location, MediaUri};
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub const MAX_OUTPUTS: usize = 16;
pub const MAX_RENDITIONS: usize = 8;
pub const MAX_THUMBNAILS: usize = 100;
/// The name a directory output's target is probed with: prefixes are not
/// URIs of their own (a URI never ends in `/`).
const PROBE: &str = "probe";

/// Flags a rendition or the ladder's audio may not carry: the nommer sets
/// them from the output spec (maps, filters, keyframes, muxer, file names).
const SET_BY_NOMMER: &[&str] = &[
    "f",
    "map",
    "vf",
    "af",
    "filter",
    "filter_script",
    "filter_complex",
    "lavfi",
    "s",
    "an",
    "vn",
    "sn",
    "dn",
    "force_key_frames",
    "sc_threshold",
    "pass",
    "passlogfile",
    "ss",
    "t",
    "to",
    "frames",
    "vframes",
    "aframes",
];

/// Where an output is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// An absolute URI without credentials: a file's, or a prefix ending in
    /// `/` for the kinds that write many files.
    Uri(String),
    /// Relative to the job's `dest_path`, which is then a prefix (a
    /// preset's outputs, or a job that names one prefix for all).
    Path(String),
}

/// The quality check an output asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Qc {
    pub level: QcLevel,
    pub metrics: Vec<QcMetric>,
    /// Fail the output when its PSNR against the source is lower.
    pub min_psnr: Option<f64>,
}

// The kinds macro derives a fixed set of traits; the default is said here.
#[allow(clippy::derivable_impls)]
impl Default for QcLevel {
    fn default() -> Self {
        QcLevel::Sampled
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub target: Target,
    pub qc: Qc,
    pub body: Body,
    /// Test builds only: the worker breaks this output after ffmpeg wrote
    /// it (`truncate`, `streams`, `segment`), so tests see the quality gate
    /// catch each fault.
    #[cfg(feature = "test-nommers")]
    pub test_break: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// One file from one or two passes (their `outfile_options` only: the
    /// input is shared with the job's other outputs).
    File {
        passes: Vec<Pass>,
    },
    Abr(Abr),
    Thumbnail(Thumbnail),
    Sprite(Sprite),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Abr {
    pub manifests: Vec<Manifest>,
    pub segment_seconds: u32,
    pub segment_type: SegmentType,
    pub renditions: Vec<Rendition>,
    /// The audio rendition's options; None writes a ladder without audio.
    pub audio: Option<Vec<OptionPair>>,
    /// Whether renditions larger than the source are made; when not, they
    /// are left out (the smallest always stays) and the result says so.
    pub upscale: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    pub name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub video_bitrate: Option<String>,
    /// Per-stream video options, canonical, without stream specifiers: the
    /// nommer gives each its rendition's stream.
    pub options: Vec<OptionPair>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Times {
    At(Vec<f64>),
    Every(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    pub times: Times,
    pub width: Option<u32>,
    pub format: ImageFormat,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sprite {
    pub every_seconds: f64,
    pub columns: u32,
    pub rows: u32,
    pub width: u32,
    pub format: ImageFormat,
}

impl Output {
    pub fn kind(&self) -> OutputKind {
        match self.body {
            Body::File { .. } => OutputKind::File,
            Body::Abr(_) => OutputKind::Abr,
            Body::Thumbnail(_) => OutputKind::Thumbnail,
            Body::Sprite(_) => OutputKind::Sprite,
        }
    }

    /// Whether the output writes many files under a prefix.
    pub fn is_directory(&self) -> bool {
        self.kind().is_directory()
    }

    /// The output's URI (a prefix ending in `/` for directory kinds), with
    /// the job's destination when the target is relative. It may carry the
    /// job's credentials: for the worker's storage calls only.
    pub fn resolve(&self, job_dest: &str) -> String {
        match &self.target {
            Target::Uri(uri) => uri.clone(),
            Target::Path(path) => format!("{job_dest}{path}"),
        }
    }

    /// The canonical JSON form, which [`parse_outputs`] reads back unchanged.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("kind".into(), json!(self.kind().as_str()));
        match &self.target {
            Target::Uri(uri) => object.insert("dest_path".into(), json!(uri)),
            Target::Path(path) => object.insert("path".into(), json!(path)),
        };
        object.insert("qc".into(), json!(self.qc.level.as_str()));
        if !self.qc.metrics.is_empty() {
            let names: Vec<&str> = self.qc.metrics.iter().map(|m| m.as_str()).collect();
            object.insert("qc_metrics".into(), json!(names));
        }
        if let Some(min) = self.qc.min_psnr {
            object.insert("qc_min_psnr".into(), json!(min));
        }
        #[cfg(feature = "test-nommers")]
        if let Some(how) = &self.test_break {
            object.insert("test_break".into(), json!(how));
        }
        match &self.body {
            Body::File { passes } => {
                object.insert("options".into(), options::passes_to_json(passes));
            }
            Body::Abr(abr) => {
                let manifests: Vec<&str> = abr.manifests.iter().map(|m| m.as_str()).collect();
                object.insert("manifests".into(), json!(manifests));
                object.insert("segment_seconds".into(), json!(abr.segment_seconds));
                object.insert("segment_type".into(), json!(abr.segment_type.as_str()));
                object.insert("upscale".into(), json!(abr.upscale));
                let renditions: Vec<Value> = abr
                    .renditions
                    .iter()
                    .map(|r| {
                        let mut rendition = Map::new();
                        rendition.insert("name".into(), json!(r.name));
                        if let Some(width) = r.width {
                            rendition.insert("width".into(), json!(width));
                        }
                        if let Some(height) = r.height {
                            rendition.insert("height".into(), json!(height));
                        }
                        if let Some(bitrate) = &r.video_bitrate {
                            rendition.insert("video_bitrate".into(), json!(bitrate));
                        }
                        rendition.insert("options".into(), pairs_json(&r.options));
                        Value::Object(rendition)
                    })
                    .collect();
                object.insert("renditions".into(), Value::Array(renditions));
                if let Some(audio) = &abr.audio {
                    object.insert("audio".into(), json!({"options": pairs_json(audio)}));
                }
            }
            Body::Thumbnail(thumbnail) => {
                match &thumbnail.times {
                    Times::At(times) => object.insert("at_seconds".into(), json!(times)),
                    Times::Every(every) => object.insert("every_seconds".into(), json!(every)),
                };
                if let Some(width) = thumbnail.width {
                    object.insert("width".into(), json!(width));
                }
                object.insert("format".into(), json!(thumbnail.format.as_str()));
            }
            Body::Sprite(sprite) => {
                object.insert("every_seconds".into(), json!(sprite.every_seconds));
                object.insert("columns".into(), json!(sprite.columns));
                object.insert("rows".into(), json!(sprite.rows));
                object.insert("width".into(), json!(sprite.width));
                object.insert("format".into(), json!(sprite.format.as_str()));
            }
        }
        Value::Object(object)
    }
}

impl OutputKind {
    pub fn is_directory(self) -> bool {
        !matches!(self, OutputKind::File)
    }
}

impl ImageFormat {
    /// The encoder that writes it.
    pub fn encoder(self) -> &'static str {
        match self {
            ImageFormat::Jpg => "mjpeg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "libwebp",
        }
    }
}

/// The canonical outputs as JSON.
pub fn outputs_to_json(outputs: &[Output]) -> Value {
    Value::Array(outputs.iter().map(Output::to_json).collect())
}

fn pairs_json(pairs: &[OptionPair]) -> Value {
    let pass = Pass {
        outfile_options: pairs.to_vec(),
        ..Pass::default()
    };
    options::passes_to_json(&[pass])[0]["outfile_options"].clone()
}

fn refuse(code: ErrorCode, label: &str, message: impl std::fmt::Display) -> CodedError {
    CodedError::new(code, format!("{label}: {message}"))
}

fn invalid(label: &str, message: impl std::fmt::Display) -> CodedError {
    refuse(ErrorCode::InvalidOutputs, label, message)
}

/// Parse and check `outputs`. `prefix` is the job's own `dest_path` when it
/// is a prefix (ends in `/`): only then may outputs name a relative `path`.
pub fn parse_outputs(
    value: &Value,
    prefix: Option<&str>,
    allow: &Allowlist,
) -> Result<Vec<Output>, CodedError> {
    let Value::Array(items) = value else {
        return Err(CodedError::new(
            ErrorCode::InvalidOutputs,
            "outputs must be a list of output objects",
        ));
    };
    if items.is_empty() || items.len() > MAX_OUTPUTS {
        return Err(CodedError::new(
            ErrorCode::InvalidOutputs,
            format!(
                "outputs has {} entries; give from 1 to {MAX_OUTPUTS}",
                items.len()
            ),
        ));
    }
    let outputs: Vec<Output> = items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_output(index, item, prefix, allow))
        .collect::<Result<_, _>>()?;
    // Two outputs may not write the same place, nor one inside another's
    // prefix, whatever credentials name it.
    let targets: Vec<(usize, String)> = outputs
        .iter()
        .enumerate()
        .map(|(i, o)| (i, place(&o.resolve(prefix.unwrap_or_default()))))
        .collect();
    for (i, a) in &targets {
        for (j, b) in &targets {
            let nested = outputs[*j].is_directory() && a.starts_with(b.as_str());
            if i != j && (a == b || nested) {
                return Err(invalid(
                    &format!("outputs[{i}]"),
                    format!("writes {a}, which outputs[{j}] also writes"),
                ));
            }
        }
    }
    Ok(outputs)
}

/// A destination (or a prefix, ending in `/`) as the API shows it:
/// credentials redacted.
pub fn shown(uri: &str) -> String {
    if !uri.ends_with('/') {
        return match MediaUri::parse(uri) {
            Ok(parsed) => parsed.redacted(),
            Err(_) => crate::uri::redact_str(uri),
        };
    }
    let probe = format!("{uri}{PROBE}");
    let redacted = match MediaUri::parse(&probe) {
        Ok(parsed) => parsed.redacted(),
        Err(_) => crate::uri::redact_str(&probe),
    };
    redacted
        .strip_suffix(PROBE)
        .unwrap_or(&redacted)
        .to_string()
}

/// Where a destination (or prefix) is, without its credentials.
fn place(uri: &str) -> String {
    let probe = match uri.ends_with('/') {
        true => format!("{uri}{PROBE}"),
        false => uri.to_string(),
    };
    let located = match MediaUri::parse(&probe) {
        Ok(parsed) => match parsed.location() {
            Location::Object { bucket, key, .. } => {
                format!("{}://{bucket}/{key}", parsed.scheme().as_str())
            }
            Location::File { path } => format!("file://{}", path.display()),
            Location::Http { .. } => parsed.redacted(),
        },
        Err(_) => crate::uri::redact_str(&probe),
    };
    match uri.ends_with('/') {
        true => located.strip_suffix(PROBE).unwrap_or(&located).to_string(),
        false => located,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    options: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAbr {
    manifests: Vec<Manifest>,
    #[serde(default = "default_segment_seconds")]
    segment_seconds: u32,
    #[serde(default = "default_segment_type")]
    segment_type: SegmentType,
    renditions: Vec<RawRendition>,
    #[serde(default)]
    audio: Option<RawAudio>,
    #[serde(default)]
    upscale: bool,
}

fn default_segment_seconds() -> u32 {
    6
}

fn default_segment_type() -> SegmentType {
    SegmentType::Fmp4
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRendition {
    name: String,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
    #[serde(default)]
    video_bitrate: Option<String>,
    #[serde(default)]
    options: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudio {
    #[serde(default)]
    options: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThumbnail {
    #[serde(default)]
    at_seconds: Option<Vec<f64>>,
    #[serde(default)]
    every_seconds: Option<f64>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default = "default_image")]
    format: ImageFormat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSprite {
    every_seconds: f64,
    #[serde(default = "default_tiles")]
    columns: u32,
    #[serde(default = "default_tiles")]
    rows: u32,
    #[serde(default = "default_sprite_width")]
    width: u32,
    #[serde(default = "default_image")]
    format: ImageFormat,
}

fn default_image() -> ImageFormat {
    ImageFormat::Jpg
}

fn default_tiles() -> u32 {
    5
}

fn default_sprite_width() -> u32 {
    160
}

fn body_of<T: serde::de::DeserializeOwned>(
    label: &str,
    rest: Map<String, Value>,
) -> Result<T, CodedError> {
    serde_json::from_value(Value::Object(rest)).map_err(|e| invalid(label, e))
}

fn parse_output(
    index: usize,
    item: &Value,
    prefix: Option<&str>,
    allow: &Allowlist,
) -> Result<Output, CodedError> {
    let label = format!("outputs[{index}]");
    let Value::Object(map) = item else {
        return Err(invalid(&label, "must be an object with a \"kind\""));
    };
    let mut rest = map.clone();
    let kind = match rest.remove("kind") {
        Some(Value::String(kind)) => kind.parse::<OutputKind>().map_err(|_| {
            invalid(
                &label,
                format!("unknown kind \"{kind}\"; known: file, abr, thumbnail, sprite"),
            )
        })?,
        _ => {
            return Err(invalid(
                &label,
                "needs a \"kind\": file, abr, thumbnail or sprite",
            ))
        }
    };
    let label = format!("outputs[{index}] ({kind})");
    let target = parse_target(
        &label,
        kind,
        rest.remove("dest_path"),
        rest.remove("path"),
        prefix,
    )?;
    let qc = parse_qc(&label, &mut rest)?;
    #[cfg(feature = "test-nommers")]
    let test_break = rest
        .remove("test_break")
        .and_then(|v| v.as_str().map(str::to_string));
    let body = match kind {
        OutputKind::File => {
            let raw: RawFile = body_of(&label, rest)?;
            Body::File {
                passes: file_passes(&label, &raw.options, &target, allow)?,
            }
        }
        OutputKind::Abr => Body::Abr(abr(&label, body_of(&label, rest)?, allow)?),
        OutputKind::Thumbnail => Body::Thumbnail(thumbnail(&label, body_of(&label, rest)?)?),
        OutputKind::Sprite => Body::Sprite(sprite(&label, body_of(&label, rest)?)?),
    };
    if qc.min_psnr.is_some() && !qc.metrics.contains(&QcMetric::Psnr) {
        return Err(invalid(&label, "qc_min_psnr needs \"psnr\" in qc_metrics"));
    }
    if !qc.metrics.is_empty() && !matches!(kind, OutputKind::File | OutputKind::Abr) {
        return Err(invalid(&label, "qc_metrics apply to file and abr outputs"));
    }
    Ok(Output {
        target,
        qc,
        body,
        #[cfg(feature = "test-nommers")]
        test_break,
    })
}

fn parse_target(
    label: &str,
    kind: OutputKind,
    dest_path: Option<Value>,
    path: Option<Value>,
    prefix: Option<&str>,
) -> Result<Target, CodedError> {
    let want_dir = kind.is_directory();
    let shape = |text: &str| -> Result<(), CodedError> {
        match (want_dir, text.ends_with('/')) {
            (true, false) => Err(invalid(
                label,
                format!(
                    "writes many files: its destination \"{}\" must be a prefix ending in /",
                    crate::uri::redact_str(text)
                ),
            )),
            (false, true) => Err(invalid(
                label,
                format!(
                    "writes one file: its destination \"{}\" must not end in /",
                    crate::uri::redact_str(text)
                ),
            )),
            _ => Ok(()),
        }
    };
    match (dest_path, path) {
        (Some(Value::String(uri)), None) => {
            shape(&uri)?;
            let parsed = MediaUri::parse(&match want_dir {
                true => format!("{uri}{PROBE}"),
                false => uri.clone(),
            })
            .map_err(|e| refuse(e.code, label, e.message))?;
            if parsed.has_credentials() {
                return Err(invalid(label, "an output's dest_path may not carry credentials: put them in the job's dest_path prefix (with relative paths) or in the storage config"));
            }
            if matches!(parsed.location(), Location::Http { .. }) {
                return Err(invalid(label, "outputs are written to file://, s3://, gs:// or az:// (an http destination cannot be listed or removed)"));
            }
            Ok(Target::Uri(uri))
        }
        (None, Some(Value::String(path))) => {
            let Some(prefix) = prefix else {
                return Err(invalid(
                    label,
                    "a relative \"path\" needs the job's dest_path to be a prefix ending in /",
                ));
            };
            shape(&path)?;
            let clean = !path.is_empty()
                && path.len() <= 256
                && !path.starts_with('/')
                && path
                    .split('/')
                    .all(|segment| segment != "." && segment != "..")
                && !path.contains("//")
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
            if !clean {
                return Err(invalid(label, format!("path \"{path}\" must be relative, without . or .. segments, in letters, digits, / - _ .")));
            }
            let probe = match want_dir {
                true => format!("{prefix}{path}{PROBE}"),
                false => format!("{prefix}{path}"),
            };
            MediaUri::parse(&probe).map_err(|e| refuse(e.code, label, e.message))?;
            Ok(Target::Path(path))
        }
        (None, None) => Err(invalid(
            label,
            "needs a dest_path (or, under a job dest_path prefix, a relative path)",
        )),
        (Some(_), Some(_)) => Err(invalid(label, "give dest_path or path, not both")),
        _ => Err(invalid(label, "dest_path and path are strings")),
    }
}

fn parse_qc(label: &str, rest: &mut Map<String, Value>) -> Result<Qc, CodedError> {
    let mut qc = Qc::default();
    if let Some(level) = rest.remove("qc") {
        qc.level = serde_json::from_value(level)
            .map_err(|_| invalid(label, "qc is \"sampled\" or \"full\""))?;
    }
    if let Some(metrics) = rest.remove("qc_metrics") {
        qc.metrics = serde_json::from_value(metrics).map_err(|_| {
            invalid(
                label,
                "qc_metrics is a list of \"psnr\", \"ssim\", \"vmaf\"",
            )
        })?;
        qc.metrics.dedup();
    }
    match rest.remove("qc_min_psnr") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_f64().is_some_and(|v| (0.0..=100.0).contains(&v)) => {
            qc.min_psnr = n.as_f64()
        }
        Some(_) => {
            return Err(invalid(
                label,
                "qc_min_psnr is a number of dB from 0 to 100",
            ))
        }
    }
    Ok(qc)
}

/// A file output's passes: checked like a job's, without input or global
/// options (the input is every output's), with a format it can be written in.
fn file_passes(
    label: &str,
    raw: &Value,
    target: &Target,
    allow: &Allowlist,
) -> Result<Vec<Pass>, CodedError> {
    let mut passes = options::parse_passes(raw).map_err(|e| refuse(e.code, label, e.message))?;
    options::modernize(&mut passes);
    let passes =
        options::check_passes(passes, allow).map_err(|e| refuse(e.code, label, e.message))?;
    for pass in &passes {
        if !pass.infile_options.is_empty() || !pass.global_options.is_empty() {
            return Err(refuse(
                ErrorCode::OptionNotAllowed,
                label,
                "a file output's passes take outfile_options only: the input is shared by every output of the job",
            ));
        }
        if let Some(format) = pass.output_format() {
            if matches!(format, "hls" | "dash" | "image2" | "segment") {
                return Err(refuse(ErrorCode::FormatNotAllowed, label, format!("the {format} muxer writes many files: use an abr, thumbnail or sprite output")));
            }
        }
    }
    if passes.iter().any(|pass| pass.output_format().is_none()) {
        let name = match target {
            Target::Uri(uri) | Target::Path(uri) => uri,
        };
        let probe = MediaUri::parse(&format!(
            "file:///{}",
            name.rsplit('/').next().unwrap_or_default()
        ))
        .map_err(|e| refuse(e.code, label, e.message))?;
        crate::submit::inferred_format(&probe).map_err(|e| refuse(e.code, label, e.message))?;
    }
    Ok(passes)
}

/// Per-stream options for one stream of a ladder (`stream` is `v` or `a`):
/// checked against the allowlist, each one that takes a stream specifier,
/// none that the nommer sets; returned without their specifiers.
fn stream_options(
    label: &str,
    raw: &Value,
    stream: &str,
    allow: &Allowlist,
) -> Result<Vec<OptionPair>, CodedError> {
    if raw.is_null() {
        return Ok(Vec::new());
    }
    let relabel = |e: CodedError| {
        let message = e
            .message
            .strip_prefix("pass 1: ")
            .unwrap_or(&e.message)
            .to_string();
        refuse(e.code, label, message)
    };
    let mut passes =
        options::parse_passes(&json!([{ "outfile_options": raw }])).map_err(relabel)?;
    options::modernize(&mut passes);
    let pass = options::check_passes(passes, allow)
        .map_err(relabel)?
        .remove(0);
    if let Some(pair) = pass.global_options.first() {
        return Err(refuse(
            ErrorCode::OptionNotAllowed,
            label,
            format!("\"{}\" is a global option, not one of a stream", pair.flag),
        ));
    }
    pass.outfile_options
        .into_iter()
        .map(|pair| {
            let base = pair.base().to_string();
            if SET_BY_NOMMER.contains(&base.as_str()) {
                return Err(refuse(ErrorCode::OptionNotAllowed, label, format!("\"{}\" is set by the nommer from the output spec", pair.flag)));
            }
            if let Some((_, spec)) = pair.flag.split_once(':') {
                if spec != stream {
                    return Err(refuse(ErrorCode::OptionNotAllowed, label, format!("\"{}\": options here apply to the {stream} stream; write the flag without a specifier or with :{stream}", pair.flag)));
                }
            }
            match allow.flag(&base) {
                Verdict::Allowed(rule) if rule.spec => Ok(OptionPair { flag: base, value: pair.value }),
                _ => Err(refuse(ErrorCode::OptionNotAllowed, label, format!("\"{}\" is not a per-stream option (use the form that takes a stream specifier, such as c:v for vcodec)", pair.flag))),
            }
        })
        .collect()
}

fn abr(label: &str, raw: RawAbr, allow: &Allowlist) -> Result<Abr, CodedError> {
    let mut manifests = raw.manifests;
    manifests.sort_by_key(|m| m.as_str());
    manifests.dedup();
    if manifests.is_empty() {
        return Err(invalid(label, "manifests names \"hls\", \"dash\" or both"));
    }
    if raw.segment_type == SegmentType::Ts && manifests.contains(&Manifest::Dash) {
        return Err(invalid(
            label,
            "segment_type \"ts\" serves HLS alone; DASH needs \"fmp4\"",
        ));
    }
    if !(1..=60).contains(&raw.segment_seconds) {
        return Err(invalid(
            label,
            "segment_seconds is a whole number from 1 to 60",
        ));
    }
    if raw.renditions.is_empty() || raw.renditions.len() > MAX_RENDITIONS {
        return Err(invalid(
            label,
            format!(
                "renditions has {} entries; give from 1 to {MAX_RENDITIONS}",
                raw.renditions.len()
            ),
        ));
    }
    let mut renditions = Vec::new();
    for rendition in raw.renditions {
        let name_ok = (1..=32).contains(&rendition.name.len())
            && rendition
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            && rendition.name != "audio";
        if !name_ok {
            return Err(invalid(label, format!("rendition name \"{}\" must be 1-32 letters, digits, - or _ (and not \"audio\")", rendition.name.chars().take(40).collect::<String>())));
        }
        if renditions
            .iter()
            .any(|r: &Rendition| r.name == rendition.name)
        {
            return Err(invalid(
                label,
                format!("two renditions are named \"{}\"", rendition.name),
            ));
        }
        let rlabel = format!("{label} rendition \"{}\"", rendition.name);
        for (what, size) in [("width", rendition.width), ("height", rendition.height)] {
            if let Some(size) = size {
                if !(16..=8192).contains(&size) || size % 2 != 0 {
                    return Err(invalid(
                        &rlabel,
                        format!("{what} is an even number of pixels from 16 to 8192"),
                    ));
                }
            }
        }
        if rendition.width.is_none() && rendition.height.is_none() {
            return Err(invalid(&rlabel, "give a height, a width, or both"));
        }
        if let Some(bitrate) = &rendition.video_bitrate {
            stream_options(&rlabel, &json!([["b:v", bitrate]]), "v", allow)?;
        }
        renditions.push(Rendition {
            options: stream_options(&rlabel, &rendition.options, "v", allow)?,
            name: rendition.name,
            width: rendition.width,
            height: rendition.height,
            video_bitrate: rendition.video_bitrate,
        });
    }
    let audio = match raw.audio {
        Some(audio) => Some(stream_options(
            &format!("{label} audio"),
            &audio.options,
            "a",
            allow,
        )?),
        None => None,
    };
    Ok(Abr {
        manifests,
        segment_seconds: raw.segment_seconds,
        segment_type: raw.segment_type,
        renditions,
        audio,
        upscale: raw.upscale,
    })
}

fn seconds_ok(value: f64) -> bool {
    value.is_finite() && (0.0..=7.0 * 24.0 * 3600.0).contains(&value)
}

fn width_ok(label: &str, width: Option<u32>, max: u32) -> Result<(), CodedError> {
    match width {
        Some(w) if !(16..=max).contains(&w) || w % 2 != 0 => Err(invalid(
            label,
            format!("width is an even number of pixels from 16 to {max}"),
        )),
        _ => Ok(()),
    }
}

fn thumbnail(label: &str, raw: RawThumbnail) -> Result<Thumbnail, CodedError> {
    let times = match (raw.at_seconds, raw.every_seconds) {
        (Some(at), None) => {
            if at.is_empty() || at.len() > MAX_THUMBNAILS || !at.iter().all(|t| seconds_ok(*t)) {
                return Err(invalid(
                    label,
                    format!(
                        "at_seconds is a list of 1 to {MAX_THUMBNAILS} times in seconds, from 0"
                    ),
                ));
            }
            let mut at = at;
            at.sort_by(f64::total_cmp);
            at.dedup();
            Times::At(at)
        }
        (None, Some(every)) if seconds_ok(every) && every >= 1.0 => Times::Every(every),
        (None, Some(_)) => return Err(invalid(label, "every_seconds is at least 1")),
        _ => return Err(invalid(label, "give at_seconds or every_seconds")),
    };
    width_ok(label, raw.width, 4096)?;
    Ok(Thumbnail {
        times,
        width: raw.width,
        format: raw.format,
    })
}

fn sprite(label: &str, raw: RawSprite) -> Result<Sprite, CodedError> {
    if !seconds_ok(raw.every_seconds) || raw.every_seconds < 0.5 {
        return Err(invalid(label, "every_seconds is at least 0.5"));
    }
    if !(1..=20).contains(&raw.columns) || !(1..=20).contains(&raw.rows) {
        return Err(invalid(label, "columns and rows are from 1 to 20"));
    }
    width_ok(label, Some(raw.width), 640)?;
    Ok(Sprite {
        every_seconds: raw.every_seconds,
        columns: raw.columns,
        rows: raw.rows,
        width: raw.width,
        format: raw.format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Result<Vec<Output>, CodedError> {
        parse_outputs(&value, None, Allowlist::builtin())
    }

    fn ladder() -> Value {
        json!([
            {"kind": "file", "dest_path": "s3://out/movie/download.mp4", "options": [{"outfile_options": [["c:v", "libx264"]]}]},
            {"kind": "abr", "dest_path": "s3://out/movie/stream/", "manifests": ["hls", "dash"],
             "segment_seconds": 6, "segment_type": "fmp4",
             "renditions": [{"name": "720p", "height": 720, "video_bitrate": "3M", "options": [["c:v", "libx264"], ["preset", "veryfast"]]},
                            {"name": "360p", "height": 360, "video_bitrate": "800k", "options": [["c:v", "libx264"]]}],
             "audio": {"options": [["c:a", "aac"], ["b:a", "128k"]]}},
            {"kind": "thumbnail", "dest_path": "s3://out/movie/poster/", "at_seconds": [5], "width": 640, "format": "jpg"},
            {"kind": "sprite", "dest_path": "s3://out/movie/sprite/", "every_seconds": 5, "columns": 5, "rows": 5, "width": 160}
        ])
    }

    #[test]
    fn the_issue_example_parses_and_its_canonical_form_reads_back() {
        let outputs = parse(ladder()).unwrap();
        assert_eq!(outputs.len(), 4);
        let Body::Abr(abr) = &outputs[1].body else {
            panic!()
        };
        assert_eq!(abr.renditions[0].options[0].flag, "c");
        assert_eq!(abr.renditions[0].options[1].flag, "preset");
        let canonical = outputs_to_json(&outputs);
        assert_eq!(parse(canonical.clone()).unwrap(), outputs);
        assert_eq!(
            outputs_to_json(&parse(canonical.clone()).unwrap()),
            canonical
        );
    }

    fn code_of(value: Value) -> ErrorCode {
        parse(value).unwrap_err().code
    }

    #[test]
    fn file_names_and_muxers_stay_the_nommers() {
        let abr = |options: Value| json!([{"kind": "abr", "dest_path": "s3://o/s/", "manifests": ["hls"], "renditions": [{"name": "a", "height": 360, "options": options}]}]);
        assert_eq!(
            code_of(abr(json!([["hls_segment_filename", "/etc/x"]]))),
            ErrorCode::OptionNotAllowed
        );
        assert_eq!(
            code_of(abr(json!([["master_pl_name", "x.m3u8"]]))),
            ErrorCode::OptionNotAllowed
        );
        assert_eq!(
            code_of(abr(json!([["f", "mp4"]]))),
            ErrorCode::OptionNotAllowed
        );
        assert_eq!(
            code_of(abr(json!([["vf", "scale=2:2"]]))),
            ErrorCode::OptionNotAllowed
        );
        assert_eq!(
            code_of(abr(json!([["b:a", "1k"]]))),
            ErrorCode::OptionNotAllowed
        );
        assert_eq!(
            code_of(abr(json!([["movflags", "+faststart"]]))),
            ErrorCode::OptionNotAllowed
        );
        assert_eq!(
            code_of(abr(json!([["crf", "not-a-number"]]))),
            ErrorCode::InvalidOptionValue
        );
        assert!(parse(abr(json!([["crf", 23], ["c:v", "libx264"], ["g", 48]]))).is_ok());
        let file = |options: Value| json!([{"kind": "file", "dest_path": "file:///o/a.m3u8", "options": options}]);
        assert_eq!(
            code_of(file(json!([{"outfile_options": [["f", "hls"]]}]))),
            ErrorCode::FormatNotAllowed
        );
        let infile = json!([{"kind": "file", "dest_path": "file:///o/a.mp4", "options": [{"infile_options": [["ss", 1]], "outfile_options": []}]}]);
        assert_eq!(code_of(infile), ErrorCode::OptionNotAllowed);
    }

    #[test]
    fn targets_are_checked() {
        let one = |target: Value| {
            let mut item = json!({"kind": "thumbnail", "every_seconds": 5});
            item.as_object_mut()
                .unwrap()
                .extend(target.as_object().unwrap().clone());
            parse_outputs(
                &json!([item]),
                Some("s3://k:s@b/movie/"),
                Allowlist::builtin(),
            )
        };
        assert!(one(json!({"dest_path": "s3://b/p/"})).is_ok());
        assert!(one(json!({"path": "poster/"})).is_ok());
        assert_eq!(
            one(json!({"dest_path": "s3://b/p"})).unwrap_err().code,
            ErrorCode::InvalidOutputs
        );
        assert_eq!(
            one(json!({"dest_path": "s3://k:s@b/p/"})).unwrap_err().code,
            ErrorCode::InvalidOutputs
        );
        assert_eq!(
            one(json!({"dest_path": "https://h/p/"})).unwrap_err().code,
            ErrorCode::InvalidOutputs
        );
        for bad in ["../x/", "/abs/", "a//b/", "a/./b/", "a b/"] {
            assert_eq!(
                one(json!({"path": bad})).unwrap_err().code,
                ErrorCode::InvalidOutputs,
                "{bad}"
            );
        }
        let relative = json!([{"kind": "thumbnail", "path": "p/", "every_seconds": 5}]);
        assert_eq!(code_of(relative), ErrorCode::InvalidOutputs);
        let same = json!([{"kind": "sprite", "dest_path": "s3://b/p/", "every_seconds": 5},
                          {"kind": "thumbnail", "dest_path": "s3://b/p/", "every_seconds": 5}]);
        assert_eq!(code_of(same), ErrorCode::InvalidOutputs);
        let aliased = parse_outputs(
            &json!([{"kind": "sprite", "path": "p/", "every_seconds": 5},
                    {"kind": "thumbnail", "dest_path": "s3://b/m/p/", "every_seconds": 5}]),
            Some("s3://key:secret@b/m/"),
            Allowlist::builtin(),
        )
        .unwrap_err();
        assert!(
            aliased.message.contains("s3://b/m/p/") && !aliased.message.contains("secret"),
            "{}",
            aliased.message
        );
        let shaped = parse_outputs(
            &json!([{"kind": "sprite", "dest_path": "s3://key:secret@b/p", "every_seconds": 5}]),
            None,
            Allowlist::builtin(),
        )
        .unwrap_err();
        assert!(!shaped.message.contains("secret"), "{}", shaped.message);
        let nested = json!([{"kind": "sprite", "dest_path": "s3://b/p/", "every_seconds": 5},
                            {"kind": "file", "dest_path": "s3://b/p/a.mp4", "options": [{"outfile_options": []}]}]);
        assert_eq!(code_of(nested), ErrorCode::InvalidOutputs);
    }

    #[test]
    fn shapes_are_checked() {
        for bad in [
            json!({"kind": "abr", "dest_path": "s3://b/p/", "manifests": ["dash"], "segment_type": "ts", "renditions": [{"name": "a", "height": 360}]}),
            json!({"kind": "abr", "dest_path": "s3://b/p/", "manifests": [], "renditions": [{"name": "a", "height": 360}]}),
            json!({"kind": "abr", "dest_path": "s3://b/p/", "manifests": ["hls"], "renditions": [{"name": "a", "height": 361}]}),
            json!({"kind": "abr", "dest_path": "s3://b/p/", "manifests": ["hls"], "renditions": [{"name": "a"}]}),
            json!({"kind": "abr", "dest_path": "s3://b/p/", "manifests": ["hls"], "renditions": [{"name": "a/b", "height": 360}]}),
            json!({"kind": "abr", "dest_path": "s3://b/p/", "manifests": ["hls"], "renditions": [{"name": "a", "height": 360}, {"name": "a", "height": 240}]}),
            json!({"kind": "abr", "dest_path": "s3://b/p/", "manifests": ["hls"], "renditions": [{"name": "a", "height": 360}], "extra": 1}),
            json!({"kind": "thumbnail", "dest_path": "s3://b/p/"}),
            json!({"kind": "thumbnail", "dest_path": "s3://b/p/", "at_seconds": [1], "every_seconds": 2}),
            json!({"kind": "thumbnail", "dest_path": "s3://b/p/", "at_seconds": [-1]}),
            json!({"kind": "sprite", "dest_path": "s3://b/p/", "every_seconds": 5, "columns": 0}),
            json!({"kind": "sprite", "dest_path": "s3://b/p/", "every_seconds": 5, "qc_metrics": ["psnr"]}),
            json!({"kind": "video", "dest_path": "s3://b/p/"}),
            json!({"kind": "file", "dest_path": "s3://b/a.mp4", "options": [{"outfile_options": []}], "qc_min_psnr": 30}),
        ] {
            assert_eq!(
                code_of(json!([bad.clone()])),
                ErrorCode::InvalidOutputs,
                "{bad}"
            );
        }
        assert_eq!(code_of(json!([])), ErrorCode::InvalidOutputs);
        assert_eq!(code_of(json!({})), ErrorCode::InvalidOutputs);
    }
}
