"""`rmapbench sweep --jobs 2` in real guests (Debian's stock 6.12 under
TCG): a two-point grid of a small anon case run serially and with two
pinned guests at once gives result sets of the same shape - the same run
directories and files, the points in grid order, the same report rows -
and each live QEMU's threads run on one host CPU of their own."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from rmapbench import __main__ as cli
from rmapbench.analysis import resultset, sweep

pytestmark = [pytest.mark.guest, pytest.mark.usefixtures("stock_kernel")]

TINY = ["anon", "--pages", "100", "--samples", "2", "--warmup", "1"]


def _files(root: Path) -> list[str]:
    """Every file of a set but the per-boot console logs and the index."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("console") and p.name != "index.json"
    )  # fmt: skip


def _cpus_of(pid: str) -> set[frozenset[int]]:
    """The CPU sets every thread of a process may run on."""
    sets = set()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended
            continue
        for line in text.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                cpus: set[int] = set()
                for part in line.split(":", 1)[1].strip().split(","):
                    lo, _, hi = part.partition("-")
                    cpus.update(range(int(lo), int(hi or lo) + 1))
                sets.add(frozenset(cpus))
    return sets


class QemuAffinity(threading.Thread):
    """Watches the live QEMU processes this process started and records,
    per process, the CPU sets of its threads."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.parent = f"PPid:\t{os.getpid()}\n"
        self.seen: dict[str, set[frozenset[int]]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                    status = (proc / "status").read_text()
                except OSError:
                    continue
                if b"qemu-system" in cmdline and self.parent in status:
                    self.seen.setdefault(proc.name, set()).update(_cpus_of(proc.name))


def _sweep(out: Path, jobs: int, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    argv = ["sweep", "--accel", "tcg", "--timeout", "900", "--jobs", str(jobs),
            "--vary", "pages=100,200", "--format", "json", "-o", str(out), "--", *TINY]  # fmt: skip
    assert cli.main(argv) == 0
    capsys.readouterr()
    return json.loads((out / "index.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two host CPUs")
def test_sweep_with_two_jobs_is_shaped_as_a_serial_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serial = _sweep(tmp_path / "serial", 1, capsys)
    watch = QemuAffinity()
    watch.start()
    try:
        both = _sweep(tmp_path / "jobs2", 2, capsys)
    finally:
        watch.done.set()
        watch.join()
    # Each live guest's threads (vCPUs, I/O) were confined to one CPU set
    # of its own, one CPU each here, and the two guests' sets differ.
    per_guest = [sets for sets in watch.seen.values() if sets]
    assert len(per_guest) == 2, watch.seen
    assert all(len(sets) == 1 and len(next(iter(sets))) == 1 for sets in per_guest), watch.seen
    assert per_guest[0] != per_guest[1], watch.seen
    assert _files(tmp_path / "serial") == _files(tmp_path / "jobs2")
    keys = ("dir", "params", "args", "status")
    assert [{k: p[k] for k in keys} for p in both["points"]] == [
        {k: p[k] for k in keys} for p in serial["points"]
    ]
    assert both["points"][0]["status"] == {"rmap_anon": 0}
    assert len(serial["boots"]) == 1 and len(both["boots"]) == 2
    assert [p["boot"] for p in both["points"]] == [0, 1]
    assert (tmp_path / "jobs2" / "console-1.log").is_file()
    # The reports read both alike: the same rows, in the same order.
    rows = [sweep.point_table(resultset.load(tmp_path / d)) for d in ("serial", "jobs2")]
    assert [r[:2] for r in rows[0]] == [r[:2] for r in rows[1]]
    assert [r[:2] for r in rows[0][1:]] == [["anon/anon", "pages=100"], ["anon/anon", "pages=200"]]
