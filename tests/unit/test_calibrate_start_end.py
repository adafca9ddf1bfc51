"""The start/end tracepoint form's calibration: the walks' in-kernel
pairing rebuilt on the getppid system call events, its trigger strings,
its parsing of the kernel's own output (recorded on the ground-truth
kernel) and the correction it yields (no tracefs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rmapbench.bench import tally
from rmapbench.machine.knobs import Journal
from rmapbench.tracing import calcache, calibrate, events, tracefs, tracepoint
from rmapbench.tracing.backend import Unavailable
from rmapbench.tracing.calibrate import Calibration, summarise
from rmapbench.tracing.tracefs import Instance, TraceFS
from rmapbench.tracing.tracepoint import SyscallPair, Tracepoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RECORDED = (FIXTURES / "tracepoint_syscall_calibration.trace").read_text()
FORMATS = FIXTURES / "syscall_truth_formats"
SYNTH = "rmapbench_81_c_getppid"  # the recorded run's


def _recorded_trigger(event: str) -> str:
    """The trigger as the kernel showed it, less what it adds (the default
    value, sort, size and clock, and the state)."""
    m = re.search(rf"^#\s+{event}:\s+(\S+) \[active\]$", RECORDED, re.MULTILINE)
    assert m
    shown = m.group(1).replace(":vals=hitcount", "").replace(":sort=hitcount:size=2048", "")
    return shown.replace(":clock=global", "")


def test_the_triggers_are_the_walks_pairing_on_other_fields() -> None:
    walks = tracepoint.start_end_pair("S", ("folio_addr", "rwc_addr"))
    cal = tracepoint.syscall_pair("S")
    # The same key (the task), the same variables, the same two fields
    # saved and carried; arm_pair() adds the instance's clock to both.
    same = {
        "folio_addr": "__syscall_nr",
        "rwc_addr": "common_pid",
        "rmap.rmap_walk_start": "syscalls.sys_enter_getppid",
    }

    def renamed(text: str) -> str:
        for a, b in same.items():
            text = text.replace(a, b)
        return text

    assert renamed(walks.entry_trigger()) == cal.entry_trigger()
    assert renamed(walks.exit_trigger()) == cal.exit_trigger()
    assert cal.entry_trigger() == (
        "hist:keys=common_pid:tsk=common_timestamp,s0k=__syscall_nr,s1k=common_pid"
    )
    assert cal.exit_trigger() == (
        "hist:keys=common_pid:latk=common_timestamp-$tsk,x0k=$s0k,x1k=$s1k:"
        "onmatch(syscalls.sys_enter_getppid).trace(S,$latk,__syscall_nr,common_pid,$x0k,$x1k)"
    )
    # int fields for int parameters: the kernel refuses a u64 synthetic
    # field fed from an int (trace_events_hist.c check_synth_field()).
    assert cal.fields() == "u64 lat; int nr; int pid; int start_nr; int start_pid"
    assert walks.fields() == "u64 lat; u64 folio; u64 rwc; u64 start_folio; u64 start_rwc"


def test_the_kernel_accepted_these_triggers() -> None:
    cal = tracepoint.syscall_pair(SYNTH)
    assert _recorded_trigger("sys_enter_getppid") == cal.entry_trigger()
    assert _recorded_trigger("sys_exit_getppid") == cal.exit_trigger()
    assert f"{SYNTH}\t{cal.fields()}" in RECORDED


def test_the_saved_fields_are_on_both_events_with_one_type() -> None:
    for name in ("sys_enter_getppid", "sys_exit_getppid"):
        fmt = (FORMATS / name).read_text()
        for key in tracepoint.SYSCALL_KEYS:
            assert re.search(rf"field:int {key};", fmt), (name, key)


def _fake_tracefs(tmp_path: Path, syscalls: bool = True, hist: bool = True
                  ) -> tuple[TraceFS, Instance]:  # fmt: skip
    names = ("sys_enter_getppid", "sys_exit_getppid") if syscalls else ()
    for name in names:
        d = tmp_path / "events" / "syscalls" / name
        d.mkdir(parents=True)
        (d / "format").write_text((FORMATS / name).read_text())
    (tmp_path / "events").mkdir(exist_ok=True)
    if hist:
        (tmp_path / "synthetic_events").write_text("")
    inst_path = tmp_path / "instances" / "x"
    for name in names:
        d = inst_path / "events" / "syscalls" / name
        d.mkdir(parents=True)
        (d / "trigger").write_text("")
        (d / "enable").write_text("0\n")
    (inst_path / "events" / "synthetic").mkdir(parents=True)
    journal = Journal(directory=tmp_path / "journal")
    return TraceFS(tmp_path, journal), Instance(inst_path, journal)


def test_arming_is_journaled_and_undone(tmp_path: Path) -> None:
    tfs, inst = _fake_tracefs(tmp_path)
    p = SyscallPair()
    (inst.path / "events" / "synthetic" / p.synth).mkdir()
    (inst.path / "events" / "synthetic" / p.synth / "enable").write_text("0\n")
    p.check(tfs)
    desc = p.arm(tfs, inst)
    assert desc.resolution_ns == 1
    cal = tracepoint.syscall_pair(p.synth)
    enter = inst.event_dir("syscalls", "sys_enter_getppid")
    exit_ = inst.event_dir("syscalls", "sys_exit_getppid")
    # Each trigger keeps the instance's clock (tracing/hist.py says why).
    assert (enter / "trigger").read_text() == cal.entry_trigger() + ":clock=mono\n"
    assert (exit_ / "trigger").read_text() == cal.exit_trigger() + ":clock=mono\n"
    assert (enter / "enable").read_text() == "1\n" == (exit_ / "enable").read_text()
    tfs.journal.restore()
    # Undone newest first: events disabled, triggers removed, then the
    # synthetic event they fed.
    assert (enter / "enable").read_text().strip() == "0" == (exit_ / "enable").read_text().strip()
    removed = [(d / "trigger").read_text().splitlines()[-1] for d in (exit_, enter)]
    assert removed == [f"!{cal.exit_trigger()}:clock=mono", f"!{cal.entry_trigger()}:clock=mono"]
    assert (tmp_path / "synthetic_events").read_text().splitlines()[-1] == f"!{p.synth}"


@pytest.mark.parametrize(
    ("syscalls", "hist", "why"),
    [(False, True, "CONFIG_FTRACE_SYSCALLS"), (True, False, "CONFIG_HIST_TRIGGERS")],
)
def test_without_syscall_events_or_hist_it_is_unavailable(
    tmp_path: Path, syscalls: bool, hist: bool, why: str
) -> None:
    tfs, _ = _fake_tracefs(tmp_path, syscalls, hist)
    with pytest.raises(Unavailable, match=why):
        SyscallPair().check(tfs)


def test_the_recorded_intervals() -> None:
    pairing = SyscallPair().walks(RECORDED.replace(SYNTH, SyscallPair().synth))
    durations = [w.duration_ns for w in pairing.walks]
    # The first call after arming is slow (the hist map's first entry,
    # code translated the first time under TCG): the median does not see it.
    assert durations == [1188168, 20310, 2824, 2343, 2063, 2073, 2093, 2113, 2123, 2073]
    assert pairing.unmatched_exits == 0
    c = summarise("tracepoint", "m", calibrate.SYSCALL_PAIR, durations, 1620)
    assert (c.cost_ns, c.p25_ns, c.p75_ns, c.uncertainty_ns) == (2118, 2078, 2704, 313)  # type 7


def test_an_interval_whose_start_was_another_is_not_counted() -> None:
    text = RECORDED.replace(SYNTH, "s")
    one = "lat=2343 nr=110 pid=81 start_nr="
    broken = text.replace(f"{one}110", f"{one}39")
    negative = broken.replace("lat=2824 ", f"lat={(1 << 64) - 5} ")
    pairing = tracepoint.syscall_intervals(events.parse(negative), "s")
    assert len(pairing.walks) == 8 and pairing.unmatched_exits == 2


def _start_end(paired: bool = True) -> Tracepoint:
    tp = Tracepoint("start-end")
    tp.form, tp.keys, tp.paired_in_kernel = "start_end", ("folio_addr", "rwc_addr"), paired
    return tp


def test_each_form_gets_its_own_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, str, object]] = []

    def fake_run(make: object, method: str, buffer_kb: int = 256, firings: int = 200,
                 function: str = calibrate.FUNCTION) -> Calibration:  # fmt: skip
        ran.append((method, function, make))
        return summarise("tracepoint", method, function, [2100, 2118, 2200], 1620)

    monkeypatch.setattr(calibrate, "run", fake_run)
    c = calibrate.for_backend(_start_end())
    (method, function, make), = ran
    assert make is SyscallPair and function == "syscalls:sys_enter_getppid/sys_exit_getppid"
    assert c.function == function and c.cost_ns == 2118 and c.body_bound_ns == 1620
    assert "sys_enter_getppid" in method and "hist trigger keyed by the task" in method
    # Paired in user space (no hist triggers): nothing to mirror it with.
    assert "user space" in calibrate.for_backend(_start_end(False)).unavailable
    v4 = Tracepoint("v4")
    v4.form = "duration"
    assert calibrate.for_backend(v4).firings == 0 and not calibrate.for_backend(v4).unavailable
    assert len(ran) == 1
    assert calibrate.machinery(v4) is None and calibrate.machinery(_start_end(False)) is None


def test_the_cache_keeps_the_forms_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(calcache.ENV, "/nonexistent")
    v4 = Tracepoint("v4")
    v4.form = "duration"
    se = calcache._key(_start_end(), 256, 200)
    other = calcache._key(v4, 256, 200)
    assert se is not None and other is not None
    assert se["form"] == "start_end" and se["function"] == calibrate.SYSCALL_PAIR
    assert other["form"] == "duration" and other["function"] == calibrate.FUNCTION
    code = se["code"]
    assert isinstance(code, list) and any(c[0] == tracepoint.__file__ for c in code)


def test_the_start_end_walks_less_the_calibrated_cost() -> None:
    """The recorded start/end walks (tracepoint_v5_hist.trace) corrected
    by the recorded calibration: each less the median empty interval."""
    text = (FIXTURES / "tracepoint_v5_hist.trace").read_text()
    m = re.search(r"(rmapbench_\d+_rmap_walk):", text)
    assert m
    tp = _start_end()
    tp.synth = m.group(1)
    walks = [w.duration_ns for w in tp.walks(text).walks]
    cal = SyscallPair().walks(RECORDED.replace(SYNTH, SyscallPair().synth)).walks
    cost = summarise("tracepoint", "m", "f", [w.duration_ns for w in cal], None).cost_ns
    corrected = tally.corrected(walks, cost)
    assert walks[0] == 586880 and corrected[0] == 586880 - 2118
    assert corrected == [max(0, w - 2118) for w in walks] and all(c > 0 for c in corrected)



def test_the_triggers_keep_an_instance_without_mono_on_global(tmp_path: Path) -> None:
    """A kernel whose trace_clock lists no mono gets global, and the
    pairing's triggers name the instance's clock, so arming them changes
    no clock (a hist trigger without clock= would set global)."""
    assert tracefs.pick_clock("local [global] counter uptime perf mono mono_raw\n") == "mono"
    assert tracefs.pick_clock("[local] global counter uptime perf mono_raw\n") == "global"
    tfs, inst = _fake_tracefs(tmp_path)
    inst.clock = "global"
    p = SyscallPair()
    (inst.path / "events" / "synthetic" / p.synth).mkdir()
    (inst.path / "events" / "synthetic" / p.synth / "enable").write_text("0\n")
    p.check(tfs)
    p.arm(tfs, inst)
    for name in ("sys_enter_getppid", "sys_exit_getppid"):
        trigger = (inst.event_dir("syscalls", name) / "trigger").read_text()
        assert trigger.endswith(":clock=global\n")
