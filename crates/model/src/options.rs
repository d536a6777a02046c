//! Nommers and the FFmpeg nommer's options in the seed's format: a list of at
//! most two passes, each with `infile_options` and `outfile_options` as ordered
//! `[flag, value]` pairs and an optional `move_atom_to_front`.
//!
//! The option check knows each flag's arity and refuses flags and filters that
//! would let a job read or write anything but its own input and output.
//! The rules are listed in docs/OPTIONS.md.

use crate::error::{CodedError, ErrorCode};
use crate::filtergraph;
use serde_json::Value;

/// The seed's dotted class path, accepted as an alias of `ffmpeg`.
pub const SEED_FFMPEG_NOMMER: &str = "media_nommer.ec2nommerd.nommers.ffmpeg.FFmpegNommer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nommer {
    /// Runs FFmpeg with the job's passes.
    Ffmpeg,
    /// Moves the source to the destination unchanged; spawns no process.
    Copy,
}

impl Nommer {
    pub fn parse(name: &str) -> Option<Nommer> {
        match name {
            "ffmpeg" | SEED_FFMPEG_NOMMER => Some(Nommer::Ffmpeg),
            "copy" => Some(Nommer::Copy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Nommer::Ffmpeg => "ffmpeg",
            Nommer::Copy => "copy",
        }
    }
}

/// A JSON scalar as the seed rendered it onto the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum OptValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl OptValue {
    /// The seed's `if val or val == 0`: null and "" give the bare flag.
    pub fn is_flag_only(&self) -> bool {
        matches!(self, OptValue::Null) || matches!(self, OptValue::Str(s) if s.is_empty())
    }

    /// Python 2 `str()` of the decoded JSON value, as the seed built argv.
    pub fn render(&self) -> Option<String> {
        match self {
            OptValue::Null => None,
            OptValue::Str(s) if s.is_empty() => None,
            OptValue::Str(s) => Some(s.clone()),
            OptValue::Bool(true) => Some("True".into()),
            OptValue::Bool(false) => Some("False".into()),
            OptValue::Int(i) => Some(i.to_string()),
            OptValue::Float(f) => Some(python_float(*f)),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            OptValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn python_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        return format!("{f:.1}");
    }
    let text = format!("{:.12}", f);
    let text = text.trim_end_matches('0');
    text.trim_end_matches('.').to_string()
}

#[derive(Debug, Clone, PartialEq)]
pub struct OptionPair {
    pub flag: String,
    pub value: OptValue,
}

impl OptionPair {
    pub fn new(flag: &str, value: OptValue) -> OptionPair {
        OptionPair {
            flag: flag.to_string(),
            value,
        }
    }

