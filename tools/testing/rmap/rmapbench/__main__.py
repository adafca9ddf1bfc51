"""`rmapbench` / `python3 -m rmapbench`: the suite's command line.

rmapbench run [run_tests.sh options]   run the suite here or in a guest
rmapbench summary DIR                  table of a result directory
rmapbench vm [options] -- CMD          run a command in a guest
rmapbench sweep --vary NAME=V1,V2 [guest options] -- TEST ARGS
                                       run cases over a grid in one guest per kernel
rmapbench compare BASE NEW             compare two result dirs or sets
rmapbench ab --kernel A --kernel B | --set NAME=VALUE [-- TEST ARGS]
                                       A/B runs in alternation, then compare
rmapbench report RESULTS... -o DIR     Markdown/HTML report with plots

Exit status: 0 done, 1 a test failed, 2 bad usage, 3 guest failure,
5 no kernel, 6 a significant regression beyond --max-regression,
7 an internal error (-v for the traceback), 8 results damaged, partial or
unable to answer a gate, 128+N ended by signal N (system restored).
"""

from __future__ import annotations

import sys

from rmapbench.guest import suite
from rmapbench.ksft import results, summary
from rmapbench.ksft.cli import (
    Parser,
    ResultsError,
    UsageError,
    add_verbose,
    existing_dir,
    guarded,
    refuse,
)

# Subcommands in rmapbench.analysis (imported on use: numpy, scipy, matplotlib).
ANALYSIS = {"sweep": "sweep", "compare": "compare", "ab": "ab", "report": "report"}


def _summary(argv: list[str]) -> int:
    """The table of one result directory; a run that did not finish or was
    interrupted is shown (flagged) and named, and the status is EXIT_RESULTS."""
    p = Parser(prog="rmapbench summary", description="the table of a result directory")
    # Any number, so that none or two are refused in the words below, not argparse's.
    p.add_argument("directory", nargs="*", type=existing_dir(), metavar="DIR")
    add_verbose(p)
    ns = p.parse_args(argv)
    if len(ns.directory) != 1:
        raise UsageError("give one result directory")
    (ns.directory,) = ns.directory
    docs = results.load_results(ns.directory, keep_partial=True)
    if not docs:  # as compare and report say it: a gate on it must not pass
        raise UsageError(f"{ns.directory}: no {results.SCHEMA} result files")
    print(summary.full(docs))
    unfinished = [f"{d['program']}: {why}" for d in docs if (why := results.partial(d))]
    if unfinished:
        raise ResultsError(f"{ns.directory}: partial results: " + "; ".join(unfinished))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    commands = f"run, summary, vm, {', '.join(ANALYSIS)}"
    if not args:  # a bad command line like any other: one line on stderr
        return refuse("rmapbench", f"give a command ({commands}; rmapbench --help)")
    if args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        return suite.main(rest)
    if cmd == "summary":
        return guarded("rmapbench summary", lambda: _summary(rest), rest)
    if cmd == "vm":
        from rmapbench.guest import vm

        return vm.main(rest)
    if cmd in ANALYSIS:
        import importlib

        module = importlib.import_module(f"rmapbench.analysis.{ANALYSIS[cmd]}")
        status: int = module.main(rest)
        return status
    return refuse("rmapbench", f"unknown command {cmd!r} ({commands})")


if __name__ == "__main__":
    sys.exit(main())
