#!/bin/sh
# `script:` step of pkg/getty: busybox applet links and the minimal /etc.
set -eu
for d in "$PKG/common" "$PKG/../common"; do [ -f "$d/lib.sh" ] && . "$d/lib.sh" && break; done
command -v pkg_init >/dev/null || { echo "getty: pkg/common/lib.sh not found next to $PKG" >&2; exit 1; }
pkg_init getty
busybox_links
base_etc
ln -sf /run/resolvconf/resolv.conf "$ROOTFS/etc/resolv.conf"
printf '#!/bin/sh\nexec /bin/login -f root\n' >"$ROOTFS/usr/bin/autologin"
chmod 0755 "$ROOTFS/usr/bin/autologin"
slim
