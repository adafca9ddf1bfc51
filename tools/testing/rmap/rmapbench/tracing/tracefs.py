"""tracefs: a private instance restricted to the test's pids, and dynamic
events created under a group named after this run.

Nothing global is changed beyond what the Journal undoes: the instance is
removed, dynamic and synthetic events are deleted, and the global tracing
options (current_tracer, set_event_pid, trace_clock of the top-level buffer)
are never written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rmapbench.machine.knobs import Journal, Recorder, Undo, append_line, signals_held

log = logging.getLogger(__name__)

CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
_LOST = re.compile(r"^(overrun|dropped events):\s*(\d+)", re.MULTILINE)


class TraceError(RuntimeError):
    """A tracefs write failed; the message names the file and what was written."""


def find_tracefs() -> Path | None:
    """The mounted tracefs, or None (not mounted, not root, or no CONFIG_TRACING)."""
    for path in CANDIDATES:
        if (path / "instances").is_dir() and os.access(path / "instances", os.W_OK):
            return path
    return None


# How tracefs's README shows each dynamic probe kind when the kernel has it
# (kernel/trace/trace.c, readme_msg), most precise first. Only the start of
# the synopsis: Linux 6.0 made the event name optional, and the line read
# "p[:[<group>/]<event>] <place>" before (5.15 to 5.19), "p[:[<group>/][<event>]]"
# since; fprobes (6.7+) always had the later form.
PROBE_SYNTAX = {"fprobe": "f[:[<group>/]", "kprobe": "p[:[<group>/]"}


def readme(root: Path) -> str:
    """tracefs's README: the kernel's own list of what its tracing offers."""
    try:
        return (root / "README").read_text()
    except OSError:
        return ""


def probe_kinds(root: Path) -> list[str]:
    """The dynamic probe kinds this kernel offers: "fprobe" (f:, 6.7+) and
    "kprobe" (p:/r:), most precise first."""
    text = readme(root)
    return [kind for kind, syntax in PROBE_SYNTAX.items() if syntax in text]


def write(path: Path, text: str, append: bool = False) -> None:
    log.info("echo '%s' %s %s", text, ">>" if append else ">", path)
    try:
        if append:
            append_line(path, text)
        else:
            path.write_text(text + "\n")
    except OSError as e:
        hint = _error_log_hint(path)
        raise TraceError(f"writing '{text}' to {path}: {e.strerror}{hint}") from e


def _error_log_hint(path: Path) -> str:
    """The last line of tracefs' error_log, which says why a command failed."""
    for parent in path.parents:
        log_file = parent / "error_log"
        if log_file.exists():
            try:
                lines = [ln for ln in log_file.read_text().splitlines() if ln.strip()]
            except OSError:
                return ""
            return f" ({'; '.join(ln.strip() for ln in lines[-3:])})" if lines else ""
    return ""


@dataclass
class TraceFS:
    root: Path
    journal: Recorder

    def has_event(self, system: str, name: str) -> bool:
        return (self.root / "events" / system / name / "format").exists()

    def event_format(self, system: str, name: str) -> str:
        return (self.root / "events" / system / name / "format").read_text()

    def add_dynamic_event(self, definition: str, group: str, name: str) -> None:
        """Create a probe or synthetic event; its removal is journaled."""
        events = self.root / "dynamic_events"
        with self.journal.change(Undo("append", str(events), f"-:{group}/{name}")):
            write(events, definition, append=True)

    def instance(self, name: str, buffer_kb: int) -> Instance:
        path = self.root / "instances" / name
        try:
            with self.journal.change(Undo("rmdir", str(path))):
                path.mkdir()
        except FileExistsError:
            raise TraceError(f"trace instance {path} already exists") from None
        inst = Instance(path, self.journal)
        write(path / "buffer_size_kb", str(buffer_kb))
        # The default "local" clock is per CPU; a walk can sleep and resume on
        # another CPU, so timestamps must come from a global monotonic clock:
        # mono, the clock of the test's clock_gettime(CLOCK_MONOTONIC) (the
        # bystanders' operations and each trigger's syscall time are set
        # against the walks on it), else global. Written before the first
        # event is enabled (ensure_clock()), unless a hist trigger has set
        # it by then: each setting resets the buffers and waits for an RCU
        # grace period (tens of ms under TCG), and every trigger that pairs
        # by common_timestamp sets it anyway (tracing/hist.py).
        inst.clock = pick_clock((path / "trace_clock").read_text())
        return inst


def pick_clock(trace_clock: str) -> str:
    """mono when the kernel offers it ("local [global] ... mono mono_raw"), else global."""
    return "mono" if "mono" in trace_clock.replace("[", " ").replace("]", " ").split() else "global"


