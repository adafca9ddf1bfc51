"""Every global setting the suite touches, saved before and restored after.

A test changes machine-wide state: KSM's sysfs knobs, vm.max_map_count, a
tracefs instance, dynamic events. Each change goes through a Journal, which
remembers how to undo it, undoes everything in reverse order on every exit
path (normal return, exception, SIGINT, SIGTERM, SIGHUP), and keeps a copy on
disk so that a run killed with SIGKILL is undone by the next run.

The undo step is on disk before the change is made (set() and change()), so
a SIGKILL between the two leaves at worst an undo of something that never
happened, which recover_stale() finds already undone (ENOENT). Every entry
point replays stale journals first (ksft.cli.guarded).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import NoReturn, Protocol

from rmapbench.files import write_atomic

log = logging.getLogger(__name__)

# An empty value is no value: Path("") would be whatever directory the
# command happens to run in (a test program runs in its own).
JOURNAL_DIR = Path(os.environ.get("RMAPBENCH_JOURNAL_DIR") or "/run/rmapbench")
# A suite runner's journal of the probe events its programs keep
# (journal-PID-shared.json: machine/shared_probes.py), replayed last.
SHARED_SUFFIX = "-shared"


class Interrupted(Exception):
    """A termination signal arrived; raised so that cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class KnobUnwritable(Exception):
    """The kernel does not let this process change a knob (a read-only
    /proc/sys or /sys, as containers mount them; a lockdown): the case
    cannot set up what it measures."""

    def __init__(self, path: str, err: OSError) -> None:
        super().__init__(f"{path}: {err.strerror or err}")
        self.path = path


# What a write to a knob says when it may never be changed from here (an
# EINVAL or EBUSY is the kernel refusing that value, now).
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


@dataclass
class Undo:
    """One step that puts something back.

    kind "write": write `value` to `path`; "rmdir": remove directory `path`;
    "append": append `value` to `path` (removing a dynamic event);
    "try-write": write `value` to `path` unless the file refuses it (turning
    off a kdamond that never started, or stopped on its own, is EINVAL);
    "call": run `action`, this process's own cleanup (closing the file
    descriptors of BPF programs: tracing/bpf/backend.py). A "call" step is
    never written to disk: what it undoes belongs to the process and
    disappears with it, so a later run has nothing to recover.
    """

    kind: str
    path: str
    value: str = ""
    action: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def apply(self) -> None:
        if self.kind == "write":
            Path(self.path).write_text(self.value)
        elif self.kind == "try-write":
            with contextlib.suppress(OSError):
                Path(self.path).write_text(self.value)
        elif self.kind == "append":
            append_line(self.path, self.value)
        elif self.kind == "rmdir":
            if os.path.isdir(self.path):
                os.rmdir(self.path)
        elif self.kind == "call":
            if self.action is not None:
                self.action()
        else:
            raise ValueError(f"unknown undo kind {self.kind!r}")


