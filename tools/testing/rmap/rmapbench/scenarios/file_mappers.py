"""file-mappers: the file case's region (MAP_SHARED of a file on a real
filesystem, split into VMAs) mapped by P processes: the test maps and splits
it, then forks P - 1 children that inherit the VMAs and read every page. The
target file page is mapped once in each process; the file's i_mmap tree
holds P x (VMAs per region) VMAs, and rmap_walk_file() visits the P that
cover the target's offset. The upstream benchmark's last default was 256
mappings of one page; P defaults to 32 here so that a TCG guest builds it in
seconds (--procs 256 gives the upstream count).
"""

from __future__ import annotations

from typing import Any

from rmapbench.ksft.options import CasePolicy
from rmapbench.scenarios.region import FileScenario
from rmapbench.scenarios.shared import SharedRegion


class FileMappersScenario(SharedRegion, FileScenario):
    name = "file-mappers"
    page_type = "file"
    backing = "file"
    # The multi-process cases multiply --pages (every process holds or maps
    # the region, and a KSM walk after a fork visits every child's VMAs
    # too), so their default keeps a default run in minutes under TCG.
    # It defaults to more processes than the others, as a shared library's
    # page has.
    policy = CasePolicy(pages=1000, procs=32, uses=frozenset({"workdir", "procs"}))
    target_mapped_once = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.procs = self.policy.procs_for(self.opts)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "procs": self.procs}

    def build(self) -> int:
        addr = super().build()
        self.family.spawn(self.procs - 1, self._read_region)
        self._record_mappings()
        self._require_mappings(self.procs, 1)
        return addr
