"""Guest tests of the multi-process cases: one boot of Debian's stock 6.12
kernel (TCG here) runs all five small, plus ksm-procs with fewer processes,
runs sent SIGTERM while measuring (anon-fork's test process alone, and
ksm-procs's whole process group through timeout(1)), and a refused option;
then checks walks, the mappings each scenario built, verification after
every trigger, and that no child process outlived its test."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rmapbench.ksft import results

pytestmark = pytest.mark.guest

LEFTOVERS = Path(__file__).resolve().parent / "scripts" / "leftovers.py"
PROCS, WIDTH, DEPTH = 8, 2, 2
SMALL = ["--pages", "500", "--samples", "3", "--warmup", "1", "--procs", str(PROCS),
         "--fork-width", str(WIDTH), "--fork-depth", str(DEPTH)]
TREE = 1 + WIDTH + WIDTH**2
# program -> (scenario, walked page type, processes mapping the target)
CASES = {
    "rmap_ksm_procs": ("ksm-procs", "ksm", PROCS),
    "rmap_ksm_fork": ("ksm-fork", "ksm", TREE),
    "rmap_anon_fork": ("anon-fork", "anon", TREE),
    "rmap_file_mappers": ("file-mappers", "file", PROCS),
    "rmap_shmem": ("shmem", "file", PROCS),
}


@pytest.fixture(scope="module")
def procs_run(guest: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Any]:
    share = tmp_path_factory.mktemp("guest-procs")
    py = sys.executable
    progs = " ".join(f"./{p}.py" for p in CASES)
    names = " ".join(f"{p}.py" for p in CASES)
    small = " ".join(SMALL)
    script = f"""set -u
d={share}
{py} -m rmapbench.ksft.runner {progs} -- {small} --results $d/res > $d/tap.txt; echo $? > $d/rc
./rmap_ksm_procs.py {small} --procs 2 --results $d/res2 > $d/p2.txt; echo $? >> $d/p2.txt
# SIGTERM once the fork tree is built and measuring (Python's start-up over
# 9p under a loaded TCG takes long and varies, so no fixed timeout); only
# the test process gets it, so its teardown must kill and reap the tree.
PYTHONUNBUFFERED=1 ./rmap_anon_fork.py {small} --samples 100000 -v > $d/interrupted.txt 2>&1 &
pid=$!
i=0
until grep -q "sample 2/" $d/interrupted.txt || [ $i -ge 600 ]; do sleep 0.5; i=$((i + 1)); done
kill -TERM $pid; wait $pid; echo $? > $d/interrupted.rc
# The same through timeout(1), which passes SIGTERM to the whole process
# group: the children die at once, the test must still reap them and wait
# for ksmd to drop their rmap_items.
PYTHONUNBUFFERED=1 timeout --preserve-status -s TERM 900 ./rmap_ksm_procs.py {small} --procs 4 \\
    --samples 100000 -v > $d/timeout.txt 2>&1 &
