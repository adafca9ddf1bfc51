"""The readers of result files against damaged and hostile trees, by
property (hypothesis): every analysis command, given a result tree derived
from the recorded fixtures (tests/unit/fixtures/analysis) by one mutation,
either succeeds or exits 2, 6 or 8 with one line on stderr that names the
file (or the result it belongs to) - never a traceback, never 7 (internal
error) - and leaves no output half-written.

The mutations: a key removed; a value replaced by another JSON type, null,
NaN, Infinity, a negative number, 0, 1e308, an integer beyond any float,
an empty string, list or object; a list cut short or emptied; the file cut
at a byte, made invalid UTF-8 or empty, replaced by a directory or
removed; a second copy of a result file; the run marked as still running
or interrupted; names changed so the two sides no longer match. Before the
mutation the ksm results get the optional fields docs/json.md describes
(per-caller walks, a bystander, the walker's waits, phases), computed from
their own samples, so their readers are fuzzed too.

The commands run in this process through rmapbench's main() (numpy's and
matplotlib's warnings made errors: on a terminal they are lines of stderr),
and a few as real subprocesses. test_bad_inputs.py has the hand-written
cases; these are the ones nobody thought of.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rmapbench import __main__ as cli
from rmapbench.ksft import results, stats
from rmapbench.ksft.shape import PERCENTILES
from rmapbench.ksft.status import EXIT_REGRESSION, EXIT_RESULTS, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tools" / "testing" / "rmap"
FIX = Path(__file__).resolve().parent / "fixtures" / "analysis"

# A longer search, by hand: RMAP_FUZZ_SCALE=20 runs twenty times as many
# examples, drawn at random (a different search on every run).
SCALE = int(os.environ.get("RMAP_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """Deterministic (the same examples on every run, none kept between
    runs), and as many examples as the command's speed allows."""
    return settings(
        derandomize=SCALE == 1,
        deadline=None,
        database=None,
        max_examples=examples * SCALE,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

# Statuses a reader of results may end with (ksft/status.py); 0 is success.
OK_STATUSES = (0, 1, EXIT_USAGE, EXIT_REGRESSION, EXIT_RESULTS)


# --- the tree every example starts from -------------------------------------


def _summary(values: list[int]) -> dict[str, Any]:
    return {**stats.summarize(values).as_dict(), "samples": values}


def enrich(doc: dict[str, Any]) -> dict[str, Any]:
    """The optional fields the readers read, as a run with --bystander and
    a caller-aware backend writes them, made from the document's samples."""
    for sc in doc.get("scenarios", []):
        walks = sc["walks"]["samples"]
        if not walks:
            continue
        sc["walks_by_caller"] = [
            {"caller": "try_to_migrate", "walks": _summary(walks[0::2])},
            {"caller": "remove_migration_ptes", "walks": _summary(walks[1::2])},
        ]
        during = [v // 1000 for v in walks]
        quiet = [v // 2000 for v in walks]
        d, q = stats.summarize(during), stats.summarize(quiet)
        sc["bystanders"] = [{
            "kind": "mprotect", "pid": 7, "lock": "anon_vma", "ops": 3 * len(walks),
            "overlapped": len(walks), "during": _summary(during), "quiet": _summary(quiet),
            "stall": {"p99_ns": d.p99_ns - q.p99_ns, "max_ns": d.max_ns - q.max_ns},
            "contention": {"during": {"rwsem_waits": 3, "rwsem_wait_ns": 41_000,
                                      "rwsem_max_wait_ns": 20_000}},
        }]  # fmt: skip
        sc["walker_waits"] = {"pids": [7], "during_walks": {"rwsem_waits": 1,
                                                            "rwsem_wait_ns": 9_000}}
    total = float(doc.get("duration_s", 1.0))
    doc["phases"] = {
        "seconds": {"startup": 0.04, "build": total / 2, "samples": total / 2 - 0.04},
        "total_s": total, "walks_s": 0.5, "walk_share": round(0.5 / total, 4),
        "overhead_s": total - 0.5,
    }  # fmt: skip
    return doc


Bases = dict[bool, Path]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Bases:
    """The fixtures as they are, and with the optional fields: made once."""
    out = {}
    for rich in (False, True):
        tree = tmp_path_factory.mktemp("rich" if rich else "plain") / "fx"
        shutil.copytree(FIX, tree)
        if rich:
            for path in tree.rglob("rmap_*.json"):
                path.write_text(json.dumps(enrich(json.loads(path.read_text())), indent=1))
        out[rich] = tree
    return out


@contextlib.contextmanager
def tree_of(bases: Bases, rich: bool, *parts: str) -> Iterator[Path]:
    """For one example (hypothesis runs many in one test), a copy of the
    parts of a base tree the command reads."""
    with tempfile.TemporaryDirectory(prefix="rmap-fuzz-", dir=bases[rich].parent) as d:
        tree = Path(d) / "fx"
        for part in parts:
            shutil.copytree(bases[rich] / part, tree / part, copy_function=shutil.copyfile)
        yield tree


# --- mutations -----------------------------------------------------------------

REPLACEMENTS: dict[str, Any] = {
    "a string": "x", "an empty string": "", "an integer": 7, "a fraction": 0.5,
    "true": True, "false": False, "null": None, "NaN": math.nan, "Infinity": math.inf,
    "-Infinity": -math.inf, "-1": -1, "-1.5": -1.5, "0": 0, "1e308": 1e308,
    "10**400": 10**400, "an empty list": [], "an empty object": {},
    "a list": [1, "x", None], "an object": {"x": 1},
}  # fmt: skip


def json_paths(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every place in a document; of a long list its first two and last
    element (the others are alike)."""
    if path:
        yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from json_paths(v, (*path, k))
    elif isinstance(value, list):
        for i in sorted({0, 1, len(value) - 1} & set(range(len(value)))):
            yield from json_paths(value[i], (*path, i))


def _dumps(doc: Any) -> str:
    return json.dumps(doc, indent=1)  # NaN and Infinity as Python writes them


@dataclass
class Mutation:
    """What was done to the tree, and which file or directory it hit."""

    what: str
    target: Path


# The fields some reader reads (of a document, then of an index): half the
# mutations hit one of these, the rest anything (what no reader reads must
# stay unread).
READ = {
    "schema", "program", "status", "reason", "interrupted", "kernel", "release", "backend",
    "name", "phases", "seconds", "total_s", "walks_s", "walk_share", "scenarios", "setup",
    "target_page_type", "walks", "syscall", "count", "samples", *PERCENTILES, "walks_by_caller",
    "caller", "bystanders", "kind", "during", "quiet", "stall", "contention", "rwsem_wait_ns",
    "walker_waits", "during_walks", "build", "startup",
    "points", "dir", "params", "pages", "side", "round", "grid", "boots", "accel", "sides", "A",
    "B", "set", "max_page_sharing", "test_args", "rmap_ksm", "rmap_anon",
}  # fmt: skip


def _read(place: tuple[str | int, ...]) -> bool:
    return all(isinstance(k, int) or k in READ for k in place)


NUMERIC = ["0", "-1", "-1.5", "1e308", "10**400", "NaN", "Infinity", "negate", "a string",
           "null"]  # fmt: skip


@st.composite
def json_mutation(draw: st.DrawFn, path: Path) -> Callable[[], Mutation]:
    """One to three edits of the document: a number mostly becomes another
    number that is not one, a list is cut short or zeroed (a clock too
    coarse for the walks), anything may go or become anything."""
    doc = json.loads(path.read_text())
    done = []
    for _ in range(draw(st.integers(1, 3))):
        places = list(json_paths(doc))
        if not places:
            break
        place = draw(st.one_of(st.sampled_from([p for p in places if _read(p)] or places),
                               st.sampled_from(places)))  # fmt: skip
        old = _get(doc, place)
        kinds = ["remove", *REPLACEMENTS, "negate"]
        if isinstance(old, list):
            kinds = [*kinds, "cut short", "empty", "zeros", "half zeros"]
        if isinstance(old, int | float) and not isinstance(old, bool):
            kind = draw(st.one_of(st.sampled_from(NUMERIC), st.sampled_from(kinds)))
        else:
            kind = draw(st.sampled_from(kinds))
        parent, key = _get(doc, place[:-1]), place[-1]
        if kind == "remove":
            del parent[key]
        elif kind == "negate":
            number = isinstance(old, int | float) and not isinstance(old, bool)
            parent[key] = -old if number else -1
        elif kind == "cut short":
            parent[key] = old[: len(old) // 2]
        elif kind == "empty":
            parent[key] = []
        elif kind in ("zeros", "half zeros"):
            n = len(old) if kind == "zeros" else (len(old) + 1) // 2
            parent[key] = [0] * n + old[n:]
        else:  # a copy: a later edit may edit inside it
            parent[key] = copy.deepcopy(REPLACEMENTS[kind])
        done.append(f"{'.'.join(map(str, place))}: {kind}")

    def apply() -> Mutation:
        path.write_text(_dumps(doc))
        return Mutation("; ".join(done), path)

    return apply


@st.composite
def file_mutation(draw: st.DrawFn, path: Path) -> Callable[[], Mutation]:
    data = path.read_bytes()
    kind = draw(st.sampled_from(
        ["cut", "not UTF-8", "empty", "directory", "removed", "copied", "stale temp file"]
    ))  # fmt: skip
    at = draw(st.integers(0, len(data) - 1))

    def apply() -> Mutation:
        if kind == "cut":
            path.write_bytes(data[:at])
        elif kind == "not UTF-8":
            path.write_bytes(data[:at] + b"\xff\xfe" + data[at:])
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "directory":
            path.unlink()
            path.mkdir()
        elif kind == "removed":
            path.unlink()
        elif kind == "copied":  # the same program's results twice in one directory
            shutil.copy(path, path.with_name("copy.json"))
        else:  # what a writer killed mid-write leaves: ignored by every reader
            path.with_name(f".{path.name}.1234.abcdef").write_bytes(data[:at])
        return Mutation(f"{kind} at {at}", path)

    return apply


@st.composite
def run_mutation(draw: st.DrawFn, path: Path) -> Callable[[], Mutation]:
    """A result file of a run that did not finish, or with names that no
    longer match the other side's."""
    kind = draw(st.sampled_from(["running", "interrupted", "program", "case", "page type",
                                 "kernel", "status"]))  # fmt: skip
    name = draw(st.sampled_from(["rmap_anon", "anon", "ksm", "x y", "../../etc", "é", ""]))

    def apply() -> Mutation:
        doc = json.loads(path.read_text())
        sc = doc["scenarios"][0]
        if kind == "running":
            doc = results.marker(doc["program"])
        elif kind == "interrupted":
            doc.update(status="fail", interrupted="SIGTERM")
        elif kind == "program":
            doc["program"] = name
        elif kind == "case":
            sc["name"] = name
        elif kind == "page type":
            sc["setup"]["target_page_type"] = name
        elif kind == "kernel":
            doc["kernel"]["release"] = name
        else:
            doc["status"] = name
        path.write_text(_dumps(doc))
        return Mutation(f"{kind} -> {name!r}", path)

    return apply


# Latencies a writer may write, to the limits (0: below the clock's
# resolution; 2^64 - 1: the clock's last tick).
LATENCY = st.one_of(st.sampled_from([0, 1, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1),
                    st.floats(0, 2.0**64, exclude_max=True).map(lambda x: float(int(x))))


@st.composite
def sample_mutation(draw: st.DrawFn, path: Path) -> Callable[[], Mutation]:
    """Samples a writer could have written (their summary made anew, as it
    makes it): all 0, one, alike, at the clock's limits. The statistics
    meet them, and must not print a warning or a figure that is no number."""
    doc = json.loads(path.read_text())
    places = [p for p in json_paths(doc) if p[-1] == "samples"]
    place = draw(st.sampled_from(places))
    values = draw(st.one_of(
        st.lists(LATENCY, max_size=12),
        st.lists(st.sampled_from([0, 1]), min_size=1, max_size=12),
        st.builds(lambda v, n: [v] * n, LATENCY, st.integers(1, 12)),
    ))  # fmt: skip

    def apply() -> Mutation:
        _get(doc, place[:-2])[place[-2]] = _summary(values)
        path.write_text(_dumps(doc))
        return Mutation(f"{'.'.join(map(str, place))} = {values}", path)

    return apply


@st.composite
def grid_mutation(draw: st.DrawFn, path: Path) -> Callable[[], Mutation]:
    """A sweep's grid value changed everywhere it is written, as if the
    sweep had been run with it: what sweep's fits make of the value."""
    index = json.loads(path.read_text())
    name, values = next(iter(index["grid"].items()))
    old = draw(st.sampled_from(values))
    new = draw(st.sampled_from(["0", "-1", "nan", "inf", "1e400", "1e-300", "abc", "4000",
                                values[-1]]))  # fmt: skip

    def apply() -> Mutation:
        index["grid"][name] = [new if v == old else v for v in values]
        for point in index["points"]:
            if point["params"].get(name) == old:
                point["params"][name] = new
        path.write_text(_dumps(index))
        return Mutation(f"grid {name}: {old} -> {new}", path)

    return apply


def mutation(path: Path) -> st.SearchStrategy[Callable[[], Mutation]]:
    if path.name == "index.json":
        extra = [grid_mutation(path)] if "grid" in json.loads(path.read_text()) else []
        return st.one_of(json_mutation(path), file_mutation(path), *extra)
    return st.one_of(json_mutation(path), file_mutation(path), run_mutation(path),
                     sample_mutation(path))  # fmt: skip


def _get(doc: Any, place: tuple[str | int, ...]) -> Any:
    for key in place:
        doc = doc[key]
    return doc


# --- running a command and judging its outcome --------------------------------


@dataclass
class Outcome:
    status: int
    out: str
    err: str


def run(argv: list[str]) -> Outcome:
    """rmapbench's main() in this process; a warning (numpy's, matplotlib's)
    is an error here, as it would be lines of stderr there."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():  # fmt: skip
        warnings.simplefilter("error")
        try:
            status = cli.main(argv)
        except SystemExit as e:  # argparse's own exits would be a bug
            pytest.fail(f"SystemExit {e.code} from {argv}: {err.getvalue()}")
    return Outcome(status, out.getvalue(), err.getvalue())


def _names(m: Mutation, tree: Path) -> list[str]:
    """How a message may name what was hit: the file, or a result
    directory it is in (by path or by name, as compare labels sides)."""
    out = [str(m.target)]
    for parent in m.target.parents:
        if parent == tree:
            break
        out += [str(parent), parent.name]
    return out


def strict_json(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def judge(prog: str, o: Outcome, m: Mutation, tree: Path, fmt: str = "text") -> None:
    event(f"exit {o.status}")
    context = f"{m.what} in {m.target}: status {o.status}\n{o.err}"
    assert o.status in OK_STATUSES, context
    assert "Traceback" not in o.err, context
    lines = o.err.splitlines()
    if o.status == 0:
        assert not lines, context
        if fmt == "json":
            strict_json(o.out)
    elif o.status == EXIT_REGRESSION:
        assert lines and all("significant regression" in line for line in lines), context
    else:
        assert len(lines) == 1, context
        assert lines[0].startswith(f"{prog}: error: "), context
        names = _names(m, tree)
        assert any(re.search(rf"(^|[\s:(/]){re.escape(n)}($|[\s:,;)/])", lines[0])
                   for n in names), context  # fmt: skip


# --- the properties, one per command ----------------------------------------


@fuzz(150)
@given(st.data(), st.booleans())
def test_summary(bases: Bases, data: st.DataObject, rich: bool) -> None:
    with tree_of(bases, rich, "ksm1000") as tree:
        m = data.draw(mutation(tree / "ksm1000" / "rmap_ksm.json"))()
        o = run(["summary", str(tree / "ksm1000")])
        judge("rmapbench summary", o, m, tree)


FORMATS = st.sampled_from(["text", "markdown", "json"])
# Few resamples: the intervals are not what is tested, and a default
# bootstrap costs a tenth of a second an example.
FAST = ["--resamples", "200"]


@fuzz(80)
@given(st.data(), st.booleans(), FORMATS,
       st.sampled_from([[], ["--max-regression", "50"], ["--max-regression", "0"]]),
       st.sampled_from([[], ["--noise-floor", "0.05"]]))  # fmt: skip
def test_compare_dirs(bases: Bases, data: st.DataObject, rich: bool, fmt: str,
                      gate: list[str], floor: list[str]) -> None:  # fmt: skip
    with tree_of(bases, rich, "ksm1000", "ksm2000") as tree:
        side = data.draw(st.sampled_from(["ksm1000", "ksm2000"]))
        m = data.draw(mutation(tree / side / "rmap_ksm.json"))()
        argv = [str(tree / "ksm1000"), str(tree / "ksm2000"), "--format", fmt]
        o = run(["compare", *argv, *FAST, *gate, *floor])
        judge("rmapbench compare", o, m, tree, fmt)


AB_FILES = ["index.json", "r1-A/rmap_ksm.json", "r1-B/rmap_ksm.json", "r2-A/rmap_ksm.json",
            "r2-B/rmap_ksm.json"]  # fmt: skip
SWEEP_FILES = ["index.json", "p000-pages1000/rmap_ksm.json", "p000-pages1000/rmap_anon.json",
               "p001-pages2000/rmap_ksm.json", "p001-pages2000/rmap_anon.json"]  # fmt: skip


@fuzz(100)
@given(st.data(), st.booleans(), FORMATS, st.booleans())
def test_compare_ab_set(bases: Bases, data: st.DataObject, rich: bool, fmt: str,
                        named: bool) -> None:  # fmt: skip
    """An ab set alone (side A against B), or its sides named."""
    with tree_of(bases, rich, "ab") as tree:
        m = data.draw(mutation(tree / "ab" / data.draw(st.sampled_from(AB_FILES))))()
        ab = str(tree / "ab")
        sides = [f"{ab}:A", f"{ab}:B"] if named else [ab]
        o = run(["compare", *sides, "--format", fmt, *FAST, "--max-regression", "50"])
        judge("rmapbench compare", o, m, tree, fmt)


@fuzz(80)
@given(st.data(), st.booleans(), st.sampled_from(["text", "json"]))
def test_sweep_from_set(bases: Bases, data: st.DataObject, rich: bool, fmt: str) -> None:
    with tree_of(bases, rich, "sweep") as tree:
        m = data.draw(mutation(tree / "sweep" / data.draw(st.sampled_from(SWEEP_FILES))))()
        o = run(["sweep", "--from", str(tree / "sweep"), "--format", fmt])
        judge("rmapbench sweep", o, m, tree, fmt)


@fuzz(40)
@given(st.data(), st.booleans())
def test_compare_sweeps(bases: Bases, data: st.DataObject, rich: bool) -> None:
    """A damaged sweep against the recorded one, grid point by grid point."""
    with tree_of(bases, rich, "sweep") as tree:
        m = data.draw(mutation(tree / "sweep" / data.draw(st.sampled_from(SWEEP_FILES))))()
        o = run(["compare", str(FIX / "sweep"), str(tree / "sweep"), *FAST, "--format", "json"])
        judge("rmapbench compare", o, m, tree, "json")


PNG_END = b"IEND\xaeB`\x82"


def check_report(o: Outcome, out: Path, context: str) -> None:
    """A report is there whole, or not at all."""
    if o.status != 0:
        assert not out.exists(), context
        return
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "summary.txt"} <= names, context
    assert not [n for n in names if n.startswith(".")], context  # no temporary file left
    md = (out / "report.md").read_text()
    assert (out / "report.html").read_text().rstrip().endswith("</html>"), context
    for image in re.findall(r"\]\(([^)]+\.png)\)", md):
        data = (out / image).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(PNG_END), context


@fuzz(12)
@given(st.data(), st.booleans())
def test_report(bases: Bases, data: st.DataObject, rich: bool) -> None:
    with tree_of(bases, rich, "ksm1000") as tree:
        m = data.draw(mutation(tree / "ksm1000" / "rmap_ksm.json"))()
        out = tree / "report"
        o = run(["report", str(tree / "ksm1000"), "-o", str(out)])
        judge("rmapbench report", o, m, tree)
        check_report(o, out, m.what)


@fuzz(6)
@given(st.data())
def test_report_of_sets(bases: Bases, data: st.DataObject) -> None:
    """What only the report reads of a set's index: accelerators, sides, grid."""
    part = data.draw(st.sampled_from(["ab", "sweep"]))
    with tree_of(bases, False, part) as tree:
        m = data.draw(json_mutation(tree / part / "index.json"))()
        out = tree / "report"
        o = run(["report", str(tree / part), "-o", str(out)])
        judge("rmapbench report", o, m, tree)
        check_report(o, out, m.what)


# --- end to end: the real command, its real stderr --------------------------


def _zero_syscall(doc: dict[str, Any]) -> None:
    doc["scenarios"][0]["syscall"]["samples"][0] = 0


def _zero_walks(doc: dict[str, Any]) -> None:
    doc["scenarios"][0]["walks"] = _summary([0] * 6)


def _boots_null(doc: dict[str, Any]) -> None:
    doc["boots"] = None


# (file edited, how, command line ({T}: the tree), status, fragment of stderr)
COMMANDS: list[tuple[str, Callable[[dict[str, Any]], None] | None, list[str], int, str]] = [
    ("ksm1000/rmap_ksm.json", None, ["summary", "{T}/ksm1000"], EXIT_RESULTS,
     "ksm1000/rmap_ksm.json: damaged result file (truncated?)"),
    ("sweep/index.json", _boots_null, ["sweep", "--from", "{T}/sweep"], EXIT_RESULTS,
     "sweep/index.json: damaged index: boots is not a list"),
    ("ksm1000/rmap_ksm.json", _zero_syscall,
     ["compare", "{T}/ksm1000", "{T}/ksm2000", "--format", "json"], 0, ""),
    ("ksm1000/rmap_ksm.json", _zero_walks, ["report", "{T}/ksm1000", "-o", "{T}/out"], 0, ""),
]  # fmt: skip


def test_commands(tmp_path: Path) -> None:
    """python -m rmapbench on damaged trees, all at once: the status, and
    stderr whole (a numpy or matplotlib warning would be more of it)."""
    procs = []
    for i, (name, change, argv, _, _) in enumerate(COMMANDS):
        tree = tmp_path / str(i)
        shutil.copytree(FIX, tree)
        path = tree / name
        if change is None:
            path.write_text(path.read_text()[:100])
        else:
            doc = json.loads(path.read_text())
            change(doc)
            path.write_text(json.dumps(doc))
        args = [a.replace("{T}", str(tree)) for a in argv]
        env = {**os.environ, "PYTHONPATH": str(SUITE)}
        procs.append((tree, subprocess.Popen(
            [sys.executable, "-m", "rmapbench", *args], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )))  # fmt: skip
    for (tree, proc), (_, _, argv, status, fragment) in zip(procs, COMMANDS, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == status, err
        if status:
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert err.startswith(f"rmapbench {argv[0]}: error: {tree}") and fragment in err, err
            assert not (tree / "out").exists()
        else:
            assert err == "", err
            if "json" in argv:
                strict_json(out)
