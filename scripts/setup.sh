#!/usr/bin/env bash
# Installs what moby's build and tests need on a fresh Debian/Ubuntu machine (as root, or via sudo).
set -euo pipefail
packages=(docker-registry apache2-utils ca-certificates genisoimage qemu-system-x86 qemu-utils ovmf openssh-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "setup: install a Rust toolchain first (https://rustup.rs)" >&2; exit 1; }
# The tiny guest that the `moby run` boot tests start (tests/support/guest.rs).
"$(dirname "$0")/test-guest.sh"
# The Debian packages our packages are made of, into the deb cache, so that tests build offline:
# building every package once fetches them (and leaves the images in the cache).
(cd "$(dirname "$0")/.." && cargo build -q --bin moby && scripts/build-packages.sh target/debug/moby)
