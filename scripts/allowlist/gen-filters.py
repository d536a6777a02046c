#!/usr/bin/env python3
"""Generate crates/model/src/options/allow/filters.tsv from the installed ffmpeg.

Python 3 standard library only.  Run from anywhere:

    python3 scripts/allowlist/gen-filters.py            # writes the TSV
    python3 scripts/allowlist/gen-filters.py --check    # exit 1 if the TSV is stale
    python3 scripts/allowlist/gen-filters.py --resume-check   # also compare, for every
        # option K, how ffmpeg names positional values after K=... with the
        # service's walk over this TSV (slow: one probe per option)
    FFMPEG=/path/to/ffmpeg python3 scripts/allowlist/gen-filters.py

For every filter in VIDEO_FILTERS / AUDIO_FILTERS it

 1. runs `ffmpeg -h filter=NAME` and parses the AVOptions it prints (the
    filter's own class first, then child classes such as framesync, SWScaler,
    SWResampler), in declaration order; CONST entries (indented deeper, no
    <type>) are skipped;
 2. reads the same option tables straight from libavfilter/libavutil through
    ctypes (optional, used when the shared libraries load): this gives the
    option offsets, so aliases are known exactly instead of guessed from
    "same type + same help", and it finds options that `-h` does not print
    (options declared with flags=0, e.g. scale's size/s);
 3. derives the positional slots the way FFmpeg 5.1's process_options()
    does (skip CONST and any option whose offset equals the previous one);
 4. runs the debug probe
        ffmpeg -v debug -f lavfi -i testsrc|sine ... -vf|-af NAME=p0:p1:...:pN
    and reads the "[Parsed_NAME_0 @ ..] Setting 'KEY' to value 'pI'" lines.
    These lines are the ground truth for the slot column.  The probe always
    passes more values than the filter has slots, so option parsing fails
    with "No option name near" before the filter is initialised (nothing is
    opened or written; it also runs in a scratch directory);
 5. writes one TSV row per non-CONST option with the allow decision from
    DECISIONS below (default: yes).

Things the probe showed about this build (Debian ffmpeg 5.1.x) that differ
from a naive reading of avfilter.c -- the generator records what the binary
does, the report in the TSV header explains them:

 * After each value (positional or key=value) the cursor jumps to the option
   that key resolves to, looked up children first (av_opt_find with
   AV_OPT_SEARCH_CHILDREN), and the next positional value takes the option
   declared after it.  So positional values may follow key=value
   (`crop=y=1:5` sets keep_aspect=5), and a filter whose child class repeats
   a name continues in the child's table: overlay's slots are
   x, y, eof_action, shortest, repeatlast (framesync order), and scale's
   slots 15.. are SWScaler's param0, param1, src_v_chr_pos, ... threads.
   A key that only the generic filter context knows (enable, threads) resets
   the cursor to the first option.
 * Options that the cursor never reaches get slot "-" (e.g. overlay's eval,
   format, alpha; scale's eval).
"""

import ctypes
import os
import re
import subprocess
import sys
import tempfile

FFMPEG = os.environ.get("FFMPEG", "/usr/bin/ffmpeg")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(REPO, "crates", "model", "src", "options", "allow", "filters.tsv")

# --------------------------------------------------------------------------
# Filters to cover.  Names this build lacks are skipped and reported.
# --------------------------------------------------------------------------
VIDEO_FILTERS = """
scale crop pad fps framerate yadif bwdif w3fdif kerndeint idet setsar setdar
format transpose hflip vflip rotate null copy trim setpts select tpad fade
overlay split colorspace zscale tonemap unsharp hqdn3d eq lutyuv lutrgb
colorchannelmixer colorlevels curves drawbox drawgrid drawtext thumbnail tile
minterpolate deblock noise boxblur gblur smartblur fieldmatch decimate pullup
interlace telecine setfield setparams scdet blackdetect cropdetect mpdecimate
palettegen paletteuse negate hue vignette chromakey colorkey showinfo xfade
fieldorder dejudder deflicker loop reverse untile super2min sidedata metadata
psnr ssim
""".split()

AUDIO_FILTERS = """
aresample aformat volume loudnorm dynaudnorm atrim asetpts afade pan
channelmap channelsplit amerge amix highpass lowpass bandpass equalizer
acompressor alimiter atempo asetrate apad aecho silenceremove anull acopy
ebur128 silencedetect volumedetect asplit adelay areverse aloop asetnsamples
compand extrastereo stereotools earwax ametadata asidedata join crossfeed
acrossfade
""".split()

