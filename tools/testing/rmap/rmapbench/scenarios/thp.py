"""thp: one PMD-mapped anonymous transparent huge page.

The region is over-allocated by one PMD size and trimmed to a PMD-aligned
range, advised MADV_HUGEPAGE and written, so the first fault maps a whole
THP with one PMD (checked in smaps and kpageflags; MADV_COLLAPSE, 6.1+, is
tried when the fault did not get one). The target is the THP's first page:
move_pages() of it isolates the whole folio, so try_to_migrate() and
remove_migration_ptes() walk the THP once each, as one anon folio with one
mapping (the PMD). When the target node has no free huge page, migration
splits the THP first; the split's remap then walks with rmap_walk_locked
(the caller already holds the anon_vma lock), which the case reports.

verify() holds when the THP has been split too (by migration, or by the
`split` trigger before it is collapsed again): every one of its subpages
must be present (not left on a migration entry) with its own content, and
while the head is still a THP, subpage i must sit on the head's frame + i.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from rmapbench.machine import mm, thp
from rmapbench.scenarios.base import Scenario, SkipScenario

MAX_PROBLEMS = 16  # per verify(): enough to see the pattern
SUBPAGE_TAG = 0xA5 << 56


def subpage_content(index: int) -> bytes:
    """Each subpage holds its own index, so a subpage mapped at the wrong
    offset shows as changed content. Never all zeroes: splitting an anon
    THP maps zero-filled subpages to the shared zero page (6.12's
    remap_page() with RMP_USE_SHARED_ZEROPAGE), which would take them out
    of the folio and off the frames being checked."""
    return (SUBPAGE_TAG | index).to_bytes(8, "little") * (mm.PAGE_SIZE // 8)


class ThpScenario(Scenario):
    name = "thp"
    page_type = "anon"
    backing: ClassVar[str] = "anon"
    target_mapped_once: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.size = thp.pmd_size()
        self.subpages = self.size // mm.PAGE_SIZE
        self.addr = 0
        self.checks = {"thp": 0, "split": 0}
        self.vmstat_before: dict[str, int] = {}
        self.content = b""  # what the whole range holds, made once

    def preflight(self) -> None:
        if not thp.available():
            raise SkipScenario("THP not available")

    def params(self) -> dict[str, Any]:
        return {"thp_kb": self.size // 1024, "subpages": self.subpages}

    def build(self) -> int:
        before, now = thp.allow_madvise(self.journal)
        self.setup["thp_enabled"] = {"before": before, "during": now}
        per_size = thp.allow_pmd_size(self.journal)
        if per_size:
            self.setup["thp_pmd_enabled"] = dict(zip(("before", "during"), per_size, strict=True))
        self.vmstat_before = thp.vmstat()
        self._map_aligned()
        mm.madvise(self.addr, self.size, mm.MADV_HUGEPAGE)
        self.content = b"".join(subpage_content(i) for i in range(self.subpages))
        mm.write_bytes(self.addr, self.content)
        collapsed = False
        if not thp.is_thp_head(os.getpid(), self.addr):
            collapsed = self._collapse()
        self._report(collapsed)
        ignored = [f"--{o}" for o in ("pages", "split") if o in self.opts.given]
        if ignored:
            self.setup["notes"].append(
                f"option {' '.join(ignored)} does not apply to the thp case (one THP); ignored"
            )
        return self.addr

    def _map_aligned(self) -> None:
        """mmap twice the size and keep the PMD-aligned middle, so the
        whole range can be one PMD."""
        raw = mm.mmap(2 * self.size, mm.PROT_READ | mm.PROT_WRITE,
                      mm.MAP_PRIVATE | mm.MAP_ANONYMOUS)  # fmt: skip
        aligned = (raw + self.size - 1) & ~(self.size - 1)
        if aligned > raw:
            mm.munmap(raw, aligned - raw)
        tail = raw + 2 * self.size - (aligned + self.size)
        if tail:
            mm.munmap(aligned + self.size, tail)
        self.addr = aligned

    def _collapse(self) -> bool:
        try:
            mm.madvise(self.addr, self.size, mm.MADV_COLLAPSE)
        except mm.MMError:
            return False  # before 6.1, or no huge page free
        return True

    def _report(self, collapsed: bool) -> None:
        pid = os.getpid()
        info = mm.page_info(pid, self.addr)
        huge_kb = thp.anon_huge_kb(pid, self.addr)
        pmd_mapped = huge_kb >= self.size // 1024
        self.setup.update(
            vmas=1,
            page_size=self.size if pmd_mapped else mm.PAGE_SIZE,
            target_page_type=info.page_type,
            target_mapcount=info.mapcount,
            target_sharers_here=1,  # one mapping: the PMD
            subpages_checked=self.subpages,
            thp={
                "size_kb": self.size // 1024,
                "addr": hex(self.addr),
                "head_pfn": hex(info.pfn),
                "anon_huge_kb": huge_kb,
                "pmd_mapped": pmd_mapped,
                "kpageflags_thp": info.has(mm.KPF_THP),
                "collapsed": collapsed,
            },
        )
        if not (pmd_mapped and info.has(mm.KPF_THP)):
            raise SkipScenario("no THP could be allocated")
        if info.page_type != self.page_type:
            raise RuntimeError(f"target page is {info.page_type}, expected {self.page_type}")
        self.setup.setdefault("notes", []).append(
            f"thp: {self.size // 1024} kB THP at {self.addr:#x}, PMD-mapped (AnonHugePages "
            f"{huge_kb} kB, kpageflags THP), head pfn {info.pfn:#x}"
            + ("; collapsed with MADV_COLLAPSE" if collapsed else "")
        )

    def verify(self) -> list[str]:
        pid = os.getpid()
        pfns = mm.pfns(pid, self.addr, self.subpages)
        huge = thp.is_thp_head(pid, self.addr)
        self.checks["thp" if huge else "split"] += 1
        self.setup["verified_as"] = dict(self.checks)
        problems: list[str] = []
        # The whole range in one read and one comparison; subpage by
        # subpage only when it differs (512 reads and patterns made anew
        # cost ~9 ms a sample under TCG).
        same = mm.read_bytes(self.addr, self.subpages * mm.PAGE_SIZE) == self.content
        for i, pfn in enumerate(pfns):
            addr = self.addr + i * mm.PAGE_SIZE
            if not pfn:
                problems.append(f"pid {pid} address {addr:#x} not present (migration entry left?)")
            elif huge and pfn != pfns[0] + i:
                problems.append(
                    f"pid {pid} address {addr:#x} maps frame {pfn:#x}, subpage {i} of the THP "
                    f"on {pfns[0]:#x} is {pfns[0] + i:#x}"
                )
            elif not same and mm.read_bytes(addr, mm.PAGE_SIZE) != subpage_content(i):
                problems.append(f"pid {pid} address {addr:#x} frame {pfn:#x}: content changed")
        if len(problems) > MAX_PROBLEMS:
            problems[MAX_PROBLEMS:] = [f"... and {len(problems) - MAX_PROBLEMS} more"]
        return problems

    def teardown(self) -> None:
        if self.vmstat_before:
            after = thp.vmstat()
            self.setup["thp_vmstat"] = {k: after[k] - v for k, v in self.vmstat_before.items()}
        if self.addr:
            mm.munmap(self.addr, self.size)
            self.addr = 0
