#!/bin/sh
# dhcpcd [-1] [IFACE...]: busybox udhcpc on each IFACE (default: every eth* interface).
#   -1      one shot: get a lease on every interface, then exit (non-zero if one failed)
#   otherwise run in the foreground and renew the leases until stopped.
# LinuxKit's dhcpcd flags --nobackground, -f FILE and -q are accepted and ignored, so its YAML
# commands work unchanged. Env: DHCP_TIMEOUT (seconds to wait for a lease / interfaces, default 20).
oneshot=
ifaces=
while [ $# -gt 0 ]; do
  case $1 in
  -1 | --oneshot) oneshot=1 ;;
  --nobackground | -q | -b | --background) ;;
  -f | --config) shift ;;
  -*) echo "dhcpcd: unknown option $1 (this is busybox udhcpc behind LinuxKit's dhcpcd flags: -1 and interface names)" >&2 ;;
  *) ifaces="$ifaces $1" ;;
  esac
  shift
done
timeout=${DHCP_TIMEOUT:-20}

# The network controllers on the PCI bus (class 02): as many eth* interfaces are waited for.
pci_nics() {
  n=0
  for c in /sys/bus/pci/devices/*/class; do
    case $(cat "$c" 2>/dev/null) in 0x02*) n=$((n + 1)) ;; esac
  done
  echo "$n"
}

# Modules load while onboot runs: wait for the interfaces to appear (all of them: a VM on a
# private network has a second NIC that its driver may register a moment after the first).
i=0
while :; do
  if [ -z "$ifaces" ]; then
    found=
    count=0
    for d in /sys/class/net/eth*; do [ -e "$d" ] && found="$found ${d##*/}" && count=$((count + 1)); done
    [ -n "$found" ] && [ "$count" -ge "$(pci_nics)" ] && break
  else
    found=
    for f in $ifaces; do [ -e "/sys/class/net/$f" ] && found="$found $f"; done
  fi
  [ -n "$ifaces" ] && [ "$found" = "$ifaces" ] && break
  i=$((i + 1))
  if [ "$i" -gt "$timeout" ]; then
    echo "dhcpcd: no interface ${ifaces:-eth*} after ${timeout}s (found: ${found:-none}); is the NIC's driver (virtio_net) loaded?" >&2
    [ -n "$found" ] || exit 1
    break
  fi
  sleep 1
done

args="-s /usr/share/udhcpc/default.script -O mtu -O staticroutes -O search -O domain"
host=$(hostname 2>/dev/null)
[ -n "$host" ] && [ "$host" != "(none)" ] && args="$args -x hostname:$host"
rc=0
for f in $found; do
  ip link set "$f" up
  if [ -n "$oneshot" ]; then
    # -q: exit once bound (the address stays), -n: fail if no lease in -t tries of -T seconds
    tries=$(((timeout + 2) / 3))
    udhcpc -i "$f" -f -q -n -t "$tries" -T 3 $args || {
      echo "dhcpcd: no lease on $f" >&2
      rc=1
    }
  else
    udhcpc -i "$f" -f $args &
  fi
done
[ -n "$oneshot" ] && exit "$rc"
wait
