#!/usr/bin/env python3
"""Private-network figures under TCG (scripts/bench/network.sh builds what it needs).

Usage: network.py MOBY PREFIX [--nodes N] [--mib M]

1. Nodes: for n = 1..N, boots n VMs of PREFIX at once on one network and prints the seconds from
   spawning them until each has its network address (its DHCP lease, printed by its userdata
   script), and the resident memory (VmRSS) of every qemu and of the network's switch.
2. Throughput: M MiB from one VM to another over the network (busybox dd | nc), timed by the
   receiver from the first byte; then M MiB from one VM to the host through qemu's user-mode NAT,
   timed by the host from the first byte. The same sender both times: busybox nc moves 1 KiB per
   system call, which under TCG bounds both figures.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

UP = "bench: up "


class Vm:
    """A foreground `moby run` whose console lines are collected by a thread."""

    def __init__(self, moby, home, prefix, name, script, network="bench"):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        data = os.path.join(home, f"{name}.sh")
        with open(data, "w") as f:
            f.write(script)
        env = dict(os.environ, MOBY_STATE_HOME=home)
        args = [moby, "run", "--accel", "tcg", "--mem", "512", "--name", name]
        if network:
            args += ["--network", network]
        self.proc = subprocess.Popen(
            args + ["--data-file", data, prefix],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def wait(self, text, timeout=600):
        """The first console line containing text."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    if line is None:
                        sys.exit(f"{self.name} ended before {text!r}:\n" + "\n".join(l for l in self.lines if l))
                    if text in line:
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    sys.exit(f"{self.name}: no {text!r} within {timeout}s")
                self.cond.wait(left)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pid_in(path):
    with open(path) as f:
        return int(f.read().strip())


def nodes(moby, prefix, count):
    print("nodes  boot-to-lease (s, each VM)           qemu RSS MiB (each)      switch RSS MiB")
    for n in range(1, count + 1):
        with tempfile.TemporaryDirectory() as home:
            start = time.monotonic()
            vms = [Vm(moby, home, prefix, f"node-{i}", f"echo {UP}$(ip -4 -o addr show dev eth1 | awk '{{print $4}}')\n")
                   for i in range(n)]
            times = []
            for vm in vms:
                vm.wait(UP)
                times.append(time.monotonic() - start)
            rss = [rss_kib(pid_in(os.path.join(home, vm.name, "qemu.pid"))) / 1024 for vm in vms]
            switch = rss_kib(pid_in(os.path.join(home, "networks", "bench", "switch.pid"))) / 1024
            print(f"{n:5}  {' '.join(f'{t:5.1f}' for t in times):35}  "
                  f"{' '.join(f'{r:6.1f}' for r in rss):23}  {switch:6.1f}")
            for vm in vms:
                vm.stop()


def vm_to_vm(moby, prefix, mib):
    count = mib * 16  # 64 KiB blocks
    rx_script = f"""echo "{UP}x"
# busybox nc half-closes the connection when its stdin ends, and the sender's nc then quits:
# the receiver's stdin never ends.
tail -f /dev/null | nc -l -p 5001 | {{
  dd bs=1 count=1 of=/dev/null 2>/dev/null
  t0=$(cut -d' ' -f1 /proc/uptime)
  n=$(head -c $(({count} * 65536 - 1)) | wc -c)
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "bench: rx $((n + 1)) $t0 $t1"
}}
"""
    tx_script = f"""echo "{UP}x"
until ping -c 1 -W 1 rx >/dev/null 2>&1; do sleep 1; done
sleep 2
dd if=/dev/zero bs=65536 count={count} 2>/dev/null | nc rx 5001
echo "bench: tx done"
"""
    with tempfile.TemporaryDirectory() as home:
        rx = Vm(moby, home, prefix, "rx", rx_script)
        tx = Vm(moby, home, prefix, "tx", tx_script)
        line = rx.wait("bench: rx ")
        _, _, n, t0, t1 = line.split()[-5:]
        secs = float(t1) - float(t0)
        print(f"VM -> VM over the network: {int(n) / 1048576:.0f} MiB in {secs:.2f} s = "
              f"{int(n) / 1048576 / secs:.1f} MiB/s (guest clock, 10 ms resolution)")
        tx.stop()
        rx.stop()


def vm_to_host(moby, prefix, mib):
    total = mib * 1048576
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    result = {}

    def receive():
        conn, _ = server.accept()
        got = 0
        t0 = None
        while got < total:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            if t0 is None:
                t0 = time.monotonic()
            got += len(chunk)
        result["bytes"] = got
        result["secs"] = time.monotonic() - t0
        conn.close()

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    script = f"""echo "{UP}x"
dd if=/dev/zero bs=65536 count={mib * 16} 2>/dev/null | nc 10.0.2.2 {port}
echo "bench: tx done"
"""
    with tempfile.TemporaryDirectory() as home:
        vm = Vm(moby, home, prefix, "nat", script, network=None)
        thread.join(600)
        vm.stop()
    n, secs = result["bytes"], result["secs"]
    print(f"VM -> host through user-mode NAT: {n / 1048576:.0f} MiB in {secs:.2f} s = {n / 1048576 / secs:.1f} MiB/s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("moby")
    parser.add_argument("prefix")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    nodes(args.moby, args.prefix, args.nodes)
    vm_to_vm(args.moby, args.prefix, args.mib)
    vm_to_host(args.moby, args.prefix, args.mib)


if __name__ == "__main__":
    main()
