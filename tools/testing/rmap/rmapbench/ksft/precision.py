"""--precision PCT: sample until the walk median is known to within PCT%.

The interval is the distribution-free one for a median from order
statistics: with n values sorted, [x(j), x(n-j+1)] covers the population
median with probability P(j <= B <= n-j), B ~ Binomial(n, 1/2), whatever
the distribution; j is the largest rank that keeps that at least 95%. It
needs no resampling and no scipy (the guest has neither numpy nor scipy):
the binomial tail is summed with math.comb. A case stops once, after at
least --min-samples measured samples, the interval lies within +/-PCT% of
the median, or at --max-samples, and records which (`sampling` in the
result, docs/json.md). Without --precision the fixed --samples count runs,
as it always has. Standard library only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

CONFIDENCE = 0.95
MIN_SAMPLES_DEFAULT = 10
MAX_SAMPLES_DEFAULT = 300


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks (j, n-j+1) of the order statistics bounding the
    median with at least `confidence`; None when n is too small for any
    (n < 6 at 95%)."""
    total = 2**n
    want = round(confidence * 10**6)
    best = None
    comb = 1  # C(n, j-1)
    cdf = 1  # sum of C(n, i) for i < j: P(B <= j-1) in units of 2^-n
    for j in range(1, (n + 1) // 2 + 1):
        # Coverage of [x(j), x(n-j+1)] is 1 - 2 P(B <= j-1), compared exactly.
        if (total - 2 * cdf) * 10**6 < want * total:
            break
        best = j
        comb = comb * (n - j + 1) // j  # C(n, j)
        cdf += comb
    return (best, n - best + 1) if best else None


def coverage(n: int, j: int) -> float:
    """P(x(j) <= median <= x(n-j+1)) = 1 - 2 P(B <= j-1), B ~ Bin(n, 1/2)."""
    return float(1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2**n)


def median_ci(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The distribution-free confidence interval of the median, or None."""
    ranks = median_ci_ranks(len(values), confidence)
    if ranks is None:
        return None
    s = sorted(values)
    return float(s[ranks[0] - 1]), float(s[ranks[1] - 1])


@dataclass
class Rule:
    """The stopping rule of one case: checked after every measured sample
    on the latencies so far (`values` turns the samples into them)."""

    pct: float
    min_samples: int = MIN_SAMPLES_DEFAULT
    max_samples: int = MAX_SAMPLES_DEFAULT
    confidence: float = CONFIDENCE
    stopped: str | None = None  # "precision" | "max-samples"
    detail: dict[str, Any] = field(default_factory=dict)

    def decide(self, values: Sequence[float] | Sequence[Sequence[float]], measured: int
               ) -> str | None:  # fmt: skip
        """Why to stop after `measured` samples (None: go on). values are
        the latencies so far, or groups of them (each walk of a sample in
        its own group: a migration's try_to_migrate and remove walks differ
        several-fold, and the median of the two together sits between the
        modes, where no interval is ever narrow); every group's median must
        be within PCT%."""
        if measured < self.min_samples:
            return None
        groups: list[list[float]] = []
        if values and isinstance(values[0], Sequence):
            groups = [[float(v) for v in g] for g in values if isinstance(g, Sequence)]
        else:
            groups = [[float(v) for v in values if not isinstance(v, Sequence)]]
        groups = [g for g in groups if g] or [[]]
        halves: list[float | None] = []
        first: dict[str, Any] = {}
        for g in groups:
            ci = median_ci(g, self.confidence)
            med = statistics.median(g) if g else None
            half = max(med - ci[0], ci[1] - med) / med * 100 if ci is not None and med else None
            halves.append(half)
            if not first:
                first = {"median_ns": med, "ci_low_ns": ci[0] if ci else None,
                         "ci_high_ns": ci[1] if ci else None}  # fmt: skip
        worst = None if any(h is None for h in halves) else max(h for h in halves if h is not None)
        self.detail = {
            "samples": measured,
            "values": sum(len(g) for g in groups),
            "groups": len(groups),
            **first,
            "halfwidth_pct": round(worst, 2) if worst is not None else None,
            "group_halfwidth_pct": [round(h, 2) if h is not None else None for h in halves],
        }
        if worst is not None and worst <= self.pct:
            self.stopped = "precision"
        elif measured >= self.max_samples:
            self.stopped = "max-samples"
        return self.stopped

    def entry(self) -> dict[str, Any]:
        """The result's `sampling` object."""
        return {
            "rule": "precision",
            "precision_pct": self.pct,
            "confidence": self.confidence,
            "min_samples": self.min_samples,
            "max_samples": self.max_samples,
            "stopped": self.stopped or "not-finished",
            **self.detail,
        }

    def line(self) -> str:
        d = self.detail
        n = d.get("samples", 0)
        half = d.get("halfwidth_pct")
        where = f"+/-{half:.1f}%" if half is not None else "no interval yet"
        if self.stopped == "precision":
            why = (
                f"the {self.confidence:.0%} interval of the walk median is {where}, "
                f"within {self.pct:g}%"
            )
        elif self.stopped == "max-samples":
            why = (
                f"--max-samples {self.max_samples} reached; the interval is {where}, "
                f"not within {self.pct:g}%"
            )
        else:
            why = f"stopped early ({where})"
        return f"sampling: {n} samples; {why}"


def fixed_entry(samples: int) -> dict[str, Any]:
    """`sampling` of a fixed --samples run."""
    return {"rule": "fixed", "samples": samples, "stopped": "count"}


# The rule of this program's case (None: fixed count), for the document.
CURRENT: Rule | None = None


def stopper(
    rule: Rule, values: Callable[[list[Any]], Sequence[Any]]
) -> Callable[[list[Any]], bool]:
    """measure.run's stop callback: `values` gives the latencies of the
    samples so far (warm-up excluded by it), checked after each measured one."""

    def stop(samples: list[Any]) -> bool:
        measured = sum(1 for s in samples if not s.warmup)
        if measured <= 0:
            return False
        return rule.decide(values(samples), measured) is not None

    return stop
