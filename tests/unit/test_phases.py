"""Phase recording (ksft/phases.py): sequential phases, carved spans, the
process's start, the document entry, the diagnostic line and the table."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import Any

import pytest

from rmapbench.ksft import phases, summary


def test_sequential_phases_add_up() -> None:
    r = phases.Recorder(first_line=100.0)
    r.seconds.pop("startup", None)
    r.begin("preflight", now=101.0)  # imports: 100 -> 101
    r.begin("build", now=101.5)
    r.begin("samples", now=104.0)
    r.begin("build", now=105.0)  # a phase may recur: it adds up
    t = r.table(now=105.25)
    assert t == {"imports": 1.0, "preflight": 0.5, "build": 2.75, "samples": 1.0}
    assert list(t) == ["imports", "preflight", "build", "samples"]  # ORDER


def test_span_is_carved_out_of_the_open_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([10.0, 10.25, 11.0, 11.5])
    r = phases.Recorder(first_line=0.0)
    r.begin("samples", now=9.0)
    monkeypatch.setattr(phases.time, "monotonic", lambda: next(clock))
    with r.span("verification"):
        pass
    with r.span("verification"):
        pass
    t = r.table(now=12.0)
    assert t["verification"] == 0.75
    assert t["samples"] == 3.0 - 0.75
    assert sum(v for k, v in t.items() if k not in ("startup", "imports")) == 3.0


def test_timed_and_after_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    r = phases.Recorder(first_line=time.monotonic())
    monkeypatch.setattr(phases, "RECORDER", r)
    r.begin("warmup")
    verify = phases.timed(lambda: ["problem"], "verification")
    assert verify is not None and verify() == ["problem"]
    assert phases.timed(None, "verification") is None
    seen: list[int] = []
    cb = phases.after_warmup(lambda s: seen.append(s.index), 2, "samples")
    # The warm-up ends with the sample marked so: here the first, as after
    # a long firing (bench/warmup.py), not after the most (2).
    cb(SimpleNamespace(index=0, ends_warmup=True))
    assert r.current == "samples"
    cb(SimpleNamespace(index=1, ends_warmup=False))
    assert seen == [0, 1] and r.current == "samples"
    assert "verification" in r.table()
    phases.after_warmup(None, 0, "samples")
    assert r.current == "samples"


def test_process_start_from_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(phases.SPAWNED_ENV, "50.0")
    assert phases.process_started(now_mono=50.4) == (50.0, "runner")
    r = phases.Recorder(first_line=50.4)
    assert r.origin == "runner" and r.table(now=50.4)["startup"] == 0.4


def test_process_start_from_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(phases.SPAWNED_ENV, raising=False)
    now = time.monotonic()
    started = phases.process_started(now)
    assert started is not None and started[1] == "proc"
    # This interpreter started before now, not absurdly long ago.
    assert 0 <= now - started[0] < 24 * 3600
    # A stale or foreign reading is not taken for the runner's.
    monkeypatch.setenv(phases.SPAWNED_ENV, str(now + 5))
    assert phases.process_started(now)[1] == "proc"  # type: ignore[index]
    monkeypatch.setenv(phases.SPAWNED_ENV, "junk")
    assert phases.process_started(now)[1] == "proc"  # type: ignore[index]


def test_program_recorder_starts_at_the_librarys_first_line() -> None:
    import rmapbench

    assert phases.RECORDER.first_line == rmapbench.STARTED
    assert os.environ.get(phases.SPAWNED_ENV) is None or phases.RECORDER.origin


def test_entry_and_line() -> None:
    e = phases.entry({"startup": 0.5, "build": 1.0, "samples": 2.5, "report": 0.001},
                     [1_000_000_000, 500_000_000])
    assert e["total_s"] == 4.001 and e["walks_s"] == 1.5
    assert e["walk_share"] == round(1.5 / 4.001, 4) and e["overhead_s"] == 2.501
    text = phases.line(e)
    assert text.startswith("phases (s): startup 0.50, build 1.00, samples 2.50; total 4.00")
    assert "report" not in text and "(37.5%)" in text
    assert phases.entry({}, [])["walk_share"] is None


def doc(program: str, name: str, secs: dict[str, float], walks: float) -> dict[str, Any]:
    e = phases.entry(secs, [int(walks * 1e9)])
    return {"program": program, "status": "pass", "scenarios": [{"name": name}], "phases": e}


def test_phase_table() -> None:
    docs = [
        doc("rmap_file", "file", {"startup": 1.0, "build": 2.0, "samples": 3.0}, 0.004),
        doc("rmap_ksm", "ksm", {"startup": 1.0, "merge": 4.0, "samples": 90.0}, 89.0),
        {"program": "rmap_anon", "scenarios": [{"name": "anon"}]},  # an older result
    ]
    text = summary.phase_table(docs)
    lines = text.splitlines()
    assert lines[1].split() == ["case", "start", "build", "merge", "samples", "total",
                                "walks", "share"]
    assert lines[2].split()[0] == "ksm" and lines[3].split()[0] == "file"  # runner order
    assert lines[2].split()[2] == "-" and lines[2].split()[-1] == "93.7%"
    assert lines[-1].split() == ["all", "101.00", "89.004", "88.1%"]
    assert summary.phase_table(docs[2:]) == ""
    assert summary.full(docs[2:]) == summary.table(docs[2:])
    assert summary.full(docs).endswith(text)
