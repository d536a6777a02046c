#!/usr/bin/env bash
# The fault soak (RELIABILITY.md): two feederd replicas on a private
# PostgreSQL, nommerd workers, a webhook receiver and the S3 test server behind
# a connection-cutting proxy, under seeded faults; then every job, event,
# webhook and output is checked. Not part of the test command (which runs it
# for 2 minutes as a smoke test). Release builds.
#   scripts/soak.sh [--minutes M] [--seed S] [--workers N] [--keep-logs]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
cargo build --release -p nommer -p nommer-soak
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/release/nommer-soak" "$@"
