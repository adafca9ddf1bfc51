"""The rmap tracepoints proposed upstream (not in mainline), both forms:

- v4: `rmap:rmap_walk` with duration_ns, page_type and locked;
- v5-v7: `rmap:rmap_walk_start` / `rmap:rmap_walk_end`, paired by (folio, rwc).

The form is recognised from the events' format files, not from a version.
"""

from __future__ import annotations

from rmapbench.tracing import events
from rmapbench.tracing.backend import Description, Unavailable
from rmapbench.tracing.tracefs import Instance, TraceFS

SYSTEM = "rmap"


class Tracepoint:
    name = "tracepoint"

    def __init__(self) -> None:
        self.form: str | None = None

    def check(self, tfs: TraceFS) -> None:
        if tfs.has_event(SYSTEM, "rmap_walk") and "duration_ns" in tfs.event_format(
            SYSTEM, "rmap_walk"
        ):
            self.form = "duration"
        elif tfs.has_event(SYSTEM, "rmap_walk_start") and tfs.has_event(SYSTEM, "rmap_walk_end"):
            self.form = "start_end"
        else:
            raise Unavailable(
                "no rmap:rmap_walk tracepoint (a kernel with the proposed rmap "
                "tracepoint patches is needed)"
            )

    def arm(self, tfs: TraceFS, inst: Instance) -> Description:
        if self.form == "duration":
            inst.enable(SYSTEM, "rmap_walk")
            return Description(self.name, "in-kernel duration_ns", 1, "rmap:rmap_walk (v4)")
        inst.enable(SYSTEM, "rmap_walk_start")
        inst.enable(SYSTEM, "rmap_walk_end")
        return Description(
            self.name, "mono", 1000, "rmap:rmap_walk_start/end (v5-v7), paired by folio and rwc"
        )

    def walks(self, trace_text: str) -> events.Pairing:
        parsed = events.parse(trace_text)
        if self.form == "duration":
            return events.walks_with_duration(parsed, "rmap_walk")
        return events.pair_start_end(parsed, "rmap_walk_start", "rmap_walk_end")
