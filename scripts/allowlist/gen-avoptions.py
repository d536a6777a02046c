#!/usr/bin/env python3
"""Generate crates/model/src/options/allow/avoptions.tsv from the installed ffmpeg.

The TSV is the allowlist of AVOptions that ffmpeg's ``opt_default`` accepts
(codec layer, format layer, swscale, swresample) for the components this
service supports.  Option names, types, E/D and V/A/S flags and named
constants are parsed from the ffmpeg help output:

    ffmpeg -hide_banner -h full              (AVCodecContext, AVFormatContext,
                                              SWScaler, SWResampler sections;
                                              fftools option names)
    ffmpeg -hide_banner -h encoder=NAME      (encoder private options)
    ffmpeg -hide_banner -h muxer=NAME        (muxer private options)
    ffmpeg -hide_banner -h demuxer=NAME      (demuxer private options)

Every allow/refuse decision lives in DECISIONS below (one place to review).
An option that -h prints but DECISIONS does not mention is written as
refused ("not reviewed") and reported on stderr; a decision for an option
that no longer exists is reported too.

Usage:
    scripts/allowlist/gen-avoptions.py [--ffmpeg PATH] [--out FILE] [--check]

--check compares the generated text with FILE and exits 1 if they differ
(for CI).  Python 3 standard library only.
"""

import argparse
import math
import os
import re
import subprocess
import sys
from collections import OrderedDict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "crates/model/src/options/allow/avoptions.tsv")

# --------------------------------------------------------------------------
# Supported components
# --------------------------------------------------------------------------

ENCODERS = [
    "libx264", "libx265", "libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1",
    "aac", "libopus", "libmp3lame", "flac", "pcm_s16le", "mjpeg", "png",
]
MUXERS = [
    "mp4", "mov", "ipod", "3gp", "matroska", "webm", "mpegts", "mpeg", "ogg",
    "opus", "mp3", "adts", "wav", "flac", "avi", "flv", "nut", "mxf", "ac3",
    "gif",
]
# owner suffix -> name passed to -h demuxer= (ffmpeg matches inside the
# comma separated demuxer name, e.g. "mov" finds "mov,mp4,m4a,3gp,3g2,mj2").
DEMUXERS = [
    "mov", "matroska", "mpegts", "mpeg", "ogg", "wav", "mp3", "aac", "flac",
    "avi", "flv", "mxf", "asf", "nut", "ivf", "h264", "hevc", "yuv4mpegpipe",
    "gif",
]

# Owners that share one AVClass share one decision table.
DECISION_GROUP = {
    "libvpx": "libvpx-vp9",          # libvpx-vp8 / -vp9 classes share names
    "muxer:mp4": "muxer:mov",        # mov/mp4/tgp/psp/tg2/ipod/ismv/f4v muxer
    "muxer:ipod": "muxer:mov",
    "muxer:3gp": "muxer:mov",
    "muxer:webm": "muxer:matroska",  # matroska/webm muxer
    "muxer:opus": "muxer:ogg",       # Ogg (audio/video/Speex/Opus) muxer
}

# --------------------------------------------------------------------------
# Decision helpers
# --------------------------------------------------------------------------
# A decision is a tuple (kind, detail, note):
#   ("auto",  None,  note)   derive the value kind from the -h type/range/consts:
#                            <boolean> -> bool01, <int*> with named constants ->
#                            choice of all constants, <int*> with a range ->
#                            int:MIN:MAX (int when the range is the full type),
#                            <float>/<double> -> number, <flags> -> flags (all
#                            words), <duration> -> time, <video_rate>/<rational>
#                            -> rate, <image_size> -> size, <pix_fmt>/<sample_fmt>
#                            -> name, <channel_layout> -> layout.
#   ("kind",  "int:0:64", note)   explicit value kind.
#   ("flags", [words], note)      flags restricted to these words.
#   ("choice",[names], note)      choice restricted to / extended with these
#                                 (each must be a constant name or the numeric
#                                 value of one).
#   ("-",     None,  reason)      refused.


def A(note=""):
    return ("auto", None, note)


def K(kind, note=""):
    return ("kind", kind, note)


def F(words, note=""):
    return ("flags", words.split(), note)


def C(names, note=""):
    return ("choice", names.split("|"), note)


def R(reason):
    return ("-", None, reason)


DEPRECATED = "deprecated in 5.1 (P flag), removed in later FFmpeg"
FILE = "names a file to read or write"
SECRET = "key material / DRM secret"
OBSCURE = "obscure; does not meaningfully shape the media for supported components"
MPV = "mpegvideo-family internal (no supported encoder uses it); obscure"

# --------------------------------------------------------------------------
# DECISIONS: owner -> OrderedDict(name -> decision)
# --------------------------------------------------------------------------

DECISIONS = {}

