"""The entry of every test program (rmap_NAME.py calls main()).

Before anything imports a package outside the standard library: parse and
check the command line (a refused one is one line on stderr and exit status
2, whatever is installed), then make sure the packages the measuring path
needs are importable, else SKIP (rmapbench.ksft.deps); only then run the case.
"""

from __future__ import annotations

import sys

from rmapbench import triggers
from rmapbench.bench import cases
from rmapbench.ksft import deps, options
from rmapbench.ksft.status import EXIT_USAGE
from rmapbench.scenarios import SCENARIOS


def checked_options(program: str, case: str, argv: list[str]) -> options.Options | None:
    """The options, or None after printing why they can never work."""
    opts = options.parse(program + ".py", argv, f"rmap walk latency of {case} pages")
    scenario = SCENARIOS[case]
    refused = scenario.usage_error(opts) or triggers.refusal(opts, case, scenario)
    if refused:
        print(f"{program}.py: error: {refused}", file=sys.stderr)
        return None
    return opts


def main(program: str, case: str, argv: list[str] | None = None) -> int:
    opts = checked_options(program, case, sys.argv[1:] if argv is None else argv)
    if opts is None:
        return EXIT_USAGE
    absent = deps.missing()
    if absent:
        return deps.skip_all(program, cases.plan(opts.backend), absent)
    from rmapbench.bench import pipeline as run  # imports tap.py and python-ptrace

    return run.main(program, case, opts)
