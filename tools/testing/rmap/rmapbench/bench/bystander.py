"""--bystander: what a slow walk costs the tasks that wait behind it.

A walk holds the target's anon_vma lock (KSM, anon) or its file's i_mmap
lock (file, shmem) for reading. A bystander is a separate task repeating,
as fast as it can, one operation that needs that lock for writing, while
the timed samples run; then the same number of operations (at most
QUIET_MAX_OPS, and QUIET_MAX_S seconds) with no trigger firing, the quiet
baseline. Each operation's wall time is recorded on CLOCK_MONOTONIC, the
clock of the timing backend's trace instance, so each operation is known
to overlap a timed walk of the target or not.

The bystander is a helper process forked from the test process once the
scenario is built (not a thread: a thread would time its operations
through the interpreter's lock, which the test's own Python work between
firings holds for milliseconds). Before the fork, three pages of the region
(the window, far from the target) are given one protection in the test
process so they are one VMA; the helper unmaps the rest of the region, so
it adds a VMA or two to the walked tree, not the region's thousands. Its
window VMA is linked to the test's anon_vma tree through the fork (its own
anon_vma's root is the test's, and anon_vma_lock_write() takes the root's
rwsem: the lock rmap_walk_ksm() and rmap_walk_anon() take for reading), or
for a file is in the same file's i_mmap (i_mmap_rwsem). Kinds:

- mprotect: toggle PROT_READ on the window's middle page: a split of the
  window VMA into three, then a merge back; each takes the anon_vma (or
  i_mmap) lock for writing (vma_prepare()).
- munmap: unmap the middle page and map it back (the same file offset for
  a file, with the region's madvise flags so it merges back): the unmap
  splits and unlinks a VMA (unlink_anon_vmas(), or i_mmap removal), the
  map merges it back; both take the lock for writing.
- fork: fork a child (dup_mmap(): anon_vma_fork(), or the i_mmap insert of
  the window's file VMA) and reap it (exit: unlink again).

The statistics are pure functions of the recorded operations (evaluate()),
replayed in tests/unit/test_bystander.py.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rmapbench.bench import measure
from rmapbench.bench.preflight import Plan
from rmapbench.bench.tally import Tally
from rmapbench.ksft import stats
from rmapbench.ksft.ktap import KTAP
from rmapbench.machine import mm, procs
from rmapbench.scenarios.base import Scenario
from rmapbench.scenarios.region import RegionScenario
from rmapbench.tracing import contention
from rmapbench.tracing.tracefs import TraceError

QUIET_MAX_OPS = 2000
QUIET_MAX_S = 15.0
WINDOW = 3  # pages
MIN_PAGES = 8
READY_TIMEOUT = 60.0

JSON = dict[str, Any]

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


# The contention summaries of an entry, as the report names them.
PHASE_LABELS = {"during": "during walks", "sampling": "while sampling", "quiet": "quiet"}

# ---------------------------------------------------------------- the helper


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


def _window(scenario: RegionScenario) -> Window:
    """One VMA of WINDOW pages in the middle of the region, in this process."""
    pages = scenario.opts.pages
    first = (pages // 2) & ~1  # an even page: away from the target (page 1)
    start = scenario.addr + first * mm.PAGE_SIZE
    mm.mprotect(start, WINDOW * mm.PAGE_SIZE, mm.PROT_READ | mm.PROT_WRITE)
    file_backed = scenario.backing in ("file", "shmem")
    advice = [mm.MADV_NOHUGEPAGE]
    if scenario.backing == "ksm":
        advice.append(mm.MADV_MERGEABLE)
    offset = 0
    if file_backed:
        offset = _vma_offset(start) + mm.PAGE_SIZE
    return Window(scenario.addr, scenario.length, start, file_backed, tuple(advice), offset)


def _vma_offset(addr: int) -> int:
    """The file offset at addr of this process's mapping there."""
    with open("/proc/self/maps") as f:
        for line in f:
            span, _perms, off, *_ = line.split()
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= addr < hi:
                return int(off, 16) + (addr - lo)
    raise RuntimeError(f"no mapping at {addr:#x}")


