#!/usr/bin/env python3
"""The bpf backend times only the tasks it follows, in the kernel: it
follows this process, a forked child migrates a page of its own back and
forth between nodes 0 and 1 (each migration walks the page twice), then
this process does the same. Prints one JSON line: the records that
reached the ring buffer, by whose they were, and the programs' counters.
Usage: bpf_follow.py CHILD_MIGRATIONS OWN_MIGRATIONS (run from
tools/testing/rmap, as root, on a two-node machine)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.getcwd())

from rmapbench.machine import mm
from rmapbench.machine.knobs import Journal
from rmapbench.tracing import tracefs
from rmapbench.tracing.bpf import programs, records
from rmapbench.tracing.bpf.backend import Bpf


def migrations(n: int) -> int:
    """Move one private anonymous page to the other of nodes 0 and 1, n
    times; how many moves put it there."""
    addr = mm.mmap(mm.PAGE_SIZE, mm.PROT_READ | mm.PROT_WRITE, mm.MAP_PRIVATE | mm.MAP_ANONYMOUS)
    mm.fill(addr, mm.PAGE_SIZE, 0x5A)
    moved = 0
    for _ in range(n):
        there = 1 - mm.page_node(addr)
        moved += mm.move_pages(0, [addr], [there], mm.MPOL_MF_MOVE_ALL) == [there]
    return moved


def main() -> None:
    child_n, own_n = int(sys.argv[1]), int(sys.argv[2])
    root = tracefs.find_tracefs()
    assert root is not None
    backend = Bpf({"rmap_walk_anon": "anon"})
    backend.check(tracefs.TraceFS(Path(root), Journal(tag="check")))
    backend.arm(tracefs.TraceFS(Path(root), Journal(tag="bpf")), None)  # type: ignore[arg-type]
    backend.follow(None, [os.getpid()])  # type: ignore[arg-type]
    pid = os.fork()
    if pid == 0:
        os._exit(0 if migrations(child_n) == child_n else 1)
    _, status = os.waitpid(pid, 0)
    own = migrations(own_n)
    assert backend._ring is not None
    raw = [records.decode(b) for b in backend._ring.read()]
    counters = backend._read_counters()
    backend.close()
    print(json.dumps({
        "child_ok": os.waitstatus_to_exitcode(status) == 0,
        "own_moved": own,
        "records_own": sum(r.pid == os.getpid() for r in raw),
        "records_other": sum(r.pid != os.getpid() for r in raw),
        "unmatched": counters[programs.UNMATCHED],
        "dropped": counters[programs.DROPPED],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
