"""The probe's own cost inside the timed window, measured on the running
kernel with the backend's own machinery.

A probed walk's latency is the time between two timestamps: the entry
event's (taken while the entry handler writes its event) and the exit
event's. What the handlers do after the first and before the second -
fetching arguments, committing the event, running the hist trigger that
stores the start time, the return trampoline - is inside the interval
though it is no part of the walk. Under TCG that is tens of microseconds,
as much as a whole anonymous walk.

The calibration times an interval that is as empty as the kernel allows
with exactly the same machinery: the backend's probes (the same kind, the
same argument fetches, the same in-kernel pairing, in a trace instance of
its own) on a function that does almost nothing, __do_sys_getppid(),
entered by calling getppid() `firings` times. Its median is the cost per
walk (`cost_ns`); half its interquartile range is the uncertainty. The
interval still holds getppid's own body (a few loads: tens of ns on
hardware, under a microsecond under TCG), so the correction errs towards
too large by at most that; `body_bound_ns` bounds it from above by the
wall time of a whole unprobed getppid() call, system call entry and exit
included.

That empty interval is timed in a tight loop, where everything the
handlers touch was touched a microsecond before. A walk's probes run right
after the trigger's own kernel path (a migration: hundreds of
microseconds of other code), and under TCG the same handlers cost several
times more there: QEMU's software TLB and its table of translated code
are direct-mapped caches that other code evicts the handlers from, and
every miss is a page-table walk or a hash lookup done in C. So the same
interval is also timed there: AfterFirings arms the machinery on
__do_sys_getppid (for the start/end tracepoint form: on the getppid
system call events) for the timed samples and calls getppid() once right
after each firing (`after_firing_*`). It is reported, not subtracted: on
the ground-truth kernel (docs/ground-truth.md) it read 9-17 us against
2-3 us in the loop, more than a probed remove_migration_ptes walk's
excess over the in-kernel duration (6 us) and far less than a
try_to_migrate walk's (50 us), so it is no bound either way. The loop's
figure stays the correction: a lower bound of the probe's cost, which
keeps the corrected walks upper bounds.

The v4 tracepoint measures duration_ns inside the kernel around the walk
alone: nothing to correct. The v5-v7 start/end form's window holds the
tail of rmap_walk_start and the head of rmap_walk_end (tracepoint, ring
buffer and hist trigger; tracing/tracepoint.py says what exactly), which
no stock kernel has on an empty function; it is calibrated with the
same pairing (key, saved fields, clock) built on the stock static
tracepoints syscalls:sys_enter_getppid/sys_exit_getppid, whose interval
also holds the system call's dispatch and return path (bounded the same
way by an unprobed getppid()). Without syscall tracepoints
(CONFIG_FTRACE_SYSCALLS) or hist triggers it is reported unavailable.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from types import TracebackType
from typing import NamedTuple

from rmapbench.ksft import stats
from rmapbench.machine.knobs import Journal
from rmapbench.tracing import tracefs
from rmapbench.tracing.backend import Backend, Unavailable, discard_outside
from rmapbench.tracing.bpf.backend import Bpf
from rmapbench.tracing.events import Pairing
from rmapbench.tracing.fgraph import FunctionGraph
from rmapbench.tracing.probes import DynamicProbe
from rmapbench.tracing.tracefs import TraceError
from rmapbench.tracing.tracepoint import SYS_ENTER, SYS_EXIT, SYSCALLS, SyscallPair, Tracepoint

FUNCTION = "__do_sys_getppid"
FIRINGS = 200
BATCH = 25  # calls between reads: far below what a 64 KiB buffer holds


@dataclass(frozen=True)
class Calibration:
    backend: str
    method: str
    function: str
    firings: int  # timed empty intervals
    cost_ns: int  # their median: the correction per walk
    p25_ns: int
    p75_ns: int
    uncertainty_ns: int  # half the interquartile range
    body_bound_ns: int | None = None  # an unprobed getppid() call's median wall time
    unavailable: str = ""
    # The same interval timed once right after each timed firing (not
    # subtracted; see the module's docstring): count, median, quartiles,
    # half the IQR; 0 when none was timed.
    after_firing_firings: int = 0
    after_firing_cost_ns: int = 0
    after_firing_p25_ns: int = 0
    after_firing_p75_ns: int = 0
    after_firing_uncertainty_ns: int = 0
    # When and by which program it was measured, and whether this program
    # reused it from the boot's cache instead (tracing/calcache.py).
    calibrated_at: str = ""
    calibrated_by: str = ""
    reused: bool = False

    def as_dict(self) -> dict[str, object]:
        if self.unavailable:
            return {"backend": self.backend, "unavailable": self.unavailable}
        return asdict(self) | {"unavailable": None}


def unavailable(backend: str, why: str) -> Calibration:
    return Calibration(backend, "", "", 0, 0, 0, 0, 0, None, why)


def none_needed(backend: str, method: str) -> Calibration:
    return Calibration(backend, method, "", 0, 0, 0, 0, 0)


def summarise(backend: str, method: str, function: str, durations: list[int],
              body_bound_ns: int | None) -> Calibration:  # fmt: skip
    """The arithmetic: median, quartiles (type 7), half the IQR."""
    if not durations:
        return unavailable(backend, f"no interval of {function} was timed")
    p25, p75 = stats.percentile(durations, 25), stats.percentile(durations, 75)
    return Calibration(
        backend,
        method,
        function,
        len(durations),
        round(statistics.median(durations)),
        round(p25),
        round(p75),
        round((p75 - p25) / 2),
        body_bound_ns,
    )


def with_after_firing(empty: Calibration, after: list[int]) -> Calibration:
    """The loop's calibration with the intervals timed right after the
    firings beside it (nothing beside a calibration that failed)."""
    if empty.unavailable or not after:
        return empty
    cold = summarise(empty.backend, empty.method, empty.function, after, None)
    return replace(
        empty,
        after_firing_firings=cold.firings,
        after_firing_cost_ns=cold.cost_ns,
        after_firing_p25_ns=cold.p25_ns,
        after_firing_p75_ns=cold.p75_ns,
        after_firing_uncertainty_ns=cold.uncertainty_ns,
    )


def unprobed_call_ns(call: Callable[[], object] = os.getppid, n: int = FIRINGS) -> int:
    """Median wall time of one unprobed call: an upper bound on its body."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
    return round(statistics.median(times))


