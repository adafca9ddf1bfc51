"""What every walk-timing backend provides, and the selection among them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rmapbench.tracing.events import WALK_TYPES, Pairing
from rmapbench.tracing.tracefs import Instance, TraceFS


class Unavailable(Exception):
    """This backend cannot run on this kernel; the message says why (and
    names the missing CONFIG option where there is one)."""


@dataclass(frozen=True)
class Description:
    """What a result records about how walks were timed."""

    name: str
    clock: str
    resolution_ns: int
    detail: str
    # The page types whose walks the backend sees: the probe backends
    # probe only the walk function of the case's page type unless told
    # (--probe-all-walks); the tracepoints see every walk.
    walk_types: tuple[str, ...] = WALK_TYPES

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "clock": self.clock,
            "resolution_ns": self.resolution_ns,
            "detail": self.detail,
            "walk_types": list(self.walk_types),
        }


class Backend(Protocol):
    name: str

    def check(self, tfs: TraceFS) -> None:
        """Raise Unavailable when the kernel lacks what this backend needs."""

    def arm(self, tfs: TraceFS, inst: Instance) -> Description:
        """Create and enable the events in the instance (journaled)."""

    def walks(self, trace_text: str) -> Pairing:
        """The walks recorded in the instance's trace text."""


def discard_outside(backend: object) -> None:
    """Forget what a backend recorded outside the trace instance (the bpf
    backend's ring buffer: its discard()); the others' walks are all in
    the instance, emptied by its clear() or drain()."""
    discard = getattr(backend, "discard", None)
    if discard is not None:
        discard()
