"""A process's memory mappings (/proc/PID/maps), read with python-ptrace."""

from __future__ import annotations

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

    Only the address range of each line is parsed (standard library):
    python-ptrace's full parse of 20,000 mappings took seconds under TCG,
    and a count needs none of the rest."""
    n = 0
    with open(f"/proc/{pid}/maps", "rb") as f:
        for line in f:
            dash = line.index(b"-")
            lo = int(line[:dash], 16)
            if lo >= start and int(line[dash + 1 : line.index(b" ", dash)], 16) <= end:
                n += 1
    return n
