#!/bin/sh
# `script:` step of pkg/bootloader/build.yml (docs/pkg.md). Runs on the host after the `debs:` step
# has unpacked isolinux, syslinux, syslinux-common and systemd-boot-efi into $ROOTFS, and leaves
# exactly the files listed in README.md.
#
# Debian ships syslinux's FAT boot sector (ldlinux.bss) and ldlinux.sys only inside the installer
# /usr/bin/syslinux: its build turns them into C arrays (libinstaller/bin2c.pl: syslinux_bootsect,
# then syslinux_ldlinux padded with zeros to a multiple of 512 bytes, then syslinux_ldlinuxc32, the
# ldlinux.c32 of the same build) that sit one after the other in the binary's .data, their lengths
# in .rodata. This script finds them by their own structure, checks them against each other and
# against files.sha256, and fails loudly when anything does not fit.
#
# Needs: sh, od (GNU, --endian), awk, head, tail, tr, cmp, sha256sum, find.
# By hand: ROOTFS=/tmp/x PKG=$PWD DEBS=/tmp/debs ./build.sh (after dpkg-deb -x of the four debs)
set -eu

die() {
  echo "bootloader/build.sh: $*" >&2
  exit 1
}

[ -n "${ROOTFS:-}" ] && [ -d "$ROOTFS" ] || die "ROOTFS must name the staging directory"
[ -n "${PKG:-}" ] && [ -f "$PKG/files.sha256" ] || die "PKG must name the bootloader package folder (with files.sha256)"

need() { # PATH (relative to ROOTFS) -> exits unless it is a regular file
  [ -f "$ROOTFS/$1" ] || die "$1 is missing from the unpacked Debian packages; check the debs step and debs.lock"
}

LDLINUX_MAGIC=fe02b23e # 0x3eb202fe, little-endian (libinstaller/syslxint.h)

# Unsigned little-endian integers and byte strings of a file.
u8() { od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' \n'; }
u16() { od --endian=little -An -tu2 -j "$2" -N 2 "$1" | tr -d ' \n'; }
u32() { od --endian=little -An -tu4 -j "$2" -N 4 "$1" | tr -d ' \n'; }
hex() { od -An -v -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }

# Byte offsets of every occurrence of the byte string HEX (lowercase hex) in the hex dump $dump.
find_all() {
  printf '%s\n' "$dump" | awk -v p="$1" '{
    s = $0; base = 0
    while ((i = index(s, p)) > 0) {
      at = base + i - 1
      if (at % 2 == 0) print at / 2
      s = substr(s, i + 1); base = at + 1
    }
  }'
}

cut_bytes() { # FILE OFFSET LENGTH OUT
  tail -c +"$(($2 + 1))" "$1" | head -c "$3" >"$4"
  [ "$(wc -c <"$4")" -eq "$3" ] || die "could not cut $3 bytes at $2 of $1"
}

installer=usr/bin/syslinux
for f in usr/lib/ISOLINUX/isolinux.bin usr/lib/ISOLINUX/isohdpfx.bin \
  usr/lib/syslinux/modules/bios/ldlinux.c32 usr/lib/SYSLINUX/mbr.bin \
  usr/lib/systemd/boot/efi/linuxx64.efi.stub "$installer"; do
  need "$f"
done
bin=$ROOTFS/$installer
dump=$(od -An -v -tx1 "$bin" | tr -d ' \n')
work=$ROOTFS/.bootloader-build
rm -rf "$work"
mkdir -p "$work"

# --- ldlinux.bss: the 512-byte FAT boot sector: a short jump and nop, OEM name "SYSLINUX",
#     LDLINUX_MAGIC in bsMagic (offset 504) and the 55 AA signature.
bss_at=
for at in $(find_all 5359534c494e5558); do # "SYSLINUX"
  b=$((at - 3))
  [ "$b" -ge 0 ] || continue
  [ "$(hex "$bin" "$b" 1)" = eb ] && [ "$(hex "$bin" $((b + 2)) 1)" = 90 ] || continue
  [ "$(hex "$bin" $((b + 504)) 4)" = "$LDLINUX_MAGIC" ] || continue
  [ "$(hex "$bin" $((b + 510)) 2)" = 55aa ] || continue
  [ -z "$bss_at" ] || die "two candidate boot sectors in $installer (at $bss_at and $b)"
  bss_at=$b
done
[ -n "$bss_at" ] || die "no syslinux boot sector (EB xx 90 'SYSLINUX' ... magic, 55 AA) in $installer"

