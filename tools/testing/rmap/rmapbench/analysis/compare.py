"""`rmapbench compare BASE NEW`: per case, page type and metric, each side's
median and p99, the ratio NEW/BASE of the medians with its bootstrap
interval, the Mann-Whitney U p-value and a verdict (verdict.py), as text
for a mail, Markdown or JSON.

BASE and NEW are --results directories or result sets; `SET:A` picks one
side of an ab set, and an ab set alone compares its side A with side B.
Exit status: 0, 2 bad usage, 6 a significant regression beyond
--max-regression PCT.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmapbench.analysis import inference, jsonout, resultset, samples, verdict
from rmapbench.analysis.cli import (
    MAX_NOISE_FLOOR,
    MAX_RESAMPLES,
    RAW,
    Parser,
    ResultsError,
    UsageError,
    add_verbose,
    describe,
    guarded,
    integer,
    number,
)
from rmapbench.analysis.resultset import Run, Source, load
from rmapbench.analysis.verdict import Comparison, Thresholds
from rmapbench.ksft.cli import shown
from rmapbench.ksft.stats import format_ns
from rmapbench.ksft.status import EXIT_REGRESSION


@dataclass
class Side:
    """The runs standing for one side of a comparison."""

    label: str
    runs: list[Run]
    source: Source

    def kernels(self) -> list[str]:
        return sorted({str(r.doc.get("kernel", {}).get("release", "?")) for r in self.runs})

    def identity(self) -> tuple[str, str]:
        """The directory it was read from, resolved, and its side's name."""
        return resultset.identity(self.source), self.label[len(self.source.label) :]

    def describe(self) -> str:
        """Kernel, accelerator and (one side of an ab set) settings."""
        parts = [f"kernel {', '.join(self.kernels())}"]
        index = self.source.index or {}
        accel = sorted({str(b.get("accel")) for b in index.get("boots", []) if b.get("accel")})
        if accel:
            parts.append(", ".join(accel))
        sides = {r.side for r in self.runs}
        if index.get("sides") and len(sides) == 1:
            sets = index["sides"].get(sides.pop(), {}).get("set") or {}
            parts.append(" ".join(f"{k}={v}" for k, v in sets.items()) or "default settings")
        return "; ".join(parts)


@dataclass
class Row:
    key: samples.Key
    comparison: Comparison
    base_rounds: list[float]
    new_rounds: list[float]


def side_of(spec: str) -> Side:
    """PATH or PATH:SIDE (one side of an ab set)."""
    path, _, name = spec.rpartition(":")
    try:
        whole = Path(spec).exists()
    except OSError as e:  # a name too long
        raise UsageError(describe(e)) from None
    if not path or whole:
        path, name = spec, ""
    try:
        source = load(path)
    except (ValueError, OSError) as e:
        raise UsageError(describe(e)) from e
    if not name:
        return Side(source.label, source.runs, source)
    runs = [r for r in source.runs if r.side == name]
    if not runs:
        raise UsageError(f"{path}: no side {name!r} in this result set")
    return Side(f"{source.label}:{name}", runs, source)


def sides_of(specs: list[str]) -> tuple[Side, Side]:
    if len(specs) == 2:
        base, new = side_of(specs[0]), side_of(specs[1])
        if base.identity() == new.identity():  # the same directory, however spelled
            raise UsageError(
                f"BASE and NEW are the same results ({shown(specs[0])} and {shown(specs[1])}): "
                "compared with themselves they always show no change"
            )
        return base, new
    if len(specs) == 1:
        whole = side_of(specs[0])
        if whole.source.kind == "ab" and whole.label == whole.source.label:
            return side_of(specs[0] + ":A"), side_of(specs[0] + ":B")
        raise UsageError(f"{specs[0]}: give BASE and NEW (one argument only for an ab set)")
    raise UsageError("give BASE and NEW")


