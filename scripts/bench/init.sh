#!/usr/bin/env bash
# Boot benchmark of our init: builds examples/linuxkit.yml from this repository's packages and
# times, under `moby run --accel tcg`, the kernel's first console line, init's first line (root
# moved off the initramfs), the first service started and the banner; then the same kernel booting
# a trivial init (a busybox shell script that prints one line). Prints the initrd sizes and
# min/median of RUNS boots each (scripts/bench/boot.py).
#
# Usage: scripts/bench/init.sh [RUNS]     (after scripts/setup.sh: packages, the test guest's busybox)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release -q --bin moby
moby="$PWD/target/release/moby"
scripts/build-packages.sh "$moby" >/dev/null
"$moby" -q build --dir "$work" examples/linuxkit.yml

# The trivial init: the same kernel, an initrd of /init (a script), a static busybox and
# /dev/console (the kernel opens it for init's output before anything is mounted).
busybox="${MOBY_TEST_GUEST:-target/test-guest}/busybox" # static, from scripts/test-guest.sh
[ -x "$busybox" ] || busybox="$(command -v busybox)" || { echo "init.sh: no static busybox: run scripts/setup.sh" >&2; exit 1; }
python3 - "$work/trivial-initrd.img" "$busybox" <<'EOF'
import gzip, sys

def entry(name, mode, data=b"", rdev=(0, 0)):
    name = name.encode() + b"\0"
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name), 0]
    header = b"070701" + b"".join(b"%08x" % f for f in fields) + name
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return pad(header) + pad(data)

init = b"#!/bin/busybox sh\n/bin/busybox echo trivial-init: up\n/bin/busybox poweroff -f\n"
archive = b"".join([
    entry("bin", 0o40755), entry("dev", 0o40755),
    entry("dev/console", 0o20600, rdev=(5, 1)),
    entry("bin/busybox", 0o100755, open(sys.argv[2], "rb").read()),
    entry("init", 0o100755, init),
    entry("TRAILER!!!", 0),
])
with open(sys.argv[1], "wb") as out:
    out.write(gzip.compress(archive, mtime=0))
EOF
cp "$work/linuxkit-kernel" "$work/trivial-kernel"
echo "console=ttyS0" >"$work/trivial-cmdline"

size() { stat -c %s "$1" | awk '{ printf "%.1f MB", $1 / 1048576 }'; }
echo "linuxkit.yml initrd: $(size "$work/linuxkit-initrd.img") (kernel $(size "$work/linuxkit-kernel"));" \
  "trivial initrd: $(size "$work/trivial-initrd.img")"

export MOBY_STATE_HOME="$work/state"
echo "== linuxkit.yml (our init: onboot sysctl, dhcpcd, metadata; services getty, sshd)"
scripts/bench/boot.py --runs "$runs" --marker "init: root moved" --marker "init: started service" \
  --marker "Welcome to moby" -- \
  "$moby" run --accel tcg --mem 1024 "$work/linuxkit"
echo "== same kernel, trivial init"
scripts/bench/boot.py --runs "$runs" --marker "trivial-init: up" -- \
  "$moby" run --accel tcg --mem 1024 "$work/trivial"
