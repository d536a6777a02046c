//! The allowlist: every flag, filter and filter option a job may use, with
//! its arity, place, stream-specifier rule and value kind.
//!
//! The tables come from FFmpeg 5.1's own definitions and are kept as data
//! beside this file, each row naming its source:
//! - `allow/fftools.tsv`: the ffmpeg tool's option table (fftools/ffmpeg_opt.c,
//!   opt_common.h), checked row by row against the binary by
//!   `scripts/allowlist/verify-fftools.py`;
//! - `allow/avoptions.tsv`: codec, format, swscale and swresample AVOptions that
//!   ffmpeg's `opt_default` reaches, from `ffmpeg -h encoder=/muxer=/demuxer=/full`
//!   (`scripts/allowlist/gen-avoptions.py`);
//! - `allow/filters.tsv`: filters with their options in declared order, from
//!   `ffmpeg -h filter=` (`scripts/allowlist/gen-filters.py`).
//!
//! Operators may add flags and filters in config; they can never add a flag
//! the nommer sets itself.

use super::values::ValueKind;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

const FFTOOLS: &str = include_str!("allow/fftools.tsv");
const AVOPTIONS: &str = include_str!("allow/avoptions.tsv");
const FILTERS: &str = include_str!("allow/filters.tsv");

/// Where a flag may stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Anywhere; emitted before the first `-i`.
    Global,
    Input,
    Output,
    Both,
}

impl Place {
    fn parse(text: &str) -> Option<Place> {
        Some(match text {
            "global" => Place::Global,
            "input" => Place::Input,
            "output" => Place::Output,
            "both" => Place::Both,
            _ => return None,
        })
    }

    fn union(self, other: Place) -> Place {
        if self == other {
            self
        } else {
            Place::Both
        }
    }

    pub fn allows_input(self) -> bool {
        matches!(self, Place::Global | Place::Input | Place::Both)
    }

    pub fn allows_output(self) -> bool {
        matches!(self, Place::Global | Place::Output | Place::Both)
    }
}

/// Which of ffmpeg's option layers a flag belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Fftools,
    Codec,
    Format,
    Sws,
    Swr,
    /// Added by the operator in config.
    Extra,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlagRule {
    pub name: String,
    pub place: Place,
    /// Whether a `:stream_specifier` suffix may follow the name.
    pub spec: bool,
    /// `ValueKind::None` for flags that take no value.
    pub kind: ValueKind,
    pub layer: Layer,
    /// Where the entry comes from (source file and line, or the component).
    pub source: String,
}

impl FlagRule {
    pub fn takes_value(&self) -> bool {
        self.kind != ValueKind::None
    }
}

/// What the allowlist says about a flag name.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<'a> {
    Allowed(FlagRule),
    /// Known to FFmpeg and refused, with the reason.
    Refused(&'a str),
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    /// Every option in declared order with its slot (aliases share one).
    pub options: Vec<(String, u32)>,
    pub allowed: BTreeSet<String>,
}

/// Operator additions (`extra_allowed_options`, `extra_allowed_filters`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ExtraOption {
    pub name: String,
    /// A value kind as the tables write it (`int`, `number`, `choice:a|b`, `none`, ...).
    pub kind: String,
    /// `input`, `output`, `both` or `global`; `output` when left out.
    #[serde(default)]
    pub place: Option<String>,
    /// Whether stream specifiers may follow the name.
    #[serde(default)]
    pub spec: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ExtraFilter {
    pub name: String,
    /// The filter's options in declared order (each its own slot); all allowed.
    #[serde(default)]
    pub options: Vec<String>,
}

/// Flags the nommer sets itself: no table or config may hand them to a job.
pub const RESERVED_FLAGS: &[&str] = &[
    "i",
    "y",
    "n",
    "stdin",
    "nostdin",
    "progress",
    "stats",
    "nostats",
    "passlogfile",
    "protocol_whitelist",
    "format_whitelist",
];

