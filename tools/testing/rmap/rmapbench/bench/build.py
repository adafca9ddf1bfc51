"""The build stages: KSM's structural knobs, the scenario's sharing
pattern, and the trigger's preparation on the built target page. Each
change goes through the plan's journal; Scenario.teardown() and the
journal's restore undo them (bench/pipeline.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rmapbench.bench.preflight import Plan, Skip
from rmapbench.ksft.ktap import KTAP
from rmapbench.machine import ksm_knobs
from rmapbench.machine.ksm_knobs import KnobState
from rmapbench.scenarios.base import Scenario
from rmapbench.triggers import TriggerUnavailable


@dataclass(frozen=True)
class Knobs:
    """The KSM knobs in force while merging (none for the other cases), and
    when the build began: its time in the set-up counts setting them."""

    states: dict[str, KnobState]
    started: float  # time.monotonic()

    @property
    def params(self) -> dict[str, int]:
        return ksm_knobs.params(self.states)


@dataclass(frozen=True)
class Built:
    """The built scenario: the target page's address in this process and
    the set-up facts (the scenario's own dict, which verify() and teardown()
    may still add to)."""

    addr: int
    setup: dict[str, Any]


def set_knobs(plan: Plan) -> Knobs:
    """KSM's structural knobs go in before merging (journaled; undone after
    the drain at teardown)."""
    started = time.monotonic()
    states = ksm_knobs.prepare(plan.scenario.policy, plan.opts, plan.journal)
    if states:
        plan.scenario.setup["ksm_knobs"] = {k: v.as_dict() for k, v in states.items()}
        plan.ktap.diag(ksm_knobs.describe(states))
    return Knobs(states, started)


def build(plan: Plan, knobs: Knobs) -> Built:
    """Build the scenario's sharing pattern. May raise SkipScenario (a knob
    KSM refused)."""
    scenario = plan.scenario
    addr = scenario.build()
    scenario.setup["seconds"] = round(time.monotonic() - knobs.started, 3)
    _report_setup(plan.ktap, scenario)
    return Built(addr, scenario.setup)


def prepare(plan: Plan, built: Built) -> dict[str, object]:
    """Ready the trigger for the built target; returns what it learnt
    (its describe(), e.g. kdamond's pid)."""
    try:
        plan.trigger.prepare(built.addr, plan.journal)
    except TriggerUnavailable as e:
        raise Skip(str(e)) from e
    return plan.trigger.describe()


def _report_setup(ktap: KTAP, scenario: Scenario) -> None:
    s = scenario.setup
    params = " ".join(f"{k}={v}" for k, v in scenario.params().items())
    ktap.diag(
        f"scenario {scenario.name}: {params} vmas={s.get('vmas')} "
        f"target={s.get('target_page_type')} built in {s.get('seconds')} s"
    )
    if "target_processes" in s:
        ktap.diag(
            f"target mapped {s['target_mappings']} times in {s['target_processes']} of "
            f"{s['processes']} processes"
        )
    for note in s.get("notes", []):  # what a scenario wants said about its set-up
        ktap.diag(note)
    k = s.get("ksm")
    if k:
        ktap.diag(
            f"ksm: merged in {k['seconds']} s; pages_shared={k['pages_shared']} "
            f"pages_sharing={k['pages_sharing']} max_page_sharing={k['max_page_sharing']} "
            f"merged_here={k['process_merged']}"
        )
