"""The cheaper exact checks of the measuring path give the old answers:
mappings counted from /proc/PID/maps, PFNs of a few pages, tap.py loaded
without its runner, PyYAML and more_itertools, bytecode compiled before a
boot, the VMAs a split makes counted without a list, the journal written
as before."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmapbench.guest import bytecode
from rmapbench.machine import knobs, maps, mm
from rmapbench.scenarios import region

SUITE = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"


def test_count_in_matches_python_ptrace() -> None:
    pytest.importorskip("ptrace")
    length = 64 * mm.PAGE_SIZE
    addr = mm.mmap(length, mm.PROT_READ | mm.PROT_WRITE, mm.MAP_PRIVATE | mm.MAP_ANONYMOUS)
    try:
        for i in range(0, 64, 4):
            mm.mprotect(addr + i * mm.PAGE_SIZE, mm.PAGE_SIZE, mm.PROT_READ)
        pid = os.getpid()
        slow = sum(1 for m in maps.mappings(pid) if m.start >= addr and m.end <= addr + length)
        # 32 VMAs; the last may merge with a neighbouring mapping (31 inside).
        assert maps.count_in(pid, addr, addr + length) == slow and slow in (31, 32)
        assert maps.count_in(pid, addr, addr + 4 * mm.PAGE_SIZE) == 2
    finally:
        mm.munmap(addr, length)


def test_pfns_at_matches_pfns() -> None:
    pages = 300
    length = pages * mm.PAGE_SIZE
    addr = mm.mmap(length, mm.PROT_READ | mm.PROT_WRITE, mm.MAP_PRIVATE | mm.MAP_ANONYMOUS)
    try:
        mm.fill(addr, length // 2, 1)  # half present, half not
        pid = os.getpid()
        every = mm.pfns(pid, addr, pages)
        for idx in ([1], [0, 299], [5, 3, 7], list(range(pages)), [299, 0, 150]):
            assert mm.pfns_at(pid, addr, idx) == [every[i] for i in idx]
        assert mm.pfns_at(pid, addr, []) == []
    finally:
        mm.munmap(addr, length)


def test_lean_tap_loads_the_tracker_alone() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from rmapbench.ksft import lean; assert lean.lean_tap()\n"
        "from rmapbench.ksft import ktap\n"
        "from rmapbench.bench import pipeline\n"
        "k = ktap.KTAP('rmap_x', ['a']); k.ok('a'); k.finish()\n"
        "assert 'unittest' not in sys.modules and 'yaml' not in sys.modules\n"
        "assert 'more_itertools' not in sys.modules\n"
        "import tap.tracker; assert not tap.tracker.ENABLE_VERSION_13\n"
        "assert 'tempfile' not in sys.modules and 'platform' not in sys.modules\n"
        "assert not lean.lean_tap()\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(SUITE)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "ok 1 rmap_x.a" in out


def test_precompile_writes_bytecode(tmp_path: Path) -> None:
    pkg = tmp_path / "rmapbench"
    pkg.mkdir()
    (pkg / "mod.py").write_text("X = 1\n")
    bytecode.precompile(tmp_path)
    assert list((pkg / "__pycache__").glob("mod.*.pyc"))
    bytecode.precompile(tmp_path / "absent")  # nothing to compile: no error


def test_expected_vmas_counts_the_runs_of_protection() -> None:
    def runs(pages: int, split: int) -> int:
        prots = [split > 1 and i % split == 0 for i in range(pages)]
        return 1 + sum(1 for a, b in itertools.pairwise(prots) if a != b)

    for pages in range(1, 40):
        for split in range(1, 8):
            assert region.expected_vmas(pages, split) == runs(pages, split), (pages, split)
    assert region.expected_vmas(20000, 2) == 20000


def test_count_in_at_the_ends_of_the_map() -> None:
    pid = os.getpid()
    with open(f"/proc/{pid}/maps") as f:
        lines = f.read().splitlines()
    assert maps.count_in(pid, 0, 1 << 64) == len(lines)
    assert maps.count_in(pid, 0, 4096) == 0
    lo, hi = (int(x, 16) for x in lines[1].split()[0].split("-"))
    assert maps.count_in(pid, lo, hi) == 1 and maps.count_in(pid, lo + 1, hi) == 0


def test_journal_file_replays_as_before(tmp_path: Path) -> None:
    knob = tmp_path / "knob"
    knob.write_text("1")
    j = knobs.Journal(tmp_path / "jdir")  # made on the first save
    j.set(knob, 2)
    saved = list((tmp_path / "jdir").glob("journal-*.json"))
    assert len(saved) == 1 and '"kind": "write"' in saved[0].read_text()
    assert knob.read_text() == "2"
    # As a killed run leaves it: the next run's replay puts the knob back.
    left = {"pid": 1 << 22, "steps": [{"kind": "write", "path": str(knob), "value": "1"}]}
    saved[0].write_text(json.dumps(left))
    assert knobs.recover_stale(tmp_path / "jdir") == 1 and knob.read_text() == "1"
