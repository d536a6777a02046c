//! Encoder parameter strings (`x264-params`, `x265-params`, `svtav1-params`,
//! `aom-params`, and the older `x264opts`), read as the encoder reads them and
//! written back in one canonical form.
//!
//! The `-params` options are AV_OPT_TYPE_DICT: FFmpeg reads them with
//! `av_dict_parse_string(.., "=", ":")`, so keys and values go through
//! `av_get_token` (quotes and escapes apply), and a repeated key replaces the
//! earlier one, moving the last entry into its place. `x264opts` is read by
//! libx264.c with `sscanf("%[^:=]=%[^:]")` and no escapes at all. x264 and
//! x265 then read `_` as `-` and a `no` prefix as the negation of the rest.

use super::token::get_token;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    X264,
    X265,
    SvtAv1,
    Aom,
}

impl Family {
    /// The family of a parameter-string flag, and whether it uses x264opts' grammar.
    pub fn of_flag(base: &str) -> Option<(Family, bool)> {
        Some(match base {
            "x264-params" => (Family::X264, false),
            "x264opts" => (Family::X264, true),
            "x265-params" => (Family::X265, false),
            "svtav1-params" => (Family::SvtAv1, false),
            "aom-params" => (Family::Aom, false),
            _ => return None,
        })
    }