@dataclass
class Instance:
    """A private ring buffer; everything written here dies with the rmdir."""

    path: Path
    journal: Recorder
    lost_mark: int = 0  # the lost-event counters at the last drain()
    followed: list[int] | None = None  # what set_event_pid was last given
    stats: list[Path] | None = None  # per_cpu/cpu*/stats, listed once
    clock: str = "mono"  # its trace_clock, which hist triggers must keep (tracing/hist.py)
    clock_set: bool = False  # trace_clock reads `clock` (written, or set by a hist trigger)

    @property
    def _pipe(self) -> str:
        return f"{self.path}/trace_pipe"

    def event_dir(self, system: str, name: str) -> Path:
        return self.path / "events" / system / name

    @contextlib.contextmanager
    def journaled_by(self, journal: Recorder) -> Iterator[None]:
        """The instance's changes inside the block recorded by `journal`
        (a kept pairing's: machine/shared_probes.py), then its own again."""
        own, self.journal = self.journal, journal
        try:
            yield
        finally:
            self.journal = own

    def ensure_clock(self) -> None:
        """Set the instance's trace_clock to `clock` unless it is already:
        before anything is recorded (an enable, a tracer)."""
        if not self.clock_set:
            write(self.path / "trace_clock", self.clock)
            self.clock_set = True

    def follow_pids(self, pids: list[int]) -> None:
        # Each write waits for an RCU grace period (tens of ms under TCG):
        # not repeated when the instance follows these pids already.
        if self.followed == pids:
            return
        write(self.path / "set_event_pid", " ".join(str(p) for p in pids))
        self.followed = list(pids)

    def enable(self, system: str, name: str) -> None:
        enable = self.event_dir(system, name) / "enable"
        self.ensure_clock()
        # Disabled before the event itself is deleted (deleting an
        # enabled dynamic event fails with EBUSY).
        with self.journal.change(Undo("write", str(enable), "0")):
            write(enable, "1")

    def add_trigger(self, system: str, name: str, trigger: str) -> None:
        path = self.event_dir(system, name) / "trigger"
        # A hist trigger holds a reference on the synthetic event it feeds.
        with self.journal.change(Undo("append", str(path), "!" + trigger)):
            write(path, trigger, append=True)

    def clear(self) -> None:
        """Reset the buffer (writing `trace`): the kernel waits for an RCU
        grace period, tens of milliseconds under TCG. drain() empties it
        without that."""
        write(self.path / "trace", "")
        self.lost_mark = 0  # the reset zeroed the counters too

    def read(self) -> str:
        """The buffer's text, as take() decodes it: a comm or a string
        field may hold any bytes, which the parsers then see as damage."""
        return (self.path / "trace").read_bytes().decode(errors="replace")

    def drain(self) -> None:
        """Empty the buffer by consuming what it holds (trace_pipe): what
        the sampling loop does before each firing, in place of clear()."""
        self.take()
        self.lost_mark = self._lost_total()

    def take(self) -> str:
        """The events recorded since the last drain() (or take()), consumed:
        trace_pipe read without blocking until it is empty. The same lines
        as read() gives, without its header."""
        chunks = []
        # Closed at once, and never left open: an open trace_pipe keeps the
        # instance busy, and its rmdir in the restore fails with EBUSY. A
        # signal's Interrupted, raised as os.open() returns (before `try`),
        # would lose the descriptor; it is held until the file is closed.
        with signals_held():
            fd = os.open(self._pipe, os.O_RDONLY | os.O_NONBLOCK)
            try:
                while True:
                    try:
                        chunk = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        break
                    if not chunk:
                        break
                    chunks.append(chunk)
            finally:
                os.close(fd)
        return b"".join(chunks).decode(errors="replace")

    def lost_events(self) -> int:
        """Events overwritten or dropped since the last clear or drain, over
        all CPUs."""
        return self._lost_total() - self.lost_mark

    def _lost_total(self) -> int:
        """Read twice per sample, so with plain system calls: pathlib's
        read_text() cost twice as much per file. Each read opens and closes
        the file: an open per_cpu file keeps the instance busy."""
        if self.stats is None:  # the CPUs do not change during a run
            self.stats = sorted((self.path / "per_cpu").glob("cpu*/stats"))
        lost = 0
        for stats in self.stats:
            with signals_held():  # as in take(): the file is never left open
                fd = os.open(stats, os.O_RDONLY)
                try:
                    text = os.read(fd, 4096).decode(errors="replace")
                finally:
                    os.close(fd)
            for m in _LOST.finditer(text):
                lost += int(m.group(2))
        return lost


class NoBuffer(Instance):
    """The instance a backend that records into a ring buffer of its own
    (bpf: `own_buffer`) is given: nothing is made in tracefs, so nothing
    is read, reset or removed. Under TCG a private instance cost ~100 ms
    to make and ~70 ms to remove, and its drain and take 5-20 ms a
    firing, none of it of use to such a backend."""

    def __init__(self, journal: Recorder) -> None:
        super().__init__(Path(os.devnull), journal)

    def ensure_clock(self) -> None:
        raise TraceError("no trace instance: the backend records into its own buffer")

    def follow_pids(self, pids: list[int]) -> None:
        self.followed = list(pids)

    def enable(self, system: str, name: str) -> None:
        self.ensure_clock()

    def add_trigger(self, system: str, name: str, trigger: str) -> None:
        self.ensure_clock()

    def clear(self) -> None:
        pass

    def read(self) -> str:
        return ""

    def drain(self) -> None:
        pass

    def take(self) -> str:
        return ""

    def lost_events(self) -> int:
        return 0


def mounted(journal: Recorder) -> TraceFS:
    """The mounted tracefs, its changes recorded by `journal`; TraceError
    when there is none."""
    root = find_tracefs()
    if root is None:
        raise TraceError("tracefs is not mounted or not writable")
    return TraceFS(root, journal)


def instance_for(backend: object, journal: Journal, buffer_kb: int, tag: str = ""
                 ) -> tuple[TraceFS, Instance]:  # fmt: skip
    """private_instance(), or NoBuffer for a backend with a buffer of its own."""
    if not getattr(backend, "own_buffer", False):
        return private_instance(journal, buffer_kb, tag)
    return mounted(journal), NoBuffer(journal)


def private_instance(journal: Journal, buffer_kb: int, tag: str = "") -> tuple[TraceFS, Instance]:
    """The run's own instance (rmapbench-PID[-TAG]) on the mounted tracefs,
    following only this process."""
    tfs = mounted(journal)
    name = f"rmapbench-{os.getpid()}" + (f"-{tag}" if tag else "")
    inst = tfs.instance(name, buffer_kb)
    inst.follow_pids([os.getpid()])
    return tfs, inst

