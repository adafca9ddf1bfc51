"""The interface every trigger implements: make the kernel walk the target
page's reverse mappings once per firing, and say what it costs.

A trigger is chosen before anything is set up (refusals are usage errors),
checked against the machine (missing features are SKIPs), prepared once the
scenario has built its target page, then fired once per sample.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rmapbench.machine import mm
from rmapbench.machine.knobs import Journal

# What a firing does to the target's mapping, so the sampling loop and the
# scenario's check know what to expect afterwards.
MOVES = "moves"  # the page is migrated: every mapping points at a new frame
LEAVES = "leaves"  # the page stays where it is, mapped as before
UNMAPS = "unmaps"  # every mapping is removed; the next access faults it back in


NUMA_BALANCING = "/proc/sys/kernel/numa_balancing"


class TriggerUnavailable(Exception):
    """The machine cannot run this trigger (short constant reason)."""


class TriggerRefused(Exception):
    """This trigger can never work with these options or this case."""


@dataclass(frozen=True)
class Firing:
    """One firing: its own timed cost and what it did.

    `syscall_ns` is the trigger's timed cost (the JSON `syscall` statistic):
    the system call for migrate, msync, pageout, soft-offline and split, the
    sampling window for damon. `from_node`/`to_node`/`status` are the NUMA
    nodes and move_pages() status of a migration (-1 when not migrating).
    `done` says whether the firing did its job: the page moved (migrate,
    soft-offline), was left clean (msync), unmapped (pageout), split
    (split), or kdamond slept twice in time (damon)."""

    syscall_ns: int
    from_node: int = -1
    to_node: int = -1
    status: int = 0
    done: bool = False

    @classmethod
    def refused(cls, syscall_ns: int, errno_: int | None) -> Firing:
        """The trigger's call failed (madvise, msync, the debugfs write):
        status -errno, not done."""
        return cls(syscall_ns, status=-(errno_ or 0), done=False)

    @classmethod
    def migration(cls, syscall_ns: int, from_node: int, to_node: int, status: int) -> Firing:
        """A move_pages() firing: done when the status says the page is on
        to_node (else it is -errno or the node it stayed on)."""
        return cls(syscall_ns, from_node, to_node, status, done=status == to_node)


class Trigger:
    """Base class; subclasses set the class attributes and override fire()."""

    name: ClassVar[str]
    effect: ClassVar[str] = LEAVES
    # The timed cost's name in diagnostics ("move_pages", "msync", ...).
    cost_name: ClassVar[str] = "syscall"
    # False when walks may start before the timed cost does (damon's
    # sampling window): then no walk has to fit inside it.
    walks_inside_cost: ClassVar[bool] = True
    harmless: ClassVar[bool] = True
    # The walks of the target a firing that did its job makes, by the
    # function that starts them (tracing/events.py caller_of()), in the
    # order they finish; a firing without them failed, whatever its call
    # returned.
    expected_callers: ClassVar[tuple[str, ...]] = ()
    # True when one firing may try again inside the kernel (migrate_pages()
    # retries a folio up to 10 times): the walks of the tries before the
    # last are retry walks, kept apart from the latency statistics.
    retries: ClassVar[bool] = False

    def check(self) -> None:
        """Raise TriggerUnavailable when the machine lacks what it needs.
        Reads only; nothing is changed."""

    def quiesce(self, journal: Journal) -> None:
        """Silence what would add walks or defeat the trigger while
        measuring (journaled), before the probe is armed.

        Automatic NUMA balancing is turned off for every trigger: it
        migrates the test's own pages behind its back, adding walks in its
        pid (and, on 6.1, its PROT_NONE hinting entries make move_pages()
        report the target as not present)."""
        if os.path.exists(NUMA_BALANCING):
            journal.set(NUMA_BALANCING, 0)

    def prepare(self, addr: int, journal: Journal) -> None:
        """Set up what firing needs once the target page exists (journaled).
        May raise TriggerUnavailable."""

    def ready(self, addr: int) -> None:
        """Untimed, before each firing and before the trace buffer is
        cleared: put the target back in the state a firing needs (fault it
        in after a pageout, re-collapse a split THP, re-point DAMON)."""

    def align(self, clear: Callable[[], None]) -> None:
        """Untimed, right before firing: clear the trace buffer at the
        moment a firing should begin (damon: while kdamond sleeps, so that
        no walk is in flight across the clear)."""
        clear()

    def warnings(self) -> list[str]:
        """Diagnostics to print before firing (e.g. harm outside a guest)."""
        return []

    def pids(self) -> list[int]:
        """The processes whose walks the probe must follow: the walks run in
        the context of whoever fires, normally this process."""
        return [os.getpid()]

    def describe(self) -> dict[str, object]:
        """The JSON `trigger` object."""
        return {"name": self.name, "effect": self.effect}

    def summary(self) -> str:
        """One line for the diagnostics."""
        return self.name

    def fire(self, addr: int) -> Firing:
        raise NotImplementedError


def fault_in(addr: int) -> None:
    """Touch the page with a read so that it is mapped again (after a
    pageout); reading never changes its content."""
    mm.read_bytes(addr, 1)


def in_rmapbench_guest() -> bool:
    """True inside a guest booted by rmapbench.guest.vm (its kernel command line
    carries rmapbench.guest=1)."""
    try:
        with open("/proc/cmdline") as f:
            return "rmapbench.guest=1" in f.read().split()
    except OSError:
        return False
