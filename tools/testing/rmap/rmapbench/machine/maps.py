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
    """Mappings of pid that lie inside [start, end)."""
    return sum(1 for m in mappings(pid) if m.start >= start and m.end <= end)
