"""The sampling loop's progress lines: out of the most samples the run can
take, which with --precision is --max-samples, not --samples."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from rmapbench.bench import measure, sampling
from rmapbench.triggers.base import Firing


def _plan(lines: list[str]) -> Any:
    return SimpleNamespace(
        opts=SimpleNamespace(warmup=2, samples=30, verbose=False),
        ktap=SimpleNamespace(diag=lines.append),
        trigger=SimpleNamespace(cost_name="move_pages"),
    )


def _sample(i: int) -> measure.Sample:
    return measure.Sample(i, i < 2, Firing(syscall_ns=1_000_000, done=True), 1, 2)


def test_a_fixed_count_counts_to_warmup_plus_samples() -> None:
    lines: list[str] = []
    report = sampling.progress(_plan(lines))
    for i in range(32):
        report(_sample(i))
    assert lines[-1].startswith("sample 32/32: move_pages 1 ms")


def test_precision_counts_to_its_maximum() -> None:
    lines: list[str] = []
    report = sampling.progress(_plan(lines), 300)
    for i in range(302):
        report(_sample(i))
    assert lines[0].startswith("sample 30/302") and lines[-1].startswith("sample 302/302")
