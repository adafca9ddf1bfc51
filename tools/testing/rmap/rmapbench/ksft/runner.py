"""The kselftest runner's semantics (tools/testing/selftests/kselftest/
runner.sh) for running this directory outside a kernel tree:

    TAP version 13
    1..N
    # timeout set to T
    # selftests: rmap: PROG
    # <the program's output, each line prefixed>
    ok N selftests: rmap: PROG          (# SKIP for 4, # TIMEOUT for 124,
                                         not ok ... # exit=N otherwise)

Each program runs from its directory as ./PROG $KSELFTEST_<PROG>_ARGS under a
timeout; on expiry it gets SIGTERM (so it restores the system), then SIGKILL.
A program dies with the runner: it gets SIGTERM (PR_SET_PDEATHSIG) when the
runner is killed, even with SIGKILL, so it is never left running alone.
The suite's own programs start forked from the runner once it has imported
their library (ksft/preload.py; RMAPBENCH_PRELOAD=0 execs them all).
With two programs or more, the probe events one program creates on a walk
function are kept for the next (machine/shared_probes.py) and removed once the
last program has ended; RMAPBENCH_SHARED_PROBES=0 has every program
remove its own.
With --case in the options (or $RMAP_ARGS), only the selected cases' programs
run and are in the plan.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from rmapbench.bench import cases, program
from rmapbench.ksft import phases, preload
from rmapbench.ksft.cli import (
    Parser,
    UsageError,
    add_verbose,
    any_path,
    describe,
    guarded,
    integer,
    replay_journals,
)
from rmapbench.ksft.status import EXIT_TIMEOUT, KSFT_SKIP
from rmapbench.machine import procs
from rmapbench.machine import shared_probes as shared

COLLECTION = "rmap"
DEFAULT_TIMEOUT = 3600
MAX_TIMEOUT = 7 * 24 * 3600
KILL_GRACE = 60  # seconds between SIGTERM and SIGKILL: KSM clean-up takes a while


def env_args_name(prog: str) -> str:
    """KSELFTEST_<PROG>_ARGS, as runner.sh spells it."""
    return "KSELFTEST_" + re.sub(r"[^A-Z0-9]", "_", Path(prog).name.upper()) + "_ARGS"


def override_timeout() -> int | None:
    """$kselftest_override_timeout (run_kselftest.sh --override-timeout),
    checked: UsageError when it is set but not a number of seconds."""
    override = os.environ.get("kselftest_override_timeout")  # noqa: SIM112 (runner.sh spelling)
    if not override:
        return None
    try:
        return integer(1, MAX_TIMEOUT)(override)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"kselftest_override_timeout: {e}") from None


def settings_timeout(directory: Path) -> int:
    """timeout= from the settings file, overridden like runner.sh does."""
    override = override_timeout()
    if override is not None:
        return override
    settings = directory / "settings"
    if settings.exists():
        for line in settings.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "timeout" and value.strip().isdigit():
                return int(value)
    return DEFAULT_TIMEOUT


def _pump(src: TextIO, dst: TextIO) -> None:
    for line in src:
        dst.write("# " + line)  # as runner.sh's sed 's/^/# /' does
        dst.flush()


def program_env() -> dict[str, str]:
    """The programs' environment: this interpreter's directory first on
    PATH, so `#!/usr/bin/env python3` starts the python3 the runner runs
    under (the project's .venv, say) and not whichever is first on PATH."""
    env = dict(os.environ)
    here = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([here, *(d for d in env.get("PATH", "").split(os.pathsep)
                                           if d and d != here)])
    return env


def _die_with_parent(parent: int) -> Callable[[], None]:
    """preexec_fn: SIGTERM to the child when the runner dies (the program
    then restores the system); already dead: exit straight away."""

    def preexec() -> None:
        procs.die_with_parent(signal.SIGTERM, parent, 128 + signal.SIGTERM)

    return preexec


def env_args(prog: str) -> list[str]:
    """$KSELFTEST_<PROG>_ARGS split like a shell does; UsageError naming
    the variable when it cannot be (an unbalanced quote)."""
    name = env_args_name(prog)
    try:
        return shlex.split(os.environ.get(name, ""))
    except ValueError as e:
        raise UsageError(f"{name}: {e}") from None


def check_options(progs: list[Path], extra: list[str]) -> None:
    """UsageError when a program would refuse its options: $RMAP_ARGS, its
    $KSELFTEST_<PROG>_ARGS and `extra`, as run_one() gives them (the
    program's own parser, with its case's defaults). A refusal that is the
    variable's is prefixed with its name."""
    for prog in progs:
        own = env_args(prog.name)
        chosen = cases.selection(own + extra) if own else None
        if chosen is not None and cases.among([prog], chosen) == []:
            raise UsageError(
                f"{env_args_name(prog.name)}: --case or --workload selects {', '.join(chosen)}, "
                f"which leaves {prog.name} out (it would SKIP, having run nothing)"
            )
        try:
            program.check_programs([prog], own + extra)
        except UsageError as e:
            if not own:
                raise
            try:
                program.check_programs([prog], extra)
            except UsageError:
                raise e from None  # not the variable's fault
            raise UsageError(f"{env_args_name(prog.name)}: {e}") from None


def run_one(prog: Path, extra: list[str], timeout: int, out: TextIO) -> int:
    args = env_args(prog.name) + extra
    cmd = ["./" + prog.name, *args]
    env = program_env()
    preexec = _die_with_parent(os.getpid())
    forked = preload.applies(prog, cases.case_of(prog) is not None) and preload.load()
    env[phases.SPAWNED_ENV] = repr(time.monotonic())  # the program's startup phase
    proc: subprocess.Popen[str] | preload.Forked
    if forked:
        proc = preload.start(prog, cmd, env, preexec)
    else:
        proc = subprocess.Popen(
            cmd,
            cwd=prog.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=preexec,
        )
    assert proc.stdout is not None
    pump = threading.Thread(target=_pump, args=(proc.stdout, out), daemon=True)
    pump.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        rc = EXIT_TIMEOUT
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=KILL_GRACE)
        raise
    pump.join()
    proc.stdout.close()
    return rc


