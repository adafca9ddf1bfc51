"""ksm-procs: P processes, each with its own region of N pages, page i of
every region holding the same content (and pages within a region all
different): ksmd merges page i of every process into one KSM page shared
across the processes, as a host's identical virtual machines share their
guests' pages.

The target (page 1 of the test's region) is a KSM page with one rmap_item
per process, up to max_page_sharing of them. rmap_walk_ksm() searches each
rmap_item's anon_vma (that process's region, split into VMAs) over the whole
address range, so a walk visits about P x (VMAs per region) VMAs per pass:
it grows with the number of processes sharing the page.

The children are forked before the test maps anything, so none inherits the
test's region; each builds its own.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from rmapbench.ksft.options import KSM_OPTIONS, CasePolicy, Options
from rmapbench.machine import ksm, maps, mm
from rmapbench.scenarios.base import SkipScenario
from rmapbench.scenarios.region import FILL_BYTE, expected_vmas
from rmapbench.scenarios.shared import SharedRegion


class KsmProcsScenario(SharedRegion):
    name = "ksm-procs"
    page_type = "ksm"
    backing = "ksm"
    # The multi-process cases multiply --pages (every process holds or maps
    # the region, and a KSM walk after a fork visits every child's VMAs
    # too), so their default keeps a default run in minutes under TCG.
    policy = CasePolicy(pages=2000, procs=8, uses=KSM_OPTIONS | {"procs"})
    target_mapped_once = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.procs = self.policy.procs_for(self.opts)
        self.starts: dict[int, int] = {}
        self.baseline: int | None = None

    @classmethod
    def usage_error(cls, opts: Options) -> str | None:
        if cls.policy.procs_for(opts) < 2:
            return "ksm-procs needs --procs 2 or more: pages merge only across processes"
        return None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "procs": self.procs}

    def footprint(self) -> int:
        # Every child also writes a region of its own before ksmd merges them.
        return super().footprint() + (self.procs - 1) * self.length

    def preflight(self) -> None:
        if not ksm.available():
            raise SkipScenario("KSM not available")

    def expected_content(self, index: int) -> bytes:
        return struct.pack("<Q", index + 1) + bytes([FILL_BYTE]) * (mm.PAGE_SIZE - 8)

    def _fill_region(self) -> None:
        self._map()
        mm.stamp_pages(self.addr, self.opts.pages)
        mm.madvise(self.addr, self.length, mm.MADV_MERGEABLE)

    def _child_region(self) -> list[int]:
        """In a child: the same region as the test's, built from scratch
        (the limit on VMAs was raised by the test before forking)."""
        self._fill_region()
        if self.opts.split > 1:
            for i in range(0, self.opts.pages, self.opts.split):
                mm.mprotect(self.addr + i * mm.PAGE_SIZE, mm.PAGE_SIZE, mm.PROT_READ)
        want = expected_vmas(self.opts.pages, self.opts.split)
        found = maps.count_in(os.getpid(), self.addr, self.addr + self.length)
        if found != want:
            raise RuntimeError(f"expected {want} VMAs after the split, found {found}")
        return [self.addr]

    def regions(self) -> list[tuple[int, int]]:
        return [(os.getpid(), self.addr), *self.starts.items()]

    def build(self) -> int:
        self.baseline = ksm.rmap_items_total()
        self._raise_map_count(expected_vmas(self.opts.pages, self.opts.split))
        for r in self.family.spawn(self.procs - 1, self._child_region):
            self.starts[r.pid] = r.addrs[0]
        self._fill_region()
        self._split()
        result = ksm.merge(
            self.journal, self.target(), self.opts.pages, self.opts.merge_timeout, self.pids()
        )
        self.setup["ksm"] = result.as_dict()
        self.setup["ksm"]["process_merged_all"] = [
            ksm.process_merged_pages(pid) for pid in self.pids()
        ]
        self._check_type()
        self._record_mappings()
        # One rmap_item per process on the target's stable node, up to
        # max_page_sharing; beyond it, page i of the other processes goes to
        # another KSM page (a dup of the same stable node chain), and which
        # one holds the test's page depends on the scan order.
        if self.procs <= result.max_page_sharing:
            self._require_mappings(self.procs, 1)
        elif not 2 <= self.setup["target_processes"] <= result.max_page_sharing:
            raise RuntimeError(
                f"the target's KSM page is shared by {self.setup['target_processes']} "
                f"processes, expected 2 to {result.max_page_sharing} (max_page_sharing)"
            )
        return self.target()

    def teardown(self) -> None:
        super().teardown()
        if self.baseline is not None:
            ksm.drain(self.journal, baseline=self.baseline)
            self.baseline = None
