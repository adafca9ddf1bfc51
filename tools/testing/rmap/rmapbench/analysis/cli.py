"""Exit statuses and argument parsing shared by the analysis commands.

0 done (compare/ab: no regression beyond --max-regression), 1 a test program
failed in a guest, 2 bad usage (before anything is set up), 3 a guest failed
(panic, timeout, no result), 5 a kernel could not be fetched or read,
6 a significant regression beyond --max-regression.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from rmapbench.ksft.cli import UsageError
from rmapbench.ksft.status import EXIT_USAGE

__all__ = ["RAW", "Parser", "UsageError"]

RAW = argparse.RawDescriptionHelpFormatter


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