# ---- AVCodecContext generic options (encoders: output, decoders: input) ----
DECISIONS["codec"] = OrderedDict([
    ("b", K("number", "bitrate bits/s, SI suffix ok (2M)")),
    ("ab", K("number", "audio bitrate alias")),
    ("bt", K("number", "bitrate tolerance (x264 uses it)")),
    ("flags", F("mv4 qpel loop gray ildct low_delay global_header bitexact "
                "aic ilme cgop output_corrupt drop_changed",
                "refused words: unaligned (unsafe output alignment), truncated (deprecated), psnr (log-only stats)")),
    ("flags2", F("fast local_header ignorecrop showall",
                 "refused words: noout, chunks, export_mvs, skip_manual, ass_ro_flush_noop")),
    ("export_side_data", R("side-data export for API users; no effect on the encoded media")),
    ("g", A("GOP size")),
    ("ar", K("int:0:768000", "sample rate Hz")),
    ("ac", K("int:0:64", "channel count")),
    ("cutoff", K("int:0:192000", "audio cutoff/lowpass Hz (aac, libopus, libmp3lame)")),
    ("frame_size", A("audio frame size in samples (flac block size)")),
    ("qcomp", A()),
    ("qblur", A()),
    ("qmin", A()),
    ("qmax", A()),
    ("qdiff", A()),
    ("bf", A("max B-frames")),
    ("b_qfactor", A()),
    ("bug", R("decoder bug-workaround switches; " + OBSCURE)),
    ("strict", C("very|strict|normal|unofficial|experimental|2|1|0|-1|-2",
                 "numeric forms kept for -strict -2")),
    ("b_qoffset", A()),
    ("err_detect", A()),
    ("maxrate", K("number", "VBV max bitrate, SI suffix ok")),
    ("minrate", K("number", "SI suffix ok")),
    ("bufsize", K("number", "VBV buffer size bits, SI suffix ok")),
    ("i_qfactor", A()),
    ("i_qoffset", A()),
    ("dct", A("DCT algorithm (mjpeg)")),
    ("lumi_mask", R(MPV)),
    ("tcplx_mask", R(MPV)),
    ("scplx_mask", R(MPV)),
    ("p_mask", R(MPV)),
    ("dark_mask", R(MPV)),
    ("idct", R("decoder IDCT implementation selection; " + OBSCURE)),
    ("ec", A("decoder error concealment")),
    ("aspect", K("rate", "rational N/D, N:D or decimal")),
    ("sar", K("rate", "rational N/D, N:D or decimal")),
    ("debug", R("debug logging")),
    ("dia_size", R(MPV)),
    ("last_pred", R(MPV)),
    ("pre_dia_size", R(MPV)),
    ("subq", K("int:-1:11", "x264 subme")),
    ("me_range", K("int:-1:1024", "x264 merange")),
    ("global_quality", A("set by -q/-qscale; aac/libmp3lame VBR, mjpeg")),
    ("mbd", R(MPV)),
    ("rc_init_occupancy", K("number", "initial VBV occupancy bits")),
    ("threads", K("int:0:64", "0 = auto")),
    ("dc", R(MPV)),
    ("nssew", R(MPV)),
    ("skip_top", R(OBSCURE)),
    ("skip_bottom", R(OBSCURE)),
    ("profile", K("name", "numbers or per-encoder constants -h does not list "
                          "(aac_low aac_he aac_he_v2 aac_ld aac_eld, main high professional, ...); "
                          "x264/x265 use their private string profile")),
    ("level", K("name", "number or encoder-specific level name")),
    ("lowres", K("int:0:3", "decode at 1/2, 1/4, 1/8 size (supporting decoders only)")),
    ("cmp", A("x264 uses the chroma bit for chroma ME")),
    ("subcmp", R(MPV)),
    ("mbcmp", R(MPV)),
    ("ildctcmp", R(MPV)),
    ("precmp", R(MPV)),
    ("mblmin", R(MPV)),
    ("mblmax", R(MPV)),
    ("skip_loop_filter", A()),
    ("skip_idct", A()),
    ("skip_frame", A("e.g. nokey for thumbnails")),
    ("bidir_refine", R(MPV)),
    ("keyint_min", A()),
    ("refs", K("int:-1:16")),
    ("trellis", K("int:0:2")),
    ("mv0_threshold", R(MPV)),
    ("compression_level", K("int:-1:12", "flac 0-12, libopus 0-10, lame 0-9, png 0-9")),
    ("ch_layout", A("channel layout: stereo, 5.1(side), FL+FR, ...")),
    ("channel_layout", A("channel layout")),
    ("request_channel_layout", A("decoder downmix request")),
    ("rc_max_vbv_use", R(MPV)),
    ("rc_min_vbv_use", R(MPV)),
    ("ticks_per_frame", R("timebase internals; " + OBSCURE)),
    ("color_primaries", A()),
    ("color_trc", A()),
    ("colorspace", A()),
    ("color_range", A()),
    ("chroma_sample_location", A()),
    ("slices", K("int:0:64")),
    ("thread_type", A()),
    ("audio_service_type", R("AC-3/E-AC-3 encoders only (not supported here)")),
    ("request_sample_fmt", A("decoder output sample format preference")),
    ("sub_charenc", R("names the iconv charset, so the job picks which gconv module (shared library) is loaded")),
    ("sub_charenc_mode", R("only meaningful with sub_charenc")),
    ("sub_text_format", R(DEPRECATED + "; does nothing")),
    ("apply_cropping", A()),
    ("skip_alpha", A()),
    ("field_order", A()),
    ("dump_separator", R("log formatting only")),
    ("codec_whitelist", R("set by the service itself")),
    ("max_pixels", R("resource limit set by the service")),
    ("max_samples", R("resource limit set by the service")),
    ("hwaccel_flags", R("hardware acceleration not offered")),
    ("extra_hw_frames", R("hardware acceleration not offered")),
    ("discard_damaged_percentage", A()),
])

# ---- encoder private options ----
DECISIONS["libx264"] = OrderedDict([
    ("preset", K("name", "ultrafast superfast veryfast faster fast medium slow slower veryslow placebo")),
    ("tune", K("name", "film animation grain stillimage psnr ssim fastdecode zerolatency; "
                       "combine with + . or - (film+fastdecode); comma form not accepted by name")),
    ("profile", K("name", "baseline main high high10 high422 high444")),
    ("fastfirstpass", A()),
    ("level", K("name", "e.g. 4.1, 41, 1b")),
    ("passlogfile", R(FILE + " (2-pass stats)")),
    ("wpredp", K("int:0:2", "string form of weightp")),
    ("a53cc", A()),
    ("x264opts", K("params", "legacy key=value:... form; inner keys checked by the params "
                             "validator (refuse stats, dump-yuv, cqmfile)")),
    ("crf", A("0-51 (8-bit), -1 unset")),
    ("crf_max", A()),
    ("qp", K("int:-1:81")),
    ("aq-mode", A()),
    ("aq-strength", A()),
    ("psy", A()),
    ("psy-rd", K("text", "<psy-rd>:<psy-trellis>, e.g. 1.00:0.15")),
    ("rc-lookahead", K("int:-1:250")),
    ("weightb", A()),
    ("weightp", A()),
    ("ssim", R("prints SSIM to the log only")),
    ("intra-refresh", A()),
    ("bluray-compat", A()),
    ("b-bias", K("int:-100:100")),
    ("b-pyramid", A()),
    ("mixed-refs", A()),
    ("8x8dct", A()),
    ("fast-pskip", A()),
    ("aud", A()),
    ("mbtree", A()),
    ("deblock", K("text", "<alpha>:<beta>, e.g. -1:-1")),
    ("cplxblur", A()),
    ("partitions", K("text", "comma list of p8x8 p4x4 b8x8 i8x8 i4x4 none all")),
    ("direct-pred", A()),
    ("slice-max-size", A()),
    ("stats", R(FILE + " (2-pass stats)")),
    ("nal-hrd", A()),
    ("avcintra-class", A()),
    ("me_method", A()),
    ("motion-est", A()),
    ("forced-idr", A()),
    ("coder", A()),
    ("b_strategy", A()),
    ("chromaoffset", K("int:-12:12")),
    ("sc_threshold", A("scenecut")),
    ("noise_reduction", A()),
    ("udu_sei", A()),
    ("x264-params", K("params", "<dictionary> accepted only as params: inner keys checked by the "
                                "params validator (refuse stats, dump-yuv, cqmfile)")),
])

