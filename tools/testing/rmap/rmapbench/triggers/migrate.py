"""migrate: move_pages(MPOL_MF_MOVE_ALL) of the one target page to another
NUMA node, alternating. Each migration walks twice: try_to_migrate()
replaces every mapping with a migration entry, remove_migration_ptes() puts
the new page back (on the new folio). MOVE_ALL is needed for pages mapped
more than once (KSM), and needs CAP_SYS_NICE.
"""

from __future__ import annotations

import errno
import os
import time

from rmapbench.machine import mm
from rmapbench.triggers.base import MOVES, Firing, Trigger, TriggerUnavailable


class MigrateTrigger(Trigger):
    name = "migrate"
    effect = MOVES
    cost_name = "move_pages"
    expected_callers = ("try_to_migrate", "remove_migration_ptes")
    retries = True

    def __init__(self) -> None:
        self.nodes = mm.online_nodes()

    def check(self) -> None:
        if len(self.nodes) < 2:
            raise TriggerUnavailable("fewer than two NUMA nodes")
        try:
            mm.move_pages(0, [], None, 0)
        except mm.MMError as e:
            if e.errno == errno.ENOSYS:
                raise TriggerUnavailable("no page migration (CONFIG_MIGRATION)") from e

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "nodes": self.nodes, "flags": "MPOL_MF_MOVE_ALL"}

    def summary(self) -> str:
        return f"migrate between nodes {','.join(map(str, self.nodes))}"

    def fire(self, addr: int) -> Firing:
        try:
            here = mm.page_node(addr)
        except mm.MMError as e:
            if e.errno != errno.ENOENT:
                raise
            mm.read_bytes(addr, 1)  # fault the page back in, then ask again
            here = mm.page_node(addr)
        there = next(n for n in self.nodes if n != here)
        t0 = time.perf_counter_ns()
        (status,) = mm.move_pages(0, [addr], [there], mm.MPOL_MF_MOVE_ALL)
        t1 = time.perf_counter_ns()
        return Firing.migration(t1 - t0, here, there, status)


def status_text(status: int) -> str:
    return f"node {status}" if status >= 0 else os.strerror(-status)
