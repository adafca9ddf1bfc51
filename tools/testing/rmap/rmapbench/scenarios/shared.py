"""What the multi-process scenarios share: forked children holding mappings
of the target page, the list of every (process, address) that maps the
target's frame, and the check after each trigger that all of them followed
the page to its new frame with the content intact.

A migration replaces every mapping of the page with a migration entry
(try_to_migrate) and then with the new frame (remove_migration_ptes); both
find the mappings through the rmap walk. A walk that missed a process leaves
that process on the old frame, which its /proc/PID/pagemap shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rmapbench.machine import mm
from rmapbench.machine.procs import Family, tree_size
from rmapbench.scenarios.region import FILL_BYTE, RegionScenario

# A forked child's own memory: the interpreter's heap pages it writes
# (copied on write), its page tables and kernel stack. Measured in guests
# of stock 6.12: 0.8 MiB private dirty per anon-fork reader, 1.6 MiB per
# ksm-procs child, and 1.8 GiB of PSS for 1,024 ksm-procs processes.
CHILD_BYTES = 2 << 20


@dataclass
class Mapped:
    """The pages of one process's region that map the target's frame."""

    pid: int
    start: int  # the region's first address in that process
    pages: int  # the region's length in pages
    indices: list[int]  # pages of the region on the target's frame


class SharedRegion(RegionScenario):
    """A region scenario whose target is mapped by several processes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.family = Family()
        self.mapped: list[Mapped] = []

    def pids(self) -> list[int]:
        return [os.getpid(), *self.family.pids]

    def processes(self) -> int:
        """How many processes map the target, the test's own included:
        --procs in the cases that take it, else the --fork-width x
        --fork-depth tree's."""
        if "procs" in self.policy.uses:
            return self.policy.procs_for(self.opts)
        return 1 + tree_size(self.opts.fork_width, self.opts.fork_depth)

    def footprint(self) -> int:
        return super().footprint() + (self.processes() - 1) * CHILD_BYTES

    def expected_content(self, index: int) -> bytes:
        """What page `index` of a region holds."""
        return bytes([FILL_BYTE]) * mm.PAGE_SIZE

    def regions(self) -> list[tuple[int, int]]:
        """(pid, start) of every process's region: by default the children
        inherited the test's region at the same address."""
        return [(pid, self.addr) for pid in self.pids()]

    def _record_mappings(self) -> None:
        """Find every page of every process's region that maps the target's
        frame; verify() checks exactly these after each trigger."""
        info = mm.page_info(os.getpid(), self.target())
        frame = info.pfn
        self.setup["target_mapcount"] = info.mapcount
        self.mapped = []
        for pid, start in self.regions():
            pfns = mm.pfns(pid, start, self.opts.pages)
            indices = [i for i, pfn in enumerate(pfns) if pfn == frame]
            if indices:
                self.mapped.append(Mapped(pid, start, self.opts.pages, indices))
        here = next((m for m in self.mapped if m.pid == os.getpid()), None)
        self.sharers = here.indices if here else []
        self.setup["target_sharers_here"] = len(self.sharers)
        self.setup["target_mappings"] = sum(len(m.indices) for m in self.mapped)
        self.setup["target_processes"] = len(self.mapped)
        self.setup["processes"] = len(self.pids())

    def _require_mappings(self, processes: int, per_process: int) -> None:
        got = self.setup["target_processes"], self.setup["target_mappings"]
        want = processes, processes * per_process
        if got != want:
            raise RuntimeError(
                f"the target's frame is mapped {got[1]} times in {got[0]} processes, "
                f"expected {want[1]} in {want[0]}"
            )

    def verify(self) -> list[str]:
        """Every recorded mapping is on the target's frame, and the frame
        holds what each of them should: the content is read once, through
        the first mapping found on the frame, since every mapping of one
        frame sees the same bytes (one /proc/PID/mem read per mapping cost
        ~40 us each under TCG, 2 s a run for ksm-fork's 1,750 mappings)."""
        frame = mm.page_info(os.getpid(), self.target()).pfn
        problems: list[str] = []
        on_frame: list[tuple[Mapped, int]] = []
        for m in self.mapped:
            pfns = mm.pfns_at(m.pid, m.start, m.indices)  # only the target's mappings
            for i, pfn in zip(m.indices, pfns, strict=True):
                if pfn == frame:
                    on_frame.append((m, i))
                else:
                    problems.append(
                        f"pid {m.pid} address {m.start + i * mm.PAGE_SIZE:#x} maps frame "
                        f"{pfn:#x}, the target is on {frame:#x}"
                    )
        if on_frame:
            m, i = on_frame[0]
            with open(f"/proc/{m.pid}/mem", "rb", buffering=0) as mem:
                content = os.pread(mem.fileno(), mm.PAGE_SIZE, m.start + i * mm.PAGE_SIZE)
            wanted = {i: self.expected_content(i) for i in {i for _, i in on_frame}}
            for m, i in on_frame:
                if wanted[i] != content:
                    problems.append(
                        f"pid {m.pid} address {m.start + i * mm.PAGE_SIZE:#x} frame "
                        f"{frame:#x}: content changed"
                    )
        return problems

    def _read_region(self) -> list[int]:
        """Child work for inherited mappings: read every page (a shared file
        mapping is not copied at fork, so this maps it; anonymous pages are
        only read, never written, so they stay shared); report the region."""
        mm.read_bytes(self.addr, self.length)
        return [self.addr]

    def _fork_tree(self, mappings_per_process: int) -> None:
        """After the region is built (and merged): fork the --fork-width x
        --fork-depth tree of readers and check that every process of it
        maps the target, mappings_per_process times."""
        w, d = self.opts.fork_width, self.opts.fork_depth
        self.family.spawn_tree(w, d, self._read_region)
        self.setup["fork_tree"] = {
            "width": w,
            "depth": d,
            "processes": len(self.family.pids) + 1,
        }
        self._record_mappings()
        self._require_mappings(len(self.pids()), mappings_per_process)

    def _fork_params(self) -> dict[str, Any]:
        return {"fork_width": self.opts.fork_width, "fork_depth": self.opts.fork_depth}

    def teardown(self) -> None:
        # Children first: the KSM clean-up after munmap must see their mms gone.
        self.family.kill()
        super().teardown()
