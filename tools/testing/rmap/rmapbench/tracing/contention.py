"""Lock waits of the bystanders, from the stock lock:contention_begin and
lock:contention_end tracepoints (5.19+, no lockdep needed;
include/trace/events/lock.h):

    contention_begin: 000000003d5e8f02 (flags=WRITE)
    contention_end: 000000003d5e8f02 (ret=0)

A task that has to sleep (or spin, for the spinning lock types) for a lock
emits begin, and end once it has it. For an rwsem, begin comes from
rwsem_down_{read,write}_slowpath() after the optimistic spin has failed,
so a recorded wait is the sleeping part of the wait, never more than it.
Flags say the lock type (LCB_F_*: SPIN 1, READ 2, WRITE 4, RT 8, PERCPU
16, MUTEX 32): READ or WRITE alone is an rwsem; with SPIN a rwlock, with
PERCPU a percpu rwsem. The lock address is printed with %p (hashed, but
the same lock always hashes the same in one boot), so locks are told apart,
not named.

The events go to their own private instance (rmapbench-PID-bystander)
following only the bystanders' pids (and, for a forking bystander, its
children: options/event-fork) and the walker's (the trigger's pids), so the
walk-timing instance is untouched.
Parsing is free of tracefs access: recorded traces replay in tests.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from rmapbench.machine.knobs import Journal
from rmapbench.tracing import events
from rmapbench.tracing.tracefs import Instance, TraceError, TraceFS, private_instance

UNAVAILABLE = "no lock contention tracepoints"

LCB_F = {"SPIN": 1, "READ": 2, "WRITE": 4, "RT": 8, "PERCPU": 16, "MUTEX": 32}

# The whole body, and name=value fields a later kernel may add: a line
# cut short loses its ")" and is damage. A %p is 16 hex digits, ret an int.
_MORE = r"(?:\s+\w+=\S+)*\s*"
_BEGIN = re.compile(
    r"\s*(?P<lock>(?:0x)?[0-9a-fA-F]{1,16})\s+\(flags=(?P<flags>[A-Z|]*)\)" + _MORE, re.ASCII
)
_END = re.compile(r"\s*(?P<lock>(?:0x)?[0-9a-fA-F]{1,16})\s+\(ret=(?P<ret>-?\d{1,10})\)" + _MORE,
                  re.ASCII)  # fmt: skip


def lock_kind(flags: str) -> str:
    """rwsem-read, rwsem-write, mutex, spinlock, rwlock-read, ... from the
    printed flags."""
    names = set(filter(None, flags.split("|")))
    rw = "read" if "READ" in names else "write" if "WRITE" in names else ""
    if "PERCPU" in names:
        return f"percpu-rwsem-{rw}" if rw else "percpu"
    if "SPIN" in names:
        return f"rwlock-{rw}" if rw else "spinlock"
    if "MUTEX" in names:
        return "rt-mutex" if "RT" in names else "mutex"
    if rw:
        return f"rwsem-{rw}"
    return "rt-mutex" if "RT" in names else "other"


@dataclass(frozen=True)
class Wait:
    """One contended acquisition: who waited, for which lock, how long."""

    pid: int
    lock: str  # the (hashed) address as printed
    kind: str  # lock_kind()
    begin_ns: int
    end_ns: int
    ret: int

    @property
    def ns(self) -> int:
        return self.end_ns - self.begin_ns


@dataclass
class Parsed:
    waits: list[Wait] = field(default_factory=list)
    unfinished: int = 0  # begin without end (the read came first, or end lost)
    unmatched_ends: int = 0  # end without begin (begin before the clear, or lost)
    # Lost-event markers and what could not be read: an unread begin or
    # end is a wait missing, or one paired wrongly.
    damage: events.Damage = field(default_factory=events.Damage)


def parse(text: str) -> Parsed:
    """Pair begin/end per pid (a task waits for one lock at a time)."""
    out = Parsed()
    open_by_pid: dict[int, tuple[str, str, int]] = {}
    for ev in events.parse(text, out.damage):
        if ev.name == "contention_begin":
            m = _BEGIN.fullmatch(ev.body)
            if not m:
                out.damage.event(ev, "not %p (flags=...)")
                continue
            if ev.pid in open_by_pid:
                out.unfinished += 1
            open_by_pid[ev.pid] = (m["lock"], lock_kind(m["flags"]), ev.ts_ns)
        elif ev.name == "contention_end":
            m = _END.fullmatch(ev.body)
            if not m:
                out.damage.event(ev, "not %p (ret=...)")
                continue
            begun = open_by_pid.pop(ev.pid, None)
            if begun is None or begun[0] != m["lock"]:
                out.unmatched_ends += 1
                continue
            lock, kind, t0 = begun
            out.waits.append(Wait(ev.pid, lock, kind, t0, ev.ts_ns, int(m["ret"])))
    out.unfinished += len(open_by_pid)
    return out


def by_op(waits: list[Wait], starts: Sequence[int], ends: Sequence[int]) -> list[int | None]:
    """For each wait, the index of the operation it lies inside (the
    operations in order, not overlapping, on the trace's clock: the
    instance's `mono` is the helpers' CLOCK_MONOTONIC), or None when it
    lies in none (the helper waited between two operations, or the clocks
    differ)."""
    out: list[int | None] = []
    for w in waits:
        i = bisect.bisect_right(starts, w.begin_ns) - 1
        out.append(i if i >= 0 and w.end_ns <= ends[i] else None)
    return out


def summary(waits: list[Wait]) -> dict[str, object]:
    """Waits per lock and kind, rwsem waits in total (the JSON's
    bystanders[].contention.during/quiet)."""
    per: dict[tuple[str, str], list[int]] = defaultdict(list)
    for w in waits:
        per[(w.lock, w.kind)].append(w.ns)
    rwsem = [w.ns for w in waits if w.kind.startswith("rwsem-")]
    locks = [
        {"lock": lock, "kind": kind, "waits": len(ns), "total_ns": sum(ns), "max_ns": max(ns)}
        for (lock, kind), ns in sorted(per.items(), key=lambda kv: -sum(kv[1]))
    ]
    return {
        "rwsem_waits": len(rwsem),
        "rwsem_wait_ns": sum(rwsem),
        "rwsem_max_wait_ns": max(rwsem, default=0),
        "rwsem_read_wait_ns": sum(w.ns for w in waits if w.kind == "rwsem-read"),
        "rwsem_write_wait_ns": sum(w.ns for w in waits if w.kind == "rwsem-write"),
        "all_wait_ns": sum(w.ns for w in waits),
        "locks": locks,
    }


def available(tfs: TraceFS) -> bool:
    return tfs.has_event("lock", "contention_begin") and tfs.has_event("lock", "contention_end")


class Recorder:
    """The bystanders' own trace instance with the contention events on."""

    def __init__(self, instance: Instance, keep_text: bool = False) -> None:
        self.instance = instance
        self.keep_text = keep_text
        self.texts: list[str] = []  # what each take() read, when keep_text

    @classmethod
    def arm(cls, journal: Journal, buffer_kb: int, pids: list[int], follow_forks: bool,
            keep_text: bool = False) -> Recorder:  # fmt: skip
        """Raises TraceError (its message: UNAVAILABLE or the failed write).
        keep_text: keep the trace text of every take() (for a dump)."""
        tfs, inst = private_instance(journal, buffer_kb, tag="bystander")
        if not available(tfs):
            raise TraceError(UNAVAILABLE)
        inst.follow_pids(pids)
        if follow_forks:
            option = inst.path / "options" / "event-fork"
            if option.exists():
                option.write_text("1\n")  # dies with the instance
        inst.enable("lock", "contention_begin")
        inst.enable("lock", "contention_end")
        inst.clear()
        return cls(inst, keep_text)

    def take(self) -> tuple[Parsed, int]:
        """What was recorded since the last take (or arm), and the lost events."""
        text = self.instance.read()
        if self.keep_text:
            self.texts.append(text)
        parsed = parse(text)
        lost = parsed.damage.lost_with(self.instance.lost_events())
        self.instance.clear()
        return parsed, lost
