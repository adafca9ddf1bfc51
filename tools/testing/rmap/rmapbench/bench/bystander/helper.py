"""The bystander helper process and its protocol with the test.

The helper is forked from the test process once the scenario is built (a
process, not a thread: a thread would time its operations through the
interpreter's lock, which the test's own Python work between firings holds
for milliseconds). Before the fork, three pages of the region (the window,
far from the target) are given one protection in the test process so they
are one VMA; the helper unmaps the rest of the region, so it adds a VMA or
two to the walked tree, not the region's thousands. Its window VMA is
linked to the test's anon_vma tree through the fork (its own anon_vma's
root is the test's, and anon_vma_lock_write() takes the root's rwsem: the
lock rmap_walk_ksm() and rmap_walk_anon() take for reading), or for a file
is in the same file's i_mmap (i_mmap_rwsem). Kinds:

- mprotect: toggle PROT_READ on the window's middle page: a split of the
  window VMA into three, then a merge back; each takes the anon_vma (or
  i_mmap) lock for writing (vma_prepare()).
- munmap: unmap the middle page and map it back (the same file offset for
  a file, with the region's madvise flags so it merges back): the unmap
  splits and unlinks a VMA (unlink_anon_vmas(), or i_mmap removal), the
  map merges it back; both take the lock for writing.
- fork: fork a child (dup_mmap(): anon_vma_fork(), or the i_mmap insert of
  the window's file VMA) and reap it (exit: unlink again).

Protocol: the test writes 9-byte commands on one pipe (R: run until the
shared stop flag is set; Q: run LIMIT operations, at most QUIET_MAX_S
seconds; X: exit), each with a little-endian int64 LIMIT; the helper
answers "ready" once, then per run the length of its record and the
record, (start, end) CLOCK_MONOTONIC ns pairs as int64s, or an "error"
line.
"""

from __future__ import annotations

import array
import contextlib
import mmap
import os
import select
import signal
import struct
import time
from dataclasses import dataclass, field

from rmapbench.machine import maps, mm, procs, thp
from rmapbench.scenarios.base import Scenario
from rmapbench.scenarios.region import RegionScenario

QUIET_MAX_OPS = 2000
QUIET_MAX_S = 15.0
WINDOW = 3  # pages
MIN_PAGES = 8
READY_TIMEOUT = 60.0

LOCK_OF = {
    "ksm": "anon_vma",
    "anon": "anon_vma",
    "file": "i_mmap",
    "shmem": "i_mmap",
}

OPERATION = {
    "mprotect": "mprotect() of the window's middle page to PROT_READ and back (split, merge)",
    "munmap": "munmap() of the window's middle page and mmap() of it back (unlink, merge)",
    "fork": "fork() of a process mapping the window, and waitpid() (anon_vma_fork/i_mmap, exit)",
}


@dataclass
class Ops:
    """Operations as (start, end) CLOCK_MONOTONIC ns, in order."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    @property
    def latencies(self) -> list[int]:
        return [e - s for s, e in zip(self.starts, self.ends, strict=True)]

    @classmethod
    def from_bytes(cls, data: bytes) -> Ops:
        a = array.array("q")
        a.frombytes(data)
        return cls(list(a[0::2]), list(a[1::2]))


@dataclass(frozen=True)
class Window:
    """The helper's pages of the region: the first of WINDOW pages, and what
    a remap needs (flags, madvise advice, the file offset of the middle page)."""

    region: int
    length: int
    start: int
    file_backed: bool
    advice: tuple[int, ...]
    middle_offset: int  # file offset of the middle page (file-backed only)

    @property
    def middle(self) -> int:
        return self.start + mm.PAGE_SIZE


def applies(scenario: Scenario) -> str | None:
    """Why --bystander cannot run on this scenario, or None."""
    if not isinstance(scenario, RegionScenario):
        return f"the {scenario.name} case has no split region"
    if scenario.opts.pages < MIN_PAGES:
        return f"needs --pages >= {MIN_PAGES}"
    return None


def make_window(scenario: RegionScenario) -> Window:
    """One VMA of WINDOW pages in the middle of the region, in this process."""
    pages = scenario.opts.pages
    first = (pages // 2) & ~1  # an even page: away from the target (page 1)
    start = scenario.addr + first * mm.PAGE_SIZE
    mm.mprotect(start, WINDOW * mm.PAGE_SIZE, mm.PROT_READ | mm.PROT_WRITE)
    file_backed = scenario.backing in ("file", "shmem")
    advice = [mm.MADV_NOHUGEPAGE] if thp.available() else []  # as the region's (region.py)
    if scenario.backing == "ksm":
        advice.append(mm.MADV_MERGEABLE)
    offset = 0
    if file_backed:
        offset = _vma_offset(start) + mm.PAGE_SIZE
    return Window(scenario.addr, scenario.length, start, file_backed, tuple(advice), offset)


def _vma(addr: int) -> tuple[int, int, int]:
    """This process's mapping at addr: start, end and file offset at start."""
    span = maps.span_at(maps.read_lines("self"), addr)
    if span is None:
        raise RuntimeError(f"no mapping at {addr:#x}")
    return span


def _vma_offset(addr: int) -> int:
    """The file offset at addr of this process's mapping there."""
    lo, _, offset = _vma(addr)
    return offset + (addr - lo)


def _vma_span(addr: int) -> tuple[int, int]:
    lo, hi, _ = _vma(addr)
    return lo, hi


