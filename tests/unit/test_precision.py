"""--precision's stopping rule (ksft/precision.py) on synthetic samples:
the order-statistic interval of the median against scipy, where the rule
stops and why, and the options."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from rmapbench.bench import cases
from rmapbench.ksft import options, precision
from rmapbench.ksft.cli import UsageError


@pytest.mark.parametrize("n", [6, 7, 10, 20, 30, 31, 60, 100, 250, 1000])
def test_ranks_are_the_tightest_with_95_percent(n: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    j, k = precision.median_ci_ranks(n)  # type: ignore[misc]
    assert k == n - j + 1
    cover = 1 - 2 * stats.binom.cdf(j - 1, n, 0.5)
    assert cover >= 0.95 and precision.coverage(n, j) == pytest.approx(cover)
    # One rank further in would fall below 95%.
    assert 1 - 2 * stats.binom.cdf(j, n, 0.5) < 0.95


def test_too_few_for_an_interval() -> None:
    assert precision.median_ci_ranks(5) is None
    assert precision.median_ci([1.0, 2.0]) is None
    assert precision.median_ci(list(range(100))) == (39.0, 60.0)  # ranks 40 and 61


def test_coverage_on_draws() -> None:
    # The interval covers the true median of a skewed distribution about
    # 95% of the time (at least, being conservative).
    rng = random.Random(7)
    true_median = 1.0  # lognormvariate(0, s) has median e^0
    hits = 0
    for _ in range(400):
        ci = precision.median_ci([rng.lognormvariate(0, 1) for _ in range(40)])
        assert ci is not None
        hits += ci[0] <= true_median <= ci[1]
    assert 0.93 <= hits / 400 <= 0.995


def test_tight_samples_stop_at_the_minimum() -> None:
    rng = random.Random(1)
    rule = precision.Rule(5.0, min_samples=10, max_samples=300)
    values: list[float] = []
    n = 0
    while True:
        n += 1
        values += [rng.gauss(1e6, 2e4), rng.gauss(1e6, 2e4)]  # two walks a sample, cv 2%
        if rule.decide(values, n):
            break
    assert n == 10 and rule.stopped == "precision"
    e = rule.entry()
    assert e["rule"] == "precision" and e["stopped"] == "precision" and e["samples"] == 10
    assert e["halfwidth_pct"] <= 5 and e["ci_low_ns"] <= e["median_ns"] <= e["ci_high_ns"]
    assert "within 5%" in rule.line() and rule.line().startswith("sampling: 10 samples;")


def test_noisy_samples_stop_later_or_at_the_maximum() -> None:
    rng = random.Random(2)
    wide = precision.Rule(5.0, min_samples=10, max_samples=500)
    narrow = precision.Rule(0.5, min_samples=10, max_samples=50)
    values: list[float] = []
    stopped_wide = None
    for n in range(1, 501):
        values.append(rng.lognormvariate(0, 0.5) * 1e5)
        if stopped_wide is None and wide.decide(values, n):
            stopped_wide = n
        if n <= 50:
            narrow.decide(values, n)
    assert stopped_wide is not None and 30 < stopped_wide < 500
    assert wide.stopped == "precision"
    assert narrow.stopped == "max-samples" and narrow.detail["samples"] == 50
    assert "--max-samples 50 reached" in narrow.line()


def test_stopper_skips_the_warmup() -> None:
    rule = precision.Rule(50.0, min_samples=6, max_samples=8)
    stop = precision.stopper(rule, lambda ss: [s.ns for s in ss if not s.warmup])
    samples: list[SimpleNamespace] = []
    stopped_at = None
    for i in range(20):
        samples.append(SimpleNamespace(warmup=i < 2, ns=1000 if i >= 2 else 10**9))
        if stop(samples):
            stopped_at = len(samples)
            break
    assert stopped_at == 2 + 6 and rule.stopped == "precision"
    assert precision.fixed_entry(30) == {"rule": "fixed", "samples": 30, "stopped": "count"}


def parse(*argv: str) -> options.Options:
    return options.parse("rmap_ksm.py", list(argv), "ksm", cases.policies())


def test_options() -> None:
    d = parse()
    assert d.samples == 30 and d.precision is None and d.max_samples is None
    o = parse("--precision", "5", "--min-samples", "4", "--max-samples", "40")
    assert (o.precision, o.min_samples, o.max_samples) == (5.0, 4, 40)
    for bad in (["--min-samples", "3"], ["--max-samples", "3"],
                ["--precision", "5", "--min-samples", "50", "--max-samples", "40"],
                ["--precision", "5", "--max-samples", "5"],
                ["--precision", "0"], ["--precision", "5", "--backend", "all"],
                ["--samples", "30", "--precision", "5"]):
        with pytest.raises((UsageError, SystemExit)):
            parse(*bad)


def test_bimodal_walks_are_judged_per_walk() -> None:
    # A migration's two walks: try_to_migrate about 100 us, the remove walk
    # about 15 us. Pooled, the median sits between the modes and its
    # interval spans both; per walk, each is tight.
    rng = random.Random(3)
    first = [rng.gauss(100e3, 3e3) for _ in range(12)]
    second = [rng.gauss(15e3, 0.4e3) for _ in range(12)]
    pooled = precision.Rule(5.0, min_samples=10)
    assert pooled.decide([v for pair in zip(first, second, strict=True) for v in pair], 12) is None
    grouped = precision.Rule(5.0, min_samples=10)
    assert grouped.decide([first, second], 12) == "precision"
    assert grouped.detail["groups"] == 2 and len(grouped.detail["group_halfwidth_pct"]) == 2
