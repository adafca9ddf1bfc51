"""--backend all: the same scenario timed by every available backend in
turn, and a measurement of what each backend adds.

Rounds run one after another on the same built scenario, each with its own
trace instance and journal, so no two backends are armed at once. The
syscall-only round is the baseline: the change in the trigger's timed cost
(move_pages() for migrate) with a backend armed, divided by the walks per
firing, is that backend's overhead per walk. (For damon the timed cost is a
sampling window that a backend lengthens only through kdamond's walks.)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rmapbench.bench import measure, tally
from rmapbench.bench.warmup import Warmup
from rmapbench.ksft import stats
from rmapbench.ksft.options import Options
from rmapbench.machine import shared_probes as shared
from rmapbench.machine.knobs import Journal
from rmapbench.tracing import calcache, calibrate, select, tracefs
from rmapbench.tracing.backend import Description, Unavailable
from rmapbench.triggers import Trigger

# Backends disagree by their own cost: the entry event, and with in-kernel
# pairing the hist trigger's work, fall inside the timed interval. That is
# a few hundred nanoseconds on hardware but tens of microseconds under TCG,
# as much as a whole anonymous walk there. So two backends agree when their
# p50s are within this factor of each other, or when the difference is no
# larger than the overhead per walk measured for either of them.
AGREEMENT_FACTOR = 1.5


@dataclass
class Round:
    name: str
    desc: Description | None = None
    unavailable: str = ""
    samples: list[measure.Sample] = field(default_factory=list)
    walks: stats.Summary = stats.EMPTY
    syscall: stats.Summary = stats.EMPTY
    calibration: calibrate.Calibration | None = None  # the backend's cost in its window
    corrected: stats.Summary = stats.EMPTY  # walks less the calibrated cost
    by_caller: dict[str, stats.Summary] = field(default_factory=dict)
    corrected_by_caller: dict[str, stats.Summary] = field(default_factory=dict)

    @property
    def cost_ns(self) -> int | None:
        cal = self.calibration
        return cal.cost_ns if cal and not cal.unavailable and cal.firings else None

    @property
    def walks_per_sample(self) -> float:
        measured = [s for s in self.samples if not s.warmup]
        return self.walks.count / len(measured) if measured else 0.0


def available(root: Path) -> list[str]:
    """Timing backends this kernel offers, most precise first (checks only
    read tracefs, so the journal stays empty)."""
    names = []
    for name in select.ALL_ORDER:
        try:
            select.make(name).check(tracefs.TraceFS(root, Journal(tag="check")))
            names.append(name)
        except Unavailable:
            continue
    return names


def run_round(
    name: str,
    trigger: Trigger,
    addr: int,
    verify: Callable[[], list[str]] | None,
    opts: Options,
    page_type: str,
    progress: Callable[[measure.Sample], None] | None = None,
    expect: tally.Expect | None = None,
) -> Round:
    rnd = Round(name)
    kept = shared.from_env()
    if kept is not None:  # the suite's kept probe events would be in every round's window
        try:
            kept.evict_all()
        except shared.EvictError as e:
            rnd.unavailable = str(e)
            return rnd
    with Journal(tag=name) as journal:
        probe = None
        if name == "syscall":
            rnd.desc = select.SYSCALL_ONLY
        else:
            backend = select.make(
                name, opts.tracepoint_form, select.walk_types(page_type, opts.probe_all_walks)
            )
            tfs, inst = tracefs.instance_for(backend, journal, opts.buffer_kb, tag=name)
            try:
                backend.check(tfs)
                rnd.desc = backend.arm(tfs, inst)
            except Unavailable as e:
                rnd.unavailable = str(e)
                return rnd
            probe = measure.Probe(backend, inst)
            probe.follow(trigger.pids())
        after = calcache.after_firings(probe.backend, opts.buffer_kb) if probe else None
        with after or contextlib.nullcontext():
            rnd.samples = measure.run(
                trigger, addr, verify, probe, Warmup.of(opts.warmup), opts.samples, progress,
                after_firing=after,
            )  # fmt: skip
        if probe is not None:
            rnd.calibration = calcache.for_backend(probe.backend, opts.buffer_kb, after=after)
    # The same judgement as the case's: only firings that did their job count.
    t = tally.tally(rnd.samples, page_type, True, expect, probe is not None, rnd.cost_ns)
    measured = [s for s in rnd.samples if not s.warmup and not s.lost_events]
    rnd.walks = t.walks
    rnd.corrected = stats.summarize(t.corrected_ns)
    rnd.by_caller = t.caller_summaries()
    rnd.corrected_by_caller = {
        c: stats.summarize(tally.corrected(d, rnd.cost_ns)) for c, d in t.by_caller.items()
    }
    rnd.syscall = stats.summarize([s.firing.syscall_ns for s in measured])
    return rnd


def overhead_per_walk_ns(rnd: Round, baseline: Round) -> int | None:
    """What arming this backend added to each walk, from syscall medians."""
    if not rnd.walks_per_sample or not baseline.syscall.count:
        return None
    return round((rnd.syscall.p50_ns - baseline.syscall.p50_ns) / rnd.walks_per_sample)


def _comparable(
    reference: Round, rnd: Round
) -> list[tuple[str, stats.Summary, stats.Summary]]:
    """What to compare: each caller both rounds timed, when they split the
    walks by caller, else the pooled walks ("" for the caller). A
    migration's two walks differ several-fold (try_to_migrate against
    remove_migration_ptes), so the pooled median of a few samples of each
    falls anywhere between the two and says little about a backend."""
    theirs = rnd.by_caller
    common = [c for c, mine in reference.by_caller.items()
              if mine.count and theirs.get(c, stats.EMPTY).count]  # fmt: skip
    if common:
        return [(c, reference.by_caller[c], rnd.by_caller[c]) for c in common]
    return [("", reference.walks, rnd.walks)]


def disagreements(reference: Round, others: list[Round], baseline: Round) -> list[str]:
    """Timing backends out of line with the reference; an available one
    that timed no walk disagrees too (nothing to agree with: every sample
    lost events, or the walks were not seen), so it cannot pass unnoticed."""
    problems = [
        f"{rnd.name} timed no walk in {len([s for s in rnd.samples if not s.warmup])} samples"
        for rnd in [reference, *others]
        if not rnd.unavailable and not rnd.walks.count
    ]
    ref_cost = abs(overhead_per_walk_ns(reference, baseline) or 0)
    for rnd in others:
        if not rnd.walks.count or not reference.walks.count:
            continue
        allowed = max(ref_cost, abs(overhead_per_walk_ns(rnd, baseline) or 0))
        for caller, ref, got in _comparable(reference, rnd):
            ratio = got.p50_ns / ref.p50_ns if ref.p50_ns else math.inf
            within_cost = abs(got.p50_ns - ref.p50_ns) <= allowed
            if not (1 / AGREEMENT_FACTOR <= ratio <= AGREEMENT_FACTOR or within_cost):
                what = f"{caller} " if caller else ""
                problems.append(
                    f"{rnd.name} {what}p50 {stats.format_ns(got.p50_ns)} is {ratio:.2f}x "
                    f"{reference.name}'s {stats.format_ns(ref.p50_ns)}"
                )
    return problems