class _Op:
    """One kind's operation, in the helper."""

    def __init__(self, kind: str, w: Window) -> None:
        self.kind = kind
        self.w = w
        self.protected = False
        self.fd = -1
        if kind == "munmap" and w.file_backed:
            lo, hi = _vma_span(w.start)
            self.fd = os.open(f"/proc/self/map_files/{lo:x}-{hi:x}", os.O_RDWR)

    def __call__(self) -> None:
        w = self.w
        if self.kind == "mprotect":
            prot = mm.PROT_READ if not self.protected else mm.PROT_READ | mm.PROT_WRITE
            mm.mprotect(w.middle, mm.PAGE_SIZE, prot)
            self.protected = not self.protected
        elif self.kind == "munmap":
            mm.munmap(w.middle, mm.PAGE_SIZE)
            if w.file_backed:
                flags = mm.MAP_SHARED | mm.MAP_FIXED
                rw = mm.PROT_READ | mm.PROT_WRITE
                mm.mmap(mm.PAGE_SIZE, rw, flags, self.fd, w.middle_offset, addr=w.middle)
            else:
                flags = mm.MAP_PRIVATE | mm.MAP_ANONYMOUS | mm.MAP_FIXED
                mm.mmap(mm.PAGE_SIZE, mm.PROT_READ | mm.PROT_WRITE, flags, addr=w.middle)
            for advice in w.advice:
                mm.madvise(w.middle, mm.PAGE_SIZE, advice)
        else:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)


def _read_exact(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return bytes(out)


def current_cpu() -> int:
    """The CPU this process last ran on (/proc/self/stat field 39)."""
    with open("/proc/self/stat") as f:
        return int(f.read().rpartition(")")[2].split()[36])


def away_from(cpus: set[int], cpu: int) -> set[int]:
    """Where a bystander runs: not on the test's CPU when there is another.
    The scheduler keeps two tasks on one small NUMA node (it allows that
    imbalance), and a bystander time-sharing the walker's CPU runs while
    the walker is preempted between its lock holds, not while it holds one."""
    return (cpus - {cpu}) or cpus


class Helper:
    """One bystander process and the pipes to it."""

    def __init__(self, kind: str, window: Window, cpus: set[int], test_cpu: int) -> None:
        self.kind = kind
        self.window = window
        self.flag = mmap.mmap(-1, mmap.PAGESIZE)  # MAP_SHARED: byte 0 = stop
        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()
        self.cpus = away_from(cpus, test_cpu)
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover (the helper)
            os.close(self.cmd_w)
            os.close(self.res_r)
            self._serve(cmd_r, res_w)
        os.close(cmd_r)
        os.close(res_w)
        ready, _, _ = select.select([self.res_r], [], [], READY_TIMEOUT)
        line = os.read(self.res_r, 64) if ready else b""
        if not line.startswith(b"ready"):
            self.kill()
            raise RuntimeError(f"bystander {kind} failed to start: {line.decode(errors='replace')}")

    def _serve(self, cmd_r: int, res_w: int) -> None:  # pragma: no cover (the helper)
        status = 0
        try:
            procs._prctl(procs.PR_SET_PDEATHSIG, signal.SIGKILL)
            for sig in procs.TERMINATION:
                signal.signal(sig, signal.SIG_DFL)
            os.sched_setaffinity(0, self.cpus)
            w = self.window
            # Keep only the window of the region.
            if w.start > w.region:
                mm.munmap(w.region, w.start - w.region)
            end = w.start + WINDOW * mm.PAGE_SIZE
            if w.region + w.length > end:
                mm.munmap(end, w.region + w.length - end)
            op = _Op(self.kind, w)
            os.write(res_w, b"ready\n")
            while True:
                cmd = _read_exact(cmd_r, 9)
                if cmd[:1] == b"X":
                    break
                (limit,) = struct.unpack("<q", cmd[1:])
                deadline = time.monotonic() + QUIET_MAX_S if cmd[:1] == b"Q" else float("inf")
                rec = array.array("q")
                clock = time.monotonic_ns
                flag = self.flag
                while not flag[0] and len(rec) < 2 * limit:
                    t0 = clock()
                    op()
                    rec.append(t0)
                    rec.append(clock())
                    if t0 > 0 and cmd[:1] == b"Q" and time.monotonic() > deadline:
                        break
                data = rec.tobytes()
                os.write(res_w, struct.pack("<q", len(data)))
                view = memoryview(data)
                while view:
                    view = view[os.write(res_w, view) :]
        except EOFError:
            pass
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.write(res_w, f"error {type(e).__name__}: {e}\n".encode())
            status = 1
        os._exit(status)

    def start(self, limit: int | None = None) -> None:
        """Run until stop() (limit None) or for limit operations."""
        self.flag[0] = 0
        cmd = b"R" if limit is None else b"Q"
        os.write(self.cmd_w, cmd + struct.pack("<q", limit if limit is not None else 2**62))

    def stop(self) -> None:
        self.flag[0] = 1

    def collect(self) -> Ops:
        """The operations of the run started last (after it ended)."""
        head = _read_exact(self.res_r, 8)
        if head.startswith(b"error"):
            raise RuntimeError(f"bystander {self.kind}: {head + os.read(self.res_r, 4096)!r}")
        (n,) = struct.unpack("<q", head)
        return Ops.from_bytes(_read_exact(self.res_r, n))

    def quit(self) -> None:
        """Ask the helper to exit (kill() still reaps it)."""
        with contextlib.suppress(OSError):
            os.write(self.cmd_w, b"X" + bytes(8))

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        for fd in (self.cmd_w, self.res_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.flag.close()
