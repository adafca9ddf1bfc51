"""--jobs planning (guest/jobs.py): CPU assignment, refusal above the
host's CPUs, and the guests' TAP merged as one serial run's."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from rmapbench.guest import jobs, suite
from rmapbench.ksft.cli import UsageError

PROGS = [Path(f"/s/rmap_{n}.py") for n in ("ksm", "anon", "file", "ksm_procs", "shmem")]


def test_plan_gives_each_guest_its_own_cpus() -> None:
    slots = jobs.plan(PROGS, 2, 1, available=[0, 1])
    assert [s.cpus for s in slots] == [(0,), (1,)]
    assert [p.name for p in slots[0].programs] == ["rmap_ksm.py", "rmap_file.py",
                                                   "rmap_shmem.py"]
    assert [p.name for p in slots[1].programs] == ["rmap_anon.py", "rmap_ksm_procs.py"]
    wide = jobs.plan(PROGS, 2, 2, available=[4, 5, 6, 7])
    assert [s.cpus for s in wide] == [(4, 5), (6, 7)]
    cpus = [c for s in jobs.plan(PROGS, 3, 1, available=range(8)) for c in s.cpus]
    assert len(cpus) == len(set(cpus)) == 3
    # More guests than programs: one guest per program.
    assert len(jobs.plan(PROGS[:1], 2, 1, available=[0, 1])) == 1
    assert sorted(p for s in jobs.plan(PROGS, 4, 1, available=range(4))
                  for p in s.programs) == sorted(PROGS)  # fmt: skip


def test_plan_refuses_more_than_the_host_has() -> None:
    with pytest.raises(UsageError, match=r"--jobs 3 needs 3 host CPUs .* has 2"):
        jobs.plan(PROGS, 3, 1, available=[0, 1])
    with pytest.raises(UsageError, match="needs 4 host CPUs"):
        jobs.plan(PROGS, 2, 2, available=[0, 1])
    with pytest.raises(UsageError):
        jobs.plan(PROGS, 0, 1, available=[0, 1])
    n = len(os.sched_getaffinity(0))
    with pytest.raises(UsageError):
        jobs.plan(PROGS, n + 1, 1)
    assert jobs.host_cpus_per_guest("tcg", 2) == 1 and jobs.host_cpus_per_guest("kvm", 2) == 2


def test_front_door_refuses_too_many_jobs_before_a_boot(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    n = len(os.sched_getaffinity(0))
    assert suite.main(["--vm", "--accel", "tcg", "--jobs", str(n + 1)]) == 2
    assert "host CPUs" in capsys.readouterr().err


def guest_output(names: list[str], rcs: list[int]) -> str:
    lines = ["TAP version 13", f"1..{len(names)}"]
    for n, (name, rc) in enumerate(zip(names, rcs, strict=True), 1):
        lines += ["# timeout set to 3600", f"# selftests: rmap: {name}", f"# # out of {name}"]
        lines.append(f"{'ok' if rc == 0 else 'not ok'} {n} selftests: rmap: {name}"
                     + ("" if rc == 0 else " # exit=1"))
    return "\n".join(lines) + "\n"


def test_merge_is_a_serial_runs_tap() -> None:
    slots = jobs.plan(PROGS, 2, 1, available=[0, 1])
    outs = [guest_output([p.name for p in s.programs], [0] * len(s.programs)) for s in slots]
    outs[1] = guest_output([p.name for p in slots[1].programs], [1, 0])
    merged = jobs.merge(PROGS, outs).splitlines()
    assert merged[:2] == ["TAP version 13", "1..5"]
    results = [line for line in merged if line.startswith(("ok", "not ok"))]
    assert results == [
        "ok 1 selftests: rmap: rmap_ksm.py",
        "not ok 2 selftests: rmap: rmap_anon.py # exit=1",
        "ok 3 selftests: rmap: rmap_file.py",
        "ok 4 selftests: rmap: rmap_ksm_procs.py",
        "ok 5 selftests: rmap: rmap_shmem.py",
    ]
    i = merged.index("# selftests: rmap: rmap_anon.py")
    assert merged[i - 1] == "# timeout set to 3600" and merged[i + 1] == "# # out of rmap_anon.py"
    # A program whose guest gave nothing is a failure in its place.
    lost = jobs.merge(PROGS, outs[:1]).splitlines()
    assert "not ok 2 selftests: rmap: rmap_anon.py # no result from its guest" in lost


def test_run_parallel_pins_each_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    pins: list[tuple[int, ...]] = []
    monkeypatch.setattr(jobs.os, "sched_setaffinity", lambda pid, cpus: pins.append(tuple(cpus)))
    slots = jobs.plan(PROGS, 2, 1, available=[0, 1])

    def one(slot: jobs.Slot, i: int, stream: io.StringIO) -> int:
        stream.write(guest_output([p.name for p in slot.programs], [0] * len(slot.programs)))
        if i == 1:
            raise RuntimeError("guest died")
        return 0

    out = io.StringIO()
    res = jobs.run_parallel(slots, one, PROGS, out)  # type: ignore[arg-type]
    assert sorted(pins) == [(0,), (1,)]
    assert res[0] == 0 and isinstance(res[1], RuntimeError)
    assert out.getvalue().count("ok ") == 5
