//! The FFmpeg nommer's options in the seed's format: a list of at
//! most two passes, each with `infile_options` and `outfile_options` as ordered
//! `[flag, value]` pairs and an optional `move_atom_to_front`.
//!
//! The check (`check.rs`) accepts only what the allowlist (`allow.rs`) names,
//! and returns the passes in canonical form: filtergraphs and parameter
//! strings re-serialised, format names in lower case, global flags in their
//! own list. That form is what feederd stores, what the lease carries and
//! what nommerd checks again and runs. docs/OPTIONS.md is the user's view.

pub mod allow;
mod check;
pub mod filtergraph;
pub mod formats;
pub mod params;
pub mod token;
pub mod values;

pub use allow::Allowlist;
pub use check::check_passes;
pub use formats::format_for_extension;

use crate::error::{CodedError, ErrorCode};
use serde_json::Value;

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
    /// Flags ffmpeg reads as global wherever they stand; the check moves them
    /// here and the nommer emits them before the input.
    pub global_options: Vec<OptionPair>,
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
            "global_options" => pass.global_options = parse_pairs(number, key, value)?,
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
                        "pass {number}: unknown key \"{other}\"; allowed: infile_options, outfile_options, global_options, move_atom_to_front"
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

/// A flag name starts with an ASCII letter, so it is never a number, a
/// negative number or a second dash, and holds only ASCII: no look-alikes.
fn valid_flag_name(flag: &str) -> bool {
    let mut chars = flag.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    flag.len() <= 64
        && first.is_ascii_alphabetic()
        && chars
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '+' | '-' | '#'))
}

impl OptValue {
    fn to_json(&self) -> Value {
        match self {
            OptValue::Null => Value::Null,
            OptValue::Bool(b) => Value::Bool(*b),
            OptValue::Int(i) => Value::from(*i),
            OptValue::Float(f) => Value::from(*f),
            OptValue::Str(s) => Value::String(s.clone()),
        }
    }
}

fn pairs_to_json(pairs: &[OptionPair]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|pair| Value::Array(vec![Value::String(pair.flag.clone()), pair.value.to_json()]))
            .collect(),
    )
}

/// The passes in the seed's JSON shape, which `parse_passes` reads back
/// unchanged. `global_options` appears only where there are some.
pub fn passes_to_json(passes: &[Pass]) -> Value {
    Value::Array(
        passes
            .iter()
            .map(|pass| {
                let mut object = serde_json::Map::new();
                if !pass.global_options.is_empty() {
                    object.insert("global_options".into(), pairs_to_json(&pass.global_options));
                }
                object.insert("infile_options".into(), pairs_to_json(&pass.infile_options));
                object.insert(
                    "outfile_options".into(),
                    pairs_to_json(&pass.outfile_options),
                );
                object.insert(
                    "move_atom_to_front".into(),
                    Value::Bool(pass.move_atom_to_front),
                );
                Value::Object(object)
            })
            .collect(),
    )
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
