#!/bin/sh
# `script:` step of pkg/dhcpcd: busybox applet links.
set -eu
for d in "$PKG/common" "$PKG/../common"; do [ -f "$d/lib.sh" ] && . "$d/lib.sh" && break; done
command -v pkg_init >/dev/null || { echo "dhcpcd: pkg/common/lib.sh not found next to $PKG" >&2; exit 1; }
pkg_init dhcpcd
busybox_links
slim
