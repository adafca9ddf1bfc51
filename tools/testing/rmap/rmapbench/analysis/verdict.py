"""Is NEW different from BASE? The decision rule, and pyperf-style warnings
when a side is too noisy to conclude anything.

A change is significant when all four hold (documented in docs/analysis.md):
  - the two-sided Mann-Whitney U p-value is below ALPHA (0.01),
  - the bootstrap 95% interval of median(NEW)/median(BASE) excludes 1,
  - the median moved by at least MIN_EFFECT (5%),
  - and, when both sides ran in two or more rounds (ab), every round agrees:
    its median ratio moved by at least MIN_EFFECT the same way. Samples of
    one run share that run's layout (which KSM page the target merged into,
    with how many sharers), so they are not independent across runs; a run
    that drifted can make the pooled test significant on its own.
Latencies: lower is better, so a significant ratio below 1 is "improved".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from rmapbench.analysis import inference
from rmapbench.analysis.inference import Array

ALPHA = 0.01
MIN_EFFECT = 0.05
# pyperf warns when the standard deviation is more than 10% of the mean, and
# we when a side has fewer than 10 samples: a rank test on fewer rarely
# reaches p < 0.01 and a bootstrap of a median from so few is coarse.
MAX_CV = 0.10
MIN_SAMPLES = 10

IMPROVED = "improved"
REGRESSED = "regressed"
NO_CHANGE = "no significant change"
NO_DATA = "no data"


@dataclass(frozen=True)
class Thresholds:
    alpha: float = ALPHA
    min_effect: float = MIN_EFFECT
    resamples: int = inference.RESAMPLES
    seed: int = inference.SEED


@dataclass(frozen=True)
class Side:
    count: int
    median: float
    p99: float
    mean: float
    cv: float  # standard deviation (ddof=1) over the mean


def describe(samples: Array) -> Side:
    if samples.size == 0:
        return Side(0, float("nan"), float("nan"), float("nan"), float("nan"))
    mean = float(samples.mean())
    sd = float(samples.std(ddof=1)) if samples.size > 1 else 0.0
    return Side(
        int(samples.size),
        float(np.median(samples)),
        float(np.percentile(samples, 99)),
        mean,
        sd / mean if mean else float("inf"),
    )


def noise_warnings(label: str, side: Side) -> list[str]:
    """Why this side's numbers may not support a conclusion (pyperf's style)."""
    out = []
    if side.count < MIN_SAMPLES:
        out.append(f"{label}: only {side.count} samples (fewer than {MIN_SAMPLES})")
    if side.count > 1 and side.cv > MAX_CV:
        out.append(f"{label}: unstable: stddev is {side.cv:.0%} of the mean (over {MAX_CV:.0%})")
    return out


@dataclass(frozen=True)
class Comparison:
    base: Side
    new: Side
    ratio: float  # median(new) / median(base)
    ci_low: float
    ci_high: float
    pvalue: float
    verdict: str
    warnings: list[str] = field(default_factory=list)

    @property
    def change(self) -> float:
        """Relative change of the median, e.g. -0.93 for 93% lower."""
        return self.ratio - 1

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change": self.change}


def decide(ratio: float, low: float, high: float, pvalue: float, t: Thresholds) -> str:
    if pvalue >= t.alpha or low <= 1 <= high or abs(ratio - 1) < t.min_effect:
        return NO_CHANGE
    return IMPROVED if ratio < 1 else REGRESSED


def compare(base: Array, new: Array, t: Thresholds | None = None) -> Comparison:
    t = t or Thresholds()
    b, n = describe(base), describe(new)
    warnings = [*noise_warnings("base", b), *noise_warnings("new", n)]
    if not b.count or not n.count:
        nan = float("nan")
        return Comparison(b, n, nan, nan, nan, nan, NO_DATA, warnings)
    ci = inference.bootstrap_median_ratio(base, new, resamples=t.resamples, seed=t.seed)
    p = inference.mann_whitney_u(base, new).pvalue
    return Comparison(
        b, n, ci.estimate, ci.low, ci.high, p, decide(ci.estimate, ci.low, ci.high, p, t), warnings
    )


def across_rounds(
    c: Comparison, base_rounds: list[float], new_rounds: list[float], t: Thresholds
) -> Comparison:
    """Keep a significant verdict only if every paired round shows it."""
    if c.verdict not in (IMPROVED, REGRESSED) or min(len(base_rounds), len(new_rounds)) < 2:
        return c
    ratios = [n / b for b, n in zip(base_rounds, new_rounds, strict=False) if b > 0]
    if c.verdict == IMPROVED:
        agree = all(r <= 1 - t.min_effect for r in ratios)
    else:
        agree = all(r >= 1 + t.min_effect for r in ratios)
    if agree:
        return c
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    return replace(
        c,
        verdict=NO_CHANGE,
        warnings=[*c.warnings, f"new: rounds disagree (round ratios {shown}); not significant"],
    )


def regression_beyond(c: Comparison, max_regression_pct: float) -> bool:
    """--max-regression: a significant regression larger than PCT percent."""
    return c.verdict == REGRESSED and c.change * 100 > max_regression_pct
