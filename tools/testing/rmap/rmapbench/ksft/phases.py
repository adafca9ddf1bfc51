"""Where a test program's time goes: its phases, with wall times.

One recorder per process (`RECORDER`). The pipeline opens phases in turn
(`begin(name)` ends the one before); a phase that happens inside another
(verification inside the samples, KSM's merge inside the build, its drain
inside the teardown) is carved out of whichever phase is open with
`span(name)`, so the phases add up to the program's wall time without
counting anything twice.

The first phase, `startup`, runs from the process's start to the first
line of the library: the runner's spawn time ($RMAPBENCH_SPAWNED, a
CLOCK_MONOTONIC reading the runner takes just before starting the
program; exact) or else /proc/self/stat's starttime (clock ticks since
boot, read against CLOCK_BOOTTIME; 10 ms resolution). `imports` runs from
there to the case's first stage. Standard library only: it runs in the
guest.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import rmapbench

T = TypeVar("T")

SPAWNED_ENV = "RMAPBENCH_SPAWNED"
# The phases in the order a program goes through them (docs/json.md).
ORDER = (
    "startup", "imports", "preflight", "arm", "build", "merge", "prepare", "warmup",
    "samples", "verification", "calibrate", "visits", "teardown", "drain", "restore",
    "report",
)  # fmt: skip


def process_started(now_mono: float | None = None) -> tuple[float, str] | None:
    """When this process started, on the CLOCK_MONOTONIC scale, and how it
    is known ("runner" or "proc"); None when neither source says."""
    now_mono = time.monotonic() if now_mono is None else now_mono
    spawned = os.environ.get(SPAWNED_ENV)
    if spawned:
        with contextlib.suppress(ValueError):
            t = float(spawned)
            # Only a reading of this boot's clock, not an inherited stale one.
            if 0 <= now_mono - t < 600:
                return t, "runner"
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[19])  # field 22 of proc(5), starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return now_mono - max(age, 0.0), "proc"


class Recorder:
    """Wall time per phase; see the module's docstring."""

    def __init__(self, first_line: float | None = None) -> None:
        self.first_line = first_line if first_line is not None else time.monotonic()
        self.seconds: dict[str, float] = {}
        self.carved: dict[str, float] = {}
        self.current: str | None = None
        self.since = self.first_line
        self.origin = "none"
        started = process_started(self.first_line)
        if started is not None:
            self.add("startup", self.first_line - started[0])
            self.origin = started[1]
        self.current = "imports"

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + max(seconds, 0.0)

    def begin(self, name: str, now: float | None = None) -> None:
        """End the open phase and open `name` (a phase may recur: it adds up)."""
        now = time.monotonic() if now is None else now
        if self.current is not None:
            self.add(self.current, now - self.since)
        self.current, self.since = name, now

    def end(self, now: float | None = None) -> None:
        """End the open phase; time until the next begin() counts nowhere."""
        self.begin("", now)
        self.current = None

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        """Time the block as `name`, carved out of the phase open around it."""
        parent = self.current
        t0 = time.monotonic()
        try:
            yield
        finally:
            dt = time.monotonic() - t0
            self.add(name, dt)
            if parent and parent != name:
                self.carved[parent] = self.carved.get(parent, 0.0) + dt

    def table(self, now: float | None = None) -> dict[str, float]:
        """Seconds per phase so far (the open one up to now), in ORDER,
        then any other names in the order first seen."""
        now = time.monotonic() if now is None else now
        raw = dict(self.seconds)
        if self.current:
            raw[self.current] = raw.get(self.current, 0.0) + now - self.since
        net = {k: max(v - self.carved.get(k, 0.0), 0.0) for k, v in raw.items()}
        names = [n for n in ORDER if n in net] + [n for n in net if n not in ORDER]
        return {n: round(net[n], 3) for n in names}


def entry(table: dict[str, float], walk_ns: list[int]) -> dict[str, Any]:
    """The document's `phases` object: seconds per phase, their total, the
    timed target walks' sum and their share of the total."""
    total = round(sum(table.values()), 3)
    walks = round(sum(walk_ns) / 1e9, 3)
    return {
        "seconds": table,
        "total_s": total,
        "walks_s": walks,
        "walk_share": round(walks / total, 4) if total > 0 else None,
        "overhead_s": round(total - walks, 3),
    }


def line(e: dict[str, Any]) -> str:
    """The one diagnostic line of an entry()."""
    parts = ", ".join(f"{k} {v:.2f}" for k, v in e["seconds"].items() if v >= 0.005)
    share = e.get("walk_share")
    pct = f"{share * 100:.1f}%" if share is not None else "-"
    return (
        f"phases (s): {parts}; total {e['total_s']:.2f}, walks {e['walks_s']:.3f} ({pct}), "
        f"overhead {e['overhead_s']:.2f}"
    )


# The program's recorder: its clock starts when the library is first imported.
RECORDER = Recorder(getattr(rmapbench, "STARTED", None))


def begin(name: str) -> None:
    RECORDER.begin(name)


def span(name: str) -> contextlib.AbstractContextManager[None]:
    return RECORDER.span(name)


def timed(fn: Callable[[], T] | None, name: str) -> Callable[[], T] | None:
    """fn, each call carved out of the open phase as `name` (None stays None)."""
    if fn is None:
        return None
    f = fn

    def call() -> T:
        with RECORDER.span(name):
            return f()

    return call


def after_warmup(
    fn: Callable[[Any], None] | None, most: int, name: str
) -> Callable[[Any], None]:
    """A per-sample callback (measure.run's progress) that also opens phase
    `name` after the sample that ends the warm-up (`ends_warmup`); at once
    when there is none (`most` 0)."""
    if most == 0:
        RECORDER.begin(name)

    def call(sample: Any) -> None:
        if fn is not None:
            fn(sample)
        if getattr(sample, "ends_warmup", False):
            RECORDER.begin(name)

    return call
