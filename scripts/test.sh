#!/usr/bin/env bash
# Runs every test: installs what they need, then format and lint checks, then
# the whole workspace's unit, conformance and end-to-end tests (real ffmpeg,
# real binary, real HTTP on loopback, private PostgreSQL servers). Ends with
# one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace -- --test-threads 2 2>&1 | tee "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f; if (p == 0 || f > 0) exit 1 }' "$log"
