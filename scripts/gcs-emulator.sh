#!/usr/bin/env bash
# Installs the Cloud Storage emulator the GCP tests upload to (gcp-storage-emulator, from PyPI) in
# a virtualenv of its own, so that nothing is installed into the system's Python.
#
# Usage: scripts/gcs-emulator.sh [DIR]     (DIR defaults to <repo>/target/gcs-emulator)
# Result: DIR/bin/gcp-storage-emulator (tests/support/gcs.rs starts it; MOBY_GCS_EMULATOR may name
# another one).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$repo/target/gcs-emulator}
version=2026.7.19
if [ -x "$dir/bin/gcp-storage-emulator" ] && "$dir/bin/pip" show gcp-storage-emulator 2>/dev/null | grep -qx "Version: $version"; then
  echo "gcs-emulator: $dir is up to date ($version)"
  exit 0
fi
rm -rf "$dir"
python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check "gcp-storage-emulator==$version"
echo "gcs-emulator: installed gcp-storage-emulator $version in $dir"