def _vma_span(addr: int) -> tuple[int, int]:
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= addr < hi:
                return lo, hi
    raise RuntimeError(f"no mapping at {addr:#x}")


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

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        for fd in (self.cmd_w, self.res_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.flag.close()


# ---------------------------------------------------------------- the run


@dataclass
class Recorded:
    """What one bystander recorded, before it is set against the walks."""

    kind: str
    pid: int
    during: Ops
    quiet: Ops
    waits_during: list[contention.Wait] | None  # None: no contention tracepoints
    waits_quiet: list[contention.Wait] | None
    lost_events: int = 0


@dataclass
class Crowd:
    """The running bystanders of one case."""

    helpers: list[Helper]
    recorder: contention.Recorder | None
    unavailable: str | None  # why contention is not recorded
    affinity: set[int] | None = None  # the test's own, to put back
    recorded: list[Recorded] = field(default_factory=list)

    def finish(self) -> list[Recorded]:
        """Stop the during run, then the quiet baseline (all bystanders at once)."""
        for h in self.helpers:
            h.stop()
        during = [h.collect() for h in self.helpers]
        parsed, lost = self.recorder.take() if self.recorder else (None, 0)
        for h, ops in zip(self.helpers, during, strict=True):
            h.start(min(len(ops.starts), QUIET_MAX_OPS))
        quiet = [h.collect() for h in self.helpers]
        parsed_q, lost_q = self.recorder.take() if self.recorder else (None, 0)
        owners = _owners(self.helpers)
        for h, d, q in zip(self.helpers, during, quiet, strict=True):
            self.recorded.append(
                Recorded(
                    h.kind,
                    h.pid,
                    d,
                    q,
                    _waits_of(parsed, owners, h.kind),
                    _waits_of(parsed_q, owners, h.kind),
                    lost + lost_q,
                )
            )
        return self.recorded

    def kill(self) -> None:
        for h in self.helpers:
            with contextlib.suppress(OSError):
                os.write(h.cmd_w, b"X" + bytes(8))
            h.kill()
        if self.affinity is not None:
            os.sched_setaffinity(0, self.affinity)
            self.affinity = None


def _owners(helpers: list[Helper]) -> dict[int, str]:
    return {h.pid: h.kind for h in helpers}


def _waits_of(
    parsed: contention.Parsed | None, owners: dict[int, str], kind: str
) -> list[contention.Wait] | None:
    """A bystander's waits: its pid's, and (fork) its children's, whose pids
    are no helper's."""
    if parsed is None:
        return None
    forker = "fork" in owners.values()
    return [
        w
        for w in parsed.waits
        if owners.get(w.pid) == kind or (w.pid not in owners and forker and kind == "fork")
    ]


def start(plan: Plan, scenario: Scenario) -> Crowd | None:
    """Fork the bystanders and start them (None without --bystander)."""
    kinds = plan.opts.bystander
    if not kinds:
        return None
    why = applies(scenario)
    if why is not None:
        plan.ktap.diag(f"option --bystander does not apply: {why}; ignored")
        return None
    assert isinstance(scenario, RegionScenario)
    window = _window(scenario)
    helpers: list[Helper] = []
    # The test stays on its CPU and the helpers keep off it while they run
    # (process-local; put back by Crowd.kill()): left to the scheduler,
    # the test drifted onto a helper's CPU in some runs.
    affinity = os.sched_getaffinity(0)
    here = current_cpu()
    pinned = len(affinity) > 1 and here in affinity
    if pinned:
        os.sched_setaffinity(0, {here})
    try:
        for kind in kinds:
            helpers.append(Helper(kind, window, affinity, here))
        recorder, unavailable = None, None
        if plan.opts.backend == "syscall":
            unavailable = "no tracing (--backend syscall)"
        else:
            try:
                recorder = contention.Recorder.arm(
                    plan.journal, plan.opts.buffer_kb, [h.pid for h in helpers], "fork" in kinds
                )
            except TraceError as e:
                unavailable = contention.UNAVAILABLE if contention.UNAVAILABLE in str(e) else str(e)
        if unavailable:
            plan.ktap.diag(f"bystander lock waits not recorded: {unavailable}")
    except BaseException:
        for h in helpers:
            h.kill()
        if pinned:
            os.sched_setaffinity(0, affinity)
        raise
    page = (window.start - scenario.addr) // mm.PAGE_SIZE + 1
    for h in helpers:
        plan.ktap.diag(
            f"bystander {h.kind}: pid {h.pid}, {OPERATION[h.kind]}, page {page} of the region, "
            f"{LOCK_OF.get(scenario.backing, '?')} lock"
        )
        h.start()
    return Crowd(helpers, recorder, unavailable, affinity if pinned else None)


# ---------------------------------------------------------------- statistics


Interval = tuple[int, int]


def walk_intervals(tally: Tally, page_type: str) -> list[Interval]:
    """The timed target walks of the usable samples, as (start, end) ns."""

    out = [
        (w.end_ns - w.duration_ns, w.end_ns)
        for s in tally.usable
        for w in measure.target_walks(s, page_type)
    ]
    return sorted(out)


def overlapping(ops: Ops, intervals: Sequence[Interval]) -> list[int]:
    """Indices of the operations that began inside one of the intervals.

    By the start, not by any overlap: an operation delayed by something
    else (a preemption, a TCG hiccup) is long, and a long operation is
    likelier to overlap a short walk, so selecting by overlap would pick
    the slow operations and call their slowness a stall. When an
    operation starts does not depend on how long it will take."""
    out = []
    j = 0
    for i, s in enumerate(ops.starts):
        while j < len(intervals) and intervals[j][1] < s:
            j += 1
        if j < len(intervals) and intervals[j][0] <= s:
            out.append(i)
    return out


def evaluate(rec: Recorded, intervals: Sequence[Interval] | None, backing: str) -> JSON:
    """One bystander's entry (docs/json.md, `bystanders`). intervals None:
    walks were not timed on the operations' clock, so every operation of
    the sampling counts as during."""
    lat = rec.during.latencies
    chosen = list(range(len(lat))) if intervals is None else overlapping(rec.during, intervals)
    during = [lat[i] for i in chosen]
    quiet = rec.quiet.latencies
    d, q = stats.summarize(during), stats.summarize(quiet)
    entry: JSON = {
        "kind": rec.kind,
        "pid": rec.pid,
        "lock": LOCK_OF.get(backing, "?"),
        "operation": OPERATION[rec.kind],
        "ops": len(lat),
        "overlapped": len(chosen) if intervals is not None else None,
        "during": {**d.as_dict(), "samples": during},
        "quiet": {**q.as_dict(), "samples": quiet},
        "stall": {"p99_ns": d.p99_ns - q.p99_ns, "max_ns": d.max_ns - q.max_ns}
        if d.count and q.count
        else None,
        "sampling": stats.summarize(lat).as_dict(),
    }
    if rec.waits_during is None or rec.waits_quiet is None:
        entry["contention"] = {"unavailable": contention.UNAVAILABLE}
    else:
        entry["contention"] = _contention(rec, chosen, rec.waits_during, rec.waits_quiet)
    return entry


def _contention(
    rec: Recorded, chosen: list[int], sampling: list[contention.Wait], quiet: list[contention.Wait]
) -> JSON:
    """The waits set against the operations: `during` those inside the
    operations begun during walks (the same operations as the latencies'
    `during`), `sampling` all of the sampling run's, `quiet` the baseline's;
    `outside_ops` the waits of the sampling run inside no operation."""
    owner = contention.by_op(sampling, rec.during.starts, rec.during.ends)
    picked = set(chosen)
    inside = [w for w, i in zip(sampling, owner, strict=True) if i in picked]
    return {
        "during": contention.summary(inside),
        "sampling": contention.summary(sampling),
        "quiet": contention.summary(quiet),
        "outside_ops": sum(1 for i in owner if i is None),
        "lost_events": rec.lost_events,
    }


def entries(recorded: list[Recorded], tally: Tally, page_type: str, backing: str, clock: str,
            traced: bool) -> list[JSON]:  # fmt: skip
    intervals = walk_intervals(tally, page_type) if traced and clock == "mono" else None
    return [evaluate(r, intervals, backing) for r in recorded]


def report(ktap: KTAP, scenario: str, items: list[JSON]) -> None:
    f = stats.format_ns
    for e in items:
        k = e["kind"]
        d, q = e["during"], e["quiet"]
        overlapped = e["overlapped"]
        ktap.diag(
            f"bystander {k}: {e['ops']} ops while sampling, "
            + (f"{overlapped} overlapped a walk" if overlapped is not None else "walks not timed")
        )
        ktap.diag(
            f"bystander {k} during walks: n={d['count']} p50={f(d['p50_ns'])} "
            f"p99={f(d['p99_ns'])} max={f(d['max_ns'])}; quiet: n={q['count']} "
            f"p50={f(q['p50_ns'])} p99={f(q['p99_ns'])} max={f(q['max_ns'])}"
        )
        stall = e["stall"]
        if stall:
            ktap.diag(
                f"bystander {k} stall (during - quiet): p99 {f(stall['p99_ns'])} "
                f"max {f(stall['max_ns'])}"
            )
        c = e["contention"]
        if "unavailable" in c:
            ktap.diag(f"bystander {k} lock waits: {c['unavailable']}")
        else:
            for phase, label in PHASE_LABELS.items():
                s = c[phase]
                ktap.diag(
                    f"bystander {k} rwsem waits {label}: {s['rwsem_waits']}, total "
                    f"{f(s['rwsem_wait_ns'])} (write {f(s['rwsem_write_wait_ns'])}, read "
                    f"{f(s['rwsem_read_wait_ns'])}), longest {f(s['rwsem_max_wait_ns'])}"
                )
                for lock in s["locks"][:3]:
                    ktap.diag(
                        f"  {phase} lock {lock['lock']} {lock['kind']}: {lock['waits']} waits, "
                        f"{f(lock['total_ns'])}, longest {f(lock['max_ns'])}"
                    )
            if c["outside_ops"]:
                ktap.diag(f"bystander {k}: {c['outside_ops']} lock waits between operations")
        for name, value in metric_values(e).items():
            ktap.metric(f"bystander_{k}_{name}", value)


def metric_values(e: JSON) -> dict[str, int]:
    """The numbers of one entry that become metrics (KTAP, LAVA, SQUAD)."""
    out: dict[str, int] = {}
    for phase in ("during", "quiet"):
        s = e[phase]
        if s["count"]:
            for key in ("p50_ns", "p99_ns", "max_ns"):
                out[f"{phase}_{key}"] = s[key]
    if e.get("stall"):
        out["stall_p99_ns"] = e["stall"]["p99_ns"]
        out["stall_max_ns"] = e["stall"]["max_ns"]
    if e.get("overlapped") is not None:
        out["overlapped"] = e["overlapped"]
    c = e.get("contention") or {}
    if "during" in c:
        out["rwsem_wait_ns"] = c["during"]["rwsem_wait_ns"]
        out["rwsem_max_wait_ns"] = c["during"]["rwsem_max_wait_ns"]
    return out


# ---------------------------------------------------------------- the walker's holds


def lock_holds(page_type: str, walks: stats.Summary, visits: JSON | None) -> JSON:
    """How often a walk of the target takes its lock and for how long
    (docs/bystanders.md says what is exact and what an estimate).

    rmap_walk_ksm() takes anon_vma_lock_read() once per rmap_item and pass
    and searches that anon_vma's tree once while holding it, so its
    acquisitions are the searches --count-visits counts (exact), each hold
    a scan of visits/searches nodes (exact counts, averaged). The hold's
    duration is not timed on a stock kernel: a walk's holds scan the same
    tree, so a hold is estimated as the walk's time over its acquisitions
    (the unlock/relock between holds is inside it), per caller, the longest
    caller's being the longest hold. rmap_walk_anon() and rmap_walk_file()
    take their lock once per walk (exact, from the code) and hold it for
    nearly all of it: the walk's time bounds the hold from above."""
    if page_type == "ksm":
        out: JSON = {"lock": "anon_vma (read)", "per": "rmap_item and pass"}
        v = visits or {}
        searches = v.get("searches") or {}
        if not searches.get("count"):
            out.update(
                acquisitions_per_walk=None,
                longest_hold_ns=None,
                note="--count-visits counts the acquisitions",
            )
            return out
        per_hold = (v.get("visits") or {}).get("p50", 0) / max(1, searches["p50"])
        holds = [
            c["walk_p50_ns"] / c["searches"]["p50"]
            for c in v.get("by_caller", [])
            if c.get("walk_p50_ns") and (c.get("searches") or {}).get("p50")
        ]
        if not holds and walks.count and searches["p50"]:
            holds = [walks.p50_ns / searches["p50"]]
        out.update(
            acquisitions_per_walk={"p50": searches["p50"], "max": searches["max"], "exact": True},
            nodes_per_hold=round(per_hold, 1),
            longest_hold_ns=round(max(holds)) if holds else None,
            longest_hold_exact=False,
            how="acquisitions: tree searches counted by --count-visits; longest hold: the "
            "slowest caller's walk p50 / its searches (estimate)",
        )
        return out
    lock = "i_mmap (read)" if page_type == "file" else "anon_vma (read)"
    return {
        "lock": lock,
        "per": "walk",
        "acquisitions_per_walk": {"p50": 1, "max": 1, "exact": True},
        "longest_hold_ns": walks.max_ns if walks.count else None,
        "longest_hold_exact": False,
        "how": "one acquisition per walk (from the code); the hold is at most the walk "
        "(the longest walk bounds it from above)",
    }


def conclude(plan: Plan, recorded: list[Recorded], tally: Tally, sampled: Any, entry: Any) -> None:
    """Set the recorded operations against the timed walks; report them
    and the walker's lock holds; fill in the scenario's JSON entry."""
    scenario = plan.scenario
    items = entries(
        recorded,
        tally,
        scenario.page_type,
        scenario.backing,
        sampled.desc.clock,
        sampled.traced,
    )
    report(plan.ktap, scenario.name, items)
    entry.bystanders = items
    _dump(recorded, tally, scenario.page_type)
    holds = lock_holds(scenario.page_type, tally.walks, entry.visits)
    entry.lock_holds = holds
    f = stats.format_ns
    acq = holds.get("acquisitions_per_walk")
    longest = holds.get("longest_hold_ns")
    plan.ktap.diag(
        f"walk lock holds: {holds['lock']}, "
        + (f"{acq['p50']} per walk (max {acq['max']})" if acq else "acquisitions not counted")
        + (f", longest hold ~{f(longest)}" if longest is not None else "")
        + (f", {holds['nodes_per_hold']} tree nodes per hold" if "nodes_per_hold" in holds else "")
    )
    if acq:
        plan.ktap.metric("lock_acquisitions_per_walk", acq["p50"])
    if longest is not None:
        plan.ktap.metric("lock_longest_hold_ns", longest)


def _dump(recorded: list[Recorded], tally: Tally, page_type: str) -> None:
    """$RMAPBENCH_BYSTANDER_DUMP=FILE: the operations, walks and waits as
    JSON, for looking at one run's timeline (and making test fixtures)."""
    path = os.environ.get("RMAPBENCH_BYSTANDER_DUMP")
    if not path:
        return
    import json

    with open(path, "w") as f:
        json.dump(
            {
                "walks": walk_intervals(tally, page_type),
                "bystanders": [
                    {
                        "kind": r.kind,
                        "during": [r.during.starts, r.during.ends],
                        "quiet": [r.quiet.starts, r.quiet.ends],
                        "waits": [vars(w) for w in r.waits_during or []],
                    }
                    for r in recorded
                ],
            },
            f,
        )
