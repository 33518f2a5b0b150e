#!/usr/bin/env python3
"""Boots the kernel package with the other packages' root filesystems in a throwaway initrd and
checks them for real under qemu (TCG), until moby's init and `moby pkg build` can do it:

  modules (modprobe from kernel.tar's modules.dep), sysctl (values applied), dhcpcd -1 (qemu's user
  network: address, route, resolv.conf), format + mount (a blank virtio disk: auto-detected,
  labelled, mounted by label), sshd (key login from the host through a forwarded port, password
  refused), getty INSECURE=true (a root shell answers on the serial console), poweroff (SIGUSR2 to
  PID 1, which powers off).

Usage: scripts/pkg-boot-test.py WORKDIR   (WORKDIR: staging dirs from scripts/pkg-proto.py named
       kernel, getty, sysctl, dhcpcd, format, mount, sshd, poweroff; made when missing)
PID 1 is a busybox sh script standing in for moby's init (SIGUSR2 -> poweroff).
"""
import os, select, shutil, socket, subprocess, sys, tarfile, tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKGS = {"kernel": "kernel", "getty": "pkg/getty", "sysctl": "pkg/sysctl", "dhcpcd": "pkg/dhcpcd",
        "format": "pkg/format", "mount": "pkg/mount", "sshd": "pkg/sshd", "poweroff": "pkg/poweroff"}

INIT = r"""#!/bin/busybox sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /run /tmp; mount -t devpts devpts /dev/pts; mount -t tmpfs run /run
trap 'echo "INIT: SIGUSR2: poweroff"; sync; poweroff -f' USR2
for m in virtio_pci virtio_net virtio_blk virtio_rng virtio_console button evdev overlay squashfs isofs vfat \
         nft_masq nft_chain_nat xt_MASQUERADE iptable_nat bridge br_netfilter veth tun vsock \
         vmw_vsock_virtio_transport qemu_fw_cfg sr_mod; do
  modprobe $m && echo "MOD-OK $m" || echo "MOD-FAIL $m"
done
sleep 1
in_pkg() { # PKG CMD...: chroot into /pkgs/PKG with /proc /sys /dev /run of the host
  p=/pkgs/$1; shift
  for d in proc sys dev run; do mkdir -p $p/$d; mount --rbind /$d $p/$d 2>/dev/null; done
  chroot $p "$@"
}
in_pkg sysctl /bin/sh /usr/bin/sysctl.sh
echo "SYSCTL max_map_count=$(cat /proc/sys/vm/max_map_count) somaxconn=$(cat /proc/sys/net/core/somaxconn)"
mkdir -p /run/resolvconf /pkgs/dhcpcd/etc; mount --bind /run/resolvconf /pkgs/dhcpcd/etc
in_pkg dhcpcd /sbin/dhcpcd -1; echo "DHCP-RC $?"
echo "DHCP-ADDR $(ip -4 -o addr show eth0 | awk '{print $4}') ROUTE $(ip route | grep default)"
echo "DHCP-RESOLV $(grep nameserver /run/resolvconf/resolv.conf | tr '\n' ' ')"
in_pkg format /usr/bin/format -label DATA; echo "FORMAT-RC $?"
mkdir -p /pkgs/mount/var; mount --bind /var /pkgs/mount/var 2>/dev/null
in_pkg mount /usr/bin/mountie -label DATA /var/lib/data; echo "MOUNT-RC $?"
echo "MOUNTS $(grep /var/lib/data /proc/mounts)"
mkdir -p /run/config/ssh; cp /authorized_keys /run/config/ssh/authorized_keys
in_pkg sshd /bin/sh /usr/bin/sshd.sh > /run/sshd.log 2>&1 &
INSECURE=true in_pkg getty /bin/sh /usr/bin/rungetty.sh &
echo "INIT-READY"
# the getty shell asks for the poweroff package through the shared /run
while :; do [ -e /run/poweroff-now ] && rm /run/poweroff-now && in_pkg poweroff /bin/sh /poweroff.sh 1; sleep 1; done
"""


def build(work, name):
    root = os.path.join(work, name)
    if not os.path.isdir(root):
        subprocess.run([os.path.join(REPO, "scripts/pkg-proto.py"), os.path.join(REPO, PKGS[name]), root], check=True)
    return root


