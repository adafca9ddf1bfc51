"""Tests of rmapbench.ksft.stats against numpy and scipy on fixed data."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from scipy import stats as sps
from scipy.stats import mstats

from rmapbench.ksft.stats import EMPTY, PERCENTILES, Summary, format_ns, summarize

# Walk latencies of the recorded KSM trace (ns), and some other shapes.
KSM = [60293540, 110240926, 54471434, 114915557, 59212546, 121948037, 75792703, 123130634,
       57246480, 106578300, 57108569, 105921702, 54939964, 110583590]
DATA = [
    KSM,
    [3452962, 455260, 175180, 35837, 117461, 37581, 122811, 24747, 122190, 52820, 154751,
     43502, 139984, 25548],
    list(range(1, 101)),
    [10, 20, 30, 40],
    [5, 1, 4, 2, 3],
    [7, 7, 7],
    [1, 1_000_000_000],
]


def type7(data: list[int], q: float) -> float:
    """Hyndman-Fan type 7 through scipy's mquantiles (alphap = betap = 1)."""
    return float(mstats.mquantiles(data, prob=[q / 100], alphap=1, betap=1)[0])


@pytest.mark.parametrize("data", DATA)
def test_summarize_against_numpy_and_scipy(data: list[int]) -> None:
    s = summarize(data)
    a = np.array(data, dtype=np.float64)
    assert s.count == len(data)
    assert s.min_ns == min(data)
    assert s.max_ns == max(data)
    for q, got in zip(PERCENTILES, (s.p50_ns, s.p90_ns, s.p99_ns), strict=True):
        assert abs(got - type7(data, q)) <= 0.5
        assert abs(got - float(np.percentile(a, q, method="linear"))) <= 0.5
    assert abs(s.mean_ns - float(sps.tmean(data))) <= 0.5
    if len(set(data)) > 1:  # scipy warns about the variance of identical values
        assert abs(s.stddev_ns - float(sps.tstd(data))) <= 0.5  # ddof=1
    assert abs(s.stddev_ns - statistics.stdev(data)) <= 0.5
    assert all(isinstance(v, int) for v in s.as_dict().values())


def test_percentiles_are_type_7() -> None:
    # p50 of an even count is the midpoint; p90 and p99 interpolate linearly
    # between order statistics at (n - 1) * q.
    s = summarize([10, 20, 30, 40])
    assert (s.p50_ns, s.p90_ns, s.p99_ns) == (25, 37, 40)  # 39.7 rounds to 40
    s = summarize(list(range(1, 101)))
    assert (s.p50_ns, s.p90_ns, s.p99_ns) == (50, 90, 99)  # 50.5, 90.1, 99.01
    assert summarize([5, 1, 4, 2, 3]).p50_ns == 3  # order does not matter


def test_stddev_is_the_sample_stddev() -> None:
    s = summarize([2, 4, 4, 4, 5, 5, 7, 9])
    assert s.mean_ns == 5
    assert s.stddev_ns == round(statistics.stdev([2, 4, 4, 4, 5, 5, 7, 9]))  # 2.138 -> 2
    s = summarize([0, 1000])
    assert s.stddev_ns == 707  # ddof=1: 707.1; ddof=0 would be 500


def test_single_sample() -> None:
    assert summarize([123456]) == Summary(
        count=1, min_ns=123456, p50_ns=123456, p90_ns=123456, p99_ns=123456,
        max_ns=123456, mean_ns=123456, stddev_ns=0,
    )


def test_empty() -> None:
    assert summarize([]) == EMPTY
    assert EMPTY.as_dict() == {
        "count": 0, "min_ns": 0, "p50_ns": 0, "p90_ns": 0, "p99_ns": 0, "max_ns": 0,
        "mean_ns": 0, "stddev_ns": 0,
    }


def test_as_dict_keys_in_order() -> None:
    assert list(summarize(KSM).as_dict()) == [
        "count", "min_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns", "mean_ns", "stddev_ns"]


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0 ns"),
    (1, "1 ns"),
    (812, "812 ns"),
    (999, "999 ns"),
    (1_000, "1 us"),
    (12_345, "12.3 us"),
    (123_456, "123 us"),
    (4_560_000, "4.56 ms"),
    (60_293_540, "60.3 ms"),
    (123_130_634, "123 ms"),
    (1_230_000_000, "1.23 s"),
    (75_000_000_000, "75 s"),
    (12.7, "13 ns"),
    (-812, "-812 ns"),
    (-4_560_000, "-4.56 ms"),
])
def test_format_ns(ns: float, text: str) -> None:
    assert format_ns(ns) == text


@pytest.mark.parametrize(("ns", "text"), [
    (999.6, "1 us"),
    (999_499, "999 us"),
    (999_500, "1 ms"),
    (999_999, "1 ms"),
    (999_999_999, "1 s"),
    (-999_999, "-1 ms"),
])
def test_format_ns_near_a_unit_boundary(ns: float, text: str) -> None:
    # Rounding to three digits can reach the next unit: never "1e+03 us".
    assert format_ns(ns) == text
