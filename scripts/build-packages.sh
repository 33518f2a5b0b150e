#!/usr/bin/env bash
# Builds every package of this repository (kernel/ and pkg/*) into the image cache with
# `moby pkg build` (packages already there are skipped). Needs network only for Debian packages
# not yet in the deb cache (~/.moby/debs, MOBY_DEB_CACHE).
#   scripts/build-packages.sh [MOBY]     MOBY: the moby binary (default: target/release/moby)
set -euo pipefail
cd "$(dirname "$0")/.."
moby=${1:-target/release/moby}
[ -x "$moby" ] || { echo "build-packages: $moby not found: cargo build --release first" >&2; exit 1; }
packages=(kernel)
for build in pkg/*/build.yml; do packages+=("$(dirname "$build")"); done
exec "$moby" pkg build "${packages[@]}"
