//! The kinds of value an option takes, and the check of each. A value that
//! passes is handed to ffmpeg unchanged, except where the kind has a canonical
//! form (format names in lower case, filtergraphs and parameter strings
//! re-serialised), which the caller applies.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// A boolean flag: no value at all.
    None,
    Int {
        min: i64,
        max: i64,
    },
    /// A decimal number, optionally with an SI suffix (`400k`, `1.5M`).
    Number,
    /// `0`, `1`, `true`, `false`, `auto` and the other words AV_OPT_TYPE_BOOL reads.
    Bool01,
    /// A duration or position (`10`, `1.5`, `00:01:02.5`, `90s`, `500ms`).
    Time,
    /// A frame rate (`25`, `30000/1001`, `ntsc`).
    Rate,
    /// A frame size (`640x360`, `hd720`).
    Size,
    /// A short identifier: a pixel format, profile, preset, tag.
    Name,
    /// A channel layout (`stereo`, `5.1(side)`, `FL+FR`).
    Layout,
    /// `+a+b-c` style flag words.
    Flags,
    /// Flag words from this list only.
    FlagWords(Vec<String>),
    /// An encoder (outputs) or decoder (inputs), or `copy`.
    Codec,
    /// A demuxer (inputs) or muxer (outputs).
    Format,
    Filtergraph,
    /// A `key=value:...` encoder parameter string.
    Params,
    /// `-map`: `[-]0[:spec][?]` or an output label `[name]`.
    Map,
    /// `key=value` of plain text.
    Metadata,
    /// Plain printable text.
    Text,
    /// An expression or time list in plain text.
    Expr,
    /// Bitstream filter names, comma-separated.
    Bsf,
    /// One of these words.
    Choice(Vec<String>),
}

impl ValueKind {
    /// Read a kind as the allowlist tables write it (`int:0:64`, `choice:a|b`).
    pub fn parse(text: &str) -> Option<ValueKind> {
        if let Some(words) = text.strip_prefix("choice:") {
            return Some(ValueKind::Choice(
                words.split('|').map(str::to_string).collect(),
            ));
        }
        if let Some(range) = text.strip_prefix("int:") {
            let (min, max) = range.split_once(':')?;
            return Some(ValueKind::Int {
                min: min.parse().ok()?,
                max: max.parse().ok()?,
            });
        }
        Some(match text {
            "none" => ValueKind::None,
            "int" => ValueKind::Int {
                min: i64::MIN,
                max: i64::MAX,
            },
            "number" => ValueKind::Number,
            "bool01" => ValueKind::Bool01,
            "time" => ValueKind::Time,
            "rate" => ValueKind::Rate,
            "size" => ValueKind::Size,
            "name" => ValueKind::Name,
            "layout" => ValueKind::Layout,
            "flags" => ValueKind::Flags,
            "codec" => ValueKind::Codec,
            "format" => ValueKind::Format,
            "filtergraph" => ValueKind::Filtergraph,
            "params" => ValueKind::Params,
            "map" => ValueKind::Map,
            "metadata" => ValueKind::Metadata,
            "text" => ValueKind::Text,
            "expr" => ValueKind::Expr,
            "bsf" => ValueKind::Bsf,
            _ => return None,
        })
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::None => f.write_str("no value"),
            ValueKind::Int { min, max } if *min == i64::MIN && *max == i64::MAX => {
                f.write_str("an integer")
            }
            ValueKind::Int { min, max } => write!(f, "an integer from {min} to {max}"),
            ValueKind::Number => f.write_str("a number (SI suffixes such as 400k allowed)"),
            ValueKind::Bool01 => f.write_str("a boolean (0, 1, true, false)"),
            ValueKind::Time => f.write_str("a time (10, 1.5, 00:01:02.5, 500ms)"),
            ValueKind::Rate => f.write_str("a frame rate (25, 30000/1001, ntsc)"),
            ValueKind::Size => f.write_str("a frame size (640x360, hd720)"),
            ValueKind::Name => f.write_str("a name of letters, digits, '_', '.', '+' or '-'"),
            ValueKind::Layout => f.write_str("a channel layout (stereo, 5.1)"),
            ValueKind::Flags => f.write_str("flag words (+a+b-c)"),
            ValueKind::FlagWords(words) => {
                write!(f, "flag words (+a+b-c) from {}", words.join(", "))
            }
            ValueKind::Codec => f.write_str("an allowed codec name"),
            ValueKind::Format => f.write_str("an allowed format name"),
            ValueKind::Filtergraph => f.write_str("a filtergraph"),
            ValueKind::Params => f.write_str("key=value pairs separated by ':'"),
            ValueKind::Map => f.write_str("a stream map (0:v:0, -0:s, 0:a?, [label])"),
            ValueKind::Metadata => f.write_str("key=value of plain text"),
            ValueKind::Text | ValueKind::Expr => f.write_str("plain text"),
            ValueKind::Bsf => f.write_str("bitstream filter names"),
            ValueKind::Choice(words) => write!(f, "one of {}", words.join(", ")),
        }
    }
}

