"""The runner's preloaded start: the suite's own programs forked from a
runner that imported their library once, instead of each one exec'd.

A test program spends its first seconds under TCG starting Python and
importing the library (about 100 modules, 50 dataclasses: the `startup`
and `imports` phases), the same for every case. The runner imports what
the measuring path needs once, before the first program (as the program
would: its directory and vendor/ first on sys.path, tap made lean), and
then runs each of the suite's programs in a forked child of itself: from
its directory, with the environment and argv it would have had, stdout
and stderr on the runner's pipe, in a session of its own that gets
SIGTERM when the runner dies, its file run as __main__. What the program
prints, writes and exits with is unchanged; its `startup` phase is then
the fork.

Only programs of the suite's registry that sit beside the library the
runner imported start this way; anything else (another directory's
copy, a program outside the registry) is exec'd as before, and
RMAPBENCH_PRELOAD=0 in the environment execs every program (to compare,
or to rule the preloaded start out). The kernel's runner.sh and a
program started by hand never use it. Standard library only.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import runpy
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import rmapbench
from rmapbench import early

ENV = "RMAPBENCH_PRELOAD"
LIBRARY = Path(rmapbench.__file__).resolve().parent
SUITE = LIBRARY.parent
# What the measuring path imports (bench/program.py's main, then the pipeline).
MODULES = ("rmapbench.bench.program", "rmapbench.bench.pipeline")

_loaded: bool | None = None  # None: not tried yet


def enabled(env: dict[str, str] | None = None) -> bool:
    """False when RMAPBENCH_PRELOAD=0 asks for every program to be exec'd."""
    return (os.environ if env is None else env).get(ENV, "1") != "0"


def applies(prog: Path, is_case: bool) -> bool:
    """Whether `prog` (a registry case's program when is_case) can start
    from this runner's preloaded library: it must be the one beside it."""
    if not is_case or not enabled():
        return False
    with contextlib.suppress(OSError):
        return prog.resolve().parent == SUITE
    return False


def load() -> bool:
    """Import the measuring path into this process, once, the way a test
    program imports it. False, now and for every later call, when that
    cannot be done faithfully: tap already imported whole by this process
    (a program's would be lean, and its KTAP could differ), a package the
    program would SKIP without, an import that fails (the program is
    exec'd and reports it)."""
    global _loaded
    if _loaded is None:
        _loaded = "tap" not in sys.modules and _import()
    return _loaded


def _import() -> bool:
    for entry in (str(SUITE / "vendor"), str(SUITE)):  # as rmap_*.py set sys.path
        sys.path.insert(0, entry)
    try:
        from rmapbench.ksft import deps, lean

        if deps.missing():
            return False
        lean.lean_tap()
        for name in MODULES:
            importlib.import_module(name)
    except Exception:
        return False
    return True


class Forked:
    """A forked program as run_one() uses a subprocess.Popen: pid, stdout
    (text, the read end of its pipe), wait(timeout)."""

    def __init__(self, pid: int, stdout: TextIO) -> None:
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None
        self._pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):  # Linux 5.3 on
            self._pidfd = os.pidfd_open(pid)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        if timeout is not None and not self._exited_within(timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)  # -N for signal N, as Popen
        if self._pidfd is not None:
            os.close(self._pidfd)
        return self.returncode

    def _exited_within(self, timeout: float) -> bool:
        """Whether the child has exited by `timeout` seconds from now (it is
        left to be reaped)."""
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            return bool(poller.poll(max(timeout, 0) * 1000))
        deadline = time.monotonic() + timeout
        while True:  # no pidfd: look every 50 ms
            if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def start(
    prog: Path, argv: list[str], env: dict[str, str], preexec: Callable[[], None]
) -> Forked:
    """Fork `prog` (its argv[0] "./NAME") from this process: see the module's
    docstring. The caller's threads must not be running (the pump of the
    program before has been joined)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child leaves through os._exit)
        os.close(r)
        os._exit(_child(prog, argv, env, preexec, w))
    os.close(w)
    return Forked(pid, open(r, encoding="utf-8", errors="replace"))


def _child(prog: Path, argv: list[str], env: dict[str, str], preexec: Callable[[], None],
           out: int) -> int:  # fmt: skip
    """The forked program; returns its exit status (nothing raises out)."""
    code = 1
    try:
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        early.install(prog.name)  # a signal from here on: one line and 128+N
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setsid()
        preexec()
        os.chdir(prog.parent)
        os.environ.clear()
        os.environ.update(env)
        _fresh_process()
        sys.argv = list(argv)
        code = _run(argv[0])  # its path as given ("./NAME"): its argv[0] and __file__
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            _finish()
    return code


def _fresh_process() -> None:
    """What a newly started program would have: its own stdio objects, the
    default logging, a phase clock started now."""
    from rmapbench.ksft import phases

    # The interpreter's own choice for its standard streams (the runner's
    # were made from the same environment).
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                  encoding=encoding)  # fmt: skip
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                  encoding=encoding, errors="backslashreplace",
                                  line_buffering=True)  # fmt: skip
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    phases.RECORDER = phases.Recorder()


def _run(path: str) -> int:
    """Run the program's file as __main__; its exit status as Python's own."""
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _finish() -> None:
    """What the interpreter does before exiting: wait for the program's
    non-daemon threads, flush logging and the standard streams."""
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