# --------------------------------------------------------------------------
# Allow decisions -- the one place to review.
#
# DECISIONS[filter][option] = ("yes" | "no", "note").  Options not listed
# are "yes".  A "no" is for anything that names a file to read or write,
# loads code/plugins, opens devices or the network, runs commands or writes
# logs/stats to files.  Writing to ffmpeg's own log (stderr) is fine.
#
# STRICT filters must list every option: a new ffmpeg that adds an option
# to one of them makes the generator fail until somebody decides.
# --------------------------------------------------------------------------
_FONT_NOTE = "fontconfig family/pattern, matched against installed fonts only"
# vf_scale.c sets the SWScaler's geometry from the links, then applies these
# child options over it: swscale is told a size or format the buffers do not
# have (heap overflow with dstw/dst_format, uninitialised reads with srcw).
_SWS_GEOMETRY = "swscale geometry the filter negotiates itself; a wrong value corrupts memory (use scale's own w/h/in_*/out_* options)"
_SWR_NEGOTIATED = "negotiated by the filter graph (rate, format and layout come from the links; use aresample's sample_rate or aformat)"
DECISIONS = {
    "drawtext": {
        "fontfile": ("no", "names a font file to read"),
        "text": ("yes", ""),
        "textfile": ("no", "names a text file to read"),
        "fontcolor": ("yes", ""),
        "fontcolor_expr": ("yes", ""),
        "boxcolor": ("yes", ""),
        "bordercolor": ("yes", ""),
        "shadowcolor": ("yes", ""),
        "box": ("yes", ""),
        "boxborderw": ("yes", ""),
        "line_spacing": ("yes", ""),
        "fontsize": ("yes", ""),
        "x": ("yes", ""),
        "y": ("yes", ""),
        "shadowx": ("yes", ""),
        "shadowy": ("yes", ""),
        "borderw": ("yes", ""),
        "tabsize": ("yes", ""),
        "basetime": ("yes", ""),
        "font": ("yes", _FONT_NOTE),
        "expansion": ("yes", ""),
        "timecode": ("yes", ""),
        "tc24hmax": ("yes", ""),
        "timecode_rate": ("yes", ""),
        "r": ("yes", ""),
        "rate": ("yes", ""),
        "reload": ("no", "re-reads textfile every N frames"),
        "alpha": ("yes", ""),
        "fix_bounds": ("yes", ""),
        "start_number": ("yes", ""),
        "text_source": ("yes", "takes text from frame side data, not a file"),
        "text_shaping": ("yes", ""),
        "ft_load_flags": ("yes", ""),
    },
    "metadata": {
        "mode": ("yes", ""),
        "key": ("yes", ""),
        "value": ("yes", ""),
        "function": ("yes", ""),
        "expr": ("yes", ""),
        "file": ("no", "writes metadata to the named file (positional slot 5)"),
        "direct": ("yes", "only changes buffering of the file output"),
    },
    "ametadata": {
        "mode": ("yes", ""),
        "key": ("yes", ""),
        "value": ("yes", ""),
        "function": ("yes", ""),
        "expr": ("yes", ""),
        "file": ("no", "writes metadata to the named file (positional slot 5)"),
        "direct": ("yes", "only changes buffering of the file output"),
    },
    "psnr": {
        "stats_file": ("no", "writes per-frame stats to the named file (positional slot 0)"),
        "f": ("no", "alias of stats_file: writes stats to a file (positional slot 0)"),
        "stats_version": ("yes", "format of the stats file only"),
        "output_max": ("yes", "extra fields in the stats file only"),
        "eof_action": ("yes", ""),
        "shortest": ("yes", ""),
        "repeatlast": ("yes", ""),
    },
    "ssim": {
        "stats_file": ("no", "writes per-frame stats to the named file (positional slot 0)"),
        "f": ("no", "alias of stats_file: writes stats to a file (positional slot 0)"),
        "eof_action": ("yes", ""),
        "shortest": ("yes", ""),
        "repeatlast": ("yes", ""),
    },
    "curves": {
        "preset": ("yes", ""),
        "master": ("yes", ""),
        "m": ("yes", ""),
        "red": ("yes", ""),
        "r": ("yes", ""),
        "green": ("yes", ""),
        "g": ("yes", ""),
        "blue": ("yes", ""),
        "b": ("yes", ""),
        "all": ("yes", ""),
        "psfile": ("no", "reads a Photoshop curves file"),
        "plot": ("no", "writes a Gnuplot script to the named file"),
    },
    "paletteuse": {
        "dither": ("yes", ""),
        "bayer_scale": ("yes", ""),
        "diff_mode": ("yes", ""),
        "new": ("yes", ""),
        "alpha_threshold": ("yes", ""),
        "use_alpha": ("yes", ""),
        "debug_kdtree": ("no", "writes a Graphviz file of the kd-tree"),
        "color_search": ("yes", ""),
        "mean_err": ("yes", ""),
        "debug_accuracy": ("yes", "logs to ffmpeg's log only"),
    },
    "showinfo": {
        "checksum": ("yes", "prints frame info to ffmpeg's log only (no file)"),
    },
    "scale": {
        "threads": ("yes", "positional slot 24 lands on the generic filter option 'threads'"),
        "srcw": ("no", _SWS_GEOMETRY),
        "srch": ("no", _SWS_GEOMETRY),
        "dstw": ("no", _SWS_GEOMETRY),
        "dsth": ("no", _SWS_GEOMETRY),
        "src_format": ("no", _SWS_GEOMETRY),
        "dst_format": ("no", _SWS_GEOMETRY),
        "src_range": ("no", _SWS_GEOMETRY),
        "dst_range": ("no", _SWS_GEOMETRY),
        "src_v_chr_pos": ("no", _SWS_GEOMETRY),
        "src_h_chr_pos": ("no", _SWS_GEOMETRY),
        "dst_v_chr_pos": ("no", _SWS_GEOMETRY),
        "dst_h_chr_pos": ("no", _SWS_GEOMETRY),
    },
    "aresample": {
        "ich": ("no", _SWR_NEGOTIATED),
        "in_channel_count": ("no", _SWR_NEGOTIATED),
        "och": ("no", _SWR_NEGOTIATED),
        "out_channel_count": ("no", _SWR_NEGOTIATED),
        "uch": ("no", _SWR_NEGOTIATED),
        "used_channel_count": ("no", _SWR_NEGOTIATED),
        "isr": ("no", _SWR_NEGOTIATED),
        "in_sample_rate": ("no", _SWR_NEGOTIATED),
        "osr": ("no", _SWR_NEGOTIATED),
        "out_sample_rate": ("no", _SWR_NEGOTIATED),
        "isf": ("no", _SWR_NEGOTIATED),
        "in_sample_fmt": ("no", _SWR_NEGOTIATED),
        "osf": ("no", _SWR_NEGOTIATED),
        "out_sample_fmt": ("no", _SWR_NEGOTIATED),
        "icl": ("no", _SWR_NEGOTIATED),
        "in_channel_layout": ("no", _SWR_NEGOTIATED),
        "ocl": ("no", _SWR_NEGOTIATED),
        "out_channel_layout": ("no", _SWR_NEGOTIATED),
        "ichl": ("no", _SWR_NEGOTIATED),
        "in_chlayout": ("no", _SWR_NEGOTIATED),
        "ochl": ("no", _SWR_NEGOTIATED),
        "out_chlayout": ("no", _SWR_NEGOTIATED),
    },
}
STRICT = {"drawtext", "metadata", "ametadata", "psnr", "ssim", "curves", "paletteuse", "showinfo"}