    /// The flag without its stream specifier: `b` for `b:v`.
    pub fn base(&self) -> &str {
        self.flag.split(':').next().unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pass {
    pub infile_options: Vec<OptionPair>,
    pub outfile_options: Vec<OptionPair>,
    pub move_atom_to_front: bool,
}

impl Pass {
    pub fn output_format(&self) -> Option<&str> {
        self.outfile_options
            .iter()
            .rev()
            .find(|pair| pair.base() == "f")
            .and_then(|pair| pair.value.as_str())
    }
}

fn invalid(code: ErrorCode, message: String) -> CodedError {
    CodedError::new(code, message)
}

/// Parse `job_options.options` (already decoded from a JSON string if it was one).
pub fn parse_passes(options: &Value) -> Result<Vec<Pass>, CodedError> {
    let Value::Array(items) = options else {
        return Err(invalid(
            ErrorCode::InvalidJobOptions,
            "job_options.options must be a list of pass objects".into(),
        ));
    };
    if items.is_empty() {
        return Err(invalid(
            ErrorCode::EmptyPasses,
            "job_options.options has no passes; give one or two".into(),
        ));
    }
    if items.len() > 2 {
        return Err(invalid(
            ErrorCode::TooManyPasses,
            format!(
                "job_options.options has {} passes; at most 2 are allowed",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_pass(index + 1, item))
        .collect()
}

fn parse_pass(number: usize, item: &Value) -> Result<Pass, CodedError> {
    let Value::Object(map) = item else {
        return Err(invalid(
            ErrorCode::InvalidJobOptions,
            format!("pass {number} must be an object with infile_options/outfile_options"),
        ));
    };
    let mut pass = Pass::default();
    for (key, value) in map {
        match key.as_str() {
            "infile_options" => pass.infile_options = parse_pairs(number, key, value)?,
            "outfile_options" => pass.outfile_options = parse_pairs(number, key, value)?,
            "move_atom_to_front" => {
                pass.move_atom_to_front = match value {
                    Value::Bool(b) => *b,
                    Value::Null => false,
                    Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
                    _ => {
                        return Err(invalid(
                            ErrorCode::InvalidJobOptions,
                            format!("pass {number}: move_atom_to_front must be a boolean"),
                        ))
                    }
                }
            }
            other => {
                return Err(invalid(
                    ErrorCode::InvalidJobOptions,
                    format!(
                        "pass {number}: unknown key \"{other}\"; allowed: infile_options, outfile_options, move_atom_to_front"
                    ),
                ))
            }
        }
    }
    Ok(pass)
}

fn parse_pairs(
    number: usize,
    list_name: &str,
    value: &Value,
) -> Result<Vec<OptionPair>, CodedError> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => {
            return Err(invalid(
                ErrorCode::InvalidJobOptions,
                format!("pass {number}: {list_name} must be a list of [flag, value] pairs"),
            ))
        }
    };
    items
        .iter()
        .map(|item| {
            let pair = match item {
                Value::Array(pair) if pair.len() == 2 => pair,
                _ => {
                    return Err(invalid(
                        ErrorCode::InvalidOptionPair,
                        format!("pass {number}: {list_name} entry {item} is not a [flag, value] pair"),
                    ))
                }
            };
            let Value::String(flag) = &pair[0] else {
                return Err(invalid(
                    ErrorCode::InvalidOptionPair,
                    format!("pass {number}: {list_name} flag {} is not a string", pair[0]),
                ));
            };
            if !valid_flag_name(flag) {
                return Err(invalid(
                    ErrorCode::InvalidOptionPair,
                    format!(
                        "pass {number}: \"{flag}\" is not a flag name (write flags without the leading '-', e.g. \"vcodec\" or \"b:v\")"
                    ),
                ));
            }
            let value = match &pair[1] {
                Value::Null => OptValue::Null,
                Value::Bool(b) => OptValue::Bool(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => OptValue::Int(i),
                    None => OptValue::Float(n.as_f64().unwrap_or(0.0)),
                },
                Value::String(s) => OptValue::Str(s.clone()),
                other => {
                    return Err(invalid(
                        ErrorCode::InvalidOptionValue,
                        format!(
                            "pass {number}: the value of \"{flag}\" must be a string, number, boolean or null, not {other}"
                        ),
                    ))
                }
            };
            Ok(OptionPair {
                flag: flag.clone(),
                value,
            })
        })
        .collect()
}

fn valid_flag_name(flag: &str) -> bool {
    let mut chars = flag.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    flag.len() <= 64
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '+' | '-'))
}

/// ffmpeg's boolean options (OPT_BOOL in fftools): they take no value, and
/// each also exists with a `no` prefix. Every other flag takes exactly one value.
const NO_VALUE_FLAGS: &[&str] = &[
    "an",
    "vn",
    "sn",
    "dn",
    "shortest",
    "re",
    "copyts",
    "start_at_zero",
    "accurate_seek",
    "stats",
    "benchmark",
    "benchmark_all",
    "debug_ts",
    "xerror",
    "ignore_unknown",
    "copy_unknown",
    "hide_banner",
    "bitexact",
    "dump",
    "hex",
    "autorotate",
    "autoscale",
    "fix_sub_duration",
    "psnr",
    "qphist",
    "find_stream_info",
    "stdin",
    "intra",
    "copyinkf",
    "ignore_chapters",
];

/// Flags that add inputs or outputs, name files, change where the job reads or
/// writes, or only print information and exit.
const DENIED_FLAGS: &[(&str, &str)] = &[
    ("i", "adds an input; the job's input is its source_path"),
    ("y", "is always given by the nommer"),
    ("n", "would refuse to write the job's own output"),
    (
        "passlogfile",
        "is set by the nommer to the job's scratch directory",
    ),
    ("progress", "is set by the nommer for live progress"),
    ("report", "writes a log file"),
    ("filter_script", "reads a file"),
    ("filter_complex_script", "reads a file"),
    ("attach", "reads a file"),
    ("dump_attachment", "writes files"),
    ("stats_file", "writes a file"),
    ("vstats", "writes a file"),
    ("vstats_file", "writes a file"),
    ("sdp_file", "writes a file"),
    ("pre", "reads a preset file"),
    ("fpre", "reads a preset file"),
    ("vpre", "reads a preset file"),
    ("apre", "reads a preset file"),
    ("spre", "reads a preset file"),
    ("protocol_whitelist", "widens what inputs may open"),
    ("protocol_blacklist", "changes what inputs may open"),
    ("hls_segment_filename", "names extra output files"),
    ("hls_key_info_file", "reads a file"),
    ("hls_fmp4_init_filename", "names extra output files"),
    ("hls_subtitle_path", "names extra output files"),
    ("master_pl_name", "names extra output files"),
    ("segment_list", "names extra output files"),
    ("init_seg_name", "names extra output files"),
    ("media_seg_name", "names extra output files"),
    ("film_grain_table", "reads a file"),
    ("h", "prints help and exits"),
    ("help", "prints help and exits"),
    ("version", "prints information and exits"),
    ("buildconf", "prints information and exits"),
    ("formats", "prints information and exits"),
    ("muxers", "prints information and exits"),
    ("demuxers", "prints information and exits"),
    ("devices", "prints information and exits"),
    ("codecs", "prints information and exits"),
    ("decoders", "prints information and exits"),
    ("encoders", "prints information and exits"),
    ("bsfs", "prints information and exits"),
    ("protocols", "prints information and exits"),
    ("filters", "prints information and exits"),
    ("pix_fmts", "prints information and exits"),
    ("layouts", "prints information and exits"),
    ("sample_fmts", "prints information and exits"),
    ("colors", "prints information and exits"),
    ("sources", "probes devices and exits"),
    ("sinks", "probes devices and exits"),
    ("hwaccels", "prints information and exits"),
    ("L", "prints the license and exits"),
];

/// Input formats that read other files or network addresses named inside the source.
const DENIED_INPUT_FORMATS: &[&str] = &[
    "concat",
    "hls",
    "applehttp",
    "dash",
    "lavfi",
    "sdp",
    "rtp",
    "rtsp",
    "ffmetadata",
    "tee",
];

/// Flags whose value is a filtergraph.
const FILTERGRAPH_FLAGS: &[&str] = &["vf", "af", "filter", "filter_complex", "lavfi"];

/// Filters that open files, devices or the network, or load code.
const DENIED_FILTERS: &[&str] = &[
    "movie",
    "amovie",
    "subtitles",
    "ass",
    "lut3d",
    "lut1d",
    "sendcmd",
    "asendcmd",
    "zmq",
    "azmq",
    "frei0r",
    "frei0r_src",
    "ladspa",
    "lv2",
    "arnndn",
    "sofalizer",
    "dnn_processing",
    "dnn_detect",
    "dnn_classify",
    "sr",
    "derain",
    "removelogo",
    "cover_rect",
    "find_rect",
    "libvmaf",
    "program_opencl",
    "openclsrc",
    "signature",
    "ocr",
    "vidstabdetect",
    "vidstabtransform",
    "libplacebo",
    "coreimage",
    "coreimagesrc",
    "ocv",
    "lensfun",
    "flite",
    "qrencode",
    "qrencodesrc",
    "cellauto",
    "life",
];

/// Filter options that name files, whatever the filter.
const DENIED_FILTER_KEYS: &[&str] = &[
    "file",
    "filename",
    "textfile",
    "fontfile",
    "fontsdir",
    "stats_file",
    "log_path",
    "model",
    "model_path",
    "psfile",
    "dumpfile",
    "db_path",
    "custom_shader_path",
    "sofa",
];

/// Encoder parameter strings (`-x264-params a=b:c=d`) and the keys in them that name files.
const PARAM_STRING_FLAGS: &[&str] = &[
    "x264-params",
    "x264opts",
    "x265-params",
    "svtav1-params",
    "aom-params",
];
const DENIED_PARAM_KEYS: &[&str] = &[
    "stats",
    "qpfile",
    "dump-yuv",
    "csv",
    "analysis-save",
    "analysis-load",
    "analysis-reuse-file",
    "zonefile",
    "dolby-vision-rpu",
    "recon",
    "fgs-table",
    "film-grain-table",
];

fn not_allowed(code: ErrorCode, number: usize, message: String) -> CodedError {
    CodedError::new(code, format!("pass {number}: {message}"))
}

/// Check every option of every pass against the rules above.
pub fn check_passes(passes: &[Pass]) -> Result<(), CodedError> {
    for (index, pass) in passes.iter().enumerate() {
        let number = index + 1;
        for pair in &pass.infile_options {
            check_pair(number, pair)?;
            if pair.base() == "f" {
                if let Some(format) = pair.value.as_str() {
                    if DENIED_INPUT_FORMATS.contains(&format) {
                        return Err(not_allowed(
                            ErrorCode::OptionNotAllowed,
                            number,
                            format!("input format \"{format}\" reads files or addresses named inside the source and is not allowed"),
                        ));
                    }
                }
            }
        }
        for pair in &pass.outfile_options {
            check_pair(number, pair)?;
        }
    }
    Ok(())
}

fn check_pair(number: usize, pair: &OptionPair) -> Result<(), CodedError> {
    let base = pair.base();
    let flag = &pair.flag;
    if let Some((_, why)) = DENIED_FLAGS.iter().find(|(name, _)| *name == base) {
        return Err(not_allowed(
            ErrorCode::OptionNotAllowed,
            number,
            format!("-{flag} is not allowed: it {why}"),
        ));
    }
    let no_value = NO_VALUE_FLAGS.contains(&base)
        || base
            .strip_prefix("no")
            .is_some_and(|rest| NO_VALUE_FLAGS.contains(&rest));
    if no_value && !pair.value.is_flag_only() {
        return Err(not_allowed(
            ErrorCode::OptionUnexpectedValue,
            number,
            format!("-{flag} takes no value, so [\"{flag}\", null] is the only form; a value would become an extra output"),
        ));
    }
    if !no_value && pair.value.is_flag_only() {
        return Err(not_allowed(
            ErrorCode::OptionMissingValue,
            number,
            format!("-{flag} takes a value; null or \"\" would make ffmpeg read the next argument as its value"),
        ));
    }
    let Some(value) = pair.value.as_str() else {
        return Ok(());
    };
    if FILTERGRAPH_FLAGS.contains(&base) {
        check_filtergraph(number, flag, value)?;
    }
    if PARAM_STRING_FLAGS.contains(&base) {
        for item in value.split(':') {
            let key = item.split('=').next().unwrap_or("").trim();
            if DENIED_PARAM_KEYS.contains(&key) {
                return Err(not_allowed(
                    ErrorCode::OptionNotAllowed,
                    number,
                    format!("-{flag} key \"{key}\" names a file and is not allowed"),
                ));
            }
        }
    }
    Ok(())
}

fn check_filtergraph(number: usize, flag: &str, graph: &str) -> Result<(), CodedError> {
    for filter in filtergraph::parse(graph) {
        if DENIED_FILTERS.contains(&filter.name.as_str()) {
            return Err(not_allowed(
                ErrorCode::FilterNotAllowed,
                number,
                format!("filter \"{}\" in -{flag} reads or writes files or loads code and is not allowed", filter.name),
            ));
        }
        for (key, _) in &filter.args {
            if let Some(key) = key {
                if DENIED_FILTER_KEYS.contains(&key.as_str()) {
                    return Err(not_allowed(
                        ErrorCode::FilterNotAllowed,
                        number,
                        format!("option \"{key}\" of filter \"{}\" in -{flag} names a file and is not allowed", filter.name),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Encoders that current FFmpeg dropped, and what replaces them.
const RETIRED_ENCODERS: &[(&str, &str)] = &[("libfaac", "aac"), ("libvo_aacenc", "aac")];

/// Rewrite retired encoder names; each rewrite is reported as a warning.
pub fn modernize(passes: &mut [Pass]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (index, pass) in passes.iter_mut().enumerate() {
        for pair in pass.outfile_options.iter_mut() {
            if !matches!(pair.base(), "acodec" | "c" | "codec") {
                continue;
            }
            let Some(name) = pair.value.as_str() else {
                continue;
            };
            if let Some((old, new)) = RETIRED_ENCODERS.iter().find(|(old, _)| *old == name) {
                warnings.push(format!(
                    "pass {}: encoder {old} is not in current FFmpeg; -{} {new} (the native AAC encoder) is used instead",
                    index + 1,
                    pair.flag
                ));
                pair.value = OptValue::Str(new.to_string());
            }
        }
    }
    warnings
}

/// The muxer ffmpeg would pick for an output extension.
pub fn format_for_extension(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "mp4" | "m4v" | "m4a" | "m4b" => "mp4",
        "mov" | "qt" => "mov",
        "mkv" | "mka" => "matroska",
        "webm" => "webm",
        "ts" | "m2ts" | "mts" => "mpegts",
        "mpg" | "mpeg" => "mpeg",
        "avi" => "avi",
        "flv" => "flv",
        "ogg" | "ogv" | "oga" => "ogg",
        "opus" => "opus",
        "mp3" => "mp3",
        "aac" => "adts",
        "wav" => "wav",
        "flac" => "flac",
        "gif" => "gif",
        "mxf" => "mxf",
        "3gp" => "3gp",
        "asf" | "wmv" | "wma" => "asf",
        "nut" => "nut",
        "ac3" => "ac3",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(options: Value) -> Result<Vec<Pass>, CodedError> {
        let passes = parse_passes(&options)?;
        check_passes(&passes)?;
        Ok(passes)
    }

    fn code(options: Value) -> ErrorCode {
        check(options).unwrap_err().code
    }

    #[test]
    fn renders_like_the_seed() {
        assert_eq!(OptValue::Null.render(), None);
        assert_eq!(OptValue::Str(String::new()).render(), None);
        assert_eq!(OptValue::Int(0).render().as_deref(), Some("0"));
        assert_eq!(OptValue::Float(0.0).render().as_deref(), Some("0.0"));
        assert_eq!(OptValue::Float(1.5).render().as_deref(), Some("1.5"));
        assert_eq!(OptValue::Bool(false).render().as_deref(), Some("False"));
        assert_eq!(OptValue::Bool(true).render().as_deref(), Some("True"));
    }

    #[test]
    fn seed_presets_pass_the_check() {
        let web_medium = json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "medium"], ["vprofile", "baseline"], ["b", "400k"], ["bufsize", "400k"], ["vf", "yadif,scale='640:trunc(ow/a/2)*2'"], ["pass", "1"], ["f", "mp4"], ["keyint_min", "60"], ["g", "120"], ["an", null]]}, {"outfile_options": [["vcodec", "libx264"], ["preset", "medium"], ["vprofile", "baseline"], ["b", "400k"], ["bufsize", "400k"], ["vf", "yadif,scale='640:trunc(ow/a/2)*2'"], ["pass", "2"], ["acodec", "libfaac"], ["ab", "128k"], ["async", "480"], ["keyint_min", "60"], ["g", "120"], ["f", "mp4"]], "move_atom_to_front": true}]);
        let passes = check(web_medium).unwrap();
        assert_eq!(passes.len(), 2);
        assert!(passes[1].move_atom_to_front);
        assert_eq!(passes[0].output_format(), Some("mp4"));
    }

    #[test]
    fn stream_specifiers_are_ordinary() {
        check(json!([{"outfile_options": [["b:v", "1M"], ["profile:v", "high"], ["c:a", "aac"], ["metadata:s:a:0", "language=eng"], ["filter:v", "scale=320:-2"]]}])).unwrap();
    }

    #[test]
    fn arity_is_known() {
        assert_eq!(
            code(json!([{"outfile_options": [["an", "/x.mp4"]]}])),
            ErrorCode::OptionUnexpectedValue
        );
        assert_eq!(
            code(json!([{"outfile_options": [["an", true]]}])),
            ErrorCode::OptionUnexpectedValue
        );
        assert_eq!(
            code(json!([{"outfile_options": [["noautorotate", "x"]]}])),
            ErrorCode::OptionUnexpectedValue
        );
        assert_eq!(
            code(json!([{"outfile_options": [["b", null]]}])),
            ErrorCode::OptionMissingValue
        );
        assert_eq!(
            code(json!([{"infile_options": [["ss", ""]]}])),
            ErrorCode::OptionMissingValue
        );
    }

    #[test]
    fn file_touching_flags_are_refused() {
        for flag in [
            "i",
            "y",
            "n",
            "passlogfile",
            "progress",
            "report",
            "filter_script",
            "attach",
            "dump_attachment",
            "stats_file",
            "vstats_file",
            "fpre",
            "hls_segment_filename",
        ] {
            let err = check(json!([{"outfile_options": [[flag, "x"]]}])).unwrap_err();
            assert_eq!(err.code, ErrorCode::OptionNotAllowed, "{flag}");
        }
        assert_eq!(
            code(json!([{"infile_options": [["f", "concat"]]}])),
            ErrorCode::OptionNotAllowed
        );
        assert_eq!(
            code(json!([{"outfile_options": [["x264-params", "keyint=60:stats=/tmp/x"]]}])),
            ErrorCode::OptionNotAllowed
        );
    }

    #[test]
    fn file_reading_filters_are_refused() {
        for graph in [
            "movie=/etc/passwd",
            "scale=640:-1,amovie=/etc/passwd",
            "subtitles=/srv/a.srt",
            "ass=a.ass",
            "lut3d=/x.cube",
            "lut3d=file=/x.cube",
            "sendcmd=f=/tmp/cmds",
            "[in]null[a];[a]drawtext=textfile=/etc/shadow[out]",
            "psnr=stats_file=/tmp/x",
            "'mo'vie=/etc/passwd",
        ] {
            let err = check(json!([{"outfile_options": [["vf", graph]]}])).unwrap_err();
            assert_eq!(err.code, ErrorCode::FilterNotAllowed, "{graph}");
        }
        check(json!([{"outfile_options": [["vf", "yadif,scale=640:-1,drawtext=text='hi':x=10"]]}]))
            .unwrap();
    }

    #[test]
    fn shapes_and_values() {
        assert_eq!(code(json!([])), ErrorCode::EmptyPasses);
        assert_eq!(code(json!([{}, {}, {}])), ErrorCode::TooManyPasses);
        assert_eq!(code(json!({"a": 1})), ErrorCode::InvalidJobOptions);
        assert_eq!(
            code(json!([{"outfile_options": [["b", ["x"]]]}])),
            ErrorCode::InvalidOptionValue
        );
        assert_eq!(
            code(json!([{"outfile_options": [["b", {"x": 1}]]}])),
            ErrorCode::InvalidOptionValue
        );
        assert_eq!(
            code(json!([{"outfile_options": [["b"]]}])),
            ErrorCode::InvalidOptionPair
        );
        assert_eq!(
            code(json!([{"outfile_options": [["-b", "1"]]}])),
            ErrorCode::InvalidOptionPair
        );
        assert_eq!(code(json!([{"bogus": 1}])), ErrorCode::InvalidJobOptions);
    }

    #[test]
    fn retired_encoders_are_replaced_with_a_warning() {
        let mut passes = parse_passes(&json!([{"outfile_options": [["acodec", "libfaac"]]}, {"outfile_options": [["c:a", "libvo_aacenc"]]}])).unwrap();
        let warnings = modernize(&mut passes);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("libfaac"));
        assert_eq!(
            passes[0].outfile_options[0].value,
            OptValue::Str("aac".into())
        );
        assert_eq!(
            passes[1].outfile_options[0].value,
            OptValue::Str("aac".into())
        );
    }
}
