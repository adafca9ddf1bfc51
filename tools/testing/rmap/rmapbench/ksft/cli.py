"""Command lines that fail in one line: a bad option or input is a
UsageError, which the entry point prints as `PROG: error: MESSAGE` and turns
into exit status 2 (ksft.status.EXIT_USAGE) - no usage dump, no traceback,
so a CI log shows exactly what was wrong.

Every parser checks its values with the same argparse `type=` helpers:
integer() and number() (finite, in a range), out_dir() (a directory that is
or can be made writable), new_dir() (one that must not exist yet),
existing_file() and existing_dir(). A value they refuse is named with its
option by argparse (`argument --pages: ...`).

guarded() is the one way every command's main() runs: it turns
SIGINT/SIGTERM/SIGHUP into an orderly exit (128+N, after the `finally`
clauses have restored what was changed), UsageError into exit 2,
ResultsError into EXIT_RESULTS and any other exception into one line and
EXIT_INTERNAL (-v shows the traceback). Every command that changes the
machine calls replay_journals() once its command line is checked, before it
does anything else: journals of dead runs are undone, one line each.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rmapbench.files import create_new
from rmapbench.ksft.status import EXIT_INTERNAL, EXIT_RESULTS, EXIT_USAGE


class UsageError(Exception):
    """A command line or input that can never work; the message is one line."""


class ResultsError(Exception):
    """A result file or set that cannot be used as it is (damaged, partial,
    interrupted), or a gate that cannot be evaluated on it: one line naming
    the file, exit status EXIT_RESULTS."""


# What argparse takes for a negative value rather than an option: its own
# rule (-5, -.5) leaves -1G, -1e400 and -inf to be read as unknown options,
# and the option before them then "expected one argument", which does not
# say what is wrong with the value. None of the suite's options looks so.
_NEGATIVE = re.compile(r"^-([0-9.]|inf|infinity$|nan$)", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """argparse whose errors raise UsageError instead of exiting, and that
    reads any value starting with a minus and a digit (or inf, nan) as a
    value, for its type to accept or refuse."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _HelpAsked(Exception):
    pass


def _help_asked(*args: object, **kwargs: object) -> NoReturn:
    raise _HelpAsked


def asks_help(make_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str]) -> bool:
    """Whether the parser make_parser() builds, given argv, would print its
    help and exit 0: -h, --help, any prefix of it argparse takes (--he), -h
    inside a cluster of short options (-vh). A front door that passes argv
    on to a program refuses that: the program would print its help and run
    nothing, and whatever ran it would count a pass. The parser is built
    only when argv holds something that could be help (the common case
    holds none)."""
    if not any(
        a.startswith("--h") or (a.startswith("-") and not a.startswith("--") and "h" in a)
        for a in argv
    ):
        return False
    parser = make_parser()
    parser.print_help = _help_asked  # type: ignore[method-assign]
    try:
        parser.parse_known_args(list(argv))
    except _HelpAsked:
        return True
    except (UsageError, argparse.ArgumentError, SystemExit):
        pass  # refused for another reason: the caller's own check says which
    return False


# -- typed values -----------------------------------------------------------


# A value is echoed in its error line; a pasted megabyte is not.
SHOWN_CHARS = 40
# Digits of an integer beyond what int() converts (sys.get_int_max_str_digits'
# default is 4300) are far beyond every range here: out of range, not "not a number".
# Only ASCII digits: int() and float() also take any script's digits and
# Python's 1_000, spellings no kernel tool takes, which would make two
# spellings of one value look different (sweep's points, the results).
_DIGITS = re.compile(r"\s*([+-]?)[0-9]+\s*", re.ASCII)
_DECIMAL = re.compile(
    r"\s*[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)\s*",
    re.ASCII | re.IGNORECASE,
)


def shown(text: str, quote: bool = False) -> str:
    """A value as an error line shows it: cut short when it is long."""
    cut = text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"
    return repr(cut) if quote else cut


def number_of(text: str) -> int | float | None:
    """The number text spells as integer() or number() read it, None for
    anything else: 100, 0100 and +100 are one value, as are 5 and 5.0."""
    if _DIGITS.fullmatch(text):
        with contextlib.suppress(ValueError):  # too long for int(): not one we compare
            return int(text.strip(), 10)
        return None
    return float(text) if _DECIMAL.fullmatch(text) else None


