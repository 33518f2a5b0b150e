#!/usr/bin/env bash
# Manual check of the metadata binary in a real guest (not run by `cargo test`: it boots qemu with
# TCG twice, about a minute). The guest is the repo's test guest (scripts/test-guest.sh: Debian's
# cloud kernel, busybox, CD modules) plus the static metadata binary and, for the `qemu` provider,
# the kernel's qemu_fw_cfg module (from the same kernel package; path in $FW_CFG_KO, else it is
# downloaded with apt-get download).
#
#  1. `moby run --data-file USERDATA`: the cidata CD vmm writes, attached as `moby run` does; the
#     guest runs `metadata -v cdrom`: real /dev/sr0, real iso9660 mount.
#  2. qemu with `-fw_cfg name=opt/com.docker.linuxkit/userdata,file=USERDATA` and no network:
#     `metadata -v` with LinuxKit's default list (aws, gcp, openstack fail fast; then qemu).
#
# Usage: pkg/metadata/tests/guest.sh   (env: MOBY=path/to/moby, GUEST=test-guest dir, METADATA=binary,
#        FW_CFG_KO=qemu_fw_cfg.ko, LOGS=dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
guest=${GUEST:-$repo/target/test-guest}
moby=${MOBY:-$repo/target/release/moby}
target=${CARGO_TARGET_DIR:-/tmp/metadata-target}
work=$(mktemp -d "${TMPDIR:-/tmp}/metadata-guest.XXXXXX")
# LOGS=DIR keeps the two consoles (cdrom.log, qemu.log) there.
trap '[ -n "${LOGS:-}" ] && cp "$work"/*.log "$LOGS"/ 2>/dev/null; rm -rf "$work"' EXIT
die() { echo "guest.sh: $*" >&2; exit 1; }

[ -f "$guest/STAMP" ] || die "no test guest in $guest: run scripts/test-guest.sh"
[ -x "$moby" ] || die "no moby binary at $moby: cargo build --release (or set MOBY)"
kver=$(sed -n 's/^kver //p' "$guest/STAMP")
kpkg=$(sed -n 's/^kernel \([^ ]*\) .*/\1/p' "$guest/STAMP")

metadata=${METADATA:-}
if [ -z "$metadata" ]; then
  RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR=$target \
    cargo build -q --release --target x86_64-unknown-linux-gnu --manifest-path "$here/../Cargo.toml"
  metadata=$target/x86_64-unknown-linux-gnu/release/metadata
fi

fw_cfg_ko=${FW_CFG_KO:-}
if [ -z "$fw_cfg_ko" ]; then
  mkdir -p "$work/deb" && chmod 755 "$work/deb"
  opts=(); [ "$(id -u)" -eq 0 ] && opts=(-o APT::Sandbox::User=root)
  (cd "$work/deb" && apt-get download -q "${opts[@]}" "$kpkg" >/dev/null)
  dpkg-deb --fsys-tarfile "$work"/deb/*.deb | tar -x -C "$work/deb" "./lib/modules/$kver/kernel/drivers/firmware/qemu_fw_cfg.ko"
  fw_cfg_ko=$work/deb/lib/modules/$kver/kernel/drivers/firmware/qemu_fw_cfg.ko
fi

# The initrd: busybox, metadata, the modules, an init that runs metadata and reports.
root=$work/root
mkdir -p "$root/bin" "$root/usr/bin" "$root/lib/modules"
cp "$guest/busybox" "$root/bin/busybox"
cp "$metadata" "$root/usr/bin/metadata"
cp -r "$guest/modules/lib/modules/$kver" "$root/lib/modules/"
mkdir -p "$root/lib/modules/$kver/kernel/drivers/firmware"
cp "$fw_cfg_ko" "$root/lib/modules/$kver/kernel/drivers/firmware/"
echo "kernel/drivers/firmware/qemu_fw_cfg.ko:" >>"$root/lib/modules/$kver/modules.dep"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
for m in virtio_pci virtio_scsi sr_mod isofs qemu_fw_cfg; do modprobe $m || echo "mdtest: modprobe $m failed"; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /dev/sr0 ] && break; sleep 0.5; done
providers=$(sed -n 's/.*mdtest.providers=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
echo "mdtest: running metadata -v $providers"
start=$(cut -d' ' -f1 /proc/uptime)
/usr/bin/metadata -v $providers
echo "mdtest: exit $?"
echo "mdtest: took $start -> $(cut -d' ' -f1 /proc/uptime) s"
find /run/config | sort | while read f; do echo "mdtest: file $(stat -c %a "$f") $f"; done
echo "mdtest: keys $(cat /run/config/ssh/authorized_keys)"
echo "mdtest: provider $(cat /run/config/provider)"
echo "mdtest: hostname $(hostname)"
echo "mdtest: mounts left $(grep -c iso9660 /proc/mounts)"
echo "mdtest: done"
poweroff -f
INIT
chmod 755 "$root/init"
(cd "$root" && find . | "$guest/busybox" cpio -o -H newc 2>/dev/null) >"$work/md-initrd.img"
cp "$guest/vmlinuz" "$work/md-kernel"

userdata=$work/userdata.json
cat >"$userdata" <<'JSON'
{"ssh":{"entries":{"authorized_keys":{"perm":"0600","content":"ssh-ed25519 AAAAguest test@metadata"}}},"hostname":{"content":"metadata-guest"},"etc":{"perm":"0700","entries":{"motd":{"content":"hi"}}},"..":{"content":"refused"}}
JSON

check() { # LOG LINE...
  local log=$1; shift
  for line in "$@"; do
    grep -qF -- "$line" "$log" || { echo "---- $log"; cat "$log"; die "missing: $line"; }
  done
}

expect=(
  "mdtest: exit 0"
  "mdtest: file 600 /run/config/ssh/authorized_keys"
  "mdtest: file 700 /run/config/etc"
  "mdtest: file 644 /run/config/etc/motd"
  "mdtest: file 644 /run/config/userdata"
  "mdtest: keys ssh-ed25519 AAAAguest test@metadata"
  "mdtest: hostname metadata-guest"
  "mdtest: mounts left 0"
  "userdata entry /.. skipped"
)

echo "guest.sh: 1/2 moby run --data-file (cdrom)"
echo "console=ttyS0 quiet mdtest.providers=cdrom" >"$work/md-cmdline"
MOBY_STATE_HOME=$work/state timeout 300 "$moby" run --accel tcg --mem 512 --networking none \
  --data-file "$userdata" --name mdtest "$work/md" </dev/null >"$work/cdrom.log" 2>&1 || true
check "$work/cdrom.log" "${expect[@]}" "mdtest: provider CDROM /dev/sr0" "CDROM /dev/sr0: Probe succeeded"
grep -q "reading .* as ISO 9660 directly" "$work/cdrom.log" && die "the CD was not mounted (fell back to the reader)"
echo "guest.sh: cdrom ok"

echo "guest.sh: 2/2 qemu -fw_cfg (default providers)"
timeout 300 qemu-system-x86_64 -machine q35,accel=tcg -m 512 -nographic -no-reboot -nic none \
  -kernel "$work/md-kernel" -initrd "$work/md-initrd.img" \
  -append "console=ttyS0 quiet" \
  -fw_cfg "name=opt/com.docker.linuxkit/userdata,file=$userdata" </dev/null >"$work/qemu.log" 2>&1 || true
check "$work/qemu.log" "${expect[@]}" "mdtest: provider QEMU fw_cfg" "QEMU fw_cfg: Probe succeeded"
echo "guest.sh: qemu ok"
echo "guest.sh: all ok"
