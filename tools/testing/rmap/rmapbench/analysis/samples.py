"""Latency samples out of loaded results, keyed so two sources can be lined
up: (case, page type, metric, grid point)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
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

    def label(self) -> str:
        parts = [f"{self.case}/{self.page_type}", self.metric]
        return " ".join([*parts, self.point]) if self.point else " ".join(parts)


def sort_key(key: Key) -> tuple[str, str, tuple[tuple[str, float], ...], int]:
    """Cases in name order, grid points in numeric order (procs=2 before
    procs=32), walk before syscall."""
    return (key.case, key.page_type, _natural(key.point), METRICS.index(key.metric))


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


def run_series(run: Run, metric: str) -> Iterable[tuple[Key, list[float]]]:
    for sc in run.doc.get("scenarios", []):
        group = sc.get(_GROUP[metric]) or {} if metric in _GROUP else _bystander(sc, metric)
        values = group.get("samples") or []
        if not values:
            continue
        page_type = (sc.get("setup") or {}).get("target_page_type") or sc["name"]
        yield Key(sc["name"], str(page_type), metric, point_label(run.point)), values


def _bystander(sc: dict[str, Any], metric: str) -> dict[str, Any]:
    kind = metric.removeprefix("bystander-")
    for b in sc.get("bystanders") or []:
        if b.get("kind") == kind:
            during: dict[str, Any] = b.get("during") or {}
            return during
    return {}


def pooled(runs: Iterable[Run], metrics: Iterable[str] = METRICS) -> dict[Key, Array]:
    """Every sample of each key, pooled over rounds and repeated runs."""
    out: dict[Key, list[float]] = defaultdict(list)
    wanted = list(metrics)
    for run in runs:
        for metric in wanted:
            for key, values in run_series(run, metric):
                out[key].extend(values)
    return {k: np.asarray(out[k], dtype=np.float64) for k in sorted(out, key=sort_key)}


def round_medians(runs: Iterable[Run], key: Key) -> list[float]:
    """The median of each round's samples for one key (drift between rounds)."""
    by_round: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for k, values in run_series(run, key.metric):
            if k == key:
                by_round[run.round].extend(values)
    return [float(np.median(v)) for _, v in sorted(by_round.items())]
