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
    # The same fetch count as a walk's entry: folio, mapping and locked.
    entry, _ = p._definitions(f)
    assert entry.endswith("folio=$arg1:x64 mapping=+24($arg1):x64 locked=$arg3:u8")


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
