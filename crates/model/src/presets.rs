//! Presets: named job shapes a job asks for with `"preset": NAME`. A preset
//! is an `outputs` list whose outputs carry relative `path`s, or one
//! `job_options` value with the `path` of its file. A job's `dest_path` is
//! then a prefix; the preset is expanded into the job at submit and stored
//! so, and `overrides` replace or add flags in its passes and renditions.
//!
//! The built-in ones are `presets/builtin.json`; operators add their own in
//! config or through the API. Every preset is checked when it is written,
//! by the same check as a job.

use crate::error::{CodedError, ErrorCode};
use crate::options::Allowlist;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

const BUILTIN: &str = include_str!("presets/builtin.json");
/// The most flags one job may override.
pub const MAX_OVERRIDES: usize = 32;

/// Where a preset comes from: only API presets may be changed through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Config,
    Api,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Builtin => "builtin",
            Origin::Config => "config",
            Origin::Api => "api",
        }
    }
}

/// The built-in presets, each in canonical form (`{name, description, ...}`).
pub fn builtin() -> &'static [Value] {
    static PRESETS: OnceLock<Vec<Value>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        let raw: Vec<Value> = serde_json::from_str(BUILTIN).expect("presets/builtin.json is JSON");
        raw.into_iter()
            .map(|preset| {
                let name = preset["name"].as_str().unwrap_or_default().to_string();
                check(&name, &preset, Allowlist::builtin())
                    .unwrap_or_else(|e| panic!("built-in preset {name}: {}", e.message))
            })
            .collect()
    })
}

fn bad(message: impl Into<String>) -> CodedError {
    CodedError::new(ErrorCode::InvalidPreset, message)
}

pub fn name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// The probe prefix a preset's relative paths are checked under.
const PROBE_PREFIX: &str = "file:///preset/";

/// Check a preset named `name` and give it back in canonical form: its
/// outputs or job options as a job would store them.
pub fn check(name: &str, body: &Value, allow: &Allowlist) -> Result<Value, CodedError> {
    if !name_ok(name) {
        return Err(bad(format!(
            "preset name \"{}\" must be 1-64 lower-case letters, digits, _ or -",
            name.chars().take(70).collect::<String>()
        )));
    }
    let Value::Object(map) = body else {
        return Err(bad("a preset is a JSON object"));
    };
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "name" | "description" | "outputs" | "job_options" | "path"
        ) {
            return Err(bad(format!(
                "unknown key \"{key}\"; a preset has description, and outputs or job_options with path"
            )));
        }
    }
    if let Some(given) = map.get("name").and_then(Value::as_str) {
        if given != name {
            return Err(bad(format!(
                "the body names \"{given}\", the path \"{name}\""
            )));
        }
    }
    let description = match map.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) if text.len() <= 500 => text.clone(),
        Some(_) => return Err(bad("description is a string of at most 500 bytes")),
    };
    let mut canonical = Map::new();
    canonical.insert("name".into(), json!(name));
    canonical.insert("description".into(), json!(description));
    let relabel = |e: CodedError| bad(format!("preset {name}: {} ({})", e.message, e.code));
    match (map.get("outputs"), map.get("job_options")) {
        (Some(outputs), None) => {
            if map.contains_key("path") {
                return Err(bad("an outputs preset gives each output its own path"));
            }
            let parsed = crate::outputs::parse_outputs(outputs, Some(PROBE_PREFIX), allow)
                .map_err(relabel)?;
            if let Some(index) = parsed
                .iter()
                .position(|o| !matches!(o.target, crate::outputs::Target::Path(_)))
            {
                return Err(bad(format!(
                    "outputs[{index}]: a preset's outputs name a relative path, not a dest_path"
                )));
            }
            canonical.insert("outputs".into(), crate::outputs::outputs_to_json(&parsed));
        }
        (None, Some(job_options)) => {
            let Some(Value::String(path)) = map.get("path") else {
                return Err(bad(
                    "a job_options preset names the path of its file (\"video.mp4\")",
                ));
            };
            let file_ok = !path.is_empty()
                && path.len() <= 128
                && !path.contains('/')
                && !path.starts_with('.')
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !file_ok {
                return Err(bad(format!(
                    "path \"{path}\" must be a file name: letters, digits, - _ ."
                )));
            }
            let job = json!({"source_path": "file:///preset/source.mov",
                             "dest_path": format!("{PROBE_PREFIX}{path}"),
                             "job_options": job_options});
            let submission =
                crate::submit::parse_payload(job.as_object().expect("an object"), allow)
                    .map_err(relabel)?;
            canonical.insert("path".into(), json!(path));
            canonical.insert("job_options".into(), submission.job_options);
        }
        _ => {
            return Err(bad(
                "a preset has outputs, or job_options with a path (one of the two)",
            ))
        }
    }
    Ok(Value::Object(canonical))
}

