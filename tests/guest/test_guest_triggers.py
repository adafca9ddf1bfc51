"""Guest tests of the triggers on a ONE-node guest (stock 6.12, TCG):
pageout (file; anon with a swap file), soft-offline with
--allow-destructive, split on the thp case, and
run_tests.sh --nodes 1, where auto picks damon (ksm, anon) and msync (file)
and every case passes instead of skipping. Refusals are unit tests
(tests/test_triggers.py): they exit before anything is set up."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rmapbench.ksft import results

pytestmark = pytest.mark.guest

ROOT = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).resolve().parent / "scripts"
SMALL = "--pages 1000 --samples 3 --warmup 1"

# name -> (program, options): run one after another in one guest.
RUNS = {
    "pageout_file": ("rmap_file", "--trigger pageout"),
    "pageout_anon": ("rmap_anon", "--trigger pageout"),
    "soft_offline_anon": ("rmap_anon", "--trigger soft-offline --allow-destructive"),
    "split_thp": ("rmap_thp", "--trigger split"),
}


@pytest.fixture(scope="module")
def one_node(guest: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Any]:
    share = tmp_path_factory.mktemp("triggers")
    py = sys.executable
    lines = [f"d={share}", f"{py} {GUEST / 'snapshot.py'} > $d/before.json"]
    for name, (prog, args) in RUNS.items():
        if name == "pageout_anon":  # anonymous pages need swap to be paged out
            lines += ["dd if=/dev/zero of=/tmp/swap bs=1M count=32 2>/dev/null",
                      "chmod 600 /tmp/swap; mkswap /tmp/swap >/dev/null; swapon /tmp/swap"]
        lines.append(f"./{prog}.py {SMALL} {args} --results $d/{name} > $d/{name}.txt 2>&1;"
                     f" echo $? > $d/{name}.rc")
        if name == "pageout_anon":
            lines.append("swapoff /tmp/swap; rm -f /tmp/swap")
    lines += [
        f"{py} {GUEST / 'snapshot.py'} > $d/after.json",
        "cat /sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds > $d/nr_kdamonds",
    ]
    guest("set -u\n" + "\n".join(lines), share, nodes=1)
    out: dict[str, Any] = {"share": share}
    for name in RUNS:
        out[name] = {
            "text": (share / f"{name}.txt").read_text(),
            "rc": int((share / f"{name}.rc").read_text()),
            "doc": results.load_results(share / name)[0],
        }
    for snap in ("before", "after"):
        out[snap] = json.loads((share / f"{snap}.json").read_text())
    out["nr_kdamonds"] = (share / "nr_kdamonds").read_text().strip()
    return out


def _check_walks(doc: dict[str, Any], page_type: str, trigger: str) -> dict[str, Any]:
    assert doc["status"] == "pass", doc.get("reason")
    assert doc["trigger"]["name"] == trigger
    sc = doc["scenarios"][0]
    assert sc["target_identified_by"] == "folio"
    measured = [t for t in sc["trials"] if not t["warmup"]]
    assert len(measured) == 3
    for t in measured:
        assert t["done"] and t["verified"], t
        assert t["walk_ns"], t
    kinds = {(k["page_type"], k["folio"]) for k in sc["walks_by_kind"]}
    assert (page_type, "target") in kinds, kinds
    assert not {k for k in kinds if k[1] == "target" and k[0] != page_type}
    assert sc["verified"]["failed"] == 0
    return sc


def test_pageout_file_unmaps_once_per_firing(one_node: dict[str, Any]) -> None:
    run = one_node["pageout_file"]
    assert run["rc"] == 0, run["text"]
    sc = _check_walks(run["doc"], "file", "pageout")
    # try_to_unmap: one walk per firing, inside madvise().
    for t in sc["trials"]:
        assert len(t["walk_ns"]) == 1 and sum(t["walk_ns"]) <= t["syscall_ns"], t


def test_pageout_anon_with_swap(one_node: dict[str, Any]) -> None:
    run = one_node["pageout_anon"]
    assert run["rc"] == 0, run["text"]
    _check_walks(run["doc"], "anon", "pageout")


def test_soft_offline_migrates_on_one_node(one_node: dict[str, Any]) -> None:
    run = one_node["soft_offline_anon"]
    assert run["rc"] == 0, run["text"]
    assert "retires one frame per firing" in run["text"]  # the guest is recognised
    sc = _check_walks(run["doc"], "anon", "soft-offline")
    for t in sc["trials"]:
        # A migration: try_to_migrate and remove_migration_ptes, new frame.
        assert len(t["walk_ns"]) == 2 and t["migrated"], t


def test_split_walks_are_locked(one_node: dict[str, Any]) -> None:
    run = one_node["split_thp"]
    assert run["rc"] == 0, run["text"]
    sc = run["doc"]["scenarios"][0]
    assert sc["verified"]["failed"] == 0, run["text"]
    locked = sum(k["count"] for k in sc["walks_by_kind"]
                 if k["function"] == "rmap_walk_locked" and k["page_type"] == "anon")
    # Per split: unmap_folio walks the THP, then remap_page walks each of
    # its 512 small pages, all with the anon_vma lock held.
    assert locked >= 2 * len([t for t in sc["trials"] if not t["warmup"]]), run["text"]


def test_everything_restored(one_node: dict[str, Any]) -> None:
    assert one_node["after"] == one_node["before"]
    assert one_node["before"]["damon/nr_kdamonds"] == "0"
    assert one_node["nr_kdamonds"] == "0"


def test_run_tests_sh_one_node_passes_with_auto(tmp_path: Path) -> None:
    """One NUMA node: auto picks damon for ksm and anon (and shmem, thp),
    msync for file, and the cases pass instead of skipping. The cheap cases
    only: the multi-process ones take as long as the rest of this module."""
    res = tmp_path / "res"
    selected = [a for c in ("ksm", "anon", "file", "shmem", "thp") for a in ("--case", c)]
    proc = subprocess.run(
        [str(ROOT / "run_tests.sh"), "--vm", "--nodes", "1", *selected, "--results", str(res),
         "--", *SMALL.split()],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SKIP" not in proc.stdout, proc.stdout
    docs = {d["program"]: d for d in results.load_results(res)}
    assert set(docs) == {"rmap_ksm", "rmap_anon", "rmap_file", "rmap_shmem", "rmap_thp"}
    want = {"rmap_ksm": ("ksm", "damon"), "rmap_anon": ("anon", "damon"),
            "rmap_file": ("file", "msync")}
    for program, (page_type, trigger) in want.items():
        doc = docs[program]
        assert doc["trigger"]["requested"] == "auto"
        assert "one NUMA node" in doc["trigger"]["why"]
        sc = _check_walks(doc, page_type, trigger)
        if trigger == "damon":
            # The walks ran in kdamond, whose pid the probe followed; each
            # window, opened while kdamond sleeps, holds one young walk and
            # one mkold walk of the target (a third when the trace is read
            # after kdamond woke again: a loaded machine), no other walk.
            assert doc["trigger"]["kdamond_pid"] > 0
            for t in sc["trials"]:
                assert 2 <= len(t["walk_ns"]) <= 3 and t["other_walks"] == 0, t
            assert sc["lost_events"] == 0
        else:  # msync: one folio_mkclean walk inside msync()
            assert all(len(t["walk_ns"]) == 1 and t["walk_ns"][0] <= t["syscall_ns"]
                       for t in sc["trials"]), sc["trials"]
    assert "one NUMA node" in proc.stdout
