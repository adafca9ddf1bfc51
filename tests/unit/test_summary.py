"""Tests of rmapbench.ksft.summary: the plain-text table of a result directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rmapbench.ksft import results, summary
from rmapbench.ksft.summary import COLUMNS, rows, table


def walks(count: int, p50: int, p90: int, p99: int, mx: int) -> dict[str, int]:
    return {"count": count, "min_ns": p50 // 2, "p50_ns": p50, "p90_ns": p90, "p99_ns": p99,
            "max_ns": mx, "mean_ns": p50, "stddev_ns": 1}


DOCS: list[dict[str, Any]] = [
    {
        "schema": results.SCHEMA, "program": "rmap_ksm", "status": "pass",
        "backend": {"name": "fprobe", "clock": "mono", "resolution_ns": 1, "detail": ""},
        "scenarios": [{
            "name": "ksm",
            "walks": walks(12, 60_293_540, 110_240_926, 123_130_634, 123_130_634),
            "syscall": walks(6, 175_448_000, 180_000_000, 181_000_000, 181_000_000),
        }],
    },
    {
        "schema": results.SCHEMA, "program": "rmap_file", "status": "fail",
        "reason": "walk p99 over budget",
        "backend": {"name": "tracepoint"},
        "scenarios": [{
            "name": "file",
            "walks": walks(12, 23_364, 112_282, 151_245, 999_999),
            "syscall": {"count": 0},
        }],
    },
    {
        "schema": results.SCHEMA, "program": "rmap_anon", "status": "skip", "reason": "not root",
        "scenarios": [{"name": "anon", "params": {"pages": 20000}}],
    },
]


def test_rows() -> None:
    assert rows(DOCS) == [
        ("ksm", "fprobe", "12", "60.3 ms", "110 ms", "123 ms", "123 ms", "175 ms", "pass"),
        ("file", "tracepoint", "12", "23.4 us", "112 us", "151 us", "1 ms", "-",
         "fail (walk p99 over budget)"),
        ("anon", "-", "-", "-", "-", "-", "-", "-", "skip (not root)"),
    ]


def test_reason_only_when_not_passing() -> None:
    doc = {**DOCS[0], "reason": "leftover"}
    assert rows([doc])[0][-1] == "pass"
    assert rows([{"scenarios": [{"name": "x"}]}])[0][-1] == "?"


def test_table() -> None:
    text = table(DOCS)
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["case", "backend", "walks", "p50", "p90", "p99", "max",
                                "syscall", "p50", "result"]
    # Every column starts at the same offset on every line, two spaces after
    # the widest cell of the column before; the free-text result is not padded.
    ksm, file, anon = rows(DOCS)
    body = [COLUMNS, ksm, anon, file]  # the order the runner runs the programs in
    starts = [0]
    for i in range(len(COLUMNS) - 1):
        starts.append(starts[-1] + max(len(r[i]) for r in body) + 2)
    for line, cells in zip(lines, body, strict=True):
        for start, cell in zip(starts, cells, strict=True):
            assert line[start:].startswith(cell), (cell, line)
        assert line.endswith("  " + cells[-1])
    assert lines[1].startswith("ksm   fprobe      12     60.3 ms")
    assert lines[2].endswith("  skip (not root)")
    assert lines[3].endswith("  fail (walk p99 over budget)")


def test_empty() -> None:
    assert table([]) == "no results"
    assert table([{"program": "x", "scenarios": []}]) == "no results"


def test_table_of_a_result_directory(tmp_path: Path) -> None:
    for doc in DOCS:
        results.write_results(tmp_path, doc)
    text = summary.table(results.load_results(tmp_path))
    # load_results() sorts by program name; the table puts the suite's own
    # programs in the runner's order.
    assert [d["program"] for d in results.load_results(tmp_path)] == [
        "rmap_anon", "rmap_file", "rmap_ksm"]
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["ksm", "anon", "file"]


def test_other_programs_come_after_the_suite_in_name_order() -> None:
    def doc(program: str) -> dict[str, Any]:
        return {"program": program, "status": "pass", "scenarios": [{"name": program}]}

    text = table([doc("zz_extra"), doc("rmap_file"), doc("aa_extra"), doc("rmap_ksm")])
    assert [line.split()[0] for line in text.splitlines()[1:]] == [
        "rmap_ksm", "rmap_file", "aa_extra", "zz_extra"]


def test_a_row_per_caller_of_the_walks() -> None:
    doc = {"schema": results.SCHEMA, "program": "rmap_anon", "status": "pass",
           "backend": {"name": "fprobe"},
           "scenarios": [{"name": "anon", "walks": walks(4, 50_000, 90_000, 99_000, 99_000),
                          "syscall": walks(2, 1_000_000, 1_000_000, 1_000_000, 1_000_000),
                          "walks_by_caller": [
                              {"caller": "try_to_migrate",
                               "walks": walks(2, 90_000, 95_000, 99_000, 99_000)},
                              {"caller": "remove_migration_ptes",
                               "walks": walks(2, 12_000, 13_000, 14_000, 14_000)},
                              {"caller": "never_seen", "walks": {"count": 0}}]}]}
    got = rows([doc])
    assert [r[0] for r in got] == ["anon", "  try_to_migrate", "  remove_migration_ptes"]
    assert got[1][2:7] == ("2", "90 us", "95 us", "99 us", "99 us")
    metrics = results.metrics({**doc, "scenarios": [{
        **doc["scenarios"][0],
        "walks_corrected": walks(4, 47_000, 87_000, 96_000, 96_000),
        "failed_triggers": {"count": 1}}]})
    assert metrics["anon_walks_try_to_migrate_p50"] == (90_000, "ns")
    assert metrics["anon_walks_remove_migration_ptes_p99"] == (14_000, "ns")
    assert "anon_walks_never_seen_p50" not in metrics
    assert metrics["anon_walks_corrected_p50"] == (47_000, "ns")
    assert metrics["anon_failed_triggers"] == (1, "triggers")
