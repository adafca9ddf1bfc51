"""KSM's per-process files as each kernel writes them: /proc/PID/ksm_stat
(6.1: rmap items only; 6.4+ merging pages and profit; 6.14+ "name: yes"
lines) and the VmFlags of /proc/PID/smaps, read by the real parsers from
a /proc laid out in a temporary directory (tests/unit/fixtures/kernel/)."""

from __future__ import annotations

from pathlib import Path

from rmapbench.machine import ksm

KERNEL = Path(__file__).parent / "fixtures" / "kernel"
SMAPS = (KERNEL / "smaps-6.18").read_bytes()
# The same VMAs with one made VM_MERGEABLE (MADV_MERGEABLE adds "mg").
HEAP_FLAGS = b"VmFlags: rd wr mr mw me ac \n"
MERGEABLE_SMAPS = SMAPS.replace(HEAP_FLAGS, HEAP_FLAGS[:-1] + b"mg \n")


def test_each_release_reads_as_names_and_values() -> None:
    assert ksm.parse_ksm_stat((KERNEL / "ksm_stat-6.1").read_text()) == {"ksm_rmap_items": "0"}
    stat = ksm.parse_ksm_stat((KERNEL / "ksm_stat-6.12").read_text())
    assert stat["ksm_merging_pages"] == "1999" and stat["ksm_rmap_items"] == "2000"
    # 6.14+: "ksm_merge_any: no" - the colon is not part of the name.
    stat = ksm.parse_ksm_stat((KERNEL / "ksm_stat-6.18").read_text())
    assert stat["ksm_merge_any"] == "no" and stat["ksm_mergeable"] == "no"
    assert "ksm_merge_any:" not in stat


def _process(proc: Path, pid: int, comm: bytes, stat: str | None, smaps: bytes) -> None:
    d = proc / str(pid)
    d.mkdir()
    (d / "comm").write_bytes(comm)
    if stat is not None:
        (d / "ksm_stat").write_text(stat)
    (d / "smaps").write_bytes(smaps)


def test_other_mergeable_on_each_kind_of_process(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "self").mkdir()  # not a pid
    stat_6_18 = (KERNEL / "ksm_stat-6.18").read_text()
    merging = stat_6_18.replace("ksm_merging_pages 0", "ksm_merging_pages 12")
    merging = merging.replace("ksm_merge_any: no", "ksm_merge_any: yes")
    merging = merging.replace("ksm_mergeable: no", "ksm_mergeable: yes")
    # prctl(PR_SET_MEMORY_MERGE) on 6.18, with a thread name that is not UTF-8.
    _process(proc, 101, b"w\xffrker\n", merging, MERGEABLE_SMAPS)
    # MADV_MERGEABLE on 6.12: only smaps tells; one of its files is named in Latin-1.
    _process(proc, 102, b"qemu\n", (KERNEL / "ksm_stat-6.12").read_text(), MERGEABLE_SMAPS)
    # Nothing mergeable, 6.1 and 6.18.
    _process(proc, 103, b"bash\n", (KERNEL / "ksm_stat-6.1").read_text(), SMAPS)
    _process(proc, 104, b"sshd\n", stat_6_18, MERGEABLE_SMAPS)  # ksm_mergeable: no wins
    _process(proc, 105, b"kthreadd\n", None, b"")  # a kernel thread: no mm
    found = sorted(ksm.other_mergeable(set(), proc), key=lambda o: str(o["pid"]))
    assert found == [
        {"pid": 101, "comm": "w\ufffdrker", "ksm_merging_pages": 12, "merge_any": True},
        {"pid": 102, "comm": "qemu", "ksm_merging_pages": 1999},
    ]
    assert ksm.other_mergeable({101, 102}, proc) == []
