#!/bin/sh
# `script:` step of pkg/sshd: busybox applets, /etc, root's authorized_keys symlink, slimming.
set -eu
for d in "$PKG/common" "$PKG/../common"; do [ -f "$d/lib.sh" ] && . "$d/lib.sh" && break; done
command -v pkg_init >/dev/null || { echo "sshd: pkg/common/lib.sh not found next to $PKG" >&2; exit 1; }
pkg_init sshd
busybox_links
base_etc
ln -sf /run/resolvconf/resolv.conf "$ROOTFS/etc/resolv.conf"
# the one place keys come from; dropbear checks the target's owner and mode (not group/other writable)
mkdir -p "$ROOTFS/root/.ssh"
chmod 0700 "$ROOTFS/root/.ssh"
ln -sf /run/config/ssh/authorized_keys "$ROOTFS/root/.ssh/authorized_keys"
# dropbear refuses users whose shell is not in /etc/shells
printf '/bin/sh\n/bin/ash\n' >"$ROOTFS/etc/shells"
mkdir -p "$ROOTFS/var/lib/dropbear"
slim
slim_glibc
check_elf
