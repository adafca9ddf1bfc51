"""The verdict rule on synthetic samples with a known effect and with none."""

from __future__ import annotations

import numpy as np
import pytest

from rmapbench.analysis import verdict

RNG_SEED = 11


def _draw(rng: np.random.Generator, scale: float, n: int) -> np.ndarray:
    # Right-skewed like walk latencies: lognormal, 20% spread.
    return scale * rng.lognormal(0.0, 0.2, n)


def test_known_improvement_and_regression() -> None:
    rng = np.random.default_rng(RNG_SEED)
    base = _draw(rng, 100e6, 20)
    better = _draw(rng, 100e6 / 16, 20)  # max_page_sharing 16 vs 256: ~16x fewer items
    c = verdict.compare(base, better)
    assert c.verdict == verdict.IMPROVED
    assert c.ci_high < 1 and c.pvalue < 0.01 and c.ratio < 0.2
    r = verdict.compare(better, base)
    assert r.verdict == verdict.REGRESSED and r.ci_low > 1
    assert verdict.regression_beyond(r, 50)
    assert not verdict.regression_beyond(c, 50)


def test_small_effect_below_minimum_is_no_change() -> None:
    # A 2% shift with huge samples is "significant" by p and CI, but below
    # the 5% minimum effect.
    rng = np.random.default_rng(RNG_SEED)
    base = _draw(rng, 100.0, 4000)
    new = _draw(rng, 98.0, 4000)
    c = verdict.compare(base, new, verdict.Thresholds(resamples=2000))
    assert c.pvalue < 0.01 and c.ci_high < 1
    assert c.verdict == verdict.NO_CHANGE


def test_identical_distributions_false_positive_rate() -> None:
    """No false 'improved' (or 'regressed') from identical distributions at
    the documented threshold: at most 1% of 300 seeded draws of 20 vs 20."""
    rng = np.random.default_rng(RNG_SEED)
    t = verdict.Thresholds(resamples=2000)
    calls = [
        verdict.compare(_draw(rng, 100.0, 20), _draw(rng, 100.0, 20), t).verdict for _ in range(300)
    ]
    improved = calls.count(verdict.IMPROVED) / len(calls)
    regressed = calls.count(verdict.REGRESSED) / len(calls)
    assert improved <= 0.01 and regressed <= 0.01, (improved, regressed)


def test_power_against_a_real_25_percent_change() -> None:
    """The rule is not so strict that it misses a clear effect: a 25% drop
    at 20 vs 20 samples is called improved in most draws."""
    rng = np.random.default_rng(RNG_SEED)
    t = verdict.Thresholds(resamples=2000)
    calls = [
        verdict.compare(_draw(rng, 100.0, 20), _draw(rng, 75.0, 20), t).verdict for _ in range(100)
    ]
    assert calls.count(verdict.IMPROVED) >= 80


@pytest.mark.parametrize(
    ("ratio", "low", "high", "p", "expected"),
    [
        (0.5, 0.4, 0.6, 0.001, verdict.IMPROVED),
        (1.5, 1.3, 1.7, 0.001, verdict.REGRESSED),
        (0.5, 0.4, 1.1, 0.001, verdict.NO_CHANGE),  # CI includes 1
        (0.5, 0.4, 0.6, 0.02, verdict.NO_CHANGE),  # p too large
        (0.97, 0.95, 0.99, 1e-6, verdict.NO_CHANGE),  # effect below 5%
    ],
)
def test_decide(ratio: float, low: float, high: float, p: float, expected: str) -> None:
    assert verdict.decide(ratio, low, high, p, verdict.Thresholds()) == expected


def test_noise_warnings_like_pyperf() -> None:
    steady = verdict.describe(np.full(30, 100.0) + np.arange(30) * 0.1)
    assert verdict.noise_warnings("base", steady) == []
    noisy = verdict.describe(np.array([50.0, 150.0] * 15))
    (w,) = verdict.noise_warnings("new", noisy)
    assert "unstable: stddev is" in w and "of the mean" in w
    few = verdict.describe(np.array([100.0, 101.0, 99.0]))
    assert any("only 3 samples" in w for w in verdict.noise_warnings("base", few))


def test_empty_side_is_no_data() -> None:
    c = verdict.compare(np.array([1.0, 2.0]), np.array([]))
    assert c.verdict == verdict.NO_DATA


