#!/bin/sh
# `script:` step of pkg/ca-certificates: concatenates the unpacked certificates into
# /etc/ssl/certs/ca-certificates.crt (what update-ca-certificates does on Debian with its default
# /etc/ca-certificates.conf: every certificate of /usr/share/ca-certificates, in sorted order),
# then removes everything else.
set -eu
[ -n "${ROOTFS:-}" ] && [ -d "$ROOTFS" ] || { echo "ca-certificates: ROOTFS must name the staging directory" >&2; exit 1; }
src=$ROOTFS/usr/share/ca-certificates
[ -d "$src" ] || { echo "ca-certificates: no $src: the debs step must unpack ca-certificates" >&2; exit 1; }
mkdir -p "$ROOTFS/.ca"
out=$ROOTFS/.ca/ca-certificates.crt
: >"$out"
n=0
for f in $(cd "$src" && find . -name '*.crt' | sed 's|^\./||' | LC_ALL=C sort); do
  cat "$src/$f" >>"$out"
  # update-ca-certificates makes sure every certificate ends with a newline
  [ -z "$(tail -c 1 "$src/$f")" ] || echo >>"$out"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "ca-certificates: no *.crt under $src" >&2; exit 1; }
find "$ROOTFS" -mindepth 1 -maxdepth 1 ! -name .ca -exec rm -rf {} +
mkdir -p "$ROOTFS/etc/ssl/certs"
mv "$out" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
rmdir "$ROOTFS/.ca"
echo "ca-certificates: $n certificates, $(wc -c <"$ROOTFS/etc/ssl/certs/ca-certificates.crt") bytes"
