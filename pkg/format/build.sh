#!/bin/sh
# `script:` step of pkg/format (and pkg/mount, with other KEEP lists): keeps the disk programs
# named below, then busybox applets for the rest.
set -eu
for d in "$PKG/common" "$PKG/../common"; do [ -f "$d/lib.sh" ] && . "$d/lib.sh" && break; done
command -v pkg_init >/dev/null || { echo "format: pkg/common/lib.sh not found next to $PKG" >&2; exit 1; }
pkg_init format
keep_only sbin blkid sfdisk mke2fs mkfs.ext4 mkfs.ext3 mkfs.ext2 e2fsck fsck.ext4 fsck.ext3 \
  fsck.ext2 tune2fs e2label resize2fs dumpe2fs
keep_only bin busybox
keep_only usr/bin format partx
keep_only usr/sbin
keep_only etc mke2fs.conf
rm -rf "${ROOTFS:?}/lib/systemd" "${ROOTFS:?}/lib/udev" "${ROOTFS:?}/usr/lib/udev" "${ROOTFS:?}/usr/lib/systemd" \
  "${ROOTFS:?}/usr/libexec" "${ROOTFS:?}/usr/lib/e2fsprogs" "${ROOTFS:?}/usr/share"
busybox_links
base_etc
slim
slim_glibc
check_elf
