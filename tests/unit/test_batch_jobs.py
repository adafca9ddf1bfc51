"""--jobs for sweep and ab (guest/batch.py on guest/jobs.py's pool): boots
N at a time on their own host CPUs, refused above what the host has, and a
result set laid out as a serial run's (no guest)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rmapbench import __main__ as cli
from rmapbench.analysis import ab, sweep
from rmapbench.guest import batch, config, jobs, vm
from rmapbench.guest.kernel import KernelImage
from rmapbench.ksft.status import EXIT_GUEST, EXIT_USAGE

PROGS = batch.Selection((batch.SUITE_DIR / "rmap_ksm.py", batch.SUITE_DIR / "rmap_anon.py"))


def _kernel(name: str) -> KernelImage:
    return KernelImage(Path(f"/boot/{name}"), name, None, None)


def test_pool_runs_at_most_one_task_per_cpu_set_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    pins: dict[int, tuple[int, ...]] = {}
    monkeypatch.setattr(jobs.os, "sched_setaffinity",
                        lambda pid, cpus: pins.__setitem__(threading.get_ident(), tuple(cpus)))
    lock = threading.Lock()
    running, most = 0, 0
    where: list[tuple[int, ...]] = []

    def task(i: int) -> Any:
        def run() -> int:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
                where.append(pins[threading.get_ident()])
            time.sleep(0.02)
            with lock:
                running -= 1
            return i * 10

        return run

    res = jobs.run_pool([(0,), (1,)], [task(i) for i in range(5)])
    assert res == [0, 10, 20, 30, 40]  # in the tasks' order
    assert most == 2 and set(where) == {(0,), (1,)}
    # Fewer tasks than CPU sets: one worker per task.
    assert jobs.run_pool([(0,), (1,), (2,)], [task(7)]) == [70]
    assert jobs.run_pool([(0,)], []) == []


def test_pool_stops_starting_tasks_after_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs.os, "sched_setaffinity", lambda pid, cpus: None)
    started: list[int] = []

    def task(i: int) -> Any:
        def run() -> int:
            started.append(i)
            if i == 0:
                raise RuntimeError("guest died")
            return i

        return run

    res = jobs.run_pool([(0,)], [task(i) for i in range(3)], stop_on_error=True)
    assert isinstance(res[0], RuntimeError) and started == [0]
    assert all(isinstance(r, jobs.NotStarted) for r in res[1:])
    res = jobs.run_pool([(0,)], [task(i) for i in range(3)])
    assert isinstance(res[0], RuntimeError) and res[1:] == [1, 2]


def test_sweep_plan_deals_points_over_boots_in_grid_order() -> None:
    pts = sweep.points(sweep.parse_vary(["pages=100,200,300"]))
    serial = sweep.plan(["6.12"], [_kernel("k")], pts, PROGS, ["--samples", "3"])
    boots, entries = sweep.plan(["6.12"], [_kernel("k")], pts, PROGS, ["--samples", "3"], 2)
    assert len(serial[0]) == 1 and len(boots) == 2
    # The same points, directories and arguments, in the same order.
    strip = [{k: v for k, v in e.items() if k != "boot"} for e in entries]
    assert strip == [{k: v for k, v in e.items() if k != "boot"} for e in serial[1]]
    assert [e["boot"] for e in entries] == [0, 1, 0]
    # Every program of a point in the point's boot.
    assert [(j.directory, j.program.name) for j in boots[1].jobs] == [
        ("p001-pages200", "rmap_ksm.py"), ("p001-pages200", "rmap_anon.py")]  # fmt: skip
    assert sorted(j.directory for b in boots for j in b.jobs) == sorted(
        j.directory for j in serial[0][0].jobs
    )
    # Two kernels fill two guests without splitting; one point is one boot.
    two, _ = sweep.plan(["a", "b"], [_kernel("a"), _kernel("b")], pts, PROGS, [], 2)
    assert [b.kernel.release for b in two] == ["a", "b"]
    assert len(sweep.plan(["6.12"], [_kernel("k")], pts[:1], PROGS, [], 2)[0]) == 1
    assert batch.boots_per_kernel(1, 1, 5) == 1 and batch.boots_per_kernel(3, 2, 5) == 2


def _guest(monkeypatch: pytest.MonkeyPatch, fail: str = "") -> list[str]:
    """run_boot replaced: each job "passes" at once; the boot whose first
    directory is `fail` raises GuestError. Returns the boots started."""
    monkeypatch.setattr(jobs.os, "sched_setaffinity", lambda pid, cpus: None)
    started: list[str] = []

    def run_boot(boot: batch.Boot, share: Path, g: config.GuestOptions, log_name: str,
                 first: int, on_job: Any) -> vm.GuestResult:  # fmt: skip
        started.append(log_name)
        if boot.jobs[0].directory == fail:
            raise vm.GuestError(f"guest panicked (see {share / log_name})")
        for i, job in enumerate(boot.jobs, first):
            (share / job.directory).mkdir(exist_ok=True)
            job.status = 0
            on_job(i, 0)
        return vm.GuestResult(0, "tcg", 1.0, 2.0 + first)

    monkeypatch.setattr(batch, "run_boot", run_boot)
    return started


def test_run_boots_in_parallel_records_as_a_serial_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two host CPUs")
    _guest(monkeypatch)
    pts = sweep.points(sweep.parse_vary(["pages=100,200,300"]))
    g = config.GuestOptions(accel="tcg")
    indexes = []
    for n in (1, 2):
        boots, entries = sweep.plan(["6.12"], [_kernel("k")], pts, PROGS, [], n)
        index: dict[str, Any] = {"boots": []}
        share = tmp_path / f"j{n}"
        share.mkdir()
        batch.run_boots("sweep", boots, share, g, entries, index, lambda b: f"c{b}", n)
        indexes.append(index)
    serial, parallel = indexes
    assert [p["dir"] for p in parallel["points"]] == [p["dir"] for p in serial["points"]]
    assert [p["status"] for p in parallel["points"]] == [p["status"] for p in serial["points"]]
    assert parallel["points"][0]["status"] == {"rmap_ksm": 0, "rmap_anon": 0}
    # One entry per boot, in the boots' order.
    assert [b["total_seconds"] for b in parallel["boots"]] == [2.0, 6.0]


def test_a_failed_guest_names_the_partial_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = _guest(monkeypatch, fail="r1-A")
    k = {"A": _kernel("a"), "B": _kernel("b")}
    ksm = batch.Selection((batch.SUITE_DIR / "rmap_ksm.py",))
    boots, entries = ab.plan(k, {"A": [], "B": []}, ksm, 2, one_boot_per_round=False)
    with pytest.raises(SystemExit) as e:
        batch.run_boots("ab", boots, tmp_path, config.GuestOptions(accel="tcg"), entries,
                        {"boots": []}, lambda n: f"console-{n}.log", 1)  # fmt: skip
    assert e.value.code == EXIT_GUEST and started == ["console-0.log"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"partial results in {tmp_path}" in err[0]


@pytest.mark.parametrize("command", [
    ["sweep", "--vary", "pages=100,200"],
    ["ab", "--set", "pages=5"],
])  # fmt: skip
def test_too_many_jobs_is_refused_before_a_boot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    n = len(os.sched_getaffinity(0))
    out = tmp_path / "out"
    argv = [*command, "--accel", "tcg", "--jobs", str(n + 1), "-o", str(out), "--", "anon"]
    assert cli.main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--jobs {n + 1} needs {n + 1} host CPUs" in err[0], err
    assert not out.exists()
    assert cli.main([*command, "--jobs", "0", "-o", str(out), "--", "anon"]) == EXIT_USAGE
    assert "--jobs" in capsys.readouterr().err