#[derive(Debug, Clone)]
pub struct Allowlist {
    flags: HashMap<String, Result<FlagRule, String>>,
    /// fftools OPT_BOOL flags, which also exist as `noNAME`.
    bools: BTreeSet<String>,
    /// AVCodecContext's own options, which ffmpeg's `opt_default` also finds
    /// behind a `v`, `a` or `s` prefix (`vprofile`, not `vpreset`: encoders'
    /// private options are not searched there), even where its own table
    /// shadows the bare name.
    codec: HashMap<String, Result<FlagRule, String>>,
    filters: HashMap<String, FilterRule>,
}

fn rows(table: &str) -> impl Iterator<Item = Vec<&str>> {
    table
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .skip(1)
        .map(|line| line.split('\t').collect())
}

/// `x`'s words, then those of `y` that `x` lacks.
fn union(x: &[String], y: &[String]) -> Vec<String> {
    let mut words = x.to_vec();
    words.extend(y.iter().filter(|w| !x.contains(w)).cloned());
    words
}

fn merge_kind(a: &ValueKind, b: &ValueKind) -> ValueKind {
    use ValueKind::*;
    match (a, b) {
        _ if a == b => a.clone(),
        (Choice(x), Choice(y)) => Choice(union(x, y)),
        (FlagWords(x), FlagWords(y)) => FlagWords(union(x, y)),
        (Flags | FlagWords(_), Flags | FlagWords(_)) => Flags,
        (Int { .. } | Number, Int { .. } | Number) => Number,
        // Every word of these kinds is also a name.
        (
            Choice(_) | Name | Int { .. } | Number | Bool01,
            Choice(_) | Name | Int { .. } | Number | Bool01,
        ) => Name,
        _ => Text,
    }
}

