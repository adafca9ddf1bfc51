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
from rmapbench.ksft import results

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
        return self.path.name or str(self.path)


def is_result_set(path: Path) -> bool:
    return (path / INDEX).is_file()


def read_index(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / INDEX).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise results.DamagedResults(f"{path / INDEX}: damaged index (truncated?): {e}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path / INDEX}: not a {SCHEMA} index")
    points = data.get("points")
    if not isinstance(points, list) or not all(
        isinstance(e, dict) and isinstance(e.get("dir"), str) for e in points
    ):
        raise results.DamagedResults(f"{path / INDEX}: damaged index: points without dir")
    return data


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
        _check_complete(p, entry)
        for doc in results.load_results(p / entry["dir"]):
            runs.append(
                Run(
                    doc,
                    dict(entry.get("params", {})),
                    entry.get("side", ""),
                    int(entry.get("round", 0)),
                )
            )
    return Source(p, str(index["kind"]), runs, index)


def _check_complete(p: Path, entry: dict[str, Any]) -> None:
    """DamagedResults when a run the index says finished has no result file."""
    status = entry.get("status") or {}
    for program, rc in (status.items() if isinstance(status, dict) else []):
        path = p / entry["dir"] / f"{program}.json"
        if rc in (0, 1) and not path.is_file():
            raise results.DamagedResults(f"{path}: missing, although {program} exited {rc}")


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
