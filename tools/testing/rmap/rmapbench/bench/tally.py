"""What the timed samples add up to: which walks were the target's, which
firings did their job, the statistics (pooled and per caller, raw and
corrected for the probe's own cost) and the counts the verdict is drawn
from. Pure: no I/O."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from rmapbench.bench import measure, target
from rmapbench.bench.measure import Sample
from rmapbench.ksft import stats
from rmapbench.tracing.events import KNOWN_CALLERS, Walk, caller_of

# (page type, function, folio label) of a walk: walks_by_kind's key.
Kind = tuple[str, str, str]

# The walk that undoes a migration's first one (what a retry starts with).
FIRST_OF_A_TRY = "try_to_migrate"


@dataclass(frozen=True)
class Expect:
    """What a firing that did its job shows: the trigger's name, the
    callers of the target's walks (triggers/base.py expected_callers) and
    whether the kernel may retry inside one firing. The default expects
    nothing beyond the firing's own `done`."""

    trigger: str = "migrate"
    callers: tuple[str, ...] = ()
    retries: bool = False


@dataclass(frozen=True)
class Outcome:
    """One sample judged: the target walks in the statistics (with their
    callers), the walks of earlier tries inside the same firing, and why
    the firing failed ("" when it did its job)."""

    sample: Sample
    counted: list[tuple[str, Walk]]  # (caller, walk); caller "" when unknown
    retry: list[Walk]
    failure: str

    @property
    def failed(self) -> bool:
        return bool(self.failure)


@dataclass(frozen=True)
class Tally:
    samples: list[Sample]  # every sample, warm-up included
    measured: list[Sample]  # warm-up excluded
    usable: list[Sample]  # measured, and no trace event lost
    lost: list[Sample]  # measured, but trace events lost
    unverified: list[Sample]  # a mapping of the target was left behind
    not_done: list[Sample]  # measured firings that did not do their job (call's verdict)
    base: int | None  # vmemmap base the target was identified by; None: by page type
    kinds: Counter[Kind]  # every walk of the measured samples
    locked_walks: int  # of them, rmap_walk_locked
    walk_ns: list[int]  # the target's walks in the usable samples whose trigger did its job
    walks: stats.Summary  # of walk_ns
    syscall: stats.Summary  # the trigger's timed cost per measured firing
    short: int  # usable samples without a walk of the target
    over: int  # usable samples whose target walks outlast their timed cost
    lost_events: int
    unpaired: int  # entry/exit events without a partner
    outcomes: list[Outcome] = field(default_factory=list)  # per sample, warm-up included
    failed: list[Outcome] = field(default_factory=list)  # measured firings that failed
    by_caller: dict[str, list[int]] = field(default_factory=dict)  # walk_ns per caller
    failed_walk_ns: list[int] = field(default_factory=list)  # target walks of failed firings
    retry_walk_ns: list[int] = field(default_factory=list)  # earlier tries of good firings
    probe_cost_ns: int | None = None  # the backend's cost inside the timed window

    @property
    def syscall_ns(self) -> list[int]:
        return [s.firing.syscall_ns for s in self.measured]

    @property
    def corrected_ns(self) -> list[int]:
        return corrected(self.walk_ns, self.probe_cost_ns)

    def caller_summaries(self) -> dict[str, stats.Summary]:
        return {c: stats.summarize(d) for c, d in self.by_caller.items()}

    def failure_counts(self) -> Counter[str]:
        return Counter(o.failure for o in self.failed)


def corrected(walk_ns: list[int], cost_ns: int | None) -> list[int]:
    """Walk latencies less the probe's own cost (never below 0); the raw
    values when the cost is unknown."""
    if not cost_ns:
        return list(walk_ns)
    return [max(0, d - cost_ns) for d in walk_ns]


def tally(
    samples: list[Sample],
    page_type: str,
    walks_inside_cost: bool = True,
    expect: Expect | None = None,
    traced: bool = True,
    probe_cost_ns: int | None = None,
) -> Tally:
    """Mark the target's walks (measure.mark), judge every firing and count.
    `walks_inside_cost`: whether a firing's walks must fit inside its timed
    cost (not damon's, whose window may open in the middle of a walk)."""
    expect = expect or Expect()
    base = measure.mark(samples, page_type)
    measured = [s for s in samples if not s.warmup]
    usable = [s for s in measured if not s.lost_events]
    kinds: Counter[Kind] = Counter(
        (w.page_type, w.function, folio_label(w.target)) for s in measured for w in s.walks
    )
    outcomes = [judge_sample(s, page_type, expect, base, traced) for s in samples]
    good = [o for o in outcomes if not o.sample.warmup and not o.sample.lost_events]
    ok = [o for o in good if not o.failed]
    walk_ns = [w.duration_ns for o in ok for _, w in o.counted]
    by_caller: dict[str, list[int]] = {}
    for o in ok:
        for caller, w in o.counted:
            if caller:
                by_caller.setdefault(caller, []).append(w.duration_ns)
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
        outcomes=outcomes,
        failed=[o for o in outcomes if not o.sample.warmup and o.failed],
        by_caller=dict(sorted(by_caller.items())),
        failed_walk_ns=[
            w.duration_ns
            for o in good
            if o.failed
            for w in measure.target_walks(o.sample, page_type)
        ],
        retry_walk_ns=[w.duration_ns for o in ok for w in o.retry],
        probe_cost_ns=probe_cost_ns,
    )


