# Disk helpers for the format and mount images (sourced at run time from /usr/lib/moby/disks.sh).

# Whole disks in /dev, sorted: block devices except loop*, nbd* and partitions/CD-ROMs named
# letters+digits (vda1, sr0), as LinuxKit's format and mount choose them.
find_drives() {
  for d in /dev/*; do
    [ -b "$d" ] || continue
    n=${d#/dev/}
    case $n in loop* | nbd*) continue ;; esac
    echo "$n" | grep -Eq '^[a-z]+[0-9]+$' && continue
    echo "$d"
  done | sort
}

has_partitions() { sfdisk -d "$1" >/dev/null 2>&1; }

# The device of partition N of disk D: vda -> vda1, nvme0n1 -> nvme0n1p1.
partition_of() {
  case $1 in
  *[0-9]) echo "${1}p$2" ;;
  *) echo "$1$2" ;;
  esac
}

# The partitions of D with a Linux type (MBR 83, GPT 0FC63DAF-8483-4772-8E79-3D69D8477DE4).
linux_partitions() {
  sfdisk -d "$1" 2>/dev/null | sed -n 's/^\(\/dev\/[^ ]*\) *:.*type= *\([0-9A-Fa-f-]*\).*/\1 \2/p' |
    while read -r node type; do
      case $type in
      83 | 0FC63DAF-8483-4772-8E79-3D69D8477DE4 | 0fc63daf-8483-4772-8e79-3d69d8477de4) echo "$node" ;;
      esac
    done
}
