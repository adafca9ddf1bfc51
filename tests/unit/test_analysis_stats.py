"""The analysis statistics against scipy.stats on fixed data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from rmapbench.analysis import inference

# Walk latencies (ns) of two small recorded KSM runs, 1000 and 2000 pages.
BASE = [
    62350422,
    64028491,
    31480332,
    33022077,
    61980071,
    66511200,
    35180003,
    61004822,
    32119084,
    60917000,
]
NEW = [
    89904512,
    130214801,
    67602313,
    130392130,
    63710003,
    124003311,
    62350422,
    125091881,
    62702113,
    125001277,
]


def test_bootstrap_ratio_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    base = rng.lognormal(mean=4.0, sigma=0.3, size=40)
    new = rng.lognormal(mean=3.8, sigma=0.3, size=35)
    ours = inference.bootstrap_median_ratio(base, new, resamples=20000, seed=1)

    def ratio(b: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(n, axis=axis) / np.median(b, axis=axis)

    ref = sps.bootstrap(
        (base, new),
        ratio,
        n_resamples=20000,
        method="percentile",
        rng=np.random.default_rng(2),
        vectorized=True,
    )
    assert ours.estimate == pytest.approx(np.median(new) / np.median(base))
    # Different random draws: the endpoints agree to Monte Carlo error.
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=0.02)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=0.02)


def test_bootstrap_is_seeded() -> None:
    a = inference.bootstrap_median_ratio(BASE, NEW)
    b = inference.bootstrap_median_ratio(BASE, NEW)
    assert a == b
    assert a.low <= a.estimate <= a.high


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (BASE, NEW),  # no ties, n=10: asymptotic
        (BASE[:6], NEW[:7]),  # small, no ties: exact
        ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]),
        ([3.0, 1.0, 8.0, 2.0, 9.0], [4.0, 2.5, 7.0]),
        ([1, 2, 2, 3, 3, 3], [2, 3, 4, 4, 5]),  # ties: asymptotic with tie correction
        (list(range(30)), [x + 0.5 for x in range(5, 40)]),
        ([5.0] * 5, [5.0] * 6),  # all equal
    ],
)
def test_mann_whitney_matches_scipy(x: list[float], y: list[float]) -> None:
    ours = inference.mann_whitney_u(x, y)
    ref = sps.mannwhitneyu(x, y, alternative="two-sided", method="auto")
    assert ours.u1 == pytest.approx(ref.statistic)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (3, 5), (8, 8), (4, 20)])
def test_exact_u_distribution_counts_every_ordering(n1: int, n2: int) -> None:
    """The exact p-value (now scipy's) against every ordering counted: the
    U of each of the C(n1+n2, n1) ways to give x its ranks."""
    from itertools import combinations
    from math import comb

    us = [sum(r) - n1 * (n1 - 1) // 2 for r in combinations(range(n1 + n2), n1)]
    dist = [us.count(u) for u in range(n1 * n2 + 1)]
    assert sum(dist) == comb(n1 + n2, n1)
    assert dist == dist[::-1]  # U and n1*n2 - U are equally likely
    x = np.arange(n1, dtype=float)
    y = np.arange(n1, n1 + n2, dtype=float)
    ref = sps.mannwhitneyu(x, y, method="exact")
    ours = inference.mann_whitney_u(x, y)
    u = max(ours.u1, n1 * n2 - ours.u1)
    assert ours.method == "exact"
    assert ours.pvalue == pytest.approx(ref.pvalue)
    assert ours.pvalue == pytest.approx(min(1.0, 2 * sum(dist[int(u) :]) / sum(dist)))


def test_power_fit_matches_linregress() -> None:
    rng = np.random.default_rng(3)
    pages = np.repeat([1000.0, 2000.0, 4000.0], 8)
    y = 3e4 * pages**1.05 * rng.lognormal(0, 0.2, pages.size)
    fit = inference.power_fit({"pages": pages}, y)
    ref = sps.linregress(np.log(pages), np.log(y))
    (e,) = fit.exponents
    t = sps.t.ppf(0.975, pages.size - 2)
    assert e.slope == pytest.approx(ref.slope)
    assert e.stderr == pytest.approx(ref.stderr)
    assert (e.low, e.high) == pytest.approx(
        (ref.slope - t * ref.stderr, ref.slope + t * ref.stderr)
    )
    assert fit.intercept == pytest.approx(ref.intercept)
    assert fit.r_squared == pytest.approx(ref.rvalue**2)
    assert e.low < 1.05 < e.high


def test_power_fit_two_parameters_recovers_exponents() -> None:
    rng = np.random.default_rng(4)
    grid = [(p, s) for p in (1000.0, 2000.0, 4000.0) for s in (1.0, 2.0, 4.0)]
    pages = np.repeat([g[0] for g in grid], 10)
    sharers = np.repeat([g[1] for g in grid], 10)
    y = 50 * pages**1.0 * sharers**-0.5 * rng.lognormal(0, 0.05, pages.size)
    fit = inference.power_fit({"pages": pages, "sharers": sharers}, y)
    by = {e.name: e for e in fit.exponents}
    assert by["pages"].low < 1.0 < by["pages"].high
    assert by["sharers"].low < -0.5 < by["sharers"].high


def test_power_fit_refuses_what_it_cannot_fit() -> None:
    with pytest.raises(ValueError, match="positive"):
        inference.power_fit({"x": [0.0, 1.0, 2.0]}, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="observations"):
        inference.power_fit({"x": [1.0, 2.0]}, [1.0, 2.0])
    with pytest.raises(ValueError, match="collinear"):
        inference.power_fit({"x": [1.0, 1.0, 1.0, 1.0]}, [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="every latency is the same"):
        inference.power_fit({"x": [1.0, 1.0, 2.0, 2.0]}, [5.0, 5.0, 5.0, 5.0])


def _two_level_reference(runs: list[np.ndarray], resamples: int, seed: int) -> np.ndarray:
    """The two-level bootstrap written as plainly as it is defined."""
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for i in range(resamples):
        drawn = [runs[j] for j in rng.integers(0, len(runs), len(runs))]
        out[i] = np.median(np.concatenate([r[rng.integers(0, r.size, r.size)] for r in drawn]))
    return out


def test_two_level_bootstrap_matches_a_plain_reference() -> None:
    rng = np.random.default_rng(5)
    # Three runs a side whose medians differ (a per-run offset) and sizes differ.
    base = [rng.lognormal(np.log(100) + off, 0.2, n) for off, n in ((0, 12), (0.2, 9), (-0.1, 14))]
    new = [rng.lognormal(np.log(80) + off, 0.2, n) for off, n in ((0.1, 10), (-0.2, 12), (0, 8))]
    ours = inference.two_level_median_ratio(base, new, resamples=20000, seed=3)
    mb = _two_level_reference(base, 20000, 8)
    mn = _two_level_reference(new, 20000, 9)
    low, high = np.percentile(mn / mb, [2.5, 97.5])
    pooled = np.median(np.concatenate(new)) / np.median(np.concatenate(base))
    assert ours.estimate == pytest.approx(pooled)
    assert ours.low == pytest.approx(low, rel=0.02)
    assert ours.high == pytest.approx(high, rel=0.02)
    # Wider than the one-level interval, which ignores the runs' offsets.
    one = inference.bootstrap_median_ratio(np.concatenate(base), np.concatenate(new))
    assert ours.high - ours.low > one.high - one.low


def test_two_level_bootstrap_with_one_run_is_the_one_level_one() -> None:
    rng = np.random.default_rng(6)
    b, n = rng.lognormal(4, 0.3, 30), rng.lognormal(3.9, 0.3, 25)
    two = inference.two_level_median_ratio([b], [n], resamples=20000)
    one = inference.bootstrap_median_ratio(b, n, resamples=20000)
    assert (two.low, two.high) == pytest.approx((one.low, one.high), rel=0.02)


def test_large_runs_are_resampled_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run of 100,000 samples resampled 10,000 times at once needed 8 GB
    (compare ended in MemoryError): drawn in batches, the interval is the
    same statistic, within the resampling's own noise."""
    rng = np.random.default_rng(7)
    base = [rng.lognormal(3, 0.3, 400) for _ in range(3)]
    new = [rng.lognormal(3.1, 0.3, 400) for _ in range(3)]
    whole = inference.two_level_median_ratio(base, new, resamples=2000)
    whole1 = inference.bootstrap_median_ratio(base[0], new[0], resamples=2000)
    monkeypatch.setattr(inference, "MAX_RESAMPLED", 5000)  # 4 resamples of 3 x 400 a batch
    assert inference._batch(2000, 1200) == 4
    batched = inference.two_level_median_ratio(base, new, resamples=2000)
    batched1 = inference.bootstrap_median_ratio(base[0], new[0], resamples=2000)
    assert batched.estimate == whole.estimate
    assert batched.low == pytest.approx(whole.low, rel=0.03)
    assert batched.high == pytest.approx(whole.high, rel=0.03)
    assert batched1.low == pytest.approx(whole1.low, rel=0.03)
    assert batched1.high == pytest.approx(whole1.high, rel=0.03)