def _check_range(value: float, text: str, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise argparse.ArgumentTypeError(f"must be at least {lo}, got {shown(text)}")
    if hi is not None and value > hi:
        raise argparse.ArgumentTypeError(f"must be at most {hi}, got {shown(text)}")


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        digits = _DIGITS.fullmatch(text)
        if digits is None:
            raise argparse.ArgumentTypeError(f"not a number: {shown(text, True)}")
        try:
            value = int(text.strip(), 10)
        except ValueError:
            negative = digits.group(1) == "-"
            bound = lo if negative else hi
            if bound is None:  # no range to be out of: too long to be any use
                raise argparse.ArgumentTypeError(
                    f"too long a number: {shown(text, True)}") from None  # fmt: skip
            value = bound - 1 if negative else bound + 1  # beyond the bound it crosses
        _check_range(value, text, lo, hi)
        return value

    parse.__name__ = "integer"
    return parse


def number(
    lo: float | None = None, hi: float | None = None, *, above: bool = False
) -> Callable[[str], float]:
    """argparse type: a finite number in [lo, hi] (above: greater than lo).
    nan and inf are refused: a gate compared with nan is never crossed."""

    def parse(text: str) -> float:
        if _DECIMAL.fullmatch(text) is None:
            raise argparse.ArgumentTypeError(f"not a number: {shown(text, True)}")
        value = float(text)
        if math.isinf(value) and "inf" not in text.lower():  # 1e999: finite, but too large
            _check_range(value, text, lo, hi)
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {shown(text)}")
        if above and lo is not None and value <= lo:
            raise argparse.ArgumentTypeError(f"must be more than {lo}, got {shown(text)}")
        _check_range(value, text, None if above else lo, hi)
        return value

    parse.__name__ = "number"
    return parse


def _probe_writable(directory: Path) -> str | None:
    """Why no file can be created in an existing directory, or None. Tried
    for real: access(2) says yes to root on /proc and read-only mounts."""
    try:
        fd, probe = create_new(directory, ".rmapbench-probe.")
    except OSError as e:
        # /proc and /sys say ENOENT to a new name, which would read as
        # though the directory itself were missing.
        why = "no file can be created there" if e.errno == errno.ENOENT else e.strerror or e
        return f"{directory} is not writable ({why})"
    os.close(fd)
    os.unlink(probe)
    return None


def writable_dir_problem(path: Path, *, must_not_exist: bool = False) -> str | None:
    """Why `path` cannot be a directory to write into (creating it and its
    parents if need be), or None."""
    if path.exists() or path.is_symlink():
        if must_not_exist:
            return f"{path} exists; give a new directory"
        if not path.is_dir():
            return f"{path} is not a directory"
        return _probe_writable(path)
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{path}: {parent} is not a directory"
    problem = _probe_writable(parent)
    return None if problem is None else f"{path}: {problem}"


def describe(e: Exception) -> str:
    """An error as one line names it: an OSError as `PATH: reason`, the
    path cut short as shown() cuts values, not `[Errno 36] ...: 'PATH'`."""
    if isinstance(e, OSError) and e.filename is not None:
        return f"{shown(str(e.filename))}: {e.strerror or e}"
    return str(e)


def path_checked(check: Callable[[Path], str | None], path: Path) -> str | None:
    """check(path), or why the path itself cannot be looked at: a name too
    long (ENAMETOOLONG), a loop of symlinks, EACCES on a parent."""
    try:
        return check(path)
    except OSError as e:
        return describe(e) if e.filename is not None else f"{shown(str(path))}: {e}"


def _path_type(check: Callable[[Path], str | None], name: str) -> Callable[[str], Path]:
    def parse(text: str) -> Path:
        if not text:
            raise argparse.ArgumentTypeError("expected a path, got ''")
        path = Path(text)
        problem = path_checked(check, path)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return path

    parse.__name__ = name
    return parse


def any_path() -> Callable[[str], Path]:
    """argparse type: a path, which "" is not (Path("") is the current
    directory); whether it exists is for the command to say."""
    return _path_type(lambda p: None, "path")


def out_dir() -> Callable[[str], Path]:
    """argparse type: a directory to write into, created when missing."""
    return _path_type(writable_dir_problem, "directory")


def new_dir() -> Callable[[str], Path]:
    """argparse type: a directory to create, which must not exist yet."""
    return _path_type(lambda p: writable_dir_problem(p, must_not_exist=True), "directory")


def _file_problem(path: Path) -> str | None:
    if not path.exists():
        return f"{path}: no such file"
    if not path.is_file():
        return f"{path} is not a file"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable"
    return None


def _dir_problem(path: Path) -> str | None:
    if not path.exists():
        return f"{path}: no such directory"
    if not path.is_dir():
        return f"{path} is not a directory"
    return None


def _out_file_problem(path: Path) -> str | None:
    if path.is_dir():
        return f"{path} is a directory, not a file"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    return writable_dir_problem(path.absolute().parent)


def out_file() -> Callable[[str], Path]:
    """argparse type: a file to write (its directory created when missing)."""
    return _path_type(_out_file_problem, "file")


def existing_file() -> Callable[[str], Path]:
    """argparse type: a readable regular file."""
    return _path_type(_file_problem, "file")


def existing_dir() -> Callable[[str], Path]:
    """argparse type: an existing directory."""
    return _path_type(_dir_problem, "directory")


def add_verbose(p: argparse.ArgumentParser) -> None:
    """-v for a command that has no other use for it: the traceback of an
    internal error."""
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show the traceback of an internal error"
    )


