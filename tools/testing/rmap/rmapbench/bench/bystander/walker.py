"""The walker's own lock waits (docs/json.md, `walker_waits`).

The walking process takes the walk's lock for reading, and a reader waits
too: once a bystander has slept on the rwsem for writing long enough to
ask for a hand-off (about 4 ms), the walker's next anon_vma_lock_read()
(one per rmap_item for KSM) queues behind it, and the walk's own time then
includes the writer's operation. Its waits are recorded by the
bystanders' instance, which follows the trigger's pids as well (the
walk-timing instance is untouched); here they are set against the timed
walks: `during_walks` those inside a timed walk of the target, `sampling`
all of the sampling run's, `quiet` those of the bystanders' baseline (no
walks), `on_bystander_locks` those on a lock a bystander waited on for
writing (the lock they contend for). Pure: replayed in tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rmapbench.bench.bystander.crowd import Recorded, WalkerWaits
from rmapbench.ksft import stats
from rmapbench.ksft.ktap import KTAP
from rmapbench.tracing import contention

JSON = dict[str, Any]
Interval = tuple[int, int]


def bystander_locks(recorded: Sequence[Recorded]) -> set[str]:
    """The locks some bystander waited on for writing while sampling."""
    return {w.lock for r in recorded for w in r.waits_during or [] if w.kind == "rwsem-write"}


def evaluate(rec: WalkerWaits, intervals: Sequence[Interval] | None, locks: set[str]) -> JSON:
    """The walker's entry. intervals None: walks not placed in time, so
    `during_walks` and `outside_walks` are null."""
    out: JSON = {"pids": rec.pids}
    if rec.sampling is None or rec.quiet is None:
        out["unavailable"] = contention.UNAVAILABLE
        return out
    during: JSON | None = None
    outside: int | None = None
    if intervals is not None:
        owner = contention.by_op(rec.sampling, [a for a, _ in intervals], [b for _, b in intervals])
        during = contention.summary([w for w, i in zip(rec.sampling, owner, strict=True)
                                     if i is not None])  # fmt: skip
        outside = sum(1 for i in owner if i is None)
    out.update(
        during_walks=during,
        sampling=contention.summary(rec.sampling),
        quiet=contention.summary(rec.quiet),
        on_bystander_locks=contention.summary([w for w in rec.sampling if w.lock in locks]),
        outside_walks=outside,
        lost_events=rec.lost_events,
    )
    return out


def metric_values(e: JSON) -> dict[str, int]:
    """The walker's rwsem waits inside timed walks, as metrics."""
    during = e.get("during_walks")
    if not during:
        return {}
    return {
        "walker_rwsem_wait_ns": during["rwsem_wait_ns"],
        "walker_rwsem_max_wait_ns": during["rwsem_max_wait_ns"],
    }


def _full(s: JSON) -> str:
    f = stats.format_ns
    return (
        f"{s['rwsem_waits']} rwsem, {f(s['rwsem_wait_ns'])} (read {f(s['rwsem_read_wait_ns'])}, "
        f"write {f(s['rwsem_write_wait_ns'])}), longest {f(s['rwsem_max_wait_ns'])}"
    )


def _brief(s: JSON) -> str:
    return f"{s['rwsem_waits']}, {stats.format_ns(s['rwsem_wait_ns'])}"


def report(ktap: KTAP, e: JSON) -> None:
    """One diagnostic line and the metrics."""
    who = "walker (pid " + ", ".join(str(p) for p in e["pids"]) + ")"
    if "unavailable" in e:
        ktap.diag(f"{who} lock waits: {e['unavailable']}")
        return
    during, sampling = e["during_walks"], e["sampling"]
    head = f"during walks: {_full(during)}; while sampling: {_brief(sampling)}"
    if during is None:
        head = f"while sampling (walks not placed in time): {_full(sampling)}"
    ktap.diag(
        f"{who} lock waits {head}; on the bystanders' lock: {_brief(e['on_bystander_locks'])}; "
        f"quiet: {_brief(e['quiet'])}"
    )
    for name, value in metric_values(e).items():
        ktap.metric(name, value)
