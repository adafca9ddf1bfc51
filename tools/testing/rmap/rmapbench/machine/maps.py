"""A process's memory mappings: /proc/PID/maps and smaps, read as the
kernel writes them (mappings(): with python-ptrace)."""

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


def lines_of(data: bytes) -> list[bytes]:
    """The lines of a maps or smaps file. The kernel escapes only a newline
    in a mapped file's name (as \\012, seq_file_path()); every other byte is
    written as it is: a carriage return, bytes that are not UTF-8. So the
    text stays bytes and splits on newlines alone (str.splitlines() and
    text mode also split on a CR)."""
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def read_lines(pid: int | str, name: str = "maps") -> list[bytes]:
    """/proc/PID/maps (or smaps) of pid ("self" for this process)."""
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return lines_of(f.read())


def _bounds(line: bytes) -> tuple[int, int]:
    dash = line.index(b"-")
    return int(line[:dash], 16), int(line[dash + 1 : line.index(b" ", dash)], 16)


def count_in_lines(lines: list[bytes], start: int, end: int) -> int:
    """Mappings inside [start, end) of these maps lines.

    /proc/PID/maps lists mappings in address order without overlaps, so
    those inside the range are one run of lines, found by bisection: a
    few lines parsed instead of every one (20,000 mappings took most of
    a second under TCG). Standard library only."""
    first = bisect.bisect_left(range(len(lines)), start, key=lambda i: _bounds(lines[i])[0])
    last = bisect.bisect_right(range(len(lines)), end, key=lambda i: _bounds(lines[i])[1])
    return max(0, last - first)


def count_in(pid: int, start: int, end: int) -> int:
    """Mappings of pid that lie inside [start, end)."""
    return count_in_lines(read_lines(pid), start, end)


def span_at(lines: list[bytes], addr: int) -> tuple[int, int, int] | None:
    """(start, end, file offset at start) of the mapping holding addr."""
    for line in lines:
        lo, hi = _bounds(line)
        if lo <= addr < hi:
            return lo, hi, int(line.split(b" ", 3)[2], 16)
    return None


def smaps_kb(lines: list[bytes], start: int, field: bytes) -> int:
    """A field in kB (b"AnonHugePages:") of the VMA that starts at `start`,
    from smaps lines; 0 when there is no such VMA or field."""
    inside = False
    for line in lines:
        words = line.split(None, 2)
        if not words:
            continue
        if words[0].endswith(b":"):
            if inside and words[0] == field:
                return int(words[1])
        else:  # a VMA's header: "START-END PERMS ..."
            inside = _bounds(line)[0] == start
    return 0
