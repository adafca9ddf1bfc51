"""Once the samples are judged: set each bystander's operations and the
walker's waits against the timed walks, report them and the walker's lock
holds, fill in the scenario's JSON entry; $RMAPBENCH_BYSTANDER_DUMP writes
the timeline."""

from __future__ import annotations

import json
import os
from typing import Any

from rmapbench.bench.bystander import entry, holds, walker
from rmapbench.bench.bystander.crowd import DUMP_ENV, Recording
from rmapbench.bench.preflight import Plan
from rmapbench.bench.tally import Tally


def conclude(plan: Plan, recording: Recording, tally: Tally, sampled: Any, doc: Any) -> None:
    """Set the recorded operations and the walker's waits against the timed
    walks; report them and the walker's lock holds; fill in the scenario's
    JSON entry (doc)."""
    scenario = plan.scenario
    recorded = recording.bystanders
    intervals = entry.timed_intervals(tally, scenario.page_type, sampled.desc.clock, sampled.traced)
    items = entry.entries(recorded, intervals, scenario.backing)
    entry.report(plan.ktap, scenario.name, items)
    doc.bystanders = items
    waits = walker.evaluate(recording.walker, intervals, walker.bystander_locks(recorded))
    walker.report(plan.ktap, waits)
    doc.walker_waits = waits
    _dump(recording, tally, scenario.page_type)
    h = holds.lock_holds(scenario.page_type, tally.walks, doc.visits)
    doc.lock_holds = h
    holds.report(plan.ktap, h)


def _dump(recording: Recording, tally: Tally, page_type: str) -> None:
    """$RMAPBENCH_BYSTANDER_DUMP=FILE: the operations, walks and waits as
    JSON, for looking at one run's timeline, and the contention instance's
    trace text (`traces`: the sampling run's, the quiet baseline's) for
    making test fixtures."""
    path = os.environ.get(DUMP_ENV)
    if not path:
        return
    with open(path, "w") as f:
        json.dump(
            {
                "walks": entry.walk_intervals(tally, page_type),
                "bystanders": [
                    {
                        "kind": r.kind,
                        "pid": r.pid,
                        "during": [r.during.starts, r.during.ends],
                        "quiet": [r.quiet.starts, r.quiet.ends],
                        "waits": [vars(w) for w in r.waits_during or []],
                    }
                    for r in recording.bystanders
                ],
                "traces": recording.traces,
                "walker": {
                    "pids": recording.walker.pids,
                    "waits": [vars(w) for w in recording.walker.sampling or []],
                },
            },
            f,
        )
