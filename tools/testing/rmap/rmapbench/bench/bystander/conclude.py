"""Once the samples are judged: set each bystander's operations against the
timed walks, report them and the walker's lock holds, fill in the
scenario's JSON entry; $RMAPBENCH_BYSTANDER_DUMP writes the timeline."""

from __future__ import annotations

import json
import os
from typing import Any

from rmapbench.bench.bystander import entry, holds
from rmapbench.bench.bystander.crowd import Recorded
from rmapbench.bench.preflight import Plan
from rmapbench.bench.tally import Tally


def conclude(plan: Plan, recorded: list[Recorded], tally: Tally, sampled: Any, doc: Any) -> None:
    """Set the recorded operations against the timed walks; report them
    and the walker's lock holds; fill in the scenario's JSON entry (doc)."""
    scenario = plan.scenario
    items = entry.entries(
        recorded,
        tally,
        scenario.page_type,
        scenario.backing,
        sampled.desc.clock,
        sampled.traced,
    )
    entry.report(plan.ktap, scenario.name, items)
    doc.bystanders = items
    _dump(recorded, tally, scenario.page_type)
    h = holds.lock_holds(scenario.page_type, tally.walks, doc.visits)
    doc.lock_holds = h
    holds.report(plan.ktap, h)


def _dump(recorded: list[Recorded], tally: Tally, page_type: str) -> None:
    """$RMAPBENCH_BYSTANDER_DUMP=FILE: the operations, walks and waits as
    JSON, for looking at one run's timeline (and making test fixtures)."""
    path = os.environ.get("RMAPBENCH_BYSTANDER_DUMP")
    if not path:
        return
    with open(path, "w") as f:
        json.dump(
            {
                "walks": entry.walk_intervals(tally, page_type),
                "bystanders": [
                    {
                        "kind": r.kind,
                        "during": [r.during.starts, r.during.ends],
                        "quiet": [r.quiet.starts, r.quiet.ends],
                        "waits": [vars(w) for w in r.waits_during or []],
                    }
                    for r in recorded
                ],
            },
            f,
        )
