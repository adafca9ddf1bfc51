"""`rmapbench sweep --vary NAME=V1,V2,... [--vary ...] -o SET -- TEST ARGS`:
run the chosen cases at every point of the grid, all in one guest boot, keep
every point's results in one result set, and fit walk latency against each
varied parameter on log-log scales (growth exponent with a 95% interval).

A varied NAME becomes the test option --NAME-with-dashes V (pages -> --pages,
max_page_sharing -> --max-page-sharing). `--from SET` analyses a result set
again without running anything.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rmapbench.analysis import inference, jsonout, resultset, samples
from rmapbench.analysis.cli import (
    RAW,
    Parser,
    UsageError,
    add_verbose,
    existing_dir,
    guarded,
    replay_journals,
)
from rmapbench.analysis.inference import PowerFit
from rmapbench.analysis.resultset import Source, building, load, write_index
from rmapbench.guest import batch, config
from rmapbench.guest.kernel import KernelImage
from rmapbench.ksft.cli import number_of, refuse
from rmapbench.ksft.results import slug
from rmapbench.ksft.stats import format_ns
from rmapbench.ksft.status import EXIT_FAILED, EXIT_KERNEL


def parse_vary(items: list[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for item in items:
        name, eq, values = item.partition("=")
        try:
            batch.option_flag(name)
        except UsageError as e:
            raise UsageError(f"--vary {item}: {e}") from None
        vals = [v.strip() for v in values.split(",")]
        if not eq or not values:
            raise UsageError(f"--vary {item}: give NAME=V1,V2,...")
        if not all(vals):
            raise UsageError(f"--vary {item}: an empty value (two commas, or one at an end)")
        if name in grid:
            raise UsageError(f"--vary {name} given twice")
        # As the programs read them: 100 and 0100 would be one point twice.
        same = [v if (n := number_of(v)) is None else n for v in vals]
        if len(set(same)) != len(same):
            raise UsageError(f"--vary {item}: a value is repeated")
        if not all(resultset.is_word(v) for v in vals):  # the index names them as words
            raise UsageError(f"--vary {item}: a value holds white space")
        grid[name] = vals
    if not grid:
        raise UsageError("give at least one --vary NAME=V1,V2,...")
    return grid


def points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def point_dir(i: int, point: dict[str, str]) -> str:
    return f"p{i:03d}-" + "-".join(f"{k}{slug(v)}" for k, v in point.items())


def point_args(base: list[str], point: dict[str, str]) -> list[str]:
    """The test options with the varied ones appended (argparse: the last wins)."""
    return [
        *base,
        *itertools.chain.from_iterable((batch.option_flag(k), v) for k, v in point.items()),
    ]


# --- fitting ---------------------------------------------------------------


@dataclass
class Fit:
    case: str
    page_type: str
    mode: str  # "samples" (every walk) or "p50" (one median per point)
    fit: PowerFit | None
    note: str = ""
    given: dict[str, str] = field(default_factory=dict)  # fixed non-numeric parameters

    def label(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.given.items())
        return f"{self.case}/{self.page_type}" + (f" {extra}" if extra else "")


def numeric(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if x > 0 and math.isfinite(x) else None


def fits(source: Source, metric: str = "walk") -> list[Fit]:
    """Per case: log(latency) against log(each varied numeric parameter), once
    over every sample and once over each point's median; separately for each
    value of a varied parameter that is not a number (a kernel, a backend)."""
    grid: dict[str, list[str]] = (source.index or {}).get("grid", {})
    varied = [n for n, vals in grid.items() if len(vals) > 1]
    names = [n for n in varied if n != "kernel" and all(numeric(v) is not None for v in grid[n])]
    others = [n for n in varied if n not in names]
    Group = tuple[str, str, tuple[tuple[str, str], ...]]
    by_case: dict[Group, list[tuple[dict[str, str], np.ndarray[Any, Any]]]] = {}
    for key, values in samples.pooled(source.runs, [metric]).items():
        point = dict(kv.split("=", 1) for kv in key.point.split()) if key.point else {}
        given = tuple((o, point.get(o, "")) for o in others)
        by_case.setdefault((key.case, key.page_type, given), []).append((point, values))
    out = []
    for (case, page_type, given), series in by_case.items():
        for mode in ("samples", "p50"):
            fit = Fit(case, page_type, mode, None, given=dict(given))
            if not names:
                fit.note = "no numeric parameter varied"
                out.append(fit)
                continue
            xs: dict[str, list[float]] = {n: [] for n in names}
            ys: list[float] = []
            for point, values in series:
                vals = list(values) if mode == "samples" else [float(np.median(values))]
                for n in names:
                    xs[n] += [numeric(point[n]) or 0.0] * len(vals)
                ys += vals
            try:
                fit.fit = inference.power_fit(xs, ys)
            except ValueError as e:
                fit.note = str(e)
            out.append(fit)
    return out


def point_table(source: Source, metric: str = "walk") -> list[list[str]]:
    rows = [["case", "point", "n", "p50", "p90", "p99"]]
    for key, values in samples.pooled(source.runs, [metric]).items():
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        rows.append(
            [
                f"{key.case}/{key.page_type}",
                key.point,
                str(values.size),
                format_ns(p50),
                format_ns(p90),
                format_ns(p99),
            ]
        )
    return rows


def fit_lines(fs: list[Fit]) -> list[str]:
    lines = []
    for f in fs:
        over = "every sample" if f.mode == "samples" else "p50 per point"
        head = f"{f.label()} walk, fit on {over}"
        if f.fit is None:
            lines.append(f"{head}: {f.note}")
            continue
        exps = "; ".join(
            f"{e.name}^{e.slope:.2f} [95% CI {e.low:.2f}, {e.high:.2f}]" for e in f.fit.exponents
        )
        lines.append(
            f"{head} (n={f.fit.observations}, R^2={f.fit.r_squared:.2f}): latency ~ {exps}"
        )
    return lines


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def bystander_lines(source: Source) -> list[str]:
    """Per --bystander kind (a --workload has them), the latency of its
    operations begun during walks at every point: what the walk's growth
    costs the tasks behind it. Nothing without bystanders."""
    ran = {
        str(b.get("kind"))
        for run in source.runs
        for sc in run.doc.get("scenarios", [])
        for b in sc.get("bystanders") or []
    }
    out: list[str] = []
    for metric in (m for m in samples.METRICS if m.startswith("bystander-")):
        if metric.removeprefix("bystander-") not in ran:
            continue
        rows = point_table(source, metric)
        out += ["", f"{metric}: operations begun during walks"]
        # Walks shorter than the bystander's period may have none: said,
        # not left out (the section would vanish without a word).
        out += _table(rows) if len(rows) > 1 else ["none at any point"]
    return out


def summary_text(source: Source) -> str:
    lines = _table(point_table(source))
    index = source.index or {}
    kernels = sorted({str(r.doc.get("kernel", {}).get("release", "?")) for r in source.runs})
    accel = ", ".join(sorted({b.get("accel", "?") for b in index.get("boots", [])}))
    grid = " x ".join(f"{k}={','.join(v)}" for k, v in index.get("grid", {}).items())
    head = f"sweep {source.label}: kernel {', '.join(kernels)}"
    if accel:
        head += f", {accel}"
    head += f"; grid {grid}"
    if index.get("test_args"):
        head += f"; test args: {' '.join(index['test_args'])}"
    return "\n".join([head, "", *lines, "", *fit_lines(fits(source)), *bystander_lines(source)])


def fits_json(source: Source) -> list[dict[str, Any]]:
    out = []
    for f in fits(source):
        entry: dict[str, Any] = {
            "case": f.case,
            "page_type": f.page_type,
            "given": f.given,
            "mode": f.mode,
        }
        if f.fit is None:
            entry["note"] = f.note
        else:
            entry.update(
                observations=f.fit.observations,
                r_squared=f.fit.r_squared,
                intercept=f.fit.intercept,
                exponents=[
                    {
                        "name": e.name,
                        "exponent": e.slope,
                        "ci_low": e.low,
                        "ci_high": e.high,
                        "stderr": e.stderr,
                    }
                    for e in f.fit.exponents
                ],
            )
        out.append(entry)
    return out


# --- running ---------------------------------------------------------------


def plan(
    specs: list[str],
    kernels: list[KernelImage],
    pts: list[dict[str, str]],
    programs: batch.Selection,
    base_args: list[str],
    n_jobs: int = 1,
) -> tuple[list[batch.Boot], list[dict[str, Any]]]:
    """The boots and the index's point entries, in grid order: one boot
    per kernel, or with --jobs enough boots per kernel for the guests at
    once, the points dealt out over them in turn (every program of a point
    in one boot)."""
    several = len(kernels) > 1
    parts = batch.boots_per_kernel(n_jobs, len(kernels), len(pts))
    boots: list[batch.Boot] = []
    entries: list[dict[str, Any]] = []
    for spec, kernel in zip(specs, kernels, strict=True):
        first = len(boots)
        boots += [batch.Boot(kernel) for _ in range(parts)]
        for j, pt in enumerate(pts):
            # The kernel is a grid dimension but not a test option.
            full = {**pt, "kernel": spec} if several else pt
            directory = point_dir(len(entries), full)
            args = point_args(base_args, pt)
            boot = first + j % parts
            for prog in programs.of(args):
                boots[boot].jobs.append(batch.Job(directory, prog, args))
            entries.append({"dir": directory, "params": full, "args": args, "boot": boot})
    return boots, entries


def main(argv: list[str]) -> int:
    return guarded("rmapbench sweep", lambda: _main(argv), argv)


@dataclass
class Plan:
    """A sweep's command line, parsed and checked; with --from only `ns`
    (the set to analyse again)."""

    ns: argparse.Namespace
    specs: list[str] = field(default_factory=list)
    grid: dict[str, list[str]] = field(default_factory=dict)
    programs: batch.Selection = field(default_factory=batch.Selection)
    base_args: list[str] = field(default_factory=list)
    points: list[dict[str, str]] = field(default_factory=list)
    guest: config.GuestOptions | None = None


# The options of a sweep that runs (dest: as given), which --from refuses.
RUN_ONLY = {"vary": "--vary", "output": "-o", "kernel": "--kernel", "jobs": "--jobs",
            "nodes": "--nodes", "cpus": "--cpus", "memory": "--memory", "accel": "--accel",
            "timeout": "--timeout"}  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="rmapbench sweep", description=__doc__, formatter_class=RAW)
    p.add_argument("--vary", action="append", default=[], metavar="NAME=V1,V2,...")
    p.add_argument(
        "--from",
        dest="source",
        type=existing_dir(),
        metavar="SET",
        help="analyse an existing result set instead of running",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    batch.add_guest_options(
        p,
        "kernel image or Debian stock series (default 6.12); repeat it to sweep "
        "several kernels, one boot each (the grid gains a kernel dimension)",
        output_required=False,
    )
    add_verbose(p)
    p.add_argument("test", nargs="*", metavar="-- TEST ARGS")
    return p


def check(argv: list[str]) -> Plan:
    """The command line parsed and checked, every test option of every
    point included, with nothing set up, fetched or booted; UsageError."""
    p = _parser()
    cut = argv.index("--") if "--" in argv else len(argv)
    ns = p.parse_args(argv[:cut])
    rest = ns.test + argv[cut + 1 :]
    if ns.source:
        # Nothing runs: an option of a run would be silently ignored.
        ignored = [d for d in RUN_ONLY if getattr(ns, d) != p.get_default(d)]
        if ignored or rest:
            what = RUN_ONLY[ignored[0]] if ignored else "TEST ARGS"
            p.error(f"--from analyses a result set again, running nothing: {what} does not apply")
        return Plan(ns)
    specs = [str(k) for k in ns.kernel] or [config.STOCK_SERIES]
    try:
        if ns.output is None:
            raise UsageError("give -o SET (the result set to create)")
        grid = parse_vary(ns.vary)
        if "kernel" in grid:
            raise UsageError("vary kernels with --kernel given several times")
        if len(set(specs)) != len(specs):
            raise UsageError("a --kernel is repeated")
        programs, base_args = batch.split_test_args(rest)
        pts = points(grid)
        for pt in pts:
            args = point_args(base_args, pt)
            batch.check_test_args(programs.of(args), args)
        g = batch.guest_options(ns)
        if ns.output.exists():
            raise UsageError(f"{ns.output} exists; give a new directory")
    except UsageError as e:
        p.error(str(e))
    return Plan(ns, specs, grid, programs, base_args, pts, g)


def _main(argv: list[str]) -> int:
    plan_ = check(argv)
    ns = plan_.ns
    if ns.source:
        try:
            return show(load(ns.source), ns.format)
        except (ValueError, OSError) as e:
            raise UsageError(str(e)) from None
    specs, grid, programs, base_args = plan_.specs, plan_.grid, plan_.programs, plan_.base_args
    pts, g = plan_.points, plan_.guest
    assert g is not None
    replay_journals("rmapbench sweep")
    kernels = batch.resolve_kernels("sweep", g.kernels)
    if kernels is None:
        return EXIT_KERNEL
    several = len(kernels) > 1
    boots, entries = plan(specs, kernels, pts, programs, base_args, ns.jobs)
    index = resultset.base_index("sweep", ["rmapbench", "sweep", *argv])
    index.update(
        grid={**grid, "kernel": specs} if several else grid,
        programs=list(dict.fromkeys(j.program.stem for b in boots for j in b.jobs)),
        test_args=base_args,
        kernels=[{"spec": s, "release": k.release} for s, k in zip(specs, kernels, strict=True)],
        guest={"nodes": g.nodes, "cpus": g.cpus, "memory": g.memory},
        jobs=ns.jobs,
        boots=[],
    )
    with building(ns.output) as tmp:
        batch.run_boots(
            "sweep",
            boots,
            tmp,
            g,
            entries,
            index,
            lambda n: f"console-{n}.log" if len(boots) > 1 else "console.log",
            ns.jobs,
        )
        write_index(tmp, index)
    show(load(ns.output), ns.format)
    print(f"\nresult set in {ns.output}", file=sys.stderr)
    failed = batch.report_failed("sweep", boots)
    return EXIT_FAILED if failed else 0


def show(source: Source, fmt: str) -> int:
    if source.kind != "sweep":
        return refuse("rmapbench sweep", f"{source.path} is not a sweep result set")
    if fmt == "json":
        print(
            jsonout.dumps(
                {"grid": (source.index or {}).get("grid"), "fits": fits_json(source)}, indent=2
            )
        )
    else:
        print(summary_text(source))
    return 0