def compare_sides(base: Side, new: Side, metrics: list[str], t: Thresholds) -> list[Row]:
    """One row per key (and per caller of the walks): runs are the unit of
    replication (verdict.compare_runs), rounds must agree (across_rounds)."""
    b = samples.pooled(base.runs, metrics, callers=True)
    n = samples.pooled(new.runs, metrics, callers=True)
    rows = []
    for key in sorted(set(b) & set(n), key=samples.sort_key):
        b_rounds = samples.round_medians(base.runs, key)
        n_rounds = samples.round_medians(new.runs, key)
        c = verdict.compare_runs(
            samples.per_run(base.runs, key), samples.per_run(new.runs, key), t, key.family
        )
        rows.append(Row(key, verdict.across_rounds(c, b_rounds, n_rounds, t), b_rounds, n_rounds))
    return rows


def only_one_side(base: Side, new: Side, metrics: list[str]) -> list[str]:
    b = set(samples.pooled(base.runs, metrics))
    n = set(samples.pooled(new.runs, metrics))
    return [f"{k.label()}: only in {base.label}" for k in sorted(b - n)] + [
        f"{k.label()}: only in {new.label}" for k in sorted(n - b)
    ]


MARK = {
    verdict.IMPROVED: "improved",
    verdict.REGRESSED: "REGRESSED",
    verdict.NO_CHANGE: "-",
    verdict.NO_DATA: "no data",
}


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x * 100:+.1f}%"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.2g}"


def _cells(row: Row) -> list[str]:
    c = row.comparison
    sig = c.verdict in (verdict.IMPROVED, verdict.REGRESSED)
    return [
        f"{row.key.case}/{row.key.page_type}",
        row.key.family + (f" {row.key.point}" if row.key.point else ""),
        format_ns(c.base.median) if c.base.count else "-",
        format_ns(c.base.p99) if c.base.count else "-",
        format_ns(c.new.median) if c.new.count else "-",
        format_ns(c.new.p99) if c.new.count else "-",
        _pct(c.change) + (" *" if sig else "  "),
        "n/a" if math.isnan(c.ratio) else f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]",
        _p(c.pvalue),
        f"{c.base.count}/{c.new.count}",
        MARK[c.verdict],
    ]


HEADER = [
    "case",
    "metric",
    "base p50",
    "base p99",
    "new p50",
    "new p99",
    "%change",
    "ratio [95% CI]",
    "p",
    "n",
    "verdict",
]


def legend(t: Thresholds) -> str:
    return (
        f"p50/p99 per side; ratio = median(new)/median(base), percentile bootstrap "
        f"95% CI ({t.resamples} resamples, seed {t.seed}; two-level over runs, then samples, "
        f"when both sides have two runs or more), widened by the between-run spread (never "
        f"below the run-to-run noise floor, which stands for it with one run a side); "
        f"p = of that interval's log ratio; "
        f"n = samples base/new; * significant: p < {t.alpha:g}, CI excludes 1 and "
        f"|change| >= {t.min_effect:.0%} (lower latency is better)"
    )


def header_lines(base: Side, new: Side) -> list[str]:
    return [f"base: {base.label} ({base.describe()})", f"new:  {new.label} ({new.describe()})"]


def warnings_of(rows: list[Row], base: Side, new: Side) -> list[str]:
    out = []
    for row in rows:
        for w in row.comparison.warnings:
            which, _, rest = w.partition(": ")
            side = base.label if which == "base" else new.label
            out.append(f"{row.key.label()}: {side}: {rest}")
        for label, meds in ((base.label, row.base_rounds), (new.label, row.new_rounds)):
            if len(meds) > 1 and min(meds) > 0 and max(meds) / min(meds) > 1 + MIN_DRIFT:
                out.append(
                    f"{row.key.label()}: {label}: round medians differ by "
                    f"{max(meds) / min(meds) - 1:.0%} (drift)"
                )
    return out


MIN_DRIFT = 0.10


