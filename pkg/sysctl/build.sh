#!/bin/sh
# `script:` step of pkg/sysctl: busybox applet links.
set -eu
for d in "$PKG/common" "$PKG/../common"; do [ -f "$d/lib.sh" ] && . "$d/lib.sh" && break; done
command -v pkg_init >/dev/null || { echo "sysctl: pkg/common/lib.sh not found next to $PKG" >&2; exit 1; }
pkg_init sysctl
busybox_links
slim
