#!/bin/sh
# Starts dropbear in the foreground on port 22 (extra arguments go to dropbear, e.g. -p 2222).
#   -s: no password logins, for anyone; keys come from /root/.ssh/authorized_keys, a symlink to
#       /run/config/ssh/authorized_keys (the metadata package writes it).
# Host keys: made once in $SSHD_KEYDIR (default /var/lib/dropbear, else /run/dropbear).
keydir=${SSHD_KEYDIR:-/var/lib/dropbear}
if ! mkdir -p "$keydir" 2>/dev/null || ! [ -w "$keydir" ]; then
  echo "sshd: $keydir is not writable; host keys go to /run/dropbear (new keys at every boot)" >&2
  keydir=/run/dropbear
  mkdir -p "$keydir" || exit 1
fi
chmod 0700 "$keydir"
set -- -F -E -s -P /run/dropbear.pid "$@"
for t in ed25519 ecdsa; do
  key=$keydir/dropbear_${t}_host_key
  if [ ! -s "$key" ]; then
    rm -f "$key"
    dropbearkey -t "$t" -f "$key" >/dev/null || { echo "sshd: cannot make the $t host key $key" >&2; exit 1; }
    echo "sshd: new $t host key: $(dropbearkey -y -f "$key" | sed -n 's/^Fingerprint: //p')"
  fi
  set -- "$@" -r "$key"
done
auth=/run/config/ssh/authorized_keys
[ -s "$auth" ] || echo "sshd: no $auth yet: nobody can log in until it holds a key (user data ssh/authorized_keys)" >&2
exec dropbear "$@"