/// Named sizes from libavutil/parseutils.c.
#[rustfmt::skip]
const SIZES: &[&str] = &[
    "ntsc", "pal", "qntsc", "qpal", "sntsc", "spal", "film", "ntsc-film", "sqcif", "qcif", "cif",
    "4cif", "16cif", "qqvga", "qvga", "vga", "svga", "xga", "uxga", "qxga", "sxga", "qsxga",
    "hsxga", "wvga", "wxga", "wsxga", "wuxga", "woxga", "wqsxga", "wquxga", "whsxga", "whuxga",
    "cga", "ega", "hd480", "hd720", "hd1080", "2k", "2kflat", "2kscope", "4k", "4kflat", "4kscope",
    "nhd", "hqvga", "wqvga", "fwqvga", "hvga", "qhd", "2kdci", "4kdci", "uhd2160", "uhd4320",
];

/// Named rates from libavutil/parseutils.c.
#[rustfmt::skip]
const RATES: &[&str] = &[
    "ntsc", "pal", "qntsc", "qpal", "sntsc", "spal", "film", "ntsc-film",
];

const BOOL_WORDS: &[&str] = &[
    "0", "1", "-1", "true", "false", "auto", "y", "n", "yes", "no", "on", "off", "enable",
    "disable", "enabled", "disabled",
];

/// The bitstream filters a job may name (libavcodec/bitstream_filters.c).
#[rustfmt::skip]
const BSFS: &[&str] = &[
    "aac_adtstoasc", "h264_mp4toannexb", "hevc_mp4toannexb", "vp9_superframe",
    "vp9_superframe_split", "extract_extradata", "remove_extra", "h264_metadata", "hevc_metadata",
    "av1_metadata", "null", "setts", "dump_extra", "mpeg4_unpack_bframes", "av1_frame_split",
    "av1_frame_merge", "chomp", "pgs_frame_merge", "opus_metadata",
];

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `12`, `1.5`, `.5`, `1e3`, with an optional sign.
fn decimal(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (digits(a) || a.is_empty())
                && (digits(b) || b.is_empty())
                && !(a.is_empty() && b.is_empty())
        }
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

fn number(s: &str) -> bool {
    let s = s.strip_suffix('B').unwrap_or(s);
    let s = s.strip_suffix('i').unwrap_or(s);
    let s = s.strip_suffix(['k', 'K', 'M', 'G', 'T', 'P']).unwrap_or(s);
    decimal(s)
}

fn time(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    if let Some(seconds) = s
        .strip_suffix("ms")
        .or(s.strip_suffix("us"))
        .or(s.strip_suffix('s'))
    {
        return decimal(seconds) && !seconds.starts_with(['+', '-']);
    }
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [seconds] => {
            decimal(seconds) && !seconds.starts_with(['+', '-']) && !seconds.contains(['e', 'E'])
        }
        [minutes, seconds] | [_, minutes, seconds] => {
            parts[..parts.len() - 1].iter().all(|p| digits(p))
                && digits(minutes)
                && seconds
                    .split_once('.')
                    .map_or(digits(seconds), |(a, b)| digits(a) && digits(b))
        }
        _ => false,
    }
}

fn rate(s: &str) -> bool {
    if RATES.contains(&s) {
        return true;
    }
    let unsigned = |p: &str| decimal(p) && !p.starts_with(['+', '-']) && !p.contains(['e', 'E']);
    match s.split_once(['/', ':']) {
        Some((a, b)) => unsigned(a) && unsigned(b),
        None => unsigned(s),
    }
}

fn size(s: &str) -> bool {
    SIZES.contains(&s)
        || s.split_once('x')
            .is_some_and(|(w, h)| digits(w) && digits(h))
}

