"""Faults in a guest (issue #15): test programs and the runner killed with
SIGKILL at several points, then the next run of an entry point replays
what they left, says so, and every knob reads as before; a guest that
panics or hangs is status 3 within the timeout, its console log kept.

One boot runs every kill in turn (tests/guest/scripts/snapshot.py before
and after each); the panic and the hang are a boot each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rmapbench.ksft.status import EXIT_GUEST

pytestmark = pytest.mark.guest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
SNAPSHOT, LEFTOVERS = SCRIPTS / "snapshot.py", SCRIPTS / "leftovers.py"
KILL_AT = SCRIPTS / "kill_at.py"
# A KSM case sets ksmd's sleep_millisecs to 0 to merge, after arming the
# tracing, and keeps it until the end: the journal undoes the newest change
# first, so the knob reading its old value again means the teardown's
# restore has begun and the tracing instance is still there (over a second
# under TCG). (Waiting for run=1 in the drain raced: the drain can be done
# in 10 ms.)
TEARDOWN_KNOB = "/sys/kernel/mm/ksm/sleep_millisecs"
# Knobs the counters of KSM's own work may change legitimately.
COUNTERS = {"ksm/pages_shared", "ksm/pages_sharing"}

# name -> (what is started, the line or state to wait for, the next entry point)
FAULTS = {
    "prog_sampling": ("./rmap_ksm.py --pages 400 --samples 100000 --results $d/prog_sampling.res",
                      "line 'ksm: merged in'", "./rmap_ksm.py --case anon"),
    "prog_before_arming": ("./rmap_anon.py --pages 200 --samples 100000",
                           # A runner whose one program is not the suite's: it
                           # replays and runs nothing of the suite's (a --case
                           # selecting none of its programs is refused unreplayed).
                           "now '# kernel '", "{py} -m rmapbench.ksft.runner /bin/true"),
    "prog_damon": ("./rmap_anon.py --trigger damon --pages 200 --samples 100000",
                   "line '# backend:'",
                   f"{ROOT}/run_tests.sh --case anon -- --pages 100 --samples 2"),
    "prog_teardown": ("./rmap_ksm.py --pages 400 --samples 2 --warmup 0",
                      "restoring after 'ksm: merged in'", "./rmap_anon.py --case ksm"),
}


# The runner killed with SIGKILL at the same points: its program must
# follow it (PR_SET_PDEATHSIG), restore everything and leave no process.
# name -> (the runner's programs and options, the line or state to wait for)
RUNNER_FAULTS = {
    "runner_before_arming": ("./rmap_anon.py -- --pages 200 --samples 100000", "now '# kernel '"),
    "runner_sampling": ("./rmap_ksm.py -- --pages 400 --samples 100000 "
                        "--results $d/runner_sampling.res", "line 'ksm: merged in'"),
    "runner_teardown": ("./rmap_ksm.py -- --pages 400 --samples 2 --warmup 0",
                        "restoring after 'ksm: merged in'"),
    # Two programs: the first's probe events are in the runner's journal
    # (machine/shared_probes.py), and the program, orphaned, removes them.
    # fprobe by name: auto's bpf keeps no events between programs.
    "runner_shared": ("./rmap_anon.py ./rmap_anon_fork.py -- --backend fprobe --pages 200 "
                      "--samples 100000", "line '# backend:'"),
}


def _runner_kill_script(name: str, start: str, wait: str, py: str) -> str:
    prog = start.split()[0].removeprefix("./")
    if wait.startswith(("line ", "now ")):
        pattern = wait.split(" ", 1)[1][1:-1]
        settle = "; sleep 2" if wait.startswith("line ") else ""
        kill = [f"wait_line $d/{name}.out '{pattern}'{settle}",
                f"{py} {SNAPSHOT} > $d/{name}.during.json", "kill -KILL $p"]
    else:  # in the teardown: the journal restoring, the tracing still set up
        kill = [f"{py} {KILL_AT} $p $d/{name}.out 'ksm: merged in' {TEARDOWN_KNOB} back"
                f" > $d/{name}.kill", f"{py} {SNAPSHOT} > $d/{name}.during.json"]
    lines = "\n".join(kill)
    return f"""
{py} -m rmapbench.ksft.runner {start} > $d/{name}.out 2>&1 &
p=$!
{lines}
wait $p
i=0; while [ -n "$({py} {LEFTOVERS} {prog})" ] && [ $i -lt 600 ]; do
  sleep 0.2; i=$((i+1)); done
{py} {LEFTOVERS} {prog} > $d/{name}.leftovers
{py} {SNAPSHOT} > $d/{name}.killed.json
"""


def _kill_script(name: str, start: str, wait: str, nxt: str, py: str) -> str:
    if wait.startswith(("line ", "now ")):
        pattern = wait.split(" ", 1)[1][1:-1]
        waiting = f"wait_line $d/{name}.out '{pattern}'" + ("; sleep 2" if wait[0] == "l" else "")
        kill = "kill -KILL $p"
    else:  # in the teardown: the journal restoring, the tracing still set up
        waiting = ""
        kill = ""
    if not kill:
        kill_at = f"{py} {KILL_AT} $p $d/{name}.out 'ksm: merged in' {TEARDOWN_KNOB} back"
        return f"""
{start} > $d/{name}.out 2>&1 &
p=$!
{kill_at} > $d/{name}.kill
wait $p; echo $? > $d/{name}.rc
{py} {SNAPSHOT} > $d/{name}.during.json
cp $d/{name}.during.json $d/{name}.killed.json
{nxt.format(py=py)} > $d/{name}.next.out 2>&1; echo $? > $d/{name}.next.rc
{py} {SNAPSHOT} > $d/{name}.after.json
"""
    return f"""
{start} > $d/{name}.out 2>&1 &
p=$!
{waiting}
{py} {SNAPSHOT} > $d/{name}.during.json
{kill}; wait $p; echo $? > $d/{name}.rc
{py} {SNAPSHOT} > $d/{name}.killed.json
{nxt.format(py=py)} > $d/{name}.next.out 2>&1; echo $? > $d/{name}.next.rc
{py} {SNAPSHOT} > $d/{name}.after.json
"""


@pytest.fixture(scope="module")
def faults(guest: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, Any]:
    share = tmp_path_factory.mktemp("faults")
    py = sys.executable
    kills = "".join(_kill_script(n, *f, py) for n, f in FAULTS.items())
    kills += "".join(_runner_kill_script(n, *f, py) for n, f in RUNNER_FAULTS.items())
    script = f"""set -u
