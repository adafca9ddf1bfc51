"""`rmapbench` / `python3 -m rmapbench`: the suite's command line.

rmapbench run [run_tests.sh options]   run the suite here or in a guest
rmapbench summary DIR                  table of a result directory
rmapbench vm [options] -- CMD          run a command in a guest
"""

from __future__ import annotations

import sys

from rmapbench import results, suite, summary


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else suite.EXIT_USAGE
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        return suite.main(rest)
    if cmd == "summary":
        if len(rest) != 1:
            print("rmapbench summary: error: give one result directory", file=sys.stderr)
            return suite.EXIT_USAGE
        print(summary.table(results.load_results(rest[0])))
        return 0
    if cmd == "vm":
        from rmapbench import vm

        return vm.main(rest)
    print(f"rmapbench: error: unknown command {cmd!r} (run, summary, vm)", file=sys.stderr)
    return suite.EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
