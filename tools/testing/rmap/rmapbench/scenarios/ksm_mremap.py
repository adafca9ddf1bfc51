"""ksm-mremap: the ksm case's region, moved elsewhere with mremap() before
the walks.

An anonymous VMA keeps its page offset (vm_pgoff) when mremap() moves it:
copy_vma() gives the new VMA the old linear index, and it stays in the same
anon_vma, whose interval tree is keyed by that index. So after a move the
index of a page is no longer its address >> PAGE_SHIFT. rmap_walk_ksm()
only has the rmap_item's address to go on; the proposed optimisation that
searches the anon_vma tree at a stored linear index instead of over
0..ULONG_MAX broke rmap for exactly this case in an early version (swap-out
of mremap-moved KSM pages failed). Here, after every migration, every page
of the moved region that shared the target's frame must map the new frame
with its content intact.

Two kernel facts shape the build:
- mremap() cannot move a range that spans several VMAs (EFAULT). Rather
  than giving up the split (--split 1) and with it the many-VMA cost the
  ksm case measures, each VMA is moved on its own, to the same offset in a
  destination reserved beforehand with a PROT_NONE mapping (MREMAP_FIXED
  replaces the reservation piece by piece). Neighbouring VMAs keep their
  alternating protections, so none merge and the VMA count is unchanged.
- move_vma() breaks KSM sharing in the moved range (ksm_madvise(
  MADV_UNMERGEABLE)) but keeps VM_MERGEABLE, "so KSM can come around to
  merge on vma and new_vma afterwards". The region is therefore merged,
  moved, and merged again at its new address: the KSM pages measured have
  rmap_items holding the new addresses, in VMAs whose vm_pgoff still
  derives from the old ones.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from rmapbench.machine import ksm, maps, mm
from rmapbench.scenarios.region import KsmScenario


def vma_spans(pid: int, start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) of each VMA of pid inside [start, end)."""
    return [
        (m.start, m.end)
        for m in maps.mappings(pid)
        if m.start >= start and m.end <= end
    ]


class KsmMremapScenario(KsmScenario):
    name = "ksm-mremap"
    backing: ClassVar[str] = "ksm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dest = 0  # the reserved destination, mapped while it exists

    def build(self) -> int:
        self._map()
        mm.madvise(self.addr, self.length, mm.MADV_MERGEABLE)
        self._split()
        first = ksm.merge(self.journal, self.target(), self.opts.pages, self.opts.merge_timeout)
        self.setup["ksm_before_move"] = first.as_dict()
        self._move()
        # Merged again where the region now lives (the move unmerged it).
        result = ksm.merge(self.journal, self.target(), self.opts.pages, self.opts.merge_timeout)
        self.setup["ksm"] = result.as_dict()
        self._check_type()
        self._check_shared()
        return self.target()

    def _move(self) -> None:
        t0 = time.monotonic()
        pid = os.getpid()
        old = self.addr
        spans = vma_spans(pid, old, old + self.length)
        # Each move may split the reservation once more before it fills up.
        self._raise_map_count(2 * len(spans))
        self.dest = mm.mmap(
            self.length, mm.PROT_NONE, mm.MAP_PRIVATE | mm.MAP_ANONYMOUS | mm.MAP_NORESERVE
        )
        flags = mm.MREMAP_MAYMOVE | mm.MREMAP_FIXED
        for start, end in spans:
            to = self.dest + (start - old)
            got = mm.mremap(start, end - start, end - start, flags, to)
            if got != to:
                raise RuntimeError(f"mremap moved {start:#x} to {got:#x}, not {to:#x}")
        self.addr = self.dest
        moved = maps.count_in(pid, self.addr, self.addr + self.length)
        left = maps.count_in(pid, old, old + self.length)
        self.setup["mremap"] = {
            "old_addr": hex(old),
            "new_addr": hex(self.addr),
            "vmas_moved": len(spans),
            # How far each VMA's vm_pgoff now lags behind its address.
            "pgoff_shift_pages": (self.addr - old) // mm.PAGE_SIZE,
            "seconds": round(time.monotonic() - t0, 3),
        }
        self.setup.setdefault("notes", []).append(
            f"mremap: {len(spans)} VMAs moved from {old:#x} to {self.addr:#x} in "
            f"{self.setup['mremap']['seconds']} s; merged again there (the move unmerges)"
        )
        if moved != len(spans) or left:
            raise RuntimeError(
                f"after moving {len(spans)} VMAs: {moved} at the new address, {left} left behind"
            )
        self.setup["vmas"] = moved

    def teardown(self) -> None:
        if self.dest and self.addr != self.dest:
            # A move that failed half way: the reservation and what reached it.
            mm.munmap(self.dest, self.length)
        self.dest = 0
        super().teardown()
