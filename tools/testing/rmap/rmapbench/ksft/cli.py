"""Command lines that fail in one line: a bad option or input is a
UsageError, which the entry point prints as `PROG: error: MESSAGE` and turns
into exit status 2 (ksft.status.EXIT_USAGE) - no usage dump, no traceback,
so a CI log shows exactly what was wrong."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from rmapbench.ksft.status import EXIT_USAGE


class UsageError(Exception):
    """A command line or input that can never work; the message is one line."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors raise UsageError instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def refuse(prog: str, error: UsageError | str) -> int:
    """Print the one line; return the status to exit with."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return EXIT_USAGE


def guarded(prog: str, body: Callable[[], int]) -> int:
    """body()'s status, or, when it raised UsageError, the one line and
    EXIT_USAGE: every command's main() runs through here."""
    try:
        return body()
    except UsageError as e:
        return refuse(prog, e)
