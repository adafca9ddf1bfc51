"""Tests of rmapbench.bench.judge: the verdict rules, on the recorded
fprobe traces of tests/unit/fixtures turned into samples by the real
parsers (no root, no tracefs). fprobe_ksm.trace: a 6.12 guest, sample 0
a warm-up, each migration walking the target twice."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from rmapbench.bench import visitcount
from rmapbench.bench.judge import Evidence, judge
from rmapbench.bench.measure import Sample
from rmapbench.tracing import events
from rmapbench.tracing.visits import WalkVisits
from rmapbench.triggers import Firing

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VMEMMAP = 0xFFFFEA0000000000  # the recorded guests' vmemmap_base
SECOND = 1_000_000_000


def recorded(name: str, syscall_ns: int = SECOND) -> list[Sample]:
    """One sample per `# rmapbench sample N` section: its walks paired in the
    kernel (synthetic events), its target the frames of its first two walks."""
    text = (FIXTURES / name).read_text()
    parts = re.split(r"^# rmapbench sample (\d+)\n", text, flags=re.MULTILINE)
    out = []
    for i in range(1, len(parts), 2):
        evs = list(events.parse(parts[i + 1]))
        pid = next(ev.pid for ev in evs if ev.name.endswith("_entry"))
        synth = {f"rmapbench_{pid}_{f}": f for f in events.WALK_FUNCTIONS}
        walks = events.synthetic_walks(evs, synth).walks
        before, after = (((w.folio or 0) - VMEMMAP) // 64 for w in walks[:2])
        firing = Firing.migration(syscall_ns, 0, 1, 1)
        out.append(Sample(int(parts[i]), int(parts[i]) == 0, firing, before, after, walks))
    return out


def ksm(**kw: object) -> Evidence:
    samples = kw.pop("samples", None) or recorded("fprobe_ksm.trace")
    return Evidence(samples, "ksm", traced=True, **kw)  # type: ignore[arg-type]


def test_recorded_ksm_run_passes() -> None:
    v = judge(ksm())
    assert v.passed and v.reasons == [] and v.disagreements == []
    t = v.tally
    assert len(t.measured) == 6 and len(t.usable) == 6 and t.base == VMEMMAP
    assert t.walks.count == 12 and t.short == 0 and t.over == 0
    assert t.locked_walks == 0 and not t.not_done


def test_unverified_samples() -> None:
    samples = recorded("fprobe_ksm.trace")
    for s in samples[2:4]:
        s.problems = ["pid 1 0x7f0000000000: pfn 5 != 6"]
    v = judge(ksm(samples=samples))
    assert v.reasons == ["2 triggers left a mapping of the target behind (an rmap walk missed it)"]
    assert not v.passed


def test_every_sample_lost_events() -> None:
    samples = recorded("fprobe_ksm.trace")
    for s in samples:
        s.lost_events = 4
    assert judge(ksm(samples=samples)).reasons == ["every sample lost trace events"]


def test_samples_lost_events_are_left_out() -> None:
    samples = recorded("fprobe_ksm.trace")
    samples[3].lost_events = 1
    v = judge(ksm(samples=samples))
    assert v.passed and len(v.tally.usable) == 5 and v.tally.walks.count == 10


def test_samples_without_a_walk_of_the_target() -> None:
    samples = recorded("fprobe_ksm.trace")
    for s in samples[1:3]:
        s.walks = [w for w in s.walks if w.page_type != "ksm"]
    assert judge(ksm(samples=samples)).reasons == [
        "2 of 6 samples captured no ksm walk of the target page"
    ]


def test_walks_longer_than_their_syscall() -> None:
    samples = recorded("fprobe_ksm.trace", syscall_ns=1000)
    assert judge(ksm(samples=samples)).reasons == ["6 samples with walks longer than their syscall"]
    # damon's window may open in the middle of a walk: not checked.
    assert judge(ksm(samples=samples, walks_inside_cost=False)).passed


def test_walk_p99_budget() -> None:
    v = judge(ksm(max_p99_ms=1.0))
    assert len(v.reasons) == 1
    assert re.fullmatch(r"walk p99 \S+ ms over the 1 ms budget", v.reasons[0])
    assert judge(ksm(max_p99_ms=10_000.0)).passed


def test_syscall_p99_budget_without_a_backend() -> None:
    samples = recorded("fprobe_ksm.trace")
    for s in samples:
        s.walks = []
    syscall_only = Evidence(samples, "ksm", traced=False, max_p99_ms=0.5)
    assert judge(syscall_only).reasons == ["syscall p99 1 s over the 0.5 ms budget"]
    # No backend: neither the walk rules nor the walk budget apply.
    assert judge(dataclasses.replace(syscall_only, max_p99_ms=2000.0)).passed


def test_knobs_not_restored() -> None:
    v = judge(ksm(not_restored=["/proc/sys/kernel/numa_balancing: '0' != '1'"]))
    assert v.reasons == ["knobs not restored: /proc/sys/kernel/numa_balancing: '0' != '1'"]


def test_reasons_keep_their_order() -> None:
    samples = recorded("fprobe_ksm.trace", syscall_ns=1000)
    samples[1].problems = ["lost"]
    v = judge(ksm(samples=samples, max_p99_ms=1.0, not_restored=["x"]))
    assert [r.split()[1] for r in v.reasons] == ["triggers", "samples", "p99", "not"]


def test_firings_that_did_not_migrate_are_counted_not_failed() -> None:
    samples = recorded("fprobe_ksm.trace")
    samples[2].firing = Firing.migration(SECOND, 0, 1, -16)
    v = judge(ksm(samples=samples))
    assert v.passed and v.tally.not_done == [samples[2]]


def test_miscounted_visits() -> None:
    w = WalkVisits(1, "ksm", visits=1, matched=3, finished=True)
    vp = visitcount.VisitPass([visitcount.visits.Firing([w], 0, 0, 0)], "fprobe", 8)
    assert judge(ksm(visits=vp)).reasons == [
        "1 walks with more rmap_one calls than visits (miscounted)"
    ]
