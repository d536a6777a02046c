#!/usr/bin/env bash
# Runs every test: installs what they need, then format and lint checks, then
# the whole workspace's unit, conformance and end-to-end tests (real ffmpeg,
# real binary, real HTTP on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads 2
