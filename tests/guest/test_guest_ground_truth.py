"""Issue #12 against the ground truth: a kernel carrying both proposed rmap
tracepoint forms (scripts/ground-truth/build.sh, docs/ground-truth.md).

Runs only when RMAPBENCH_GROUND_TRUTH_KERNEL names that kernel's bzImage;
CI builds no kernel, so there it skips. On one scenario per case, `--backend
all` measures the v4 event's in-kernel duration_ns first and then the
probes: fprobe's corrected p50 must lie within TOLERANCE of it. Then the
start/end form must be paired in the kernel (hist trigger and synthetic
event, 1 ns), find the target by its raw folio, and be calibrated with the
same pairing on the getppid system call events."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from rmapbench.guest import kernel, vm

pytestmark = pytest.mark.guest

SUITE = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"
ENV = "RMAPBENCH_GROUND_TRUTH_KERNEL"
# The target for fprobe/kprobe corrected p50 against duration_ns.
TOLERANCE = 0.25
CASES = ("anon", "file")


@pytest.fixture(scope="module")
def truth_kernel() -> kernel.KernelImage:
    image = os.environ.get(ENV)
    if not image:
        pytest.skip(f"{ENV}=PATH/bzImage not set (scripts/ground-truth/build.sh builds one)")
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 not installed")
    return kernel.kernel_from_image(Path(image))


@pytest.fixture(scope="module")
def runs(truth_kernel: kernel.KernelImage, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Path, Path, str]:  # fmt: skip
    share = tmp_path_factory.mktemp("truth")
    every, start_end = share / "all", share / "start-end"
    py = sys.executable
    common = "--pages 4000 --samples 12"
    script = " ; ".join(
        [f"mkdir -p {every} {start_end}"]
        + [f"{py} ./rmap_{c}.py {common} --backend all --results {every}" for c in CASES]
        + [
            f"{py} ./rmap_{c}.py {common} --backend tracepoint --tracepoint-form start-end "
            f"--results {start_end}"
            for c in ("anon", "file", "ksm")
        ]
    )
    out = share / "stdout.txt"
    with open(out, "w") as stream:
        vm.run_in_guest(
            truth_kernel, ["sh", "-c", script], nodes=2, cpus=2, memory="2G", accel="auto",
            timeout=3000, share_dir=share, cwd=SUITE, console_log=share / "console.log",
            stream=stream, kernel_args=("tsc=reliable",),  # built in since; see ground-truth.md
        )  # fmt: skip
    return every, start_end, out.read_text()


def _doc(directory: Path, program: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / f"{program}.json").read_text())
    return data


def _corrected_and_truth(runs: tuple[Path, Path, str], case: str, name: str
                         ) -> tuple[int, int]:  # fmt: skip
    """The backend's corrected p50 in the case's --backend all run and the
    v4 event's p50 of the same scenario, each checked to be measured."""
    every, _, out = runs
    rounds = _doc(every, f"rmap_{case}")["scenarios"][0]["backends"]
    entries = {e["backend"]["name"]: e for e in rounds}
    truth = entries["tracepoint"]
    assert "rmap:rmap_walk (v4)" in truth["backend"]["detail"], out
    reference = truth["walks"]["p50_ns"]
    assert reference > 0, truth
    probe = entries[name]
    assert probe["probe_cost"]["cost_ns"] > 0, probe
    return probe["walks_corrected"]["p50_ns"], reference


# Measured under TCG: 2.5-3.4x, the probes' cost after a walk that flushed
# the TLB being far above their calibrated cost (docs/ground-truth.md).
@pytest.mark.xfail(reason="issue #12: the calibration misses walk-dependent probe cost under TCG")
@pytest.mark.parametrize("case", CASES)
def test_corrected_fprobe_matches_the_in_kernel_duration(
    runs: tuple[Path, Path, str], case: str
) -> None:
    corrected, reference = _corrected_and_truth(runs, case, "fprobe")
    assert abs(corrected / reference - 1) <= TOLERANCE, (case, corrected, reference)