    /// The keys a job may set, from each library's documented parameters,
    /// as the library names them after reading (`no-` stripped for x264 and
    /// x265). Keys that read or write files (x264 `stats`, `qpfile`,
    /// `dump-yuv`, `tcfile-*`, and `cqm`, whose value is a file unless it is
    /// `flat` or `jvt`; x265 `csv`, `analysis-*`, `qpfile`, `zonefile`,
    /// `recon`, `scaling-list`, `lambda-file`, `dolby-vision-rpu`,
    /// `dhdr10-info`; SVT-AV1 `stat-file`, `fgs-table`, `output-stat-file`,
    /// `input-stat-file`; libaom `fpf`, `film-grain-table`) are not among them,
    /// nor SVT-AV1's `mastering-display` and `content-light`, whose parser
    /// spins forever on a malformed value.
    #[rustfmt::skip]
    fn keys(self) -> &'static [&'static str] {
        match self {
            Family::X264 => &[
                "keyint", "min-keyint", "scenecut", "bframes", "b-adapt", "b-bias", "b-pyramid",
                "ref", "deblock", "cabac", "interlaced", "tff", "bff", "constrained-intra",
                "open-gop", "bluray-compat", "fake-interlaced", "frame-packing", "crf", "qp",
                "crf-max", "bitrate", "vbv-maxrate", "vbv-bufsize", "vbv-init", "qpmin", "qpmax",
                "qpstep", "ratetol", "ipratio", "pbratio", "chroma-qp-offset", "aq-mode",
                "aq-strength", "mbtree", "rc-lookahead", "qcomp", "cplxblur", "qblur",
                "partitions", "direct", "weightb", "weightp", "me", "merange", "mvrange", "subme",
                "psy", "psy-rd", "mixed-refs", "8x8dct", "trellis", "fast-pskip", "dct-decimate",
                "nr", "deadzone-inter", "deadzone-intra", "overscan", "videoformat", "range",
                "colorprim", "transfer", "colormatrix", "chromaloc", "nal-hrd", "filler",
                "pic-struct", "crop-rect", "aud", "force-cfr", "slices", "slice-max-size",
                "slice-max-mbs", "sync-lookahead", "sliced-threads", "threads",
                "lookahead-threads", "intra-refresh", "level", "profile", "preset", "tune",
                "stitchable", "n-deterministic", "avcintra-class", "alternative-transfer",
                "mastering-display", "cll", "psnr", "ssim",
            ],
            Family::X265 => &[
                "keyint", "min-keyint", "scenecut", "scenecut-bias", "bframes", "b-adapt",
                "b-pyramid", "bframe-bias", "ref", "limit-refs", "rc-lookahead",
                "lookahead-slices", "crf", "qp", "crf-max", "crf-min", "bitrate", "vbv-maxrate",
                "vbv-bufsize", "vbv-init", "qpmin", "qpmax", "qpstep", "ipratio", "pbratio",
                "aq-mode", "aq-strength", "cutree", "qcomp", "cbqpoffs", "crqpoffs", "psy-rd",
                "psy-rdoq", "rdoq-level", "rd", "ctu", "min-cu-size", "max-tu-size",
                "tu-intra-depth", "tu-inter-depth", "limit-tu", "me", "subme", "merange",
                "max-merge", "temporal-mvp", "weightp", "weightb", "rect", "amp", "early-skip",
                "fast-intra", "b-intra", "strong-intra-smoothing", "constrained-intra", "sao",
                "deblock", "open-gop", "gop-lookahead", "radl", "repeat-headers", "aud", "hrd",
                "info", "hdr10", "hdr10-opt", "hdr-opt", "max-cll", "master-display", "colorprim",
                "transfer", "colormatrix", "range", "chromaloc", "videoformat", "overscan", "sar",
                "level-idc", "high-tier", "profile", "preset", "tune", "frame-threads", "pools",
                "wpp", "pmode", "pme", "log-level", "lossless", "cu-lossless", "signhide", "tskip",
                "nr-intra", "nr-inter", "rskip", "splitrd-skip", "limit-modes", "uhd-bd",
                "keyint-max", "psnr", "ssim", "allow-non-conformance", "dhdr10-opt",
                "idr-recovery-sei", "single-sei",
            ],
            Family::SvtAv1 => &[
                "preset", "crf", "qp", "rc", "tbr", "mbr", "buf-sz", "buf-initial-sz",
                "buf-optimal-sz", "keyint", "irefresh-type", "lookahead", "scd", "tune",
                "film-grain", "film-grain-denoise", "enable-overlays", "enable-tf", "fast-decode",
                "tile-rows", "tile-columns", "enable-qm", "qm-min", "qm-max", "min-qp", "max-qp",
                "hierarchical-levels", "pred-struct", "color-primaries",
                "transfer-characteristics", "matrix-coefficients", "color-range",
                "chroma-sample-position", "enable-hdr", "aq-mode", "lp", "pin",
                "enable-restoration", "enable-cdef", "enable-dlf", "sharpness", "overshoot-pct",
                "undershoot-pct", "bias-pct", "minsection-pct", "maxsection-pct", "recode-loop",
                "enable-variance-boost", "variance-boost-strength", "variance-octile", "level",
                "profile", "startup-mg-size",
            ],
            Family::Aom => &[
                "enable-cdef", "enable-restoration", "enable-chroma-deltaq", "deltaq-mode",
                "enable-qm", "qm-min", "qm-max", "sharpness", "noise-sensitivity", "tune-content",
                "cdf-update-mode", "enable-tpl-model", "enable-keyframe-filtering",
                "arnr-maxframes", "arnr-strength", "max-reference-frames", "reduced-reference-set",
                "enable-fwd-kf", "kf-min-dist", "kf-max-dist", "min-gf-interval",
                "max-gf-interval", "gf-max-pyr-height", "enable-dual-filter", "enable-intrabc",
                "enable-palette", "enable-obmc", "enable-warped-motion", "enable-global-motion",
                "enable-smooth-intra", "enable-paeth-intra", "enable-cfl-intra",
                "enable-rect-partitions", "enable-ab-partitions", "enable-1to4-partitions",
                "min-partition-size", "max-partition-size", "enable-diff-wtd-comp",
                "enable-dist-wtd-comp", "enable-onesided-comp", "enable-interinter-wedge",
                "enable-interintra-wedge", "enable-masked-comp", "enable-interintra-comp",
                "enable-smooth-interintra", "enable-filter-intra", "enable-angle-delta",
                "enable-tx64", "aq-mode", "coeff-cost-upd-freq", "mode-cost-upd-freq",
                "mv-cost-upd-freq", "row-mt", "tile-columns", "tile-rows", "frame-parallel",
                "error-resilient", "color-primaries", "transfer-characteristics",
                "matrix-coefficients", "color-range", "tune", "denoise-noise-level",
                "denoise-block-size", "enable-dnl-denoising",
            ],
        }
    }
}

/// Why a parameter string is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// Not `key=value` pairs, or a value with characters no parameter needs.
    Malformed(String),
    /// A key that is not on the family's list.
    Key(String),
}

fn value_ok(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.,+-/()".contains(c))
}

/// The name the library acts on: `_` read as `-`, and for x264 and x265 a
/// `no`/`no-` prefix stripped (they negate the rest), so `no-mbtree` is
/// `mbtree` and `non-deterministic` is x264's own `n-deterministic`.
fn effective(family: Family, key: &str) -> String {
    let key = key.replace('_', "-");
    if matches!(family, Family::X264 | Family::X265) {
        if let Some(rest) = key.strip_prefix("no") {
            return rest.strip_prefix('-').unwrap_or(rest).to_string();
        }
    }
    key
}

