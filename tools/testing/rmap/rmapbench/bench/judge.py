"""The judge stage: measurements in, verdict and reasons out.

Pure: no I/O, no KTAP, nothing read from the system; everything it needs
is in the Evidence (tests/unit/test_judge.py judges recorded traces).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rmapbench.bench import crossval, visitcount
from rmapbench.bench.measure import Sample
from rmapbench.bench.tally import Expect, Tally, tally
from rmapbench.ksft import stats


@dataclass(frozen=True)
class Evidence:
    """What a case measured, and the facts and options it is judged by."""

    samples: list[Sample]  # the timed samples, warm-up included
    page_type: str  # the target's page type
    traced: bool  # a backend timed the walks (not --backend syscall)
    walks_inside_cost: bool = True  # the trigger's (False for damon)
    max_p99_ms: float | None = None  # --max-p99-ms
    not_restored: list[str] = field(default_factory=list)  # Journal.check_restored()
    visits: visitcount.VisitPass | None = None  # --count-visits
    rounds: list[crossval.Round] = field(default_factory=list)  # --backend all
    expect: Expect = field(default_factory=Expect)  # what a firing that did its job shows
    # ksmd was not scanning while the samples were taken (or the target is
    # no KSM page, which ksmd never touches): then nothing excuses a failed
    # trigger, and the case fails.
    ksmd_stopped: bool = False
    probe_cost_ns: int | None = None  # the backend's own cost per walk (calibration)


@dataclass(frozen=True)
class Verdict:
    """The case's failure reasons (none: it passed), the backends'
    disagreements (--backend all) and the counts they were drawn from."""

    tally: Tally
    reasons: list[str]
    disagreements: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons


def judge(ev: Evidence) -> Verdict:
    t = tally(
        ev.samples, ev.page_type, ev.walks_inside_cost, ev.expect, ev.traced, ev.probe_cost_ns
    )
    reasons = _sample_reasons(t, ev)
    if ev.visits is not None:
        reasons += visitcount.problems(ev.visits, ev.page_type)
    if ev.not_restored:
        reasons.append("knobs not restored: " + "; ".join(ev.not_restored))
    return Verdict(t, reasons, _disagreements(ev.rounds))


def _sample_reasons(t: Tally, ev: Evidence) -> list[str]:
    reasons = []
    if t.unverified:
        reasons.append(
            f"{len(t.unverified)} triggers left a mapping of the target behind "
            "(an rmap walk missed it)"
        )
    if t.failed and ev.ksmd_stopped:
        reasons.append(failed_triggers(t, ev.expect.trigger))
    if ev.traced:
        reasons += _walk_reasons(t, ev)
    elif ev.max_p99_ms is not None and t.syscall.p99_ns > ev.max_p99_ms * 1e6:
        reasons.append(
            f"syscall p99 {stats.format_ns(t.syscall.p99_ns)} over the {ev.max_p99_ms:g} ms budget"
        )
    return reasons


def failed_triggers(t: Tally, trigger: str) -> str:
    """'2 of 6 migrate triggers failed with ksmd stopped: 2 status -16
    (Device or resource busy)': how many, and each cause with its count."""
    causes = ", ".join(f"{n} {cause}" for cause, n in t.failure_counts().most_common())
    return (
        f"{len(t.failed)} of {len(t.measured)} {trigger} triggers failed with ksmd stopped: "
        f"{causes}"
    )


def _walk_reasons(t: Tally, ev: Evidence) -> list[str]:
    reasons = []
    if not t.usable:
        reasons.append("every sample lost trace events")
    elif t.short:
        reasons.append(
            f"{t.short} of {len(t.usable)} samples captured no {ev.page_type} walk "
            "of the target page"
        )
    if t.over:
        reasons.append(f"{t.over} samples with walks longer than their syscall")
    if ev.max_p99_ms is not None and t.walks.p99_ns > ev.max_p99_ms * 1e6:
        reasons.append(
            f"walk p99 {stats.format_ns(t.walks.p99_ns)} over the {ev.max_p99_ms:g} ms budget"
        )
    return reasons


def _disagreements(rounds: list[crossval.Round]) -> list[str]:
    """Timing backends whose p50 is out of line with the first's; the last
    round is the unarmed baseline."""
    if not rounds:
        return []
    return crossval.disagreements(rounds[0], rounds[1:-1], rounds[-1])
