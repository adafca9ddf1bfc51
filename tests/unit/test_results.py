"""Tests of rmapbench.ksft.results: atomic writes, LAVA and SQUAD names, round trip."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from rmapbench.files import write_atomic
from rmapbench.ksft import results
from rmapbench.ksft.results import SCHEMA, lava_lines, load_results, squad_metrics


def summary(count: int, base: int) -> dict[str, int]:
    return {"count": count, "min_ns": base, "p50_ns": base * 2, "p90_ns": base * 3,
            "p99_ns": base * 4, "max_ns": base * 5, "mean_ns": base * 2 + 1, "stddev_ns": 7}


def document(program: str = "rmap_ksm", status: str = "pass") -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "program": program,
        "status": status,
        "backend": {"name": "fprobe", "clock": "mono", "resolution_ns": 1, "detail": "x"},
        "scenarios": [{
            "name": "ksm 20000 pages/2 VMAs",
            "walks": summary(60, 1000),
            "syscall": summary(30, 5000),
        }],
    }


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_write_atomic(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_atomic(path, "first\n")
    assert path.read_text() == "first\n"
    write_atomic(str(path), "second\n")  # str paths too; replaces
    assert path.read_text() == "second\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_write_atomic_failed_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "half \udcff written")  # a lone surrogate cannot be encoded
    assert path.read_text() == "old\n"
    assert leftovers(tmp_path) == []
    new = tmp_path / "new.txt"
    with pytest.raises(UnicodeEncodeError):
        write_atomic(new, "\ud800")
    assert not new.exists()
    assert leftovers(tmp_path) == []


def test_write_atomic_failed_rename_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "adir"
    target.mkdir()
    with pytest.raises(OSError):
        write_atomic(target, "text")  # cannot replace a directory with a file
    assert target.is_dir()
    assert leftovers(tmp_path) == []


def test_write_atomic_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no" / "such.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_slug() -> None:
    assert results.slug("ksm 20000 pages/2 VMAs") == "ksm_20000_pages_2_VMAs"
    assert results.slug("rmap_ksm.py") == "rmap_ksm_py"
    assert results.slug("--anon--") == "anon"


def test_metrics_names_and_units() -> None:
    m = results.metrics(document())
    prefix = "ksm_20000_pages_2_VMAs"
    assert m == {
        f"{prefix}_walks_p50": (2000, "ns"),
        f"{prefix}_walks_p99": (4000, "ns"),
        f"{prefix}_walks_max": (5000, "ns"),
        f"{prefix}_walks_mean": (2001, "ns"),
        f"{prefix}_walks_count": (60, "walks"),
        f"{prefix}_syscall_p50": (10000, "ns"),
        f"{prefix}_syscall_p99": (20000, "ns"),
        f"{prefix}_syscall_max": (25000, "ns"),
        f"{prefix}_syscall_mean": (10001, "ns"),
        f"{prefix}_syscall_count": (30, "calls"),
    }


def test_metrics_skip_empty_groups() -> None:
    doc = document()
    doc["scenarios"][0]["walks"] = summary(0, 0)
    del doc["scenarios"][0]["syscall"]
    assert results.metrics(doc) == {}
    assert results.metrics({"program": "p"}) == {}


def test_lava_lines() -> None:
    lines = lava_lines(document())
    assert lines[0] == "rmap_ksm pass"
    assert "rmap_ksm_ksm_20000_pages_2_VMAs_walks_p99 pass 4000 ns" in lines
    assert "rmap_ksm_ksm_20000_pages_2_VMAs_walks_count pass 60 walks" in lines
    assert "rmap_ksm_ksm_20000_pages_2_VMAs_syscall_count pass 30 calls" in lines
    assert len(lines) == 11
    for line in lines:  # NAME RESULT [MEASUREMENT UNITS]
        fields = line.split(" ")
        assert len(fields) in (2, 4)
        assert fields[1] in ("pass", "fail", "skip", "unknown")
        assert all(c.isalnum() or c == "_" for c in fields[0])


@pytest.mark.parametrize(("status", "result"), [
    ("pass", "pass"), ("fail", "fail"), ("skip", "skip"), ("error", "unknown"), ("", "unknown"),
])
def test_lava_result_of_status(status: str, result: str) -> None:
    assert lava_lines(document(status=status))[0] == f"rmap_ksm {result}"


def test_squad_metrics() -> None:
    m = squad_metrics(document())
    assert m["rmap/rmap_ksm_ksm_20000_pages_2_VMAs_walks_p50"] == {"value": 2000, "unit": "ns"}
    assert m["rmap/rmap_ksm_ksm_20000_pages_2_VMAs_syscall_count"] == {
        "value": 30, "unit": "calls"}
    assert len(m) == 10
    # SQUAD takes the suite from the text before the last '/'.
    assert {k.rpartition("/")[0] for k in m} == {"rmap"}
    assert next(iter(squad_metrics(document(), suite="lkft/rmap"))).startswith("lkft/rmap/")


def test_write_results_and_load_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "results"
    ksm, anon = document("rmap_ksm"), document("rmap_anon", status="fail")
    files = results.write_results(out, ksm)
    assert [p.name for p in files] == [
        "rmap_ksm.json", "rmap_ksm.result.txt", "rmap_ksm.squad.json"]
    results.write_results(out, anon)
    assert leftovers(out) == []
    assert json.loads((out / "rmap_ksm.json").read_text()) == ksm
    assert (out / "rmap_ksm.result.txt").read_text() == "\n".join(lava_lines(ksm)) + "\n"
    assert json.loads((out / "rmap_ksm.squad.json").read_text()) == squad_metrics(ksm)
    # Sorted by program; the SQUAD files and foreign JSON are not result documents.
    (out / "other.json").write_text(json.dumps({"schema": "something/else"}))
    (out / "list.json").write_text("[1, 2]")
    assert load_results(out) == [anon, ksm]


def test_load_results_of_an_empty_directory(tmp_path: Path) -> None:
    assert load_results(tmp_path) == []
