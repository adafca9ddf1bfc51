"""The file case's region built on a real filesystem of this machine: its
blocks allocated first (so a full filesystem is a SKIP, not SIGBUS), then
every page mapped, filled and synced clean. Needs root for the PFNs and
page flags; no NUMA and no tracing. A filesystem that is full is the guest
test's (tests/guest/test_guest_cases.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmapbench.ksft.options import Options
from rmapbench.machine import mm
from rmapbench.machine.knobs import Journal
from rmapbench.scenarios.region import FILL_BYTE, FileScenario, fs_type

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pagemap PFNs need root")

KPF_DIRTY = 1 << 4
KPF_MMAP = 1 << 11


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    if fs_type(tmp_path) in {"tmpfs", "ramfs"}:
        pytest.skip(f"{tmp_path} is not on a real filesystem")
    return tmp_path


@pytest.fixture
def region(workdir: Path, tmp_path: Path) -> Iterator[FileScenario]:
    sc = FileScenario(Options(pages=64, split=2, workdir=workdir), Journal(directory=tmp_path))
    sc.preflight()
    sc.build()
    yield sc
    sc.teardown()


def test_every_page_mapped_clean_and_filled(region: FileScenario) -> None:
    pid = os.getpid()
    assert region.setup["vmas"] == region.setup["vmas_expected"] == 64
    assert region.setup["target_page_type"] == "file"
    assert all(mm.pfns(pid, region.addr, 64)), "a page of the region is not mapped"
    for i in range(64):
        info = mm.page_info(pid, region.addr + i * mm.PAGE_SIZE)
        assert info.flags & KPF_MMAP and not info.flags & KPF_DIRTY, f"page {i}"
    assert mm.read_bytes(region.addr, region.length) == bytes([FILL_BYTE]) * region.length
    assert region.verify() == []


def test_teardown_removes_the_file(workdir: Path, tmp_path: Path) -> None:
    sc = FileScenario(Options(pages=4, split=2, workdir=workdir), Journal(directory=tmp_path))
    sc.build()
    assert sc.path and Path(sc.path).exists()
    path = sc.path
    sc.teardown()
    assert not Path(path).exists()


def test_the_file_is_allocated_whole(region: FileScenario) -> None:
    assert region.path is not None
    st = os.stat(region.path)
    assert st.st_size == region.length
    assert st.st_blocks * 512 >= region.length  # allocated, not sparse

