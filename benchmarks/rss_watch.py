#!/usr/bin/env python3
"""Run a command and report the peak memory of it and its descendants as
JSON in OUT.json: rss_watch.py OUT.json -- CMD ARGS. Standard library only
(it runs in the guest).

Two figures, summed over the process tree:
- RSS (VmRSS of /proc/PID/status): counts a page once per process that maps
  it, so forked children that still share the parent's interpreter pages
  are counted many times over;
- PSS (Pss of /proc/PID/smaps_rollup): each shared page divided among its
  mappers, the memory the tree really holds. smaps_rollup walks the page
  tables, so it is read less often when reading it is slow (the watcher
  spends at most about a fifth of its time there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def _status(pid: str) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root: int) -> tuple[list[int], int]:
    """root and its descendants, and their RSS sum (KiB)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _status(name)
        if fields is None:
            continue
        pid = int(name)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found, sum(rss.get(p, 0) for p in found)


def main() -> int:
    out, cmd = sys.argv[1], sys.argv[3:]
    proc = subprocess.Popen(cmd)
    peak_rss = peak_pss = peak_procs = 0
    next_pss = 0.0
    while proc.poll() is None:
        pids, rss = tree(proc.pid)
        peak_rss, peak_procs = max(peak_rss, rss), max(peak_procs, len(pids))
        now = time.monotonic()
        if now >= next_pss:
            peak_pss = max(peak_pss, sum(_pss_kib(p) for p in pids))
            spent = time.monotonic() - now
            next_pss = time.monotonic() + 4 * spent
        time.sleep(0.2)
    with open(out, "w") as f:
        json.dump(
            {
                "peak_rss_kib": peak_rss,
                "peak_pss_kib": peak_pss,
                "peak_processes": peak_procs,
                "status": proc.returncode,
            },
            f,
        )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
