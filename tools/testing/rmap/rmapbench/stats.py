"""Summary statistics of latency samples (nanoseconds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Percentiles use numpy's default linear interpolation (type 7, as R and
# most benchmark tools do), so p50 of an even count is the midpoint.
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
    a = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, PERCENTILES)
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return Summary(
        count=int(a.size),
        min_ns=int(a.min()),
        p50_ns=round(float(p50)),
        p90_ns=round(float(p90)),
        p99_ns=round(float(p99)),
        max_ns=int(a.max()),
        mean_ns=round(float(a.mean())),
        stddev_ns=round(std),
    )


def format_ns(ns: float) -> str:
    """Human units for diagnostics: 812 ns, 12.3 us, 4.56 ms, 1.23 s."""
    # Round to the three digits shown first, so 999999 ns is "1 ms", not "1e+03 us".
    ns = float(f"{ns:.3g}")
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.0f} ns"