d={share}
wait_line() {{ i=0; until grep -q "$2" "$1" 2>/dev/null; do
  sleep 0.1; i=$((i+1)); [ $i -lt 3000 ] || return 1; done; }}
{py} {SNAPSHOT} > $d/before.json
{kills}
"""
    guest(script, share, timeout=1500)

    def snap(name: str) -> dict[str, str]:
        data: dict[str, str] = json.loads((share / f"{name}.json").read_text())
        return data

    return {"share": share, "snap": snap,
            "text": lambda name: (share / name).read_text()}


def _same(a: dict[str, str], b: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {k: (a[k], b.get(k, "")) for k in a if k not in COUNTERS and a[k] != b.get(k)}


@pytest.mark.parametrize("name", list(FAULTS))
def test_next_run_replays_a_killed_program(faults: dict[str, Any], name: str) -> None:
    before, during = faults["snap"]("before"), faults["snap"](f"{name}.during")
    killed, after = faults["snap"](f"{name}.killed"), faults["snap"](f"{name}.after")
    print(f"{name}: during {json.dumps(_same(before, during))}")
    print(f"{name}: after the kill {json.dumps(_same(before, killed))}")
    print(f"{name}: after the next run {json.dumps(_same(before, after))}")
    assert faults["text"](f"{name}.rc").strip() == "137"
    nxt = faults["text"](f"{name}.next.out")
    if name != "prog_before_arming":  # may be killed before its first change
        assert _same(before, killed), "the kill left nothing to replay: the fault came too late"
    if killed["journals"]:
        assert "replayed the journal of dead run" in nxt, nxt
    assert "Traceback" not in nxt
    assert _same(before, after) == {}
    assert "journal-" not in after["journals"]


def test_a_killed_programs_results_say_so(faults: dict[str, Any]) -> None:
    doc = json.loads((faults["share"] / "prog_sampling.res" / "rmap_ksm.json").read_text())
    assert doc["status"] == "running"
    out = subprocess.run([sys.executable, "-m", "rmapbench", "summary",
                          str(faults["share"] / "prog_sampling.res")],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "tools/testing/rmap")})
    assert out.returncode == 8 and "did not finish" in out.stderr, out.stderr


@pytest.mark.parametrize("name", list(RUNNER_FAULTS))
def test_a_killed_runner_takes_its_program_along(faults: dict[str, Any], name: str) -> None:
    before, during = faults["snap"]("before"), faults["snap"](f"{name}.during")
    killed = faults["snap"](f"{name}.killed")
    print(f"{name}: during {json.dumps(_same(before, during))}")
    print(f"{name}: after {json.dumps(_same(before, killed))}")
    if name in ("runner_sampling", "runner_shared"):
        assert _same(before, during)  # it was killed with something to restore
    if name == "runner_shared":  # the kept events and instance were there
        assert "-shared.json" in during["journals"], during["journals"]
        assert "-kept" in during["tracing/instances"], during["tracing/instances"]
    assert faults["text"](f"{name}.leftovers") == ""
    # The program got SIGTERM when the runner died, and restored everything.
    assert _same(before, killed) == {} and "journal-" not in killed["journals"]
    if name == "runner_sampling":
        res = faults["share"] / "runner_sampling.res" / "rmap_ksm.json"
        doc = json.loads(res.read_text())
        assert doc["status"] == "fail" and doc["interrupted"] == "SIGTERM"


def _vm(tmp_path: Path, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str],
                                                           float]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rmapbench.guest.vm", "--nodes", "1", "--accel", "tcg",
         "--console-log", str(tmp_path / "console.log"), "--share", str(tmp_path), *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)
    return proc, time.monotonic() - t0


def test_guest_panic_is_status_3_with_the_console_log(
    stock_kernel: object, tmp_path: Path
) -> None:
    proc, took = _vm(tmp_path, "--timeout", "120", "--append", "rdinit=/nonexistent",
                     "--", "true", timeout=300)
    assert proc.returncode == EXIT_GUEST, proc.stderr
    assert "Traceback" not in proc.stderr and took < 200
    log = (tmp_path / "console.log").read_text()
    assert "Kernel panic" in log or "No working init" in log or "Unable to mount" in log


def test_guest_hang_is_status_3_within_the_timeout(stock_kernel: object, tmp_path: Path) -> None:
    proc, took = _vm(tmp_path, "--timeout", "40", "--", "sleep", "100000", timeout=300)
    assert proc.returncode == EXIT_GUEST, proc.stderr
    assert "Traceback" not in proc.stderr and took < 40 + 60, took
    assert (tmp_path / "console.log").is_file()
    assert str(tmp_path / "console.log") in proc.stderr or "console" in proc.stderr
