"""shmem: a memfd (shmem) region, split into VMAs, mapped MAP_SHARED by P
processes (the test and P - 1 forked children that read every page). A
shmem page is not anonymous to rmap: folio->mapping is the memfd's inode
mapping, so rmap_walk() takes rmap_walk_file() over that mapping's i_mmap,
like a page-cache page, and visits one VMA per process.
"""

from __future__ import annotations

import os
from typing import Any

from rmapbench.ksft.options import CasePolicy
from rmapbench.machine import mm
from rmapbench.scenarios.shared import SharedRegion


class ShmemScenario(SharedRegion):
    name = "shmem"
    page_type = "file"
    backing = "shmem"
    # The multi-process cases multiply --pages (every process holds or maps
    # the region, and a KSM walk after a fork visits every child's VMAs
    # too), so their default keeps a default run in minutes under TCG.
    policy = CasePolicy(pages=2000, procs=8, uses=frozenset({"procs"}))
    target_mapped_once = False
    flags = mm.MAP_SHARED

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.procs = self.policy.procs_for(self.opts)
        self.fd = -1

    def params(self) -> dict[str, Any]:
        return {**super().params(), "procs": self.procs}

    def build(self) -> int:
        self.fd = os.memfd_create("rmapbench-shmem", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, self.length)
        self._map(self.fd)
        self._split()
        self._check_type()
        self.family.spawn(self.procs - 1, self._read_region)
        self._record_mappings()
        self._require_mappings(self.procs, 1)
        return self.target()

    def teardown(self) -> None:
        super().teardown()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
