"""The bystander's statistics (rmapbench/bench/bystander/): which
operations overlapped a walk, during/quiet summaries, the stall, and the
walker's lock holds and waits; the --bystander and --workload options."""

from __future__ import annotations

import pytest

from rmapbench.bench import cases
from rmapbench.bench.bystander import entry, helper, holds, walker
from rmapbench.bench.bystander.crowd import Recorded, WalkerWaits
from rmapbench.bench.bystander.helper import Ops
from rmapbench.ksft import options, stats, workloads
from rmapbench.ksft.cli import UsageError
from rmapbench.tracing.contention import Wait

MS = 1_000_000


def ops(spans: list[tuple[int, int]]) -> Ops:
    return Ops([a for a, _ in spans], [b for _, b in spans])


def test_overlapping_takes_ops_that_began_inside_a_walk() -> None:
    walks = [(100, 200), (500, 900)]
    o = ops([(10, 20), (90, 110), (150, 160), (199, 300), (200, 210), (400, 1000), (950, 960)])
    # (90, 110) and (400, 1000) overlap a walk but began outside one.
    assert entry.overlapping(o, walks) == [2, 3, 4]
    assert entry.overlapping(o, []) == []


def test_evaluate_stall_and_waits() -> None:
    # Quiet: fast ops. During: one op blocked for most of a 60 ms walk.
    quiet = ops([(i * 100_000, i * 100_000 + 50_000) for i in range(200)])
    fast = [(i * 100_000, i * 100_000 + 50_000) for i in range(100)]
    blocked = [(20 * MS, 75 * MS)]
    during = ops([*fast, *blocked])
    wait = Wait(42, "00000000e757e69a", "rwsem-write", 30 * MS, 38 * MS, 0)
    rec = Recorded("mprotect", 42, during, quiet, [wait], [], 0)
    e = entry.evaluate(rec, [(0, 5 * MS), (15 * MS, 80 * MS)], "ksm")
    assert e["lock"] == "anon_vma"
    assert e["ops"] == 101
    assert e["overlapped"] == 52  # 51 fast ops began in the first walk, and the blocked one
    assert e["during"]["max_ns"] == 55 * MS
    assert e["quiet"]["p99_ns"] == 50_000
    assert e["stall"]["max_ns"] == 55 * MS - 50_000
    assert e["stall"]["p99_ns"] == e["during"]["p99_ns"] - 50_000
    c = e["contention"]["during"]
    assert c["rwsem_wait_ns"] == 8 * MS <= e["during"]["max_ns"]
    assert e["contention"]["quiet"]["rwsem_waits"] == 0
    assert e["contention"]["outside_ops"] == 0
    m = entry.metric_values(e)
    assert m["stall_max_ns"] == e["stall"]["max_ns"]
    assert m["rwsem_wait_ns"] == 8 * MS


def test_waits_count_as_during_only_inside_ops_begun_during_walks() -> None:
    # CI once saw an 8.4 ms wait beside a 4.8 ms longest op "during": the
    # wait was of an op begun between the timed walks (a warm-up's, an
    # untimed page's), and "during" summed every wait of the sampling run.
    slow_outside = (10 * MS, 20 * MS)  # begins before the walk
    inside = (31 * MS, 33 * MS)
    during = ops([slow_outside, inside, (40 * MS, 41 * MS)])
    waits = [
        Wait(42, "a", "rwsem-write", 11 * MS, 19 * MS, 0),
        Wait(42, "a", "rwsem-write", 31 * MS + 10, 32 * MS, 0),
        Wait(42, "b", "rwsem-read", 35 * MS, 36 * MS, 0),  # between two ops
    ]
    rec = Recorded("mprotect", 42, during, ops([(0, 10)]), waits, [], 0)
    e = entry.evaluate(rec, [(30 * MS, 38 * MS)], "ksm")
    assert e["overlapped"] == 1
    c = e["contention"]
    assert c["during"]["rwsem_waits"] == 1
    assert c["during"]["rwsem_max_wait_ns"] <= e["during"]["max_ns"] == 2 * MS
    assert c["sampling"]["rwsem_waits"] == 3
    assert c["sampling"]["rwsem_max_wait_ns"] == 8 * MS <= e["sampling"]["max_ns"]
    assert c["outside_ops"] == 1


