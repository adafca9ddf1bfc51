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
5 no kernel, 6 a significant regression beyond --max-regression.
"""

from __future__ import annotations

import sys

from rmapbench.guest import suite
from rmapbench.ksft import results, summary
from rmapbench.ksft.status import EXIT_USAGE

# Subcommands in rmapbench.analysis (imported on use: numpy, scipy, matplotlib).
ANALYSIS = {"sweep": "sweep", "compare": "compare", "ab": "ab", "report": "report"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else EXIT_USAGE
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        return suite.main(rest)
    if cmd == "summary":
        if len(rest) != 1:
            print("rmapbench summary: error: give one result directory", file=sys.stderr)
            return EXIT_USAGE
        print(summary.full(results.load_results(rest[0])))
        return 0
    if cmd == "vm":
        from rmapbench.guest import vm

        return vm.main(rest)
    if cmd in ANALYSIS:
        import importlib

        module = importlib.import_module(f"rmapbench.analysis.{ANALYSIS[cmd]}")
        status: int = module.main(rest)
        return status
    print(
        f"rmapbench: error: unknown command {cmd!r} (run, summary, vm, {', '.join(ANALYSIS)})",
        file=sys.stderr,
    )
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
