"""The warm-up rule (bench/warmup.py) as the sampling loop applies it: one
warm-up firing when the first took long, the most otherwise, exactly
--warmup when it is given; the measured count is the same either way."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rmapbench.bench import measure
from rmapbench.bench.warmup import ENOUGH_NS, Warmup
from rmapbench.triggers.base import Firing


class _Trigger:
    """Fires with a fixed cost; counts its firings."""

    def __init__(self, ns: int) -> None:
        self.ns = ns
        self.fired = 0

    def ready(self, addr: int) -> None:
        pass

    def align(self, drain: Callable[[], None]) -> None:
        drain()

    def fire(self, addr: int) -> Firing:
        self.fired += 1
        return Firing(syscall_ns=self.ns, done=True)


@pytest.fixture(autouse=True)
def _no_pagemap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure.mm, "pfn", lambda pid, addr: 1)


def _run(ns: int, warmup: Warmup, samples: int = 5) -> list[measure.Sample]:
    return measure.run(_Trigger(ns), 0, None, None, warmup, samples)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ns", "asked", "warm"),
    [
        (ENOUGH_NS, None, 1),  # a long first firing is warm-up enough
        (ENOUGH_NS - 1, None, 2),  # a short one: the most
        (10 * ENOUGH_NS, 2, 2),  # --warmup 2: exactly 2
        (10 * ENOUGH_NS, 0, 0),
    ],
)
def test_warmup_count(ns: int, asked: int | None, warm: int) -> None:
    got = _run(ns, Warmup.of(asked))
    assert [s.warmup for s in got] == [True] * warm + [False] * 5
    assert [s.ends_warmup for s in got] == [i == warm - 1 for i in range(warm + 5)]
    assert {s.planned for s in got} == {warm + 5}


def test_precision_stop_counts_only_measured() -> None:
    seen: list[int] = []

    def stop(samples: list[measure.Sample]) -> bool:
        seen.append(len(samples))
        return sum(not s.warmup for s in samples) == 3

    trigger = _Trigger(1_000)
    got = measure.run(trigger, 0, None, None, Warmup.of(None), 100, stop=stop)  # type: ignore[arg-type]
    assert len(got) == 5 and trigger.fired == 5
    assert seen == [3, 4, 5]  # asked after measured samples only


def test_entry() -> None:
    assert Warmup.of(3).entry() == {"most": 3, "enough_ms": None}
    assert Warmup.of(None).entry() == {"most": 2, "enough_ms": 50}