def test_evaluate_without_timed_walks_or_tracepoints() -> None:
    rec = Recorded("fork", 7, ops([(0, 10), (20, 40)]), ops([(0, 10)]), None, None)
    e = entry.evaluate(rec, None, "file")
    assert e["overlapped"] is None
    assert e["during"]["count"] == 2
    assert e["lock"] == "i_mmap"
    assert e["contention"] == {"unavailable": "no lock contention tracepoints"}
    assert "rwsem_wait_ns" not in entry.metric_values(e)


def test_ops_from_bytes() -> None:
    import array

    a = array.array("q", [1, 5, 10, 30])
    o = helper.Ops.from_bytes(a.tobytes())
    assert o.latencies == [4, 20]


def test_away_from_the_tests_cpu() -> None:
    assert helper.away_from({0, 1}, 0) == {1}
    assert helper.away_from({0}, 0) == {0}


def test_lock_holds_ksm_from_visits() -> None:
    visits = {
        "searches": {"count": 4, "p50": 384, "max": 512},
        "visits": {"count": 4, "p50": 765466},
        "by_caller": [
            {"caller": "migrate_folio_move", "walk_p50_ns": 67_800_000, "searches": {"p50": 512}},
            {"caller": "try_to_migrate", "walk_p50_ns": 36_000_000, "searches": {"p50": 256}},
        ],
    }
    h = holds.lock_holds("ksm", stats.summarize([50 * MS]), visits)
    assert h["acquisitions_per_walk"] == {"p50": 384, "max": 512, "exact": True}
    assert h["longest_hold_ns"] == round(36_000_000 / 256)
    assert h["longest_hold_exact"] is False
    assert holds.lock_holds("ksm", stats.EMPTY, None)["acquisitions_per_walk"] is None
    f = holds.lock_holds("file", stats.summarize([100, 300]), None)
    assert f["lock"] == "i_mmap (read)"
    assert f["longest_hold_ns"] == 300


POLICIES = {name: cls.policy for name, cls in cases.SCENARIOS.items()}


def test_bystander_option() -> None:
    o = options.parse("rmap_ksm", ["--bystander", "mprotect,fork"], "ksm", POLICIES)
    assert o.bystander == ["mprotect", "fork"]
    assert options.parse("rmap_ksm", [], "ksm", POLICIES).bystander == []
    for bad in ("nope", "mprotect,mprotect", ","):
        with pytest.raises(UsageError):
            options.parse("rmap_ksm", ["--bystander", bad], "ksm", POLICIES)


def test_workload_expands_and_explicit_options_win() -> None:
    o = options.parse("rmap_ksm", ["--workload", "jvm", "--pages", "600"], "ksm", POLICIES)
    assert o.case == ["ksm"]
    assert o.pages == 600
    assert o.bystander == ["mprotect"]
    assert o.count_visits
    real = options.parse("rmap_ksm", ["--workload", "jvm:real"], "ksm", POLICIES)
    assert real.pages == 20000
    with pytest.raises(UsageError):
        options.parse("rmap_ksm", ["--workload", "nope"], "ksm", POLICIES)


@pytest.mark.parametrize("name", list(workloads.WORKLOADS))
def test_every_workload_parses_for_its_case(name: str) -> None:
    w = workloads.WORKLOADS[name]
    for real in (False, True):
        o = options.parse("p", ["--workload", name + (":real" if real else "")], w.case, POLICIES)
        assert o.case == [w.case]
        assert o.bystander
        assert not options.not_applicable(o, POLICIES[w.case])
    assert cases.selection(["--workload", name], env={}) == [w.case]
    # A stopping rule replaces the small size's fixed --samples count (it
    # was refused as though --samples had been given with --precision).
    o = options.parse("p", ["--workload", name, "--precision", "5"], w.case, POLICIES)
    assert o.precision == 5 and "samples" not in o.given and o.bystander