def text_table(cells: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = []
    for r in cells:
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        parts[-1] = r[-1]
        lines.append("  ".join(parts).rstrip())
    return lines


def format_text(
    rows: list[Row], base: Side, new: Side, t: Thresholds, extra: list[str] | None = None
) -> str:
    lines = [*header_lines(base, new), ""]
    lines += text_table([HEADER, *[_cells(r) for r in rows]]) if rows else ["no common cases"]
    lines += ["", textwrap.fill(legend(t), width=WIDTH)]
    notes = warnings_of(rows, base, new) + (extra or [])
    if notes:
        lines += [""]
        lines += [
            textwrap.fill(f"warning: {w}", width=WIDTH, subsequent_indent="  ") for w in notes
        ]
    return "\n".join(lines)


# Prose lines of the text format wrap for a mail (the table does not).
WIDTH = 78


def format_markdown(
    rows: list[Row], base: Side, new: Side, t: Thresholds, extra: list[str] | None = None
) -> str:
    lines = [f"- {h}" for h in header_lines(base, new)] + [""]
    if rows:
        lines.append("| " + " | ".join(HEADER) + " |")
        lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(HEADER))) + "|")
        for r in rows:
            cells = [c.replace("|", "\\|") for c in _cells(r)]  # a name's own | is text
            cells[6] = cells[6].replace(" *", " \\*").strip()
            lines.append("| " + " | ".join(cells) + " |")
    else:
        lines.append("no common cases")
    lines += ["", legend(t)]
    notes = warnings_of(rows, base, new) + (extra or [])
    if notes:
        lines += ["", *[f"- warning: {w}" for w in notes]]
    return "\n".join(lines)


def as_json(
    rows: list[Row], base: Side, new: Side, t: Thresholds, extra: list[str] | None = None
) -> dict[str, Any]:
    return {
        "base": {"label": base.label, "kernels": base.kernels(), "detail": base.describe()},
        "new": {"label": new.label, "kernels": new.kernels(), "detail": new.describe()},
        "thresholds": {
            "alpha": t.alpha,
            "min_effect": t.min_effect,
            "resamples": t.resamples,
            "seed": t.seed,
            "noise_floor": t.noise_floor,
        },
        "rows": [
            {
                "case": r.key.case,
                "page_type": r.key.page_type,
                "metric": r.key.metric,
                "point": r.key.point,
                "caller": r.key.caller or None,
                **r.comparison.as_dict(),
                "base_round_medians": r.base_rounds,
                "new_round_medians": r.new_rounds,
            }
            for r in rows
        ],
        "warnings": warnings_of(rows, base, new) + (extra or []),
    }


def render(
    fmt: str, rows: list[Row], base: Side, new: Side, t: Thresholds, extra: list[str] | None = None
) -> str:
    if fmt == "json":
        return jsonout.dumps(as_json(rows, base, new, t, extra), indent=2, default=_unknown)
    if fmt == "markdown":
        return format_markdown(rows, base, new, t, extra)
    return format_text(rows, base, new, t, extra)


def _unknown(o: Any) -> Any:
    return None


def gate(rows: list[Row], max_regression: float | None) -> list[str]:
    """Rows that fail --max-regression PCT."""
    if max_regression is None:
        return []
    return [
        f"{r.key.label()}: {r.comparison.change * 100:+.1f}% is a significant regression "
        f"beyond {max_regression:g}%"
        for r in rows
        if verdict.regression_beyond(r.comparison, max_regression)
    ]


def ungated_rows(rows: list[Row], max_regression: float | None, base: Side, new: Side) -> str:
    """Why --max-regression cannot be decided on these rows ("" when it
    can): a gate with nothing to compare must not pass."""
    if max_regression is None:
        return ""
    if not rows:
        return f"{base.label} and {new.label} have no case, metric and point in common"
    blind = [_blind(r, base, new) for r in rows if r.comparison.verdict == verdict.NO_DATA]
    if blind:
        return f"no data to compare for {', '.join(blind)}"
    return ""


def _blind(row: Row, base: Side, new: Side) -> str:
    """A row without a verdict, and which side left it without."""
    c = row.comparison
    why = [
        f"{side.label}: " + ("no samples" if not d.count else "median 0 ns")
        for side, d in ((base, c.base), (new, c.new))
        if not d.count or not d.median > 0
    ]
    return f"{row.key.label()} ({'; '.join(why)})"


