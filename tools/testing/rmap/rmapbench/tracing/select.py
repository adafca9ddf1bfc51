"""Choosing the walk-timing backend: the most precise one the kernel has."""

from __future__ import annotations

import os
from collections.abc import Callable

from rmapbench.machine.shared_probes import EvictError, SharedProbes
from rmapbench.tracing.backend import Backend, Description, Unavailable
from rmapbench.tracing.bpf.backend import Bpf
from rmapbench.tracing.events import WALK_TYPES, walk_functions
from rmapbench.tracing.fgraph import FunctionGraph
from rmapbench.tracing.probes import DynamicProbe
from rmapbench.tracing.tracefs import Instance, TraceFS
from rmapbench.tracing.tracepoint import Tracepoint

# Most precise first: the proposed tracepoints time the walk inside
# rmap_walk() itself. bpf's fentry/fexit programs put the least of a
# probe's own cost inside the timed window (a trampoline and two short
# programs, 0.4-1.4 us calibrated under TCG): against the ground-truth
# kernel's in-kernel duration a migration's two walks read 0.93x (anon)
# and 1.02x (file), where fprobe and kprobe, whose windows hold their
# trace events' cost, read 2.3-5.2x (docs/ground-truth.md). function_graph
# is last: it times the walk functions like fprobe does but records no
# arguments, so walks are matched to the target by type only.
AUTO_ORDER = ("tracepoint", "bpf", "fprobe", "kprobe", "fgraph")
# What --backend all measures, in turn (then no backend at all).
ALL_ORDER = AUTO_ORDER


def walk_types(page_type: str, every: bool = False) -> tuple[str, ...]:
    """The page types whose walk functions a probe backend arms for a case
    whose target is of `page_type`: that one alone, or all three (`every`,
    --probe-all-walks). Each probed function costs two fprobe events, and
    under TCG creating one takes ~175 ms and removing one ~135 ms (the
    kernel matches the symbol against every ftrace record, then patches
    the code and waits for RCU-tasks grace periods: docs/backends.md)."""
    if every or page_type not in WALK_TYPES:
        return WALK_TYPES
    return (page_type,)


def make(name: str, tracepoint_form: str = "auto",
         types: tuple[str, ...] = WALK_TYPES,
         shared: SharedProbes | None = None) -> Backend:  # fmt: skip
    """`tracepoint_form`: auto, v4 or start-end (--tracepoint-form);
    `types`: the page types whose walk functions a probe backend times
    (walk_types(); the tracepoints see every walk whatever it says);
    `shared`: the suite runner's kept probe events (machine/shared_probes.py)."""
    if name == "tracepoint":
        return Tracepoint(tracepoint_form)
    if name in ("fprobe", "kprobe"):
        return DynamicProbe(name, walk_functions(types), shared=shared)
    if name == "fgraph":
        return FunctionGraph(os.getpid(), walk_functions(types))
    if name == "bpf":
        return Bpf(walk_functions(types))
    raise ValueError(f"unknown backend {name!r}")


def arm(
    requested: str,
    tfs: TraceFS,
    instance: Callable[[Backend], Instance],
    tracepoint_form: str = "auto",
    types: tuple[str, ...] = WALK_TYPES,
    shared: SharedProbes | None = None,
) -> tuple[Backend, Description, list[str], Instance]:
    """Arm the requested backend, or for "auto" the first that works, in
    the instance instance(backend) gives (the program's own, or for the
    probe backends within a suite run the runner's kept one: tracing/kept.py).

    Returns the backend, its description, why better ones were passed
    over and the instance; raises Unavailable (with every reason) when
    none works.
    """
    names = AUTO_ORDER if requested == "auto" else (requested,)
    reasons: list[str] = []
    for name in names:
        backend = make(name, tracepoint_form, types, shared)
        try:
            backend.check(tfs)
            if shared is not None and not isinstance(backend, DynamicProbe):
                # Kept probe events would run inside the tracepoints' and
                # function_graph's timed windows.
                try:
                    shared.evict_all()
                except EvictError as e:
                    raise Unavailable(str(e)) from e
            inst = instance(backend)
            return backend, backend.arm(tfs, inst), reasons, inst
        except Unavailable as e:
            reasons.append(f"{name}: {e}")
    raise Unavailable("; ".join(reasons))


SYSCALL_ONLY = Description(
    "syscall", "CLOCK_MONOTONIC", 1, "wall time of each trigger only", walk_types=()
)
