"""anon-fork: the anon case's region, then a fork tree (width W, depth D)
whose children only read it, so the target stays one anonymous page mapped
copy-on-write by 1 + W + ... + W^D processes. rmap_walk_anon() searches the
page's anon_vma at the page's own offset and finds one VMA per process: the
walk grows with the processes, not with the VMAs of the split.
"""

from __future__ import annotations

from typing import Any

from rmapbench.ksft.options import FORK_OPTIONS, CasePolicy
from rmapbench.scenarios.region import AnonScenario
from rmapbench.scenarios.shared import SharedRegion


class AnonForkScenario(SharedRegion, AnonScenario):
    name = "anon-fork"
    page_type = "anon"
    backing = "anon"
    # The multi-process cases multiply --pages (every process holds or maps
    # the region, and a KSM walk after a fork visits every child's VMAs
    # too), so their default keeps a default run in minutes under TCG.
    policy = CasePolicy(pages=2000, uses=FORK_OPTIONS)
    target_mapped_once = False

    def params(self) -> dict[str, Any]:
        return {**super().params(), **self._fork_params()}

    def build(self) -> int:
        addr = super().build()
        self._fork_tree(1)
        return addr
