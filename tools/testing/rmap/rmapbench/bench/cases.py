"""The suite's cases: one test program per scenario, one flat stable name.

The registry is scenarios.SCENARIOS: a case NAME is run by the program
rmap_NAME.py (dashes turned into underscores), so a new scenario plus its
program is all a new case needs. `--case NAME` (repeatable, on the command
line or in RMAP_ARGS) selects cases: the front door and the runner run only
the selected programs, and a program run directly while not selected prints
a KTAP plan of SKIPs and exits 4 (KSFT_SKIP).
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from rmapbench.ksft import workloads
from rmapbench.ksft.options import CasePolicy, unknown_cases
from rmapbench.scenarios import SCENARIOS

NOT_SELECTED = "not selected by --case"
# The results each program reports: its walk latency, and with --backend
# all the agreement of the timing backends.
CASE = "walk_latency"
AGREEMENT = "backend_agreement"
SUITE_DIR = Path(__file__).resolve().parents[2]  # tools/testing/rmap


def names() -> list[str]:
    """Every case, in the suite's running order."""
    return list(SCENARIOS)


def policies() -> dict[str, CasePolicy]:
    """Every case's option policy, in running order (for ksft.options)."""
    return {name: scenario.policy for name, scenario in SCENARIOS.items()}


def program(case: str) -> str:
    """The test program of a case: rmap_NAME.py."""
    return "rmap_" + case.replace("-", "_") + ".py"


def programs(selected: list[str] | None = None) -> list[Path]:
    """The programs of the selected cases (all when None), in running order."""
    return [SUITE_DIR / program(n) for n in names() if selected is None or n in selected]


def among(progs: list[Path], selected: list[str] | None) -> list[Path]:
    """The programs of progs a selection runs: all of them when nothing
    is selected, else those of the selected cases (a program outside the
    registry always: it decides for itself)."""
    if selected is None:
        return list(progs)
    return [p for p in progs if case_of(p) in (None, *selected)]


def none_among(selected: list[str]) -> str:
    """Why a selection that leaves out every program given is refused:
    a plan of 1..0, or runs that all SKIP, would pass having run nothing."""
    return f"--case or --workload selects {', '.join(selected)}, none of the programs given"


def case_of(prog: str | Path) -> str | None:
    """The case a program runs, None for a program outside the registry."""
    by_program = {program(n): n for n in names()}
    return by_program.get(Path(prog).name)


def error(selected: list[str]) -> str | None:
    """The one-line complaint about unknown case names, or None."""
    return unknown_cases(selected, names())


def selection(argv: list[str], env: dict[str, str] | None = None) -> list[str] | None:
    """The cases `--case` selects in $RMAP_ARGS followed by argv; None when
    no --case is given (everything runs). Other options are left alone:
    the programs check them."""
    env = dict(os.environ) if env is None else env
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    p.add_argument("--case", action="append")
    p.add_argument("--workload")
    try:
        ns, _ = p.parse_known_args(shlex.split(env.get("RMAP_ARGS", "")) + list(argv))
        # A workload selects its case (ksft/workloads.py), as its --case would.
        ws = [workloads.parse(ns.workload)[0].case] if ns.workload is not None else []
    except (ValueError, argparse.ArgumentError):
        return None  # malformed: every program reports it, exit status 2
    return [*ws, *(ns.case or [])] if ns.case or ws else None


def plan(backend: str) -> list[str]:
    """The results a program reports with this --backend."""
    return [CASE, AGREEMENT] if backend == "all" else [CASE]