DECISIONS["libx265"] = OrderedDict([
    ("crf", A()),
    ("qp", K("int:-1:69")),
    ("forced-idr", A()),
    ("preset", K("name", "ultrafast superfast veryfast faster fast medium slow slower veryslow placebo")),
    ("tune", K("name", "psnr ssim grain zerolatency fastdecode animation")),
    ("profile", K("name", "main main10 mainstillpicture main444-8 main422-10 ... (x265 names)")),
    ("udu_sei", A()),
    ("x265-params", K("params", "<dictionary> accepted only as params: refuse file keys "
                                "(csv, analysis-save/load, qpfile, zonefile, scaling-list, lambda-file, "
                                "dhdr10-info, dolby-vision-rpu, stats, recon)")),
])

# libvpx (VP8) shares this table; options it lacks are simply absent there.
DECISIONS["libvpx-vp9"] = OrderedDict([
    ("lag-in-frames", A()),
    ("arnr-maxframes", A()),
    ("arnr-strength", A()),
    ("arnr-type", A()),
    ("tune", A()),
    ("deadline", A()),
    ("error-resilient", A()),
    ("max-intra-rate", A()),
    ("crf", A("sets cq-level (there is no cq-level option in 5.1)")),
    ("static-thresh", A()),
    ("drop-threshold", A()),
    ("noise-sensitivity", A()),
    ("undershoot-pct", A()),
    ("overshoot-pct", A()),
    ("ts-parameters", R("<dictionary> (temporal scalability); inner keys not checked")),
    ("auto-alt-ref", A()),
    ("cpu-used", A()),
    ("lossless", A()),
    ("tile-columns", A()),
    ("tile-rows", A()),
    ("frame-parallel", A()),
    ("aq-mode", A()),
    ("level", A()),
    ("row-mt", A()),
    ("tune-content", A()),
    ("corpus-complexity", A()),
    ("enable-tpl", A()),
    ("speed", A("alias of cpu-used")),
    ("quality", A("alias of deadline")),
    ("vp8flags", A()),
    ("arnr_max_frames", A("old alias")),
    ("arnr_strength", A("old alias")),
    ("arnr_type", A("old alias")),
    ("rc_lookahead", A("old alias of lag-in-frames")),
    ("sharpness", A()),
])

DECISIONS["libaom-av1"] = OrderedDict([
    ("cpu-used", A()),
    ("auto-alt-ref", A()),
    ("lag-in-frames", A()),
    ("arnr-max-frames", A()),
    ("arnr-strength", A()),
    ("aq-mode", A()),
    ("error-resilience", A()),
    ("crf", A()),
    ("static-thresh", A()),
    ("drop-threshold", A()),
    ("denoise-noise-level", A("film-grain denoising strength (not a table file)")),
    ("denoise-block-size", A()),
    ("undershoot-pct", A()),
    ("overshoot-pct", A()),
    ("minsection-pct", A()),
    ("maxsection-pct", A()),
    ("frame-parallel", A()),
    ("tiles", A("COLSxROWS, e.g. 2x2")),
    ("tile-columns", A()),
    ("tile-rows", A()),
    ("row-mt", A()),
    ("enable-cdef", A()),
    ("enable-global-motion", A()),
    ("enable-intrabc", A()),
    ("enable-restoration", A()),
    ("usage", A()),
    ("tune", A()),
    ("still-picture", A()),
    ("enable-rect-partitions", A()),
    ("enable-1to4-partitions", A()),
    ("enable-ab-partitions", A()),
    ("enable-angle-delta", A()),
    ("enable-cfl-intra", A()),
    ("enable-filter-intra", A()),
    ("enable-intra-edge-filter", A()),
    ("enable-smooth-intra", A()),
    ("enable-paeth-intra", A()),
    ("enable-palette", A()),
    ("enable-flip-idtx", A()),
    ("enable-tx64", A()),
    ("reduced-tx-type-set", A()),
    ("use-intra-dct-only", A()),
    ("use-inter-dct-only", A()),
    ("use-intra-default-tx-only", A()),
    ("enable-ref-frame-mvs", A()),
    ("enable-reduced-reference-set", A()),
    ("enable-obmc", A()),
    ("enable-dual-filter", A()),
    ("enable-diff-wtd-comp", A()),
    ("enable-dist-wtd-comp", A()),
    ("enable-onesided-comp", A()),
    ("enable-interinter-wedge", A()),
    ("enable-interintra-wedge", A()),
    ("enable-masked-comp", A()),
    ("enable-interintra-comp", A()),
    ("enable-smooth-interintra", A()),
    ("aom-params", K("params", "<dictionary> accepted only as params: refuse file keys "
                               "(fpf, film-grain-table, stats, partition-info-path, vmaf-model-path, "
                               "subgop-config-path, second-pass-log)")),
])

DECISIONS["libsvtav1"] = OrderedDict([
    ("hielevel", R(DEPRECATED + "; use svtav1-params hierarchical-levels")),
    ("la_depth", R(DEPRECATED + "; use svtav1-params lookahead")),
    ("tier", R(DEPRECATED + "; use svtav1-params tier")),
    ("preset", A()),
    ("crf", A()),
    ("qp", A()),
    ("sc_detection", R(DEPRECATED + "; use svtav1-params scd")),
    ("tile_columns", R(DEPRECATED + "; use svtav1-params tile-columns")),
    ("tile_rows", R(DEPRECATED + "; use svtav1-params tile-rows")),
    ("svtav1-params", K("params", "<dictionary> accepted only as params: refuse file keys "
                                  "(stats, input-stat-file, output-stat-file, fgs-table, recon)")),
])

DECISIONS["aac"] = OrderedDict([
    ("aac_coder", A()),
    ("aac_ms", A()),
    ("aac_is", A()),
    ("aac_pns", A()),
    ("aac_tns", A()),
    ("aac_ltp", A()),
    ("aac_pred", A()),
    ("aac_pce", A()),
])

DECISIONS["libopus"] = OrderedDict([
    ("application", A()),
    ("frame_duration", A("2.5 5 10 20 40 60 80 100 120 ms")),
    ("packet_loss", A()),
    ("fec", A()),
    ("vbr", A()),
    ("mapping_family", A()),
    ("apply_phase_inv", A()),
])

DECISIONS["libmp3lame"] = OrderedDict([
    ("reservoir", A()),
    ("joint_stereo", A()),
    ("abr", A()),
])

DECISIONS["flac"] = OrderedDict([
    ("lpc_coeff_precision", A()),
    ("lpc_type", A()),
    ("lpc_passes", K("int:1:64")),
    ("min_partition_order", A()),
    ("max_partition_order", A()),
    ("prediction_order_method", A()),
    ("ch_mode", A()),
    ("exact_rice_parameters", A()),
    ("multi_dim_quant", A()),
    ("min_prediction_order", A()),
    ("max_prediction_order", A()),
])

DECISIONS["pcm_s16le"] = OrderedDict()

