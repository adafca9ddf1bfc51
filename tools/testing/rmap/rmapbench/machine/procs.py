"""Cheap forked children for the multi-process scenarios.

A child is a fork of the test's own Python process: it either builds its own
mapping (fork before the parent builds anything, so it inherits nothing) or
inherits the parent's (fork after the build: anonymous and KSM pages stay
mapped copy-on-write in both, through the anon_vma chain; shared file
mappings are not copied at fork and are faulted in by the child's read). It
reports "ready" with its addresses over a pipe, then blocks until it is
killed. A fork tree is made of children that fork children of their own.

Nothing is left behind: every child asks for SIGKILL when its parent dies
(PR_SET_PDEATHSIG), the test process becomes a child subreaper so orphaned
grandchildren are handed to it, and kill() sends SIGKILL to every process of
the family and reaps them all, with termination signals blocked meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rmapbench.machine import mm

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
READY_TIMEOUT = 600.0  # seconds for every child to build and report
TERMINATION = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_libc = mm.load_libc()
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]

# What a child runs once forked: returns the addresses it reports.
Work = Callable[[], list[int]]


class ChildError(RuntimeError):
    """A child failed to build its mapping or died before reporting."""


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def die_with_parent(signum: int, parent: int, status: int) -> None:
    """In a forked child: get signum when the parent dies (PR_SET_PDEATHSIG);
    a parent that died before that is seen here, and the child exits with
    status at once."""
    _prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:
        os._exit(status)


def tree_size(width: int, depth: int) -> int:
    """Processes a fork tree adds below its root: W + W^2 + ... + W^D."""
    return sum(width**d for d in range(1, depth + 1))


@dataclass
class Report:
    pid: int
    addrs: list[int]


@dataclass
class Family:
    """The test process's forked children (and theirs)."""

    reports: list[Report] = field(default_factory=list)
    _direct: list[int] = field(default_factory=list)
    _report_r: int = -1
    _release_r: int = -1
    _release_w: int = -1
    _report_w: int = -1
    _subreaper: bool = False

    @property
    def pids(self) -> list[int]:
        """Children that reported ready, in report order."""
        return [r.pid for r in self.reports]

    def spawn(self, count: int, work: Work) -> list[Report]:
        """count children of this process, each running work()."""
        return self.spawn_tree(count, 1, work)

    def spawn_tree(self, width: int, depth: int, work: Work) -> list[Report]:
        """A fork tree: width children, each with width children of its own,
        depth levels; every process of it runs work() after forking its own
        children. Waits until all of them report ready."""
        expected = tree_size(width, depth)
        if expected == 0:
            return []
        self._open()
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self._subreaper = True
        report_w = self._report_w
        for _ in range(width):
            pid = os.fork()
            if pid == 0:
                self._child(report_w, width, depth - 1, work, os.getppid())
            self._direct.append(pid)
        os.close(report_w)  # EOF on the report pipe once every child is gone
        self._report_w = -1
        self._collect(expected)
        return self.reports

    def _open(self) -> None:
        if self._report_r >= 0:
            raise RuntimeError("a Family spawns once")
        self._report_r, self._report_w = os.pipe()
        # Children block reading this pipe; nobody ever writes to it.
        self._release_r, self._release_w = os.pipe()

    def _child(self, report_w: int, width: int, depth: int, work: Work, parent: int) -> None:
        """In a forked child; never returns."""
        status = 0
        try:
            # The parent's handlers raise Interrupted to run its clean-up; a
            # child has nothing to clean up and must simply die.
            for s in TERMINATION:
                signal.signal(s, signal.SIG_DFL)
            die_with_parent(signal.SIGKILL, parent, 1)
            for fd in (self._report_r, self._release_w):
                if fd >= 0:
                    os.close(fd)
            self._report_r = self._release_w = -1
            for _ in range(width if depth > 0 else 0):
                me = os.getpid()
                if os.fork() == 0:
                    self._child(report_w, width, depth - 1, work, me)
            addrs = work()
            line = f"{os.getpid()} ok {' '.join(f'{a:#x}' for a in addrs)}\n"
            os.write(report_w, line.encode()[:512])
            while os.read(self._release_r, 1):  # blocks until killed
                pass
        except BaseException as e:
            status = 1
            msg = f"{os.getpid()} error {type(e).__name__}: {e}".replace("\n", " ")
            with contextlib.suppress(OSError):
                os.write(report_w, (msg[:500] + "\n").encode())
        finally:
            os._exit(status)

    def _collect(self, expected: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        buf = b""
        while len(self.reports) < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(f"{len(self.reports)} of {expected} children ready in time")
            ready, _, _ = select.select([self._report_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._report_r, 4096)
            if not chunk:
                raise ChildError(f"children died: {len(self.reports)} of {expected} reported ready")
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                self._parse(raw.decode(errors="replace"))

    def _parse(self, line: str) -> None:
        pid_text, _, rest = line.partition(" ")
        kind, _, detail = rest.partition(" ")
        if kind != "ok":
            raise ChildError(f"child {pid_text}: {detail}")
        self.reports.append(Report(int(pid_text), [int(a, 16) for a in detail.split()]))

    def kill(self) -> None:
        """SIGKILL every process of the family and reap them all. Safe to call
        more than once and after a partial spawn (an interrupted fork loop
        may not have recorded its last child: closing the release pipe makes
        any such child exit by itself, and the reaping takes every child)."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATION)
        try:
            if self._release_w >= 0:
                os.close(self._release_w)
                self._release_w = -1
            for pid in [*self._direct, *self.pids]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if self._subreaper:
                # Grandchildren die by their PDEATHSIG and, orphaned, are
                # handed to us (subreaper): reap until no child is left.
                while True:
                    try:
                        os.waitpid(-1, 0)
                    except ChildProcessError:
                        break
                _prctl(PR_SET_CHILD_SUBREAPER, 0)
                self._subreaper = False
            self._direct.clear()
            for fd in (self._report_r, self._report_w, self._release_r):
                if fd >= 0:
                    os.close(fd)
            self._report_r = self._report_w = self._release_r = -1
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