# --- ldlinux.sys: starts with its early banner "\r\nSYSLINUX " and carries LDLINUX_MAGIC and
#     LDLINUX_MAGIC^HEXDATE at an 8-byte aligned offset right after it (core/diskstart.inc).
sys_at=
magic_rel=
for at in $(find_all 0d0a5359534c494e555820); do
  rel=8
  while [ $rel -le 64 ]; do
    if [ "$(hex "$bin" $((at + rel)) 4)" = "$LDLINUX_MAGIC" ]; then
      [ -z "$sys_at" ] || die "two candidate ldlinux.sys images in $installer (at $sys_at and $at)"
      sys_at=$at
      magic_rel=$rel
      break
    fi
    rel=$((rel + 8))
  done
done
[ -n "$sys_at" ] || die "no ldlinux.sys (banner + LDLINUX_MAGIC) in $installer"
[ "$sys_at" -eq $((bss_at + 512)) ] ||
  die "ldlinux.sys (at $sys_at) does not follow the boot sector (at $bss_at) as bin2c's arrays do"

# --- The embedded ldlinux.c32: the one ELF32 i386 shared object, right after ldlinux.sys. Its
#     length is where its section headers end (e_shoff + e_shnum * e_shentsize).
c32_at=
for at in $(find_all 7f454c46010101); do
  [ "$(u16 "$bin" $((at + 16)))" -eq 3 ] && [ "$(u16 "$bin" $((at + 18)))" -eq 3 ] || continue
  [ -z "$c32_at" ] || die "two candidate ldlinux.c32 (ELF32 i386 ET_DYN) in $installer (at $c32_at and $at)"
  c32_at=$at
done
[ -n "$c32_at" ] || die "no embedded ldlinux.c32 (ELF32 i386 shared object) in $installer"
c32_len=$(($(u32 "$bin" $((c32_at + 32))) + $(u16 "$bin" $((c32_at + 48))) * $(u16 "$bin" $((c32_at + 46)))))
sys_len=$((c32_at - sys_at))

# --- Checks: lengths as the installer declares them, the patch areas, the pairing of the boot
#     sector with ldlinux.sys.
[ "$sys_len" -gt 0 ] && [ $((sys_len % 512)) -eq 0 ] ||
  die "ldlinux.sys length $sys_len (from $sys_at to the ldlinux.c32 at $c32_at) is not a positive multiple of 512"
[ "$sys_len" -le 65536 ] || die "ldlinux.sys length $sys_len is more than the 64 KiB syslinux 6 loads"
size=$(wc -c <"$bin")
[ $((c32_at + c32_len)) -le "$size" ] || die "embedded ldlinux.c32 ($c32_len bytes at $c32_at) runs past the end of $installer"
le32() { printf '%08x' "$1" | sed 's/\(..\)\(..\)\(..\)\(..\)/\4\3\2\1/'; }
# syslinux_bootsect_len, syslinux_ldlinux_len and syslinux_ldlinuxc32_len are `const unsigned int`s,
# each followed by its _mtime: find 512, then the two lengths, every 8 bytes.
lens_at=
for at in $(find_all "$(le32 512)"); do
  if [ "$(hex "$bin" $((at + 8)) 4)" = "$(le32 "$sys_len")" ] && [ "$(hex "$bin" $((at + 16)) 4)" = "$(le32 "$c32_len")" ]; then
    lens_at=$at
  fi
done
[ -n "$lens_at" ] ||
  die "$installer declares no lengths 512, $sys_len, $c32_len (bootsect, ldlinux, ldlinuxc32): the arrays are not laid out as expected"

cut_bytes "$bin" "$bss_at" 512 "$work/ldlinux.bss"
cut_bytes "$bin" "$sys_at" "$sys_len" "$work/ldlinux.sys"
cut_bytes "$bin" "$c32_at" "$c32_len" "$work/ldlinux.c32"
bss=$work/ldlinux.bss
sys=$work/ldlinux.sys

# The patch area right after the magic pair: unpatched (all zero but MaxTransfer 127).
pa=$((magic_rel + 8))
[ "$(hex "$sys" "$pa" 12)" = 000000000000000000000000 ] ||
  die "the patch area of ldlinux.sys (at $pa) is not blank: already patched by an installer?"
