"""The sampling loop: ready the target, empty the buffer, fire the trigger,
collect the walks."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rmapbench.bench import target
from rmapbench.bench.warmup import Warmup
from rmapbench.machine import mm
from rmapbench.tracing.backend import Backend, discard_outside
from rmapbench.tracing.bpf.backend import Bpf
from rmapbench.tracing.calibrate import AfterFirings
from rmapbench.tracing.events import Walk, mark_targets
from rmapbench.tracing.fgraph import FunctionGraph
from rmapbench.tracing.tracefs import Instance
from rmapbench.triggers import Firing, Trigger


@dataclass
class Sample:
    index: int
    warmup: bool
    firing: Firing
    pfn_before: int
    pfn_after: int
    walks: list[Walk] = field(default_factory=list)
    lost_events: int = 0
    unmatched_exits: int = 0
    unfinished: int = 0
    problems: list[str] = field(default_factory=list)  # from the scenario's verify()
    planned: int = 0  # firings the run planned when this one was taken
    ends_warmup: bool = False  # the last warm-up firing

    @property
    def verified(self) -> bool:
        return not self.problems

    @property
    def pfns(self) -> set[int]:
        return {self.pfn_before, self.pfn_after}


@dataclass
class Probe:
    backend: Backend
    instance: Instance

    def follow(self, pids: list[int]) -> None:
        """Record the walks of these processes: where the trigger's walks run
        (this process, or kdamond for damon)."""
        self.instance.follow_pids(pids)
        if isinstance(self.backend, FunctionGraph | Bpf):
            self.backend.follow(self.instance, pids)

    def clear(self) -> None:
        self.instance.clear()
        discard_outside(self.backend)

    def drain(self) -> None:
        self.instance.drain()
        discard_outside(self.backend)


def run(
    trigger: Trigger,
    addr: int,
    verify: Callable[[], list[str]] | None,
    probe: Probe | None,
    warmup: Warmup,
    samples: int,
    progress: Callable[[Sample], None] | None = None,
    stop: Callable[[list[Sample]], bool] | None = None,
    after_firing: AfterFirings | None = None,
) -> list[Sample]:
    """Fire the trigger for the warm-up (bench/warmup.py), then samples
    times; one Sample each. `stop` (--precision) may end the run early: it
    is asked after each measured sample.
    `after_firing` times the probe's cost right after each firing
    (tracing/calibrate.py)."""
    pid = os.getpid()
    out: list[Sample] = []
    if probe:
        # Reset once: what the build left (a file's writeback walks every
        # page: 20,000 walks) is dropped, where consuming it would have
        # the kernel format it all. Each firing then drains what came since.
        probe.clear()
    warm = warmup.most
    i = 0
    while i < warm + samples:
        trigger.ready(addr)  # untimed, before the buffer is cleared
        before = mm.pfn(pid, addr)
        # The trigger empties the buffer itself, at the moment a firing
        # should begin (damon: while kdamond sleeps). Consumed, not reset:
        # a reset waits for an RCU grace period (~35 ms under TCG).
        trigger.align(probe.drain if probe else _nothing)
        firing = trigger.fire(addr)
        if after_firing:  # first: in the state the firing left, as the walks' probes ran
            after_firing.fired()
        # A firing that unmaps the target (pageout) walked the frame it was on.
        after = mm.pfn(pid, addr) or before
        sample = Sample(i, i < warm, firing, before, after)
        if sample.warmup and warmup.ends_after(firing.syscall_ns):
            warm = i + 1
        sample.planned = warm + samples
        sample.ends_warmup = i == warm - 1
        if probe:
            text = probe.instance.take()
            _dump(text, i)
            pairing = probe.backend.walks(text)
            sample.lost_events = pairing.lost_with(probe.instance.lost_events())
            sample.walks = pairing.walks
            sample.unmatched_exits = pairing.unmatched_exits
            sample.unfinished = pairing.unfinished
        if after_firing:
            after_firing.collect(counted=not sample.warmup)
        if verify:  # after the trace is read: it reads memory, never walks
            sample.problems = verify()
        out.append(sample)
        if progress:
            progress(sample)
        if stop is not None and not sample.warmup and stop(out):
            break
        i += 1
    return out


def _nothing() -> None:
    pass


def _dump(text: str, index: int) -> None:
    """$RMAPBENCH_TRACE_DUMP=FILE appends each sample's raw trace: the
    recorded fixtures of the unit tests come from there."""
    path = os.environ.get("RMAPBENCH_TRACE_DUMP")
    if path:
        with open(path, "a") as f:
            f.write(f"# rmapbench sample {index}\n{text}")


# The walkers' page types (rmap_walk_ksm/anon/file); "unknown" is none of them.
PAGE_TYPES = frozenset({"ksm", "anon", "file"})


def mark(samples: list[Sample], page_type: str | None = None) -> int | None:
    """Decide for every walk whether it touched the target folio; returns the
    vmemmap base used (None when the backend gives no comparable pointer).

    With page_type, a walk of one of the target's frames by another page
    type's walker (rmap_walk_anon on a KSM case's frame) is not the
    target's: the frame was freed and reused within the sample (the
    migration frees the old one; seen on a loaded host in ksm-procs). The
    target itself cannot change type: a KSM page that lost its stable
    node is caught by the verification instead."""
    base = target.calibrate(
        (s.pfns, [w.folio for w in s.walks if w.folio is not None]) for s in samples if s.walks
    )
    for s in samples:
        walks = mark_targets(s.walks, target.target_folios(base, s.pfns))
        if page_type is not None:
            walks = [
                replace(w, target=False)
                if w.target and w.page_type in PAGE_TYPES and w.page_type != page_type
                else w
                for w in walks
            ]
        s.walks = walks
    return base


def target_durations(samples: list[Sample], page_type: str) -> list[int]:
    """Latencies of the target's walks in the measured samples that lost no
    trace events: what the walk statistics summarise."""
    return [
        w.duration_ns
        for s in samples
        if not s.warmup and not s.lost_events
        for w in target_walks(s, page_type)
    ]


def target_walks(sample: Sample, page_type: str) -> list[Walk]:
    """Walks of the target page: by folio when known, else by page type
    (the probe only follows this process, so those are this trigger's)."""
    return [w for w in sample.walks if w.target or (w.target is None and w.page_type == page_type)]
