"""verify() on a real region of this process: it names the address and the
frames when a mapping of the target is not where the target is. Needs root
for the PFNs in pagemap; no NUMA and no tracing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmapbench.ksft.options import Options
from rmapbench.machine import mm
from rmapbench.machine.knobs import Journal
from rmapbench.scenarios.region import AnonScenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pagemap PFNs need root")


@pytest.fixture
def anon(tmp_path: Path) -> Iterator[AnonScenario]:
    sc = AnonScenario(Options(pages=8, split=2), Journal(directory=tmp_path))
    sc.build()
    yield sc
    sc.teardown()


def test_built_region_verifies(anon: AnonScenario) -> None:
    assert anon.sharers == [anon.target_index()]
    assert anon.setup["vmas"] == 8
    assert anon.verify() == []


def test_a_mapping_left_on_another_frame_is_named(anon: AnonScenario) -> None:
    # Pretend page 3 maps the target too: it is on its own frame, as a
    # mapping an rmap walk missed would be.
    anon.sharers.append(3)
    problems = anon.verify()
    addr = anon.addr + 3 * mm.PAGE_SIZE
    assert len(problems) == 1
    assert f"pid {os.getpid()} address {addr:#x} maps frame" in problems[0]


def test_changed_content_is_named(anon: AnonScenario) -> None:
    mm.fill(anon.target(), 1, 0x55)
    problems = anon.verify()
    assert len(problems) == 1 and problems[0].endswith("content changed")