impl Allowlist {
    /// The tables shipped with this build.
    pub fn builtin() -> &'static Allowlist {
        static BUILTIN: OnceLock<Allowlist> = OnceLock::new();
        BUILTIN.get_or_init(|| Allowlist::from_tables(FFTOOLS, AVOPTIONS, FILTERS))
    }

    fn from_tables(fftools: &str, avoptions: &str, filters: &str) -> Allowlist {
        let mut flags: HashMap<String, Result<FlagRule, String>> = HashMap::new();
        let mut bools = BTreeSet::new();
        for row in rows(fftools) {
            let [name, _arity, place, spec, kind, source, note @ ..] = row.as_slice() else {
                panic!("fftools.tsv: short row {row:?}");
            };
            if source.contains("OPT_BOOL") {
                bools.insert(name.to_string());
            }
            let verdict = match (ValueKind::parse(kind), Place::parse(place)) {
                (Some(kind), Some(place)) => Ok(FlagRule {
                    name: name.to_string(),
                    place,
                    spec: *spec == "yes",
                    kind,
                    layer: Layer::Fftools,
                    source: format!("fftools {source}"),
                }),
                _ if *kind == "-" => Err(note.first().copied().unwrap_or("refused").to_string()),
                _ => panic!("fftools.tsv: bad kind or place in {row:?}"),
            };
            flags.insert(name.to_string(), verdict);
        }
        let mut av: HashMap<String, Result<FlagRule, String>> = HashMap::new();
        // AVCodecContext's own options: the only ones the prefix form reaches.
        let mut generic_codec = BTreeSet::new();
        for row in rows(avoptions) {
            let [owner, name, layer, place, _type, allow, note @ ..] = row.as_slice() else {
                panic!("avoptions.tsv: short row {row:?}");
            };
            let layer = match *layer {
                "codec" => Layer::Codec,
                "format" => Layer::Format,
                "sws" => Layer::Sws,
                "swr" => Layer::Swr,
                other => panic!("avoptions.tsv: unknown layer {other}"),
            };
            if *owner == "codec" {
                generic_codec.insert(name.to_string());
            }
            let place = Place::parse(place)
                .unwrap_or_else(|| panic!("avoptions.tsv: bad place in {row:?}"));
            // A `flags` row lists its allowed words in the note: "words: a,b,c; ...".
            let words = note
                .first()
                .and_then(|n| n.strip_prefix("words: "))
                .map(|n| {
                    n.split(';')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .map(|w| w.trim().to_string())
                        .collect()
                });
            let kind = match (ValueKind::parse(allow), words) {
                (Some(ValueKind::Flags), Some(words)) => Some(ValueKind::FlagWords(words)),
                (kind, _) => kind,
            };
            let verdict = match kind {
                Some(kind) => Ok(FlagRule {
                    name: name.to_string(),
                    place,
                    spec: layer == Layer::Codec,
                    kind,
                    layer,
                    source: format!("{owner} AVOption"),
                }),
                None if *allow == "-" => Err(format!(
                    "{} ({owner})",
                    note.first().copied().unwrap_or("refused")
                )),
                None => panic!("avoptions.tsv: bad kind in {row:?}"),
            };
            let merged = match (av.remove(*name), verdict) {
                (None, verdict) => verdict,
                (Some(Err(reason)), _) | (Some(Ok(_)), Err(reason)) => Err(reason),
                (Some(Ok(mut have)), Ok(new)) => {
                    have.place = have.place.union(new.place);
                    have.spec &= new.spec;
                    have.kind = merge_kind(&have.kind, &new.kind);
                    if !have.source.contains(&new.source) {
                        have.source = format!("{}, {}", have.source, new.source);
                    }
                    Ok(have)
                }
            };
            av.insert(name.to_string(), merged);
        }
        let codec = av
            .iter()
            .filter(|(name, _)| generic_codec.contains(*name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // fftools' own table wins: ffmpeg looks there before opt_default.
        for (name, verdict) in av {
            flags.entry(name).or_insert(verdict);
        }
        for name in RESERVED_FLAGS {
            flags.insert(
                name.to_string(),
                Err("is set by the nommer itself".to_string()),
            );
        }
        let mut filter_rules: HashMap<String, FilterRule> = HashMap::new();
        for row in rows(filters) {
            let [filter, option, slot, _type, allow, ..] = row.as_slice() else {
                panic!("filters.tsv: short row {row:?}");
            };
            let rule = filter_rules
                .entry(filter.to_string())
                .or_insert(FilterRule {
                    options: Vec::new(),
                    allowed: BTreeSet::new(),
                });
            if let Ok(slot) = slot.parse::<u32>() {
                rule.options.push((option.to_string(), slot));
            }
            if *allow == "yes" {
                rule.allowed.insert(option.to_string());
            }
        }
        Allowlist {
            flags,
            bools,
            codec,
            filters: filter_rules,
        }
    }

    /// The built-in tables plus an operator's additions.
    pub fn with_extras(
        options: &[ExtraOption],
        filters: &[ExtraFilter],
    ) -> Result<Allowlist, String> {
        let mut allow = Allowlist::builtin().clone();
        for extra in options {
            if RESERVED_FLAGS.contains(&extra.name.as_str()) {
                return Err(format!(
                    "extra_allowed_options: -{} is set by the nommer itself and cannot be allowed",
                    extra.name
                ));
            }
            let kind = ValueKind::parse(&extra.kind).ok_or_else(|| {
                format!(
                    "extra_allowed_options: {}: unknown kind \"{}\"",
                    extra.name, extra.kind
                )
            })?;
            let place =
                Place::parse(extra.place.as_deref().unwrap_or("output")).ok_or_else(|| {
                    format!(
                        "extra_allowed_options: {}: place must be input, output, both or global",
                        extra.name
                    )
                })?;
            allow.flags.insert(
                extra.name.clone(),
                Ok(FlagRule {
                    name: extra.name.clone(),
                    place,
                    spec: extra.spec,
                    kind,
                    layer: Layer::Extra,
                    source: "extra_allowed_options".into(),
                }),
            );
        }
        for extra in filters {
            let rule = FilterRule {
                options: extra.options.iter().cloned().zip(0..).collect(),
                allowed: extra.options.iter().cloned().collect(),
            };
            allow.filters.insert(extra.name.clone(), rule);
        }
        Ok(allow)
    }

    /// Look a flag up by its name without stream specifier, as ffmpeg would:
    /// its own table, then `noNAME` for booleans, then the AVOption layers
    /// (with the `v`/`a`/`s` prefix form of codec options).
    pub fn flag(&self, base: &str) -> Verdict<'_> {
        if let Some(verdict) = self.flags.get(base) {
            return match verdict {
                Ok(rule) => Verdict::Allowed(rule.clone()),
                Err(reason) => Verdict::Refused(reason),
            };
        }
        if let Some(name) = base.strip_prefix("no").filter(|n| self.bools.contains(*n)) {
            return match self.flags.get(name) {
                Some(Ok(rule)) => Verdict::Allowed(FlagRule {
                    name: base.to_string(),
                    kind: ValueKind::None,
                    ..rule.clone()
                }),
                Some(Err(reason)) => Verdict::Refused(reason),
                None => Verdict::Unknown,
            };
        }
        if let Some(verdict) = base
            .strip_prefix(['v', 'a', 's'])
            .and_then(|name| self.codec.get(name))
        {
            return match verdict {
                Ok(rule) => Verdict::Allowed(FlagRule {
                    name: base.to_string(),
                    ..rule.clone()
                }),
                Err(reason) => Verdict::Refused(reason),
            };
        }
        Verdict::Unknown
    }

    pub fn filter(&self, name: &str) -> Option<&FilterRule> {
        self.filters.get(name)
    }

    /// Every allowed flag, for the docs and their test.
    pub fn allowed_flags(&self) -> Vec<&FlagRule> {
        let mut list: Vec<&FlagRule> = self
            .flags
            .values()
            .filter_map(|v| v.as_ref().ok())
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    pub fn filter_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.filters.keys().map(String::as_str).collect();
        names.sort();
        names
    }
}

