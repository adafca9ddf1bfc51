"""pageout: MADV_PAGEOUT of the target page.

madvise_pageout() reclaims the page at once (reclaim_pages ->
shrink_folio_list, references ignored), and reclaim unmaps it from every
process with try_to_unmap() -> rmap_walk. The kernel skips folios that look
mapped more than once (folio_likely_mapped_shared: "do not interfere with
other mappings"), so only a target mapped once can be paged out, and an
anonymous page only when there is swap to write it to (without swap
add_to_swap() fails before any walk). A clean file page is dropped from the
page cache. Each firing leaves the target unmapped: it is faulted back in,
untimed, before the next one, on the same CPU (the folio must reach the LRU
from this CPU's pagevec for madvise's lru_add_drain() to find it).
"""

from __future__ import annotations

import os
import time

from rmapbench.machine import mm
from rmapbench.machine.knobs import Journal
from rmapbench.triggers.base import UNMAPS, Firing, Trigger, TriggerUnavailable, fault_in


def swap_total_kb() -> int:
    return mm.meminfo_kb("SwapTotal") or 0


class PageoutTrigger(Trigger):
    name = "pageout"
    effect = UNMAPS
    cost_name = "madvise(PAGEOUT)"
    expected_callers = ("try_to_unmap",)

    def __init__(self, backing: str) -> None:
        self.backing = backing

    def check(self) -> None:
        if self.backing == "anon" and swap_total_kb() == 0:
            raise TriggerUnavailable("no swap")

    def prepare(self, addr: int, journal: Journal) -> None:
        # Not global state: only this process's CPU affinity.
        os.sched_setaffinity(0, {os.sched_getaffinity(0).pop()})

    def ready(self, addr: int) -> None:
        fault_in(addr)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "advice": "MADV_PAGEOUT"}

    def summary(self) -> str:
        return "pageout: madvise(MADV_PAGEOUT) -> try_to_unmap"

    def fire(self, addr: int) -> Firing:
        page = addr - addr % mm.PAGE_SIZE
        t0 = time.perf_counter_ns()
        try:
            mm.madvise(page, mm.PAGE_SIZE, mm.MADV_PAGEOUT)
        except mm.MMError as e:  # e.g. EINVAL on an mlocked page: a failed trigger
            return Firing.refused(time.perf_counter_ns() - t0, e.errno)
        t1 = time.perf_counter_ns()
        return Firing(t1 - t0, done=not mm.page_info(os.getpid(), addr).present)
