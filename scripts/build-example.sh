#!/usr/bin/env bash
# The main job: build this repository's packages (kernel, our Rust init, getty, dhcpcd, sshd, ...),
# build examples/linuxkit.yml into out/linuxkit-kernel + -initrd.img + -cmdline, and boot it under
# qemu with the serial console on this terminal (a root shell; Ctrl-C powers the VM off cleanly).
# SSH is published on host port 2222 for the key in ~/.ssh/id_*.pub if there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
moby=target/release/moby
scripts/build-packages.sh "$moby"
mkdir -p out
"$moby" build --format kernel+initrd --dir out examples/linuxkit.yml
ls -l out/linuxkit-*
data=()
for key in ~/.ssh/id_ed25519.pub ~/.ssh/id_rsa.pub; do
  if [ -f "$key" ]; then
    content=$(sed 's/"/\\"/g' "$key")
    data=(--data "{\"ssh\":{\"entries\":{\"authorized_keys\":{\"perm\":\"0600\",\"content\":\"$content\"}}}}")
    break
  fi
done
exec "$moby" run --publish 2222:22 "${data[@]}" out/linuxkit