def append_line(path: str | Path, text: str) -> None:
    """Append one line with a single write(2). Python's "a" mode seeks to the
    end first, which tracefs command files refuse with EINVAL."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def read_knob(path: str | Path) -> str:
    """A knob's value. A choice knob ("always [madvise] never", as THP's
    enabled reads) gives its selected word, which is what it accepts back."""
    text = Path(path).read_text().strip()
    choice = _CHOICE.fullmatch(text)
    return choice.group(1) if choice else text


_CHOICE = re.compile(r"(?:[\w+-]+ )*\[([\w+-]+)\](?: [\w+-]+)*")


class Recorder(Protocol):
    """What records a change's undo step before the change is made: a
    Journal, or the runner's journal of kept probe events
    (machine/shared_probes.py)."""

    def change(self, step: Undo) -> contextlib.AbstractContextManager[None]: ...


class Journal:
    """Records undo steps; `restore()` applies them newest first."""

    def __init__(self, directory: Path | None = None, tag: str = "") -> None:
        self._dir = directory or JOURNAL_DIR
        self._steps: list[Undo] = []
        self._originals: dict[str, str] = {}
        self._written: set[str] = set()  # knobs with an undo step recorded
        # One file per journal: a run may hold several at once (--backend all).
        suffix = f"-{tag}" if tag else ""
        self._file = self._dir / f"journal-{os.getpid()}{suffix}.json"

    # -- recording ----------------------------------------------------------
    def set(self, path: str | Path, value: str | int) -> None:
        """Write value to a knob, remembering its first original value."""
        path = str(path)
        new = str(value)
        if path not in self._originals:
            self._originals[path] = read_knob(path)
        step = None
        if path not in self._written:
            # Also when an earlier set() found the value already in place.
            old = self._originals[path]
            if old == new:
                return
            self._written.add(path)
            step = Undo("write", path, old)
            self._record(step)
        log.info("echo %s > %s", new, path)
        try:
            Path(path).write_text(new)
        except OSError as e:
            if step is not None:  # nothing was changed: nothing to undo
                self._written.discard(path)
                self._steps.remove(step)
                self._save()
            if e.errno in UNWRITABLE:
                raise KnobUnwritable(path, e) from e
            raise

    def original(self, path: str | Path) -> str:
        """The value a knob had before this journal touched it."""
        path = str(path)
        return self._originals[path] if path in self._originals else read_knob(path)

    def on_undo(self, step: Undo) -> None:
        """Register an undo step for a change the caller has made itself.
        A SIGKILL before this call leaves the change unrecorded: prefer
        change(), which records the step first."""
        self._record(step)

    @contextlib.contextmanager
    def change(self, step: Undo) -> Iterator[None]:
        """Record `step` (on disk) and then let the block make the change
        it undoes; signals are held meanwhile. When the block raises, the
        change was not made and the step is forgotten (undoing it would,
        say, remove an instance somebody else created)."""
        with signals_held():
            self._record(step)
            try:
                yield
            except BaseException:
                if self._steps and self._steps[-1] is step:
                    self._steps.pop()
                    self._save()
                raise

    def _record(self, step: Undo) -> None:
        self._steps.append(step)
        if step.kind != "call":  # nothing on disk changes
            self._save()

    def _save(self) -> None:
        try:
            write_journal(self._file, os.getpid(), self._steps)
        except OSError as e:  # the journal is a safety net, not a requirement
            log.warning("cannot write knob journal %s: %s", self._file, e)

    # -- restoring ----------------------------------------------------------
    def restore(self) -> list[str]:
        """Undo everything, newest first; returns the failures (also logged).
        Nothing cuts it short: a signal meanwhile is held until every step
        ran, then raised. (A dying runner's PR_SET_PDEATHSIG arrives once
        for each of its threads, so a program interrupted by the first
        SIGTERM is still restoring when the second comes; a user may press
        ^C twice.)"""
        with signals_held():
            return self._restore()

    def _restore(self) -> list[str]:
        failures: list[str] = []
        self._written.clear()  # a later set() records its undo step again
        while self._steps:
            step = self._steps.pop()
            try:
                step.apply()
                log.info("restored %s %s", step.kind, step.path)
            except OSError as e:
                failures.append(f"{step.kind} {step.path}: {e.strerror or e}")
                log.error("cannot restore %s %s: %s", step.kind, step.path, e)
        if not failures:
            with contextlib.suppress(OSError):  # the journal is a safety net
                self._file.unlink()
        return failures

    def check_restored(self) -> list[str]:
        """Knobs that do not read back as they were before the run."""
        return [
            f"{path}: {read_knob(path)!r} != {old!r}"
            for path, old in self._originals.items()
            if read_knob(path) != old
        ]

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.restore()


def write_journal(path: Path, pid: int, steps: list[Undo], **extra: object) -> None:
    """Write a journal file: the owner's pid, the steps recover_stale()
    undoes ("call" steps are the process's own and never on disk), and
    what else its writer keeps there. Written for each step, so kept
    cheap: one line of JSON (which the C encoder writes), the directory
    made only when it is missing. With indent=1, asdict() and a mkdir each
    time, 27 ms a save under TCG."""
    records = [{"kind": s.kind, "path": s.path, "value": s.value}
               for s in steps if s.kind != "call"]  # fmt: skip
    text = json.dumps({"pid": pid, "steps": records, **extra})
    try:
        write_atomic(path, text)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)


def recover_stale(
    directory: Path | None = None, report: Callable[[str], None] | None = None
) -> int:
    """Undo journals left by runs that died without cleaning up (SIGKILL,
    power loss of the guest does not matter). Returns how many were undone;
    report() gets one line per journal replayed (or kept). A step whose
    target is gone (ENOENT: its change was never made, or was undone
    already) counts as undone; a journal with a step that could not be
    undone otherwise is kept for the next try."""
    directory = directory or JOURNAL_DIR
    done = 0
    try:
        # A runner's shared probe events last (machine/shared_probes.py): a dead
        # program's instance, removed by its own journal, may still have
        # them enabled, and an enabled event cannot be deleted.
        paths = sorted(directory.glob("journal-*.json"),
                       key=lambda p: (p.stem.endswith(SHARED_SUFFIX), p.name))  # fmt: skip
    except OSError:
        return 0
    for path in paths:
        try:
            data = json.loads(path.read_text())
            pid = int(data["pid"])
            steps = list(data.get("steps", []))
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable journal %s: %s", path, e)
            continue
        if pid != os.getpid() and alive(pid):
            continue
        # report() says it in one line; without one, the log does.
        (log.info if report else log.warning)("undoing changes left by dead run %d (%s)", pid, path)
        failed = []
        for raw in reversed(steps):
            try:
                Undo(**raw).apply()
            except FileNotFoundError:
                continue
            except (OSError, TypeError, ValueError) as e:
                failed.append(f"{raw.get('kind')} {raw.get('path')}: {e}")
                log.error("cannot undo %s: %s", raw, e)
        if failed:
            if report:
                report(f"could not undo {len(failed)} of {len(steps)} changes left by dead run "
                       f"{pid} ({path}, kept): {failed[0]}")
            continue
        with contextlib.suppress(OSError):
            path.unlink()
        if report:
            report(f"replayed the journal of dead run {pid}: {len(steps)} changes undone ({path})")
        done += 1
    _remove_stale_temporaries(directory)
    return done


def _remove_stale_temporaries(directory: Path) -> None:
    """A run killed while it rewrote its journal leaves the temporary file
    of that write (.journal-PID.json.XXXXXXXX, files.write_atomic); the
    journal itself holds every step, so the temporary is only removed."""
    for tmp in directory.glob(".journal-*.json.*"):
        # .journal-PID.json.* or, a runner's, .journal-PID-shared.json.*
        pid = re.split(r"[.-]", tmp.name.removeprefix(".journal-"), maxsplit=1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def alive(pid: int) -> bool:
    """Whether process `pid` exists (a zombie does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# signals_held() nesting depth, and a signal that arrived meanwhile.
_held = 0
_pending: int | None = None
# The last termination signal signals_raise() caught, raised or not.
_received: int | None = None


def received_signal() -> int | None:
    """The termination signal that arrived inside signals_raise(), if any.
    A signal to the whole process group also kills the children, so what
    fails first may be a read of a child's /proc files, not Interrupted."""
    return _received


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Interrupted back between a change and the journal entry that
    undoes it: raised in between (signals_raise), it would leave the change
    unrecorded and never undone. It is raised when the block ends. (Python
    runs signal handlers in the main thread whichever thread the signal
    hit, so deferring in the handler works where a signal mask would not.)"""
    global _held, _pending
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into an exception while inside the block,
    so `finally` clauses and context managers restore the system."""

    def handler(signum: int, frame: FrameType | None) -> None:
        global _pending, _received
        first = _received is None
        _received = signum
        if not first:
            # Already on the way out: the cleanup the first one started
            # (teardown, KSM's drain, the restore) runs to its end. GNU
            # timeout signals the child and then its process group, so
            # one timeout is two SIGTERMs, and a dying runner's
            # PR_SET_PDEATHSIG comes once per thread; a second signal
            # raised inside the teardown left KSM's pages counted after
            # the run. SIGKILL still stops everything.
            return
        if _held:
            _pending = signum
            return
        raise Interrupted(signum)

    global _received
    _received = None
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def exit_status_for(exc: Interrupted | int) -> int:
    """Shell convention for death by signal, for callers that re-exit."""
    return 128 + (exc.signum if isinstance(exc, Interrupted) else exc)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def main(argv: list[str] | None = None) -> int:
    """`python3 -m rmapbench.machine.knobs`: replay the journals of dead
    runs by hand. It takes no argument but --help, which must never replay.
    (Its own small parser: ksft.cli's imports this module.)"""
    import argparse
    import sys

    prog = "python3 -m rmapbench.machine.knobs"

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:  # one line, exit 2 (ksft/status.py)
            print(f"{prog}: error: {message}", file=sys.stderr)
            raise SystemExit(2)

    Parser(prog=prog, description=f"undo what runs that died left changed (the journals "
           f"in {JOURNAL_DIR}, $RMAPBENCH_JOURNAL_DIR)").parse_args(argv)  # fmt: skip
    logging.basicConfig(level=logging.INFO)
    try:  # a mistyped $RMAPBENCH_JOURNAL_DIR, say
        problem = None if JOURNAL_DIR.is_dir() or not JOURNAL_DIR.exists() else "not a directory"
    except OSError as e:  # a name too long
        problem = e.strerror or str(e)
    if problem:
        print(f"{prog}: error: journal directory {str(JOURNAL_DIR)[:60]}: {problem}",
              file=sys.stderr)
        return 2
    said: list[str] = []

    def report(line: str) -> None:
        said.append(line)
        print(f"{prog}: {line}", file=sys.stderr)

    recover_stale(report=report)
    if not said:  # a recovery tool that prints nothing leaves its user guessing
        print(f"{prog}: nothing to undo: no journal of a dead run in {JOURNAL_DIR}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover - manual recovery tool
    raise SystemExit(main())
