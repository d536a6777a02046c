//! One check, run by feederd at submit and by nommerd before it runs
//! anything: every flag and filter is looked up in the allowlist, every value
//! checked against its kind, and the passes come back in canonical form.

use super::allow::{Allowlist, FlagRule, Place, Verdict};
use super::filtergraph::{self, Filter, Graph, RawGraph};
use super::params::{self, Family, ParamError};
use super::values::{self, ValueKind};
use super::{formats, OptValue, OptionPair, Pass};
use crate::error::{CodedError, ErrorCode};

/// Which list a pair came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Global,
    Infile,
    Outfile,
}

impl List {
    fn name(self) -> &'static str {
        match self {
            List::Global => "global_options",
            List::Infile => "infile_options",
            List::Outfile => "outfile_options",
        }
    }
}

fn refuse(code: ErrorCode, number: usize, message: String) -> CodedError {
    CodedError::new(code, format!("pass {number}: {message}"))
}

/// Check every pass and return it in canonical form.
pub fn check_passes(passes: Vec<Pass>, allow: &Allowlist) -> Result<Vec<Pass>, CodedError> {
    passes
        .into_iter()
        .enumerate()
        .map(|(index, pass)| check_pass(index + 1, pass, allow))
        .collect()
}

fn check_pass(number: usize, pass: Pass, allow: &Allowlist) -> Result<Pass, CodedError> {
    let mut out = Pass {
        move_atom_to_front: pass.move_atom_to_front,
        ..Pass::default()
    };
    for (list, pairs) in [
        (List::Global, pass.global_options),
        (List::Infile, pass.infile_options),
        (List::Outfile, pass.outfile_options),
    ] {
        for pair in pairs {
            let (pair, global) = check_pair(number, list, pair, allow)?;
            match (global, list) {
                (true, _) => out.global_options.push(pair),
                (false, List::Infile) => out.infile_options.push(pair),
                (false, _) => out.outfile_options.push(pair),
            }
        }
    }
    Ok(out)
}

/// ffmpeg's stream specifiers (`v`, `a:0`, `p:1:v`, `m:language:eng`, `#0x1`)
/// and metadata specifiers (`g`, `s:a:0`, `c:0`); their syntax is ffmpeg's to
/// judge, ours only that they are short and plain.
fn valid_spec(spec: &str) -> bool {
    !spec.is_empty()
        && spec.len() <= 48
        && spec.split(':').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_#.-".contains(c))
        })
}

fn check_pair(
    number: usize,
    list: List,
    pair: OptionPair,
    allow: &Allowlist,
) -> Result<(OptionPair, bool), CodedError> {
    let flag = pair.flag.clone();
    let (base, spec) = match flag.split_once(':') {
        Some((base, spec)) => (base, Some(spec)),
        None => (flag.as_str(), None),
    };
    let rule = match allow.flag(base) {
        Verdict::Allowed(rule) => rule,
        Verdict::Refused(reason) => {
            return Err(refuse(
                ErrorCode::OptionNotAllowed,
                number,
                format!("-{base} is not allowed: {reason}"),
            ))
        }
        Verdict::Unknown => {
            return Err(refuse(
                ErrorCode::OptionNotAllowed,
                number,
                format!(
                    "-{base} is not an option this service allows (docs/OPTIONS.md lists them)"
                ),
            ))
        }
    };
    if let Some(spec) = spec {
        if !rule.spec {
            return Err(refuse(
                ErrorCode::OptionNotAllowed,
                number,
                format!("-{base} takes no stream specifier, so -{flag} is not allowed"),
            ));
        }
        if !valid_spec(spec) {
            return Err(refuse(
                ErrorCode::InvalidOptionPair,
                number,
                format!("\"{spec}\" in -{flag} is not a stream specifier"),
            ));
        }
    }
    let global = rule.place == Place::Global;
    let fits = match list {
        List::Global => global,
        List::Infile => rule.place.allows_input(),
        List::Outfile => rule.place.allows_output(),
    };
    if !fits {
        let belongs = match rule.place {
            Place::Input => "an input option (infile_options)",
            Place::Output => "an output option (outfile_options)",
            Place::Both => "a per-file option (infile_options or outfile_options)",
            Place::Global => "a global option",
        };
        return Err(refuse(
            ErrorCode::OptionNotAllowed,
            number,
            format!("-{flag} is {belongs} and cannot stand in {}", list.name()),
        ));
    }
    if !rule.takes_value() {
        if !pair.value.is_flag_only() {
            return Err(refuse(
                ErrorCode::OptionUnexpectedValue,
                number,
                format!("-{flag} takes no value, so [\"{flag}\", null] is the only form; a value would become an extra output"),
            ));
        }
        return Ok((OptionPair::new(&flag, OptValue::Null), global));
    }
    let Some(text) = pair.value.render() else {
        return Err(refuse(
            ErrorCode::OptionMissingValue,
            number,
            format!("-{flag} takes a value; null or \"\" would make ffmpeg read the next argument as its value"),
        ));
    };
    let input = list == List::Infile;
    let value = match check_value(number, &flag, &rule, &text, input, allow)? {
        Some(canonical) => OptValue::Str(canonical),
        None => pair.value,
    };
    Ok((OptionPair::new(&flag, value), global))
}

