//! Validation of a submitted job body, shared by `/job/submit` and `/v1/jobs`.
//!
//! The seed's five required-key checks come first, with the seed's exact
//! messages; the other checks follow in the order the fields are read.

use crate::error::{CodedError, ErrorCode};
use crate::nommers::{self, Nommer};
use crate::options::{self, Allowlist, Pass};
use crate::tasks::TaskPlan;
use crate::uri::{self, MediaUri};
use serde_json::{Map, Value};

/// The longest `max_runtime_s` a job may ask for (a week); a worker's own
/// `max_job_runtime` may be lower, and the lower one applies.
pub const MAX_RUNTIME_S: u64 = 7 * 24 * 3600;

/// A job body that passed every check that needs no configuration.
#[derive(Debug, Clone)]
pub struct Submission {
    pub source: MediaUri,
    /// The job's one destination; with `outputs`, the first output's (a
    /// prefix's probe name for the kinds that write many files).
    pub dest: MediaUri,
    /// Every place the job writes, to check at submit: `dest`, or each output's.
    pub writes: Vec<MediaUri>,
    /// `dest_path` as stored (credentials kept) and as shown (redacted):
    /// a prefix for a job whose outputs name relative paths.
    pub dest_uri: String,
    pub dest_path: String,
    /// The job's outputs, when it gave `outputs` (or named a preset of them).
    pub outputs: Vec<crate::outputs::Output>,
    /// The preset the job was expanded from.
    pub preset: Option<String>,
    pub notify_url: Option<url::Url>,
    pub nommer: &'static dyn Nommer,
    pub passes: Vec<Pass>,
    /// The tasks that carry the job out, as its nommer planned them.
    pub tasks: Vec<TaskPlan>,
    /// The `{nommer, options}` object with `options` in canonical form: the
    /// checked passes, as stored and as the lease carries them.
    pub job_options: Value,
    pub warnings: Vec<String>,
    pub max_attempts: Option<u32>,
    /// The job's own wall-clock limit per attempt, in seconds.
    pub max_runtime_s: Option<u64>,
    /// The job is split into chunks across the fleet.
    pub chunked: Option<crate::chunked::ChunkRequest>,
    /// Higher runs first, from -50 to 50 (0 when not given).
    pub priority: i32,
    /// The queue the job names; feederd checks it against its config.
    pub queue: Option<String>,
    /// How its webhooks are sent, when the job says; otherwise the API's default.
    pub notify_format: Option<crate::kinds::NotifyFormat>,
}

/// The range of `priority` (MediaConvert's).
pub const PRIORITIES: std::ops::RangeInclusive<i32> = -50..=50;

/// The queue a job runs in when it names none.
pub const DEFAULT_QUEUE: &str = "default";

/// Python truthiness of a decoded JSON value.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    }
}

fn err(code: ErrorCode, message: impl Into<String>) -> CodedError {
    CodedError::new(code, message)
}

/// The five checks whose answers old clients know, message for message.
pub fn seed_required_keys(payload: &Map<String, Value>) -> Result<(), CodedError> {
    for key in ["source_path", "dest_path", "job_options"] {
        if !truthy(payload.get(key)) {
            return Err(err(
                ErrorCode::MissingField,
                format!("Missing/invalid required key+val: ['{key}']"),
            ));
        }
    }
    let Some(Value::Object(job_options)) = payload.get("job_options") else {
        return Err(err(
            ErrorCode::InvalidJobOptions,
            "job_options must be an object with \"nommer\" and \"options\"",
        ));
    };
    for key in ["options", "nommer"] {
        if !truthy(job_options.get(key)) {
            return Err(err(
                ErrorCode::MissingField,
                format!("Missing/invalid required key+val: ['job_options'][{key}]"),
            ));
        }
    }
    Ok(())
}

/// Decode a raw request body (whatever its Content-Type) and validate it.
pub fn parse_body(body: &[u8], allow: &Allowlist) -> Result<Submission, CodedError> {
    parse_payload(&decode(body)?, allow)
}