def run(make: Callable[[], Backend], method: str, buffer_kb: int = 256,
        firings: int = FIRINGS, function: str = FUNCTION) -> Calibration:  # fmt: skip
    """Arm `make()` (a backend aimed at `function`) in an instance of its
    own, call getppid() `firings` times, and time the intervals."""
    backend = make()
    try:
        with Journal(tag="calibrate") as journal:
            tfs, inst = tracefs.instance_for(backend, journal, buffer_kb, tag="calibrate")
            backend.check(tfs)
            backend.arm(tfs, inst)
            follow = getattr(backend, "follow", None)
            if follow is not None:
                follow(inst, [os.getpid()])
            durations: list[int] = []
            done = 0
            while done < firings:
                inst.drain()
                discard_outside(backend)
                n = min(BATCH, firings - done)
                for _ in range(n):
                    os.getppid()
                done += n
                text = inst.take()
                pairing: Pairing = backend.walks(text)
                if pairing.lost_with(inst.lost_events()):
                    continue
                durations += [w.duration_ns for w in pairing.walks]
    except (Unavailable, TraceError, OSError) as e:
        return unavailable(backend.name, str(e))
    return summarise(backend.name, method, function, durations, unprobed_call_ns())


# The calibration's "walk function": probed like a walk, page type unused.
TARGETS = {FUNCTION: "calibration"}


class Machinery(NamedTuple):
    """The backend's machinery aimed at the calibration function: how to
    build it, what the calibration times, and where."""

    make: Callable[[], Backend]
    method: str
    function: str = FUNCTION


# What the start/end form's calibration times (Calibration.function).
SYSCALL_PAIR = f"{SYSCALLS}:{SYS_ENTER}/{SYS_EXIT}"


