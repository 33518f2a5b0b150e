#!/bin/sh
# format [-label LABEL] [-type ext4|btrfs|xfs] [-partition dos|gpt] [-force] [-verbose] [DEVICE]
# LinuxKit's format: gives the first blank disk (or DEVICE) one partition spanning it and makes a
# file system there. A disk is blank when blkid finds no signature on it and it has no partition
# table. Without -force, a DEVICE with content is refused; with -force, its partitions are deleted.
# Flags are Go-style: -flag VALUE, -flag=VALUE or --flag; boolean flags take no value.
. /usr/lib/moby/disks.sh

log() { echo "format: $*"; }
fail() {
  echo "format: $*" >&2
  exit 1
}
label='' fstype=ext4 parttype=dos force='' verbose='' device=''
while [ $# -gt 0 ]; do
  arg=$1
  case $arg in --*) arg=${arg#-} ;; esac
  case $arg in
  -label=* | -type=* | -partition=*) name=${arg%%=*} value=${arg#*=} ;;
  -label | -type | -partition)
    [ $# -ge 2 ] || fail "flag needs an argument: $arg"
    name=$arg value=$2
    shift
    ;;
  -force | -force=true) force=1 name='' ;;
  -force=false) force='' name='' ;;
  -verbose | -verbose=true | -v) verbose=1 name='' ;;
  -verbose=false) verbose='' name='' ;;
  -h | -help) sed -n '2,7s/^# //p' "$0" && exit 0 ;;
  -*) fail "unknown flag $1 (flags: -label -type -partition -force -verbose)" ;;
  *)
    [ -z "$device" ] || fail "too many arguments: $device $1 (one DEVICE at most)"
    device=$1 name=''
    ;;
  esac
  case $name in
  -label) label=$value ;;
  -type) fstype=$value ;;
  -partition) parttype=$value ;;
  esac
  shift
done
case $parttype in dos | gpt) ;; *) fail "unsupported partition table type $parttype (dos or gpt)" ;; esac
case $fstype in
ext4) mkfs=/sbin/mke2fs ;; # a full path: Debian's busybox sh runs its own applet (no ext4) first
btrfs | xfs) mkfs=mkfs.$fstype ;;
*) fail "unsupported file system $fstype (ext4, or btrfs/xfs when their mkfs is in the image)" ;;
esac
mkfs=$(command -v "$mkfs") || fail "$mkfs is not in this image: add btrfs-progs/xfsprogs to its debs"
vlog() { [ -z "$verbose" ] || log "$*"; }

# 0: blank; 1: has content; exits on blkid errors.
is_blank() {
  vlog "checking whether $1 is blank"
  out=$(blkid "$1" 2>&1)
  rc=$?
  case $rc in
  0)
    log "$1 has content: $out"
    return 1
    ;;
  2) vlog "blkid found no signature on $1" ;;
  *) fail "cannot tell whether $1 is blank: blkid $1 exited with $rc: $out" ;;
  esac
  if has_partitions "$1"; then
    log "$1 has a partition table; skipped"
    return 1
  fi
  return 0
}

do_format() {
  d=$1
  if [ -n "$force" ] && has_partitions "$d"; then
    vlog "deleting the partitions of $d (-force)"
    sfdisk --quiet --delete "$d" || fail "sfdisk --delete $d failed"
  fi
  log "creating a $parttype partition table with one partition on $d"
  printf 'label: %s\n;\n' "$parttype" | sfdisk --quiet --wipe always "$d" ||
    fail "sfdisk could not partition $d"
  blockdev --rereadpt "$d" || fail "blockdev --rereadpt $d failed (is the disk in use?)"
  part=$(partition_of "$d" 1)
  i=0
  while [ ! -b "$part" ]; do
    # some block drivers (loop without max_part) ignore the re-read: add the partition explicitly
    [ "$i" -eq 5 ] && partx -a "$d" 2>/dev/null
    mdev -s 2>/dev/null
    i=$((i + 1))
    [ "$i" -le 60 ] || fail "no block device $part appeared after partitioning $d"
    sleep 0.1
  done
  case $fstype in
  ext4) set -- "$mkfs" -q -t ext4 -F ${label:+-L "$label"} "$part" ;;
  *) set -- "$mkfs" -f ${label:+-L "$label"} "$part" ;;
  esac
  vlog "$*"
  out=$("$@" 2>&1) || fail "$* failed: $out"
  log "partition $part successfully created ($fstype${label:+, label $label})"
}

if [ -n "$device" ]; then
  [ -e "$device" ] || fail "$device does not exist"
  [ -b "$device" ] || fail "$device is not a block device"
  if [ -n "$force" ]; then
    do_format "$device"
    exit 0
  fi
  candidates=$device
else
  candidates=$(find_drives)
fi
for d in $candidates; do
  vlog "considering $d"
  if is_blank "$d"; then
    do_format "$d"
    exit 0
  fi
done
fail "no eligible disk found among: ${candidates:-none} (only a blank disk is formatted, unless -force DEVICE)"