DECISIONS["mjpeg"] = OrderedDict([
    ("mpv_flags", A()),
    ("luma_elim_threshold", R(OBSCURE)),
    ("chroma_elim_threshold", R(OBSCURE)),
    ("quantizer_noise_shaping", R(OBSCURE)),
    ("error_rate", R("deliberately corrupts the bitstream (error simulation)")),
    ("qsquish", A()),
    ("rc_qmod_amp", R("experimental; " + OBSCURE)),
    ("rc_qmod_freq", R("experimental; " + OBSCURE)),
    ("rc_eq", K("text", "rate-control expression")),
    ("rc_init_cplx", R(OBSCURE)),
    ("rc_buf_aggressivity", R("documented as currently useless")),
    ("border_mask", R(OBSCURE)),
    ("lmin", A()),
    ("lmax", A()),
    ("skip_threshold", R("frame skipping; " + OBSCURE)),
    ("skip_factor", R("frame skipping; " + OBSCURE)),
    ("skip_exp", R("frame skipping; " + OBSCURE)),
    ("skip_cmp", R("frame skipping; " + OBSCURE)),
    ("sc_threshold", A("no effect on intra-only MJPEG; allowed so libx264 sc_threshold is not refused by name")),
    ("noise_reduction", A()),
    ("ps", R("RTP payload size (network)")),
    ("huffman", A()),
    ("force_duplicated_matrix", A()),
])

DECISIONS["png"] = OrderedDict([
    ("dpi", A()),
    ("dpm", A()),
    ("pred", A()),
])

# ---- AVFormatContext generic options ----
DECISIONS["format"] = OrderedDict([
    ("avioflags", R("I/O buffering internals; " + OBSCURE)),
    ("probesize", K("number", "bytes, SI suffix ok; consider a service cap")),
    ("formatprobesize", A()),
    ("packetsize", A()),
    ("fflags", A()),
    ("seek2any", A()),
    ("analyzeduration", K("number", "microseconds, SI suffix ok; consider a service cap")),
    ("cryptokey", R(SECRET)),
    ("indexmem", R("memory limit set by the service")),
    ("rtbufsize", R("real-time device buffering (devices not offered)")),
    ("fdebug", R("debug logging")),
    ("max_delay", A()),
    ("start_time_realtime", R("wall-clock reference for real-time/RTP output; " + OBSCURE)),
    ("fpsprobesize", A()),
    ("audio_preload", A()),
    ("chunk_duration", R(OBSCURE)),
    ("chunk_size", R(OBSCURE)),
    ("f_err_detect", R("deprecated alias of err_detect")),
    ("err_detect", A()),
    ("use_wallclock_as_timestamps", A()),
    ("skip_initial_bytes", K("number", "bytes")),
    ("correct_ts_overflow", A()),
    ("flush_packets", A()),
    ("metadata_header_padding", A()),
    ("output_ts_offset", A()),
    ("max_interleave_delta", K("number", "microseconds")),
    ("f_strict", R("deprecated alias of strict")),
    ("strict", C("very|strict|normal|unofficial|experimental|2|1|0|-1|-2",
                 "numeric forms kept for -strict -2")),
    ("max_ts_probe", A()),
    ("avoid_negative_ts", A()),
    ("dump_separator", R("log formatting only")),
    ("codec_whitelist", R("set by the service itself")),
    ("format_whitelist", R("set by the service itself")),
    ("protocol_whitelist", R("set by the service itself")),
    ("protocol_blacklist", R("set by the service itself")),
    ("max_streams", R("resource limit set by the service")),
    ("skip_estimate_duration_from_pts", A()),
    ("max_probe_packets", A()),
])

# ---- muxers ----
MOVFLAGS = ("faststart frag_keyframe empty_moov default_base_moof separate_moof "
            "omit_tfhd_offset disable_chpl negative_cts_offsets cmaf dash frag_custom "
            "frag_discont delay_moov global_sidx skip_sidx write_colr prefer_icc "
            "write_gama use_metadata_tags skip_trailer isml")

DECISIONS["muxer:mov"] = OrderedDict([
    ("movflags", F(MOVFLAGS, "refused words: rtphint (RTP hint tracks), frag_every_frame (not on the reviewed list)")),
    ("moov_size", A("reserve space for the moov atom")),
    ("rtpflags", R("RTP packetization (network)")),
    ("skip_iods", A()),
    ("iods_audio_profile", A()),
    ("iods_video_profile", A()),
    ("frag_duration", A("microseconds")),
    ("min_frag_duration", A("microseconds")),
    ("frag_size", A("bytes")),
    ("ism_lookahead", A()),
    ("video_track_timescale", A()),
    ("brand", K("name", "major brand, e.g. isom, mp42")),
    ("use_editlist", A()),
    ("fragment_index", A()),
    ("mov_gamma", A()),
    ("frag_interleave", A()),
    ("encryption_scheme", R("encryption (CENC); keys are secrets")),
    ("encryption_key", R(SECRET)),
    ("encryption_kid", R(SECRET)),
    ("use_stream_ids_as_track_ids", A()),
    ("write_btrt", A()),
    ("write_tmcd", A()),
    ("write_prft", A()),
    ("empty_hdlr_name", A()),
    ("movie_timescale", A()),
])

DECISIONS["muxer:matroska"] = OrderedDict([
    ("reserve_index_space", A("bytes")),
    ("cues_to_front", A()),
    ("cluster_size_limit", A("bytes")),
    ("cluster_time_limit", A("milliseconds")),
    ("dash", A()),
    ("dash_track_number", A()),
    ("live", A()),
    ("allow_raw_vfw", A()),
    ("flipped_raw_rgb", A()),
    ("write_crc32", A()),
    ("default_mode", A()),
])

DECISIONS["muxer:mpegts"] = OrderedDict([
    ("mpegts_transport_stream_id", A()),
    ("mpegts_original_network_id", A()),
    ("mpegts_service_id", A()),
    ("mpegts_service_type", A()),
    ("mpegts_pmt_start_pid", A()),
    ("mpegts_start_pid", A()),
    ("mpegts_m2ts_mode", A()),
    ("muxrate", K("number", "bits/s, SI suffix ok")),
    ("pes_payload_size", A()),
    ("mpegts_flags", A()),
    ("mpegts_copyts", A()),
    ("tables_version", A()),
    ("omit_video_pes_length", A()),
    ("pcr_period", A("milliseconds")),
    ("pat_period", A("seconds")),
    ("sdt_period", A("seconds")),
    ("nit_period", A("seconds")),
])

DECISIONS["muxer:mpeg"] = OrderedDict([
    ("muxrate", K("number", "bits/s, SI suffix ok")),
    ("preload", A("microseconds")),
])

DECISIONS["muxer:ogg"] = OrderedDict([
    ("serial_offset", A()),
    ("oggpagesize", A()),
    ("pagesize", R("deprecated alias of oggpagesize")),
    ("page_duration", A("microseconds")),
])

