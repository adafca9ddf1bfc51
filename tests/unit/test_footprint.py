"""What each scenario tells the preflight it will hold at its peak, from
its options alone (nothing is built): the region, once per process that
writes its own, and a forked reader's allowance per child."""

from __future__ import annotations

from pathlib import Path

from rmapbench.ksft.options import Options
from rmapbench.machine.knobs import Journal
from rmapbench.machine.mm import PAGE_SIZE
from rmapbench.scenarios.anon_fork import AnonForkScenario
from rmapbench.scenarios.file_mappers import FileMappersScenario
from rmapbench.scenarios.ksm_procs import KsmProcsScenario
from rmapbench.scenarios.region import AnonScenario, KsmScenario
from rmapbench.scenarios.shared import CHILD_BYTES
from rmapbench.scenarios.thp import ThpScenario

MIB = 1 << 20


def test_a_region_holds_its_pages(tmp_path: Path) -> None:
    j = Journal(directory=tmp_path)
    assert AnonScenario(Options(pages=20000), j).footprint() == 20000 * PAGE_SIZE
    assert KsmScenario(Options(pages=500), j).footprint() == 500 * PAGE_SIZE


def test_readers_add_their_own_memory(tmp_path: Path) -> None:
    j = Journal(directory=tmp_path)
    tree = AnonForkScenario(Options(pages=1000, fork_width=2, fork_depth=2), j)
    assert tree.processes() == 7
    assert tree.footprint() == 1000 * PAGE_SIZE + 6 * CHILD_BYTES
    mappers = FileMappersScenario(Options(pages=1000, procs=32), j)
    assert mappers.footprint() == 1000 * PAGE_SIZE + 31 * CHILD_BYTES


def test_ksm_procs_writes_a_region_per_process(tmp_path: Path) -> None:
    sc = KsmProcsScenario(Options(pages=2000, procs=8), Journal(directory=tmp_path))
    assert sc.footprint() == 8 * 2000 * PAGE_SIZE + 7 * CHILD_BYTES
    assert 75 * MIB < sc.footprint() < 85 * MIB


def test_a_thp_is_too_small_to_check(tmp_path: Path) -> None:
    assert ThpScenario(Options(), Journal(directory=tmp_path)).footprint() == 0
