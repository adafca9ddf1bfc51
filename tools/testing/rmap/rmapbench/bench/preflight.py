"""The first stages of a case: choose the trigger, check the machine can
run the case (nothing is changed yet), and say what will run.

A Plan is the request every later stage takes: what to run, and where its
changes to the system (the journal) and its results (KTAP) go.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rmapbench import triggers
from rmapbench.ksft import options
from rmapbench.ksft.ktap import KTAP
from rmapbench.machine import knobs, ksm_knobs, mm
from rmapbench.machine.knobs import Journal
from rmapbench.scenarios.base import NO_MEMORY, Scenario, SkipScenario
from rmapbench.tracing import tracefs
from rmapbench.triggers import Trigger, TriggerUnavailable


class Skip(Exception):
    """Skip the case: short constant reason, detail for the diagnostics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Plan:
    """One case to run, and where it reports and journals."""

    program: str
    opts: options.Options
    scenario: Scenario
    trigger: Trigger
    why: str  # why this trigger: auto's reason, or "requested"
    journal: Journal
    ktap: KTAP

    @property
    def every_backend(self) -> bool:
        """--backend all: one timed round per backend (bench/crossval.py)."""
        return self.opts.backend == "all"


def choose(
    program: str, scenario: Scenario, opts: options.Options, journal: Journal, ktap: KTAP
) -> Plan:
    """The trigger --trigger asks for, or auto's choice for this case."""
    name, why = triggers.choose(opts, type(scenario))
    return Plan(program, opts, scenario, triggers.make(name, type(scenario)), why, journal, ktap)


def check(plan: Plan) -> None:
    """Raise Skip when this machine cannot run the case. Changes nothing of
    the system's configuration."""
    if os.geteuid() != 0:
        raise Skip("not root")
    # Before the checks: a run killed with SIGKILL may have left state
    # behind that a check would take for someone else's (a kdamond).
    knobs.recover_stale()
    problem = mm.page_lookup_problem()
    if problem:
        # Every scenario checks what backs its target, and every trigger
        # where the target went, through these files.
        raise Skip(NO_PAGE_LOOKUP, problem)
    _check_memory(plan.scenario)
    try:
        plan.scenario.preflight()
        if plan.scenario.policy.ksm:
            ksm_knobs.check(plan.opts)
        plan.trigger.check()
    except SkipScenario as e:
        raise Skip(str(e), e.detail) from e
    except (ksm_knobs.KnobRefused, TriggerUnavailable) as e:
        raise Skip(str(e)) from e
    if plan.opts.backend == "syscall":
        return
    if tracefs.find_tracefs() is None:
        raise Skip("no tracing backend", "tracefs is not mounted or not writable")


NO_PAGE_LOOKUP = "cannot look up page frames"


def _check_memory(scenario: Scenario) -> None:
    """SKIP a scenario bigger than the memory the kernel says it can give
    without swapping: building it would end in the OOM killer's SIGKILL
    (no result, nothing restored) or, past what overcommit allows, in a
    failed mmap()."""
    need = scenario.footprint()
    avail_kb = mm.meminfo_kb("MemAvailable")
    if need and avail_kb is not None and need > avail_kb * 1024:
        params = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in scenario.params().items())
        raise Skip(
            NO_MEMORY,
            f"the {scenario.name} scenario ({params}) needs about {need / 2**20:.0f} MiB, "
            f"MemAvailable is {avail_kb / 1024:.0f} MiB",
        )


def announce(plan: Plan) -> None:
    """The diagnostics that say what will run."""
    trigger, ktap = plan.trigger, plan.ktap
    ktap.diag(f"kernel {os.uname().release}; trigger {trigger.summary()} ({plan.why})")
    for warning in trigger.warnings():
        ktap.diag(f"warning: {warning}")
    if plan.opts.allow_destructive and trigger.harmless:
        ktap.diag(f"option --allow-destructive does not apply to trigger {trigger.name}; ignored")
