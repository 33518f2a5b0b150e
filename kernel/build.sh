#!/bin/sh
# `script:` step of kernel/build.yml (docs/pkg.md). Runs on the host after the `debs:` steps have
# unpacked Debian's kernel package and busybox-static into $ROOTFS, and leaves exactly:
#   /kernel       the kernel (boot/vmlinuz-<kver>)
#   /System.map   the package's System.map (Debian ships a stub; the real one is in the -dbg package)
#   /kernel.tar   lib/modules/<kver>/: the modules named in $PKG/modules.list and their dependency
#                 closure, modules.builtin(.modinfo), a filtered modules.order, and a fresh
#                 modules.dep/modules.alias/modules.symbols written by busybox depmod
# Needs: sh, find, sed, sort, tar (GNU). By hand: ROOTFS=/tmp/x PKG=$PWD DEBS=/tmp/debs ./build.sh
set -eu

die() {
  echo "kernel/build.sh: $*" >&2
  exit 1
}

[ -n "${ROOTFS:-}" ] && [ -d "$ROOTFS" ] || die "ROOTFS must name the staging directory"
[ -n "${PKG:-}" ] && [ -f "$PKG/modules.list" ] || die "PKG must name the kernel package folder (with modules.list)"

# The one kernel the debs step unpacked.
set -- "$ROOTFS"/boot/vmlinuz-*
[ $# -eq 1 ] && [ -f "$1" ] || die "expected exactly one boot/vmlinuz-* in $ROOTFS, found: $*; check the debs step"
vmlinuz=$1
kver=${vmlinuz##*/vmlinuz-}
moddir=$ROOTFS/lib/modules/$kver
[ -d "$moddir/kernel" ] || die "no lib/modules/$kver/kernel in $ROOTFS: the kernel package unpacked no modules"

busybox=$ROOTFS/bin/busybox
[ -x "$busybox" ] || die "no $busybox: add busybox-static to the debs step (its depmod writes modules.dep)"
"$busybox" true || die "$busybox does not run on this host (it must be Debian's static x86_64 busybox)"

work=$ROOTFS/.kernel-build
rm -rf "$work"
mkdir -p "$work"

# Module files are unpacked uncompressed by Debian 12 (.ko); newer kernels may ship .ko.xz, which
# busybox depmod cannot read.
if find "$moddir/kernel" -name '*.ko.*' | grep -q .; then
  die "$moddir has compressed modules (*.ko.xz/zst): decompress them first or use a kernel with plain .ko files"
fi

# Dependencies of every module, from a depmod of the full tree.
"$busybox" depmod -b "$ROOTFS" "$kver" || die "busybox depmod failed on $moddir"
[ -s "$moddir/modules.dep" ] || die "busybox depmod wrote no $moddir/modules.dep"

# name (with '-' as '_') -> relative path, for every module file.
(cd "$moddir" && find kernel -name '*.ko' | sort) | while read -r p; do
  n=${p##*/}
  n=${n%.ko}
  echo "$(echo "$n" | tr - _) $p"
done >"$work/names"

: >"$work/wanted"
sed -e 's/#.*//' "$PKG/modules.list" | while read -r name; do
  [ -n "$name" ] || continue
  key=$(echo "$name" | tr - _)
  p=$(awk -v k="$key" '$1 == k { print $2; exit }' "$work/names")
  if [ -n "$p" ]; then
    echo "$p" >>"$work/wanted"
  elif grep -Eq "/($key|$(echo "$key" | tr _ -))\.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
    echo "kernel/build.sh: $name is built into $kver" >&2
  else
    echo "kernel/build.sh: warning: $kver has no module $name (not configured); skipped" >&2
  fi
done

# Dependency closure: modules.dep lines are "path: dep dep ...".
sort -u "$work/wanted" >"$work/closure"
while :; do
  awk -F': *' 'NR == FNR { want[$1] = 1; next } ($1 in want) { print $1; n = split($2, d, " "); for (i = 1; i <= n; i++) print d[i] }' \
    "$work/closure" "$moddir/modules.dep" | sort -u >"$work/next"
  if cmp -s "$work/closure" "$work/next"; then break; fi
  mv "$work/next" "$work/closure"
done
[ -s "$work/closure" ] || die "no module of $PKG/modules.list exists in $kver"

# The curated tree, then a fresh depmod on it.
out=$work/tree/lib/modules/$kver
mkdir -p "$out"
while read -r p; do
  mkdir -p "$out/${p%/*}"
  cp "$moddir/$p" "$out/$p"
done <"$work/closure"
for f in modules.builtin modules.builtin.modinfo; do
  [ -f "$moddir/$f" ] && cp "$moddir/$f" "$out/$f"
done
[ -f "$moddir/modules.order" ] && grep -Fxf "$work/closure" "$moddir/modules.order" >"$out/modules.order" || true
"$busybox" depmod -b "$work/tree" "$kver" || die "busybox depmod failed on the curated tree $out"
[ -s "$out/modules.dep" ] || die "busybox depmod wrote no modules.dep for the curated tree"

nmods=$(wc -l <"$out/modules.dep")

# A reproducible tar: sorted, fixed mtime (LinuxKit's 2017-04-18T16:30:00Z), root-owned.
chmod -R u+rwX,go+rX,go-w "$work/tree"
tar -C "$work/tree" --sort=name --format=ustar --mtime=@1492533000 --owner=0 --group=0 --numeric-owner \
  -cf "$ROOTFS/kernel.tar.new" lib || die "tar of the curated modules failed"

# Keep only the three outputs.
mv "$vmlinuz" "$ROOTFS/kernel.new"
if [ -f "$ROOTFS/boot/System.map-$kver" ]; then
  mv "$ROOTFS/boot/System.map-$kver" "$ROOTFS/System.map.new"
else
  : >"$ROOTFS/System.map.new"
fi
find "$ROOTFS" -mindepth 1 -maxdepth 1 ! -name kernel.new ! -name kernel.tar.new ! -name System.map.new -exec rm -rf {} +
for f in kernel kernel.tar System.map; do
  mv "$ROOTFS/$f.new" "$ROOTFS/$f"
  chmod 0644 "$ROOTFS/$f"
done
echo "kernel/build.sh: $kver: $nmods modules, kernel.tar $(wc -c <"$ROOTFS/kernel.tar") bytes"
