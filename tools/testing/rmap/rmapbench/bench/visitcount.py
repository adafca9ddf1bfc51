"""--count-visits: the walk anatomy pass, after the timed samples.

The probes on the interval-tree iterators fire once per node a walk
visits (hundreds of thousands per KSM walk), which would inflate the
latency, so they are armed only after the timed pass, on the same built
scenario, for a few extra trigger firings that are not timed samples.
See tracing/visits.py for what is counted and how.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmapbench.bench import measure
from rmapbench.ksft import options, stats
from rmapbench.ksft.ktap import KTAP
from rmapbench.machine.knobs import Journal
from rmapbench.tracing import functions, tracefs, visits
from rmapbench.tracing.backend import Unavailable
from rmapbench.tracing.visits import WalkVisits
from rmapbench.triggers.base import Trigger

MAX_FIRINGS = 3


@dataclass
class VisitPass:
    firings: list[visits.Firing] = field(default_factory=list)
    probe: str = ""
    sp_delta: int | None = None
    unavailable: str = ""


def firings_for(samples: int) -> int:
    """Counting firings: a few are enough. The counts are exact and repeat
    from one firing to the next, while every probed visit costs several
    microseconds under TCG (a KSM walk at 8000 VMAs: about a minute)."""
    return min(samples, MAX_FIRINGS)


def _traceable(root: Path) -> set[str] | None:
    names = functions.read(root)
    return None if names is None else set(names)


def run_pass(
    trigger: Trigger,
    addr: int,
    opts: options.Options,
    journal: Journal,
    backing: str,
    pids: list[int] | None = None,
) -> VisitPass:
    """Fire the trigger firings_for(samples) more times with the visit
    probes armed in their own instance; nothing of it is timed. `pids`:
    whose walks to follow when the trigger's walks run in another task
    (kdamond); default this process."""
    root = tracefs.find_tracefs()
    kinds = tracefs.probe_kinds(root) if root else []
    kind = kinds[0] if kinds else None
    if root is None or kind is None or not (root / "synthetic_events").exists():
        return VisitPass(unavailable="no kprobe/fprobe events or hist triggers")
    tfs, inst = tracefs.private_instance(journal, opts.buffer_kb, tag="visits")
    if pids:
        inst.follow_pids(pids)
    probe = visits.VisitProbe(kind, backing)
    try:
        probe.arm(tfs, inst, _traceable(root))
    except (Unavailable, tracefs.TraceError) as e:
        return VisitPass(probe=kind, unavailable=str(e))
    raw: list[visits.RawFiring] = []
    for i in range(firings_for(opts.samples)):
        trigger.ready(addr)  # as in the timed pass: untimed, before the clear
        trigger.align(inst.clear)
        trigger.fire(addr)
        text = inst.read()
        hists = probe.hist_texts(inst)
        _dump(i, text, hists)
        walks, buckets, dropped, damage = probe.collect(text, hists)
        raw.append((walks, buckets, dropped, damage.lost_with(inst.lost_events())))
    found, sp_delta = visits.finish(raw)
    return VisitPass(found, kind, sp_delta)


def _dump(index: int, text: str, hists: dict[str, str]) -> None:
    """$RMAPBENCH_TRACE_DUMP: each firing's trace, then each hist file."""
    path = os.environ.get("RMAPBENCH_TRACE_DUMP")
    if not path:
        return
    with open(path, "a") as f:
        f.write(f"# rmapbench visits {index}\n{text}")
        for name, hist in hists.items():
            f.write(f"# rmapbench visits {index} hist {name}\n{hist}")


def _summary(values: list[int]) -> dict[str, int]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "min": min(values),
        "p50": round(stats.percentile(values, 50)),
        "max": max(values),
        "mean": round(statistics.fmean(values)),
    }


def _walks(vp: VisitPass, page_type: str) -> tuple[list[WalkVisits], int, int]:
    """Finished walks of the target's type in firings that lost nothing;
    also how many walks were left out and why (lost events, shared sp)."""
    kept: list[WalkVisits] = []
    left_out = shared = 0
    for f in vp.firings:
        ws = [w for w in f.walks if w.page_type == page_type and w.finished]
        if f.lost_events or f.dropped:
            left_out += len(ws)
            continue
        shared += sum(1 for w in ws if w.visits is None)
        kept.extend(w for w in ws if w.visits is not None)
    return kept, left_out, shared


def timed_p50(samples: list[measure.Sample] | None, page_type: str) -> dict[str, int]:
    """Walk p50 of the timed pass: overall ("") and per caller, where the
    timing backend tells the caller."""
    if not samples:
        return {}
    out = {"": stats.summarize(measure.target_durations(samples, page_type)).p50_ns}
    by_caller: dict[str, list[int]] = {}
    for s in samples:
        if s.warmup or s.lost_events:
            continue
        for w in measure.target_walks(s, page_type):
            if w.caller:
                by_caller.setdefault(w.caller, []).append(w.duration_ns)
    out.update({c: stats.summarize(d).p50_ns for c, d in by_caller.items()})
    return {c: p for c, p in out.items() if p}


def _cost(p50_ns: int | None, visits_p50: int | None) -> float | None:
    return round(p50_ns / visits_p50, 1) if p50_ns and visits_p50 else None