pid=$!
i=0
until grep -q "sample 2/" $d/timeout.txt || [ $i -ge 600 ]; do sleep 0.5; i=$((i + 1)); done
kill -TERM $pid; wait $pid; echo $? > $d/timeout.rc
cat /sys/kernel/mm/ksm/pages_shared /sys/kernel/mm/ksm/pages_sharing > $d/ksm_after.txt
./rmap_ksm_procs.py --procs 1 > $d/refused.txt 2>&1; echo $? >> $d/refused.txt
sleep 1
{py} {LEFTOVERS} {names} > $d/leftovers.txt
"""
    guest(script, share)
    return {
        "tap": (share / "tap.txt").read_text(),
        "rc": int((share / "rc").read_text()),
        "docs": {d["program"]: d for d in results.load_results(share / "res")},
        "p2": {d["program"]: d for d in results.load_results(share / "res2")},
        **{name: (share / f"{name}.txt").read_text()
           for name in ("interrupted", "timeout", "refused", "leftovers", "ksm_after")},
        "p2_tap": (share / "p2.txt").read_text(),
        "interrupted_rc": int((share / "interrupted.rc").read_text()),
        "timeout_rc": int((share / "timeout.rc").read_text()),
    }


def test_every_case_passes(procs_run: dict[str, Any]) -> None:
    assert procs_run["rc"] == 0, procs_run["tap"]
    for program in CASES:
        assert f"ok {list(CASES).index(program) + 1} selftests: rmap: {program}.py" in (
            procs_run["tap"]), procs_run["tap"]
        assert procs_run["docs"][program]["status"] == "pass", procs_run["tap"]


@pytest.mark.parametrize("program", CASES)
def test_walks_and_mappings(procs_run: dict[str, Any], program: str) -> None:
    name, page_type, processes = CASES[program]
    doc = procs_run["docs"][program]
    sc = doc["scenarios"][0]
    assert sc["name"] == name
    kinds = {(k["page_type"], k["folio"]) for k in sc["walks_by_kind"]}
    assert (page_type, "target") in kinds
    assert not {k for k in kinds if k[1] == "target" and k[0] != page_type}
    setup = sc["setup"]
    assert setup["target_page_type"] == page_type
    assert setup["processes"] == processes
    assert setup["target_processes"] == processes
    per_process = setup["target_sharers_here"] if name == "ksm-fork" else 1
    assert sc["verified"]["mappings_per_sample"] == processes * per_process
    assert sc["verified"]["processes"] == processes
    assert sc["verified"]["failed"] == 0
    trials = sc["trials"]
    assert len(trials) == 4
    for t in trials:
        assert t["migrated"] and t["verified"] and not t["problems"], t
        assert t["walk_ns"], t


def test_ksm_fork_shares_the_merged_page_with_the_tree(procs_run: dict[str, Any]) -> None:
    setup = procs_run["docs"]["rmap_ksm_fork"]["scenarios"][0]["setup"]
    assert setup["target_sharers_here"] >= 2
    assert setup["fork_tree"] == {"width": WIDTH, "depth": DEPTH, "processes": TREE}
    assert setup["target_mapcount"] == TREE * setup["target_sharers_here"]


def test_ksm_procs_walk_grows_with_processes(procs_run: dict[str, Any]) -> None:
    two = procs_run["p2"]["rmap_ksm_procs"]["scenarios"][0]
    eight = procs_run["docs"]["rmap_ksm_procs"]["scenarios"][0]
    assert procs_run["p2"]["rmap_ksm_procs"]["status"] == "pass", procs_run["p2_tap"]
    assert two["setup"]["target_processes"] == 2
    assert eight["walks"]["p50_ns"] > two["walks"]["p50_ns"], (eight["walks"], two["walks"])


def test_sigterm_mid_run_reaps_the_tree(procs_run: dict[str, Any]) -> None:
    out = procs_run["interrupted"]
    assert procs_run["interrupted_rc"] == 128 + 15, out
    assert "not ok 1 rmap_anon_fork.walk_latency" in out and "interrupted by SIGTERM" in out


def test_timeout_sigterm_to_the_group_restores_ksm(procs_run: dict[str, Any]) -> None:
    out = procs_run["timeout"]
    assert procs_run["timeout_rc"] == 128 + 15, out
    assert "not ok 1 rmap_ksm_procs.walk_latency" in out and "interrupted by SIGTERM" in out
    # Every process's rmap_items dropped: no KSM page is left behind.
    assert procs_run["ksm_after"].split() == ["0", "0"], procs_run["ksm_after"]


def test_no_child_outlives_its_test(procs_run: dict[str, Any]) -> None:
    assert procs_run["leftovers"] == ""


def test_ksm_procs_refuses_one_process(procs_run: dict[str, Any]) -> None:
    lines = procs_run["refused"].splitlines()
    assert len(lines) == 2 and lines[-1] == "2", lines  # one line, nothing on stdout
    assert lines[0].startswith("rmap_ksm_procs.py: error: ksm-procs needs --procs 2"), lines