def judge_sample(
    s: Sample, page_type: str, expect: Expect, base: int | None, traced: bool
) -> Outcome:
    """Did this firing do its job, and which of its target walks count?"""
    tw = measure.target_walks(s, page_type)
    labelled = [(_caller(w, s, base, expect), w) for w in tw]
    if not s.firing.done:
        return Outcome(s, [], [], failure_text(s, expect))
    retry: list[Walk] = []
    if expect.retries:
        labelled, retry = _last_try(labelled, len(expect.callers))
    labelled = _by_position(labelled, expect.callers)
    failure = ""
    if traced and not s.lost_events:
        failure = _missing(labelled, expect)
    return Outcome(s, labelled, retry, failure)


def _caller(w: Walk, s: Sample, base: int | None, expect: Expect) -> str:
    """The walk's caller: from the return site the probe recorded (unless
    that is the dispatch rmap_walk() itself), else
    (a migration, folio known) from the frame walked: the frame the target
    left is unmapped by try_to_migrate, the one it went to remapped by
    remove_migration_ptes."""
    if w.caller and caller_of(w.caller):
        return caller_of(w.caller)
    if expect.retries and base is not None and w.folio is not None:
        if w.folio == target.folio_pointer(base, s.pfn_before) and s.pfn_after != s.pfn_before:
            return "try_to_migrate"
        if w.folio == target.folio_pointer(base, s.pfn_after):
            return "remove_migration_ptes"
    return ""


def _last_try(
    labelled: list[tuple[str, Walk]], per_try: int
) -> tuple[list[tuple[str, Walk]], list[Walk]]:
    """Split a firing's target walks into its last try and the tries before
    (migrate_pages() retries: each try unmaps and remaps)."""
    starts = [i for i, (c, _) in enumerate(labelled) if c == FIRST_OF_A_TRY]
    # Callers unknown: the last try is the last per_try walks.
    cut = starts[-1] if starts else max(0, len(labelled) - per_try)
    return labelled[cut:], [w for _, w in labelled[:cut]]


def _by_position(
    labelled: list[tuple[str, Walk]], callers: tuple[str, ...]
) -> list[tuple[str, Walk]]:
    """Callers unknown (function_graph records neither return site nor
    folio) but exactly the expected walks: they finish in the order the
    trigger lists them (a migration unmaps before it remaps; kdamond checks
    young before it clears)."""
    if not callers or len(labelled) != len(callers) or any(c for c, _ in labelled):
        return labelled
    return [(c, w) for c, (_, w) in zip(callers, labelled, strict=True)]


def _missing(labelled: list[tuple[str, Walk]], expect: Expect) -> str:
    """Which expected walk of the target a firing lacks ("" when none). A
    walk whose caller is unknown (no return site, or a site this table
    does not know) may stand for any expected one."""
    if not expect.callers:
        return ""
    seen = {c for c, _ in labelled if c in KNOWN_CALLERS}
    wildcards = sum(1 for c, _ in labelled if c not in KNOWN_CALLERS)
    missing = [c for c in expect.callers if c not in seen]
    if len(missing) <= wildcards:
        return ""
    return f"no {missing[0]} walk of the target"


def failure_text(s: Sample, expect: Expect) -> str:
    """Why a firing did not do its job, by its status: constant per cause,
    so that failures can be counted by it."""
    f = s.firing
    if f.status < 0:
        return f"status {f.status} ({os.strerror(-f.status)})"
    if f.from_node >= 0:
        return f"status {f.status} (left on node {f.status})"
    return f"{expect.trigger} did not take effect"


def ceiling(s: Sample) -> float:
    """The most the walks of a firing may add up to: its timed cost, plus
    1% and 100 us because the two ends are read by different clocks
    (the trace's timestamps against the test's clock_gettime), which were
    seen to disagree by 0.25% on a loaded TCG host."""
    return s.firing.syscall_ns * 1.01 + 100_000


def folio_label(target: bool | None) -> str:
    return "?" if target is None else "target" if target else "other"
