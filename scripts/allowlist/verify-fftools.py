#!/usr/bin/env python3
"""Verify crates/model/src/options/allow/fftools.tsv against an ffmpeg binary.

Usage: verify-fftools.py [FFMPEG] [TSV]
  FFMPEG  ffmpeg binary to probe (default: ffmpeg)
  TSV     allowlist file (default: crates/model/src/options/allow/fftools.tsv
          relative to the repository root)

For every row the binary is probed (no media is read except a 1-frame
lavfi nullsrc, nothing is written except scratch files in a temp dir):
  arity    ffmpeg -hide_banner -NAME
           -> "Missing argument for option 'NAME'" iff arity == value
  no-form  ffmpeg -hide_banner -noNAME
           -> recognised iff the source flags contain OPT_BOOL, and never
              takes a value
  place    IN:    ffmpeg -hide_banner -NAME [V] -i /dev/null
           OUT:   ffmpeg -hide_banner -f lavfi -i nullsrc=d=0.04 -NAME [V] -f null -
           TRAIL: ffmpeg -hide_banner -f lavfi -i nullsrc=d=0.04 -f null - -NAME [V]
           "cannot be applied to input url"  in IN   <=> not OPT_INPUT
           "cannot be applied to output url" in OUT  <=> not OPT_OUTPUT
           "Trailing option(s)" in TRAIL             <=> per-file (not global)
Also checks the TSV schema and that the set of names equals the option
list printed by `ffmpeg -h long`.
Prints every mismatch; exits 1 if there is any, 0 otherwise.
"""

import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile

HEADER = ["name", "arity", "place", "spec", "kind", "source", "note"]
ARITIES = {"bool", "value"}
PLACES = {"global", "input", "output", "both"}
SIMPLE_KINDS = {
    "none", "int", "number", "time", "rate", "size", "name", "layout",
    "flags", "codec", "format", "filtergraph", "map", "metadata", "text",
    "expr", "bsf", "-",
}
KIND_RE = re.compile(
    r"^(?:int:-?\d+:-?\d+|choice:[A-Za-z0-9_.+-]+(?:\|[A-Za-z0-9_.+-]+)*)$")
PROBE_VALUE = "1"
TIMEOUT = 30

IN_ERR = "cannot be applied to input url"
OUT_ERR = "cannot be applied to output url"
TRAIL = "Trailing option(s) found"


def default_tsv():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    return os.path.join(root, "crates", "model", "src", "options", "allow",
                        "fftools.tsv")


def load(path):
    rows, errors, header = [], [], None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            if header is None:
                header = cols
                if cols != HEADER:
                    errors.append("line %d: bad header %r" % (lineno, cols))
                continue
            if len(cols) != len(HEADER):
                errors.append("line %d: %d columns, want %d"
                              % (lineno, len(cols), len(HEADER)))
                continue
            row = dict(zip(HEADER, cols))
            row["lineno"] = lineno
            rows.append(row)
    if header is None:
        errors.append("no header line")
    return rows, errors


def check_schema(rows):
    errors, seen = [], set()
    for r in rows:
        where = "line %d (%s)" % (r["lineno"], r["name"])
        if not r["name"] or r["name"] in seen:
            errors.append("%s: empty or duplicate name" % where)
        seen.add(r["name"])
        if r["arity"] not in ARITIES:
            errors.append("%s: bad arity %r" % (where, r["arity"]))
        if r["place"] not in PLACES:
            errors.append("%s: bad place %r" % (where, r["place"]))
        if r["spec"] not in ("yes", "no"):
            errors.append("%s: bad spec %r" % (where, r["spec"]))
        k = r["kind"]
        if k not in SIMPLE_KINDS and not KIND_RE.match(k):
            errors.append("%s: bad kind %r" % (where, k))
        if r["arity"] == "bool" and k not in ("none", "-"):
            errors.append("%s: bool arity needs kind none or -" % where)
        if r["arity"] == "value" and k == "none":
            errors.append("%s: value arity cannot have kind none" % where)
        if k == "-" and not r["note"]:
            errors.append("%s: refused without a reason in note" % where)
        if not re.match(r"^(ffmpeg_opt\.c|opt_common\.h|cmdutils\.h):\d+ ",
                        r["source"]):
            errors.append("%s: bad source %r" % (where, r["source"]))
    return errors


