"""Issue #12 in a guest (stock 6.12, TCG): a trigger the kernel refuses
fails the case with its status, and nothing of it reaches the latency
statistics."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.guest

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def test_refused_pageout_fails_the_case(guest: Callable[..., str], tmp_path: Path) -> None:
    # The target mlocked: madvise(MADV_PAGEOUT) refuses it with EINVAL.
    out = guest(
        f"{sys.executable} {SCRIPTS / 'mlocked_target.py'} rmap_file file --trigger pageout "
        f"--pages 200 --samples 4 --warmup 1 --results {tmp_path}; echo rc=$?",
        tmp_path,
    )
    assert "rc=1" in out, out
    reason = "4 of 4 pageout triggers failed with ksmd stopped: 4 status -22 (Invalid argument)"
    assert f"not ok 1 rmap_file.walk_latency # {reason}" in out or reason in out, out
    doc = json.loads((tmp_path / "rmap_file.json").read_text())
    sc = doc["scenarios"][0]
    assert doc["status"] == "fail" and reason in doc["reason"], doc["reason"]
    assert sc["failed_triggers"]["count"] == 4
    assert sc["failed_triggers"]["by_failure"] == [
        {"failure": "status -22 (Invalid argument)", "count": 4}
    ]
    assert sc["walks"]["count"] == 0  # no refused firing is a sample
    assert all(t["failure"] == "status -22 (Invalid argument)" for t in sc["trials"])
    assert all(not t["counted"] for t in sc["trials"])
