"""split: split the target THP through debugfs split_huge_pages.

Writing "PID,0xSTART,0xEND" makes the kernel split every THP mapped in that
range of the process (split_huge_pages_pid -> split_folio). The split holds
the anon_vma lock for the whole operation, so its walks are
rmap_walk_locked(): unmap_folio() replaces the PMD with migration entries
(try_to_migrate with TTU_RMAP_LOCKED), and remap_page() puts small-page
PTEs back (remove_migration_ptes with RMP_LOCKED). The target keeps its
frame. Before each firing, untimed, the range is collapsed back into one
PMD-mapped THP with MADV_COLLAPSE (which gives it a new frame). Only for
the thp case, whose target is the first page of a 2 MiB-aligned THP.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rmapbench.machine import mm
from rmapbench.triggers.base import LEAVES, Firing, Trigger, TriggerUnavailable

SPLIT = Path("/sys/kernel/debug/split_huge_pages")
HPAGE_SIZE = 2 << 20


def is_thp(addr: int) -> bool:
    return mm.page_info(os.getpid(), addr).has(mm.KPF_THP)


class SplitTrigger(Trigger):
    name = "split"
    effect = LEAVES
    cost_name = "split_huge_pages"
    expected_callers = ("try_to_migrate", "remove_migration_ptes")

    def check(self) -> None:
        if not SPLIT.exists():
            raise TriggerUnavailable("no debugfs split_huge_pages")

    def ready(self, addr: int) -> None:
        start = addr - addr % HPAGE_SIZE
        if not is_thp(addr):
            mm.madvise(start, HPAGE_SIZE, mm.MADV_COLLAPSE)
        if not is_thp(addr):
            raise RuntimeError(f"MADV_COLLAPSE left {start:#x} without a THP")

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "file": str(SPLIT), "recollapse": "MADV_COLLAPSE"}

    def summary(self) -> str:
        return "split: debugfs split_huge_pages on the target THP, MADV_COLLAPSE before each"

    def fire(self, addr: int) -> Firing:
        start = addr - addr % HPAGE_SIZE
        command = f"{os.getpid()},{start:#x},{start + HPAGE_SIZE:#x}"
        fd = os.open(SPLIT, os.O_WRONLY)
        try:
            t0 = time.perf_counter_ns()
            try:
                os.write(fd, command.encode())
            except OSError as e:
                return Firing.refused(time.perf_counter_ns() - t0, e.errno)
            t1 = time.perf_counter_ns()
        finally:
            os.close(fd)
        return Firing(t1 - t0, done=not is_thp(addr))
