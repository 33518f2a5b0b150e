#!/usr/bin/env python3
"""The network switch alone, without VMs: frames per second and MB/s it forwards between two NICs.

Usage: switch.py MOBY [--frames N] [--size BYTES]

Makes a network directory (network.json), starts MOBY as its switch (MOBY_NETWORK_SWITCH), and
connects two clients to its socket as qemu's `-netdev socket` does (each frame after its length,
4 bytes big-endian). B announces its MAC; A sends N frames of BYTES to B while B counts them.
Prints the rate B received at, the frames dropped, and the switch's peak RSS. Python on both ends: the figure is what
the switch forwards at least.
"""

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

MAC_A = bytes.fromhex("0600000000aa")
MAC_B = bytes.fromhex("0600000000bb")


def frame(dst, src, size):
    return dst + src + b"\x08\x00" + bytes(size - 14)


def send(sock, data):
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("moby")
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1514)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        net = os.path.join(tmp, "bench")
        os.makedirs(net)
        with open(os.path.join(net, "network.json"), "w") as f:
            json.dump({"name": "bench", "subnet": "10.99.0.0/24"}, f)
        log = open(os.path.join(tmp, "switch.log"), "w")
        switch = subprocess.Popen([args.moby], env=dict(os.environ, MOBY_NETWORK_SWITCH=net), stdout=log, stderr=log)
        path = os.path.join(net, "switch.sock")
        deadline = time.monotonic() + 10
        while True:
            try:
                a = socket.socket(socket.AF_UNIX)
                a.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("the switch did not listen")
                time.sleep(0.05)
        b = socket.socket(socket.AF_UNIX)
        b.connect(path)
        send(b, frame(b"\xff" * 6, MAC_B, 60))  # B's MAC is learned from its first frame
        # A sees B's broadcast: then the switch has learned B.
        length = struct.unpack(">I", recv_exact(a, 4))[0]
        recv_exact(a, length)

        got = {"frames": 0}

        def count():
            # Frames the switch dropped (a full queue, as a congested switch drops) never come:
            # counting ends when none has come for a second.
            start = last = None
            b.settimeout(1)
            try:
                while got["frames"] < args.frames:
                    length = struct.unpack(">I", recv_exact(b, 4))[0]
                    recv_exact(b, length)
                    last = time.monotonic()
                    start = start or last
                    got["frames"] += 1
            except (socket.timeout, EOFError):
                pass
            got["secs"] = (last or 0) - (start or 0)

        reader = threading.Thread(target=count)
        reader.start()
        data = struct.pack(">I", args.size) + frame(MAC_B, MAC_A, args.size)
        batch = data * 64
        sent = 0
        while sent < args.frames:
            n = min(64, args.frames - sent)
            a.sendall(batch if n == 64 else data * n)
            sent += n
        reader.join()
        with open(f"/proc/{switch.pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        a.close()
        b.close()
        switch.wait(timeout=30)
        secs, n = got["secs"], got["frames"]
        print(f"switch: {n} of {args.frames} frames of {args.size} bytes in {secs:.2f} s = "
              f"{n / secs:,.0f} frames/s, {n * args.size / secs / 1e6:.0f} MB/s "
              f"({args.frames - n} dropped); peak RSS {rss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
