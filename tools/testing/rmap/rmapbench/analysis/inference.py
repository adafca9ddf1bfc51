"""The statistics behind compare, ab and sweep: a bootstrap interval for the
ratio of two medians, the Mann-Whitney U test and a log-log power-law fit.

Each is written out (not delegated to scipy) so the method is visible here;
tests/test_analysis_stats.py checks them against scipy.stats on fixed data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy import stats as sps

# Bootstrap defaults, part of the documented method: 10000 resamples drawn
# from numpy's PCG64 seeded with 0, so the same data gives the same interval.
RESAMPLES = 10_000
SEED = 0
CONFIDENCE = 0.95

Array = npt.NDArray[np.float64]


def as_array(samples: Sequence[float] | Array) -> Array:
    return np.asarray(samples, dtype=np.float64)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def excludes(self, value: float) -> bool:
        return value < self.low or value > self.high


def bootstrap_median_ratio(
    base: Sequence[float] | Array,
    new: Sequence[float] | Array,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """median(new) / median(base) with a percentile bootstrap interval.

    Each resample draws len(base) values from base and len(new) from new,
    with replacement and independently; the interval is the central
    `confidence` part of the resampled ratios (numpy's linear percentiles).
    """
    b, n = as_array(base), as_array(new)
    if b.size == 0 or n.size == 0:
        raise ValueError("both sides need samples")
    estimate = float(np.median(n) / np.median(b))
    rng = np.random.default_rng(seed)
    mb = np.median(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    mn = np.median(n[rng.integers(0, n.size, size=(resamples, n.size))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = mn / mb
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high))


@dataclass(frozen=True)
class MannWhitney:
    u1: float  # U of the first sample (x), as scipy reports it
    pvalue: float  # two-sided
    method: str  # exact | asymptotic


def _u_distribution(n1: int, n2: int) -> list[int]:
    """How many of the C(n1+n2, n1) orderings give U = 0, 1, ..., n1*n2 (no ties).

    The counts are the coefficients of the Gaussian binomial coefficient
    [n1+n2 choose n1]_q = prod_{i=1..n1} (1 - q^(n2+i)) / (1 - q^i),
    multiplied and divided out term by term in exact integers.
    """
    size = n1 * n2 + 1
    poly = [1] + [0] * (size - 1)
    for i in range(1, n1 + 1):
        k = n2 + i
        for j in range(size - 1, k - 1, -1):  # times (1 - q^k)
            poly[j] -= poly[j - k]
        for j in range(i, size):  # divided by (1 - q^i): running sum with stride i
            poly[j] += poly[j - i]
    return poly


def mann_whitney_u(x: Sequence[float] | Array, y: Sequence[float] | Array) -> MannWhitney:
    """Two-sided Mann-Whitney U test, choosing the method as scipy's "auto":
    exact when either sample has at most 8 values and there are no ties,
    else the normal approximation with tie correction and continuity
    correction (0.5)."""
    a, b = as_array(x), as_array(y)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need values")
    ranks = sps.rankdata(np.concatenate([a, b]))  # average ranks for ties
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    u = max(u1, n1 * n2 - u1)
    _, counts = np.unique(np.concatenate([a, b]), return_counts=True)
    ties = bool((counts > 1).any())
    if (n1 <= 8 or n2 <= 8) and not ties:
        dist = _u_distribution(n1, n2)
        total = sum(dist)
        sf = sum(dist[int(u) :]) / total  # P(U >= u)
        return MannWhitney(u1, min(1.0, 2 * sf), "exact")
    n = n1 + n2
    tie_term = float((counts.astype(np.float64) ** 3 - counts).sum())
    sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    if sigma == 0:  # every value equal
        return MannWhitney(u1, 1.0, "asymptotic")
    z = (u - n1 * n2 / 2 - 0.5) / sigma
    return MannWhitney(u1, float(min(1.0, 2 * special.ndtr(-z))), "asymptotic")


@dataclass(frozen=True)
class Exponent:
    name: str
    slope: float
    low: float
    high: float
    stderr: float


@dataclass(frozen=True)
class PowerFit:
    """log(y) = intercept + sum(slope_j * log(x_j)): y grows like prod x_j^slope_j."""

    intercept: float
    exponents: list[Exponent]
    observations: int
    r_squared: float

    def predict(self, xs: dict[str, float]) -> float:
        log_y = self.intercept + sum(e.slope * np.log(xs[e.name]) for e in self.exponents)
        return float(np.exp(log_y))


def power_fit(
    xs: Mapping[str, Sequence[float] | Array],
    y: Sequence[float] | Array,
    confidence: float = CONFIDENCE,
) -> PowerFit:
    """Least squares on log-log scales with Student t intervals for each
    exponent (n - k - 1 degrees of freedom for k parameters)."""
    names = list(xs)
    ys = as_array(y)
    if (ys <= 0).any() or any((as_array(xs[name]) <= 0).any() for name in names):
        raise ValueError("a log-log fit needs positive values")
    cols = [np.log(as_array(xs[name])) for name in names]
    n, k = ys.size, len(names)
    dof = n - k - 1
    if dof < 1:
        plural = "s" if k > 1 else ""
        raise ValueError(f"{n} observations are too few for {k} exponent{plural} and an interval")
    design = np.column_stack([np.ones(n), *cols])
    log_y = np.log(ys)
    coef, _, rank, _ = np.linalg.lstsq(design, log_y, rcond=None)
    if rank < k + 1:
        raise ValueError("the varied parameters are collinear (or constant): no fit")
    resid = log_y - design @ coef
    sse = float(resid @ resid)
    sigma2 = sse / dof
    cov = sigma2 * np.linalg.inv(design.T @ design)
    t = float(sps.t.ppf(0.5 + confidence / 2, dof))
    sst = float(((log_y - log_y.mean()) ** 2).sum())
    exps = []
    for j, name in enumerate(names, 1):
        se = float(np.sqrt(cov[j, j]))
        exps.append(
            Exponent(name, float(coef[j]), float(coef[j] - t * se), float(coef[j] + t * se), se)
        )
    return PowerFit(float(coef[0]), exps, n, 1 - sse / sst if sst > 0 else 1.0)
