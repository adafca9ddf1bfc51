#!/usr/bin/env python3
"""Run a command and report the peak RSS of it and its descendants (sum
over the process tree, sampled every 0.2 s) as JSON on the last line of
stderr's file: rss_watch.py OUT.json -- CMD ARGS. Standard library only (it
runs in the guest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def tree_rss_kib(root: int) -> tuple[int, int]:
    """RSS sum (KiB) and process count of root and its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        pid = int(name)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, count, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        count += 1
        todo += children.get(pid, [])
    return total, count


def main() -> int:
    out, cmd = sys.argv[1], sys.argv[3:]
    proc = subprocess.Popen(cmd)
    peak = peak_procs = 0
    while proc.poll() is None:
        kib, n = tree_rss_kib(proc.pid)
        peak, peak_procs = max(peak, kib), max(peak_procs, n)
        time.sleep(0.2)
    with open(out, "w") as f:
        json.dump({"peak_rss_kib": peak, "peak_processes": peak_procs, "status": proc.returncode},
                  f)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
