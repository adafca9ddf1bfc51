"""One bystander's entry (docs/json.md, `bystanders`): which operations
began during a timed walk, their latencies during walks and quiet, the
stall, their lock waits placed inside their operations; its KTAP
diagnostics and metrics. Pure functions of what was recorded, replayed in
tests/unit/test_bystander.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rmapbench.bench import measure
from rmapbench.bench.bystander.crowd import Recorded
from rmapbench.bench.bystander.helper import LOCK_OF, OPERATION, Ops
from rmapbench.bench.tally import Tally
from rmapbench.ksft import stats
from rmapbench.ksft.ktap import KTAP
from rmapbench.tracing import contention

JSON = dict[str, Any]

# The contention summaries of an entry, as the report names them.
PHASE_LABELS = {"during": "during walks", "sampling": "while sampling", "quiet": "quiet"}


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


def timed_intervals(tally: Tally, page_type: str, clock: str, traced: bool
                    ) -> list[Interval] | None:  # fmt: skip
    """The timed target walks on the operations' clock (the instance's
    `mono`), or None: not timed, or on another clock."""
    return walk_intervals(tally, page_type) if traced and clock == "mono" else None


def entries(recorded: list[Recorded], intervals: Sequence[Interval] | None, backing: str
            ) -> list[JSON]:  # fmt: skip
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
