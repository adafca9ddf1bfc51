"""Exit statuses and argument parsing shared by the analysis commands.

0 done (compare/ab: no regression beyond --max-regression), 1 a test program
failed in a guest, 2 bad usage (before anything is set up), 3 a guest failed
(panic, timeout, no result), 5 a kernel could not be fetched or read,
6 a significant regression beyond --max-regression.
"""

from __future__ import annotations

import argparse

from rmapbench.ksft.cli import Parser, UsageError, guarded

__all__ = ["RAW", "Parser", "UsageError", "guarded"]

RAW = argparse.RawDescriptionHelpFormatter

