"""PNG plots with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from rmapbench.analysis.inference import Array, PowerFit

# Labels are case, kernel and directory names: text, never mathtext ($...$).
matplotlib.rcParams["text.parse_math"] = False

DPI = 100
SIZE = (7.0, 4.2)


def cdf(path: Path, title: str, series: Sequence[tuple[str, Array]], xlabel: str) -> Path:
    """Empirical CDF of each series' latencies (ms), log x axis."""
    fig, ax = plt.subplots(figsize=SIZE)
    for label, values in series:
        x = np.sort(values) / 1e6
        y = np.arange(1, x.size + 1) / x.size
        # A log axis has no 0 (a walk below the clock's resolution): the
        # line starts at the share of those, at the first latency above.
        shown = x > 0
        ax.step(x[shown], y[shown], where="post",
                label=f"{label} (n={x.size}, p50 {np.median(x):.3g} ms)")  # fmt: skip
    _log_scale(ax, "x", [v for _, v in series])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of samples")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _log_scale(ax: Any, axis: str, series: Sequence[Array]) -> None:
    """A log axis, unless no value is above 0 (then a linear one: matplotlib
    would warn that it cannot log-scale, on the command's stderr)."""
    if any((np.asarray(v) > 0).any() for v in series):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


@dataclass
class Curve:
    label: str
    xs: list[float]
    series: list[Array]
    fit: PowerFit | None = None


def sweep_curve(path: Path, title: str, name: str, curves: Sequence[Curve]) -> Path:
    """p50 per point with the 25-75% range as error bars, every sample as a
    faint dot, and the fitted power law, on log-log axes; one curve per
    value of the other varied parameters."""
    fig, ax = plt.subplots(figsize=SIZE)
    for n, c in enumerate(curves):
        color = f"C{n % 10}"
        x = np.asarray(c.xs, dtype=np.float64)
        p25, p50, p75 = (
            np.array([np.percentile(s, q) for s in c.series]) / 1e6 for q in (25, 50, 75)
        )
        for xi, s in zip(x, c.series, strict=True):
            ax.scatter(np.full(s.size, xi), s / 1e6, s=8, alpha=0.25, color=color)
        prefix = f"{c.label}: " if c.label else ""
        ax.errorbar(
            x,
            p50,
            yerr=[p50 - p25, p75 - p50],
            fmt="o",
            capsize=4,
            color=color,
            label=f"{prefix}p50 (25-75%)",
        )
        e = next((e for e in c.fit.exponents if e.name == name), None) if c.fit else None
        if c.fit is not None and e is not None and len(c.fit.exponents) == 1:
            fit = c.fit
            grid = np.geomspace(x.min(), x.max(), 50)
            ax.plot(
                grid,
                [fit.predict({name: g}) / 1e6 for g in grid],
                "-",
                color=color,
                label=f"{prefix}fit {name}^{e.slope:.2f} [{e.low:.2f}, {e.high:.2f}]",
            )
    ax.set_xscale("log")
    _log_scale(ax, "y", [s for c in curves for s in c.series])
    ax.set_xlabel(name)
    ax.set_ylabel("walk latency (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