DECISIONS["muxer:mp3"] = OrderedDict([
    ("id3v2_version", A()),
    ("write_id3v1", A()),
    ("write_xing", A()),
])

DECISIONS["muxer:adts"] = OrderedDict([
    ("write_id3v2", A()),
    ("write_apetag", A()),
    ("write_mpeg2", A()),
])

DECISIONS["muxer:wav"] = OrderedDict([
    ("write_bext", A()),
    ("write_peak", A()),
    ("rf64", A()),
    ("peak_block_size", A()),
    ("peak_format", A()),
    ("peak_ppv", A()),
])

DECISIONS["muxer:flac"] = OrderedDict([
    ("write_header", A()),
])

DECISIONS["muxer:avi"] = OrderedDict([
    ("reserve_index_space", A()),
    ("write_channel_mask", A()),
    ("flipped_raw_rgb", A()),
])

DECISIONS["muxer:flv"] = OrderedDict([
    ("flvflags", A()),
])

DECISIONS["muxer:nut"] = OrderedDict([
    ("syncpoints", A()),
    ("write_index", A()),
])

DECISIONS["muxer:mxf"] = OrderedDict([
    ("signal_standard", A()),
    ("store_user_comments", A()),
])

DECISIONS["muxer:ac3"] = OrderedDict()

DECISIONS["muxer:gif"] = OrderedDict([
    ("loop", A("-1 no loop, 0 infinite")),
    ("final_delay", A("centiseconds")),
])

# ---- demuxers ----
DECISIONS["demuxer:mov"] = OrderedDict([
    ("use_absolute_path", R("opens files by absolute path from alias atoms")),
    ("seek_streams_individually", A()),
    ("ignore_editlist", A()),
    ("advanced_editlist", A()),
    ("ignore_chapters", A()),
    ("use_mfra_for", A()),
    ("use_tfdt", A()),
    ("export_all", A()),
    ("export_xmp", A()),
    ("activation_bytes", R(SECRET)),
    ("audible_key", R(SECRET)),
    ("audible_iv", R(SECRET)),
    ("audible_fixed_key", R(SECRET)),
    ("decryption_key", R(SECRET)),
    ("enable_drefs", R("opens external data-reference files")),
    ("max_stts_delta", A()),
])

DECISIONS["demuxer:matroska"] = OrderedDict()
DECISIONS["demuxer:mpegts"] = OrderedDict([
    ("resync_size", A()),
    ("fix_teletext_pts", A()),
    ("ts_packetsize", R("read-only export option (XR)")),
    ("scan_all_pmts", A()),
    ("skip_unknown_pmt", A()),
    ("merge_pmt_versions", A()),
    ("max_packet_size", A()),
])
DECISIONS["demuxer:mpeg"] = OrderedDict()
DECISIONS["demuxer:ogg"] = OrderedDict()
DECISIONS["demuxer:wav"] = OrderedDict([
    ("ignore_length", A()),
    ("max_size", A()),
])
DECISIONS["demuxer:mp3"] = OrderedDict([
    ("usetoc", A()),
])
DECISIONS["demuxer:aac"] = OrderedDict()
DECISIONS["demuxer:flac"] = OrderedDict([
    ("raw_packet_size", A()),
])
DECISIONS["demuxer:avi"] = OrderedDict([
    ("use_odml", A()),
])
DECISIONS["demuxer:flv"] = OrderedDict([
    ("flv_metadata", A()),
    ("flv_full_metadata", A()),
    ("flv_ignore_prevtag", A()),
    ("missing_streams", R("read-only export option (XR)")),
])
DECISIONS["demuxer:mxf"] = OrderedDict([
    ("eia608_extract", A()),
])
DECISIONS["demuxer:asf"] = OrderedDict([
    ("no_resync_search", A()),
    ("export_xmp", A()),
])
DECISIONS["demuxer:nut"] = OrderedDict()
DECISIONS["demuxer:ivf"] = OrderedDict()
DECISIONS["demuxer:h264"] = OrderedDict([
    ("framerate", A()),
    ("raw_packet_size", A()),
])
DECISIONS["demuxer:hevc"] = OrderedDict([
    ("framerate", A()),
    ("raw_packet_size", A()),
])
DECISIONS["demuxer:yuv4mpegpipe"] = OrderedDict()
DECISIONS["demuxer:gif"] = OrderedDict([
    ("min_delay", A()),
    ("max_gif_delay", A()),
    ("default_delay", A()),
    ("ignore_loop", A()),
])

# ---- swscale (ffmpeg passes these to the auto-inserted scale filters) ----
DECISIONS["sws"] = OrderedDict([
    ("sws_flags", F("fast_bilinear bilinear bicubic neighbor area bicublin gauss sinc lanczos "
                    "spline accurate_rnd full_chroma_int full_chroma_inp bitexact error_diffusion",
                    "refused words: print_info (logging), experimental")),
    ("srcw", R("ffmpeg rejects it (use -s)")),
    ("srch", R("ffmpeg rejects it (use -s)")),
    ("dstw", R("ffmpeg rejects it (use -s)")),
    ("dsth", R("ffmpeg rejects it (use -s)")),
    ("src_format", R("ffmpeg rejects it (use -pix_fmt)")),
    ("dst_format", R("ffmpeg rejects it (use -pix_fmt)")),
    ("src_range", R("negotiated by the filtergraph; use the scale filter's in_range")),
    ("dst_range", R("negotiated by the filtergraph; use the scale filter's out_range")),
    ("param0", A("scaler parameter (bicubic B, lanczos width, ...)")),
    ("param1", A("scaler parameter (bicubic C, ...)")),
    ("src_v_chr_pos", R(OBSCURE + "; use scale filter options")),
    ("src_h_chr_pos", R(OBSCURE + "; use scale filter options")),
    ("dst_v_chr_pos", R(OBSCURE + "; use scale filter options")),
    ("dst_h_chr_pos", R(OBSCURE + "; use scale filter options")),
    ("sws_dither", A()),
    ("gamma", A()),
    ("alphablend", A()),
    ("threads", A()),
])

