"""rmapbench.machine.procs on this machine: forked children report ready, form a
fork tree, fail loudly, and are all gone after kill(), also when the test
process itself is SIGKILLed (PR_SET_PDEATHSIG). No guest needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmapbench.machine.procs import ChildError, Family, tree_size

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(ln for ln in status.splitlines() if ln.startswith("State:"))
    return "Z" not in state.split()[1]


def wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_tree_size() -> None:
    assert tree_size(2, 2) == 6
    assert tree_size(3, 1) == 3
    assert tree_size(1, 4) == 4


def test_children_report_and_are_reaped() -> None:
    fam = Family()
    try:
        reports = fam.spawn(3, lambda: [0x1000, os.getpid()])
        assert len(reports) == 3
        for r in reports:
            assert r.addrs == [0x1000, r.pid]
            assert alive(r.pid)
            assert os.getppid() != r.pid
    finally:
        fam.kill()
    for pid in fam.pids:
        assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie


def test_fork_tree_every_level_reports_and_is_reaped() -> None:
    fam = Family()
    try:
        reports = fam.spawn_tree(2, 2, lambda: [os.getppid()])
        assert len(reports) == 6
        pids = {r.pid for r in reports}
        parents = [r.addrs[0] for r in reports]
        assert len(pids) == 6
        # Two children of ours, four grandchildren (two under each child).
        assert parents.count(os.getpid()) == 2
        assert sorted(parents.count(p) for p in pids) == [0, 0, 0, 0, 2, 2]
    finally:
        fam.kill()
    assert wait_gone(fam.pids) == []
    for pid in fam.pids:
        assert not Path(f"/proc/{pid}").exists()
    fam.kill()  # twice is fine


def test_a_failing_child_names_itself() -> None:
    def work() -> list[int]:
        raise ValueError("no region")

    fam = Family()
    try:
        with pytest.raises(ChildError, match=r"child \d+: ValueError: no region"):
            fam.spawn(2, work)
    finally:
        fam.kill()
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_children_die_with_a_killed_parent() -> None:
    """SIGKILL leaves no teardown to run: PDEATHSIG takes the children."""
    code = (
        "import os, sys\n"
        "from rmapbench.machine.procs import Family\n"
        "f = Family()\n"
        "f.spawn_tree(2, 2, lambda: [])\n"
        "print(' '.join(map(str, f.pids)), flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=PACKAGE_ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 6 and all(alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_gone(pids) == []


def test_sigterm_while_children_build_reaps_them(tmp_path: Path) -> None:
    """SIGTERM while the children are still building (none has reported):
    the Interrupted exception reaches the teardown, which kills and reaps
    every child, grandchildren included."""
    pidfile = tmp_path / "pids"
    code = (
        "import os, sys, time\n"
        "from rmapbench.machine import knobs\n"
        "from rmapbench.machine.procs import Family\n"
        "def work():\n"
        f"    with open({str(pidfile)!r}, 'a') as f:\n"
        "        f.write(f'{os.getpid()}\\n')\n"
        "    time.sleep(60)\n"
        "    return []\n"
        "f = Family()\n"
        "try:\n"
        "    with knobs.signals_raise():\n"
        "        try:\n"
        "            print('spawning', flush=True)\n"
        "            f.spawn_tree(2, 2, work)\n"
        "        finally:\n"
        "            f.kill()\n"
        "except knobs.Interrupted as e:\n"
        "    print(e, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=PACKAGE_ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "spawning"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if pidfile.exists() and len(pidfile.read_text().split()) == 6:
            break
        time.sleep(0.05)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 6
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "interrupted by SIGTERM" in out
    for pid in pids:  # reaped by the test itself: not even a zombie is left
        assert not Path(f"/proc/{pid}").exists()