fn word_chars(s: &str, extra: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// Printable text: no control characters, bounded length.
pub fn plain_text(s: &str) -> bool {
    s.chars().count() <= 4096 && !s.chars().any(char::is_control)
}

fn map(s: &str) -> bool {
    if let Some(label) = s.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        return word_chars(label, "_:.", 64);
    }
    let s = s.strip_prefix('-').unwrap_or(s);
    let s = s.strip_suffix('?').unwrap_or(s);
    let (input, spec) = s.split_once(':').unwrap_or((s, ""));
    digits(input) && (spec.is_empty() || word_chars(spec, "_:#.-", 64))
}

fn flags(s: &str) -> bool {
    let words = s.strip_prefix(['+', '-']).unwrap_or(s);
    !words.is_empty() && words.split(['+', '-']).all(|w| word_chars(w, "_", 64))
}

/// Check `value` against the kinds that need no allowlist lookup.
/// Codec, format, filtergraph and parameter kinds are checked by the caller.
pub fn check(kind: &ValueKind, value: &str) -> bool {
    match kind {
        ValueKind::None => false,
        ValueKind::Int { min, max } => {
            let digits_only = value.strip_prefix(['+', '-']).unwrap_or(value);
            digits(digits_only)
                && value
                    .parse::<i64>()
                    .is_ok_and(|v| (*min..=*max).contains(&v))
        }
        ValueKind::Number => number(value),
        ValueKind::Bool01 => BOOL_WORDS.iter().any(|w| w.eq_ignore_ascii_case(value)),
        ValueKind::Time => time(value),
        ValueKind::Rate => rate(value),
        ValueKind::Size => size(value),
        ValueKind::Name => word_chars(value, "_.+-", 64),
        ValueKind::Layout => word_chars(value, "_.()+|-", 64),
        ValueKind::Flags => flags(value),
        ValueKind::FlagWords(words) => {
            flags(value)
                && value
                    .strip_prefix(['+', '-'])
                    .unwrap_or(value)
                    .split(['+', '-'])
                    .all(|w| words.iter().any(|allowed| allowed == w))
        }
        ValueKind::Map => map(value),
        ValueKind::Metadata => value
            .split_once('=')
            .is_some_and(|(key, text)| word_chars(key, "_.-", 64) && plain_text(text)),
        ValueKind::Text | ValueKind::Expr => plain_text(value),
        ValueKind::Bsf => value.split(',').all(|name| BSFS.contains(&name)),
        ValueKind::Choice(words) => words.iter().any(|w| w == value),
        ValueKind::Codec | ValueKind::Format | ValueKind::Filtergraph | ValueKind::Params => {
            plain_text(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_accept_what_ffmpeg_reads() {
        let yes = [
            ("number", "400k"),
            ("number", "1.5M"),
            ("number", "0"),
            ("number", "-1"),
            ("number", "2Mi"),
            ("time", "10"),
            ("time", "1.5"),
            ("time", "00:01:02.500"),
            ("time", "1:02"),
            ("time", "90s"),
            ("time", "500ms"),
            ("time", "-5"),
            ("rate", "30000/1001"),
            ("rate", "ntsc"),
            ("rate", "29.97"),
            ("size", "640x360"),
            ("size", "hd720"),
            ("name", "yuv420p10le"),
            ("name", "4.1"),
            ("layout", "5.1(side)"),
            ("flags", "+faststart+frag_keyframe"),
            ("flags", "-global_header"),
            ("map", "0:v:0"),
            ("map", "-0:s"),
            ("map", "0:a?"),
            ("map", "[v]"),
            ("metadata", "title=A b: c"),
            ("int:1:3", "2"),
            ("bool01", "True"),
            ("bsf", "h264_mp4toannexb,dump_extra"),
        ];
        for (kind, value) in yes {
            assert!(
                check(&ValueKind::parse(kind).unwrap(), value),
                "{kind} {value}"
            );
        }
        let no = [
            ("number", "1M; rm"),
            ("number", "fast"),
            ("time", "1;2"),
            ("time", "1:2:3:4"),
            ("rate", "abc"),
            ("rate", "-25"),
            ("size", "640x"),
            ("name", "yuv420p\n"),
            ("name", "a b"),
            ("int", "all"),
            ("int:1:3", "7"),
            ("int", "1.5"),
            ("metadata", "title=a\nb"),
            ("metadata", "=x"),
            ("map", "0:v;rm"),
            ("map", "[../x]"),
            ("flags", "+a b"),
            ("bsf", "trace_headers"),
        ];
        for (kind, value) in no {
            assert!(
                !check(&ValueKind::parse(kind).unwrap(), value),
                "{kind} {value}"
            );
        }
    }
}
