#!/usr/bin/env bash
# Runs the benchmarks (BENCHMARKS.md) with release builds: one suite, or all.
#   scripts/bench.sh [overhead|dispatch|throughput|memory|transfer|chunked|ladder|all]
# Settings (BENCHMARKS.md): BENCH_BACKENDS, BENCH_SLOTS, BENCH_PAYLOAD_DIR, BENCH_AWS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
if [ ! -x /var/tmp/nommer-tools/venv/bin/aws ]; then
  /var/tmp/nommer-tools/venv/bin/pip install --quiet awscli
fi
cargo build --release -p nommer -p nommer-bench
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/release/nommer-bench" "${1:-all}"
