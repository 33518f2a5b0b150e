#!/bin/sh
# mountie [-device DEV | -label LABEL | -uuid UUID] MOUNTPOINT
# mountie DEVICE MOUNTPOINT
# LinuxKit's mount: mounts a disk under MOUNTPOINT (made if missing), chosen by device, label or
# uuid, or else the first Linux partition (MBR type 83 / GPT Linux data) that is not mounted yet,
# then adds /dev/disk/by-uuid links. Mount /var/... to have the mount seen by the host (the image's
# config binds /var with rshared propagation). Flags are Go-style (-flag V, -flag=V, --flag V).
. /usr/lib/moby/disks.sh

fail() {
  echo "mount: $*" >&2
  exit 1
}
device='' label='' uuid='' args=''
while [ $# -gt 0 ]; do
  arg=$1
  case $arg in --*) arg=${arg#-} ;; esac
  case $arg in
  -device=*) device=${arg#*=} ;;
  -label=*) label=${arg#*=} ;;
  -uuid=*) uuid=${arg#*=} ;;
  -device | -label | -uuid)
    [ $# -ge 2 ] || fail "flag needs an argument: $arg"
    eval "${arg#-}=\$2"
    shift
    ;;
  -h | -help) sed -n '2,8s/^# //p' "$0" && exit 0 ;;
  -*) fail "unknown flag $1 (flags: -device -label -uuid)" ;;
  *) args="$args $1" ;;
  esac
  shift
done
set -- $args
case $# in
0) fail "no mount point given (mountie [-label L] MOUNTPOINT)" ;;
1) mountpoint=$1 ;;
2) device=$1 mountpoint=$2 ;;
*) fail "too many arguments: $* (at most DEVICE MOUNTPOINT)" ;;
esac

mkdir -p "$mountpoint" || fail "cannot make the mount point $mountpoint"
if [ -z "$device" ] && [ -n "$label" ]; then
  device=$(findfs "LABEL=$label") || fail "no device with the label $label (format it with moby/format -label $label?)"
fi
if [ -z "$device" ] && [ -n "$uuid" ]; then
  device=$(findfs "UUID=$uuid") || fail "no device with the UUID $uuid"
fi
if [ -z "$device" ]; then
  mounted=$(cut -d' ' -f1 /proc/mounts)
  for d in $(find_drives); do
    if ! has_partitions "$d"; then
      echo "mount: no partition table on $d; skipped"
      continue
    fi
    for p in $(linux_partitions "$d"); do
      if echo "$mounted" | grep -qx "$p"; then
        echo "mount: $p is already mounted; skipped"
        continue
      fi
      device=$p
      break 2
    done
  done
  [ -n "$device" ] || fail "no eligible disk found (no unmounted Linux partition on: $(find_drives | tr '\n' ' '))"
fi

out=$(mount "$device" "$mountpoint" 2>&1) || fail "cannot mount $device on $mountpoint: $out"
echo "mount: $device mounted on $mountpoint"

# /dev/disk/by-uuid/UUID -> ../../NAME, as udev makes them
mkdir -p /dev/disk/by-uuid /dev/disk/by-label
for b in /sys/class/block/*; do
  name=${b##*/}
  u=$(blkid -o value -s UUID "/dev/$name" 2>/dev/null) || continue
  [ -n "$u" ] || continue
  [ -e "/dev/disk/by-uuid/$u" ] || ln -s "../../$name" "/dev/disk/by-uuid/$u" ||
    echo "mount: cannot link /dev/disk/by-uuid/$u" >&2
done
exit 0