class Prober:
    def __init__(self, ffmpeg, cwd):
        self.ffmpeg = ffmpeg
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("FFREPORT", "AV_LOG_FORCE_COLOR")}
        self.env["AV_LOG_FORCE_NOCOLOR"] = "1"

    def run(self, args):
        cmd = [self.ffmpeg, "-hide_banner"] + args
        try:
            p = subprocess.run(cmd, cwd=self.cwd, env=self.env,
                               stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
        return (p.stdout + p.stderr).decode("utf-8", "replace")


def opt_arg(name):
    return "-" + name


def verify_row(prober, r):
    name, errs = r["name"], []
    flags = r["source"].split(" ")[1] if " " in r["source"] else ""
    is_bool_flag = "OPT_BOOL" in flags.split("|")
    separator = "group separator" in r["source"]

    def probe(args, label):
        out = prober.run(args)
        if out is None:
            errs.append("%s: %s probe timed out" % (name, label))
            return ""
        return out

    # arity
    out = probe([opt_arg(name)], "arity")
    missing = ("Missing argument for option '%s'" % name) in out
    if ("Unrecognized option '%s'" % name) in out:
        errs.append("%s: binary does not know the option" % name)
    if missing != (r["arity"] == "value"):
        errs.append("%s: arity %s in TSV but binary %s" % (
            name, r["arity"],
            "wants an argument" if missing else "takes none"))

    # -noNAME form
    out = probe(["-no" + name], "no-form")
    has_no = ("Unrecognized option 'no%s'" % name) not in out
    if has_no != is_bool_flag:
        errs.append("%s: -no%s %s but source flags %s OPT_BOOL" % (
            name, name, "accepted" if has_no else "rejected",
            "have" if is_bool_flag else "lack"))
    if has_no and ("Missing argument for option 'no%s'" % name) in out:
        errs.append("%s: -no%s unexpectedly wants an argument" % (name, name))

    if separator:
        out = probe([opt_arg(name), "/dev/null"], "separator")
        if "/dev/null: " not in out:
            errs.append("%s: -%s /dev/null did not open an input"
                        % (name, name))
        return errs

    # placement
    vals = [PROBE_VALUE] if r["arity"] == "value" else []
    lavfi = ["-f", "lavfi", "-i", "nullsrc=d=0.04"]
    o_in = probe([opt_arg(name)] + vals + ["-i", "/dev/null"], "input")
    o_out = probe(lavfi + [opt_arg(name)] + vals + ["-f", "null", "-"],
                  "output")
    o_tr = probe(lavfi + ["-f", "null", "-", opt_arg(name)] + vals,
                 "trailing")
    got_in = IN_ERR not in o_in
    got_out = OUT_ERR not in o_out
    got_global = TRAIL not in o_tr
    if got_global:
        got = "global"
    elif got_in and got_out:
        got = "both"
    elif got_in:
        got = "input"
    elif got_out:
        got = "output"
    else:
        got = "nowhere"
    if got_global and not (got_in and got_out):
        got = "global?(but refused for %s)" % (
            "input" if not got_in else "output")
    if got != r["place"]:
        errs.append("%s: place %s in TSV but binary says %s"
                    % (name, r["place"], got))
    return errs


def help_names(prober):
    out = prober.run(["-h", "long"]) or ""
    names = set()
    for line in out.splitlines():
        m = re.match(r"^-(\S+)", line)
        if m:
            names.add(m.group(1))
    return names


def main(argv):
    ffmpeg = argv[1] if len(argv) > 1 else "ffmpeg"
    tsv = argv[2] if len(argv) > 2 else default_tsv()
    rows, errors = load(tsv)
    errors += check_schema(rows)
    with tempfile.TemporaryDirectory(prefix="verify-fftools-") as tmp:
        prober = Prober(ffmpeg, tmp)
        try:
            ver = (prober.run(["-version"]) or "").splitlines()[:1]
        except OSError as e:
            print("cannot run %s: %s" % (ffmpeg, e), file=sys.stderr)
            return 2
        print("binary: %s (%s)" % (ffmpeg, ver[0] if ver else "?"))
        listed = help_names(prober)
        tsv_names = {r["name"] for r in rows
                     if "group separator" not in r["source"]}
        for n in sorted(listed - tsv_names):
            errors.append("%s: listed by -h long but missing from TSV" % n)
        for n in sorted(tsv_names - listed):
            errors.append("%s: in TSV but not listed by -h long" % n)
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
            for errs in ex.map(lambda r: verify_row(prober, r), rows):
                errors += errs
    for e in errors:
        print("MISMATCH " + e)
    print("%d rows checked, %d mismatches" % (len(rows), len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
