"""Result sets: several runs of the test programs kept together, one
subdirectory per grid point (sweep) or per side and round (ab), each holding
the PROGRAM.json files the programs wrote with --results, and an index.json
naming them (schema in docs/json.md).

A result set is built in a hidden sibling directory and renamed into place
when complete, so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rmapbench import __version__
from rmapbench.files import write_atomic
from rmapbench.ksft import results, shape
from rmapbench.ksft.cli import one_line

SCHEMA = "rmapbench/resultset/1"
INDEX = "index.json"


@dataclass
class Run:
    """One test program's result document, and where in the set it was."""

    doc: dict[str, Any]
    point: dict[str, str] = field(default_factory=dict)  # varied name -> value
    side: str = ""  # "A" or "B" in an ab set
    round: int = 0  # 1-based round in an ab set


@dataclass
class Source:
    path: Path
    kind: str  # "dir" (one --results directory), "sweep" or "ab"
    runs: list[Run]
    index: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """Its name in headers, tables and plots: a newline or control
        character of a directory's name escaped, not printed."""
        return one_line(self.path.name or str(self.path))


def identity(source: Source) -> str:
    """Where source was read from, the same for every spelling of it (a
    symlink, DIR/., a relative path)."""
    try:
        return str(source.path.resolve())
    except OSError:  # it was read: only a name too long to resolve again
        return os.path.abspath(source.path)


def is_result_set(path: Path) -> bool:
    return (path / INDEX).is_file()


def read_index(path: Path) -> dict[str, Any]:
    """The index of a result set, checked (check_index): ValueError when
    it is not one, DamagedResults naming it when it is damaged."""
    data = results.read_json(path / INDEX, "index")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path / INDEX}: not a {SCHEMA} index")
    try:
        check_index(data)
    except shape.Bad as e:
        raise results.DamagedResults(f"{path / INDEX}: damaged index: {e}") from None
    return data


KINDS = ("sweep", "ab")


def check_index(data: dict[str, Any]) -> None:
    """What the readers take of an index (docs/json.md): shape.Bad naming
    the field otherwise."""
    kind = data.get("kind")
    if kind not in KINDS:
        raise shape.Bad(f"kind {shape.show(kind)} is none of {', '.join(KINDS)}")
    grid = shape.obj(data, "grid", "", null=False)
    for name, values in grid.items():
        if not is_word(name) or not isinstance(values, list) or not values:
            raise shape.Bad(f"grid.{name} is not a parameter with a list of values")
        if not all(is_word(v) for v in values) or len(set(values)) != len(values):
            raise shape.Bad(f"grid.{name}: values not all distinct words: {shape.show(values)}")
    shape.texts(data, "test_args", "")
    for here, boot in shape.objects(data, "boots", "", null=False):
        shape.text(boot, "accel", here)
    sides = shape.obj(data, "sides", "", null=False)
    for side in sides:
        shape.obj(shape.obj(sides, side, "sides", null=False), "set", f"sides.{side}")
    if not isinstance(data.get("points"), list):
        raise shape.Bad(f"points is not a list: {shape.show(data.get('points'))}")
    seen: dict[str, str] = {}
    for here, entry in shape.objects(data, "points", ""):
        directory = entry.get("dir")
        # One directory of the set, not a path out of it.
        if not isinstance(directory, str) or not _plain_name(directory):
            raise shape.Bad(f"{here}.dir is not a directory name: {shape.show(directory)}")
        status = shape.obj(entry, "status", here, null=False)
        for program, rc in status.items():
            if not _plain_name(program) or not (rc is None or shape.is_count(rc)):
                raise shape.Bad(f"{here}.status: {shape.show(program)}: {shape.show(rc)}")
        # What the point stands for, as the analysis tells points apart.
        if kind == "ab":
            if entry.get("side") not in ("A", "B"):
                raise shape.Bad(f"{here}.side is neither A nor B: {shape.show(entry.get('side'))}")
            if not shape.is_count(entry.get("round")) or entry["round"] < 1:
                raise shape.Bad(f"{here}.round is not a round: {shape.show(entry.get('round'))}")
            what = f"{entry['side']} {entry['round']}"
        else:
            what = _params(here, entry, grid)
        if directory in seen:
            raise shape.Bad(f"{here}.dir {directory} is repeated")
        if what in seen.values():
            raise shape.Bad(f"{here} repeats the point {what!r} of another")
        seen[directory] = what


