"""The walker's lock holds (docs/json.md, `lock_holds`): how often a walk of
the target takes its lock and for how long, exact where the counts allow,
an estimate or an upper bound where a stock kernel does not time a hold."""

from __future__ import annotations

from typing import Any

from rmapbench.ksft import stats
from rmapbench.ksft.ktap import KTAP

JSON = dict[str, Any]


def lock_holds(page_type: str, walks: stats.Summary, visits: JSON | None) -> JSON:
    """How often a walk of the target takes its lock and for how long
    (docs/bystanders.md says what is exact and what an estimate).

    rmap_walk_ksm() takes anon_vma_lock_read() once per rmap_item and pass
    and searches that anon_vma's tree once while holding it, so its
    acquisitions are the searches --count-visits counts (exact), each hold
    a scan of visits/searches nodes (exact counts, averaged). The hold's
    duration is not timed on a stock kernel: a walk's holds scan the same
    tree, so a hold is estimated as the walk's time over its acquisitions
    (the unlock/relock between holds is inside it), per caller, the longest
    caller's being the longest hold. rmap_walk_anon() and rmap_walk_file()
    take their lock once per walk (exact, from the code) and hold it for
    nearly all of it: the walk's time bounds the hold from above."""
    if page_type == "ksm":
        out: JSON = {"lock": "anon_vma (read)", "per": "rmap_item and pass"}
        v = visits or {}
        searches = v.get("searches") or {}
        if not searches.get("count"):
            out.update(
                acquisitions_per_walk=None,
                longest_hold_ns=None,
                note="--count-visits counts the acquisitions",
            )
            return out
        per_hold = (v.get("visits") or {}).get("p50", 0) / max(1, searches["p50"])
        holds = [
            c["walk_p50_ns"] / c["searches"]["p50"]
            for c in v.get("by_caller", [])
            if c.get("walk_p50_ns") and (c.get("searches") or {}).get("p50")
        ]
        if not holds and walks.count and searches["p50"]:
            holds = [walks.p50_ns / searches["p50"]]
        out.update(
            acquisitions_per_walk={"p50": searches["p50"], "max": searches["max"], "exact": True},
            nodes_per_hold=round(per_hold, 1),
            longest_hold_ns=round(max(holds)) if holds else None,
            longest_hold_exact=False,
            how="acquisitions: tree searches counted by --count-visits; longest hold: the "
            "slowest caller's walk p50 / its searches (estimate)",
        )
        return out
    lock = "i_mmap (read)" if page_type == "file" else "anon_vma (read)"
    return {
        "lock": lock,
        "per": "walk",
        "acquisitions_per_walk": {"p50": 1, "max": 1, "exact": True},
        "longest_hold_ns": walks.max_ns if walks.count else None,
        "longest_hold_exact": False,
        "how": "one acquisition per walk (from the code); the hold is at most the walk "
        "(the longest walk bounds it from above)",
    }


def report(ktap: KTAP, holds: JSON) -> None:
    """The diagnostic line and the metrics of the walker's holds."""
    f = stats.format_ns
    acq = holds.get("acquisitions_per_walk")
    longest = holds.get("longest_hold_ns")
    ktap.diag(
        f"walk lock holds: {holds['lock']}, "
        + (f"{acq['p50']} per walk (max {acq['max']})" if acq else "acquisitions not counted")
        + (f", longest hold ~{f(longest)}" if longest is not None else "")
        + (f", {holds['nodes_per_hold']} tree nodes per hold" if "nodes_per_hold" in holds else "")
    )
    if acq:
        ktap.metric("lock_acquisitions_per_walk", acq["p50"])
    if longest is not None:
        ktap.metric("lock_longest_hold_ns", longest)
