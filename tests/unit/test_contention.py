"""lock:contention_begin/end text to waits (rmapbench/tracing/contention.py):
on a trace recorded in a stock 6.12 guest (fixtures/contention_ksm_6.12.trace,
its provenance in its header), and on one synthesized in the same format
(include/trace/events/lock.h: "%p (flags=%s)" and "%p (ret=%d)") for what
that run did not show: other lock types, an end without its begin, a begin
without its end."""

from __future__ import annotations

from pathlib import Path

from rmapbench.tracing import contention

RECORDED = Path(__file__).resolve().parent / "fixtures" / "contention_ksm_6.12.trace"
WALKER, HELPER = 190, 193  # the recorded run's test process and mprotect helper

TRACE = """\
# tracer: nop
#
python3-194     [001] .....  1000.000100: contention_begin: 00000000e757e69a (flags=WRITE)
python3-194     [001] .....  1000.008370: contention_end: 00000000e757e69a (ret=0)
python3-194     [001] .....  1000.010000: contention_begin: 000000001234abcd (flags=SPIN)
python3-194     [001] d....  1000.010004: contention_end: 000000001234abcd (ret=0)
python3-201     [000] .....  1000.020000: contention_begin: 00000000e757e69a (flags=READ)
python3-201     [000] .....  1000.020500: contention_end: 00000000e757e69a (ret=0)
python3-194     [001] .....  1000.030000: contention_end: 00000000deadbeef (ret=0)
python3-194     [001] .....  1000.040000: contention_begin: 00000000e757e69a (flags=WRITE)
"""


def test_pairs_begin_and_end_per_pid() -> None:
    p = contention.parse(TRACE)
    assert [(w.pid, w.kind, w.ns) for w in p.waits] == [
        (194, "rwsem-write", 8_270_000),
        (194, "spinlock", 4_000),
        (201, "rwsem-read", 500_000),
    ]
    assert p.unmatched_ends == 1
    assert p.unfinished == 1


def test_summary_counts_rwsem_waits_per_lock() -> None:
    s = contention.summary(contention.parse(TRACE).waits)
    assert s["rwsem_waits"] == 2
    assert s["rwsem_wait_ns"] == 8_770_000
    assert s["rwsem_write_wait_ns"] == 8_270_000
    assert s["rwsem_read_wait_ns"] == 500_000
    assert s["rwsem_max_wait_ns"] == 8_270_000
    assert s["all_wait_ns"] == 8_774_000
    locks = s["locks"]
    assert isinstance(locks, list)
    assert locks[0] == {
        "lock": "00000000e757e69a",
        "kind": "rwsem-write",
        "waits": 1,
        "total_ns": 8_270_000,
        "max_ns": 8_270_000,
    }


def test_lock_kinds() -> None:
    assert contention.lock_kind("WRITE") == "rwsem-write"
    assert contention.lock_kind("READ") == "rwsem-read"
    assert contention.lock_kind("SPIN|READ") == "rwlock-read"
    assert contention.lock_kind("PERCPU|WRITE") == "percpu-rwsem-write"
    assert contention.lock_kind("MUTEX") == "mutex"
    assert contention.lock_kind("") == "other"


def test_by_op_places_each_wait_inside_its_operation() -> None:
    def wait(a: int, b: int) -> contention.Wait:
        return contention.Wait(1, "l", "rwsem-write", a, b, 0)

    starts, ends = [100, 200, 400], [150, 350, 500]
    waits = [wait(110, 140), wait(210, 350), wait(160, 170), wait(390, 410), wait(450, 460),
             wait(10, 20), wait(480, 600)]  # fmt: skip
    # Between two operations, straddling a start, before the first, past an end: none.
    assert contention.by_op(waits, starts, ends) == [0, 1, None, None, 2, None, None]
    assert contention.by_op(waits, [], []) == [None] * len(waits)


def test_recorded_trace_pairs_every_wait() -> None:
    p = contention.parse(RECORDED.read_text())
    assert (len(p.waits), p.unfinished, p.unmatched_ends) == (24, 0, 0)
    assert {(w.pid, w.kind) for w in p.waits} == {(HELPER, "rwsem-write"), (WALKER, "rwsem-read")}
    assert len({w.lock for w in p.waits}) == 1  # the test's anon_vma root rwsem
    assert all(w.ret == 0 and w.ns > 0 for w in p.waits)
    s = contention.summary([w for w in p.waits if w.pid == HELPER])
    assert (s["rwsem_waits"], s["rwsem_write_wait_ns"], s["rwsem_max_wait_ns"]) == (
        11, 103_117_000, 12_231_000)  # fmt: skip
    s = contention.summary([w for w in p.waits if w.pid == WALKER])
    assert (s["rwsem_waits"], s["rwsem_read_wait_ns"], s["rwsem_max_wait_ns"]) == (
        13, 2_939_000, 679_000)  # fmt: skip


def test_recorded_trace_shows_the_hand_off_from_both_sides() -> None:
    """Each time the helper slept for writing, the walker's next read
    queued behind it once the writer had waited long enough to ask for
    the hand-off (4 ms and more under TCG), and got the lock after it."""
    waits = contention.parse(RECORDED.read_text()).waits
    readers = [w for w in waits if w.pid == WALKER]
    for writer in (w for w in waits if w.pid == HELPER):
        (reader,) = [r for r in readers if writer.begin_ns < r.begin_ns < writer.end_ns]
        assert reader.begin_ns - writer.begin_ns > 4_000_000
        assert reader.end_ns > writer.end_ns


def test_damaged_lines_are_counted_with_the_lost_events() -> None:
    """A begin or end that cannot be read is a wait missing, or one paired
    wrongly: counted as lost (it used to be skipped, and a pid of more
    than 4300 digits raised ValueError); a newer kernel's extra field is
    read; lost-events markers are counted."""
    lines = TRACE.split("\n")
    for i, cut in ((2, "(flags=WRI"), (3, "(ret=")):
        damaged = lines[i][: lines[i].index("(")] + cut
        p = contention.parse("\n".join([*lines[:i], damaged, *lines[i + 1 :]]))
        assert p.damage.unreadable == 1 and len(p.waits) == 2
    p = contention.parse(TRACE.replace("-194 ", "-" + "9" * 5000 + " ", 1))
    assert p.damage.unreadable == 1
    p = contention.parse(TRACE.replace("(ret=0)", "(ret=0) owner=3", 1))
    assert len(p.waits) == 3 and p.damage.lost_with(0) == 0
    p = contention.parse("CPU:1 [LOST 7 EVENTS]\n" + TRACE)
    assert len(p.waits) == 3 and p.damage.lost_with(2) == 7