# An option whose name or help matches this and that has no explicit decision
# stops the generator: somebody has to look at it and add it to DECISIONS
# (or to REVIEWED below when it turned out to be harmless).
SUSPICIOUS = re.compile(
    r"file|path|url|uri\b|dump|plugin|librar|command|device|socket|"
    r"script|graphviz|gnuplot|\bsave\b|\bstore\b|\bwrite|\bload\b|\bopen\b",
    re.I)
REVIEWED = {
    ("ebur128", "dualmono"): "'files' in help means input media",
    ("ebur128", "panlaw"): "'files' in help means input media",
    ("loudnorm", "measured_I"): "'input file' in help means input media",
    ("loudnorm", "measured_i"): "'input file' in help means input media",
    ("loudnorm", "measured_LRA"): "'input file' in help means input media",
    ("loudnorm", "measured_lra"): "'input file' in help means input media",
    ("loudnorm", "measured_TP"): "'input file' in help means input media",
    ("loudnorm", "measured_tp"): "'input file' in help means input media",
    ("loudnorm", "measured_thresh"): "'input file' in help means input media",
    ("drawtext", "ft_load_flags"): "freetype glyph loading flags",
}

# Tricky cases verified against the binary; (filter, args, expected pairs).
# Cases naming files end in one value more than the filter has slots, so
# parsing stops with "No option name near 'guard'" before anything opens.
TRICKY = [
    ("scale", "640:trunc(ow/a/2)*2", [("w", "640"), ("h", "trunc(ow/a/2)*2")]),
    ("psnr", "a:2:1:guard", [("stats_file", "a"), ("stats_version", "2"), ("output_max", "1")]),
    ("ssim", "a:guard", [("stats_file", "a")]),
    ("metadata", "print:k:v:same_str:e:F:1:guard",
     [("mode", "print"), ("key", "k"), ("value", "v"), ("function", "same_str"),
      ("expr", "e"), ("file", "F"), ("direct", "1")]),
    ("curves", "none:m:r:g:b:a:PS:PLOT:guard",
     [("preset", "none"), ("master", "m"), ("red", "r"), ("green", "g"),
      ("blue", "b"), ("all", "a"), ("psfile", "PS"), ("plot", "PLOT")]),
    ("pad", "640:480:10:20:red:init:16/9",
     [("width", "640"), ("height", "480"), ("x", "10"), ("y", "20"),
      ("color", "red"), ("eval", "init"), ("aspect", "16/9")]),
    ("fps", "30:0:near:round",
     [("fps", "30"), ("start_time", "0"), ("round", "near"), ("eof_action", "round")]),
    ("crop", "100:50:10:5:1:1",
     [("out_w", "100"), ("out_h", "50"), ("x", "10"), ("y", "5"),
      ("keep_aspect", "1"), ("exact", "1")]),
    ("aresample", "44100", [("sample_rate", "44100")]),
    ("volume", "0.5:fixed:frame:track:1:0",
     [("volume", "0.5"), ("precision", "fixed"), ("eval", "frame"),
      ("replaygain", "track"), ("replaygain_preamp", "1"), ("replaygain_noclip", "0")]),
    ("overlay", "1:2:pass:1:0",
     [("x", "1"), ("y", "2"), ("eof_action", "pass"), ("shortest", "1"), ("repeatlast", "0")]),
    # positional values resume after a key=value, at the option declared next
    ("crop", "y=1:5:6", [("y", "1"), ("keep_aspect", "5"), ("exact", "6")]),
    ("scale", "h=10:20", [("h", "10"), ("height", "20")]),
    ("crop", "1:2:enable=1:5",
     [("out_w", "1"), ("out_h", "2"), ("enable", "1"), ("out_w", "5")]),
]

