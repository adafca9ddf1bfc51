"""The entry of every test program (rmap_NAME.py calls main()).

Before anything imports a package outside the standard library: parse and
check the command line (a refused one is one line on stderr and exit status
2, whatever is installed), and the paths it names; replay the journals of
dead runs (ksft.cli.replay_journals); then make sure the packages the measuring path
needs are importable, else SKIP (ksft.deps); only then run the case.
check() is also how the front door and sweep/ab refuse, before any boot,
what a program would refuse in the guest.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rmapbench import triggers
from rmapbench.bench import cases
from rmapbench.ksft import deps, options
from rmapbench.ksft.cli import UsageError, guarded, replay_journals
from rmapbench.scenarios import SCENARIOS


def check(
    case: str, argv: list[str], prog: str | None = None, own_line: bool = False
) -> options.Options:
    """The options of one case's program, or UsageError saying why they can
    never work. prog names the program in the parser's messages. When
    $RMAP_ARGS is refused on its own, the line starts with RMAP_ARGS: the
    command line typed may well be fine. Only argv that is the program's
    own command line (own_line) may ask for its help: a front door, or
    $RMAP_ARGS, asking for it would run nothing and pass."""
    name = prog or cases.program(case)
    help_refused = options.help_refusal(name, argv, own_line)
    if help_refused:
        raise UsageError(help_refused)
    try:
        return _check(case, argv, prog)
    except UsageError as error:
        if not os.environ.get("RMAP_ARGS", "").strip():
            raise
        culprit = error
        if argv:  # is the variable refused on its own?
            try:
                _check(case, [], prog)
            except UsageError as alone:
                culprit = alone
            else:
                raise error from None  # the command line's own problem
        text = str(culprit)
        raise UsageError(text if text.startswith("RMAP_ARGS") else f"RMAP_ARGS: {text}") from None


def _check(case: str, argv: list[str], prog: str | None) -> options.Options:
    opts = options.parse(
        prog or cases.program(case), argv, case, cases.policies(),
        f"rmap walk latency of {case} pages",
    )  # fmt: skip
    scenario = SCENARIOS[case]
    refused = scenario.usage_error(opts) or triggers.refusal(opts, case, scenario)
    if refused:
        raise UsageError(refused)
    return opts


def main(program: str, case: str, argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return guarded(program + ".py", lambda: _main(program, case, args), args)


def _main(program: str, case: str, args: list[str]) -> int:
    opts = check(case, args, own_line=True)
    problem = options.path_problem(opts)
    if problem:
        raise UsageError(problem)
    # Before anything else: what killed runs left changed (one line each).
    replay_journals(program + ".py", diag="# ")
    absent = deps.missing()
    if absent:
        return deps.skip_all(program, cases.plan(opts.backend), absent)
    from rmapbench.ksft import lean

    lean.lean_tap()  # tap.tracker without tap's unittest runner and PyYAML
    from rmapbench.bench import pipeline  # imports tap.py and python-ptrace

    return pipeline.main(program, case, opts)


def selected_programs(argv: list[str]) -> list[Path]:
    """The programs argv's --case selects (all without --case); UsageError
    for an unknown case. The programs' options are for check_programs()
    (or the runner's check_options(), which adds each program's own)."""
    selected = cases.selection(argv)
    problem = cases.error(selected or [])
    if problem:
        raise UsageError(problem)
    return cases.programs(selected)


def gives(argv: list[str], dest: str) -> bool:
    """Whether argv, test options every program accepts, gives the option
    of this dest in any spelling argparse takes (--results DIR,
    --results=DIR, --res DIR); $RMAP_ARGS is not looked at."""
    return value_of(argv, dest) not in (None, False)


def value_of(argv: list[str], dest: str) -> object:
    """The value argv gives the option of this dest (the last one given,
    in any spelling), None when it gives none or the programs refuse argv
    anyway; $RMAP_ARGS is not looked at."""
    parser = options.build_parser("rmap", cases.policies())
    try:
        ns = parser.parse_args(argv)
    except UsageError:
        return None
    return getattr(ns, dest, None)


def check_programs(programs: list[Path], argv: list[str]) -> None:
    """UsageError naming the first program that would refuse argv, each
    with its own case's defaults (a program outside the registry decides
    for itself)."""
    for prog in programs:
        case = cases.case_of(prog)
        if case is None:
            continue
        try:
            check(case, argv, prog=prog.name)
        except UsageError as e:
            raise UsageError(f"{prog.name}: {e}") from None
