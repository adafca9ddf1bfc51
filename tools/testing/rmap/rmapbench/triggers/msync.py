"""msync: dirty the target page of a MAP_SHARED file mapping, then
msync(MS_SYNC).

The byte written is the byte already there, so the content never changes;
the write faults (the page was write-protected when last cleaned), which
marks the folio dirty. msync(MS_SYNC) on a shared file mapping runs
vfs_fsync_range() over the page's range; writeback takes the folio through
folio_clear_dirty_for_io() -> folio_mkclean(), which walks every mapping
(rmap_walk_file) to write-protect and clean it. One walk per firing, in our
context; the page stays where it is. Only file pages on a real filesystem:
tmpfs and shmem have no writeback, anonymous pages no file.
"""

from __future__ import annotations

import ctypes
import os
import time

from rmapbench.machine import mm
from rmapbench.triggers.base import LEAVES, Firing, Trigger


class MsyncTrigger(Trigger):
    name = "msync"
    effect = LEAVES
    cost_name = "msync"
    expected_callers = ("folio_mkclean",)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "flags": "MS_SYNC"}

    def summary(self) -> str:
        return "msync: rewrite one byte of the target, msync(MS_SYNC) -> folio_mkclean"

    def fire(self, addr: int) -> Firing:
        page = addr - addr % mm.PAGE_SIZE
        byte = ctypes.c_ubyte.from_address(addr)
        byte.value = byte.value  # a write fault, same content
        t0 = time.perf_counter_ns()
        try:
            mm.msync(page, mm.PAGE_SIZE, mm.MS_SYNC)
        except mm.MMError as e:  # a failed trigger: counted and reported
            return Firing.refused(time.perf_counter_ns() - t0, e.errno)
        t1 = time.perf_counter_ns()
        info = mm.page_info(os.getpid(), addr)
        return Firing(t1 - t0, done=info.present and not info.has(mm.KPF_DIRTY))