/// FFmpeg's `av_dict_parse_string(.., "=", ":", 0)` into an ordered list.
fn dict_pairs(text: &str) -> Result<Vec<(String, String)>, ParamError> {
    let mut rest = text;
    let mut dict: Vec<(String, String)> = Vec::new();
    while !rest.is_empty() {
        let key = get_token(&mut rest, &['=']);
        let Some(after) = rest.strip_prefix('=').filter(|_| !key.is_empty()) else {
            return Err(ParamError::Malformed(format!("\"{key}\" has no =value")));
        };
        rest = after;
        let value = get_token(&mut rest, &[':']);
        if value.is_empty() {
            return Err(ParamError::Malformed(format!(
                "\"{key}\" has an empty value"
            )));
        }
        if let Some(at) = dict.iter().position(|(k, _)| *k == key) {
            dict.swap_remove(at);
        }
        dict.push((key, value));
        if let Some(after) = rest.strip_prefix(':') {
            rest = after;
        }
    }
    Ok(dict)
}

/// libx264.c's reading of `x264opts`: `name[=value]` items split at `:`.
fn x264opts_pairs(text: &str) -> Vec<(String, String)> {
    text.split(':')
        .map(|item| match item.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => (item.to_string(), "1".to_string()),
        })
        .collect()
}

/// Check a parameter string and return its canonical form, `key=value:...`,
/// which every grammar above reads back unchanged.
pub fn check(family: Family, x264opts: bool, text: &str) -> Result<String, ParamError> {
    let pairs = if x264opts {
        x264opts_pairs(text)
    } else {
        dict_pairs(text)?
    };
    let allowed = family.keys();
    // Every key first: a refused key is named even when a value is also wrong.
    for (key, _) in &pairs {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plain || !allowed.contains(&effective(family, key).as_str()) {
            return Err(ParamError::Key(key.clone()));
        }
    }
    let mut out = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        let value = if family == Family::X264 {
            value.strip_prefix('=').unwrap_or(&value).to_string()
        } else {
            value
        };
        if !value_ok(&value) {
            return Err(ParamError::Malformed(format!(
                "the value of \"{key}\" may hold only letters, digits and _.,+-/()"
            )));
        }
        out.push(format!("{key}={value}"));
    }
    if out.is_empty() {
        return Err(ParamError::Malformed("no key=value pairs".into()));
    }
    Ok(out.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_as_the_encoder_reads_them() {
        assert_eq!(
            check(Family::X264, false, "keyint=60:min-keyint=30").unwrap(),
            "keyint=60:min-keyint=30"
        );
        assert_eq!(
            check(Family::X264, false, "keyint=60:keyint=90").unwrap(),
            "keyint=90"
        );
        assert_eq!(
            check(Family::X264, true, "keyint=60:no-mbtree").unwrap(),
            "keyint=60:no-mbtree=1"
        );
        for bad in [
            "stats=/tmp/x",
            "keyint=60:stats=/tmp/x",
            r"keyint=60:st\ats=/tmp/x",
            "'stats'=/tmp/x",
            "no-stats=1",
            "no_stats=1",
            "qpfile=/etc/passwd",
            "bogus=1",
        ] {
            assert!(
                matches!(check(Family::X264, false, bad), Err(ParamError::Key(_))),
                "{bad}"
            );
        }
        // An escaped ':' keeps "stats=..." inside keyint's value, which then fails the value rule.
        assert!(check(Family::X264, false, r"keyint=60\:stats=/tmp/x").is_err());
        assert!(matches!(
            check(Family::X265, false, "csv=/tmp/c"),
            Err(ParamError::Key(_))
        ));
        assert!(matches!(
            check(Family::SvtAv1, false, "fgs-table=/x"),
            Err(ParamError::Key(_))
        ));
        assert_eq!(
            check(Family::SvtAv1, false, "tune=0:film-grain=8").unwrap(),
            "tune=0:film-grain=8"
        );
        assert_eq!(
            check(Family::X264, false, "nocabac=1:non-deterministic=1").unwrap(),
            "nocabac=1:non-deterministic=1"
        );
        // cqm's value is a file name unless it is flat or jvt.
        assert!(matches!(
            check(Family::X264, false, "cqm=/etc/passwd"),
            Err(ParamError::Key(_))
        ));
        assert!(matches!(
            check(Family::X264, true, "cqm=/etc/hostname"),
            Err(ParamError::Key(_))
        ));
        // SVT-AV1's parser spins forever on a malformed mastering-display.
        assert!(matches!(
            check(Family::SvtAv1, false, "mastering-display=x"),
            Err(ParamError::Key(_))
        ));
        assert!(check(Family::X264, false, "keyint").is_err());
        assert!(check(Family::X264, false, "keyint=").is_err());
    }
}