# --------------------------------------------------------------------------

TIMELINE = "This filter has support for timeline through the 'enable' option."
GENERIC_KEYS = {"enable", "threads", "thread_type", "extra_hw_frames"}


def run(cmd, cwd=None, timeout=60):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class Opt:
    def __init__(self, name, typ, help_, cls, visible=True):
        self.name, self.type, self.help, self.cls = name, typ, help_, cls
        self.visible = visible      # printed by -h
        self.offset = None          # from introspection
        self.alias_of = None        # name of the option it shares a slot with
        self.slot = "-"
        self.notes = []


def parse_help(name):
    """Return (exists, media, sections, timeline) from `ffmpeg -h filter=NAME`.
    sections: list of (class_name, [Opt]) in print order (own class first)."""
    r = run([FFMPEG, "-hide_banner", "-h", "filter=" + name])
    text = r.stdout + r.stderr
    if not text.startswith("Filter " + name + "\n"):
        return False, None, [], False
    m = re.search(r"Inputs:\n(.*?)\n\s*Outputs:\n(.*?)\n(?=\S|\n)", text, re.S)
    pads = (m.group(1) + m.group(2)) if m else text
    media = "audio" if "(audio)" in pads else "video"
    sections = []
    cur = None
    for line in text.splitlines():
        h = re.match(r"^(\S.*) AVOptions:$", line)
        if h:
            cur = (h.group(1), [])
            sections.append(cur)
            continue
        if cur is None or not line.strip():
            continue
        if re.match(r"^  [ -]\S", line):                # an option
            om = re.match(r"^  [ -](\S+)\s+<([^>]+)>\s+\S{11}\s?(.*)$", line)
            if not om:
                raise SystemExit(f"{name}: cannot parse option line: {line!r}")
            cur[1].append(Opt(om.group(1), "<%s>" % om.group(2), om.group(3), cur[0]))
        elif line.startswith("     "):                   # a CONST of the option above
            continue
        else:
            cur = None                                    # end of the option block
    return True, media, sections, TIMELINE in text