# ---- swresample (ffmpeg passes these to the auto-inserted aresample) ----
NEGOTIATED = "set by ffmpeg's filtergraph negotiation; use -ar/-ac/-sample_fmt/-ch_layout"
DECISIONS["swr"] = OrderedDict([
    ("ich", R(DEPRECATED)),
    ("in_channel_count", R(DEPRECATED)),
    ("och", R(DEPRECATED)),
    ("out_channel_count", R(DEPRECATED)),
    ("uch", R(OBSCURE)),
    ("used_channel_count", R(OBSCURE)),
    ("isr", R(NEGOTIATED)),
    ("in_sample_rate", R(NEGOTIATED)),
    ("osr", R(NEGOTIATED)),
    ("out_sample_rate", R(NEGOTIATED)),
    ("isf", R(NEGOTIATED)),
    ("in_sample_fmt", R(NEGOTIATED)),
    ("osf", R(NEGOTIATED)),
    ("out_sample_fmt", R(NEGOTIATED)),
    ("tsf", A("internal sample format")),
    ("internal_sample_fmt", A()),
    ("icl", R(DEPRECATED)),
    ("in_channel_layout", R(DEPRECATED)),
    ("ocl", R(DEPRECATED)),
    ("out_channel_layout", R(DEPRECATED)),
    ("ichl", R(NEGOTIATED)),
    ("in_chlayout", R(NEGOTIATED)),
    ("ochl", R(NEGOTIATED)),
    ("out_chlayout", R(NEGOTIATED)),
    ("clev", A("downmix centre level")),
    ("center_mix_level", A()),
    ("slev", A("downmix surround level")),
    ("surround_mix_level", A()),
    ("lfe_mix_level", A()),
    ("rmvol", A()),
    ("rematrix_volume", A()),
    ("rematrix_maxval", A()),
    ("flags", A()),
    ("swr_flags", A()),
    ("dither_scale", A()),
    ("dither_method", A()),
    ("filter_size", K("int:0:1024")),
    ("phase_shift", A()),
    ("linear_interp", A()),
    ("exact_rational", A()),
    ("cutoff", A()),
    ("resample_cutoff", A()),
    ("resampler", A()),
    ("precision", A()),
    ("cheby", A()),
    ("min_comp", A()),
    ("min_hard_comp", A()),
    ("comp_duration", A()),
    ("max_soft_comp", A()),
    ("async", A()),
    ("first_pts", A()),
    ("matrix_encoding", A()),
    ("filter_type", A()),
    ("kaiser_beta", A()),
    ("output_sample_bits", A()),
])

# Safety net: an allowed row whose name matches this is a policy error.
FORBIDDEN_NAME_RE = re.compile(
    r"(^|[_-])(file|filename|path|dir)$|passlog|^stats$|^dump_|(^|_)key$|^cryptokey$|_kid$|"
    r"whitelist|blacklist|^debug$|^fdebug$|loglevel|^csv")

# --------------------------------------------------------------------------
# Parsing ffmpeg -h output
# --------------------------------------------------------------------------

FLAGCHARS = "EDFVASXRBTP"  # order av_opt_show2 prints them in (5.1)
OPT_RE = re.compile(r"^  -(\S+)\s+<([^>]+)>\s+([EDFVASXRBTP.]{11})(?:\s(.*))?$")
CONST_RE = re.compile(r"^     (\S+)(?:\s+(\S+))?\s+([EDFVASXRBTP.]{11})(?:\s(.*))?$")
SECTION_RE = re.compile(r"^(\S.*) AVOptions:$")
RANGE_RE = re.compile(r"\(from (\S+) to (\S+)\)")

NAMED_LIMITS = {
    "INT_MIN": -2**31, "INT_MAX": 2**31 - 1,
    "I64_MIN": -2**63, "I64_MAX": 2**63 - 1,
    "UINT32_MAX": 2**32 - 1,
}
INT_TYPES = {"int", "int64", "uint64"}


class Opt:
    def __init__(self, name, type_, flags, desc, section):
        self.name = name
        self.type = type_
        self.flags = {c for i, c in enumerate(flags) if c != "." and c == FLAGCHARS[i]}
        self.desc = desc or ""
        self.section = section
        self.consts = []  # list of (name, value-or-None)

    def range(self):
        m = RANGE_RE.search(self.desc)
        return (m.group(1), m.group(2)) if m else None


def run_ffmpeg(ffmpeg, args):
    env = dict(os.environ, LC_ALL="C", AV_LOG_FORCE_NOCOLOR="1")
    p = subprocess.run([ffmpeg, "-hide_banner"] + args, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                       universal_newlines=True, errors="replace")
    return p.stdout


def parse_sections(text):
    """Return list of (section title, [Opt]) in output order."""
    sections = []
    cur = None
    last = None
    for line in text.splitlines():
        m = SECTION_RE.match(line)
        if m:
            cur = (m.group(1), [])
            sections.append(cur)
            last = None
            continue
        if cur is None:
            continue
        m = OPT_RE.match(line)
        if m:
            last = Opt(m.group(1), m.group(2), m.group(3), m.group(4), cur[0])
            cur[1].append(last)
            continue
        m = CONST_RE.match(line)
        if m and last is not None:
            last.consts.append((m.group(1), m.group(2)))
            continue
        if line and not line.startswith(" "):
            # a non-indented line that is not a section header ends the section
            cur = None
            last = None
    return sections


def fftools_option_names(full_text):
    names = set()
    for line in full_text.splitlines():
        if SECTION_RE.match(line):
            break
        m = re.match(r"^-(\w+)", line)
        if m:
            names.add(m.group(1))
    return names


def split_full(full_text):
    """Split -h full into layer regions.

    ffmpeg prints show_help_children() for the codec class, the format class,
    swscale and swresample in that order; each region holds the generic class
    followed by all of its children (codec private classes; AVIO/URL/protocol,
    muxer and demuxer classes).
    """
    secs = parse_sections(full_text)
    idx = {}
    for i, (title, _) in enumerate(secs):
        idx.setdefault(title, i)
    need = ["AVCodecContext", "AVFormatContext", "SWScaler", "SWResampler"]
    for n in need:
        if n not in idx:
            sys.exit("gen-avoptions: '%s AVOptions:' not found in ffmpeg -h full" % n)
    i_cc, i_fc, i_sws, i_swr = (idx[n] for n in need)
    i_end = len(secs)
    for i in range(i_swr + 1, len(secs)):
        if secs[i][0] != "SWResampler":
            i_end = i
            break
    region = lambda a, b: [o for _, opts in secs[a:b] for o in opts]
    return {
        "codec_generic": secs[i_cc][1],
        "format_generic": secs[i_fc][1],
        "sws": secs[i_sws][1],
        "swr": secs[i_swr][1],
        "codec_region": region(i_cc, i_fc),
        "format_region": region(i_fc, i_sws),
    }


def component_options(ffmpeg, kind, name):
    """Options of one encoder/muxer/demuxer, or None if the build lacks it."""
    text = run_ffmpeg(ffmpeg, ["-h", "%s=%s" % (kind, name)])
    header = {"encoder": "Encoder", "muxer": "Muxer", "demuxer": "Demuxer"}[kind]
    first = text.splitlines()[0] if text.strip() else ""
    m = re.match(r"^%s (\S+) \[" % header, first)
    if not m:
        return None, None
    full_name = m.group(1)
    if kind != "demuxer" and full_name != name:
        return None, None
    if kind == "demuxer" and name not in full_name.split(","):
        return None, None
    opts = [o for _, os_ in parse_sections(text) for o in os_]
    return full_name, opts


