"""Which walk functions the probe backends arm: the case's page type's
alone, unless --probe-all-walks (no tracefs)."""

from __future__ import annotations

from rmapbench.tracing import events, select
from rmapbench.tracing.fgraph import FunctionGraph
from rmapbench.tracing.probes import DynamicProbe


def test_each_page_type_probes_its_own_walk_function_unless_told() -> None:
    assert select.walk_types("anon") == ("anon",)
    assert select.walk_types("ksm", every=True) == ("ksm", "anon", "file")
    assert select.walk_types("unknown") == ("ksm", "anon", "file")
    probe = select.make("fprobe", types=("file",))
    assert isinstance(probe, DynamicProbe) and list(probe.functions) == ["rmap_walk_file"]
    graph = select.make("fgraph", types=("ksm",))
    assert isinstance(graph, FunctionGraph) and list(graph.functions) == ["rmap_walk_ksm"]
    assert list(DynamicProbe("kprobe").functions) == list(events.WALK_FUNCTIONS)
    assert select.SYSCALL_ONLY.as_dict()["walk_types"] == []
