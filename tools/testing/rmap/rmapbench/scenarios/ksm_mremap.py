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
- mremap() cannot move a range that spans several VMAs (EFAULT), and
  moving the split region VMA by VMA costs one call per VMA (2.9 s of a
  4.5 s build at 20,000 VMAs under TCG). So the region is moved while it is
  still one VMA, to a destination reserved beforehand with a PROT_NONE
  mapping (MREMAP_FIXED replaces the reservation), and split there. A split
  gives each piece the moved VMA's vm_pgoff plus its offset in it
  (__split_vma()), so every VMA's page offset still derives from the old
  address, exactly as if each had been moved on its own.
- move_vma() breaks KSM sharing in the moved range (ksm_madvise(
  MADV_UNMERGEABLE)) but keeps VM_MERGEABLE, "so KSM can come around to
  merge on vma and new_vma afterwards". The region is therefore merged,
  moved, split and merged again at its new address: the KSM pages measured
  have rmap_items holding the new addresses, in VMAs whose vm_pgoff still
  derives from the old ones.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from rmapbench.machine import ksm, maps, mm
from rmapbench.scenarios.region import KsmScenario, expected_vmas


class KsmMremapScenario(KsmScenario):
    name = "ksm-mremap"
    backing: ClassVar[str] = "ksm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dest = 0  # the reserved destination, mapped while it exists

    def build(self) -> int:
        self._map()
        mm.madvise(self.addr, self.length, mm.MADV_MERGEABLE)
        first = ksm.merge(self.journal, self.target(), self.opts.pages, self.opts.merge_timeout)
        self.setup["ksm_before_move"] = first.as_dict()
        self._move()
        self._split()
        self.setup["mremap"]["vmas_after_split"] = self.setup["vmas"]
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
        vmas = maps.count_in(pid, old, old + self.length)
        if vmas != 1:
            raise RuntimeError(f"the region is {vmas} VMAs before the move, not one")
        # Guarded like the region, which teardown unmaps with its guards.
        self.dest = mm.mmap_guarded(
            self.length, mm.PROT_NONE, mm.MAP_PRIVATE | mm.MAP_ANONYMOUS | mm.MAP_NORESERVE
        )
        flags = mm.MREMAP_MAYMOVE | mm.MREMAP_FIXED
        got = mm.mremap(old, self.length, self.length, flags, self.dest)
        if got != self.dest:
            raise RuntimeError(f"mremap moved {old:#x} to {got:#x}, not {self.dest:#x}")
        self.addr = self.dest
        mm.munmap_guarded(old, self.length)  # the guards left behind
        self.setup["mremap"] = {
            "old_addr": hex(old),
            "new_addr": hex(self.addr),
            "vmas_moved": vmas,
            # How far each VMA's vm_pgoff now lags behind its address.
            "pgoff_shift_pages": (self.addr - old) // mm.PAGE_SIZE,
            "seconds": round(time.monotonic() - t0, 3),
        }
        left = maps.count_in(pid, old, old + self.length)
        if left or maps.count_in(pid, self.addr, self.addr + self.length) != 1:
            raise RuntimeError(f"after the move: {left} VMAs left at {old:#x}")
        self.setup.setdefault("notes", []).append(
            f"mremap: the region moved from {old:#x} to {self.addr:#x} in "
            f"{self.setup['mremap']['seconds']} s, then split there into "
            f"{expected_vmas(self.opts.pages, self.opts.split)} VMAs and merged again "
            "(the move unmerges)"
        )

    def teardown(self) -> None:
        if self.dest and self.addr != self.dest:
            # A move that failed half way: the reservation and what reached it.
            mm.munmap_guarded(self.dest, self.length)
        self.dest = 0
        super().teardown()
