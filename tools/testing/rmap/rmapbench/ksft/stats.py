"""Summary statistics of latency samples (nanoseconds)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Percentiles interpolate linearly between order statistics (Hyndman-Fan
# type 7, numpy's default and R's; statistics.quantiles' "inclusive"
# method), so p50 of an even count is the midpoint. The standard library
# suffices: this runs on the measured machine, which needs no numpy.
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Summary:
    count: int
    min_ns: int
    p50_ns: int
    p90_ns: int
    p99_ns: int
    max_ns: int
    mean_ns: int
    stddev_ns: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


EMPTY = Summary(0, 0, 0, 0, 0, 0, 0, 0)


def summarize(samples: Sequence[int]) -> Summary:
    """count/min/percentiles/max/mean and the sample standard deviation
    (ddof=1; 0 for a single sample). An empty input gives all zeros."""
    if not samples:
        return EMPTY
    p50, p90, p99 = (percentile(samples, q) for q in PERCENTILES)
    return Summary(
        count=len(samples),
        min_ns=int(min(samples)),
        p50_ns=round(p50),
        p90_ns=round(p90),
        p99_ns=round(p99),
        max_ns=int(max(samples)),
        mean_ns=round(statistics.fmean(samples)),
        stddev_ns=round(statistics.stdev(samples)) if len(samples) > 1 else 0,
    )


def percentile(samples: Sequence[int], q: int) -> float:
    """The q-th percentile (1 <= q <= 99) of a non-empty sequence, type 7."""
    if len(samples) == 1:
        return float(samples[0])
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def format_ns(ns: float) -> str:
    """Human units for diagnostics: 812 ns, 12.3 us, 4.56 ms, 1.23 s."""
    # Round to the three digits shown first, so 999999 ns is "1 ms", not "1e+03 us".
    ns = float(f"{ns:.3g}")
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.0f} ns"
