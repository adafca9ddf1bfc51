"""function_graph output (recorded in a Debian 6.12 guest) to walks."""

from __future__ import annotations

from pathlib import Path

from rmapbench.tracing import calibrate
from rmapbench.tracing.fgraph import FunctionGraph, graph_walks, parse_duration

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_recorded_anon_trace_gives_two_walks_per_migration() -> None:
    text = (FIXTURES / "fgraph_anon.trace").read_text()
    samples = text.split("# rmapbench sample ")[1:]
    assert len(samples) == 12
    for sample in samples:
        walks = graph_walks(sample, pid=0).walks
        assert len(walks) == 2, sample
        assert {w.page_type for w in walks} == {"anon"}
        assert all(w.pid == 187 and w.target is None and w.folio is None for w in walks)
    first = graph_walks(samples[0], pid=0).walks
    assert [w.duration_ns for w in first] == [828_889, 23_584]


def test_units_markers_and_closing_lines() -> None:
    text = "\n".join([
        " 1)  ksmd-40       | $ 2.022123 s  |  rmap_walk_ksm();",
        " 0)  my-prog-9      | # 3022.123 us |  } /* rmap_walk_file */",
        " 0)  python3-9      |   0.912 us    |  folio_lock();",
        " 0)  python3-9      |               |  rmap_walk_ksm() {",
        " 1)   1.500 ms    |  rmap_walk_ksm();",
    ])
    walks = graph_walks(text, pid=77).walks
    assert [(w.page_type, w.duration_ns, w.pid) for w in walks] == [
        ("ksm", 2_022_123_000, 40),
        ("file", 3_022_123, 9),
        ("ksm", 1_500_000, 77),
    ]


def test_parse_duration_has_no_float_rounding() -> None:
    assert parse_duration("0.001", "us") == 1
    assert parse_duration("123456.789", "us") == 123_456_789
    assert parse_duration("2", "s") == 2_000_000_000


def test_lines_with_the_graph_tracers_other_options() -> None:
    # What kernel/trace/trace_functions_graph.c prints with funcgraph-retval
    # (6.5+), funcgraph-retaddr (6.13+) and funcgraph-args (6.15+) on: the
    # tracer's options, which an instance cannot keep to itself.
    text = "\n".join([
        " 1)  python3-187   |   3.456 us    |  rmap_walk_anon(); /* = 0x0 */",
        " 1)  python3-187   | ! 202.123 ms  |  } /* rmap_walk_ksm = 0x0 */",
        " 1)  python3-187   | ! 202.124 ms  |  } /* rmap_walk_ksm = -12 */",
        " 0)  python3-187   |   2.000 us    |  rmap_walk_anon(); /* <-try_to_migrate+0x7c/0xa0 */",
        " 0)  python3-187   |   4.012 us    |  rmap_walk_anon(folio=0xffffea0004e6a180, "
        "rwc=0xffffc90000d4fb38, locked=0);",
        " 0)  python3-187   |   5.000 us    |  rmap_walk_file(folio=0xffffea0004e6a1c0, "
        "rwc=0xffffc90000d4fb38, locked=1); /* = 0x1 */",
        " 0)  python3-187   |               |  rmap_walk_ksm(folio=0xffffea0004e6a200, rwc=0x1) {",
    ])
    walks = graph_walks(text, pid=0).walks
    assert [(w.page_type, w.duration_ns) for w in walks] == [
        ("anon", 3_456),
        ("ksm", 202_123_000),
        ("ksm", 202_124_000),
        ("anon", 2_000),
        ("anon", 4_012),
        ("file", 5_000),
    ]
    assert graph_walks(text, pid=0).lost == 0


def test_damaged_lines_are_counted_not_read() -> None:
    """Each of these used to be read as a walk of another duration,
    raise ValueError, or vanish: now each is a walk lost (the sample
    counts as having lost events), and a lost-events marker is counted."""
    good = " 0)  python3-187   | ! 828.889 us  |  rmap_walk_anon();"
    damaged = [
        " 0)  python3-187   | ! +7 us  |  rmap_walk_anon();",  # a number of no kind
        " 0)  python3-187   | ! 1.2.3 us  |  rmap_walk_anon();",  # was ValueError
        " 0)  python3-187   | ! 828.889 us  |  rmap_walk_an",  # cut short
        " 0)  python3-187   | ! 828.889 us  |  folio_lock();",  # the filter lets none through
    ]
    for line in damaged:
        p = graph_walks(f"{good}\n{line}\n", pid=0)
        assert [w.duration_ns for w in p.walks] == [828_889] and p.lost == 1, line
    p = graph_walks(f"CPU:0 [LOST 3 EVENTS]\n{good}\n", pid=0)
    assert (len(p.walks), p.lost, p.lost_marked) == (1, 0, 3)
    switch = " ------------------------------------------\n 0)  python3-187   =>  kworker-12  \n"
    opened = " 0)  python3-187   |               |  rmap_walk_ksm() {\n"
    assert graph_walks(switch + opened + good, pid=0).lost == 0  # what the graph also prints


def test_interrupt_brackets_are_not_damage() -> None:
    # funcgraph-irqs: an interrupt during a long walk, as print_graph_irq() writes it.
    text = "\n".join([
        " 0)  python3-187   |               |  rmap_walk_ksm() {",
        " 0)  python3-187   |   ==========> |",
        " 0)  python3-187   |   <========== |",
        " 0)  python3-187   | @ 150123.4 us |  } /* rmap_walk_ksm */",
    ])
    p = graph_walks(text, pid=0)
    assert [w.duration_ns for w in p.walks] == [150_123_400] and p.lost == 0


def test_calibrations_returns_in_the_walk_instance_are_passed_over() -> None:
    """Recorded in a Debian 6.12.118 guest (rmap_ksm --backend fgraph): the
    walk instance also shows the return of the getppid() that the
    calibration's instance timed right after each firing."""
    text = (FIXTURES / "fgraph_ksm_beside.trace").read_text()
    # Each sample's text follows its "# rmapbench sample N" line.
    samples = [s.split("\n", 1)[1] for s in text.split("# rmapbench sample ")[1:]]
    assert samples and all("} /* __do_sys_getppid */" in s for s in samples)
    graph = FunctionGraph(191, {"rmap_walk_ksm": "ksm"})
    assert all(graph.walks(s).lost == 1 for s in samples)  # unless told
    calibrate._beside(graph, calibrate.FUNCTION)
    for sample in samples:
        p = graph.walks(sample)
        assert p.lost == 0 and len(p.walks) == 2, sample
        assert all(w.page_type == "ksm" and w.duration_ns > 10_000_000 for w in p.walks)
    # Only that function: another's return is still damage.
    assert graph.walks(" 0)   python-191   | + 3.2 us   |  } /* __do_sys_getpid */\n").lost == 1
