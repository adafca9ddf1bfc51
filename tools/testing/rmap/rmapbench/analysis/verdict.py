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

Between runs (compare_runs, what compare and ab use): the run - one
program in one boot - is the unit of replication. Samples of one run share
its layout and host state, so 20 of them are not 20 replications. The
interval of the ratio is a two-level bootstrap (runs, then samples within
runs; one level when a side has one run), and to it is added in log space
the between-run spread: the larger of the spread the runs themselves show
and the documented run-to-run noise floor of the metric (NOISE_FLOOR: the
standard deviation of log(run median) between identical runs). The
p-value is the normal one of log(ratio) over that combined standard
error. With one run a side the runs' own spread is unknown and the floor
alone stands for it (the same rule, a one-level interval), so a change is
significant only well beyond it: a factor of 3.6 at the defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import special

from rmapbench.analysis import inference
from rmapbench.analysis.inference import Array

ALPHA = 0.01
MIN_EFFECT = 0.05
# pyperf warns when the standard deviation is more than 10% of the mean, and
# we when a side has fewer than 10 samples: a rank test on fewer rarely
# reaches p < 0.01 and a bootstrap of a median from so few is coarse.
MAX_CV = 0.10
MIN_SAMPLES = 10

# Run-to-run noise floor per metric family: the standard deviation of
# log(median of a run) between runs with identical settings, measured on
# stock 6.12 under TCG on the 2-CPU host (docs/analysis.md): four runs of
# `ksm --pages 2000 --split 2 --samples 8` in two boots (the ab guest test
# with max_page_sharing=256 on one side) gave 0.34 for the pooled walk,
# 0.36 for try_to_migrate and remove_migration_ptes, 0.35 for the syscall
# (sd over the four runs); identical runs in one
# boot differed by up to 2.2x. A per-caller walk metric
# ("walk:try_to_migrate") uses its family's ("walk").
NOISE_FLOOR = {"walk": 0.35, "syscall": 0.35}
DEFAULT_FLOOR = 0.35
Z95 = 1.959963984540054

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
    noise_floor: float | None = None  # --noise-floor: every metric's, instead of NOISE_FLOOR


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
        sd / mean if mean else (0.0 if sd == 0 else float("inf")),
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
    method: str = "samples"  # samples (independent) | runs (two-level, with the floor)
    base_runs: int = 1
    new_runs: int = 1
    between_run_sd: float | None = None  # log scale, what the interval and p allow for
    noise_floor: float | None = None  # the metric's documented floor (log scale)
    pvalue_samples: float | None = None  # Mann-Whitney U, samples taken as independent

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
    nan = float("nan")
    if not b.count or not n.count:
        return Comparison(b, n, nan, nan, nan, nan, NO_DATA, warnings)
    # A median of 0 ns is a clock too coarse for the walks (1000 ns from
    # text timestamps): no ratio to take, and none to call a change.
    zero = [label for label, side in (("base", b), ("new", n)) if side.median <= 0]
    if zero:
        warnings += [f"{w}: median 0 ns (below the clock's resolution): no ratio" for w in zero]
        return Comparison(b, n, nan, nan, nan, nan, NO_DATA, warnings)
    ci = inference.bootstrap_median_ratio(base, new, resamples=t.resamples, seed=t.seed)
    p = inference.mann_whitney_u(base, new).pvalue
    return Comparison(
        b, n, ci.estimate, ci.low, ci.high, p, decide(ci.estimate, ci.low, ci.high, p, t), warnings
    )


def noise_floor(metric: str) -> float:
    return NOISE_FLOOR.get(metric.split(":", 1)[0], DEFAULT_FLOOR)


def between_run_sd(base_runs: list[Array], new_runs: list[Array]) -> float | None:
    """Pooled standard deviation of log(run median) within each side (None
    when no side has two runs)."""
    ss, dof = 0.0, 0
    for runs in (base_runs, new_runs):
        logs = np.log([float(np.median(r)) for r in runs if r.size and np.median(r) > 0])
        if logs.size > 1:
            ss += float(((logs - logs.mean()) ** 2).sum())
            dof += logs.size - 1
    return float(np.sqrt(ss / dof)) if dof else None


def compare_runs(
    base_runs: list[Array], new_runs: list[Array], t: Thresholds | None = None,
    metric: str = "walk",
) -> Comparison:  # fmt: skip
    """NEW against BASE with the run as the unit of replication (module
    docstring): two-level bootstrap (one level when a side has one run),
    widened by the between-run spread (never below the metric's noise
    floor), p from the combined error."""
    t = t or Thresholds()
    b_runs = [r for r in base_runs if r.size]
    n_runs = [r for r in new_runs if r.size]
    base = np.concatenate(b_runs) if b_runs else np.array([])
    new = np.concatenate(n_runs) if n_runs else np.array([])
    c = compare(base, new, t)
    floor = t.noise_floor if t.noise_floor is not None else noise_floor(metric)
    out = replace(c, method="runs", base_runs=len(b_runs), new_runs=len(n_runs), noise_floor=floor)
    if c.verdict == NO_DATA:
        return out
    one_run = min(len(b_runs), len(n_runs)) < 2
    if one_run:
        # The samples' one-level interval; the floor stands for the
        # between-run spread no side can show.
        ci = inference.Interval(c.ratio, c.ci_low, c.ci_high)
        observed = None
        side = "base" if len(b_runs) < 2 else "new"
        factor = np.exp(one_run_change(floor, t.alpha))
        out = replace(
            out,
            warnings=[
                *out.warnings,
                f"{side}: one run: between-run variation unknown; the {metric} noise floor "
                f"({floor:.2f}) stands for it: significant only beyond x{factor:.2f} or "
                f"/{factor:.2f}",
            ],
        )
    else:
        ci = inference.two_level_median_ratio(b_runs, n_runs, resamples=t.resamples, seed=t.seed)
        observed = between_run_sd(b_runs, n_runs)
    sd = max(floor, observed or 0.0)
    spread = sd * np.sqrt(1 / len(b_runs) + 1 / len(n_runs))
    est = np.log(ci.estimate) if ci.estimate > 0 else -np.inf
    lo_b = np.log(max(ci.low, 1e-300)) - est
    hi_b = np.log(max(ci.high, 1e-300)) - est
    low = float(np.exp(est - np.hypot(lo_b, Z95 * spread)))
    high = float(np.exp(est + np.hypot(hi_b, Z95 * spread)))
    se = float(np.hypot((hi_b - lo_b) / (2 * Z95), spread))
    p = float(2 * special.ndtr(-abs(est) / se)) if se > 0 and np.isfinite(est) else 0.0
    return replace(
        out,
        ratio=ci.estimate,
        ci_low=low,
        ci_high=high,
        pvalue=p,
        verdict=decide(ci.estimate, low, high, p, t),
        between_run_sd=sd,
        pvalue_samples=c.pvalue,
    )


def one_run_change(floor: float, alpha: float = ALPHA) -> float:
    """The smallest change (log ratio) one run a side can call significant
    at alpha, however many samples: the floor's part of the error alone
    (a difference of two runs has sd floor x sqrt 2). 2.58 x 0.35 x 1.41
    = 1.28, a factor of 3.6 with the defaults; identical runs that vary by
    the floor exceed it in alpha of pairs."""
    return float(-special.ndtri(alpha / 2) * floor * np.sqrt(2))


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
