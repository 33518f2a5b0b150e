#!/usr/bin/env bash
# Fetches the pieces of the tiny test guest that `moby run` boot tests start: a Debian cloud kernel,
# a static busybox and the few kernel modules the guest needs (virtio disk/net/scsi, CD-ROM + iso9660,
# ACPI power button + evdev; overlay and veth for the pkg/init test's containers) with their
# dependencies.
#
# Usage: scripts/test-guest.sh [DIR]        (DIR defaults to <repo>/target/test-guest)
#
# Result:  DIR/vmlinuz  DIR/busybox  DIR/modules/lib/modules/<kver>/{kernel/...,modules.dep}  DIR/STAMP
# DIR/STAMP names the package versions and the wanted modules and is written last: when it exists
# and names the same modules, nothing is done.
# tests/support/guest.rs turns DIR into a kernel + initrd + cmdline (see tests/support/guest-init.sh).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$repo/target/test-guest}
stamp=$dir/STAMP

# Modules the init loads; their dependency closure is added from modules.dep.
wanted=(virtio_pci virtio_blk virtio_net virtio_scsi sr_mod isofs button evdev overlay veth)

die() {
  echo "test-guest: $*" >&2
  exit 1
}

if [ -f "$stamp" ] && grep -qxF "modules ${wanted[*]}" "$stamp"; then
  echo "test-guest: $dir is up to date ($(paste -sd ' ' "$stamp"))"
  exit 0
fi

command -v apt-get >/dev/null || die "apt-get is needed to download the Debian kernel and busybox packages"
command -v dpkg-deb >/dev/null || die "dpkg-deb is needed to unpack the downloaded packages"

work=$(mktemp -d "${TMPDIR:-/tmp}/test-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt-get download drops privileges to _apt, which cannot write into a root-owned mktemp dir.
chmod 0755 "$work"
apt_opts=()
[ "$(id -u)" -eq 0 ] && apt_opts=(-o APT::Sandbox::User=root)

download() { # PACKAGE -> path of the .deb in $work
  (cd "$work" && apt-get download -q "${apt_opts[@]}" "$1" >"$work/apt.log" 2>&1) || {
    cat "$work/apt.log" >&2
    die "apt-get download $1 failed (run 'apt-get update' if the package is unknown or the version is gone)"
  }
  local deb
  deb=$(ls "$work"/"$1"_*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || die "apt-get download $1 left no $1_*.deb in $work"
  echo "$deb"
}

# The meta package only depends on the versioned kernel package; that one holds the files.
meta=$(download linux-image-cloud-amd64)
kpkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*-cloud-amd64\).*/\1/p' | head -n1)
[ -n "$kpkg" ] || die "cannot find the linux-image-*-cloud-amd64 dependency of $(basename "$meta")"
kdeb=$(download "$kpkg")
bdeb=$(download busybox-static)

dpkg-deb -x "$kdeb" "$work/kernel"
dpkg-deb -x "$bdeb" "$work/busybox"

kver=${kpkg#linux-image-}
vmlinuz=$work/kernel/boot/vmlinuz-$kver
moddir=$work/kernel/lib/modules/$kver
[ -f "$vmlinuz" ] || die "$(basename "$kdeb") has no boot/vmlinuz-$kver"
[ -d "$moddir/kernel" ] || die "$(basename "$kdeb") has no lib/modules/$kver/kernel"
busybox=$work/busybox/bin/busybox
[ -x "$busybox" ] || die "$(basename "$bdeb") has no bin/busybox"
"$busybox" true || die "$busybox does not run on this machine (it must be the static x86_64 build)"

# The package has no modules.dep (its postinst runs depmod); the static busybox writes one.
"$busybox" depmod -b "$work/kernel" "$kver" || die "busybox depmod failed on $moddir"
dep=$moddir/modules.dep
[ -s "$dep" ] || die "busybox depmod wrote no $dep"

# Dependency closure of the wanted modules, as paths relative to $moddir.
path_of() { # module name -> kernel/.../name.ko (module names match file names with - and _ equal)
  local pattern=${1//_/[-_]}
  grep -E "^(.*/)?${pattern}\.ko:" "$dep" | head -n1 | cut -d: -f1
}
declare -A need=()
for m in "${wanted[@]}"; do
  p=$(path_of "$m")
  [ -n "$p" ] || die "module $m is not in $(basename "$kdeb") (it may be built in now: drop it from 'wanted' in $0)"
  need[$p]=1
  for d in $(grep -E "^$p:" "$dep" | cut -d: -f2-); do
    need[$d]=1
  done
done

rm -rf "$dir"
mkdir -p "$dir/modules/lib/modules/$kver"
out=$dir/modules/lib/modules/$kver
for p in "${!need[@]}"; do
  [ -f "$moddir/$p" ] || die "modules.dep names $p, which is not in $(basename "$kdeb")"
  mkdir -p "$out/$(dirname "$p")"
  cp "$moddir/$p" "$out/$p"
done
# modules.dep lists every module's full dependency list, so keeping the lines of the needed modules
# gives a closed file.
for p in "${!need[@]}"; do
  grep -E "^$p:" "$dep"
done | sort >"$out/modules.dep"
cp "$vmlinuz" "$dir/vmlinuz"
cp "$busybox" "$dir/busybox"
chmod 0755 "$dir/busybox"

{
  echo "kernel $kpkg $(dpkg-deb -f "$kdeb" Version)"
  echo "busybox busybox-static $(dpkg-deb -f "$bdeb" Version)"
  echo "kver $kver"
  echo "modules ${wanted[*]}"
} >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
echo "test-guest: wrote $dir ($(paste -sd ' ' "$stamp"); ${#need[@]} modules)"