# --------------------------------------------------------------------------
# Value kinds
# --------------------------------------------------------------------------

def limit(s, is_max):
    if s in NAMED_LIMITS:
        return NAMED_LIMITS[s]
    if s.lstrip("-") in ("FLT_MAX", "DBL_MAX"):
        return None
    try:
        v = float(s)
    except ValueError:
        return None
    if "e" in s.lower():
        # av_opt_show2 prints exact INT_MAX/I64_MAX/... by name, so a %g form
        # (6 significant digits) is some other value: INT_MAX-1, INT_MAX/2,
        # 1 << 22, ...  Pick the tightest well-known value within the %g
        # rounding error, or else round inwards.
        cands = {2**31 - 2, 2**30 - 1, 100 * 2**24}
        for k in range(10, 63):
            cands.update((2**k, 2**k - 1))
        for k in range(3, 19):
            cands.add(10**k)
        tol = abs(v) * 5e-6 + 1
        near = sorted(c for c in cands if abs(c - abs(v)) <= tol)
        if near:
            c = near[0] if is_max else near[-1]
            return c if v >= 0 else -c
        slack = abs(v) * 5e-6
        return int(math.floor(v - slack)) if is_max else int(math.ceil(v + slack))
    return int(v) if v == int(v) else None


def full_type_range(lo, hi, type_):
    if type_ == "int":
        return lo <= NAMED_LIMITS["INT_MIN"] and hi >= NAMED_LIMITS["INT_MAX"]
    return lo <= NAMED_LIMITS["I64_MIN"] and hi >= NAMED_LIMITS["I64_MAX"]


def const_names(opt):
    seen = []
    for n, _ in opt.consts:
        if n not in seen:
            seen.append(n)
    return seen


def auto_kind(opt):
    t = opt.type
    if t == "boolean":
        return "bool01", ""
    if t == "flags":
        words = const_names(opt)
        return "flags", ("words: " + ",".join(words)) if words else ""
    if t in INT_TYPES:
        if opt.consts:
            return "choice:" + "|".join(const_names(opt)), ""
        r = opt.range()
        if r:
            lo, hi = limit(r[0], False), limit(r[1], True)
            if lo is not None and hi is not None:
                if full_type_range(lo, hi, t):
                    return "int", ""
                return "int:%d:%d" % (lo, hi), ""
        return "int", ""
    if t in ("float", "double"):
        r = opt.range()
        note = ""
        unbounded = {"INT_MIN", "INT_MAX", "I64_MIN", "I64_MAX", "FLT_MAX", "-FLT_MAX",
                     "DBL_MAX", "-DBL_MAX"}
        if r and not (r[0] in unbounded and r[1] in unbounded):
            note = "range %s..%s (per -h)" % r
        return "number", note
    if t == "duration":
        return "time", ""
    if t in ("video_rate", "rational"):
        return "rate", ""
    if t == "image_size":
        return "size", ""
    if t in ("pix_fmt", "sample_fmt"):
        return "name", ""
    if t == "channel_layout":
        return "layout", ""
    raise ValueError("no automatic kind for <%s> option %s; decide explicitly" % (t, opt.name))


def resolve(owner, opt, decision, problems):
    """Return (allow, note) for one option."""
    kind, detail, note = decision
    if kind == "-":
        return "-", note
    if opt.type == "dictionary" and not (kind == "kind" and detail == "params"):
        problems.append("%s %s: <dictionary> must be refused or params" % (owner, opt.name))
        return "-", "<dictionary>: inner components are not checked"
    if "R" in opt.flags:
        problems.append("%s %s: read-only option allowed" % (owner, opt.name))
        return "-", "read-only"
    if FORBIDDEN_NAME_RE.search(opt.name):
        problems.append("%s %s: name looks like a file/secret/logging option" % (owner, opt.name))
    extra = ""
    if kind == "auto":
        try:
            allow, extra = auto_kind(opt)
        except ValueError as e:
            problems.append("%s: %s" % (owner, e))
            return "-", "not reviewed (no automatic kind)"
    elif kind == "kind":
        allow = detail
        if allow.startswith("int:") and opt.type in INT_TYPES:
            r = opt.range()
            if r:
                lo, hi = limit(r[0], False), limit(r[1], True)
                _, a, b = allow.split(":")
                if lo is not None and hi is not None and (int(a) < lo or int(b) > hi):
                    problems.append("%s %s: %s exceeds -h range %s..%s"
                                    % (owner, opt.name, allow, r[0], r[1]))
    elif kind == "flags":
        words = const_names(opt)
        bad = [w for w in detail if w not in words]
        if bad:
            problems.append("%s %s: flag words not in -h: %s" % (owner, opt.name, " ".join(bad)))
        keep = []
        for w in detail:
            if w in words and w not in keep:
                keep.append(w)
        allow = "flags"
        extra = "words: " + ",".join(keep)
    elif kind == "choice":
        names = const_names(opt)
        values = {v for _, v in opt.consts if v is not None}
        bad = [c for c in detail if c not in names and c not in values]
        if bad:
            problems.append("%s %s: choice entries not in -h: %s" % (owner, opt.name, " ".join(bad)))
        allow = "choice:" + "|".join(c for c in detail if c not in bad)
    else:
        raise AssertionError(kind)
    return allow, "; ".join(x for x in (extra, note) if x)


def place_of(opt, layer):
    e, d = "E" in opt.flags, "D" in opt.flags
    if e and d:
        return "both"
    if e:
        return "output"
    if d:
        return "input"
    # swresample options carry neither flag; ffmpeg applies them to the
    # resampler of output streams.
    return "output"


