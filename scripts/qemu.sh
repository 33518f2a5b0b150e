#!/usr/bin/env bash
# Boot a `moby build` output by hand with qemu, without moby: the same machine `moby run qemu`
# uses (q35, virtio disks and NIC, CDs on virtio-scsi so that Debian's cloud kernel sees them).
#
#   scripts/qemu.sh [--kvm] [--mem MiB] [--cpus N] [--publish HOST:GUEST]... PREFIX|IMAGE.iso|DISK [-- QEMU-ARGS...]
#
# PREFIX boots PREFIX-kernel with PREFIX-initrd.img and PREFIX-cmdline. The serial console is on
# the terminal; Ctrl-A X quits qemu. Use `moby run` for state dirs, userdata, QMP and clean stops.
set -euo pipefail

usage() { sed -n '2,9s/^# \{0,1\}//p' "$0" >&2; exit 2; }

accel=tcg mem=1024 cpus=1 fwd=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kvm) accel=kvm ;;
    --mem) mem=${2:?--mem needs MiB}; shift ;;
    --cpus) cpus=${2:?--cpus needs a number}; shift ;;
    --publish) p=${2:?--publish needs HOST:GUEST}; fwd="$fwd,hostfwd=tcp::${p%%:*}-:${p#*:}"; shift ;;
    -h|--help) usage ;;
    --) break ;;
    -*) echo "qemu.sh: unknown flag $1" >&2; usage ;;
    *) [ -z "${image:-}" ] || usage; image=$1 ;;
  esac
  shift
done
[ -n "${image:-}" ] || usage
[ "${1:-}" = "--" ] && shift

qemu=${QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || { echo "qemu.sh: $qemu not found: apt-get install qemu-system-x86" >&2; exit 1; }

args=(-machine "q35,accel=$accel" -smp "$cpus" -m "$mem"
      -object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0
      -device virtio-net-pci,netdev=t0 -netdev "user,id=t0$fwd" -nographic)
if [ -f "$image-kernel" ]; then
  cmdline=$(cat "$image-cmdline" 2>/dev/null || true)
  if [ -f "$image-initrd.img" ]; then
    args+=(-initrd "$image-initrd.img")
  elif [ -f "$image-squashfs.img" ]; then
    args+=(-drive "file=$image-squashfs.img,format=raw,if=none,id=root" -device virtio-blk-pci,drive=root)
    cmdline="$cmdline root=/dev/vda"
  fi
  args+=(-kernel "$image-kernel" -append "$cmdline")
elif [[ "$image" == *.iso ]] && [ -f "$image" ]; then
  args+=(-device virtio-scsi-pci,id=scsi0
         -drive "file=$image,format=raw,if=none,id=cd0,media=cdrom,readonly=on"
         -device scsi-cd,bus=scsi0.0,drive=cd0,bootindex=0)
elif [ -f "$image" ]; then
  args+=(-drive "file=$image,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,bootindex=0)
else
  echo "qemu.sh: no $image-kernel, ISO or disk image at $image: build it first (moby build)" >&2
  exit 1
fi
exec "$qemu" "${args[@]}" "$@"