/// A raw request body (whatever its Content-Type) as a JSON object.
pub fn decode(body: &[u8]) -> Result<Map<String, Value>, CodedError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(err(
            ErrorCode::EmptyBody,
            "The request body is empty; send a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        err(
            ErrorCode::InvalidJson,
            format!("The request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(payload) = value else {
        return Err(err(
            ErrorCode::NotAnObject,
            "The request body must be a JSON object",
        ));
    };
    Ok(payload)
}

pub fn parse_payload(
    payload: &Map<String, Value>,
    allow: &Allowlist,
) -> Result<Submission, CodedError> {
    parse_expanded(payload, allow, None)
}

/// [`parse_payload`] of a body a preset was expanded into (`presets::expand`).
pub fn parse_expanded(
    payload: &Map<String, Value>,
    allow: &Allowlist,
    preset: Option<&str>,
) -> Result<Submission, CodedError> {
    if payload.contains_key("overrides") {
        return Err(err(
            ErrorCode::InvalidField,
            "overrides change a preset's flags: name the preset with \"preset\"",
        ));
    }
    let mut submission = match payload.contains_key("outputs") {
        true => parse_outputs_job(payload, allow)?,
        false => parse_plain(payload, allow)?,
    };
    if let (Some(name), Value::Object(job_options)) = (preset, &mut submission.job_options) {
        job_options.insert("preset".into(), Value::String(name.to_string()));
        submission.preset = Some(name.to_string());
    }
    Ok(submission)
}

/// The fields every job may give beside its destinations and options.
struct Common {
    notify_url: Option<url::Url>,
    max_attempts: Option<u32>,
    max_runtime_s: Option<u64>,
    priority: i32,
    queue: Option<String>,
    notify_format: Option<crate::kinds::NotifyFormat>,
}

/// A job with `outputs`: one decode of the source, many results. A chunked
/// one has one file output, and runs as a plain chunked job.
fn parse_outputs_job(
    payload: &Map<String, Value>,
    allow: &Allowlist,
) -> Result<Submission, CodedError> {
    if !truthy(payload.get("source_path")) {
        return Err(err(
            ErrorCode::MissingField,
            "Missing/invalid required key+val: ['source_path']",
        ));
    }
    if payload.contains_key("job_options") {
        return Err(err(
            ErrorCode::InvalidField,
            "give outputs or job_options, not both: each file output carries its own options",
        ));
    }
    let source = uri_field(payload, "source_path")?;
    let prefix = match payload.get("dest_path") {
        None | Some(Value::Null) => None,
        Some(Value::String(prefix)) if prefix.ends_with('/') => {
            MediaUri::parse(&format!("{prefix}probe")).map_err(|mut e| {
                e.message = format!("dest_path: {}", e.message);
                e
            })?;
            Some(prefix.as_str())
        }
        Some(_) => {
            return Err(err(
                ErrorCode::InvalidField,
                "with outputs, dest_path is left out or is a prefix ending in / that outputs' relative paths are written under",
            ))
        }
    };
    let outputs = crate::outputs::parse_outputs(&payload["outputs"], prefix, allow)?;
    if payload.get("chunked").is_some_and(|c| !c.is_null()) {
        let [only] = outputs.as_slice() else {
            return Err(err(
                ErrorCode::ChunkingNotSupported,
                "a chunked job has one file output (chunking ladders, thumbnails and sprites is not supported)",
            ));
        };
        let crate::outputs::Body::File { passes } = &only.body else {
            return Err(err(
                ErrorCode::ChunkingNotSupported,
                "a chunked job has one file output (chunking ladders, thumbnails and sprites is not supported)",
            ));
        };
        let mut plain = payload.clone();
        plain.remove("outputs");
        plain.insert(
            "dest_path".into(),
            Value::String(only.resolve(prefix.unwrap_or_default())),
        );
        plain.insert(
            "job_options".into(),
            serde_json::json!({"nommer": "ffmpeg", "options": options::passes_to_json(passes)}),
        );
        return parse_plain(&plain, allow);
    }
    let common = common_fields(payload)?;
    let writes = outputs
        .iter()
        .map(|output| {
            let uri = output.resolve(prefix.unwrap_or_default());
            let probe = match output.is_directory() {
                true => format!("{uri}probe"),
                false => uri,
            };
            MediaUri::parse(&probe)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (dest_uri, dest_path) = match prefix {
        // Parsed with a probe name above, so it has a redacted form.
        Some(prefix) => (prefix.to_string(), crate::outputs::shown(prefix)),
        None => {
            let first = outputs[0].resolve("");
            (first.clone(), first)
        }
    };
    let mut job_options = Map::new();
    job_options.insert("nommer".into(), Value::String("ffmpeg".into()));
    job_options.insert("outputs".into(), crate::outputs::outputs_to_json(&outputs));
    Ok(Submission {
        source,
        dest: writes[0].clone(),
        writes,
        dest_uri,
        dest_path,
        outputs,
        preset: None,
        notify_url: common.notify_url,
        nommer: nommers::find("ffmpeg").expect("the ffmpeg nommer"),
        passes: Vec::new(),
        tasks: vec![TaskPlan::of(crate::kinds::TaskKind::Ffmpeg)],
        job_options: Value::Object(job_options),
        warnings: Vec::new(),
        max_attempts: common.max_attempts,
        max_runtime_s: common.max_runtime_s,
        chunked: None,
        priority: common.priority,
        queue: common.queue,
        notify_format: common.notify_format,
    })
}

fn common_fields(payload: &Map<String, Value>) -> Result<Common, CodedError> {
    let notify_url = match payload.get("notify_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(uri::parse_notify_url(s)?),
        Some(_) => {
            return Err(err(
                ErrorCode::InvalidField,
                "notify_url must be a string URL or null",
            ))
        }
    };

    let max_attempts = match payload.get("max_attempts") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v @ 1..=20) => Some(v as u32),
            _ => {
                return Err(err(
                    ErrorCode::InvalidField,
                    "max_attempts must be an integer from 1 to 20",
                ))
            }
        },
        Some(_) => {
            return Err(err(
                ErrorCode::InvalidField,
                "max_attempts must be an integer from 1 to 20",
            ))
        }
    };

    let max_runtime_s = match payload.get("max_runtime_s") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v @ 1..=MAX_RUNTIME_S) => Some(v),
            _ => {
                return Err(err(
                    ErrorCode::InvalidField,
                    format!("max_runtime_s must be an integer from 1 to {MAX_RUNTIME_S}"),
                ))
            }
        },
        Some(_) => {
            return Err(err(
                ErrorCode::InvalidField,
                format!("max_runtime_s must be an integer from 1 to {MAX_RUNTIME_S}"),
            ))
        }
    };
    let priority = match payload.get("priority") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => match n.as_i64().map(i32::try_from) {
            Some(Ok(v)) if PRIORITIES.contains(&v) => v,
            _ => return Err(bad_priority()),
        },
        Some(_) => return Err(bad_priority()),
    };
    let queue = match payload.get("queue") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if crate::presets::name_ok(name) => Some(name.clone()),
        Some(_) => {
            return Err(err(
                ErrorCode::InvalidField,
                "queue must be a queue name: 1 to 64 of a-z, 0-9, _ and -",
            ))
        }
    };
    let notify_format = match payload.get("notify_format") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.parse().map_err(|_| {
            err(
                ErrorCode::InvalidField,
                "notify_format must be \"json\" or \"form\"",
            )
        })?),
        Some(_) => {
            return Err(err(
                ErrorCode::InvalidField,
                "notify_format must be \"json\" or \"form\"",
            ))
        }
    };
    Ok(Common {
        notify_url,
        max_attempts,
        max_runtime_s,
        priority,
        queue,
        notify_format,
    })
}

