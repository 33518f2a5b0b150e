#!/bin/sh
# Applies /etc/sysctl.d/*.conf in name order (or the files/folders given as arguments).
# Settings that fail (unknown to this kernel, read-only) are reported and skipped; exit 0.
[ $# -gt 0 ] || set -- /etc/sysctl.d
for arg in "$@"; do
  if [ -d "$arg" ]; then set -- "$arg"/*.conf; else set -- "$arg"; fi
  for f in "$@"; do
    [ -f "$f" ] || { echo "sysctl: no file $f" >&2; continue; }
    echo "sysctl: applying $f"
    # -e: ignore unknown keys; a failing write is printed by sysctl itself
    sysctl -e -q -p "$f" || echo "sysctl: WARN: some settings of $f were not applied" >&2
  done
done
exit 0
