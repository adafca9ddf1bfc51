"""Latency samples out of loaded results, keyed so two sources can be lined
up: (case, page type, metric, grid point)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rmapbench.analysis.inference import Array
from rmapbench.analysis.resultset import Run

# "walk": the target's rmap walks (walks.samples); "syscall": the trigger's
# wall time (syscall.samples), the only figure with --backend syscall.
# "bystander-KIND": a --bystander's operation latencies during walks
# (bystanders[].during.samples): a KSM fix shows as a shorter stall there.
METRICS = ("walk", "syscall", "bystander-mprotect", "bystander-munmap", "bystander-fork")
_GROUP = {"walk": "walks", "syscall": "syscall"}


@dataclass(frozen=True, order=True)
class Key:
    case: str  # scenario name: ksm, anon, file, ...
    page_type: str  # the target's page type as the scenario built it
    metric: str
    point: str = ""  # "pages=1000 split=2" in a sweep, "" otherwise
    # "walk" only: the function that started the walks (walks_by_caller);
    # "" for every walk of the target pooled.
    caller: str = ""

    def label(self) -> str:
        metric = f"{self.metric}:{self.caller}" if self.caller else self.metric
        parts = [f"{self.case}/{self.page_type}", metric]
        return " ".join([*parts, self.point]) if self.point else " ".join(parts)

    @property
    def family(self) -> str:
        """The metric with its caller ("walk:try_to_migrate"): the noise floor's key."""
        return f"{self.metric}:{self.caller}" if self.caller else self.metric


def sort_key(key: Key) -> tuple[str, str, tuple[tuple[str, float], ...], int, str]:
    """Cases in name order, grid points in numeric order (procs=2 before
    procs=32), walk before syscall, the pooled walk before its callers."""
    return (
        key.case, key.page_type, _natural(key.point), METRICS.index(key.metric), key.caller
    )  # fmt: skip


def _natural(point: str) -> tuple[tuple[str, float], ...]:
    """ "pages=1000 split=2" -> (("pages", 1000.0), ("split", 2.0))."""
    out = []
    for item in point.split():
        name, _, value = item.partition("=")
        try:
            out.append((name, float(value)))
        except ValueError:
            out.append((f"{name}={value}", 0.0))
    return tuple(out)


def point_label(point: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items())


def run_series(
    run: Run, metric: str, callers: bool = False
) -> Iterable[tuple[Key, list[float]]]:
    """A run's samples per key; with `callers`, the walks of each caller
    too (walks_by_caller of the result, docs/json.md)."""
    for sc in run.doc.get("scenarios", []):
        page_type = (sc.get("setup") or {}).get("target_page_type") or sc["name"]
        key = Key(sc["name"], str(page_type), metric, point_label(run.point))
        group = (sc.get(_GROUP[metric]) or {}) if metric in _GROUP else _bystander(sc, metric)
        values = group.get("samples") or []
        if values:
            yield key, values
        if not (callers and metric == "walk"):
            continue
        for entry in sc.get("walks_by_caller") or []:
            per = (entry.get("walks") or {}).get("samples") or []
            if per and entry.get("caller"):
                yield replace(key, caller=str(entry["caller"])), per


def _bystander(sc: dict[str, Any], metric: str) -> dict[str, Any]:
    kind = metric.removeprefix("bystander-")
    for b in sc.get("bystanders") or []:
        if b.get("kind") == kind:
            during: dict[str, Any] = b.get("during") or {}
            return during
    return {}


def pooled(
    runs: Iterable[Run], metrics: Iterable[str] = METRICS, callers: bool = False
) -> dict[Key, Array]:
    """Every sample of each key, pooled over rounds and repeated runs."""
    out: dict[Key, list[float]] = defaultdict(list)
    wanted = list(metrics)
    for run in runs:
        for metric in wanted:
            for key, values in run_series(run, metric, callers):
                out[key].extend(values)
    return {k: np.asarray(out[k], dtype=np.float64) for k in sorted(out, key=sort_key)}


def per_run(runs: Iterable[Run], key: Key) -> list[Array]:
    """The samples of one key, one array per run (the unit of replication)."""
    out = []
    for run in runs:
        for k, values in run_series(run, key.metric, callers=bool(key.caller)):
            if k == key:
                out.append(np.asarray(values, dtype=np.float64))
    return out


def round_medians(runs: Iterable[Run], key: Key) -> list[float]:
    """The median of each round's samples for one key (drift between rounds)."""
    by_round: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for k, values in run_series(run, key.metric, callers=bool(key.caller)):
            if k == key:
                by_round[run.round].extend(values)
    return [float(np.median(v)) for _, v in sorted(by_round.items())]
