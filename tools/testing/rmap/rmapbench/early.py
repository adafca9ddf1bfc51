"""Signals during start-up, before a command installs its own handlers.

Python's own SIGINT handler raises KeyboardInterrupt wherever the program
is - in the middle of importing, say - and prints a traceback; SIGTERM
kills silently. Nothing is set up that early, so install() makes SIGINT,
SIGTERM and SIGHUP end the program with one line and 128+N straight away.
The package's __init__ calls it first thing when this process is one of
the suite's commands (a test program, the runner, rmapbench, the vm
command), never when the package is imported by something else.
ksft.cli.guarded() (and the pipeline) replace these handlers with ones that
restore the system, and put them back when they are done.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


COMMANDS = ("rmapbench", "rmapbench.ksft.runner", "rmapbench.guest.vm", "rmapbench.machine.knobs")


def command() -> str | None:
    """The suite's command this process runs, from its command line, or None."""
    argv = list(getattr(sys, "orig_argv", []))
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        return module if module in COMMANDS else None
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    if (script.startswith("rmap_") and script.endswith(".py")) or script == "rmapbench":
        return script
    return None


def install_for_commands() -> None:
    """install() when started as one of the suite's commands and nobody
    has replaced Python's default SIGINT handler."""
    name = command()
    if name and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        install(name)


def install(prog: str) -> None:
    name = os.path.basename(prog)

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            os.write(2, f"{name}: interrupted by {signal.Signals(signum).name}\n".encode())
        finally:
            os._exit(128 + signum)

    for s in SIGNALS:
        signal.signal(s, handler)
