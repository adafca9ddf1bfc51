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
from typing import Any

from rmapbench.bench import measure
from rmapbench.ksft import options, stats
from rmapbench.ksft.ktap import KTAP
from rmapbench.machine.knobs import Journal
from rmapbench.tracing import tracefs, visits
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


def _traceable(root: os.PathLike[str] | str) -> set[str] | None:
    try:
        with open(os.path.join(root, "available_filter_functions")) as f:
            return {line.split()[0] for line in f if line.strip()}
    except OSError:
        return None


def _kind(root: os.PathLike[str] | str) -> str | None:
    try:
        with open(os.path.join(root, "README")) as f:
            readme = f.read()
    except OSError:
        return None
    if "f[:[<group>/][<event>]]" in readme:
        return "fprobe"
    if "p[:[<group>/][<event>]]" in readme:
        return "kprobe"
    return None


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
    kind = _kind(root) if root else None
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
        walks, buckets, dropped = probe.collect(text, hists)
        raw.append((walks, buckets, dropped, inst.lost_events()))
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


def report(
    ktap: KTAP,
    sc_doc: dict[str, Any],
    vp: VisitPass,
    page_type: str,
    timed: list[measure.Sample] | None,
) -> list[str]:
    """KTAP diagnostics and metrics, and the scenario's `visits` object
    (docs/json.md); returns failure reasons. `timed`: the timed pass's
    samples (None when it timed no walk), for the cost per visit."""
    p50s = timed_p50(timed, page_type)
    walk_p50_ns = p50s.get("")
    if vp.unavailable:
        sc_doc["visits"] = {"unavailable": vp.unavailable}
        ktap.diag(f"count-visits: unavailable: {vp.unavailable}")
        return []
    ws, left_out, shared = _walks(vp, page_type)
    v = _summary([w.visits or 0 for w in ws])
    sk = _summary([w.skipped or 0 for w in ws])
    ma = _summary([w.matched for w in ws])
    se = _summary([w.searches for w in ws])
    cost = _cost(walk_p50_ns, v.get("p50"))
    callers: dict[str, list[WalkVisits]] = {}
    for w in ws:
        callers.setdefault(w.caller or "?", []).append(w)
    sc_doc["visits"] = {
        "probe": vp.probe,
        "firings": len(vp.firings),
        "walk_type": page_type,
        "visits": v,
        "skipped": sk,
        "matched": ma,
        "searches": se,
        "cost_per_visit_ns": cost,
        "by_caller": [
            {
                "caller": c,
                "walks": len(cw),
                "visits": _summary([w.visits or 0 for w in cw]),
                "skipped": _summary([w.skipped or 0 for w in cw]),
                "matched": _summary([w.matched for w in cw]),
                "searches": _summary([w.searches for w in cw]),
                "walk_p50_ns": p50s.get(c),
                "cost_per_visit_ns": _cost(
                    p50s.get(c), _summary([w.visits or 0 for w in cw])["p50"]
                ),
            }
            for c, cw in sorted(callers.items())
        ],
        "left_out_walks": left_out,
        "unattributed_walks": shared,
        "visits_outside_walks": sum(f.outside for f in vp.firings),
        "lost_events": sum(f.lost_events for f in vp.firings),
        "hist_dropped": sum(f.dropped for f in vp.firings),
        "sp_delta": vp.sp_delta,
    }
    ktap.diag(
        f"count-visits: {len(vp.firings)} untimed firings, {v['count']} {page_type} walks "
        f"({vp.probe} + hist on the interval-tree iterators)"
    )
    if not ws:
        ktap.diag(f"count-visits: no {page_type} walk counted")
        return []
    ktap.diag(
        f"visits per walk p50 {v['p50']} max {v['max']}; skipped p50 {sk['p50']} "
        f"max {sk['max']}; matched p50 {ma['p50']} max {ma['max']}; searches p50 {se['p50']}"
    )
    for c, cw in sorted(callers.items()):
        cv = _summary([w.visits or 0 for w in cw])
        cm = _summary([w.matched for w in cw])
        cs = _summary([w.searches for w in cw])
        cc = _cost(p50s.get(c), cv["p50"])
        ktap.diag(
            f"  {c}: {len(cw)} walks, visits p50 {cv['p50']}, matched p50 {cm['p50']}, "
            f"searches p50 {cs['p50']}"
            + (f", walk p50 {stats.format_ns(p50s[c])}, {stats.format_ns(cc)}/visit" if cc else "")
        )
    if cost is not None:
        ktap.diag(
            f"cost per visit: walk p50 {stats.format_ns(walk_p50_ns or 0)} (timed pass) / "
            f"{v['p50']} visits = {stats.format_ns(cost)}"
        )
    if left_out or shared:
        ktap.diag(
            f"count-visits: {left_out} walks left out (lost events), {shared} not attributable "
            "(walks of one firing sharing a stack pointer)"
        )
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
    negative = [w for w in ws if (w.skipped or 0) < 0]
    if negative:
        return [f"{len(negative)} walks with more rmap_one calls than visits (miscounted)"]
    return []
