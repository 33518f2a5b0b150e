#!/bin/busybox sh
# PID 1 of the test guest (tests/support/guest.rs). Every line meant for tests starts with
# "moby-guest: " and goes to the serial console:
#   moby-guest: init                      first thing
#   moby-guest: userdata <content>        CD labelled cidata: its user-data, \ written as \\ and
#                                         newlines as \n
#   moby-guest: no userdata               no such CD
#   moby-guest: disk vdX <bytes>          one per virtio disk
#   moby-guest: net eth0 10.0.2.15        eth0 configured for qemu user networking
#   moby-guest: net eth1 A.B.C.D/N        a second NIC (a private network) configured by DHCP
#                                         (its DNS server and domain into /etc/resolv.conf)
#   moby-guest: listening 7777            TCP server answering a first line L with "pong L"
#   moby-guest: ready                     all of the above done; then a user-data that starts
#                                         with "#!" runs (its output on the console)
#   moby-guest: acpi power-button         ACPI power button pressed; the guest then powers off
#   moby-guest: ignoring the power button  ... unless the kernel cmdline has moby_guest.deaf
#   moby-guest: poweroff                  kernel cmdline has moby_guest.poweroff; the guest powers off
#   moby-guest: error <what>              something above failed (the guest carries on)
/bin/busybox mkdir -p /proc /sys /dev /mnt /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin

say() {
  echo "moby-guest: $*"
}
# The firmware leaves terminal escapes without a newline on the console: start on a fresh line.
echo
say init
cmdline=" $(cat /proc/cmdline) "
# With moby_guest.trace on the kernel command line: timestamps (seconds since boot) of the steps.
trace() {
  case "$cmdline" in *" moby_guest.trace "*) echo "moby-guest-trace: $(cut -d' ' -f1 /proc/uptime) $*" ;; esac
}
trace init

mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
hostname moby-guest

# Block-device and input drivers first, then virtio_pci: its devices then bind synchronously, and the
# virtio-scsi host scan (async, but waited for at the end of module init) finds sr_mod already there.
for m in evdev button isofs sr_mod virtio_blk virtio_net virtio_scsi virtio_pci; do
  modprobe "$m" || say "error modprobe $m"
  trace "modprobe $m"
done

# Waits up to $2 tenths of a second for path $1.
wait_for() {
  n=0
  while [ ! -e "$1" ] && [ "$n" -lt "$2" ]; do
    usleep 100000
    n=$((n + 1))
  done
  [ -e "$1" ]
}

# The power button: "Power Button" input devices (ACPI fixed-feature and/or PNP0C0C), read through evdev.
# An event is 24 bytes (struct input_event on 64-bit): 16 of time, u16 type, u16 code, s32 value.
# EV_KEY = 1, KEY_POWER = 116, value 1 = press.
watch_power_button() {
  exec 3<"$1"
  while :; do
    set -- $(dd bs=24 count=1 <&3 2>/dev/null | od -An -v -tu2)
    [ "$#" -eq 12 ] || continue
    if [ "$9" = 1 ] && [ "${10}" = 116 ] && [ "${11}" = 1 ]; then
      say "acpi power-button"
      case "$cmdline" in *" moby_guest.deaf "*) say "ignoring the power button"; continue ;; esac
      sync
      poweroff -f
    fi
  done
}
buttons=0
for input in /sys/class/input/input*; do
  [ "$(cat "$input/name" 2>/dev/null)" = "Power Button" ] || continue
  for event in "$input"/event*; do
    [ -e "$event" ] || continue
    wait_for "/dev/input/${event##*/}" 20 || continue
    watch_power_button "/dev/input/${event##*/}" &
    buttons=$((buttons + 1))
  done
done
[ "$buttons" -gt 0 ] || say "error no Power Button input device"
trace "power button watchers $buttons"

# Userdata: an iso9660 CD labelled cidata (vmm::userdata), found by its label as any guest would
# find it. virtio_scsi's module init waited for its bus scan, so every CD is known by now;
# devtmpfs may still be creating the node.
for block in /sys/block/sr*; do
  [ -e "$block" ] && wait_for "/dev/${block##*/}" 20
done
userdata=$(findfs LABEL=cidata 2>/dev/null || true)
trace "userdata device $userdata"
if [ -n "$userdata" ]; then
  mkdir -p /mnt/cidata
  if mount -t iso9660 -o ro "$userdata" /mnt/cidata; then
    if [ -f /mnt/cidata/user-data ]; then
      case $(head -c 2 /mnt/cidata/user-data) in
      '#!') cp /mnt/cidata/user-data /tmp/user-script && chmod 0755 /tmp/user-script ;;
      esac
      nl=$(printf '\001')
      say "userdata $(tr '\n' '\001' </mnt/cidata/user-data | sed -e 's/\\/\\\\/g' -e "s/$nl/\\\\n/g")"
    else
      say "error $userdata has no user-data"
    fi
    umount /mnt/cidata
  else
    say "error cannot mount $userdata"
  fi
else
  say "no userdata"
fi

for disk in /sys/block/vd*; do
  [ -e "$disk" ] || continue
  say "disk ${disk##*/} $(($(cat "$disk/size") * 512))"
done

trace disks
ip link set lo up
if ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2; then
  say "net eth0 10.0.2.15"
else
  say "error cannot configure eth0"
fi

# A private network's NIC: configured by the network's own DHCP server.
if [ -e /sys/class/net/eth1 ]; then
  mkdir -p /etc
  cat >/tmp/udhcpc-event <<'EOF'
#!/bin/sh
case $1 in
bound | renew)
  ip addr replace "$ip/${mask:-24}" dev "$interface"
  {
    [ -n "$domain" ] && echo "search $domain"
    for s in $dns; do echo "nameserver $s"; done
  } >/etc/resolv.conf
  ;;
esac
EOF
  chmod 0755 /tmp/udhcpc-event
  ip link set eth1 up
  if udhcpc -i eth1 -f -q -n -t 10 -T 2 -s /tmp/udhcpc-event >/dev/null 2>&1; then
    say "net eth1 $(ip -4 -o addr show dev eth1 | awk '{print $4}')"
  else
    say "error no DHCP lease on eth1"
  fi
fi

# Each connection: read one line L, answer "pong L".
cat >/tmp/pong <<'EOF'
#!/bin/sh
read -r line
cr=$(printf '\r')
echo "pong ${line%"$cr"}"
EOF
chmod 0755 /tmp/pong
trace net
nc -ll -p 7777 -e /tmp/pong &
n=0
until netstat -ltn | grep -q ':7777 ' || [ "$n" -ge 50 ]; do
  usleep 100000
  n=$((n + 1))
done
if [ "$n" -lt 50 ]; then
  say "listening 7777"
else
  say "error nothing listens on 7777"
fi

say ready
[ -x /tmp/user-script ] && /tmp/user-script &

case "$cmdline" in
*" moby_guest.poweroff "*)
  say poweroff
  sync
  poweroff -f
  ;;
esac

# PID 1 must not exit (that panics the kernel); the watchers and nc do the rest.
while :; do
  sleep 3600
done
