"""What the timed samples add up to: which walks were the target's, their
statistics and the counts the verdict is drawn from. Pure: no I/O."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rmapbench.bench import measure
from rmapbench.bench.measure import Sample
from rmapbench.ksft import stats

# (page type, function, folio label) of a walk: walks_by_kind's key.
Kind = tuple[str, str, str]


@dataclass(frozen=True)
class Tally:
    samples: list[Sample]  # every sample, warm-up included
    measured: list[Sample]  # warm-up excluded
    usable: list[Sample]  # measured, and no trace event lost
    lost: list[Sample]  # measured, but trace events lost
    unverified: list[Sample]  # a mapping of the target was left behind
    not_done: list[Sample]  # measured firings that did not do their job
    base: int | None  # vmemmap base the target was identified by; None: by page type
    kinds: Counter[Kind]  # every walk of the measured samples
    locked_walks: int  # of them, rmap_walk_locked
    walk_ns: list[int]  # the target's walks in the usable samples
    walks: stats.Summary  # of walk_ns
    syscall: stats.Summary  # the trigger's timed cost per measured firing
    short: int  # usable samples without a walk of the target
    over: int  # usable samples whose target walks outlast their timed cost
    lost_events: int
    unpaired: int  # entry/exit events without a partner

    @property
    def syscall_ns(self) -> list[int]:
        return [s.firing.syscall_ns for s in self.measured]


def tally(samples: list[Sample], page_type: str, walks_inside_cost: bool = True) -> Tally:
    """Mark the target's walks (measure.mark) and count. `walks_inside_cost`:
    whether a firing's walks must fit inside its timed cost (not damon's,
    whose window may open in the middle of a walk)."""
    base = measure.mark(samples)
    measured = [s for s in samples if not s.warmup]
    usable = [s for s in measured if not s.lost_events]
    kinds: Counter[Kind] = Counter(
        (w.page_type, w.function, folio_label(w.target)) for s in measured for w in s.walks
    )
    walk_ns = measure.target_durations(samples, page_type)
    target = [measure.target_walks(s, page_type) for s in usable]
    return Tally(
        samples=samples,
        measured=measured,
        usable=usable,
        lost=[s for s in measured if s.lost_events],
        unverified=[s for s in samples if not s.verified],
        not_done=[s for s in measured if not s.firing.done],
        base=base,
        kinds=kinds,
        locked_walks=sum(n for (_, f, _), n in kinds.items() if f == "rmap_walk_locked"),
        walk_ns=walk_ns,
        walks=stats.summarize(walk_ns),
        syscall=stats.summarize([s.firing.syscall_ns for s in measured]),
        short=sum(1 for tw in target if not tw),
        over=sum(
            1
            for s, tw in zip(usable, target, strict=True)
            if walks_inside_cost and sum(w.duration_ns for w in tw) > ceiling(s)
        ),
        lost_events=sum(s.lost_events for s in measured),
        unpaired=sum(s.unmatched_exits + s.unfinished for s in measured),
    )


def ceiling(s: Sample) -> float:
    """The most the walks of a firing may add up to: its timed cost, plus
    1% and 100 us because the two ends are read by different clocks
    (the trace's timestamps against the test's clock_gettime), which were
    seen to disagree by 0.25% on a loaded TCG host."""
    return s.firing.syscall_ns * 1.01 + 100_000


def folio_label(target: bool | None) -> str:
    return "?" if target is None else "target" if target else "other"
