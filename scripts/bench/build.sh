#!/usr/bin/env bash
# Build benchmark: generates a large image (default 600 MB of layer content in thousands of files) into
# a local registry, then times cold (empty cache: pull + build) and warm (cached) builds of
# `--format kernel+initrd` and `--format tar`, printing wall seconds, MB/s of uncompressed image
# content and peak RSS.
#
# Usage: scripts/bench/build.sh [TOTAL_MB]     (needs docker-registry: scripts/setup.sh installs it)
set -euo pipefail
cd "$(dirname "$0")/../.."
total_mb="${1:-600}"
work="$(mktemp -d)"
cleanup() { [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q
moby="$PWD/target/release/moby"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: error
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.2; done

echo "generating ${total_mb} MB image into 127.0.0.1:$port ..."
content_bytes="$(python3 scripts/bench/make_image.py "127.0.0.1:$port" "$work/bench.yml" "$total_mb")"
echo "uncompressed layer content: $((content_bytes / 1048576)) MB"

run() { # label, cache dir, build args...
  local label="$1" cache="$2"; shift 2
  /usr/bin/time -f "%e %M" -o "$work/time" "$moby" -q build --cache "$cache" "$@" "$work/bench.yml"
  read -r wall rss_kb < "$work/time"
  python3 - "$label" "$wall" "$rss_kb" "$content_bytes" <<'EOF'
import sys
label, wall, rss_kb, content = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"{label:<28} {wall:7.2f} s  {content / 1048576 / wall:7.1f} MB/s  peak RSS {rss_kb / 1024:6.1f} MB")
EOF
}

mkdir -p "$work/out"
for format in kernel+initrd tar; do
  rm -rf "$work/cache"
  if [ "$format" = tar ]; then args=(--format tar -o "$work/out/bench.tar"); else args=(--format "$format" --dir "$work/out" --name bench); fi
  run "cold $format" "$work/cache" "${args[@]}"
  run "warm $format" "$work/cache" "${args[@]}"
done
ls -l "$work/out"