def clean(s):
    return re.sub(r"[\t\r\n]+", " ", s).strip()


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def generate(ffmpeg):
    problems = []
    warnings = []
    version = run_ffmpeg(ffmpeg, ["-version"]).splitlines()[0].strip()
    full = run_ffmpeg(ffmpeg, ["-h", "full"])
    regions = split_full(full)
    fftools = fftools_option_names(full)
    codec_names = {o.name for o in regions["codec_region"]}
    format_names = {o.name for o in regions["format_region"]}
    codec_generic_names = {o.name for o in regions["codec_generic"]}

    # owner -> (layer, [Opt], label)
    owners = OrderedDict()
    missing = []
    empty = []
    owners["codec"] = ("codec", regions["codec_generic"], "AVCodecContext")
    for enc in ENCODERS:
        full_name, opts = component_options(ffmpeg, "encoder", enc)
        if opts is None:
            missing.append("encoder " + enc)
            continue
        if not opts:
            empty.append(enc)
        owners[enc] = ("codec", opts, "encoder " + full_name)
    owners["format"] = ("format", regions["format_generic"], "AVFormatContext")
    for mux in MUXERS:
        full_name, opts = component_options(ffmpeg, "muxer", mux)
        if opts is None:
            missing.append("muxer " + mux)
            continue
        if not opts:
            empty.append("muxer:" + mux)
        owners["muxer:" + mux] = ("format", opts, "muxer " + full_name)
    for dmx in DEMUXERS:
        full_name, opts = component_options(ffmpeg, "demuxer", dmx)
        if opts is None:
            missing.append("demuxer " + dmx)
            continue
        if not opts:
            empty.append("demuxer:" + dmx)
        owners["demuxer:" + dmx] = ("format", opts, "demuxer " + full_name)
    owners["sws"] = ("sws", regions["sws"], "SWScaler")
    owners["swr"] = ("swr", regions["swr"], "SWResampler")

    used = {}
    rows = []
    unreachable = []
    counts = OrderedDict()
    for owner, (layer, opts, label) in owners.items():
        group = DECISION_GROUP.get(owner, owner)
        table = DECISIONS.get(group)
        if table is None:
            problems.append("no decision table for owner %s" % owner)
            table = {}
        used.setdefault(group, set())
        seen = set()
        n_allow = n_refuse = 0
        for opt in opts:
            if opt.name in seen:
                continue
            seen.add(opt.name)
            used[group].add(opt.name)
            decision = table.get(opt.name)
            if decision is None:
                warnings.append("unreviewed option %s %s <%s>" % (owner, opt.name, opt.type))
                allow, note = "-", "not reviewed (default deny)"
            else:
                allow, note = resolve(owner, opt, decision, problems)
            # Routing facts of fftools/cmdutils.c opt_default() in 5.1.
            route = []
            bare_shadow = opt.name in fftools
            if layer in ("sws", "swr"):
                shadow = []
                if bare_shadow:
                    shadow.append("fftools -%s" % opt.name)
                if opt.name in codec_names:
                    shadow.append("codec layer")
                if opt.name in format_names:
                    shadow.append("format layer")
                if opt.name[:1] in "vas" and opt.name[1:] in codec_generic_names:
                    shadow.append("codec layer via %s-prefix" % opt.name[0])
                if shadow:
                    # Not a row: the loader merges rows by name and a refusal
                    # wins, so a refused sws/swr row would refuse the codec
                    # option of the same name.  Record it as a comment.
                    unreachable.append("# unreachable %s %s %s: the name is taken by %s "
                                       "before swscale/swresample are tried"
                                       % (owner, opt.name, "<%s>" % opt.type, ", ".join(shadow)))
                    continue
            else:
                if bare_shadow:
                    route.append("bare -%s is parsed by fftools first" % opt.name)
                if layer == "codec" and opt.name in format_names:
                    route.append("bare name also routed to the format layer")
                if layer == "format" and opt.name in codec_names:
                    route.append("also routed to the codec layer")
            if route:
                note = "; ".join(x for x in [note] + route if x)
            if "P" in opt.flags and "deprecated" not in note.lower():
                note = "; ".join(x for x in [note, "deprecated (P)"] if x)
            if allow == "-":
                n_refuse += 1
            else:
                n_allow += 1
            rows.append((owner, opt.name, layer, place_of(opt, layer), "<%s>" % opt.type,
                         allow, clean(note)))
        counts[owner] = (n_allow, n_refuse)

    # crates/model/src/options/allow.rs merges rows by name across owners and
    # a refusal anywhere refuses the name everywhere: keep decisions consistent.
    verdicts = {}
    for r in rows:
        verdicts.setdefault(r[1], {}).setdefault(r[5] == "-", []).append(r[0])
    for name, v in sorted(verdicts.items()):
        if True in v and False in v:
            problems.append("option %s refused by %s but allowed by %s (rows merge by name; "
                            "the refusal would win)" % (name, ",".join(v[True]), ",".join(v[False])))

    for group, table in DECISIONS.items():
        for name in table:
            if name not in used.get(group, set()):
                warnings.append("decision for %s %s matches no option in this build" % (group, name))

    out = []
    out.append("\t".join(["owner", "name", "layer", "place", "type", "allow", "note"]))
    out.append("# GENERATED by scripts/allowlist/gen-avoptions.py -- do not edit by hand; "
               "edit DECISIONS in the script and re-run.")
    out.append("# source: %s" % version)
    out.append("# commands: ffmpeg -h full | -h encoder=NAME | -h muxer=NAME | -h demuxer=NAME")
    out.append("# routing (fftools opt_default): codec-layer names take :stream_specifier "
               "suffixes (b:v, crf:v:0); generic codec options also take a v/a/s prefix "
               "(vprofile); format, sws and swr names take neither.")
    out.append("# place: input = decoding/demuxing (D), output = encoding/muxing (E), both = ED. "
               "An E-only codec option given before -i (or D-only after) is a fatal error in 5.1.")
    out.append("# owner muxer:X / demuxer:X rows apply only when that (de)muxer is in use; "
               "an unknown demuxer option on an input is fatal ('Option not found').")
    out.append("# allow '-' = refused; options absent from this file are refused too. "
               "The loader merges rows by name across owners (a refusal wins), so one name "
               "is never refused for one owner and allowed for another.")
    if missing:
        out.append("# missing from this build: " + ", ".join(missing))
    if empty:
        out.append("# no private AVOptions in this build: " + ", ".join(empty))
    out.extend(unreachable)
    for r in rows:
        out.append("\t".join(r))
    return "\n".join(out) + "\n", counts, missing, empty, problems, warnings


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ffmpeg", default=os.environ.get("FFMPEG", "/usr/bin/ffmpeg"))
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true",
                    help="compare with --out instead of writing; exit 1 on difference")
    args = ap.parse_args()

    text, counts, missing, empty, problems, warnings = generate(args.ffmpeg)
    for w in warnings:
        print("warning: " + w, file=sys.stderr)
    for p in problems:
        print("error: " + p, file=sys.stderr)
    if problems:
        return 2
    if args.check:
        try:
            with open(args.out, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print("%s is out of date; re-run %s" % (args.out, sys.argv[0]), file=sys.stderr)
            return 1
        return 0
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    total_a = sum(a for a, _ in counts.values())
    total_r = sum(r for _, r in counts.values())
    print("wrote %s: %d rows (%d allowed, %d refused)" % (args.out, total_a + total_r, total_a, total_r),
          file=sys.stderr)
    for owner, (a, r) in counts.items():
        print("  %-22s %3d allowed %3d refused" % (owner, a, r), file=sys.stderr)
    if missing:
        print("missing from build: " + ", ".join(missing), file=sys.stderr)
    if empty:
        print("no private options: " + ", ".join(empty), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
