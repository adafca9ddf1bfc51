"""`rmapbench report RESULTS... -o DIR`: report.md, report.html and
summary.txt (plain text for a mailing-list reply) with PNG plots:

- every source: the latency CDF of each case (per grid point, per side);
- a sweep: latency against each varied parameter with the fitted power law;
- an ab set: the comparison of side B with side A;
- two or more sweeps or result dirs: each later one compared with the
  first of its kind (sweeps by grid point, result dirs by case).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rmapbench.analysis import compare, plots, resultset, samples, sweep
from rmapbench.analysis.cli import (
    RAW,
    Parser,
    UsageError,
    add_verbose,
    describe,
    guarded,
    out_dir,
)
from rmapbench.analysis.resultset import Source, load
from rmapbench.analysis.verdict import Thresholds
from rmapbench.ksft.results import slug

FILES = ("report.md", "report.html", "summary.txt")


@dataclass
class Report:
    """Blocks in order: ("h", text), ("p", text), ("pre", text), ("img", file)."""

    blocks: list[tuple[str, str]] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # summary.txt paragraphs

    def add(self, kind: str, text: str) -> None:
        self.blocks.append((kind, text))

    def markdown(self) -> str:
        out = ["# rmap walk latency report", ""]
        for kind, text in self.blocks:
            if kind == "h":
                out += [f"## {text}", ""]
            elif kind == "md" or kind == "p":
                out += [text, ""]
            elif kind == "pre":
                out += ["```", text, "```", ""]
            elif kind == "img":
                out += [f"![{text}]({text})", ""]
        return "\n".join(out)

    def html(self) -> str:
        out = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            "<title>rmap walk latency report</title></head><body>",
            "<h1>rmap walk latency report</h1>",
        ]
        for kind, text in self.blocks:
            if kind == "h":
                out.append(f"<h2>{html.escape(text)}</h2>")
            elif kind == "p":
                out.append(f"<p>{html.escape(text)}</p>")
            elif kind == "pre":
                out.append(f"<pre>{html.escape(text)}</pre>")
            elif kind == "md":
                out += _md_html(text)
            elif kind == "img":
                out.append(f'<p><img src="{html.escape(text)}" alt="{html.escape(text)}"></p>')
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _md_html(text: str) -> list[str]:
    """The little Markdown compare writes (a table, "- " items, paragraphs)."""
    out: list[str] = []
    table: list[list[str]] = []
    items: list[str] = []

    def flush() -> None:
        if table:
            head, *body = table
            out.append('<table border="1" cellspacing="0" cellpadding="3">')
            out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>")
            for row in body:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            out.append("</table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            cells = [
                c.strip().replace("\\*", "*").replace("\\|", "|")
                for c in re.split(r"(?<!\\)\|", line.strip().removeprefix("|").removesuffix("|"))
            ]
            if not all(set(c) <= set("-:") for c in cells):
                table.append(cells)
        elif line.startswith("- "):
            items.append(line[2:])
        else:
            flush()
            if line.strip():
                out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return out


def _phases(source: Source) -> str:
    """Where each run's time went (the programs' `phases`), or ""."""
    from rmapbench.ksft import summary

    return summary.phase_table([r.doc for r in source.runs])


def _walk_series(source: Source) -> dict[samples.Key, np.ndarray]:
    return samples.pooled(source.runs, ["walk"])


def source_section(rep: Report, source: Source, out: Path, n: int) -> None:
    rep.add("h", f"{source.label} ({source.kind})")
    kernels = sorted({str(r.doc.get("kernel", {}).get("release", "?")) for r in source.runs})
    accel = sorted({b.get("accel", "?") for b in (source.index or {}).get("boots", [])})
    rep.add("p", f"kernel {', '.join(kernels)}" + (f"; guest {', '.join(accel)}" if accel else ""))
    phases = _phases(source)
    if phases:
        rep.add("pre", phases)
    series = _walk_series(source)
    if source.kind == "ab":
        by_side: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = {}
        for side in ("A", "B"):
            for key, values in samples.pooled(
                [r for r in source.runs if r.side == side], ["walk"]
            ).items():
                sets = ((source.index or {}).get("sides", {}).get(side) or {}).get("set") or {}
                label = f"{side}: " + (" ".join(f"{k}={v}" for k, v in sets.items()) or "default")
                by_side.setdefault((key.case, key.page_type), []).append((label, values))
        groups = by_side
    else:
        groups = {}
        for key, values in series.items():
            groups.setdefault((key.case, key.page_type), []).append(
                (key.point or source.label, values)
            )
    for (case, page_type), lines in groups.items():
        name = f"{n:02d}-{slug(source.label)}-{slug(case)}-cdf.png"
        plots.cdf(
            out / name,
            f"{case} ({page_type}) walk latency, {source.label}",
            lines,
            "walk latency (ms)",
        )
        rep.add("img", name)
    if source.kind == "sweep":
        text = sweep.summary_text(source)
        rep.add("pre", text)
        rep.summary.append(text)
        sweep_plots(rep, source, out, n)
    if source.kind == "ab":
        base, new = compare.sides_of([str(source.path)])
        comparison(rep, base, new, out)


def sweep_plots(rep: Report, source: Source, out: Path, n: int) -> None:
    grid = (source.index or {}).get("grid", {})
    fits = {
        (f.case, f.page_type, tuple(f.given.items())): f.fit
        for f in sweep.fits(source)
        if f.mode == "samples"
    }
    series = _walk_series(source)
    for name, values in grid.items():
        if name == "kernel" or len(values) < 2 or any(sweep.numeric(v) is None for v in values):
            continue
        others = [o for o, vals in grid.items() if o != name and len(vals) > 1]
        # (case, page type) -> label of the other parameters -> [(x, samples)]
        by_case: dict[tuple[str, str], dict[str, list[tuple[float, np.ndarray]]]] = {}
        fixed: dict[tuple[str, str, str], tuple[tuple[str, str], ...]] = {}
        for key, vals in series.items():
            point = dict(kv.split("=", 1) for kv in key.point.split())
            x = sweep.numeric(point.get(name, ""))
            if x is None:
                continue
            label = " ".join(f"{o}={point.get(o, '')}" for o in others)
            by_case.setdefault((key.case, key.page_type), {}).setdefault(label, []).append(
                (x, vals)
            )
            fixed[(key.case, key.page_type, label)] = tuple(
                (o, point.get(o, ""))
                for o in others
                if sweep.numeric(point.get(o, "")) is None or o == "kernel"
            )
        for (case, page_type), groups in by_case.items():
            curves = []
            for label, pts in groups.items():
                pts.sort(key=lambda p: p[0])
                fit = fits.get((case, page_type, fixed[(case, page_type, label)]))
                curves.append(plots.Curve(label, [p[0] for p in pts], [p[1] for p in pts], fit))
            file = f"{n:02d}-{slug(source.label)}-{slug(case)}-vs-{slug(name)}.png"
            plots.sweep_curve(
                out / file, f"{case} ({page_type}) walk latency against {name}", name, curves
            )
            rep.add("img", file)


def comparison(rep: Report, base: compare.Side, new: compare.Side, out: Path) -> None:
    t = Thresholds()
    rows = compare.compare_sides(base, new, list(samples.METRICS), t)
    rep.add("h", f"{new.label} compared with {base.label}")
    if not rows:
        rep.add("p", "no case and grid point in common: nothing to compare")
        return
    extra = compare.only_one_side(base, new, list(samples.METRICS))
    rep.add("md", compare.format_markdown(rows, base, new, t, extra))
    text = compare.format_text(rows, base, new, t, extra)
    rep.summary.append(text)
    b = samples.pooled(base.runs, ["walk"])
    nw = samples.pooled(new.runs, ["walk"])
    for key in sorted(set(b) & set(nw), key=samples.sort_key):
        file = f"cmp-{slug(base.label)}-{slug(new.label)}-{slug(key.case)}{slug(key.point)}.png"
        plots.cdf(
            out / file,
            f"{key.case} ({key.page_type}) {key.point}: {base.label} vs {new.label}",
            [(base.label, b[key]), (new.label, nw[key])],
            "walk latency (ms)",
        )
        rep.add("img", file)


def build(sources: list[Source], out: Path) -> Report:
    out.mkdir(parents=True, exist_ok=True)
    rep = Report()
    for n, source in enumerate(sources):
        source_section(rep, source, out, n)
    # Later sources against the first of their kind: sweeps line up by grid
    # point, result dirs by case; an ab set is compared within itself.
    for group in (
        [s for s in sources if s.kind == "sweep"],
        [s for s in sources if s.kind == "dir"],
    ):
        for other in group[1:]:
            first = group[0]
            comparison(
                rep,
                compare.Side(first.label, first.runs, first),
                compare.Side(other.label, other.runs, other),
                out,
            )
    if not rep.summary:
        from rmapbench.ksft import summary

        rep.summary += [summary.table([r.doc for r in s.runs]) for s in sources]
    rep.summary += [p for p in map(_phases, sources) if p]
    return rep


def write(rep: Report, out: Path) -> list[Path]:
    from rmapbench.files import write_atomic

    texts = {
        "report.md": rep.markdown(),
        "report.html": rep.html(),
        "summary.txt": "\n\n".join(rep.summary) + "\n",
    }
    for name, text in texts.items():
        write_atomic(out / name, text)
    return [out / n for n in texts]


def main(argv: list[str]) -> int:
    return guarded("rmapbench report", lambda: _main(argv), argv)


def _main(argv: list[str]) -> int:
    p = Parser(prog="rmapbench report", description=__doc__, formatter_class=RAW)
    p.add_argument("results", nargs="+", metavar="RESULTS", help="result dirs or sets")
    p.add_argument("-o", "--output", type=out_dir(), required=True, metavar="DIR")
    add_verbose(p)
    ns: argparse.Namespace = p.parse_args(argv)
    try:
        sources = []
        for r in ns.results:
            try:
                sources.append(load(r))
            except (ValueError, OSError) as e:
                raise UsageError(describe(e)) from e
            if resultset.identity(sources[-1]) in map(resultset.identity, sources[:-1]):
                raise UsageError(f"{r} is given twice: it would be compared with itself")
    except UsageError as e:
        p.error(str(e))
    try:
        written = publish(sources, ns.output)
    except OSError as e:  # -o passed its check but filled up (or went away)
        raise UsageError(f"cannot write the report in {ns.output}: {e.strerror or e}") from e
    for path in written:
        print(path)
    return 0


def publish(sources: list[Source], out: Path) -> list[Path]:
    """build() and write() in a hidden directory inside `out`, then each
    file moved into place, the texts last: a report that fails leaves
    `out` as it was (a killed one, its hidden directory too), and none
    leaves a plot or a text half-written or a new text beside old plots."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".report.", dir=out))
    try:
        texts = write(build(sources, stage), stage)
        for path in sorted(set(stage.iterdir()) - set(texts)):
            os.replace(path, out / path.name)
        for path in texts:
            os.replace(path, out / path.name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    stage.rmdir()
    return [out / path.name for path in texts]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
