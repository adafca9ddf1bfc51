"""The probe-cost calibration's arithmetic and its parsing of the
backends' own output on the calibration function (no tracefs)."""

from __future__ import annotations

import pytest

from rmapbench.bench import tally
from rmapbench.tracing import calibrate, fgraph
from rmapbench.tracing.calibrate import TARGETS, summarise
from rmapbench.tracing.probes import DynamicProbe


def test_summary_is_median_quartiles_and_half_the_iqr() -> None:
    c = summarise("fprobe", "m", "f", [2900, 3000, 3100, 3200, 9000], 2800)
    assert c.cost_ns == 3100 and (c.p25_ns, c.p75_ns) == (3000, 3200)
    assert c.uncertainty_ns == 100 and c.firings == 5 and c.body_bound_ns == 2800
    assert c.as_dict()["unavailable"] is None
    assert summarise("fprobe", "m", "f", [], None).unavailable


def test_correction_subtracts_the_cost_and_never_goes_below_zero() -> None:
    assert tally.corrected([10_000, 3_000, 2_000], 2_500) == [7_500, 500, 0]
    assert tally.corrected([10_000], None) == [10_000]  # unknown cost: raw


def test_fprobe_on_the_calibration_function_pairs_in_the_kernel() -> None:
    p = DynamicProbe("fprobe", TARGETS, tag="c")
    p.group, p._hist = "rmapbench_182", True
    f = calibrate.FUNCTION
    text = "".join(
        f"         python3-182     [000] ...1.    21.{t:06d}: {f}_entry: ({f}+0x0/0x30) "
        f"folio=0xffffc90000b27f58 mapping=0x0 locked=0\n"
        f"         python3-182     [000] ...1.    21.{t + 3:06d}: {f}_exit: "
        f"(do_syscall_64+0x82/0x190 <- {f})\n"
        f"         python3-182     [000] ...4.    21.{t + 4:06d}: rmapbench_182_{f}: "
        f"lat={lat} folio=18446683600581230424 mapping=0 locked=0\n"
        for t, lat in ((100, 2984), (200, 3011), (300, 2950))
    )
    walks = p.walks(text).walks
    assert [w.duration_ns for w in walks] == [2984, 3011, 2950]
    # The same fetches as a walk's: folio, mapping and locked, by the exit
    # event (after the interval), or by the entry where the kernel says no.
    fetch = "folio=$arg1:x64 mapping=+24($arg1):x64 locked=$arg3:u8"
    entry, exit_ = p._definitions(f)
    assert entry.endswith(f"{f}") and exit_.endswith(f"%return {fetch}")
    p.args_on_exit = False
    entry, exit_ = p._definitions(f)
    assert entry.endswith(fetch) and exit_.endswith("%return")


def test_fgraph_on_the_calibration_function() -> None:
    text = (
        f" 0)  python3-187   |   1.512 us    |  {calibrate.FUNCTION}();\n"
        " 0)  python3-187   | + 23.584 us   |  rmap_walk_anon();\n"
    )
    walks = fgraph.graph_walks(text, 187, TARGETS).walks
    assert [w.duration_ns for w in walks] == [1512]


@pytest.mark.parametrize("form", ["duration", "start_end"])
def test_tracepoint_forms(form: str) -> None:
    from rmapbench.tracing.tracepoint import Tracepoint

    tp = Tracepoint()
    tp.form = form
    c = calibrate.for_backend(tp)
    if form == "duration":
        assert c.firings == 0 and not c.unavailable  # nothing inside the window
    else:
        assert c.unavailable


def test_after_firing_intervals_go_beside_the_loops_correction() -> None:
    empty = summarise("fprobe", "m", "f", [2100, 2200, 2300, 2400], 2800)
    c = calibrate.with_after_firing(empty, [9000, 8000, 12000, 10000, 30000])
    assert (c.cost_ns, c.firings, c.uncertainty_ns) == (2250, 4, 75)  # still the loop's
    assert (c.after_firing_firings, c.after_firing_cost_ns) == (5, 10000)
    assert (c.after_firing_p25_ns, c.after_firing_p75_ns) == (9000, 12000)
    assert c.after_firing_uncertainty_ns == 1500 and c.as_dict()["after_firing_cost_ns"] == 10000
    assert calibrate.with_after_firing(empty, []).after_firing_firings == 0
    failed = calibrate.with_after_firing(calibrate.unavailable("kprobe", "no"), [9000])
    assert failed.unavailable and not failed.after_firing_firings


def test_after_firings_times_only_the_first_call_after_a_timed_firing() -> None:
    class Inst:
        lost_mark = 0

        def __init__(self, texts: list[str]) -> None:
            self.texts = texts

        def take(self) -> str:
            return self.texts.pop(0)

        def lost_events(self) -> int:
            return 0

    f = calibrate.FUNCTION
    p = DynamicProbe("fprobe", TARGETS, tag="c")
    p.group, p._hist = "rmapbench_182", True

    def synth(*lats: int) -> str:
        return "".join(
            f"  python3-182 [000] ...4.  21.{100 + i:06d}: rmapbench_182_{f}: "
            f"lat={lat} folio=0 mapping=0 locked=0\n"
            for i, lat in enumerate(lats)
        )

    after = calibrate.AfterFirings.__new__(calibrate.AfterFirings)
    after.durations, after._probe = [], p
    after._inst = Inst([synth(9000), synth(8000, 2000), synth()])  # type: ignore[assignment]
    after.collect(counted=False)  # a warm-up's
    after.collect(counted=True)
    after.collect(counted=True)  # none recorded: nothing counted
    assert after.durations == [8000]


def test_the_calibration_probes_registers_are_not_read() -> None:
    """The calibration's probe fetches the walks' arguments from whatever
    __do_sys_getppid's registers hold: a `locked` of 37, a `mapping` the
    fetch faulted on. Its intervals are read all the same (a walk's
    probe with those would be damage)."""
    f = calibrate.FUNCTION
    lines = [
        f"  python3-182 [000] ...1.  21.000100: {f}_entry: ({f}+0x0/0x20)",
        f"  python3-182 [000] ...1.  21.000105: {f}_exit: (__x64_sys_getppid+0x12/0x20 <- {f})"
        " folio=0xffffc90000a3bf58 mapping=(fault) locked=37",
        f"  python3-182 [000] ...4.  21.000106: rmapbench_182_{f}: lat=4321"
        " folio=18446683600581541720 mapping=0 locked=37",
    ]
    for hist in (False, True):
        p = DynamicProbe("fprobe", TARGETS, tag="c")
        p.group, p._hist = "rmapbench_182", hist
        pairing = p.walks("\n".join(lines) + "\n")
        assert [w.duration_ns for w in pairing.walks] == [4321 if hist else 5000]
        assert pairing.lost_with(0) == 0
