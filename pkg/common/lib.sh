# Shared by the `script:` steps of the packages in pkg/ (sourced, POSIX sh). Every package lists
# this folder in `extra-sources` (`../common:common`) so that it is part of its hash; a package's
# script finds it as $PKG/common (a build that lays extra-sources out inside the package) or as
# $PKG/../common (the source tree):
#
#   for d in "$PKG/common" "$PKG/../common"; do [ -f "$d/lib.sh" ] && . "$d/lib.sh" && break; done
#
# Functions:
#   pkg_init NAME              checks ROOTFS/PKG, sets $BB to ROOTFS's static busybox
#   busybox_links              a relative symlink for every busybox applet that has no file yet
#   base_etc                   /etc/passwd, /etc/group (root only), /etc/shadow (root locked),
#                              /root, /tmp, /run, /var/run -> /run, /etc/hostname absent
#   slim [PATH...]             removes docs, man pages, locales, gconv, lintian, bug, bash completion
#   slim_glibc                 removes glibc libraries no program here links (libmvec, ...)
#   keep_only DIR NAME...      deletes every file in ROOTFS/DIR except the NAMEs
#   check_elf                  every ELF under ROOTFS finds its shared libraries inside ROOTFS
#                              (with the host's objdump; skipped with a note without it)

die() {
  echo "${PKG_NAME:-pkg}: $*" >&2
  exit 1
}

pkg_init() {
  PKG_NAME=$1
  [ -n "${ROOTFS:-}" ] && [ -d "$ROOTFS" ] || die "ROOTFS must name the staging directory"
  [ -n "${PKG:-}" ] && [ -d "$PKG" ] || die "PKG must name the package folder"
  BB=$ROOTFS/bin/busybox
  [ -x "$BB" ] || die "no $BB: the package's debs step must include busybox-static"
  "$BB" true || die "$BB does not run on this host (it must be Debian's static x86_64 busybox)"
}

busybox_links() {
  "$BB" --list-full | while read -r path; do
    case $path in
    linuxrc | sbin/init) continue ;; # never a second init in an image
    bin/*) target=busybox ;;
    sbin/*) target=../bin/busybox ;;
    usr/bin/* | usr/sbin/*) target=../../bin/busybox ;;
    *) die "unexpected busybox applet path $path" ;;
    esac
    # A real program from a deb (e.g. e2fsprogs' mke2fs) wins over the applet, in any of the four
    # directories of the PATH.
    name=${path##*/}
    exists=
    for d in bin sbin usr/bin usr/sbin; do
      if [ -e "$ROOTFS/$d/$name" ] || [ -L "$ROOTFS/$d/$name" ]; then exists=1; fi
    done
    [ -n "$exists" ] && continue
    mkdir -p "$ROOTFS/${path%/*}"
    ln -s "$target" "$ROOTFS/$path"
  done
}

base_etc() {
  mkdir -p "$ROOTFS/etc" "$ROOTFS/root" "$ROOTFS/tmp" "$ROOTFS/run" "$ROOTFS/var"
  chmod 0700 "$ROOTFS/root"
  chmod 1777 "$ROOTFS/tmp"
  [ -e "$ROOTFS/var/run" ] || ln -s ../run "$ROOTFS/var/run"
  [ -e "$ROOTFS/etc/passwd" ] || printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$ROOTFS/etc/passwd"
  [ -e "$ROOTFS/etc/group" ] || printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
  if [ ! -e "$ROOTFS/etc/shadow" ]; then
    # '*': no password matches, so root cannot log in with one.
    printf 'root:*::0:::::\nnobody:*::0:::::\n' >"$ROOTFS/etc/shadow"
    chmod 0640 "$ROOTFS/etc/shadow"
  fi
}

slim() {
  for p in usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian \
    usr/share/bug usr/share/bash-completion usr/share/common-licenses usr/share/i18n \
    usr/lib/x86_64-linux-gnu/gconv usr/share/gcc usr/share/gdb etc/ld.so.conf.d "$@"; do
    rm -rf "${ROOTFS:?}/$p"
  done
}

# glibc's libraries that no program of these images links (check_elf proves it after the fact).
slim_glibc() {
  for l in libmvec.so.1 libBrokenLocale.so.1 libmemusage.so libpcprofile.so libc_malloc_debug.so.0 \
    libthread_db.so.1 libnss_hesiod.so.2 libanl.so.1 libnsl.so.1; do
    rm -f "$ROOTFS/lib/x86_64-linux-gnu/$l" "$ROOTFS/usr/lib/x86_64-linux-gnu/$l"
  done
  rm -rf "$ROOTFS/usr/lib/x86_64-linux-gnu/audit" "$ROOTFS/usr/lib/locale"
}

keep_only() {
  dir=$1
  shift
  [ -d "$ROOTFS/$dir" ] || return 0
  for f in "$ROOTFS/$dir"/* "$ROOTFS/$dir"/.[!.]*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    name=${f##*/}
    keep=
    for k in "$@"; do [ "$k" = "$name" ] && keep=1; done
    [ -n "$keep" ] || rm -rf "$f"
  done
}

check_elf() {
  if ! command -v objdump >/dev/null; then
    echo "$PKG_NAME: objdump (binutils) not found: shared libraries not checked" >&2
    return 0
  fi
  find "$ROOTFS" -type f \( -perm -u+x -o -name '*.so*' \) | while read -r f; do
    # ELF magic
    [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = "177ELF" ] || continue
    objdump -p "$f" 2>/dev/null | awk '$1 == "NEEDED" { print $2 }' | while read -r lib; do
      found=
      for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib64 lib usr/lib; do
        [ -e "$ROOTFS/$d/$lib" ] && found=1 && break
      done
      [ -n "$found" ] || echo "${f#"$ROOTFS"} needs $lib, which the image lacks"
    done
  done >"$ROOTFS/.elf-check"
  if [ -s "$ROOTFS/.elf-check" ]; then
    cat "$ROOTFS/.elf-check" >&2
    rm -f "$ROOTFS/.elf-check"
    die "missing shared libraries (add their packages to debs, or remove the programs that need them)"
  fi
  rm -f "$ROOTFS/.elf-check"
}
