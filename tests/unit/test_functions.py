"""tracefs's available_filter_functions, and the reasons the probe
backends give when a walk function is not traceable by its name: on the
list of a 6.12 kernel (rmap_walk_file there) and a 6.18 one, where
rmap_walk_file() is inlined into its callers around __rmap_walk_file()
(tests/unit/fixtures/kernel/: the mm/rmap.c part of each list, and module
functions as %ps prints them)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from rmapbench.machine.knobs import Journal
from rmapbench.tracing import functions
from rmapbench.tracing.backend import Unavailable
from rmapbench.tracing.fgraph import FunctionGraph
from rmapbench.tracing.probes import DynamicProbe
from rmapbench.tracing.tracefs import Instance, TraceError, TraceFS

KERNEL = Path(__file__).parent / "fixtures" / "kernel"
WALKS = ["rmap_walk_ksm", "rmap_walk_anon", "rmap_walk_file"]


def _names(release: str) -> Counter[str]:
    return functions.parse((KERNEL / f"available_filter_functions-{release}").read_text())


def test_module_functions_by_their_own_name() -> None:
    names = _names("6.18")
    assert names["ext4_map_blocks"] == 1 and "[ext4]" not in names
    assert names["page_vma_mkclean_one.constprop.0"] == 1


def test_every_walk_function_is_traceable_on_6_12() -> None:
    assert functions.absent(_names("6.12"), WALKS, Path("aff")) is None


def test_rmap_walk_file_on_6_18_names_what_the_kernel_has() -> None:
    why = functions.absent(_names("6.18"), WALKS, Path("/sys/kernel/tracing/aff"))
    assert why == (
        "rmap_walk_file is not a traceable function of this kernel (not in "
        "/sys/kernel/tracing/aff; it has __rmap_walk_file, which need not take the same "
        "arguments)"
    )


def test_a_clone_and_an_inlined_function() -> None:
    text = (KERNEL / "available_filter_functions-6.12").read_text()
    names = functions.parse(text.replace("rmap_walk_anon\n", "rmap_walk_anon.isra.0\n"))
    assert "it has rmap_walk_anon.isra.0," in str(functions.absent(names, WALKS, Path("a")))
    names = functions.parse(text.replace("rmap_walk_anon\n", ""))
    assert str(functions.absent(names, WALKS, Path("a"))).endswith("(not in a: inlined?)")


def _tracefs(tmp_path: Path, release: str) -> Path:
    root = tmp_path / "tracing"
    root.mkdir()
    shutil.copy(KERNEL / f"available_filter_functions-{release}",
                root / functions.AVAILABLE)  # fmt: skip
    # The kernel refuses the probe: a directory stands in for the refusal.
    (root / "dynamic_events").mkdir()
    return root


@pytest.mark.parametrize("kind", ["fprobe", "kprobe"])
def test_probe_on_6_18_times_the_file_walk_by_its_substitute(tmp_path: Path, kind: str) -> None:
    """rmap_walk_file is not traceable there: the probe goes to
    __rmap_walk_file (refused too here: the kernel's refusal is faked)."""
    root = _tracefs(tmp_path, "6.18")
    with Journal(directory=tmp_path / "journal") as journal:
        tfs = TraceFS(root, journal)
        probe = DynamicProbe(kind, {"rmap_walk_file": "file"})
        with pytest.raises(Unavailable, match=r"^cannot probe __rmap_walk_file: writing "):
            probe.arm(tfs, Instance(tmp_path / "inst", journal))


@pytest.mark.parametrize("btf", [False, True])
def test_substitute_arguments_are_fetched_where_they_are(btf: bool) -> None:
    """__rmap_walk_file(folio, mapping, pgoff_start, nr_pages, rwc, locked)."""
    probe = DynamicProbe("fprobe", {"__rmap_walk_file": "file"})
    probe._btf = btf
    _, exit_ = probe._definitions("__rmap_walk_file")
    fetch = (
        "folio=folio:x64 mapping=mapping:x64 locked=locked:u8" if btf
        else "folio=$arg1:x64 mapping=$arg2:x64 locked=$arg6:u8"
    )  # fmt: skip
    assert exit_.endswith(f"__rmap_walk_file%return {fetch}")
    probe = DynamicProbe("kprobe", {"rmap_walk_file": "file"})
    _, exit_ = probe._definitions("rmap_walk_file")
    assert exit_.endswith("rmap_walk_file folio=$arg1:x64 mapping=+24($arg1):x64 locked=$arg3:u8")


def test_function_graph_on_6_18_blames_the_function_not_the_instance(tmp_path: Path) -> None:
    root = _tracefs(tmp_path, "6.18")
    inst = tmp_path / "inst"
    (inst / "set_ftrace_filter").mkdir(parents=True)  # refused, as EINVAL would be
    with Journal(directory=tmp_path / "journal") as journal:
        graph = FunctionGraph(1, {"rmap_walk_anon": "anon", "rmap_walk_file": "file"})
        with pytest.raises(Unavailable) as e:
            graph.arm(TraceFS(root, journal), Instance(inst, journal))
    assert str(e.value).startswith("rmap_walk_file is not a traceable function")


def test_no_list_no_reason(tmp_path: Path) -> None:
    assert functions.why_not_traceable(tmp_path, WALKS) is None


def test_function_graph_options_are_put_back(tmp_path: Path) -> None:
    """The graph options are the tracer's, shared with every instance: the
    ones the backend sets are journalled and restored as they were."""
    root = _tracefs(tmp_path, "6.12")
    (root / "available_tracers").write_text("function_graph nop\n")
    inst = tmp_path / "inst"
    options = inst / "options"
    options.mkdir(parents=True)
    for name, value in (("funcgraph-tail", "0"), ("funcgraph-proc", "1"), ("funcgraph-irqs", "1")):
        (options / name).write_text(value + "\n")
    with Journal(directory=tmp_path / "journal") as journal:
        graph = FunctionGraph(7, {"rmap_walk_anon": "anon"})
        graph.arm(TraceFS(root, journal), Instance(inst, journal))
        armed = {p.name: p.read_text().strip() for p in options.iterdir()}
    assert armed == {"funcgraph-tail": "1", "funcgraph-proc": "1", "funcgraph-irqs": "0"}
    after = {p.name: p.read_text().strip() for p in options.iterdir()}
    assert after == {"funcgraph-tail": "0", "funcgraph-proc": "1", "funcgraph-irqs": "1"}


def test_function_graph_on_6_18_times_the_file_walk_by_its_substitute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The filter refuses rmap_walk_file there (EINVAL, faked): the graph
    is filtered to __rmap_walk_file, which the traceable list has."""
    from rmapbench.tracing import fgraph

    root = _tracefs(tmp_path, "6.18")
    (root / "available_tracers").write_text("function_graph nop\n")
    inst = tmp_path / "inst"
    (inst / "options").mkdir(parents=True)
    real_write = fgraph.write

    def write(path: Path, text: str, append: bool = False) -> None:
        if path.name == "set_ftrace_filter" and "rmap_walk_file" in text.split():
            raise TraceError(f"writing '{text}' to {path}: Invalid argument")
        real_write(path, text, append)

    monkeypatch.setattr(fgraph, "write", write)
    with Journal(directory=tmp_path / "journal") as journal:
        graph = FunctionGraph(7, {"rmap_walk_anon": "anon", "rmap_walk_file": "file"})
        desc = graph.arm(TraceFS(root, journal), Instance(inst, journal))
    assert graph.functions == {"rmap_walk_anon": "anon", "__rmap_walk_file": "file"}
    written = (inst / "set_ftrace_filter").read_text().split()
    assert written == ["rmap_walk_anon", "__rmap_walk_file"]
    assert "__rmap_walk_file" in desc.detail
    line = " 0)  python3-7   |   31.250 us    |  __rmap_walk_file();\n"
    assert [(w.page_type, w.duration_ns) for w in graph.walks(line).walks] == [("file", 31_250)]
