"""The trace instance a suite's programs share for in-kernel pairing.

Within a suite run (machine/shared_probes.py) the fprobe/kprobe backend
pairs a walk function's entry and exit in one instance kept by the
runner, rmapbench-RUNNER-kept: its hist triggers and synthetic event are
made by the first program that times that function and used as they are
by the next ones, like the probe events themselves. Under TCG creating
the instance and its buffer cost about 0.07 s, each trigger 65-90 ms to
attach and 35-70 ms to remove (each attach resets the buffer after an RCU
grace period), the rmdir about 0.08 s: about 0.4 s a program.

A program's own part of the kept instance is what it enables there (the
entry and exit events of its function, undone by its own journal),
set_event_pid (it follows its own pids; the next program writes its
own) and what the buffer holds (reset before its first firing:
bench/measure.py). The hist maps keep one entry per task that walked;
a dead program's entries are never matched again.

One difference from an instance of its own: a hist trigger enables its
event in soft mode, so the kept triggers of the other walk functions
stay live, for the followed pids only (set_event_pid filters before the
triggers run). A walk of another type by the test's own process runs
that function's probe and triggers and records a synthetic event the
program does not read; the case's own walks run exactly what they would
in an instance of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

from rmapbench.machine.knobs import Journal
from rmapbench.machine.shared_probes import KeptInstance, SharedProbes
from rmapbench.tracing.tracefs import Instance, TraceError, TraceFS


def instance(shared: SharedProbes, root: Path, journal: Journal, buffer_kb: int
             ) -> Instance | None:  # fmt: skip
    """The kept instance, made when there is none, following this process;
    None when the one kept has another buffer size (the program then uses
    one of its own). `journal`: the program's, for what it changes in it."""
    path = root / "instances" / f"rmapbench-{shared.owner}-kept"
    kept = shared.instance
    if kept is None or not path.is_dir():
        if path.exists():
            return None  # somebody else's, or a stale one the replay will remove
        try:
            made = TraceFS(root, shared.instance_recorder()).instance(path.name, buffer_kb)
        except OSError as e:
            raise TraceError(f"trace instance {path}: {e.strerror}") from e
        kept = KeptInstance(str(path), buffer_kb, made.clock)
        shared.set_instance(kept)
    elif kept.buffer_kb != buffer_kb:
        return None
    inst = Instance(path, journal)
    inst.clock = kept.clock
    # A kept pairing's triggers have set the clock (tracing/hist.py).
    inst.clock_set = any(e.pairing for e in shared.probes.values())
    inst.follow_pids([os.getpid()])
    return inst


def holds(shared: SharedProbes | None, inst: Instance) -> bool:
    """Whether `inst` is the runner's kept instance."""
    return shared is not None and shared.instance is not None and (
        Path(shared.instance.path) == inst.path
    )
