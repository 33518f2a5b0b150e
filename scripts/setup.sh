#!/usr/bin/env bash
# Installs what moby's build and tests need on a fresh Debian/Ubuntu machine (as root, or via sudo).
set -euo pipefail
# dosfstools, mtools, fdisk, gdisk, xorriso, binutils (objdump): tests check our FAT, partition
# tables, ISOs and unified kernel images with them; squashfs-tools (unsquashfs, mksquashfs) reads
# back our squashfs images in the media tests; e2fsprogs (mkfs.ext4): pkg/init's unit tests
# recognise squashfs, ISO and ext4 images made by the real tools.
# python3-venv: the Cloud Storage emulator of the GCP tests (scripts/gcs-emulator.sh); openssl: the
# fake Compute Engine signs with a key it makes.
packages=(docker-registry apache2-utils python3-venv openssl ca-certificates genisoimage qemu-system-x86 qemu-utils ovmf openssh-client dosfstools mtools fdisk gdisk xorriso binutils squashfs-tools e2fsprogs)
missing_packages() {
  local p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# Twice: installing one package may remove another that conflicts with it (a machine with
# qemu-utils from bookworm-backports loses it when bookworm's qemu-system-x86 comes in); the
# second round installs the removed one again, now in the version that fits.
for round in 1 2; do
  mapfile -t missing < <(missing_packages)
  ((${#missing[@]})) || break
  ((round == 1)) && $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
done
mapfile -t missing < <(missing_packages)
if ((${#missing[@]})); then
  echo "setup: these packages did not stay installed: ${missing[*]}" >&2
  exit 1
fi
command -v cargo >/dev/null || { echo "setup: install a Rust toolchain first (https://rustup.rs)" >&2; exit 1; }
# The tiny guest that the `moby run` boot tests start (tests/support/guest.rs).
"$(dirname "$0")/test-guest.sh"
# The Cloud Storage emulator the GCP tests upload to (tests/support/gcs.rs).
"$(dirname "$0")/gcs-emulator.sh"
# The Debian packages our packages are made of, into the deb cache, so that tests build offline:
# building every package once fetches them (and leaves the images in the cache).
(cd "$(dirname "$0")/.." && cargo build -q --bin moby && scripts/build-packages.sh target/debug/moby)