/// Check a rendered value; `Some` is its canonical form where it has one.
fn check_value(
    number: usize,
    flag: &str,
    rule: &FlagRule,
    text: &str,
    input: bool,
    allow: &Allowlist,
) -> Result<Option<String>, CodedError> {
    let wrong = |what: String| refuse(ErrorCode::InvalidOptionValue, number, what);
    match &rule.kind {
        ValueKind::Codec => {
            let (names, what) = if input {
                (formats::DECODERS, "decoder")
            } else {
                (formats::ENCODERS, "encoder")
            };
            if names.contains(&text) {
                return Ok(None);
            }
            Err(wrong(format!(
                "-{flag} {text}: not an {what} this service allows; allowed: {}",
                names.join(", ")
            )))
        }
        ValueKind::Format => {
            let found = if input {
                formats::demuxer(text)
            } else {
                formats::muxer(text)
            };
            found.map(Some).ok_or_else(|| {
                let (what, names) = if input {
                    ("input format (demuxer)", formats::DEMUXERS)
                } else {
                    ("output format (muxer)", formats::MUXERS)
                };
                refuse(
                    ErrorCode::FormatNotAllowed,
                    number,
                    format!(
                        "-{flag} {text}: not an {what} this service allows; allowed: {}",
                        names.join(", ")
                    ),
                )
            })
        }
        ValueKind::Filtergraph => check_graph(number, flag, text, allow).map(Some),
        ValueKind::Params => {
            let base = flag.split(':').next().unwrap_or(flag);
            let Some((family, x264opts)) = Family::of_flag(base) else {
                return Err(wrong(format!("-{flag} is not a parameter string")));
            };
            match params::check(family, x264opts, text) {
                Ok(canonical) => Ok(Some(canonical)),
                Err(ParamError::Key(key)) => Err(refuse(
                    ErrorCode::OptionNotAllowed,
                    number,
                    format!("-{flag}: key \"{key}\" is not allowed"),
                )),
                Err(ParamError::Malformed(why)) => Err(wrong(format!("-{flag}: {why}"))),
            }
        }
        kind => {
            if values::check(kind, text) {
                return Ok(None);
            }
            Err(wrong(format!(
                "-{flag} \"{}\": expected {kind}",
                text.escape_debug()
            )))
        }
    }
}

fn label_ok(label: &str) -> bool {
    label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_:.".contains(c))
}

/// Parse a filtergraph with FFmpeg's grammar, check every filter and option,
/// and return the graph written with every argument named.
fn check_graph(
    number: usize,
    flag: &str,
    text: &str,
    allow: &Allowlist,
) -> Result<String, CodedError> {
    let syntax = |why: String| {
        refuse(
            ErrorCode::InvalidOptionValue,
            number,
            format!("-{flag}: the filtergraph cannot be read: {why}"),
        )
    };
    let not_allowed = |why: String| {
        refuse(
            ErrorCode::FilterNotAllowed,
            number,
            format!("-{flag}: {why}"),
        )
    };
    if !values::plain_text(text) {
        return Err(syntax("it holds control characters".into()));
    }
    let RawGraph { sws_flags, filters } = filtergraph::parse(text).map_err(|e| syntax(e.0))?;
    if sws_flags.is_some() {
        return Err(not_allowed(
            "a graph-level sws_flags= prefix is not allowed; give scale's own flags option".into(),
        ));
    }
    // Filters and their options first, so a refused filter is named even
    // where a label beside it is also malformed.
    let mut checked = Vec::with_capacity(filters.len());
    for (join, raw) in filters {
        let Some(rule) = allow.filter(&raw.name) else {
            return Err(not_allowed(format!(
                "filter \"{}\" is not one this service allows (docs/OPTIONS.md lists them)",
                raw.name.escape_debug()
            )));
        };
        let args = filtergraph::name_args(&raw.args, &rule.options)
            .map_err(|e| syntax(format!("filter \"{}\": {}", raw.name, e.0)))?;
        for (key, value) in &args {
            if !rule.allowed.contains(key) {
                return Err(not_allowed(format!(
                    "option \"{}\" of filter \"{}\" is not allowed",
                    key.escape_debug(),
                    raw.name
                )));
            }
            if !values::plain_text(value) {
                return Err(syntax(format!(
                    "the value of {}'s \"{key}\" holds control characters",
                    raw.name
                )));
            }
        }
        checked.push((
            join,
            Filter {
                inputs: raw.inputs,
                name: raw.name,
                instance: raw.instance,
                args,
                outputs: raw.outputs,
            },
        ));
    }
    for (_, filter) in &checked {
        for label in filter.inputs.iter().chain(&filter.outputs) {
            if !label_ok(label) {
                return Err(syntax(format!(
                    "link label [{}] may hold only letters, digits, '_', ':' and '.'",
                    label.escape_debug()
                )));
            }
        }
        if let Some(id) = &filter.instance {
            if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(syntax(format!(
                    "instance name @{} may hold only letters, digits and '_'",
                    id.escape_debug()
                )));
            }
        }
    }
    Ok(filtergraph::serialize(&Graph { filters: checked }))
}