def _doc() -> dict[str, object]:
    rec = Recorded(
        "mprotect",
        42,
        ops([(0, 50_000), (1 * MS, 9 * MS)]),
        ops([(0, 40_000), (100_000, 150_000)]),
        [Wait(42, "00000000e757e69a", "rwsem-write", 2 * MS, 8 * MS, 0)],
        [],
    )
    item = entry.evaluate(rec, [(0, 10 * MS)], "ksm")
    lock = holds.lock_holds("anon", stats.summarize([1000]), None)
    walker_waits = [Wait(40, "00000000e757e69a", "rwsem-read", 3 * MS, 4 * MS, 0)]
    waits = walker.evaluate(WalkerWaits([40], walker_waits, []), [(0, 10 * MS)], set())
    return {
        "program": "rmap_ksm",
        "status": "pass",
        "scenarios": [
            {"name": "ksm", "bystanders": [item], "lock_holds": lock, "walker_waits": waits}
        ],
    }


def test_bystander_metrics_are_exported() -> None:
    from rmapbench.ksft import results

    m = results.metrics(_doc())
    assert m["ksm_bystander_mprotect_during_p99"][1] == "ns"
    assert m["ksm_bystander_mprotect_stall_max"] == (8 * MS - 50_000, "ns")
    assert m["ksm_bystander_mprotect_overlapped"] == (2, "ops")
    assert m["ksm_bystander_mprotect_rwsem_wait"] == (6 * MS, "ns")
    assert m["ksm_lock_acquisitions_per_walk"] == (1, "acquisitions")
    assert m["ksm_walker_rwsem_wait"] == (1 * MS, "ns")
    assert m["ksm_walker_rwsem_max_wait"] == (1 * MS, "ns")
    assert "rmap_ksm_ksm_bystander_mprotect_stall_p99 pass" in " ".join(results.lava_lines(_doc()))


def test_summary_adds_a_bystander_table() -> None:
    from rmapbench.ksft import summary

    text = summary.table([_doc()])
    assert "stall p99" in text and "walker wait" in text
    assert "mprotect" in text.splitlines()[-1]
    assert text.splitlines()[-1].split()[-2:] == ["1", "ms"]  # the walker's 1 ms
    assert "stall p99" not in summary.table([{"program": "rmap_ksm", "scenarios": []}])


def test_compare_keys_bystander_samples() -> None:
    from rmapbench.analysis import samples
    from rmapbench.analysis.resultset import Run

    run = Run(_doc())
    keys = [k for k, _ in samples.run_series(run, "bystander-mprotect")]
    assert [k.metric for k in keys] == ["bystander-mprotect"]


def test_walker_waits_placed_inside_timed_walks() -> None:
    # The walker (pid 40) queues for reading behind the helper (pid 42),
    # which has asked for a hand-off: its waits on that lock lie inside
    # the walks; one wait of another lock between two walks.
    lock = "00000000e757e69a"
    helper_waits = [Wait(42, lock, "rwsem-write", 11 * MS, 16 * MS, 0)]
    rec = Recorded("mprotect", 42, ops([(10 * MS, 17 * MS)]), ops([(0, 10)]), helper_waits, [])
    waits = [
        Wait(40, lock, "rwsem-read", 15 * MS, 16 * MS, 0),
        Wait(40, lock, "rwsem-read", 32 * MS, 32 * MS + 300_000, 0),
        Wait(40, "0000000011112222", "mutex", 25 * MS, 26 * MS, 0),
    ]
    w = walker.evaluate(WalkerWaits([40], waits, []), [(10 * MS, 20 * MS), (30 * MS, 40 * MS)],
                        walker.bystander_locks([rec]))  # fmt: skip
    assert w["pids"] == [40]
    assert w["during_walks"]["rwsem_waits"] == 2
    assert w["during_walks"]["rwsem_read_wait_ns"] == 1_300_000
    assert w["during_walks"]["rwsem_max_wait_ns"] == 1 * MS
    assert w["sampling"]["all_wait_ns"] == 2_300_000
    assert w["on_bystander_locks"]["rwsem_waits"] == 2
    assert w["outside_walks"] == 1
    assert w["quiet"]["rwsem_waits"] == 0
    assert walker.metric_values(w) == {
        "walker_rwsem_wait_ns": 1_300_000,
        "walker_rwsem_max_wait_ns": 1 * MS,
    }


