"""Guest integration tests: boot Debian's stock 6.12 kernel under QEMU (TCG
here), run every case small, and check what came out."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tap.parser import Parser

from rmapbench.ksft import results

pytestmark = pytest.mark.guest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).resolve().parent / "scripts" / "snapshot.py"
SMALL = ["--pages", "2000", "--samples", "5"]
CASES = {"rmap_ksm": "ksm", "rmap_anon": "anon", "rmap_file": "file"}


@pytest.fixture(scope="module")
def suite_run(guest: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Any]:
    """One guest: knobs snapshot, the three cases and shmem with the
    default backend (bpf on stock 6.12), file and shmem again with fprobe
    (shmem's walk function is file's: it uses the probe events
    rmap_file.py kept), an interrupted KSM run, knobs snapshot again."""
    share = tmp_path_factory.mktemp("guest")
    py = sys.executable
    args = " ".join(SMALL)
    progs = "./rmap_ksm.py ./rmap_anon.py ./rmap_file.py ./rmap_shmem.py"
    script = f"""d={share}
{py} {SNAPSHOT} > $d/before.json
{py} -m rmapbench.ksft.runner {progs} -- {args} --results $d/res > $d/tap.txt; echo $? > $d/rc
{py} -m rmapbench.ksft.runner ./rmap_file.py ./rmap_shmem.py -- {args} --backend fprobe \
    --results $d/kept > $d/kept_tap.txt; echo $? > $d/kept_rc
timeout --preserve-status -s TERM 25 \\
    ./rmap_ksm.py --pages 2000 --samples 100000 > $d/interrupted.txt
