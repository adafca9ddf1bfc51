"""Guest tests of the cases added after the first three (ksm-mremap, thp),
--case and the KSM knobs: one guest boot of Debian's stock 6.12 under TCG
runs everything small, then the tests read what came out."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tap.parser import Parser

from rmapbench.bench import cases
from rmapbench.ksft import results

pytestmark = pytest.mark.guest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).resolve().parent / "scripts" / "snapshot.py"
THP_SPLIT = Path(__file__).resolve().parent / "scripts" / "thp_split.py"
SMALL = "--pages 1000 --samples 3"


@pytest.fixture(scope="module")
def run(guest: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    share = tmp_path_factory.mktemp("cases")
    py = sys.executable
    progs = " ".join(f"./{p.name}" for p in cases.programs())
    # ksm (16 and 256 sharers per stable node) and ksm-mremap at the same
    # size; a KSM run in the background holds merged pages while another
    # asks for a different max_page_sharing; unselected and unknown cases.
    script = f"""set -u
d={share}
{py} {SNAPSHOT} > $d/before.json
{py} -m rmapbench.ksft.runner {progs} -- --case ksm-mremap --case anon {SMALL} \\
    --results $d/selected > $d/selected.tap; echo $? > $d/selected.rc
./rmap_thp.py --samples 3 --results $d/res > $d/thp.txt; echo $? > $d/thp.rc
{py} {THP_SPLIT} > $d/thp_split.json
./rmap_ksm.py {SMALL} --max-page-sharing 16 --results $d/mps16 > $d/mps16.txt
./rmap_ksm.py {SMALL} --results $d/res > $d/ksm.txt
./rmap_ksm.py --pages 300 --samples 100000 > $d/holder.txt 2>&1 &
holder=$!
n=0
while [ "$(cat /sys/kernel/mm/ksm/pages_shared)" = 0 ] && [ $n -lt 600 ]; do
    sleep 0.1; n=$((n + 1))