# -- the one error path -----------------------------------------------------


def one_line(text: str) -> str:
    """text as one printable line: a value echoed in a message may hold a
    newline, a control character or an undecodable argv byte (a
    surrogate), each shown escaped as repr() would."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def refuse(prog: str, error: Exception | str, status: int = EXIT_USAGE) -> int:
    """Print the one line; return the status to exit with."""
    print(one_line(f"{prog}: error: {error}"), file=sys.stderr)
    return status


def _verbose(argv: Sequence[str]) -> bool:
    args = list(argv)
    args = args[: args.index("--")] if "--" in args else args
    return any(a in ("-v", "--verbose") for a in args)


def replay_journals(prog: str, diag: str = "") -> int:
    """Undo what runs killed before they could restore left in place, with
    one line each; returns how many were undone. Never raises."""
    from rmapbench.machine import knobs

    def say(line: str) -> None:
        print(f"{diag}{prog}: {line}", file=sys.stderr, flush=True)

    try:
        return knobs.recover_stale(report=say)
    except Exception as e:  # a safety net must not stop the command
        say(f"cannot replay stale journals in {knobs.JOURNAL_DIR}: {e}")
        return 0


def guarded(
    prog: str,
    body: Callable[[], int],
    argv: Sequence[str] | None = None,
    *,
    diag: str = "",
) -> int:
    """body()'s status; every command's main() runs through here. Stale
    journals are replayed first; a UsageError is one line and EXIT_USAGE, a
    ResultsError one line and EXIT_RESULTS, a termination signal 128+N
    (the body's `finally` clauses have run), anything else one line and
    EXIT_INTERNAL (the traceback too with -v). diag prefixes the lines (a
    test program's "# ")."""
    from rmapbench.machine import knobs

    args = sys.argv[1:] if argv is None else argv

    def notes(e: BaseException) -> str:  # e.g. where a partial result set was left
        return "".join(f"; {n}" for n in getattr(e, "__notes__", []))

    try:
        with knobs.signals_raise():
            return body()
    except UsageError as e:
        return refuse(diag + prog, f"{e}{notes(e)}")
    except ResultsError as e:
        return refuse(diag + prog, f"{e}{notes(e)}", EXIT_RESULTS)
    except BrokenPipeError:  # whoever read our output is gone (a runner killed)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
        return knobs.exit_status_for(knobs.received_signal() or signal.SIGPIPE)
    except (knobs.Interrupted, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, knobs.Interrupted) else 2
        print(one_line(f"{diag}{prog}: interrupted by {knobs.signal_name(signum)}{notes(e)}"),
              file=sys.stderr)
        return knobs.exit_status_for(signum)
    except Exception as e:
        if _verbose(args):
            traceback.print_exc()
        hint = "" if _verbose(args) else " (rerun with -v for the traceback)"
        print(
            one_line(f"{diag}{prog}: internal error: {type(e).__name__}: {e}{notes(e)}{hint}"),
            file=sys.stderr,
        )
        return EXIT_INTERNAL