impl Allowlist {
    /// The allowlist as docs/OPTIONS.md lists it (a test keeps the two equal).
    pub fn markdown(&self) -> String {
        let place = |p: Place| match p {
            Place::Global => "global",
            Place::Input => "input",
            Place::Output => "output",
            Place::Both => "input, output",
        };
        let mut out = String::from(
            "| Flag | Where | Stream specifier | Value | Source |\n|---|---|---|---|---|\n",
        );
        for rule in self.allowed_flags() {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                rule.name,
                place(rule.place),
                if rule.spec { "yes" } else { "no" },
                rule.kind.to_string().replace('|', "\\|"),
                rule.source.replace('|', "\\|"),
            ));
        }
        out.push_str("\n| Filter | Options (positional order first) |\n|---|---|\n");
        for name in self.filter_names() {
            let rule = &self.filters[name];
            let mut options: Vec<String> = Vec::new();
            for (option, _) in &rule.options {
                if rule.allowed.contains(option) && !options.contains(option) {
                    options.push(option.clone());
                }
            }
            for option in &rule.allowed {
                if !options.contains(option) {
                    options.push(option.clone());
                }
            }
            let shown: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
            out.push_str(&format!("| `{name}` | {} |\n", shown.join(" ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_ffmpegs_order() {
        let allow = Allowlist::builtin();
        let takes = |name: &str| match allow.flag(name) {
            Verdict::Allowed(rule) => Some(rule.takes_value()),
            _ => None,
        };
        // 5.1's own table: autorotate takes a value, its no form none.
        assert_eq!(takes("autorotate"), Some(true));
        assert_eq!(takes("noautorotate"), Some(false));
        assert_eq!(takes("auto_conversion_filters"), Some(false));
        // The prefix form reaches AVCodecContext's options only.
        assert_eq!(takes("vprofile"), Some(true));
        assert_eq!(takes("vpreset"), None);
        assert_eq!(takes("vcrf"), None);
        assert!(matches!(allow.flag("i"), Verdict::Refused(_)));
        assert!(matches!(allow.flag("nostdin"), Verdict::Refused(_)));
        assert_eq!(allow.flag("bogus"), Verdict::Unknown);
    }
}
