"""Triggers: what makes the kernel walk the target page's reverse mappings.

One module per trigger (base.py has the interface). This module decides
which trigger a run uses: refusals (combinations that can never work, a
usage error before anything is set up), and what `--trigger auto` picks on
this machine and for this case, with the reason.
"""

from __future__ import annotations

from rmapbench.ksft.options import Options
from rmapbench.machine import mm
from rmapbench.scenarios.base import Scenario
from rmapbench.triggers.base import (
    LEAVES,
    MOVES,
    UNMAPS,
    Firing,
    Trigger,
    TriggerRefused,
    TriggerUnavailable,
    in_rmapbench_guest,
)
from rmapbench.triggers.damon import KDAMONDS, DamonTrigger
from rmapbench.triggers.migrate import MigrateTrigger, status_text
from rmapbench.triggers.msync import MsyncTrigger
from rmapbench.triggers.pageout import PageoutTrigger, swap_total_kb
from rmapbench.triggers.soft_offline import SoftOfflineTrigger
from rmapbench.triggers.split import SplitTrigger

__all__ = [
    "LEAVES",
    "MOVES",
    "UNMAPS",
    "DamonTrigger",
    "Firing",
    "MigrateTrigger",
    "MsyncTrigger",
    "PageoutTrigger",
    "SoftOfflineTrigger",
    "SplitTrigger",
    "Trigger",
    "TriggerRefused",
    "TriggerUnavailable",
    "choose",
    "in_rmapbench_guest",
    "make",
    "refusal",
    "status_text",
]


def refusal(opts: Options, case: str, scenario: type[Scenario]) -> str | None:
    """Why --trigger can never work for this case, or None. Reads nothing
    from the machine: the same answer everywhere."""
    name = opts.trigger
    backing = scenario.backing
    if name == "msync" and backing != "file":
        return (
            f"--trigger msync needs a page-cache page of a real file; "
            f"the {case} case's target is {backing}"
        )
    if name == "pageout" and (not scenario.target_mapped_once or backing in ("ksm", "shmem")):
        return (
            f"--trigger pageout only reclaims pages mapped once; "
            f"the {case} case's target is mapped more than once"
        )
    if name == "pageout" and backing not in ("anon", "file"):
        return f"--trigger pageout does not fit the {case} case ({backing})"
    if name == "soft-offline" and not opts.allow_destructive:
        return (
            "--trigger soft-offline retires page frames (HWPoison) until reboot; "
            "add --allow-destructive to run it"
        )
    if name == "split" and case != "thp":
        return "--trigger split only applies to the thp case"
    return None


def choose(opts: Options, scenario: type[Scenario]) -> tuple[str, str]:
    """The trigger to use and why: --trigger as given, or for auto
    migration between NUMA nodes when there are two, else the best harmless
    trigger for the case's backing."""
    if opts.trigger != "auto":
        return opts.trigger, "requested"
    nodes = len(mm.online_nodes())
    if nodes >= 2:
        return "migrate", f"{nodes} NUMA nodes"
    one = "one NUMA node"
    if scenario.backing == "file":
        return "msync", f"{one}; the target is a file page: msync writeback walks it"
    if KDAMONDS.is_dir():
        return "damon", f"{one}; DAMON paddr monitoring walks any mapped page"
    if scenario.target_mapped_once and scenario.backing == "anon" and swap_total_kb():
        return "pageout", f"{one}; no DAMON; the target is mapped once and there is swap"
    return "migrate", f"{one} and no other harmless trigger fits"


def make(name: str, scenario: type[Scenario]) -> Trigger:
    if name == "migrate":
        return MigrateTrigger()
    if name == "damon":
        return DamonTrigger()
    if name == "msync":
        return MsyncTrigger()
    if name == "pageout":
        return PageoutTrigger(scenario.backing)
    if name == "soft-offline":
        return SoftOfflineTrigger()
    if name == "split":
        return SplitTrigger()
    raise ValueError(f"unknown trigger {name!r}")
