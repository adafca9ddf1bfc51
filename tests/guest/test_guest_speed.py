"""Guest test of the time-to-result work: a --precision run stops early and
records why, one that cannot reach its precision stops at --max-samples,
and every program's result has its phases adding up to its duration."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tap.parser import Parser

pytestmark = pytest.mark.guest


@pytest.fixture(scope="module")
def run(guest: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("speed")
    script = f"""set -u
d={d}
./rmap_anon.py --pages 1000 --precision 25 --max-samples 200 --results $d/prec \\
    > $d/prec.txt; echo $? > $d/prec.rc
./rmap_anon.py --pages 1000 --precision 0.01 --min-samples 2 --max-samples 4 \\
    --results $d/max > $d/max.txt; echo $? > $d/max.rc
./rmap_ksm.py --pages 1000 --samples 3 --results $d/fixed > $d/fixed.txt; echo $? > $d/fixed.rc
"""
    guest(script, d)
    return d


def load(d: Path, name: str) -> dict[str, Any]:
    return json.loads((d / name).read_text())  # type: ignore[no-any-return]


def test_precision_stops_early_and_says_why(run: Path) -> None:
    assert (run / "prec.rc").read_text().strip() == "0"
    doc = load(run, "prec/rmap_anon.json")
    s = doc["sampling"]
    assert s["rule"] == "precision" and s["stopped"] == "precision"
    assert 10 <= s["samples"] < 200 and s["halfwidth_pct"] <= 25
    assert s["ci_low_ns"] <= s["median_ns"] <= s["ci_high_ns"]
    trials = doc["scenarios"][0]["trials"]
    assert len(trials) == 2 + s["samples"]  # warm-up + measured
    text = (run / "prec.txt").read_text()
    assert f"# sampling: {s['samples']} samples; the 95% interval" in text
    assert not any(r.category == "not ok" for r in Parser().parse_text(text))


def test_precision_out_of_reach_stops_at_the_maximum(run: Path) -> None:
    assert (run / "max.rc").read_text().strip() == "0"
    s = load(run, "max/rmap_anon.json")["sampling"]
    assert s["stopped"] == "max-samples" and s["samples"] == 4
    assert "--max-samples 4 reached" in (run / "max.txt").read_text()


def test_phases_add_up(run: Path) -> None:
    doc = load(run, "fixed/rmap_ksm.json")
    assert doc["sampling"] == {"rule": "fixed", "samples": 3, "stopped": "count",
                               "warmup": {"most": 2, "enough_ms": 50}}
    # The warm-up ends after its first firing when that took 50 ms or more.
    trials = doc["scenarios"][0]["trials"]
    warm = [t["index"] for t in trials if t["warmup"]]
    assert warm == ([0] if trials[0]["syscall_ns"] >= 50e6 else [0, 1])
    assert len(trials) == len(warm) + 3
    ph = doc["phases"]
    secs = ph["seconds"]
    for name in ("startup", "imports", "preflight", "arm", "build", "merge", "warmup",
                 "samples", "verification", "teardown", "drain", "restore", "report"):
        assert name in secs, name
    assert secs["merge"] > 0 and secs["drain"] > 0
    assert ph["total_s"] == pytest.approx(sum(secs.values()), abs=0.01)
    # duration_s runs from after preflight to the verdict: inside the total.
    assert doc["duration_s"] < ph["total_s"]
    walks = sum(doc["scenarios"][0]["walks"]["samples"]) / 1e9
    assert ph["walks_s"] == pytest.approx(walks, abs=0.001)
    assert "# phases (s): startup" in (run / "fixed.txt").read_text()
    # The boot's first program calibrated the probe, in a phase of its own;
    # this one, later in the same boot, reused it.
    assert "calibrate" in load(run, "prec/rmap_anon.json")["phases"]["seconds"]
    assert "calibrate" not in secs
