"""Exit statuses and argument parsing shared by the analysis commands.

0 done (compare/ab: no regression beyond --max-regression), 1 a test program
failed in a guest, 2 bad usage (before anything is set up), 3 a guest failed
(panic, timeout, no result), 5 a kernel could not be fetched or read,
6 a significant regression beyond --max-regression, 7 an internal error,
8 results damaged, partial or unable to answer a gate (ksft/status.py).
"""

from __future__ import annotations

import argparse

from rmapbench.ksft.cli import (
    Parser,
    ResultsError,
    UsageError,
    add_verbose,
    describe,
    existing_dir,
    guarded,
    integer,
    new_dir,
    number,
    out_dir,
    replay_journals,
    shown,
)

__all__ = [
    "RAW",
    "Parser",
    "ResultsError",
    "UsageError",
    "add_verbose",
    "describe",
    "existing_dir",
    "guarded",
    "integer",
    "new_dir",
    "number",
    "out_dir",
    "replay_journals",
    "shown",
]

RAW = argparse.RawDescriptionHelpFormatter

# --resamples: enough for any interval, few enough to finish.
MAX_RESAMPLES = 10_000_000
# A run-to-run sd of log medians above this (a factor e per run) measures nothing.
MAX_NOISE_FLOOR = 1.0