def add_decision_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument(
        "--metric",
        choices=(*samples.METRICS, "all"),
        default="all",
        help="walk latency, the trigger's syscall time, a bystander's latency during "
        "walks (bystander-KIND), or all (default)",
    )
    p.add_argument(
        "--max-regression",
        type=number(),
        metavar="PCT",
        help=f"exit {EXIT_REGRESSION} on a significant regression beyond PCT percent",
    )
    p.add_argument(
        "--alpha",
        type=number(),
        default=verdict.ALPHA,
        help=f"p-value threshold (default {verdict.ALPHA})",
    )
    p.add_argument(
        "--min-effect",
        type=number(),
        default=verdict.MIN_EFFECT * 100,
        metavar="PCT",
        help=f"smallest change called significant, percent (default {verdict.MIN_EFFECT * 100:g})",
    )
    p.add_argument(
        "--noise-floor",
        type=number(),
        metavar="SD",
        help=f"run-to-run standard deviation of log(run median) to allow for, every metric "
        f"(default {verdict.DEFAULT_FLOOR:g}, measured under TCG; measure your machine's with "
        f"identical runs: docs/analysis.md)",
    )
    p.add_argument("--resamples", type=integer(None, MAX_RESAMPLES), default=inference.RESAMPLES)
    p.add_argument("--seed", type=integer(0, 2**32 - 1), default=inference.SEED)


def thresholds(ns: argparse.Namespace) -> Thresholds:
    if not 0 < ns.alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    if ns.min_effect < 0:
        raise UsageError(f"--min-effect must be >= 0, got {ns.min_effect:g}")
    if ns.resamples < 100:
        raise UsageError(f"--resamples must be at least 100, got {ns.resamples}")
    if ns.max_regression is not None and ns.max_regression < 0:
        raise UsageError("--max-regression must be >= 0")
    if ns.noise_floor is not None and not 0 <= ns.noise_floor <= MAX_NOISE_FLOOR:
        raise UsageError(f"--noise-floor must be between 0 and {MAX_NOISE_FLOOR:g}")
    return Thresholds(ns.alpha, ns.min_effect / 100, ns.resamples, ns.seed, ns.noise_floor)


def metrics_of(ns: argparse.Namespace) -> list[str]:
    return list(samples.METRICS) if ns.metric == "all" else [ns.metric]


def finish(
    rows: list[Row], base: Side, new: Side, ns: argparse.Namespace, t: Thresholds, out: Any = None
) -> int:
    """Print the comparison; the exit status --max-regression asks for."""
    extra = only_one_side(base, new, metrics_of(ns))
    print(render(ns.format, rows, base, new, t, extra), file=out or sys.stdout)
    failed = gate(rows, ns.max_regression)
    ungated = ungated_rows(rows, ns.max_regression, base, new)
    if ungated:
        raise ResultsError(f"--max-regression {ns.max_regression:g} cannot be evaluated: {ungated}")
    for f in failed:
        print(f"rmapbench: {f}", file=sys.stderr)
    return EXIT_REGRESSION if failed else 0


def main(argv: list[str]) -> int:
    return guarded("rmapbench compare", lambda: _main(argv), argv)


def check(argv: list[str]) -> tuple[argparse.Namespace, Thresholds, Side, Side]:
    """The command line parsed and checked and both sides loaded (read
    only), nothing compared yet; UsageError or ResultsError."""
    p = Parser(prog="rmapbench compare", description=__doc__, formatter_class=RAW)
    p.add_argument("results", nargs="+", metavar="BASE NEW", help="result dirs or sets")
    add_decision_options(p)
    add_verbose(p)
    ns = p.parse_args(argv)
    try:
        t = thresholds(ns)
        base, new = sides_of(ns.results)
    except UsageError as e:
        p.error(str(e))
    return ns, t, base, new


def _main(argv: list[str]) -> int:
    ns, t, base, new = check(argv)
    metrics = metrics_of(ns)
    rows = compare_sides(base, new, metrics, t)
    if not rows:
        why = only_one_side(base, new, metrics)[:2]
        if not why:  # the cases match, but neither side has the metric asked for
            why = [f"neither side has a {' or '.join(metrics)} metric"]
        raise ResultsError(
            f"{base.label} and {new.label} have no case, metric and point in common; "
            + "; ".join(why)
        )
    return finish(rows, base, new, ns, t)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
