"""A process's memory mappings (/proc/PID/maps), read with python-ptrace."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ptrace.debugger.memory_mapping import MemoryMapping


class _Pid:
    """python-ptrace reads /proc/PID/maps of anything with a .pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


def mappings(pid: int) -> list[MemoryMapping]:
    """Every mapping of pid, in address order."""
    # Imported here rather than at the top: the scenarios, the case registry
    # and option parsing load without python-ptrace, so a program started
    # by a python3 that lacks it still checks its options and SKIPs
    # cleanly (rmapbench.ksft.deps).
    from ptrace.debugger.memory_mapping import readProcessMappings

    result: list[MemoryMapping] = readProcessMappings(_Pid(pid))
    return result


def count_in(pid: int, start: int, end: int) -> int:
    """Mappings of pid that lie inside [start, end).

    /proc/PID/maps lists mappings in address order without overlaps, so
    those inside the range are one run of lines, found by bisection: a
    few lines parsed instead of every one (20,000 mappings took most of
    a second under TCG). Standard library only."""
    with open(f"/proc/{pid}/maps", "rb") as f:
        lines = f.read().splitlines()

    def bounds(i: int) -> tuple[int, int]:
        line = lines[i]
        dash = line.index(b"-")
        return int(line[:dash], 16), int(line[dash + 1 : line.index(b" ", dash)], 16)

    first = bisect.bisect_left(range(len(lines)), start, key=lambda i: bounds(i)[0])
    last = bisect.bisect_right(range(len(lines)), end, key=lambda i: bounds(i)[1])
    return max(0, last - first)
