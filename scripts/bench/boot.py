#!/usr/bin/env python3
"""Time a VM boot: seconds from spawning a command to its first console line and to marker lines.

Usage: boot.py [--runs N] [--marker TEXT]... [--timeout S] [--wait] -- COMMAND [ARG]...

COMMAND's stdout is read as the console (stderr is passed through). A line counts as a marker when
it contains its TEXT (default 'moby-guest: ready'; --marker may be given several times, each is
timed at its first occurrence); the firmware's terminal escapes can share a line with it. After the
last marker the command is killed, or with --wait left to exit on its own (e.g. a guest booted with
moby_guest.poweroff) and its exit time is reported too. Each run prints one line; the end prints min
and median of every column.

Example (the test guest, see tests/support/guest.rs):
  scripts/bench/boot.py --runs 5 --marker 'moby-guest: init' -- \
      qemu-system-x86_64 -machine q35,accel=tcg -m 1024 -kernel g-kernel -initrd g-initrd.img \
      -append 'console=ttyS0 quiet' -nographic
"""

import argparse
import os
import selectors
import signal
import statistics
import subprocess
import sys
import time


def one_run(command, markers, timeout, wait):
    """Returns (first line, *markers, exit) times in seconds; exit is None unless waited for."""
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    first = ended = None
    found = {}
    buffer = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = start + timeout - time.monotonic()
            if left <= 0:
                missing = [m for m in markers if m not in found]
                raise RuntimeError(f"timed out after {timeout}s waiting for {missing[0]!r}" if missing
                                   else f"timed out after {timeout}s waiting for the command to exit")
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            now = time.monotonic() - start
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if first is None and line.strip():
                    first = now
                for marker in markers:
                    if marker not in found and marker.encode() in line:
                        found[marker] = now
            if len(found) == len(markers) and not wait:
                break
        missing = [m for m in markers if m not in found]
        if missing:
            raise RuntimeError(f"the command's output ended (exit {proc.wait()}) before {missing[0]!r}")
        if wait:
            proc.wait(timeout=max(1, start + timeout - time.monotonic()))
            ended = time.monotonic() - start
            if proc.returncode != 0:
                raise RuntimeError(f"the command exited with {proc.returncode}")
        return (first, *(found[m] for m in markers), ended)
    finally:
        sel.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="number of boots (default 5)")
    parser.add_argument("--marker", action="append", help="console text to time (default: moby-guest: ready)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run before giving up (default 300)")
    parser.add_argument("--wait", action="store_true", help="after the marker, wait for the command to exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG]...")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")

    markers = args.marker or ["moby-guest: ready"]
    columns = ["first line", *markers] + (["exit"] if args.wait else [])
    results = []
    for run in range(1, args.runs + 1):
        try:
            times = one_run(command, markers, args.timeout, args.wait)
        except (OSError, RuntimeError) as err:
            sys.exit(f"boot.py: run {run}: {err}")
        results.append(times[: len(columns)])
        print(f"run {run}: " + "  ".join(f"{name} {t:.2f}s" for name, t in zip(columns, times)), flush=True)
    for index, name in enumerate(columns):
        values = [r[index] for r in results]
        print(f"{name}: min {min(values):.2f}s  median {statistics.median(values):.2f}s  (n={len(values)})")


if __name__ == "__main__":
    main()
