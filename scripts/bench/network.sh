#!/usr/bin/env bash
# Private networks under TCG: boot time and memory per extra node, and throughput between two VMs
# on a network beside one VM's user-mode NAT to the host (scripts/bench/network.py).
#
# Usage: scripts/bench/network.sh [NODES] [MIB]     (after scripts/setup.sh: packages)
set -euo pipefail
cd "$(dirname "$0")/../.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release -q --bin moby
moby="$PWD/target/release/moby"
scripts/build-packages.sh "$moby" >/dev/null
"$moby" -q build --dir "$work" scripts/bench/network.yml
scripts/bench/network.py "$moby" "$work/network" --nodes "${1:-3}" --mib "${2:-64}"
