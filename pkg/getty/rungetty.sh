#!/bin/sh
# Starts (and restarts) a busybox getty on every console= of the kernel command line.
#   INSECURE=true  no login prompt: a root shell straight away (`login -f root`). Debugging only.
#   otherwise      a login prompt. root's password is locked ('*' in /etc/shadow): nobody can log
#                  in until the host provides /etc/getty.shadow (a shadow file with root's hash),
#                  which is copied to /etc/shadow here (LinuxKit's getty does the same).
# The host's /etc is expected at /hostroot/etc (see the image's config label).

shadow=/hostroot/etc/getty.shadow
if [ -f "$shadow" ]; then
  cp "$shadow" /etc/shadow
  echo >>/etc/shadow # a last line without newline would not parse
  chmod 0640 /etc/shadow
fi

started=" "

respawn() {
  while :; do
    "$@"
    sleep 1
  done
}

start_getty() { # console=NAME[,SPEED...]
  tty=${1%%,*}
  speed=${1#*,}
  [ "$speed" = "$1" ] && speed=115200
  speed=${speed%%[!0-9]*} # 115200n8 -> 115200
  case $started in *" $tty "*)
    echo "getty: $tty is named twice on the command line; one getty only"
    return
    ;;
  esac
  started="$started$tty "
  if [ ! -c "/dev/$tty" ]; then
    echo "getty: console=$tty but /dev/$tty is not a character device; no getty on it" | tee /dev/console
    return
  fi
  line='' term=vt100
  case $tty in
  ttyS* | ttyAMA* | ttyUSB* | hvc*) line=-L ;;
  tty[0-9]*)
    speed=38400
    term=linux
    ;;
  esac
  if ! grep -qx "$tty" /etc/securetty; then
    echo "getty: $tty is not in /etc/securetty: root cannot log in on it" | tee "/dev/$tty"
  fi
  if [ "$INSECURE" = true ]; then
    echo "getty: INSECURE=true: root shell without password on $tty" | tee "/dev/$tty"
    respawn getty $line -n -l /usr/bin/autologin "$speed" "$tty" "$term" &
  else
    respawn getty $line "$speed" "$tty" "$term" &
  fi
}

found=
for opt in $(cat /proc/cmdline); do
  case $opt in
  console=*)
    start_getty "${opt#console=}"
    found=1
    ;;
  esac
done
[ -n "$found" ] || start_getty console

wait