[ "$(u16 "$sys" $((pa + 12)))" -eq 127 ] || die "ldlinux.sys MaxTransfer is not the default 127"
epa=$(u16 "$sys" $((pa + 14)))
[ "$epa" -gt "$pa" ] && [ $((epa + 20)) -le "$sys_len" ] || die "ldlinux.sys extended patch area offset $epa is out of range"
adv_ptrs=$(u16 "$sys" "$epa")
dir_off=$(u16 "$sys" $((epa + 2)))
dir_len=$(u16 "$sys" $((epa + 4)))
secptr_off=$(u16 "$sys" $((epa + 10)))
secptr_cnt=$(u16 "$sys" $((epa + 12)))
sect1ptr0=$(u16 "$sys" $((epa + 14)))
sect1ptr1=$(u16 "$sys" $((epa + 16)))
raidpatch=$(u16 "$sys" $((epa + 18)))
[ $((adv_ptrs + 16)) -le "$sys_len" ] || die "ldlinux.sys ADV pointers ($adv_ptrs) out of range"
[ $((dir_off + dir_len)) -le "$sys_len" ] || die "ldlinux.sys directory field ($dir_off+$dir_len) out of range"
[ $((secptr_off + secptr_cnt * 10)) -le "$sys_len" ] || die "ldlinux.sys sector extents ($secptr_off, $secptr_cnt) out of range"
[ "$secptr_cnt" -ge $((sys_len / 512)) ] || die "ldlinux.sys has room for $secptr_cnt extents only"
# Both sector-1 pointers and the RAID patch lie in the boot code that installers copy (90..510),
# and hold the values the boot sector was assembled with (core/diskstart.inc, core/diskboot.inc).
for p in "$sect1ptr0" "$sect1ptr1" "$raidpatch"; do
  [ "$p" -ge 90 ] && [ "$p" -le 506 ] || die "boot sector patch offset $p is outside the boot code (90..510)"
done
[ "$(hex "$bss" "$sect1ptr0" 4)" = efbeadde ] && [ "$(hex "$bss" "$sect1ptr1" 4)" = cefaedfe ] ||
  die "the boot sector does not hold 0xdeadbeef/0xfeedface where ldlinux.sys says: they are not a pair"
[ "$(hex "$bss" "$raidpatch" 1)" = cd ] || die "the boot sector has no INT instruction at the RAID patch offset $raidpatch"
# Only bin2c's zero padding after the last sector's data.
tail -c 512 "$sys" | od -An -v -tx1 | tr -d ' \n' | grep -q '[1-9a-f]' || die "ldlinux.sys ends with a whole sector of zeros: its length is wrong"
# The embedded ldlinux.c32 is the one this installer writes beside ldlinux.sys.
[ "$(hex "$work/ldlinux.c32" 0 4)" = 7f454c46 ] || die "the cut ldlinux.c32 is not ELF"

# --- The output tree (README.md).
out=$work/out
mkdir -p "$out/isolinux" "$out/syslinux" "$out/efi"
cp "$ROOTFS/usr/lib/ISOLINUX/isolinux.bin" "$ROOTFS/usr/lib/ISOLINUX/isohdpfx.bin" \
  "$ROOTFS/usr/lib/syslinux/modules/bios/ldlinux.c32" "$out/isolinux/"
cp "$ROOTFS/usr/lib/SYSLINUX/mbr.bin" "$work/ldlinux.bss" "$work/ldlinux.sys" "$work/ldlinux.c32" "$out/syslinux/"
cp "$ROOTFS/usr/lib/systemd/boot/efi/linuxx64.efi.stub" "$out/efi/"

[ "$(wc -c <"$out/isolinux/isolinux.bin")" -gt 2048 ] || die "isolinux.bin is implausibly small"
[ "$(wc -c <"$out/isolinux/isohdpfx.bin")" -eq 432 ] || die "isohdpfx.bin is not 432 bytes"
[ "$(wc -c <"$out/syslinux/mbr.bin")" -eq 440 ] || die "mbr.bin is not 440 bytes"
[ "$(hex "$out/efi/linuxx64.efi.stub" 0 2)" = 4d5a ] || die "linuxx64.efi.stub is not a PE image (no MZ)"

# Every output against its pinned digest: a new debs.lock that changes a file fails here until
# files.sha256 is updated (after the boot tests of media::syslinux/media::uki passed with it).
(cd "$out" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) >"$work/have"
sed -e 's/#.*//' -e '/^ *$/d' "$PKG/files.sha256" | awk '{ print $2 }' | LC_ALL=C sort >"$work/want"
cmp -s "$work/have" "$work/want" || die "the outputs ($(paste -sd ' ' "$work/have")) are not the files of files.sha256 ($(paste -sd ' ' "$work/want"))"
sed -e 's/#.*//' -e '/^ *$/d' "$PKG/files.sha256" >"$work/sums"
(cd "$out" && sha256sum --quiet -c "$work/sums") >&2 ||
  die "outputs differ from files.sha256 (above): a changed Debian package or a wrong cut; check, boot-test, then update files.sha256"

# Keep only the outputs.
find "$ROOTFS" -mindepth 1 -maxdepth 1 ! -name .bootloader-build -exec rm -rf {} +
mv "$out"/* "$ROOTFS/"
rm -rf "$work"
find "$ROOTFS" -type d -exec chmod 0755 {} +
find "$ROOTFS" -type f -exec chmod 0644 {} +
echo "bootloader/build.sh: ldlinux.bss at $bss_at, ldlinux.sys $sys_len bytes at $sys_at, ldlinux.c32 $c32_len bytes at $c32_at of $installer"