def _params(here: str, entry: dict[str, Any], grid: dict[str, Any]) -> str:
    """A sweep point's parameters, as samples.point_label puts them (and
    sweep.fits and report.sweep_plots take them apart again: words only)."""
    params = shape.obj(entry, "params", here, null=False)
    for name, value in params.items():
        if not is_word(name) or "=" in name or not is_word(value):
            raise shape.Bad(f"{here}.params: {shape.show(name)}: {shape.show(value)}")
    if grid and (set(params) != set(grid) or any(v not in grid[k] for k, v in params.items())):
        raise shape.Bad(f"{here}.params {shape.show(params)} are not a point of the grid")
    return " ".join(f"{k}={v}" for k, v in params.items())


def is_word(value: Any) -> bool:
    """A non-empty string without white space: what an index names (a grid
    value, a --set value) and the shell splits on."""
    return isinstance(value, str) and bool(value) and not any(c.isspace() for c in value)


def _plain_name(name: str) -> bool:
    return is_word(name) and "/" not in name and name not in (".", "..")


def load(path: str | Path) -> Source:
    """A --results directory or a result set; ValueError when it is neither."""
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"{p}: not a directory")
    if not is_result_set(p):
        docs = results.load_results(p)
        if not docs:
            raise ValueError(f"{p}: no {results.SCHEMA} result files and no {INDEX}")
        return Source(p, "dir", [Run(d) for d in docs])
    index = read_index(p)
    runs = []
    for entry in index["points"]:
        docs = results.load_results(p / entry["dir"])
        _check_complete(p, entry, {d["program"] for d in docs})
        for doc in docs:
            point = dict(entry.get("params", {}))
            runs.append(Run(doc, point, entry.get("side", ""), entry.get("round", 0)))
    return Source(p, str(index["kind"]), runs, index)


def _check_complete(p: Path, entry: dict[str, Any], programs: set[str]) -> None:
    """DamagedResults when a run the index says finished has no result."""
    for program, rc in entry.get("status", {}).items():
        path = p / entry["dir"] / f"{program}.json"
        if rc in (0, 1) and program not in programs:
            # There, it is some other JSON, or another program's result.
            why = f"not a {results.SCHEMA} result of {program}" if path.exists() else "missing"
            raise results.DamagedResults(f"{path}: {why}, although {program} exited {rc}")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def base_index(kind: str, argv: list[str]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "kind": kind,
        "tool": {"name": "rmapbench", "version": __version__},
        "created": now(),
        "command": argv,
        "points": [],
    }


class OutputExists(Exception):
    pass


@contextlib.contextmanager
def building(final: Path) -> Iterator[Path]:
    """A hidden directory next to `final` to fill; renamed to `final` when
    the block ends normally, left in place when it raises - and named, on
    every way out: the exception gets a note that the command's one error
    line ends with (ksft.cli.guarded)."""
    final = final.resolve()
    if final.exists():
        raise OutputExists(f"{final} exists; give a new directory")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
    except SystemExit:  # run_boots() has named the partial set already
        raise
    except BaseException as e:
        e.add_note(f"partial result set in {tmp} (incomplete, so not renamed to {final.name})")
        raise
    os.replace(tmp, final)


def write_index(directory: Path, index: dict[str, Any]) -> None:
    write_atomic(directory / INDEX, json.dumps(index, indent=2) + "\n")
