"""soft-offline: madvise(MADV_SOFT_OFFLINE) of the target page.

soft_offline_page() migrates the page to a new frame (try_to_migrate and
remove_migration_ptes walk it, in our context, mapcount notwithstanding)
and then retires the old frame for good: it is marked HWPoison and never
allocated again until reboot. So it only runs when asked for with
--allow-destructive, ideally in a throw-away guest; it needs CAP_SYS_ADMIN,
CONFIG_MEMORY_FAILURE and, where the sysctl exists (6.11+),
vm.enable_soft_offline=1. One NUMA node is enough.
"""

from __future__ import annotations

import os
import time

from rmapbench.machine import mm
from rmapbench.machine.knobs import Journal
from rmapbench.triggers.base import MOVES, Firing, Trigger, TriggerUnavailable, in_rmapbench_guest

ENABLE = "/proc/sys/vm/enable_soft_offline"
# Present whenever CONFIG_MEMORY_FAILURE is.
MEMORY_FAILURE = "/proc/sys/vm/memory_failure_early_kill"


class SoftOfflineTrigger(Trigger):
    name = "soft-offline"
    effect = MOVES
    cost_name = "madvise(SOFT_OFFLINE)"
    expected_callers = ("try_to_migrate", "remove_migration_ptes")
    retries = True
    harmless = False

    def __init__(self) -> None:
        self.retired = 0

    def check(self) -> None:
        if not os.path.exists(MEMORY_FAILURE):
            raise TriggerUnavailable("no memory failure handling")

    def quiesce(self, journal: Journal) -> None:
        super().quiesce(journal)
        if os.path.exists(ENABLE):
            journal.set(ENABLE, 1)

    def warnings(self) -> list[str]:
        if in_rmapbench_guest():
            return ["soft-offline retires one frame per firing (HWPoison) in this guest"]
        return [
            "soft-offline on a machine that is not an rmapbench guest: every firing "
            "retires a frame of this machine's memory until reboot"
        ]

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "advice": "MADV_SOFT_OFFLINE", "destructive": True}

    def summary(self) -> str:
        return "soft-offline: madvise(MADV_SOFT_OFFLINE) migrates, retires the old frame"

    def fire(self, addr: int) -> Firing:
        page = addr - addr % mm.PAGE_SIZE
        before = mm.page_info(os.getpid(), addr).pfn
        t0 = time.perf_counter_ns()
        try:
            mm.madvise(page, mm.PAGE_SIZE, mm.MADV_SOFT_OFFLINE)
        except mm.MMError as e:  # EBUSY: the page could not be migrated
            return Firing.refused(time.perf_counter_ns() - t0, e.errno)
        t1 = time.perf_counter_ns()
        after = mm.page_info(os.getpid(), addr).pfn
        self.retired += after != before
        return Firing(t1 - t0, done=after not in (0, before))