# ---- optional introspection through ctypes --------------------------------

class _AVOption(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("help", ctypes.c_char_p),
                ("offset", ctypes.c_int), ("type", ctypes.c_int),
                ("default_val", ctypes.c_int64), ("min", ctypes.c_double),
                ("max", ctypes.c_double), ("flags", ctypes.c_int),
                ("unit", ctypes.c_char_p)]


AV_OPT_TYPE_CONST = 10
# libavutil 57 enum AVOptionType -> how -h prints it
TYPE_NAMES = {0: "<flags>", 1: "<int>", 2: "<int64>", 3: "<double>", 4: "<float>",
              5: "<string>", 6: "<rational>", 7: "<binary>", 8: "<dictionary>",
              9: "<uint64>", 11: "<image_size>", 12: "<pix_fmt>", 13: "<sample_fmt>",
              14: "<video_rate>", 15: "<duration>", 16: "<color>",
              17: "<channel_layout>", 18: "<boolean>", 19: "<channel_layout>"}
SHOWN_FLAGS = 8 | 16 | 65536   # AUDIO_PARAM | VIDEO_PARAM | FILTERING_PARAM (what -h asks for)


class Introspect:
    def __init__(self):
        self.ok = False
        try:
            self.lavu = ctypes.CDLL("libavutil.so.57")
            self.lavfi = ctypes.CDLL("libavfilter.so.8")
            self.lavfi.avfilter_get_by_name.restype = ctypes.c_void_p
            self.lavfi.avfilter_get_by_name.argtypes = [ctypes.c_char_p]
            self.lavu.av_opt_next.restype = ctypes.POINTER(_AVOption)
            self.lavu.av_opt_next.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            self.lavu.av_opt_child_class_iterate.restype = ctypes.c_void_p
            self.lavu.av_opt_child_class_iterate.argtypes = [
                ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
            self.ok = True
        except (OSError, AttributeError) as e:
            print(f"note: introspection unavailable ({e}); aliases from -h heuristics",
                  file=sys.stderr)

    def _table(self, cls):
        box = ctypes.c_void_p(cls)
        out, o = [], None
        while True:
            o = self.lavu.av_opt_next(ctypes.byref(box),
                                      ctypes.cast(o, ctypes.c_void_p) if o else None)
            if not o:
                return out
            v = o.contents
            out.append(dict(name=v.name.decode(), help=(v.help or b"").decode(),
                            offset=v.offset, type=v.type, flags=v.flags))

    def classes(self, filt):
        """[(class_name, [option dicts])], own class first; None if unknown."""
        if not self.ok:
            return None
        f = self.lavfi.avfilter_get_by_name(filt.encode())
        if not f:
            return None
        # AVFilter: name, description, inputs, outputs, priv_class, ...
        cls = ctypes.c_void_p.from_address(f + 4 * ctypes.sizeof(ctypes.c_void_p)).value
        if not cls:
            return []
        res = [(ctypes.c_char_p.from_address(cls).value.decode(), self._table(cls))]
        it = ctypes.c_void_p(None)
        while True:
            c = self.lavu.av_opt_child_class_iterate(cls, ctypes.byref(it))
            if not c:
                break
            res.append((ctypes.c_char_p.from_address(c).value.decode(), self._table(c)))
        return res


def merge_introspection(name, sections, intro):
    """Check -h against the real tables, add offsets and hidden options."""
    if intro is None:
        return sections
    sections = [(c, opts) for c, opts in sections if opts]
    have = [c for c, t in intro if any(o["type"] != AV_OPT_TYPE_CONST for o in t)]
    if not set(c for c, _ in sections) <= set(have):
        raise SystemExit(f"{name}: -h classes {[c for c, _ in sections]} "
                         f"!= libavfilter {have}")
    shown = dict(sections)
    merged = []
    for cname, table in intro:
        visible = {o.name: o for o in shown.get(cname, [])}
        opts = []
        for o in table:
            if o["type"] == AV_OPT_TYPE_CONST:
                continue
            if o["name"] in visible:
                opt = visible.pop(o["name"])
                want = TYPE_NAMES.get(o["type"])
                if want and want != opt.type:
                    raise SystemExit(f"{name}.{opt.name}: -h type {opt.type} vs {want}")
            else:
                if o["flags"] & SHOWN_FLAGS:
                    raise SystemExit(f"{name}.{o['name']}: should be printed by -h")
                opt = Opt(o["name"], TYPE_NAMES.get(o["type"], "<?>"), o["help"],
                          cname, visible=False)
                opt.notes.append("not printed by -h (declared with flags=0)")
            opt.offset = o["offset"]
            opts.append(opt)
        if visible:
            raise SystemExit(f"{name}: -h options {list(visible)} not in libavfilter")
        if opts:
            merged.append((cname, opts))
    return merged


def mark_aliases(sections):
    """Aliases: adjacent non-CONST options sharing an offset (exact, from the
    tables) or, without introspection, the same type and help text.  Returns
    the options where the two rules disagree."""
    strip = lambda h: re.sub(r" \((from|default) .*$", "", h)
    disagree = []
    for _, opts in sections:
        prev = None
        for o in opts:
            if prev is not None:
                guess = (o.type, strip(o.help)) == (prev.type, strip(prev.help))
                same = guess if o.offset is None else o.offset == prev.offset
                if guess != same:
                    disagree.append(f"{o.name} {'is' if same else 'is not'} an alias of "
                                    f"{prev.name} (offsets), -h help/type suggest otherwise")
                if same:
                    o.alias_of = prev.alias_of or prev.name
                    continue
            prev = o
    return disagree


def derived_slots(sections):
    """Slots from declaration order of the own class (the documented rule)."""
    if not sections:
        return []
    return [o.name for o in sections[0][1] if o.alias_of is None]


def probe(name, media, args, workdir):
    """Return ([(key, value)], stderr) from ffmpeg's debug log for NAME=ARGS."""
    src = "sine=d=0.1" if media == "audio" else "testsrc=d=0.1:s=64x64"
    flag = "-af" if media == "audio" else "-vf"
    r = run([FFMPEG, "-hide_banner", "-nostdin", "-v", "debug", "-f", "lavfi", "-i", src,
             flag, f"{name}={args}", "-t", "0.1", "-f", "null", "-"], cwd=workdir)
    pat = re.compile(r"^\[Parsed_%s_0 @ 0x[0-9a-f]+\] Setting '([^']*)' to value '(.*)'$"
                     % re.escape(name))
    pairs = [m.groups() for m in map(pat.match, r.stderr.splitlines()) if m]
    return pairs, r.stderr


def probe_slots(name, media, nopts, workdir):
    """Positional slot names in order, straight from the binary."""
    vals = ["p%d" % i for i in range(nopts + 8)]
    for _ in range(6):
        pairs, err = probe(name, media, ":".join(vals), workdir)
        if "This filter does not take any options" in err:
            return []
        if "No option name near" in err:
            return [k for k, _ in pairs]
        # a value was rejected outright (only the generic filter options do
        # that while parsing, e.g. 'threads'): give that slot a number, retry
        if not pairs:
            break
        last = len(pairs) - 1
        if vals[last] == "1":
            break
        vals[last] = "1"
    raise SystemExit(f"{name}: probe did not reach the end of the positional options:\n"
                     + err[-2000:])


def build(only=None):
    intro_lib = Introspect()
    missing, rows, summary, report = [], [], [], []
    seen = set()
    filters = [(f, "video") for f in VIDEO_FILTERS] + [(f, "audio") for f in AUDIO_FILTERS]
    with tempfile.TemporaryDirectory(prefix="gen-filters-") as work:
        for fname, listed in filters:
            if fname in seen or (only and fname not in only):
                continue
            seen.add(fname)
            exists, media, sections, timeline = parse_help(fname)
            if not exists:
                missing.append(fname)
                continue
            sections = merge_introspection(fname, sections, intro_lib.classes(fname))
            for d in mark_aliases(sections):
                report.append(f"{fname}: {d}")
            nopts = sum(len(o) for _, o in sections)
            probed = probe_slots(fname, media, nopts, work)
            derived = derived_slots(sections)
            if probed != derived:
                report.append(f"{fname}: -h order gives {derived}, binary uses {probed}")

            # slot by name; aliases inherit; names seen twice keep the first
            slot_of = {}
            for i, key in enumerate(probed):
                slot_of.setdefault(key, i)
            emitted = set()
            frows = []
            own = sections[0][0] if sections else None
            for cname, opts in sections:
                for o in opts:
                    if o.name in emitted:      # child repeats an own option name
                        continue
                    emitted.add(o.name)
                    base = o.alias_of or o.name
                    if o.name in slot_of:
                        o.slot = str(slot_of[o.name])
                    elif base in slot_of:
                        o.slot = str(slot_of[base])
                    notes = list(o.notes)
                    if o.alias_of:
                        notes.append(f"alias of {o.alias_of}")
                    if cname != own:
                        notes.append(f"{cname} child option")
                    if o.slot == "-":
                        notes.append("key=value only (not reached positionally)")
                    else:
                        notes.append("slot verified by probe")
                    dec = DECISIONS.get(fname, {}).get(o.name)
                    if dec is None:
                        if fname in STRICT:
                            raise SystemExit(f"{fname}.{o.name}: STRICT filter, add a decision")
                        if (SUSPICIOUS.search(o.name) or SUSPICIOUS.search(o.help)) \
                                and (fname, o.name) not in REVIEWED:
                            raise SystemExit(f"{fname}.{o.name}: looks file/code related "
                                             f"({o.help!r}); add a decision")
                        dec = ("yes", "")
                    allow, why = dec
                    if allow == "no":
                        note = why
                    else:
                        note = "; ".join(([why] if why else []) + notes)
                    frows.append((fname, o.name, o.slot, o.type, allow, note))
            unknown = [k for k in probed if k not in emitted and k not in GENERIC_KEYS]
            if unknown:
                raise SystemExit(f"{fname}: the probe set options that -h does not print: "
                                 f"{unknown}; their types come from libavfilter introspection, "
                                 f"which needs libavutil.so.57/libavfilter.so.8 to load")
            for key in DECISIONS.get(fname, {}):
                if key not in emitted:
                    print(f"note: decision for {fname}.{key} matches no option", file=sys.stderr)
            if timeline:
                frows.append((fname, "enable", "-", "<string>", "yes",
                              "timeline editing (generic filter option)"))
            if not frows:
                frows.append((fname, "-", "-", "-", "no",
                              "filter takes no options: this row only lists the filter"))
            rows.extend(frows)
            summary.append((fname, media, len(probed)))

        tricky = []
        for fname, args, want in TRICKY:
            if fname in missing:
                continue
            media = {f: m for f, m, _ in summary}.get(
                fname, "audio" if fname in AUDIO_FILTERS else "video")
            got, _ = probe(fname, media, args, work)
            tricky.append((fname, args, got, got == want))
            if got != want:
                report.append(f"TRICKY MISMATCH {fname}={args}: expected {want}, got {got}")
    return rows, missing, summary, report, tricky




def walk(args, options):
    """The service's naming walk (crates/model/src/options/filtergraph.rs
    name_args) over the TSV's numeric-slot rows: args is [(key|None, value)].
    Returns the names it gives, stopping where it would report an error."""
    names, at, slot = [], None, None
    for key, _ in args:
        shorthand = None
        while True:
            at = 0 if at is None and options else (at + 1 if at is not None and at + 1 < len(options) else None)
            if at is None:
                break
            if options[at][1] == slot:
                continue
            slot, shorthand = options[at][1], at
            break
        if key is not None:
            at = next((i for i, (n, _) in enumerate(options) if n == key), None)
            names.append(key)
        elif shorthand is None:
            break
        else:
            names.append(options[shorthand][0])
    return names


def resume_check(rows, media_of):
    """For every option K: does `K=v:v1:v2..` name v1, v2.. in ffmpeg the way
    the TSV-driven walk does?  (Positional values after key=value.)"""
    by_filter = {}
    for f, opt, slot, *_ in rows:
        by_filter.setdefault(f, []).append((opt, slot))
    bad = []
    with tempfile.TemporaryDirectory(prefix="gen-filters-") as work:
        for f, opts in by_filter.items():
            options = [(o, int(s)) for o, s in opts if s.isdigit()]
            for key, _ in opts:
                if key in ("-", "enable"):
                    continue
                vals = ["p%d" % i for i in range(len(options) + 3)]
                got, err = probe(f, media_of[f], key + "=" + ":".join(vals), work)
                got = [k for k, _ in got]
                want = walk([(key, vals[0])] + [(None, v) for v in vals[1:]], options)
                if got and got[-1] in GENERIC_KEYS and "No option name near" not in err:
                    want = want[:len(got)]     # ffmpeg stopped on a generic option's value
                if got != want:
                    bad.append(f"{f}: {key}=v:... ffmpeg names {got[1:]}, TSV walk names {want[1:]}")
    return bad


def render(rows, missing, report, tricky):
    ver = run([FFMPEG, "-version"]).stdout.splitlines()[0]
    nfilters = len({r[0] for r in rows})
    out = [
        "# FFmpeg filter option allowlist.  GENERATED by scripts/allowlist/gen-filters.py",
        f"# from: {ver}",
        "# Edit the DECISIONS dictionary in the script and regenerate; do not edit by hand.",
        "#",
        "# Columns: filter, option, slot, type, allow, note.",
        "#  - one row per non-CONST AVOption, in declaration order: the filter's own class,",
        "#    then child classes (framesync, SWScaler, SWResampler) whose options are set",
        "#    with key=value (names a child repeats from the own class are listed once);",
        "#  - slot: 0-based positional index, verified with `ffmpeg -v debug` (the",
        "#    \"Setting 'KEY' to value\" lines); aliases share the slot; '-' = never positional;",
        "#  - option 'enable' (slot '-'): the filter supports timeline editing;",
        "#  - option '-' (allow no): the filter takes no options at all; the row only",
        "#    lists the filter (any argument is an error in ffmpeg too).",
        "#  Generic filter options other than enable (threads, thread_type,",
        "#  extra_hw_frames) are not listed, i.e. not allowed.",
        "#",
        "# Positional parsing in this build (observed): after every value the cursor moves",
        "# to the option that key resolves to (child classes searched first) and the next",
        "# positional value takes the option declared after it, skipping CONSTs and options",
        "# with the previous candidate's offset.  So positional values may follow",
        "# key=value (crop=y=1:5 sets keep_aspect=5) and a key known only to the generic",
        "# context (enable) restarts at the first option.  The slot column is the plain",
        "# all-positional prefix.  A walk over the numeric-slot rows that compares slots",
        "# (as the service's name_args does) matches ffmpeg for every all-positional list",
        "# and for positional values after a key with a numeric slot, except:",
        "#  - after a key whose slot is '-' ffmpeg goes on with the option declared next",
        "#    (inside the child class for child options: scale srcw=..:v -> srch, aresample",
        "#    ich=..:v -> in_channel_count..., psnr/ssim eof_action=..:v -> shortest;",
        "#    overlay format=..:v -> repeatlast, eval=..:v -> shortest; scale eval=..:v and",
        "#    overlay alpha=..:v are errors), while a slot walk restarts at the first option;",
        "#  - lutyuv/lutrgb: y,u,v and r,g,b,a reuse c0..c3's offsets, so after c3=.. or",
        "#    v=.. ffmpeg skips y resp. r (slots differ, offsets do not).",
        "# Safest: refuse positional values after a key=value (--resume-check lists all).",
        f"# Filters: {nfilters}.  Missing from this build: {', '.join(missing) or 'none'}.",
    ]
    out.append("# Where reading -h alone (declaration order, same type+help = alias) is wrong:")
    for line in report:
        out.append("#   " + line)
    out.append("# Verified probes (filter=args -> keys set):")
    for fname, args, got, ok in tricky:
        pairs = ", ".join(f"{k}={v}" for k, v in got)
        out.append(f"#   {'ok ' if ok else 'BAD'} {fname}={args} -> {pairs}")
    out.append("filter\toption\tslot\ttype\tallow\tnote")
    for r in rows:
        assert all("\t" not in c and "\n" not in c for c in r), r
        out.append("\t".join(r))
    return "\n".join(out) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    only = [a for a in sys.argv[1:] if not a.startswith("--")] or None
    rows, missing, summary, report, tricky = build(only)
    text = render(rows, missing, report, tricky)
    if "--resume-check" in sys.argv[1:]:
        bad = resume_check(rows, {f: m for f, m, _ in summary})
        for line in bad:
            print("resume mismatch: " + line, file=sys.stderr)
        print(f"resume check: {len(bad)} mismatches", file=sys.stderr)
    bad = [t for t in tricky if not t[3]]
    if check:
        cur = open(OUT).read() if os.path.exists(OUT) else ""
        if cur != text:
            print(f"{OUT} is stale; run {sys.argv[0]}", file=sys.stderr)
            sys.exit(1)
    elif not only:
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        with open(OUT, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    nf = len({r[0] for r in rows})
    print(f"{nf} filters, {len(rows)} rows; missing: {', '.join(missing) or 'none'}",
          file=sys.stderr)
    for line in report:
        print("slot order differs: " + line, file=sys.stderr)
    for fname, args, got, ok in tricky:
        print(f"{'ok ' if ok else 'BAD'} {fname}={args} -> "
              + ", ".join(f"{k}={v}" for k, v in got), file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
