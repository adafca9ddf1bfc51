"""The running bystanders of one case: fork the helpers once the scenario is
built, arm their contention instance (which follows the walker too), run
them while the timed samples run, then the quiet baseline; what each
recorded (Recorded) and what the walker waited for (WalkerWaits), before
they are set against the walks (entry.py, walker.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rmapbench.bench.bystander.helper import (
    LOCK_OF,
    OPERATION,
    QUIET_MAX_OPS,
    Helper,
    Ops,
    applies,
    current_cpu,
    make_window,
)
from rmapbench.bench.preflight import Plan
from rmapbench.machine import mm
from rmapbench.scenarios.base import Scenario
from rmapbench.scenarios.region import RegionScenario
from rmapbench.tracing import contention
from rmapbench.tracing.tracefs import TraceError


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
class WalkerWaits:
    """The lock waits of the walking process(es) (the trigger's pids: the
    test itself, or kdamond) while the bystanders ran, and in their quiet
    baseline (no walks); None: not recorded."""

    pids: list[int]
    sampling: list[contention.Wait] | None
    quiet: list[contention.Wait] | None
    lost_events: int = 0


@dataclass
class Recording:
    """Everything a crowd recorded: per bystander, and the walker's waits."""

    bystanders: list[Recorded]
    walker: WalkerWaits
    traces: list[str] = field(default_factory=list)  # the contention text, with DUMP_ENV


# A file to write one run's timeline to (conclude.py), with the raw
# contention trace text of the sampling run and of the quiet baseline.
DUMP_ENV = "RMAPBENCH_BYSTANDER_DUMP"


# The owner of the walker's pids in the waits (no bystander kind).
WALKER = "walker"


@dataclass
class Crowd:
    """The running bystanders of one case."""

    helpers: list[Helper]
    recorder: contention.Recorder | None
    unavailable: str | None  # why contention is not recorded
    walker_pids: list[int] = field(default_factory=list)
    affinity: set[int] | None = None  # the test's own, to put back
    recorded: list[Recorded] = field(default_factory=list)

    def finish(self) -> Recording:
        """Stop the during run, then the quiet baseline (all bystanders at once)."""
        for h in self.helpers:
            h.stop()
        during = [h.collect() for h in self.helpers]
        parsed, lost = self.recorder.take() if self.recorder else (None, 0)
        for h, ops in zip(self.helpers, during, strict=True):
            h.start(min(len(ops.starts), QUIET_MAX_OPS))
        quiet = [h.collect() for h in self.helpers]
        parsed_q, lost_q = self.recorder.take() if self.recorder else (None, 0)
        owners = _owners(self.helpers, self.walker_pids)
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
        walker = WalkerWaits(
            self.walker_pids,
            _waits_of(parsed, owners, WALKER),
            _waits_of(parsed_q, owners, WALKER),
            lost + lost_q,
        )
        return Recording(self.recorded, walker, self.recorder.texts if self.recorder else [])

    def kill(self) -> None:
        for h in self.helpers:
            h.quit()
            h.kill()
        if self.affinity is not None:
            os.sched_setaffinity(0, self.affinity)
            self.affinity = None


def _owners(helpers: list[Helper], walker_pids: list[int]) -> dict[int, str]:
    return {**{p: WALKER for p in walker_pids}, **{h.pid: h.kind for h in helpers}}


def _waits_of(
    parsed: contention.Parsed | None, owners: dict[int, str], kind: str
) -> list[contention.Wait] | None:
    """A bystander's waits: its pid's, and (fork) its children's, whose pids
    are no helper's and not the walker's; or (kind WALKER) the walker's."""
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
    window = make_window(scenario)
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
        walkers = [p for p in plan.trigger.pids() if p not in {h.pid for h in helpers}]
        if plan.opts.backend == "syscall":
            unavailable = "no tracing (--backend syscall)"
        else:
            try:
                pids = [h.pid for h in helpers] + walkers
                recorder = contention.Recorder.arm(
                    plan.journal,
                    plan.opts.buffer_kb,
                    pids,
                    "fork" in kinds,
                    keep_text=bool(os.environ.get(DUMP_ENV)),
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
    return Crowd(helpers, recorder, unavailable, walkers, affinity if pinned else None)