done
./rmap_ksm_mremap.py --pages 100 --max-page-sharing 16 > $d/busy.txt; echo $? > $d/busy.rc
kill -TERM $holder; wait $holder
echo 1 > /sys/kernel/mm/ksm/run
{py} {SNAPSHOT} > $d/running_before.json
./rmap_ksm.py --pages 300 --samples 2 --max-page-sharing 16 --merge-across-nodes 0 \
    > $d/running.txt; echo $? > $d/running.rc
{py} {SNAPSHOT} > $d/running_after.json
echo 0 > /sys/kernel/mm/ksm/run
./rmap_file.py --case anon --results $d/unselected > $d/unselected.txt; echo $? > $d/unselected.rc
./rmap_anon.py --case anon --case nope > $d/unknown.txt 2>&1; echo $? > $d/unknown.rc
{py} -m rmapbench.ksft.runner {progs} -- --case=nope > $d/runner_unknown.txt 2>&1
echo $? > $d/runner_unknown.rc
# The file case on a filesystem without room for its test file (1000
# pages, 3.9 MiB): df's Avail less 1 MiB taken by one file, removed after.
mkdir /tmp/rmaptest-results
avail=$(df -Pk /tmp | awk 'NR == 2 {{print $4}}')
fallocate -l $(( (avail - 1024) * 1024 )) /tmp/rmaptest-filler
./rmap_file.py {SMALL} --results $d/full > $d/full.txt; echo $? > $d/full.rc
ls -a /tmp > $d/full_ls.txt
# Then no room at all, root's reserve included, for the result files.
dd if=/dev/zero of=/tmp/rmaptest-rest bs=4k 2> /dev/null; sync
./rmap_thp.py --samples 2 --results /tmp/rmaptest-results > $d/nores.txt 2> $d/nores_err.txt
echo $? > $d/nores.rc
rm -rf /tmp/rmaptest-filler /tmp/rmaptest-rest /tmp/rmaptest-results
# Strict overcommit, its commit limit (30% of 2 GiB) under the region's
# 781 MiB and above the interpreter's own: MemAvailable allows it, mmap not.
oc=$(cat /proc/sys/vm/overcommit_memory); ratio=$(cat /proc/sys/vm/overcommit_ratio)
echo 30 > /proc/sys/vm/overcommit_ratio; echo 2 > /proc/sys/vm/overcommit_memory
./rmap_anon.py --pages 200000 --samples 2 > $d/commit.txt; echo $? > $d/commit.rc
echo "$oc" > /proc/sys/vm/overcommit_memory; echo "$ratio" > /proc/sys/vm/overcommit_ratio
# A filesystem without shared writable mappings: the share, 9p without a cache.
mkdir $d/wd
./rmap_file.py {SMALL} --workdir $d/wd > $d/ninep.txt; echo $? > $d/ninep.rc
# Knobs the kernel will not let us change, as a container mounts them: KSM's
# (EROFS on the first one the case sets) and vm.max_map_count for a region
# of more VMAs than it allows (70,000 against 65,530).
mount -o bind,ro /sys/kernel/mm/ksm /sys/kernel/mm/ksm
./rmap_ksm.py --pages 300 --samples 2 > $d/ro_ksm.txt; echo $? > $d/ro_ksm.rc
umount /sys/kernel/mm/ksm
mount -o bind,ro /proc/sys/vm /proc/sys/vm
./rmap_anon.py --pages 70000 --samples 2 > $d/ro_vm.txt; echo $? > $d/ro_vm.rc
umount /proc/sys/vm
# A region bigger than the guest's 2 GiB (3.8 GiB).
./rmap_anon.py --pages 1000000 --samples 2 > $d/big.txt; echo $? > $d/big.rc
{py} {SNAPSHOT} > $d/after.json
"""
    guest(script, share)
    out: dict[str, Any] = {"share": share}
    for f in share.iterdir():
        if f.suffix in (".txt", ".tap"):
            out[f.stem] = f.read_text()
        elif f.suffix == ".rc":
            out[f.stem + "_rc"] = int(f.read_text())
        elif f.suffix == ".json":
            out[f.stem] = json.loads(f.read_text())
    for d in ("selected", "res", "mps16", "full"):
        out[d + "_docs"] = {doc["program"]: doc for doc in results.load_results(share / d)}
    return out


def scenario(doc: dict[str, Any]) -> dict[str, Any]:
    assert doc["status"] == "pass", doc.get("reason")
    sc: dict[str, Any] = doc["scenarios"][0]
    return sc


def every_trial_migrated_and_verified(sc: dict[str, Any], page_type: str) -> None:
    trials = sc["trials"]
    # 3 measured after the warm-up: 2 firings, or 1 that took 50 ms or more.
    warm = 1 if trials[0]["syscall_ns"] >= 50e6 else 2
    assert [t["warmup"] for t in trials] == [True] * warm + [False] * 3
    for t in trials:
        assert t["migrated"] and t["verified"] and not t["problems"], t
    assert sc["verified"] == {**sc["verified"], "samples": len(trials), "failed": 0}
    for t in sc["trials"]:
        if not t["warmup"]:
            assert t["walk_ns"], t  # a walk of the target every sample
    assert (page_type, "target") in {(k["page_type"], k["folio"]) for k in sc["walks_by_kind"]}
    assert sc["locked_walks"] == 0


def test_case_selection_runs_exactly_the_selected(run: dict[str, Any]) -> None:
    assert run["selected_rc"] == 0, run["selected"]
    lines = list(Parser().parse_text(run["selected"]))
    tests = [ln for ln in lines if ln.category == "test"]
    assert [t.description for t in tests] == [
        "selftests: rmap: rmap_anon.py", "selftests: rmap: rmap_ksm_mremap.py"]
    assert all(t.ok and not t.skip for t in tests)
    assert lines[1].category == "plan" and lines[1].expected_tests == 2
    assert sorted(run["selected_docs"]) == ["rmap_anon", "rmap_ksm_mremap"]


def test_ksm_mremap_verified_at_the_moved_addresses(run: dict[str, Any]) -> None:
    sc = scenario(run["selected_docs"]["rmap_ksm_mremap"])
    assert sc["name"] == "ksm-mremap"
    moved = sc["setup"]["mremap"]
    assert moved["old_addr"] != moved["new_addr"]
    # Moved as one VMA, then split at the new address.
    assert moved["vmas_moved"] == 1 and moved["vmas_after_split"] == sc["setup"]["vmas"] == 1000
    assert moved["pgoff_shift_pages"] != 0
    # Merged before the move, unmerged by it, merged again at the new address.
    assert sc["setup"]["ksm_before_move"]["process_merged"] > 0
    assert sc["setup"]["target_page_type"] == "ksm"
    assert sc["verified"]["mappings_per_sample"] >= 2  # sharers checked at new addresses
    every_trial_migrated_and_verified(sc, "ksm")
    assert "then split there into 1000 VMAs" in run["selected"]


def test_thp_target_is_a_pmd_mapped_thp(run: dict[str, Any]) -> None:
    assert run["thp_rc"] == 0, run["thp"]
    sc = scenario(run["res_docs"]["rmap_thp"])
    thp = sc["setup"]["thp"]
    assert thp["pmd_mapped"] and thp["kpageflags_thp"] and thp["anon_huge_kb"] == 2048
    assert int(thp["head_pfn"], 16) % 512 == 0
    assert sc["setup"]["page_size"] == 2 << 20
    assert sc["setup"]["target_page_type"] == "anon"
    assert sc["params"] == {"thp_kb": 2048, "subpages": 512}
    every_trial_migrated_and_verified(sc, "anon")
    # move_pages() of the first page moved the whole THP every time: each
    # of the 3 measured firings and the warm-up's (2, or 1 that took 50 ms
    # or more: bench/warmup.py; seen on a slow host).
    trials = sc["trials"]
    warm = 1 if trials[0]["syscall_ns"] >= 50e6 else 2
    assert len(trials) == warm + 3, trials
    assert sc["setup"]["verified_as"] == {"thp": warm + 3, "split": 0}
    assert sc["setup"]["thp_vmstat"]["thp_migration_success"] >= warm + 3
    assert sc["setup"]["thp_vmstat"]["thp_migration_split"] == 0
    assert "PMD-mapped (AnonHugePages 2048 kB" in run["thp"]


def test_thp_verify_holds_across_split_and_collapse(run: dict[str, Any]) -> None:
    """What the split trigger does between firings: split the THP through
    debugfs, migrate, collapse it again. verify() holds at every step and
    still names a subpage that lost its mapping."""
    steps = run["thp_split"]
    assert steps["built"] == {"thp": True, "problems": []}
    assert steps["split"] == {"thp": False, "problems": []}
    assert steps["migrated_split"] == {"migrated": True, "thp": False, "problems": []}
    assert steps["collapsed"] == {"thp": True, "problems": []}
    assert steps["migrated_thp"] == {"migrated": True, "thp": True, "problems": []}
    assert len(steps["hole"]["problems"]) == 1 and "not present" in steps["hole"]["problems"][0]
    assert steps["verified_as"] == {"thp": 4, "split": 2}


def test_max_page_sharing_16(run: dict[str, Any]) -> None:
    sc16 = scenario(run["mps16_docs"]["rmap_ksm"])
    # The reference run only has to have measured: under heavy host load
    # the case's own "walks longer than their syscall" check can trip by a
    # fraction of a millisecond (guest clocks under TCG).
    sc256 = run["res_docs"]["rmap_ksm"]["scenarios"][0]
    assert sc256["verified"]["failed"] == 0 and sc256["walks"]["count"] >= 3
    assert sc16["params"]["max_page_sharing"] == 16
    assert sc16["setup"]["ksm_knobs"]["max_page_sharing"] == {
        "value": 16, "before": 256, "changed": True}
    k = sc16["setup"]["ksm"]
    # Each stable node (dup) holds at most 16 sharers: 1 shared + 15 sharing.
    assert k["max_page_sharing"] == 16
    assert 12 <= k["pages_sharing"] / k["pages_shared"] <= 16, k
    assert 2 <= sc16["verified"]["mappings_per_sample"] <= 16
    assert sc256["params"]["max_page_sharing"] == 256
    assert sc256["setup"]["ksm"]["pages_sharing"] / sc256["setup"]["ksm"]["pages_shared"] > 100
    every_trial_migrated_and_verified(sc16, "ksm")
    # A walk visits the sharers of its own dup only: 16 instead of 256.
    assert sc16["walks"]["p50_ns"] * 4 < sc256["walks"]["p50_ns"]
    assert "# ksm knobs: max_page_sharing=16 (was 256; restored after)" in run["mps16"]


def test_knobs_restored(run: dict[str, Any]) -> None:
    assert run["after"] == run["before"]
    assert run["before"]["ksm/max_page_sharing"] == "256"


def test_knob_change_refused_while_ksm_pages_exist_skips(run: dict[str, Any]) -> None:
    assert run["busy_rc"] == 4, run["busy"]
    assert "ok 1 rmap_ksm_mremap.walk_latency # SKIP KSM pages exist; cannot change " \
        "max_page_sharing" in run["busy"]


def test_knobs_restored_when_ksmd_was_running(run: dict[str, Any]) -> None:
    """With ksmd running before, the run still waits for ksmd to drop its
    KSM pages before putting the knobs back (KSM refuses them otherwise)."""
    assert run["running_rc"] == 0, run["running"]
    assert "max_page_sharing=16 (was 256; restored after) merge_across_nodes=0 (was 1" \
        in run["running"]
    assert run["running_before"]["ksm/run"] == "1"
    assert run["running_after"] == run["running_before"]


def test_unselected_program_skips_and_exits_4(run: dict[str, Any]) -> None:
    assert run["unselected_rc"] == 4
    assert "ok 1 rmap_file.walk_latency # SKIP not selected by --case" in run["unselected"]
    assert not (run["share"] / "unselected").exists() or not any(
        (run["share"] / "unselected").iterdir())


def test_unknown_case_exit_2(run: dict[str, Any]) -> None:
    assert run["unknown_rc"] == 2 and run["unknown"].count("\n") == 1
    assert "unknown case 'nope'" in run["unknown"]
    assert run["runner_unknown_rc"] == 2 and "unknown case 'nope'" in run["runner_unknown"]
    assert "selftests" not in run["runner_unknown"]


def test_front_door_refuses_unknown_case_before_booting() -> None:
    proc = subprocess.run([str(ROOT / "run_tests.sh"), "--vm", "--", "--case", "nope"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "unknown case 'nope'" in proc.stderr


def test_a_full_filesystem_skips_the_file_case(run: dict[str, Any]) -> None:
    """Not SIGBUS from the memset's page fault: a SKIP that says how much
    room there was and how much the file needs, before anything changed."""
    out = run["full"]
    assert run["full_rc"] == 4, out
    assert "ok 1 rmap_file.walk_latency # SKIP not enough space for the test file" in out
    assert "# /tmp has " in out and " MiB free, the test file needs 5.0 MiB" in out
    doc = run["full_docs"]["rmap_file"]
    assert doc["status"] == "skip" and doc["reason"] == "not enough space for the test file"
    names = run["full_ls"].split()
    assert [n for n in names if n.startswith("rmapbench-") and n != "rmapbench-cache"] == []


def test_a_region_bigger_than_memory_skips(run: dict[str, Any]) -> None:
    """Not a failed mmap() reported as a FAIL (or, below what overcommit
    refuses, the OOM killer's SIGKILL): a SKIP before anything is built."""
    out = run["big"]
    assert run["big_rc"] == 4, out
    assert "ok 1 rmap_anon.walk_latency # SKIP not enough memory for the scenario" in out
    need = "# the anon scenario (--pages 1000000 --split 2) needs about 3906 MiB, MemAvailable"
    assert need in out


def test_results_that_cannot_be_written_are_refused_before_the_plan(run: dict[str, Any]) -> None:
    """A full filesystem takes the option check's empty probe file but not
    the run's first result file: one line, exit 2, no KTAP plan, nothing
    set up (not an internal error after the plan)."""
    assert run["nores_rc"] == 2, run["nores_err"]
    assert run["nores"] == ""
    assert run["nores_err"] == (
        "rmap_thp.py: error: --results /tmp/rmaptest-results: cannot write there: "
        "No space left on device\n"
    )


def test_knobs_the_kernel_will_not_change_skip(run: dict[str, Any]) -> None:
    """A read-only /sys or /proc/sys is a SKIP naming the knob, not a
    traceback and a FAIL; what was set before it is undone (the snapshot
    check above covers the whole run)."""
    for name, knob in (("ro_ksm", "/sys/kernel/mm/ksm/"), ("ro_vm", "/proc/sys/vm/max_map_count")):
        out = run[name]
        assert run[name + "_rc"] == 4, out
        assert "# SKIP kernel knob not writable" in out
        assert f"# cannot change {knob}" in out and ": Read-only file system" in out
        assert "Exception|" not in out


def test_a_filesystem_without_shared_mappings_skips_the_file_case(run: dict[str, Any]) -> None:
    out = run["ninep"]
    assert run["ninep_rc"] == 4, out
    assert "ok 1 rmap_file.walk_latency # SKIP the test file cannot be mapped shared" in out
    assert "/wd (9p) refuses mmap(MAP_SHARED, PROT_WRITE): Invalid argument" in out
    assert list((run["share"] / "wd").iterdir()) == []  # the test file removed


def test_a_region_past_the_commit_limit_skips(run: dict[str, Any]) -> None:
    out = run["commit"]
    assert run["commit_rc"] == 4, out
    assert "ok 1 rmap_anon.walk_latency # SKIP not enough memory for the scenario" in out
    assert "# mmap() of the 781 MiB region: Cannot allocate memory (the commit limit" in out