/// A job body that names a preset, with the preset (in canonical form)
/// expanded into it: `outputs` under the job's `dest_path` prefix, or its
/// `job_options` with `dest_path` the prefix plus the preset's path; each
/// override applied. The body's other fields are kept.
pub fn expand(
    payload: &Map<String, Value>,
    preset: &Value,
) -> Result<Map<String, Value>, CodedError> {
    let name = preset["name"].as_str().unwrap_or_default();
    for key in ["outputs", "job_options"] {
        if payload.contains_key(key) {
            return Err(CodedError::new(
                ErrorCode::InvalidField,
                format!("a job that names a preset gives no {key}: the preset {name} does"),
            ));
        }
    }
    let prefix = match payload.get("dest_path") {
        Some(Value::String(prefix)) if prefix.ends_with('/') => prefix.clone(),
        _ => {
            return Err(CodedError::new(
                ErrorCode::InvalidField,
                format!("a job that names a preset gives a dest_path prefix ending in / (the preset {name} writes under it)"),
            ))
        }
    };
    let overrides = parse_overrides(payload.get("overrides"))?;
    let mut job = payload.clone();
    job.remove("preset");
    job.remove("overrides");
    if let Some(outputs) = preset.get("outputs") {
        let mut outputs = outputs.clone();
        for output in outputs.as_array_mut().into_iter().flatten() {
            override_output(output, &overrides);
        }
        job.insert("outputs".into(), outputs);
    } else {
        let mut job_options = preset["job_options"].clone();
        for pass in job_options["options"].as_array_mut().into_iter().flatten() {
            override_list(&mut pass["outfile_options"], &overrides, "");
        }
        let path = preset["path"].as_str().unwrap_or_default();
        job.insert("dest_path".into(), json!(format!("{prefix}{path}")));
        job.insert("job_options".into(), job_options);
    }
    Ok(job)
}

fn parse_overrides(value: Option<&Value>) -> Result<Vec<(String, Value)>, CodedError> {
    let refuse = |why: &str| {
        CodedError::new(
            ErrorCode::InvalidField,
            format!("overrides is a list of at most {MAX_OVERRIDES} [flag, value] pairs: {why}"),
        )
    };
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_OVERRIDES => items,
        Some(_) => return Err(refuse("not such a list")),
    };
    items
        .iter()
        .map(|item| match item.as_array().map(Vec::as_slice) {
            Some([Value::String(flag), value]) if !value.is_array() && !value.is_object() => {
                Ok((flag.clone(), value.clone()))
            }
            _ => Err(refuse(&format!("{item} is not a [flag, value] pair"))),
        })
        .collect()
}

/// Replace `flag` (as `flag`, or as its base plus `strip`'s specifier)
/// wherever it is in `list`, and append it where it is not.
fn override_list(list: &mut Value, overrides: &[(String, Value)], strip: &str) {
    if !list.is_array() {
        *list = json!([]);
    }
    let pairs = list.as_array_mut().expect("made an array");
    for (flag, value) in overrides {
        let flag = match strip.is_empty() {
            true => flag.as_str(),
            false => flag.strip_suffix(strip).unwrap_or(flag),
        };
        let mut found = false;
        for pair in pairs.iter_mut() {
            if pair[0].as_str() == Some(flag) {
                pair[1] = value.clone();
                found = true;
            }
        }
        if !found {
            pairs.push(json!([flag, value]));
        }
    }
}

