"""ksm-fork: the ksm case's region, merged by ksmd in the test process, then
a fork tree (width W, depth D) forked after the merge. Every child maps the
same KSM pages copy-on-write, and its VMAs are chained into the test's
anon_vma (plus one anon_vma per ancestor). rmap_walk_ksm() searches the
rmap_item's anon_vma over the whole range, so each of the up to
max_page_sharing rmap_items now visits the VMAs of every process of the
tree: the walk costs (1 + W + ... + W^D) times the ksm case's.
"""

from __future__ import annotations

from typing import Any

from rmapbench.ksft.options import FORK_OPTIONS, KSM_OPTIONS, CasePolicy
from rmapbench.scenarios.region import KsmScenario
from rmapbench.scenarios.shared import SharedRegion


class KsmForkScenario(SharedRegion, KsmScenario):
    name = "ksm-fork"
    page_type = "ksm"
    backing = "ksm"
    # The multi-process cases multiply --pages (every process holds or maps
    # the region, and a KSM walk after a fork visits every child's VMAs
    # too), so their default keeps a default run in minutes under TCG.
    policy = CasePolicy(pages=1000, uses=KSM_OPTIONS | FORK_OPTIONS)
    target_mapped_once = False

    def params(self) -> dict[str, Any]:
        return {**super().params(), **self._fork_params()}

    def build(self) -> int:
        addr = super().build()  # merged, ksmd stopped
        sharers = len(self.sharers)
        self._fork_tree(sharers)
        return addr