def test_walker_waits_without_timed_walks_or_tracepoints() -> None:
    waits = [Wait(40, "a", "rwsem-read", 1, 5, 0)]
    w = walker.evaluate(WalkerWaits([40], waits, []), None, set())
    assert w["during_walks"] is None and w["outside_walks"] is None
    assert w["sampling"]["rwsem_waits"] == 1
    assert walker.metric_values(w) == {}
    off = walker.evaluate(WalkerWaits([40], None, None), None, set())
    assert off == {"pids": [40], "unavailable": "no lock contention tracepoints"}


def test_walker_report_line() -> None:
    import io

    from rmapbench.ksft.ktap import KTAP

    out = io.StringIO()
    waits = [Wait(40, "a", "rwsem-read", 10, 2010, 0)]
    walker.report(KTAP("rmap_ksm", ["x"], stream=out),
                  walker.evaluate(WalkerWaits([40], waits, []), [(0, 5000)], {"a"}))  # fmt: skip
    lines = [ln for ln in out.getvalue().splitlines() if "walker" in ln]
    assert lines == [
        "# walker (pid 40) lock waits during walks: 1 rwsem, 2 us (read 2 us, write 0 ns), "
        "longest 2 us; while sampling: 1, 2 us; on the bystanders' lock: 1, 2 us; quiet: 0, 0 ns",
        "# rmap_ksm.walker_rwsem_wait_ns: 2000",
        "# rmap_ksm.walker_rwsem_max_wait_ns: 2000",
    ]


def test_walkers_waits_are_no_forking_bystanders() -> None:
    from rmapbench.bench.bystander import crowd
    from rmapbench.tracing.contention import Parsed

    parsed = Parsed([Wait(40, "a", "rwsem-read", 1, 2, 0), Wait(42, "a", "rwsem-write", 1, 3, 0),
                     Wait(99, "a", "rwsem-write", 4, 6, 0)])  # fmt: skip
    owners = {40: crowd.WALKER, 42: "fork"}
    assert [w.pid for w in crowd._waits_of(parsed, owners, "fork") or []] == [42, 99]
    assert [w.pid for w in crowd._waits_of(parsed, owners, crowd.WALKER) or []] == [40]


def _recorded() -> tuple[list[tuple[int, int]], Ops, list[Wait]]:
    """The recorded run of fixtures/contention_ksm_6.12.trace: its timed
    walks, the helper's operations that hold a wait, and every wait."""
    from pathlib import Path

    from rmapbench.tracing import contention

    text = (Path(__file__).resolve().parent / "fixtures" / "contention_ksm_6.12.trace").read_text()
    spans: dict[str, list[tuple[int, int]]] = {"walk": [], "op": []}
    for line in text.splitlines():
        if line.startswith("# rmapbench "):
            what, a, b = line.split()[2:]
            spans[what].append((int(a), int(b)))
    return spans["walk"], ops(spans["op"]), contention.parse(text).waits


def test_recorded_run_replays_to_what_it_reported() -> None:
    walks, helper_ops, waits = _recorded()
    helper_waits = [w for w in waits if w.pid == 193]
    rec = Recorded("mprotect", 193, helper_ops, ops([]), helper_waits, [], 0)
    c = entry.evaluate(rec, walks, "ksm")["contention"]
    assert (c["during"]["rwsem_waits"], c["during"]["rwsem_wait_ns"]) == (8, 78_422_000)
    assert (c["sampling"]["rwsem_waits"], c["sampling"]["rwsem_wait_ns"]) == (11, 103_117_000)
    assert c["outside_ops"] == 0
    mine = WalkerWaits([190], [w for w in waits if w.pid == 190], [])
    w = walker.evaluate(mine, walks, walker.bystander_locks([rec]))
    d = w["during_walks"]
    assert (d["rwsem_waits"], d["rwsem_wait_ns"], d["rwsem_max_wait_ns"]) == (7, 1_481_000, 470_000)
    assert (w["sampling"]["rwsem_waits"], w["sampling"]["rwsem_wait_ns"]) == (13, 2_939_000)
    assert w["on_bystander_locks"] == w["sampling"]
    assert w["outside_walks"] == 6