fn bad_priority() -> CodedError {
    err(
        ErrorCode::InvalidField,
        format!(
            "priority must be an integer from {} to {}",
            PRIORITIES.start(),
            PRIORITIES.end()
        ),
    )
}

fn parse_plain(payload: &Map<String, Value>, allow: &Allowlist) -> Result<Submission, CodedError> {
    seed_required_keys(payload)?;
    let Some(Value::Object(job_options)) = payload.get("job_options") else {
        unreachable!("checked by seed_required_keys");
    };

    let nommer = match job_options.get("nommer") {
        Some(Value::String(name)) => nommers::find(name).ok_or_else(|| {
            err(
                ErrorCode::UnknownNommer,
                format!(
                    "Unknown nommer \"{name}\"; known: {} (also {})",
                    nommers::names().join(", "),
                    nommers::SEED_FFMPEG_NOMMER
                ),
            )
        })?,
        _ => {
            return Err(err(
                ErrorCode::UnknownNommer,
                "job_options.nommer must be a nommer name",
            ))
        }
    };

    // The seed accepted options given as a JSON-encoded string.
    let raw_options = match job_options.get("options") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).map_err(|e| {
            err(
                ErrorCode::InvalidJobOptions,
                format!("job_options.options is a string but not JSON: {e}"),
            )
        })?,
        Some(other) => other.clone(),
        None => Value::Null,
    };

    let source = uri_field(payload, "source_path")?;
    let dest = uri_field(payload, "dest_path")?;
    let Common {
        notify_url,
        max_attempts,
        max_runtime_s,
        priority,
        queue,
        notify_format,
    } = common_fields(payload)?;

    let chunked = crate::chunked::ChunkRequest::parse(payload.get("chunked"))?;

    let nommers::Checked {
        passes,
        warnings,
        mut tasks,
    } = nommer.check(&raw_options, &dest, allow)?;
    if let Some(request) = chunked {
        let muxer = match passes.last().and_then(Pass::output_format) {
            Some(format) => format.to_ascii_lowercase(),
            None => inferred_format(&dest)?.to_string(),
        };
        crate::chunked::check(&passes, &muxer, nommer.name())?;
        tasks = crate::chunked::start_tasks(request);
    }

    // Canonical: only what is read back. A key such as `outputs` or `preset`
    // means something in the stored form, and is never taken from the body.
    let mut normalized = Map::new();
    normalized.insert("nommer".into(), job_options["nommer"].clone());
    normalized.insert("options".into(), options::passes_to_json(&passes));
    Ok(Submission {
        source,
        writes: vec![dest.clone()],
        dest_uri: dest.expose().to_string(),
        dest_path: dest.redacted(),
        dest,
        outputs: Vec::new(),
        preset: None,
        notify_url,
        nommer,
        passes,
        tasks,
        job_options: Value::Object(normalized),
        warnings,
        max_attempts,
        max_runtime_s,
        chunked,
        priority,
        queue,
        notify_format,
    })
}

