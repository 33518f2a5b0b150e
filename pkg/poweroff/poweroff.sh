#!/bin/sh
# poweroff.sh [SECONDS]: waits, then asks PID 1 (the host's init: the entry needs pid: host) for a
# clean poweroff with SIGUSR2; falls back to an immediate poweroff if PID 1 cannot be signalled.
timeout=${1:-30}
case $timeout in '' | *[!0-9]*)
  echo "poweroff: the argument must be a number of seconds, not '$timeout'" >&2
  exit 2
  ;;
esac
echo "poweroff: powering off in $timeout seconds"
sleep "$timeout"
if kill -USR2 1; then
  echo "poweroff: asked PID 1 to power off"
  exit 0
fi
echo "poweroff: cannot signal PID 1 (is the entry's pid: host?); poweroff -f" >&2
exec poweroff -f