def machinery(backend: Backend) -> Machinery | None:
    """How to build the backend's machinery aimed at the calibration
    function, and its description; None for a backend with no window (or
    none that can be calibrated: for_backend() says why)."""
    if isinstance(backend, Tracepoint):
        if backend.form != "start_end" or not backend.paired_in_kernel:
            return None
        return Machinery(
            SyscallPair,
            "rmap_walk_start/end's in-kernel pairing (hist trigger keyed by the task, "
            "two fields saved and compared, synthetic event, the instance's clock) "
            f"on {SYSCALL_PAIR}, both enabled; the interval also holds the system call's "
            "dispatch and return path",
            SYSCALL_PAIR,
        )
    if isinstance(backend, DynamicProbe):
        kind = backend.name
        on_exit = backend.args_on_exit

        def probe() -> Backend:
            p = DynamicProbe(kind, TARGETS, tag="c")
            p.args_on_exit = on_exit  # the walks' layout, even if it fell back
            return p

        where = "exit" if on_exit else "entry"
        return Machinery(
            probe,
            f"{kind} entry/exit events on {FUNCTION} with the walks' fetches "
            f"(at {where}) and pairing",
        )
    if isinstance(backend, Bpf):
        return Machinery(
            lambda: Bpf(TARGETS),
            f"the same fentry/fexit programs and maps on {FUNCTION} (no argument reads: "
            "they come after the interval)",
        )
    if isinstance(backend, FunctionGraph):
        return Machinery(
            lambda: FunctionGraph(os.getpid(), TARGETS),
            f"function_graph in an instance of its own, filtered to {FUNCTION}",
        )
    return None


def _beside(backend: Backend, function: str) -> None:
    """Tell a graph backend that the calibration's graph instance runs
    beside it (FunctionGraph.beside says why it must know)."""
    if isinstance(backend, FunctionGraph):
        backend.beside = backend.beside | {function}


class AfterFirings:
    """The calibration machinery armed beside the backend while the timed
    samples run: fired() calls getppid() once, right after a firing, and
    collect() reads that interval back. The instance and its probes are
    removed on leaving the `with` block, before the loop's calibration
    arms its own (two sets on one function would time each other)."""

    def __init__(self, backend: Backend, buffer_kb: int = 256) -> None:
        self.durations: list[int] = []
        self.unavailable = ""
        self._journal = Journal(tag="after-firing")
        self._inst: tracefs.Instance | None = None
        self._probe: Backend | None = None
        built = machinery(backend)
        if built is None:
            self.unavailable = "the backend has no window to calibrate"
            return
        make = built.make
        _beside(backend, built.function)
        try:
            probe = make()
            tfs, inst = tracefs.instance_for(probe, self._journal, buffer_kb, tag="after")
            probe.check(tfs)
            probe.arm(tfs, inst)
            follow = getattr(probe, "follow", None)
            if follow is not None:
                follow(inst, [os.getpid()])
            inst.drain()
            discard_outside(probe)
        except (Unavailable, TraceError, OSError) as e:
            self.unavailable = str(e)
            self._journal.restore()
            return
        self._inst, self._probe = inst, probe

    def fired(self) -> None:
        if self._inst is not None:
            os.getppid()

    def collect(self, counted: bool) -> None:
        """Read what fired() recorded; `counted`: a timed sample's (not a
        warm-up's). Only the first interval is the one after the firing."""
        if self._inst is None or self._probe is None:
            return
        text = self._inst.take()
        in_counters = self._inst.lost_events()
        self._inst.lost_mark += in_counters
        pairing = self._probe.walks(text)
        lost = pairing.lost_with(in_counters)
        walks = pairing.walks
        if counted and walks and not lost:
            self.durations.append(walks[0].duration_ns)

    def __enter__(self) -> AfterFirings:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._inst = None
        self._journal.restore()


def for_backend(
    backend: Backend,
    buffer_kb: int = 256,
    firings: int = FIRINGS,
    after: AfterFirings | None = None,
) -> Calibration:
    """The cost inside the timed window of the backend that timed the walks
    (already armed: the calibration's probes go beside its own); with
    `after`, the intervals it timed right after the firings go beside."""
    name = backend.name
    built = machinery(backend)
    if built is not None:
        _beside(backend, built.function)
        empty = run(built.make, built.method, buffer_kb, firings, built.function)
        return with_after_firing(empty, after.durations if after else [])
    if isinstance(backend, Tracepoint):
        if backend.form == "duration":
            return none_needed(name, "duration_ns is measured in the kernel around the walk alone")
        # Paired in user space at the text's microseconds: its window is
        # the commit alone, timed no finer than the figure it would correct.
        return unavailable(
            name, "the start/end walks were paired in user space (no hist triggers): not calibrated"
        )
    return unavailable(name, "the backend times no walks")
