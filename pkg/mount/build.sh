#!/bin/sh
# `script:` step of pkg/mount: keeps sfdisk and blkid, then busybox applets for the rest.
set -eu
for d in "$PKG/common" "$PKG/../common"; do [ -f "$d/lib.sh" ] && . "$d/lib.sh" && break; done
command -v pkg_init >/dev/null || { echo "mount: pkg/common/lib.sh not found next to $PKG" >&2; exit 1; }
pkg_init mount
keep_only sbin blkid sfdisk
keep_only bin busybox
keep_only usr/bin mountie
keep_only usr/sbin
keep_only etc
rm -rf "${ROOTFS:?}/lib/systemd" "${ROOTFS:?}/lib/udev" "${ROOTFS:?}/usr/lib/udev" "${ROOTFS:?}/usr/lib/systemd" \
  "${ROOTFS:?}/usr/libexec" "${ROOTFS:?}/usr/share"
busybox_links
base_etc
slim
slim_glibc
check_elf