def test_rounds_must_agree_for_a_significant_ab_verdict() -> None:
    """Pooled samples of two runs per side: one drifted run (round 2) must
    not make a change significant that round 1 does not show."""
    t = verdict.Thresholds()
    sig = verdict.Comparison(
        verdict.describe(np.ones(3)), verdict.describe(np.ones(3)),
        1.2, 1.1, 1.3, 1e-6, verdict.REGRESSED,
    )  # fmt: skip
    kept = verdict.across_rounds(sig, [100.0, 100.0], [120.0, 125.0], t)
    assert kept.verdict == verdict.REGRESSED
    dropped = verdict.across_rounds(sig, [100.0, 100.0], [140.0, 101.0], t)
    assert dropped.verdict == verdict.NO_CHANGE
    assert any("rounds disagree" in w for w in dropped.warnings)
    # One round (compare of two result directories): the pooled rule alone.
    assert verdict.across_rounds(sig, [100.0], [101.0], t).verdict == verdict.REGRESSED


def _runs(
    rng: np.random.Generator, scale: float, runs: int, n: int, between: float
) -> list[np.ndarray]:
    """Runs whose samples share a per-run offset (layout, host state)."""
    return [scale * np.exp(rng.normal(0, between)) * rng.lognormal(0, 0.2, n) for _ in range(runs)]


def test_identical_runs_are_not_flagged_though_samples_are_correlated() -> None:
    """Issue #12: 20 samples of one run are not 20 replications. Identical
    settings whose runs differ by a between-run offset of the noise
    floor's size: the samples-only test calls many of them significant,
    the run-level rule (almost) none."""
    rng = np.random.default_rng(RNG_SEED)
    t = verdict.Thresholds(resamples=1000)
    naive = runs = 0
    for _ in range(100):
        b, n = _runs(rng, 100.0, 2, 10, 0.2), _runs(rng, 100.0, 2, 10, 0.2)
        pooled = verdict.compare(np.concatenate(b), np.concatenate(n), t)
        naive += pooled.verdict != verdict.NO_CHANGE
        runs += verdict.compare_runs(b, n, t).verdict != verdict.NO_CHANGE
    assert naive >= 20, naive
    assert runs <= 2, runs


def test_one_run_a_side_needs_a_change_beyond_the_noise_floor() -> None:
    rng = np.random.default_rng(RNG_SEED)
    base = _draw(rng, 100.0, 20)
    c = verdict.compare_runs([base], [_draw(rng, 50.0, 20)])  # -50%: within the floor
    assert c.verdict == verdict.NO_CHANGE and c.pvalue_samples is not None
    assert c.pvalue_samples < 0.01 < c.pvalue
    assert c.between_run_sd == verdict.noise_floor("walk")
    assert any("between-run variation unknown" in w for w in c.warnings)
    big = verdict.compare_runs([base], [_draw(rng, 100.0 / 16, 20)])  # max_page_sharing 16
    assert big.verdict == verdict.IMPROVED and big.ci_high < 0.5


def test_one_run_a_side_flags_identical_runs_at_alpha() -> None:
    """Issue #12: identical settings, one run a side, runs differing by the
    noise floor: flagged in about alpha of pairs, never in 20."""
    rng = np.random.default_rng(RNG_SEED)
    t = verdict.Thresholds(resamples=500)
    floor = verdict.noise_floor("walk")
    flagged = 0
    for _ in range(200):
        b, n = _runs(rng, 100.0, 1, 20, floor), _runs(rng, 100.0, 1, 20, floor)
        flagged += verdict.compare_runs(b, n, t).verdict != verdict.NO_CHANGE
    assert flagged <= 6, flagged  # 1% of 200 is 2
    assert np.exp(verdict.one_run_change(floor)) == pytest.approx(3.58, abs=0.01)


def test_runs_with_a_real_effect_are_flagged() -> None:
    rng = np.random.default_rng(RNG_SEED)
    c = verdict.compare_runs(_runs(rng, 100.0, 3, 10, 0.1), _runs(rng, 100.0 / 16, 3, 10, 0.1))
    assert c.verdict == verdict.IMPROVED and c.method == "runs" and c.base_runs == 3
    assert c.between_run_sd is not None and c.between_run_sd >= verdict.noise_floor("walk")