def run(progs: list[Path], extra: list[str], timeout: int, out: TextIO | None = None) -> int:
    if out is None:  # looked up at call time, not bound to the sys.stdout of import time
        out = sys.stdout
    print("TAP version 13", file=out)
    print(f"1..{len(progs)}", file=out)
    before = os.environ.get(shared.ENV)
    kept = before != "0" and len(progs) > 1
    if kept:  # the programs' environment (program_env()) has it
        os.environ[shared.ENV] = str(shared.path_for(os.getpid()))
    else:
        os.environ.pop(shared.ENV, None)
    try:
        return _run(progs, extra, timeout, out)
    finally:
        if kept:
            _release(out)
        if before is None:
            os.environ.pop(shared.ENV, None)
        else:
            os.environ[shared.ENV] = before


def _release(out: TextIO) -> None:
    """Remove the probe events, pairings and instance the programs kept for
    each other: one line saying how long it took, or why it could not (the
    next run's replay then removes them)."""
    probes = shared.from_env()
    if probes is None or not (probes.probes or probes.instance):
        return
    t0 = time.monotonic()
    events = sum(len(e.removals) for e in probes.probes.values())
    pairings = sum(1 for e in probes.probes.values() if e.pairing)
    what = (f"{_count(events, 'probe event')}, {_count(pairings, 'pairing')} and "
            f"{'an instance' if probes.instance else 'no instance'}")  # fmt: skip
    failures = probes.release()
    if failures:
        print(f"# could not remove all the programs kept ({what}): {failures[0]}; "
              "the next run's replay will", file=out)  # fmt: skip
    else:
        print(f"# what the programs kept ({what}) removed in "
              f"{time.monotonic() - t0:.2f} s", file=out)  # fmt: skip
    out.flush()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _run(progs: list[Path], extra: list[str], timeout: int, out: TextIO) -> int:
    failed = 0
    for n, prog in enumerate(progs, 1):
        title = f"selftests: {COLLECTION}: {prog.name}"
        print(f"# timeout set to {timeout}", file=out)
        print(f"# {title}", file=out, flush=True)
        rc = run_one(prog, extra, timeout, out)
        if rc == 0:
            print(f"ok {n} {title}", file=out)
        elif rc == KSFT_SKIP:
            print(f"ok {n} {title} # SKIP", file=out)
        elif rc == EXIT_TIMEOUT:
            print(f"not ok {n} {title} # TIMEOUT {timeout} seconds", file=out)
            failed += 1
        else:
            print(f"not ok {n} {title} # exit={rc}", file=out)
            failed += 1
        out.flush()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return guarded("runner", lambda: _main(argv), argv)


def check(argv: list[str] | None) -> tuple[list[Path], list[str], int]:
    """The programs to run, their options and the timeout per program, the
    command line and the environment checked, nothing run yet; UsageError."""
    p = Parser(
        prog="python3 -m rmapbench.ksft.runner",
        description="run test programs with kselftest semantics",
    )
    p.add_argument(
        "--timeout",
        type=integer(1, MAX_TIMEOUT),
        help="seconds per program (default: settings file)",
    )
    add_verbose(p)
    p.add_argument(
        "progs", nargs="+", type=any_path(), help="test programs, then -- and their options"
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    ns = p.parse_args(argv[:cut])
    extra = argv[cut + 1 :]
    progs = [_program(prog) for prog in ns.progs]
    override = override_timeout()  # a malformed one is refused even when --timeout wins
    timeout = ns.timeout or override or settings_timeout(progs[0].parent)
    selected = cases.selection(extra)
    if selected is not None:
        problem = cases.error(selected)
        if problem:
            raise UsageError(problem)
        # Programs of cases --case left out are not run at all.
        progs = cases.among(progs, selected)
        if not progs:
            raise UsageError(cases.none_among(selected))
    # Each program's options ($RMAP_ARGS, its $KSELFTEST_<PROG>_ARGS, those
    # after --) refused now, once, not by every program after the ones
    # before it ran, and as a usage error rather than a failed test.
    check_options(progs, extra)
    return progs, extra, timeout


def _program(path: Path) -> Path:
    """A test program named on the command line, resolved; UsageError
    when it is not an executable file (or its name cannot be looked up)."""
    try:
        prog = path.resolve()
        if prog.is_file() and os.access(prog, os.X_OK):
            return prog
    except OSError as e:
        raise UsageError(describe(e)) from None
    raise UsageError(f"{prog} is not an executable test program")


def _main(argv: list[str] | None) -> int:
    progs, extra, timeout = check(argv)
    replay_journals("runner")
    return run(progs, extra, timeout)


if __name__ == "__main__":
    sys.exit(main())
