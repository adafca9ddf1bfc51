"""The boot's calibration cache: what is reused, when, and what a program
on its own leaves behind (no tracefs: the measurement itself is replaced)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmapbench.tracing import calcache, calibrate
from rmapbench.tracing.calibrate import Calibration, summarise
from rmapbench.tracing.probes import DynamicProbe


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replaces the measurement; counts how often it ran."""
    calls: list[int] = []

    def fake(
        backend: object, buffer_kb: int = 256, firings: int = 200, after: object = None
    ) -> Calibration:
        calls.append(buffer_kb)
        empty = summarise("fprobe", "m", calibrate.FUNCTION, [2900, 3000, 3100], 2800)
        return calibrate.with_after_firing(empty, getattr(after, "durations", []))

    monkeypatch.setattr(calibrate, "for_backend", fake)
    return calls


def test_without_the_variable_every_program_calibrates_and_keeps_nothing(
    measured: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(calcache.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    a = calcache.for_backend(DynamicProbe("fprobe"), 8192)
    b = calcache.for_backend(DynamicProbe("fprobe"), 8192)
    assert len(measured) == 2 and not a.reused and not b.reused
    assert a.calibrated_at and a.as_dict()["reused"] is False
    assert list(tmp_path.iterdir()) == []


def test_the_first_program_of_a_boot_calibrates_and_the_rest_reuse(
    measured: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"  # created on first use
    monkeypatch.setenv(calcache.ENV, str(cache))
    first = calcache.for_backend(DynamicProbe("fprobe"), 8192)
    again = calcache.for_backend(DynamicProbe("fprobe"), 8192)
    assert len(measured) == 1 and not first.reused and again.reused
    assert again.cost_ns == first.cost_ns and again.calibrated_at == first.calibrated_at
    assert again.as_dict()["reused"] is True
    # Another key (buffer size, backend) is measured on its own.
    calcache.for_backend(DynamicProbe("fprobe"), 256)
    calcache.for_backend(DynamicProbe("kprobe"), 8192)
    assert len(measured) == 3
    assert len(list(cache.iterdir())) == 3


def test_a_damaged_or_foreign_cache_file_is_measured_again(
    measured: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(calcache.ENV, str(tmp_path))
    calcache.for_backend(DynamicProbe("fprobe"), 8192)
    (path,) = tmp_path.iterdir()
    path.write_text("{not json")
    assert not calcache.for_backend(DynamicProbe("fprobe"), 8192).reused
    stored = json.loads(path.read_text())
    stored["key"]["kernel"] = ["other", "", ""]
    path.write_text(json.dumps(stored))
    assert not calcache.for_backend(DynamicProbe("fprobe"), 8192).reused
    assert len(measured) == 3


def test_an_unavailable_calibration_is_not_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(calcache.ENV, str(tmp_path))
    monkeypatch.setattr(
        calibrate, "for_backend", lambda *a, **k: calibrate.unavailable("fprobe", "no")
    )
    assert calcache.for_backend(DynamicProbe("fprobe")).unavailable == "no"
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_only_costs_the_reuse(
    measured: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(calcache.ENV, str(blocker / "cache"))  # cannot be created
    assert calcache.for_backend(DynamicProbe("fprobe")).firings == 3
    assert calcache.for_backend(DynamicProbe("fprobe")).firings == 3
    assert len(measured) == 2


def test_only_the_program_that_calibrates_times_after_firings(
    measured: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Arming the after-firing timer costs about a second under TCG: a
    program that reuses the boot's calibration does not, and takes the
    calibrating program's after-firing figures with it."""

    class Timer:
        def __init__(self, backend: object, buffer_kb: int = 256) -> None:
            self.durations = [7000, 8000, 9000]

    monkeypatch.setattr(calibrate, "AfterFirings", Timer)
    monkeypatch.setenv(calcache.ENV, str(tmp_path / "cache"))
    timer = calcache.after_firings(DynamicProbe("fprobe"), 8192)
    assert isinstance(timer, Timer)
    first = calcache.for_backend(DynamicProbe("fprobe"), 8192, after=timer)  # type: ignore[arg-type]
    assert first.after_firing_firings == 3 and first.after_firing_cost_ns == 8000
    assert calcache.after_firings(DynamicProbe("fprobe"), 8192) is None
    again = calcache.for_backend(DynamicProbe("fprobe"), 8192, after=None)
    assert again.reused and again.after_firing_cost_ns == 8000
    assert len(measured) == 1