echo $? > $d/interrupted.rc
{py} {SNAPSHOT} > $d/after.json
./rmap_anon.py --backend tracepoint > $d/no_tracepoint.txt; echo $? >> $d/no_tracepoint.txt
mount -t tmpfs none /sys/kernel/mm/ksm
./rmap_ksm.py > $d/no_ksm.txt; echo $? >> $d/no_ksm.txt
umount /sys/kernel/mm/ksm
umount /sys/kernel/tracing; umount /sys/kernel/debug/tracing /sys/kernel/debug 2>/dev/null || true
./rmap_anon.py > $d/no_tracing.txt; echo $? >> $d/no_tracing.txt
"""
    guest(f"set -u\n{script}", share)
    return {
        "share": share,
        "tap": (share / "tap.txt").read_text(),
        "rc": int((share / "rc").read_text()),
        "docs": {d["program"]: d for d in results.load_results(share / "res")},
        "kept_tap": (share / "kept_tap.txt").read_text(),
        "kept_rc": int((share / "kept_rc").read_text()),
        "kept_docs": {d["program"]: d for d in results.load_results(share / "kept")},
        "before": json.loads((share / "before.json").read_text()),
        "after": json.loads((share / "after.json").read_text()),
        "interrupted": (share / "interrupted.txt").read_text(),
        "interrupted_rc": int((share / "interrupted.rc").read_text()),
        **{name: (share / f"{name}.txt").read_text()
           for name in ("no_tracepoint", "no_ksm", "no_tracing")},
    }


def test_suite_passes_with_valid_tap(suite_run: dict[str, Any]) -> None:
    assert suite_run["rc"] == 0, suite_run["tap"]
    lines = list(Parser().parse_text(suite_run["tap"]))
    oks = [ln for ln in lines if ln.category == "test"]
    assert len(oks) == 4 and all(ln.ok and not ln.skip for ln in oks), suite_run["tap"]


def test_auto_suite_keeps_no_probe_events(suite_run: dict[str, Any]) -> None:
    """bpf's programs are the process's file descriptors: a suite on it
    keeps nothing between programs, so the runner has nothing to remove."""
    docs = suite_run["docs"]
    assert {d["backend"]["name"] for d in docs.values()} == {"bpf"}, docs
    assert "# what the programs kept" not in suite_run["tap"], suite_run["tap"]


def test_programs_use_the_probe_events_an_earlier_one_kept(suite_run: dict[str, Any]) -> None:
    """machine/shared_probes.py, tracing/kept.py: with fprobe, rmap_shmem.py
    armed on rmap_file.py's events and pairing, and the runner removed both
    events, the pairing and the instance (the snapshot after the run has
    none: test_every_knob_reads_back_as_before)."""
    assert suite_run["kept_rc"] == 0, suite_run["kept_tap"]
    docs = suite_run["kept_docs"]
    assert {d["backend"]["name"] for d in docs.values()} == {"fprobe"}, docs
    assert ("and their pairing kept by an earlier program"
            in docs["rmap_shmem"]["backend"]["detail"])  # fmt: skip
    assert "kept by an earlier program" not in docs["rmap_file"]["backend"]["detail"]
    assert ("# what the programs kept (2 probe events, 1 pairing and an instance) removed in"
            in suite_run["kept_tap"]), suite_run["kept_tap"]  # fmt: skip


@pytest.mark.parametrize("program", CASES)
def test_target_walks_of_the_right_type_every_sample(suite_run: dict[str, Any], program: str
                                                    ) -> None:
    doc = suite_run["docs"][program]
    sc = doc["scenarios"][0]
    assert doc["status"] == "pass"
    assert sc["name"] == CASES[program]
    assert sc["target_identified_by"] == "folio"
    assert doc["backend"]["name"] in ("tracepoint", "bpf", "fprobe", "kprobe")
    measured = [t for t in sc["trials"] if not t["warmup"]]
    assert len(measured) == 5
    for t in measured:
        assert t["migrated"], t
        # Every mapping of the target sees the new frame, content intact.
        assert t["verified"] and not t["problems"], t
        # try_to_migrate() and remove_migration_ptes() each walk the page.
        assert len(t["walk_ns"]) >= 1, t
    kinds = {(k["page_type"], k["folio"]) for k in sc["walks_by_kind"]}
    assert (CASES[program], "target") in kinds
    assert not {k for k in kinds if k[1] == "target" and k[0] != CASES[program]}
    assert sc["walks"]["count"] >= 5
    assert sc["setup"]["vmas"] == 2000  # split 2: every page its own VMA
    assert sc["verified"]["failed"] == 0
    # KSM: all the region's pages merged into the target's frame (up to
    # max_page_sharing) were checked after every migration; else just one.
    sharers = sc["verified"]["mappings_per_sample"]
    assert sharers >= 2 if program == "rmap_ksm" else sharers == 1


@pytest.mark.parametrize("program", CASES)
def test_syscall_time_covers_its_walks(suite_run: dict[str, Any], program: str) -> None:
    for t in suite_run["docs"][program]["scenarios"][0]["trials"]:
        assert sum(t["walk_ns"]) <= t["syscall_ns"], t


def test_ksm_walk_far_slower_than_anon_when_split(suite_run: dict[str, Any]) -> None:
    # rmap_walk_ksm scans every VMA of the anon_vma for each of up to
    # max_page_sharing sharers; rmap_walk_anon looks up one offset.
    ksm = suite_run["docs"]["rmap_ksm"]["scenarios"][0]["walks"]["p50_ns"]
    anon = suite_run["docs"]["rmap_anon"]["scenarios"][0]["walks"]["p50_ns"]
    assert ksm > 20 * anon, (ksm, anon)


def test_ksm_merge_was_verified(suite_run: dict[str, Any]) -> None:
    setup = suite_run["docs"]["rmap_ksm"]["scenarios"][0]["setup"]
    assert setup["target_page_type"] == "ksm"
    assert setup["target_sharers_here"] >= 2
    assert setup["ksm"]["pages_sharing"] > 0


def test_every_knob_reads_back_as_before(suite_run: dict[str, Any]) -> None:
    assert suite_run["after"] == suite_run["before"]


def test_sigterm_mid_run_restores_and_reports(suite_run: dict[str, Any]) -> None:
    out = suite_run["interrupted"]
    assert suite_run["interrupted_rc"] == 128 + 15, out
    assert "not ok 1 rmap_ksm.walk_latency" in out
    assert "interrupted by SIGTERM" in out


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        ("no_ksm", "KSM not available"),
        ("no_tracing", "no tracing backend"),
        ("no_tracepoint", "backend unavailable"),
    ],
)
def test_missing_feature_skips(suite_run: dict[str, Any], run: str, reason: str) -> None:
    """KSM hidden under a tmpfs, tracefs unmounted, or a backend the stock
    kernel lacks: SKIP with a short constant reason and exit status 4."""
    out = suite_run[run]
    assert "ok 1 rmap_" in out and f"# SKIP {reason}" in out, out
    assert out.rstrip().splitlines()[-1] == "4", out
    assert "not ok" not in out


def test_one_node_guest_skips(guest: Callable[..., str], tmp_path: Path) -> None:
    # Migration needs a second node; auto would pick a one-node trigger
    # (tests/test_guest_triggers.py).
    out = guest(f"set -u\n{sys.executable} -m rmapbench.ksft.runner ./rmap_ksm.py "
                "./rmap_anon.py ./rmap_file.py -- --trigger migrate", tmp_path, nodes=1)
    assert out.count("# SKIP fewer than two NUMA nodes") == 3, out
    assert "not ok" not in out


def test_run_tests_sh_vm_writes_results(tmp_path: Path) -> None:
    res = tmp_path / "res"
    proc = subprocess.run(
        # The first three cases (test_guest_cases.py covers the later ones).
        [str(ROOT / "run_tests.sh"), "--vm", "--results", str(res), "--", "--pages", "1000",
         "--samples", "3", *[a for c in CASES.values() for a in ("--case", c)]],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = results.load_results(res)
    assert sorted(d["program"] for d in docs) == sorted(CASES)
    for doc in docs:
        assert doc["schema"] == results.SCHEMA
        assert doc["kernel"]["release"].startswith("6.12")
        assert doc["backend"]["name"] and doc["trigger"]["name"] == "migrate"
        sc = doc["scenarios"][0]
        ksm_knobs = {"max_page_sharing": 256, "merge_across_nodes": 1}  # stock defaults
        assert sc["params"] == {"pages": 1000, "split": 2,
                                **(ksm_knobs if sc["name"] == "ksm" else {})}
        for key in ("count", "min_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns", "mean_ns",
                    "stddev_ns", "samples"):
            assert key in sc["walks"]
        assert (res / f"{doc['program']}.result.txt").exists()
        assert (res / f"{doc['program']}.squad.json").exists()
    assert "p50" in proc.stdout and "rmap_ksm.walk_latency" in proc.stdout
    assert (res / "console.log").exists()