fn uri_field(payload: &Map<String, Value>, key: &str) -> Result<MediaUri, CodedError> {
    match payload.get(key) {
        Some(Value::String(text)) => MediaUri::parse(text).map_err(|mut e| {
            e.message = format!("{key}: {}", e.message);
            e
        }),
        _ => Err(err(
            ErrorCode::InvalidField,
            format!("{key} must be a URI string"),
        )),
    }
}

/// The muxer for a destination whose passes name none: from its extension,
/// and only a muxer on the allowlist.
pub fn inferred_format(dest: &MediaUri) -> Result<&'static str, CodedError> {
    let ext = dest.extension();
    if let Some(format) = ext.as_deref().and_then(options::format_for_extension) {
        return Ok(format);
    }
    if let Some(format) = ext.as_deref().and_then(options::formats::refused_extension) {
        return Err(err(
            ErrorCode::FormatNotAllowed,
            format!(
                "dest_path \"{}\" would be written with the {format} muxer, which is not allowed; name an allowed format with [\"f\", FORMAT]",
                dest.redacted()
            ),
        ));
    }
    Err(err(
        ErrorCode::OutputFormatUnknown,
        format!(
            "No [\"f\", FORMAT] option and dest_path \"{}\" has no known extension to infer it from",
            dest.redacted()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: Value) -> (ErrorCode, String) {
        let e = parse_body(body.to_string().as_bytes(), Allowlist::builtin()).unwrap_err();
        (e.code, e.message)
    }

    fn example() -> Value {
        json!({"source_path": "file:///in/a.mp4", "dest_path": "file:///out/b.mp4", "notify_url": null,
               "job_options": {"nommer": nommers::SEED_FFMPEG_NOMMER, "options": [{"outfile_options": [["vcodec", "libx264"], ["f", "mp4"]]}]}})
    }

    #[test]
    fn the_five_seed_messages_in_order() {
        let cases = [
            (
                json!({}),
                "Missing/invalid required key+val: ['source_path']",
            ),
            (
                json!({"source_path": "x"}),
                "Missing/invalid required key+val: ['dest_path']",
            ),
            (
                json!({"source_path": "x", "dest_path": "y", "job_options": {}}),
                "Missing/invalid required key+val: ['job_options']",
            ),
            (
                json!({"source_path": "x", "dest_path": "y", "job_options": {"nommer": "ffmpeg"}}),
                "Missing/invalid required key+val: ['job_options'][options]",
            ),
            (
                json!({"source_path": "x", "dest_path": "y", "job_options": {"options": [{}]}}),
                "Missing/invalid required key+val: ['job_options'][nommer]",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                message(body),
                (ErrorCode::MissingField, expected.to_string())
            );
        }
    }

    #[test]
    fn accepts_the_example_and_json_string_options() {
        let ok = parse_body(example().to_string().as_bytes(), Allowlist::builtin()).unwrap();
        assert_eq!(ok.nommer.name(), "ffmpeg");
        assert!(ok.notify_url.is_none());
        let mut body = example();
        body["job_options"]["options"] =
            json!(json!([{"outfile_options": [["f", "mp4"]]}]).to_string());
        let ok = parse_body(body.to_string().as_bytes(), Allowlist::builtin()).unwrap();
        assert!(ok.job_options["options"].is_array());
        body["notify_url"] = json!("");
        assert!(
            parse_body(body.to_string().as_bytes(), Allowlist::builtin())
                .unwrap()
                .notify_url
                .is_none()
        );
    }

    #[test]
    fn body_level_failures() {
        assert_eq!(
            parse_body(b"", Allowlist::builtin()).unwrap_err().code,
            ErrorCode::EmptyBody
        );
        assert_eq!(
            parse_body(b"{", Allowlist::builtin()).unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse_body(b"[1]", Allowlist::builtin()).unwrap_err().code,
            ErrorCode::NotAnObject
        );
        let mut body = example();
        body["job_options"] = json!("text");
        assert_eq!(message(body).0, ErrorCode::InvalidJobOptions);
        let mut body = example();
        body["job_options"]["nommer"] = json!("FFmpegNommer");
        assert_eq!(message(body).0, ErrorCode::UnknownNommer);
        let mut body = example();
        body["job_options"]["options"] = json!("[]");
        assert_eq!(message(body).0, ErrorCode::EmptyPasses);
        let mut body = example();
        body["source_path"] = json!(5);
        assert_eq!(message(body).0, ErrorCode::InvalidField);
        let mut body = example();
        body["notify_url"] = json!("gopher://x/");
        assert_eq!(message(body).0, ErrorCode::UriUnknownScheme);
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("60"),
            json!(MAX_RUNTIME_S + 1),
        ] {
            let mut body = example();
            body["max_runtime_s"] = bad;
            assert_eq!(message(body).0, ErrorCode::InvalidField);
        }
        let mut body = example();
        body["max_runtime_s"] = json!(90);
        let ok = parse_body(body.to_string().as_bytes(), Allowlist::builtin()).unwrap();
        assert_eq!(ok.max_runtime_s, Some(90));
    }

    #[test]
    fn job_options_keep_only_what_is_read_back() {
        let mut body = example();
        body["job_options"]["outputs"] =
            json!([{"kind": "thumbnail", "dest_path": "file:///etc/", "every_seconds": 1}]);
        body["job_options"]["preset"] = json!("web_medium");
        let ok = parse_body(body.to_string().as_bytes(), Allowlist::builtin()).unwrap();
        assert!(ok.outputs.is_empty());
        assert_eq!(
            ok.job_options
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["nommer", "options"]
        );
        let mut body = example();
        body["overrides"] = json!([["b:v", "1M"]]);
        assert_eq!(message(body).0, ErrorCode::InvalidField);
    }

    #[test]
    fn output_format_is_inferred_or_required() {
        let mut body = example();
        body["job_options"]["options"] = json!([{"outfile_options": [["vcodec", "libx264"]]}]);
        assert!(parse_body(body.to_string().as_bytes(), Allowlist::builtin()).is_ok());
        body["dest_path"] = json!("file:///out/noext");
        assert_eq!(message(body).0, ErrorCode::OutputFormatUnknown);
    }
}
