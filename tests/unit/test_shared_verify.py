"""The multi-process scenarios' check on this machine (no NUMA, no
tracing): every process that maps the target is found, and a process left
on another frame is named with its pid, address and frames. Needs root for
the PFNs in pagemap."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmapbench.ksft.options import Options
from rmapbench.machine import mm
from rmapbench.machine.knobs import Journal
from rmapbench.scenarios import SCENARIOS
from rmapbench.scenarios.anon_fork import AnonForkScenario
from rmapbench.scenarios.region import FILL_BYTE
from rmapbench.scenarios.shmem import ShmemScenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pagemap PFNs need root")


@pytest.fixture
def anon_fork(tmp_path: Path) -> Iterator[AnonForkScenario]:
    sc = AnonForkScenario(
        Options(pages=8, split=2, fork_width=2, fork_depth=2), Journal(directory=tmp_path)
    )
    try:
        sc.build()
        yield sc
    finally:
        sc.teardown()
    assert not any(Path(f"/proc/{p}").exists() for p in sc.family.pids)


def test_anon_fork_maps_the_page_in_every_process(anon_fork: AnonForkScenario) -> None:
    assert len(anon_fork.pids()) == 7
    assert anon_fork.setup["target_mappings"] == 7
    assert anon_fork.setup["target_processes"] == 7
    assert anon_fork.setup["target_mapcount"] == 7
    assert {m.pid for m in anon_fork.mapped} == set(anon_fork.pids())
    assert anon_fork.verify() == []


def test_a_process_left_on_the_old_frame_is_named(anon_fork: AnonForkScenario) -> None:
    # Writing breaks copy-on-write: the test's page moves to a new frame and
    # every child stays on the old one, as after a walk that missed them.
    old = mm.page_info(os.getpid(), anon_fork.target()).pfn
    mm.fill(anon_fork.target(), 1, FILL_BYTE)  # same content, new frame
    problems = anon_fork.verify()
    assert len(problems) == 6
    for pid in anon_fork.family.pids:
        want = f"pid {pid} address {anon_fork.target():#x} maps frame {old:#x}, the target is on"
        assert any(p.startswith(want) for p in problems), problems


def test_shmem_target_is_a_file_page_in_every_process(tmp_path: Path) -> None:
    sc = ShmemScenario(Options(pages=8, split=2, procs=3), Journal(directory=tmp_path))
    try:
        sc.build()
        assert sc.setup["target_page_type"] == "file"
        assert sc.setup["target_mappings"] == 3 and sc.setup["vmas"] == 8
        assert sc.verify() == []
    finally:
        sc.teardown()


def test_multi_process_scenarios_declare_their_backing() -> None:
    expected = {
        "ksm-procs": ("ksm", "ksm"), "ksm-fork": ("ksm", "ksm"), "anon-fork": ("anon", "anon"),
        "file-mappers": ("file", "file"), "shmem": ("file", "shmem"),
    }
    for name, (page_type, backing) in expected.items():
        cls = SCENARIOS[name]
        assert (cls.name, cls.page_type, cls.backing) == (name, page_type, backing)  # type: ignore[attr-defined]
        assert cls.target_mapped_once is False  # type: ignore[attr-defined]


def test_ksm_procs_needs_two_processes() -> None:
    assert SCENARIOS["ksm-procs"].usage_error(Options(procs=1))
    assert SCENARIOS["ksm-procs"].usage_error(Options(procs=2)) is None
    assert SCENARIOS["ksm-fork"].usage_error(Options(procs=1)) is None
