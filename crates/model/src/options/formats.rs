//! The demuxers, muxers and codecs a job may name. FFmpeg matches format
//! names without regard to case (`av_match_name`), so these lists are matched
//! in lower case and the canonical form is lower case; codec names are
//! matched exactly, as `avcodec_find_encoder_by_name` does. Every name is in
//! Debian's FFmpeg 5.1 (`ffmpeg -demuxers`, `-muxers`, `-encoders`,
//! `-decoders`; the test `formats_exist_in_the_build` checks the binary).
//!
//! Formats that open other files, devices or the network (lavfi, concat,
//! image2, tee, segment, hls, dash, fifo, rtp, sap, v4l2, alsa, ...) are on
//! neither list.

/// Demuxers: the names `-f` may give for an input, and the
/// `-format_whitelist` every input runs with, so a source's content cannot
/// choose a demuxer that opens other files.
#[rustfmt::skip]
pub const DEMUXERS: &[&str] = &[
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "mpegts", "mpeg", "mpegvideo",
    "avi", "flv", "ogg", "wav", "w64", "aiff", "mp3", "aac", "ac3", "eac3", "flac", "wv", "h264",
    "hevc", "m4v", "obu", "ivf", "mxf", "asf", "nut", "dv", "gif", "yuv4mpegpipe", "rawvideo", "caf",
    "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe",
];

/// Muxers an output may use, by `-f` or inferred from the destination.
pub const MUXERS: &[&str] = &[
    "mp4", "mov", "ipod", "3gp", "3g2", "f4v", "matroska", "webm", "mpegts", "mpeg", "avi", "flv",
    "ogg", "oga", "opus", "mp3", "adts", "ac3", "eac3", "wav", "w64", "aiff", "flac", "nut", "mxf",
    "asf", "ivf", "gif", "h264", "hevc", "m4v", "obu",
];

/// Encoders an output may name (`copy` keeps the stream as it is).
#[rustfmt::skip]
pub const ENCODERS: &[&str] = &[
    "copy", "libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1",
    "mpeg4", "mpeg2video", "mjpeg", "png", "gif", "prores_ks", "dnxhd", "ffv1", "rawvideo", "aac",
    "libopus", "opus", "libvorbis", "libmp3lame", "flac", "alac", "ac3", "eac3", "pcm_s16le",
    "pcm_s24le", "pcm_f32le", "mov_text", "webvtt", "srt", "ass", "subrip",
];

/// Decoders an input may force with `-c`.
#[rustfmt::skip]
pub const DECODERS: &[&str] = &[
    "h264", "hevc", "vp8", "vp9", "libvpx", "libvpx-vp9", "av1", "libdav1d", "libaom-av1",
    "mpeg1video", "mpeg2video", "mpeg4", "prores", "dnxhd", "mjpeg", "png", "ffv1", "rawvideo",
    "aac", "mp3", "mp3float", "opus", "libopus", "vorbis", "flac", "alac", "ac3", "eac3",
    "pcm_s16le", "pcm_s24le", "pcm_f32le", "mov_text", "subrip", "webvtt", "ass",
];

pub fn demuxer(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    DEMUXERS.contains(&lower.as_str()).then_some(lower)
}

pub fn muxer(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    MUXERS.contains(&lower.as_str()).then_some(lower)
}

/// Demuxers the source's content may choose but a job may not name: image2
/// reads a pattern of files only when the file name holds one, and the
/// nommer names the source itself (`source.EXT`, EXT alphanumeric).
const PROBED_ONLY: &[&str] = &["image2"];

/// The `-format_whitelist` value for inputs.
pub fn demuxer_whitelist() -> String {
    let mut names = DEMUXERS.to_vec();
    names.extend(PROBED_ONLY);
    names.join(",")
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
        "ivf" => "ivf",
        _ => return None,
    })
}

/// What FFmpeg would infer for extensions whose muxer is not allowed, so the
/// refusal can say which format it is.
pub fn refused_extension(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "m3u8" => "hls",
        "mpd" => "dash",
        "jpg" | "jpeg" | "png" | "bmp" | "tif" | "tiff" | "webp" => "image2",
        "ffmeta" => "ffmetadata",
        _ => return None,
    })
}