def main():
    work = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else sys.exit(__doc__)
    os.makedirs(work, exist_ok=True)
    roots = {n: build(work, n) for n in PKGS}
    tmp = tempfile.mkdtemp(prefix="pkg-boot-")
    try:
        run(work, roots, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(work, roots, tmp):
    ird = os.path.join(tmp, "initrd")
    shutil.copytree(roots["getty"], ird, symlinks=True)  # busybox + applets for PID 1
    with tarfile.open(os.path.join(roots["kernel"], "kernel.tar")) as t:
        t.extractall(ird)
    for n in ("getty", "sysctl", "dhcpcd", "format", "mount", "sshd", "poweroff"):
        shutil.copytree(roots[n], os.path.join(ird, "pkgs", n), symlinks=True)
    for d in ("proc", "sys", "dev", "var"):
        os.makedirs(os.path.join(ird, d), exist_ok=True)
    with open(os.path.join(ird, "init"), "w") as f:
        f.write(INIT)
    os.chmod(os.path.join(ird, "init"), 0o755)
    key = os.path.join(tmp, "id")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    shutil.copy(key + ".pub", os.path.join(ird, "authorized_keys"))
    initrd = os.path.join(tmp, "initrd.img")
    subprocess.run(f"cd {ird} && find . | sort | ./bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > {initrd}", shell=True, check=True)
    print(f"initrd: {os.path.getsize(initrd)} bytes")
    disk = os.path.join(tmp, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "768", "-smp", "2", "-nographic",
         "-no-reboot", "-kernel", os.path.join(roots["kernel"], "kernel"), "-initrd", initrd,
         "-append", "console=ttyS0 panic=-1 quiet",
         "-drive", f"file={disk},format=raw,if=virtio",
         "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n0",
         "-device", "virtio-rng-pci"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = open(os.path.join(work, "boot.log"), "wb")
    buf = b""

    def expect(marker, timeout):
        nonlocal buf
        end = time.time() + timeout
        while marker.encode() not in buf:
            left = end - time.time()
            if left <= 0 or qemu.poll() is not None:
                raise SystemExit(f"FAIL: no {marker!r} on the console (see {work}/boot.log)")
            r, _, _ = select.select([qemu.stdout], [], [], left)
            if r:
                chunk = os.read(qemu.stdout.fileno(), 65536)
                buf += chunk
                log.write(chunk); log.flush()
        return buf.decode(errors="replace")

    results = []

    def check(name, ok, detail=""):
        results.append((name, ok))
        print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")

    try:
        out = expect("INIT-READY", 600)
        fails = [l for l in out.splitlines() if l.startswith("MOD-FAIL")]
        check("modprobe (24 modules from kernel.tar)", not fails, " ".join(fails))
        check("sysctl applied", "SYSCTL max_map_count=262144 somaxconn=1024" in out)
        check("dhcpcd -1", "DHCP-RC 0" in out and "DHCP-ADDR 10.0.2.15/24" in out and "via 10.0.2.2" in out
              and "nameserver 10.0.2.3" in out)
        check("format -label DATA (auto-detected blank vda)", "FORMAT-RC 0" in out and "/dev/vda1" in out)
        check("mountie -label DATA", "MOUNT-RC 0" in out and "/var/lib/data ext4" in out)
        expect("INSECURE=true: root shell", 60)
        time.sleep(2)
        qemu.stdin.write(b"\necho GETTY-$((6*7)) $(id -un)\n"); qemu.stdin.flush()
        expect("GETTY-42 root", 60)
        check("getty INSECURE=true root shell", True)
        ssh = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
               "-o", "ConnectTimeout=20", "-p", str(port)]
        ok = False
        for _ in range(30):
            r = subprocess.run(ssh + ["-i", key, "root@127.0.0.1", "echo SSH-$((6*7)) $(id -un)"],
                               capture_output=True, text=True)
            if "SSH-42 root" in r.stdout:
                ok = True
                break
            time.sleep(3)
        check("sshd key login", ok, r.stderr.strip()[-200:] if not ok else "")
        r = subprocess.run(ssh + ["-o", "PubkeyAuthentication=no", "-v", "root@127.0.0.1", "true"],
                           capture_output=True, text=True)
        check("sshd offers publickey only", "Authentications that can continue: publickey\n" in r.stderr + "\n"
              and r.returncode != 0)
        qemu.stdin.write(b"touch /run/poweroff-now\n"); qemu.stdin.flush()
        expect("INIT: SIGUSR2: poweroff", 60)
        qemu.wait(60)
        check("poweroff (SIGUSR2 to PID 1, then qemu exits)", qemu.returncode == 0)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    bad = [n for n, ok in results if not ok]
    print(f"{len(results) - len(bad)}/{len(results)} passed")
    sys.exit(1 if bad else 0)


main()
