#!/usr/bin/env bash
# Output format benchmark: builds examples/linuxkit.yml once per format (warm cache: the
# packages must be in it, `scripts/build-packages.sh`), printing wall time, output size (apparent
# and allocated on disk) and peak RSS. A second table builds a 1 GiB aws disk with a large initrd
# (an extra 600 MB file in the image) to show memory stays bounded.
#
# Usage: scripts/bench/formats.sh [FORMAT...]       (default: every format)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q --bin moby
moby="$PWD/target/release/moby"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
formats=("$@")
((${#formats[@]})) || formats=(kernel+initrd iso-bios iso-efi iso-efi-initrd raw-bios raw-efi aws gcp qcow2-bios qcow2-efi vhd dynamic-vhd vmdk kernel+iso kernel+squashfs)

run() { # label, spec, format, extra args...
  local label="$1" spec="$2" format="$3"; shift 3
  rm -rf "$work/out"
  /usr/bin/time -f "%e %M" -o "$work/time" "$moby" -q build --format "$format" --dir "$work/out" --name img "$@" "$spec"
  read -r wall rss_kb <"$work/time"
  local apparent allocated
  apparent=$(du -scb --apparent-size "$work/out" | tail -1 | cut -f1)
  allocated=$(du -sc --block-size=1 "$work/out" | tail -1 | cut -f1)
  printf '%-22s %7.2f s  %9.1f MB  %8.1f MB on disk  peak RSS %6.1f MB\n' \
    "$label" "$wall" "$(echo "$apparent / 1048576" | bc -l)" "$(echo "$allocated / 1048576" | bc -l)" "$(echo "$rss_kb / 1024" | bc -l)"
}

echo "examples/linuxkit.yml ($(nproc) cores)"
for format in "${formats[@]}"; do
  run "$format" examples/linuxkit.yml "$format"
done

# A large image: linuxkit.yml plus a 600 MB file of incompressible data.
head -c 600M /dev/urandom >"$work/blob"
sed -e "s|^files:|files:\n  - path: var/blob\n    source: $work/blob|" -e "s|@pkg:\.\./|@pkg:$PWD/|" \
  examples/linuxkit.yml >"$work/large.yml"
echo "examples/linuxkit.yml + 600 MB file"
for format in kernel+initrd aws iso-efi kernel+squashfs; do
  run "$format (large)" "$work/large.yml" "$format" --size 2G
done