def _callers(ws: list[WalkVisits]) -> dict[str, list[WalkVisits]]:
    callers: dict[str, list[WalkVisits]] = {}
    for w in ws:
        callers.setdefault(w.caller or "?", []).append(w)
    return dict(sorted(callers.items()))


def entry(vp: VisitPass, page_type: str, timed: list[measure.Sample] | None) -> dict[str, Any]:
    """The scenario's `visits` object (docs/json.md). `timed`: the timed
    pass's samples (None when it timed no walk), for the cost per visit."""
    if vp.unavailable:
        return {"unavailable": vp.unavailable}
    p50s = timed_p50(timed, page_type)
    ws, left_out, shared = _walks(vp, page_type)
    v = _summary([w.visits or 0 for w in ws])
    return {
        "probe": vp.probe,
        "firings": len(vp.firings),
        "walk_type": page_type,
        "visits": v,
        "skipped": _summary([w.skipped or 0 for w in ws]),
        "matched": _summary([w.matched for w in ws]),
        "searches": _summary([w.searches for w in ws]),
        "cost_per_visit_ns": _cost(p50s.get(""), v.get("p50")),
        "by_caller": [_by_caller(c, cw, p50s.get(c)) for c, cw in _callers(ws).items()],
        "left_out_walks": left_out,
        "unattributed_walks": shared,
        "visits_outside_walks": sum(f.outside for f in vp.firings),
        "lost_events": sum(f.lost_events for f in vp.firings),
        "hist_dropped": sum(f.dropped for f in vp.firings),
        "sp_delta": vp.sp_delta,
    }


def _by_caller(caller: str, cw: list[WalkVisits], walk_p50_ns: int | None) -> dict[str, Any]:
    visits_ = _summary([w.visits or 0 for w in cw])
    return {
        "caller": caller,
        "walks": len(cw),
        "visits": visits_,
        "skipped": _summary([w.skipped or 0 for w in cw]),
        "matched": _summary([w.matched for w in cw]),
        "searches": _summary([w.searches for w in cw]),
        "walk_p50_ns": walk_p50_ns,
        "cost_per_visit_ns": _cost(walk_p50_ns, visits_["p50"]),
    }


def problems(vp: VisitPass, page_type: str) -> list[str]:
    """Failure reasons: a walk that called rmap_one more often than it
    visited a node was miscounted."""
    if vp.unavailable:
        return []
    negative = [w for w in _walks(vp, page_type)[0] if (w.skipped or 0) < 0]
    if negative:
        return [f"{len(negative)} walks with more rmap_one calls than visits (miscounted)"]
    return []


def report(ktap: KTAP, e: dict[str, Any], timed_p50s: dict[str, int]) -> None:
    """KTAP diagnostics and metrics of a `visits` object (entry()).
    `timed_p50s`: timed_p50() of the timed pass."""
    if "unavailable" in e:
        ktap.diag(f"count-visits: unavailable: {e['unavailable']}")
        return
    v, sk, ma, se, cost = (
        e[k] for k in ("visits", "skipped", "matched", "searches", "cost_per_visit_ns")
    )
    ktap.diag(
        f"count-visits: {e['firings']} untimed firings, {v['count']} {e['walk_type']} walks "
        f"({e['probe']} + hist on the interval-tree iterators)"
    )
    if not v["count"]:
        ktap.diag(f"count-visits: no {e['walk_type']} walk counted")
        return
    ktap.diag(
        f"visits per walk p50 {v['p50']} max {v['max']}; skipped p50 {sk['p50']} "
        f"max {sk['max']}; matched p50 {ma['p50']} max {ma['max']}; searches p50 {se['p50']}"
    )
    for c in e["by_caller"]:
        _report_caller(ktap, c, timed_p50s)
    if cost is not None:
        ktap.diag(
            f"cost per visit: walk p50 {stats.format_ns(timed_p50s.get('') or 0)} (timed pass) / "
            f"{v['p50']} visits = {stats.format_ns(cost)}"
        )
    left_out, shared = e["left_out_walks"], e["unattributed_walks"]
    if left_out or shared:
        ktap.diag(
            f"count-visits: {left_out} walks left out (lost events), {shared} not attributable "
            "(walks of one firing sharing a stack pointer)"
        )
    _metrics(ktap, v, sk, ma, se, cost)


def _metrics(
    ktap: KTAP,
    v: dict[str, int],
    sk: dict[str, int],
    ma: dict[str, int],
    se: dict[str, int],
    cost: float | None,
) -> None:
    for key, value in (
        ("visits_p50", v["p50"]),
        ("visits_max", v["max"]),
        ("skipped_p50", sk["p50"]),
        ("matched_p50", ma["p50"]),
        ("searches_p50", se["p50"]),
    ):
        ktap.metric(key, value)
    if cost is not None:
        ktap.metric("cost_per_visit_ns", cost)


def _report_caller(ktap: KTAP, c: dict[str, Any], timed_p50s: dict[str, int]) -> None:
    cc = c["cost_per_visit_ns"]
    ktap.diag(
        f"  {c['caller']}: {c['walks']} walks, visits p50 {c['visits']['p50']}, "
        f"matched p50 {c['matched']['p50']}, searches p50 {c['searches']['p50']}"
        + (
            f", walk p50 {stats.format_ns(timed_p50s[c['caller']])}, {stats.format_ns(cc)}/visit"
            if cc
            else ""
        )
    )
