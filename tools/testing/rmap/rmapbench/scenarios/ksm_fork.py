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

from rmapbench.scenarios.region import KsmScenario
from rmapbench.scenarios.shared import SharedRegion


class KsmForkScenario(SharedRegion, KsmScenario):
    name = "ksm-fork"
    page_type = "ksm"
    backing = "ksm"
    target_mapped_once = False

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "fork_width": self.opts.fork_width,
            "fork_depth": self.opts.fork_depth,
        }

    def build(self) -> int:
        addr = super().build()  # merged, ksmd stopped
        sharers = len(self.sharers)
        w, d = self.opts.fork_width, self.opts.fork_depth
        self.family.spawn_tree(w, d, self._read_region)
        self._fork_setup(w, d)
        self._record_mappings()
        self._require_mappings(len(self.pids()), sharers)
        return addr
