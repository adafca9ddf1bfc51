"""The statistics behind compare, ab and sweep.

scipy.stats does what it has: the percentile bootstrap of a ratio of two
medians (stats.bootstrap), the Mann-Whitney U test (stats.mannwhitneyu)
and the one-parameter log-log fit (stats.linregress). Written out here is
only what it lacks: the two-level (hierarchical) bootstrap over runs and
the samples within them, and the least-squares fit with several exponents.
tests/unit/test_analysis_stats.py checks them against references.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
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
    pvalue: float = float("nan")  # two-level bootstrap only: of the ratio being 1

    def excludes(self, value: float) -> bool:
        return value < self.low or value > self.high


def _median_ratio(b: Array, n: Array, axis: int = -1) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.median(n, axis=axis) / np.median(b, axis=axis))


def bootstrap_median_ratio(
    base: Sequence[float] | Array,
    new: Sequence[float] | Array,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """median(new) / median(base) with a percentile bootstrap interval
    (scipy.stats.bootstrap: each side resampled on its own, with
    replacement, from numpy's PCG64 seeded with `seed`). It treats every
    sample as independent: right within one run, not across runs
    (two_level_median_ratio)."""
    b, n = as_array(base), as_array(new)
    if b.size == 0 or n.size == 0:
        raise ValueError("both sides need samples")
    estimate = float(np.median(n) / np.median(b))
    if b.size < 2 or n.size < 2 or (np.ptp(b) == 0 and np.ptp(n) == 0):
        return Interval(estimate, estimate, estimate)  # nothing to resample
    # A resample whose base median is 0 has an infinite ratio: the upper
    # end of the interval is then unbounded, which is no error to warn of
    # (scipy's standard error of such resamples warns of inf - inf).
    with np.errstate(divide="ignore", invalid="ignore"):
        res = sps.bootstrap(
            (b, n),
            _median_ratio,
            n_resamples=resamples,
            batch=_batch(resamples, b.size + n.size),  # both sides drawn per resample
            confidence_level=confidence,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(seed),
        )
    ci = res.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high))


# Values one vectorised resampling step may draw (8 bytes each, in a few
# arrays at once: some 150 MB).
# A run of --samples 100000 resampled 10000 times at once would need 8 GB.
MAX_RESAMPLED = 5_000_000


def _batch(resamples: int, per_resample: int) -> int | None:
    """Resamples per vectorised step so that at most MAX_RESAMPLED values
    are drawn at once; None (all at once) when that fits."""
    if resamples * per_resample <= MAX_RESAMPLED:
        return None
    return max(1, MAX_RESAMPLED // per_resample)


def _two_level_medians(runs: Sequence[Array], resamples: int, rng: np.random.Generator) -> Array:
    """Medians of `resamples` two-level resamples of one side: draw as many
    runs as there are, with replacement; within each drawn run draw as many
    samples as it has, with replacement; the median of all drawn samples.
    Drawn in batches of at most MAX_RESAMPLED values."""
    sizes = np.array([r.size for r in runs])
    width = int(sizes.max())
    padded = np.full((len(runs), width), np.nan)
    for i, r in enumerate(runs):
        padded[i, : r.size] = r
    step = _batch(resamples, len(runs) * width) or resamples
    return np.concatenate(
        [
            _two_level_batch(padded, sizes, min(step, resamples - done), rng)
            for done in range(0, resamples, step)
        ]
    )


def _two_level_batch(
    padded: Array, sizes: Array, resamples: int, rng: np.random.Generator
) -> Array:
    runs, width = padded.shape
    picked = rng.integers(0, runs, size=(resamples, runs))
    n = sizes[picked][..., None]  # (resamples, runs, 1)
    pos = np.floor(rng.random((resamples, runs, width)) * n).astype(np.int64)
    values = padded[picked[..., None], pos]
    values[np.arange(width) >= n] = np.nan  # a smaller run draws fewer
    return np.asarray(np.nanmedian(values.reshape(resamples, -1), axis=1))


def two_level_median_ratio(
    base_runs: Sequence[Sequence[float] | Array],
    new_runs: Sequence[Sequence[float] | Array],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """median(new) / median(base) of the pooled samples, with a percentile
    interval from a two-level bootstrap: runs are the unit of replication
    (one program in one boot shares a layout and a host state), so each
    resample draws runs, then samples within the drawn runs (Davison and
    Hinkley 1997, 3.8: "resampling at both stages"). The p-value is the
    two-sided bootstrap one: twice the smaller share of resampled ratios on
    either side of 1. With one run a side this is the one-level bootstrap
    (and says nothing of the runs' own variation)."""
    b = [as_array(r) for r in base_runs if len(r)]
    n = [as_array(r) for r in new_runs if len(r)]
    if not b or not n:
        raise ValueError("both sides need samples")
    estimate = float(np.median(np.concatenate(n)) / np.median(np.concatenate(b)))
    rng = np.random.default_rng(seed)
    mb = _two_level_medians(b, resamples, rng)
    mn = _two_level_medians(n, resamples, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = mn / mb
    # A resample whose base median is 0 (a clock too coarse for some walks)
    # has an infinite ratio, one whose medians are both 0 none at all: an
    # end of the interval among the infinite ones is unbounded (numpy's
    # interpolation would make it inf - inf, nan).
    ratios = ratios[~np.isnan(ratios)]
    if not ratios.size:
        return Interval(estimate, 0.0, float("inf"), 1.0)
    tail = (1 - confidence) / 2 * 100
    with np.errstate(invalid="ignore"):
        ends = np.percentile(ratios, [tail, 100 - tail])
    low, high = (float("inf") if np.isnan(x) else float(x) for x in ends)
    below, above = float(np.mean(ratios <= 1)), float(np.mean(ratios >= 1))
    return Interval(estimate, low, high, min(1.0, 2 * min(below, above)))


@dataclass(frozen=True)
class MannWhitney:
    u1: float  # U of the first sample (x), as scipy reports it
    pvalue: float  # two-sided
    method: str  # exact | asymptotic


def mann_whitney_u(x: Sequence[float] | Array, y: Sequence[float] | Array) -> MannWhitney:
    """Two-sided Mann-Whitney U test (scipy.stats.mannwhitneyu, method
    "auto": exact when either sample has at most 8 values and there are no
    ties, else the normal approximation with tie and continuity
    corrections)."""
    a, b = as_array(x), as_array(y)
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need values")
    ties = np.unique(np.concatenate([a, b])).size < a.size + b.size
    exact = min(a.size, b.size) <= 8 and not ties
    res = sps.mannwhitneyu(a, b, alternative="two-sided", method="auto")
    p = float(res.pvalue)
    return MannWhitney(float(res.statistic), 1.0 if np.isnan(p) else p,
                       "exact" if exact else "asymptotic")  # fmt: skip


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
    # One latency throughout (a clock too coarse for the walks): the
    # exponent is 0 with an interval of 0/0, no fit to show or draw.
    if np.ptp(ys) == 0:
        raise ValueError("every latency is the same: nothing to fit")
    cols = [np.log(as_array(xs[name])) for name in names]
    n, k = ys.size, len(names)
    dof = n - k - 1
    if dof < 1:
        plural = "s" if k > 1 else ""
        raise ValueError(f"{n} observations are too few for {k} exponent{plural} and an interval")
    log_y = np.log(ys)
    t = float(sps.t.ppf(0.5 + confidence / 2, dof))
    if k == 1:  # scipy's own fit
        if np.ptp(cols[0]) == 0:
            raise ValueError("the varied parameters are collinear (or constant): no fit")
        r = sps.linregress(cols[0], log_y)
        se = float(r.stderr)
        e = Exponent(names[0], float(r.slope), float(r.slope - t * se), float(r.slope + t * se), se)
        return PowerFit(float(r.intercept), [e], n, float(r.rvalue**2))
    # Several exponents: least squares by hand (scipy.stats has no multiple regression).
    design = np.column_stack([np.ones(n), *cols])
    coef, _, rank, _ = np.linalg.lstsq(design, log_y, rcond=None)
    if rank < k + 1:
        raise ValueError("the varied parameters are collinear (or constant): no fit")
    resid = log_y - design @ coef
    sse = float(resid @ resid)
    sigma2 = sse / dof
    cov = sigma2 * np.linalg.inv(design.T @ design)
    sst = float(((log_y - log_y.mean()) ** 2).sum())
    exps = []
    for j, name in enumerate(names, 1):
        se = float(np.sqrt(cov[j, j]))
        exps.append(
            Exponent(name, float(coef[j]), float(coef[j] - t * se), float(coef[j] + t * se), se)
        )
    return PowerFit(float(coef[0]), exps, n, 1 - sse / sst if sst > 0 else 1.0)
