#!/usr/bin/env bash
# The main job until `moby run` and our own packages exist: build LinuxKit's example spec (images
# replaced by the conformance corpus's) into kernel+initrd with the corpus's image cache.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${MOBY_CONFORMANCE:-../shared/conformance}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$corpus/cache" "$work/cache" && chmod -R u+w "$work/cache"
mkdir -p out
(cd "$corpus/cases/024-example-linuxkit" && "$OLDPWD/target/release/moby" build --cache "$work/cache" \
  --format kernel+initrd --dir "$OLDPWD/out" --name linuxkit linuxkit.yml)
ls -l out/linuxkit-*