/// Overrides of one output of a preset: a file output's passes, an abr
/// output's renditions (or its audio, for flags that name the `:a` stream).
fn override_output(output: &mut Value, overrides: &[(String, Value)]) {
    match output["kind"].as_str() {
        Some("file") => {
            for pass in output["options"].as_array_mut().into_iter().flatten() {
                override_list(&mut pass["outfile_options"], overrides, "");
            }
        }
        Some("abr") => {
            let (audio, video): (Vec<_>, Vec<_>) = overrides
                .iter()
                .cloned()
                .partition(|(flag, _)| flag.ends_with(":a"));
            // A rendition's bitrate is its video_bitrate: an override of it
            // replaces that, rung by rung, rather than adding a flag after it.
            let (bitrate, video): (Vec<_>, Vec<_>) = video
                .into_iter()
                .partition(|(flag, _)| matches!(flag.as_str(), "b:v" | "b"));
            for rendition in output["renditions"].as_array_mut().into_iter().flatten() {
                override_list(&mut rendition["options"], &video, ":v");
                if let Some((_, value)) = bitrate.last() {
                    rendition["video_bitrate"] = match value {
                        Value::String(text) => Value::String(text.clone()),
                        other => Value::String(other.to_string()),
                    };
                }
            }
            if !audio.is_empty() && output.get("audio").is_some() {
                override_list(&mut output["audio"]["options"], &audio, ":a");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_presets_pass_the_job_check() {
        let names: Vec<&str> = builtin()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "web_medium",
                "android_low",
                "cb_low",
                "cb_medium",
                "cb_high",
                "hls_h264_ladder",
                "dash_av1_ladder",
                "poster_and_sprite"
            ]
        );
        for preset in builtin() {
            let name = preset["name"].as_str().unwrap();
            assert_eq!(
                &check(name, preset, Allowlist::builtin()).unwrap(),
                preset,
                "{name} is canonical"
            );
        }
    }

    #[test]
    fn expanding_a_job_options_preset_writes_under_the_prefix() {
        let web = builtin()
            .iter()
            .find(|p| p["name"] == "web_medium")
            .unwrap();
        let job = json!({"source_path": "s3://in/a.mov", "dest_path": "s3://out/a/", "preset": "web_medium",
                         "overrides": [["b:v", "600k"], ["threads", 2]]});
        let expanded = expand(job.as_object().unwrap(), web).unwrap();
        assert_eq!(expanded["dest_path"], "s3://out/a/web_medium.mp4");
        assert!(expanded.get("preset").is_none());
        for pass in expanded["job_options"]["options"].as_array().unwrap() {
            let pairs = pass["outfile_options"].as_array().unwrap();
            assert_eq!(pairs.iter().filter(|p| p[0] == "b:v").count(), 1);
            assert!(pairs.contains(&json!(["b:v", "600k"])));
            assert!(pairs.contains(&json!(["threads", 2])));
        }
        let submission = crate::submit::parse_payload(&expanded, Allowlist::builtin()).unwrap();
        assert_eq!(submission.passes.len(), 2);
    }

    #[test]
    fn expanding_a_ladder_overrides_every_rendition() {
        let ladder = builtin()
            .iter()
            .find(|p| p["name"] == "hls_h264_ladder")
            .unwrap();
        let job = json!({"source_path": "s3://in/a.mov", "dest_path": "s3://k:s@out/a/", "preset": "hls_h264_ladder",
                         "overrides": [["preset", "fast"], ["crf", 20], ["b:a", "96k"], ["b:v", "2M"]]});
        let expanded = expand(job.as_object().unwrap(), ladder).unwrap();
        let output = &expanded["outputs"][0];
        assert_eq!(output["path"], "hls/");
        for rendition in output["renditions"].as_array().unwrap() {
            let options = rendition["options"].as_array().unwrap();
            assert!(options.contains(&json!(["preset", "fast"])));
            assert_eq!(rendition["video_bitrate"], "2M");
            assert!(!options.iter().any(|o| o[0] == "b"), "{options:?}");
            assert!(options.contains(&json!(["crf", 20])));
        }
        assert!(output["audio"]["options"]
            .as_array()
            .unwrap()
            .contains(&json!(["b", "96k"])));
        let parsed = crate::outputs::parse_outputs(
            &expanded["outputs"],
            Some("s3://k:s@out/a/"),
            Allowlist::builtin(),
        )
        .unwrap();
        assert_eq!(parsed[0].resolve("s3://k:s@out/a/"), "s3://k:s@out/a/hls/");
    }

    #[test]
    fn presets_are_checked_when_written() {
        let allow = Allowlist::builtin();
        let code = |name: &str, body: Value| check(name, &body, allow).unwrap_err().code;
        assert_eq!(
            code("Bad Name", json!({"outputs": []})),
            ErrorCode::InvalidPreset
        );
        assert_eq!(code("p", json!({})), ErrorCode::InvalidPreset);
        assert_eq!(
            code(
                "p",
                json!({"outputs": [{"kind": "thumbnail", "dest_path": "s3://b/p/", "every_seconds": 5}]})
            ),
            ErrorCode::InvalidPreset
        );
        assert_eq!(
            code(
                "p",
                json!({"job_options": {"nommer": "ffmpeg", "options": [{"outfile_options": [["f", "mp4"]]}]}, "path": "../x.mp4"})
            ),
            ErrorCode::InvalidPreset
        );
        assert_eq!(
            code(
                "p",
                json!({"job_options": {"nommer": "ffmpeg", "options": [{"outfile_options": [["filter_complex", "movie=/etc/passwd"]]}]}, "path": "x.mp4"})
            ),
            ErrorCode::InvalidPreset
        );
        let ok = check(
            "thumbs",
            &json!({"outputs": [{"kind": "thumbnail", "path": "t/", "every_seconds": 10}]}),
            allow,
        )
        .unwrap();
        assert_eq!(ok["outputs"][0]["format"], "jpg");
        let job =
            json!({"source_path": "s3://in/a.mov", "dest_path": "s3://out/a", "preset": "thumbs"});
        assert_eq!(
            expand(job.as_object().unwrap(), &ok).unwrap_err().code,
            ErrorCode::InvalidField
        );
    }
}