# Measured under TCG (docs/ground-truth.md): over 20 interleaved runs per
# side, a migration's two walks 0.93x (anon) and 1.02x (file) of v4, and
# per caller 0.85-1.47x; one run's pooled p50, which falls between the two
# callers' walks, moves 2-3x from scenario to scenario.
@pytest.mark.xfail(reason="issue #12: one run of bpf is inside a 2-3x run-to-run spread")
@pytest.mark.parametrize("case", CASES)
def test_corrected_bpf_matches_the_in_kernel_duration(
    runs: tuple[Path, Path, str], case: str
) -> None:
    corrected, reference = _corrected_and_truth(runs, case, "bpf")
    assert abs(corrected / reference - 1) <= TOLERANCE, (case, corrected, reference)


@pytest.mark.parametrize("case", CASES)
def test_every_backend_timed_the_target_and_was_calibrated(
    runs: tuple[Path, Path, str], case: str
) -> None:
    """What holds today: on the ground-truth kernel every probe backend
    times the target, split by caller (rmap_walk() is not inlined there),
    with a calibrated cost above 0, and stays an upper bound of the truth."""
    every, _, out = runs
    rounds = _doc(every, f"rmap_{case}")["scenarios"][0]["backends"]
    entries = {e["backend"]["name"]: e for e in rounds}
    reference = entries["tracepoint"]["walks"]["p50_ns"]
    for name in ("fprobe", "kprobe", "fgraph", "bpf"):
        e = entries[name]
        assert e["walks"]["count"] >= 2 * 12, (name, out)
        callers = {c["caller"] for c in e["walks_by_caller"]}
        assert callers == {"try_to_migrate", "remove_migration_ptes"}, (name, callers)
        assert e["probe_cost"]["cost_ns"] > 0, (name, e["probe_cost"])
        assert e["walks_corrected"]["p50_ns"] >= 0.75 * reference, (name, reference)


@pytest.mark.parametrize("case", ["anon", "file", "ksm"])
def test_start_end_form_pairs_in_the_kernel(runs: tuple[Path, Path, str], case: str) -> None:
    _, start_end, out = runs
    doc = _doc(start_end, f"rmap_{case}")
    backend = doc["backend"]
    assert backend["name"] == "tracepoint", out
    assert "paired in kernel per task, checked by raw folio and rwc" in backend["detail"]
    assert "raw folio" in backend["detail"] and backend["resolution_ns"] == 1, backend
    # Every sample caught a walk of the target, found by its folio.
    assert doc["status"] == "pass", out
    scenario = doc["scenarios"][0]
    assert scenario["target_identified_by"] == "folio", scenario["target_identified_by"]
    assert scenario["walks"]["count"] >= 2 * 12, scenario["walks"]


@pytest.mark.parametrize("case", ["anon", "file", "ksm"])
def test_start_end_form_is_calibrated(runs: tuple[Path, Path, str], case: str) -> None:
    """The start/end form's cost inside its window, timed with its pairing
    on syscalls:sys_enter_getppid/sys_exit_getppid (the kernel has
    CONFIG_FTRACE_SYSCALLS): measured, positive, a few microseconds under
    TCG, and below every caller's walk, which is corrected by it."""
    _, start_end, out = runs
    scenario = _doc(start_end, f"rmap_{case}")["scenarios"][0]
    cost = scenario["probe_cost"]
    assert cost["unavailable"] is None, (cost, out)
    assert cost["function"] == "syscalls:sys_enter_getppid/sys_exit_getppid", cost
    assert cost["firings"] >= 100 and cost["cost_ns"] > 0, cost
    assert cost["uncertainty_ns"] < cost["cost_ns"], cost
    # getppid()'s own share of the interval, bounded by an unprobed call.
    assert cost["body_bound_ns"] > 0, cost
    callers = {c["caller"]: c for c in scenario["walks_by_caller"]}
    assert set(callers) == {"try_to_migrate", "remove_migration_ptes"}, callers
    for name, c in callers.items():
        assert cost["cost_ns"] < c["walks"]["p50_ns"], (name, cost["cost_ns"], c["walks"])
        # Every walk is above the cost, so the median moves by it (+-1 ns
        # of rounding: an even count's median is the mean of two).
        shifted = c["walks"]["p50_ns"] - cost["cost_ns"]
        assert abs(c["corrected"]["p50_ns"] - shifted) <= 1, (name, c)
    assert scenario["walks_corrected"]["probe_cost_ns"] == cost["cost_ns"]
