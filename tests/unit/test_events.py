"""Tests of rmapbench.tracing.events: trace text to walks.

The fprobe fixtures are real traces of a Debian 6.12 guest, one
`# rmapbench sample N` section per migration (sample 0 is a warm-up). Each
walk appears three times: the raw fprobe entry and exit events, and the
synthetic event the hist triggers paired in the kernel with a ns latency.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rmapbench.tracing import events
from rmapbench.tracing.events import Event, Pairing, Walk

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FUNCS = tuple(events.WALK_FUNCTIONS)  # rmap_walk_ksm, rmap_walk_anon, rmap_walk_file
ENTRY = {f"{f}_entry": f for f in FUNCS}
EXIT = {f"{f}_exit": f for f in FUNCS}
US = 1000  # the text output's resolution, in ns


def line(
    comm: str, pid: int, cpu: int, us: int, event: str, body: str, flags: str | None = "...1."
) -> str:
    """One line as the kernel prints it: `%16s-%-7d [%03d] flags %5lu.%06lu: `."""
    ts = f"{us // 1_000_000:5d}.{us % 1_000_000:06d}"
    flag_col = f" {flags}" if flags is not None else ""
    return f"{comm:>16}-{pid:<7} [{cpu:03d}]{flag_col} {ts}: {event}: {body}"


def entry(func: str, folio: int = 0xFFFFEA0000230580, mapping: int = 0xFFFF88800565FBC9,
          locked: int | None = 0) -> str:
    body = f"({func}+0x0/0x1f0) folio={folio:#x} mapping={mapping:#x}"
    return body + (f" locked={locked}" if locked is not None else "")


def exit_(func: str, caller: str = "try_to_migrate") -> str:
    return f"({caller}+0xff/0x110 <- {func})"


def samples(name: str) -> dict[int, str]:
    """Sample index -> that sample's trace text."""
    text = (FIXTURES / name).read_text()
    parts = re.split(r"^# rmapbench sample (\d+)\n", text, flags=re.MULTILINE)
    assert parts[0] == ""
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def raw_walks(text: str) -> Pairing:
    return events.pair_entry_exit(events.parse(text), ENTRY, EXIT)


def exact_walks(text: str) -> Pairing:
    evs = list(events.parse(text))
    pid = next(ev.pid for ev in evs if ev.name in ENTRY)
    return events.synthetic_walks(evs, {f"rmapbench_{pid}_{f}": f for f in FUNCS})


def pair(lines: list[str]) -> Pairing:
    return events.pair_entry_exit(events.parse("\n".join(lines) + "\n"), ENTRY, EXIT)


# -- recorded fprobe traces --------------------------------------------------

FPROBE = [("fprobe_anon.trace", "anon"), ("fprobe_file.trace", "file"),
          ("fprobe_ksm.trace", "ksm")]


@pytest.mark.parametrize(("name", "page_type"), FPROBE)
def test_fixture_has_a_warmup_and_six_samples(name: str, page_type: str) -> None:
    assert sorted(samples(name)) == list(range(7))


def test_line_builder_matches_the_recorded_format() -> None:
    recorded = samples("fprobe_file.trace")[0].splitlines()
    body = [ln for ln in recorded if not ln.startswith("#")]
    assert body[0] == line(
        "python3", 186, 0, 35_558_998, "rmap_walk_file_entry",
        "(rmap_walk_file+0x0/0x1d0) folio=0xffffea00000ebb40 mapping=0xffff888004446288 locked=0",
    )
    assert body[3] == line(
        "python3", 186, 0, 35_564_140, "rmap_walk_file_entry",
        "(rmap_walk_file+0x0/0x1d0) folio=0xffffea0001055e00 mapping=0xffff888004446288 locked=0",
        flags=".N.1.",
    )


def test_parse_recorded_events() -> None:
    evs = list(events.parse(samples("fprobe_anon.trace")[0]))
    assert [ev.name for ev in evs] == [
        "rmap_walk_anon_entry", "rmap_walk_anon_exit", "rmapbench_182_rmap_walk_anon",
    ] * 2
    first = evs[0]
    assert first == Event(
        ts_ns=21_357_166_000, cpu=0, pid=182, name="rmap_walk_anon_entry",
        fields={"folio": "0xffffea0000230580", "mapping": "0xffff88800565fbc9", "locked": "0"},
        body="(rmap_walk_anon+0x0/0x1f0) folio=0xffffea0000230580 "
             "mapping=0xffff88800565fbc9 locked=0",
    )
    # `<...>` is the comm of a task whose name was not saved yet.
    assert {ev.pid for ev in evs} == {182}
    assert evs[2].fields["lat"] == "3452962"


@pytest.mark.parametrize(("name", "page_type"), FPROBE)
def test_two_walks_per_migration(name: str, page_type: str) -> None:
    for n, text in samples(name).items():
        if n == 0:
            continue
        p = raw_walks(text)
        assert (p.unmatched_exits, p.unfinished) == (0, 0)
        assert [w.page_type for w in p.walks] == [page_type, page_type]
        # try_to_migrate() unmaps the source, migrate_folio_move() maps the
        # destination back through remove_migration_ptes().
        assert [w.caller for w in p.walks] == ["try_to_migrate", "migrate_folio_move"]
        assert all(w.function == "rmap_walk" for w in p.walks)
        assert all(w.folio is not None for w in p.walks)
        assert all(w.duration_ns > 0 for w in p.walks)
        assert p.walks[0].folio != p.walks[1].folio  # source, then destination


@pytest.mark.parametrize(("name", "page_type"), FPROBE)
def test_raw_durations_agree_with_in_kernel_pairing(name: str, page_type: str) -> None:
    for text in samples(name).values():
        raw, exact = raw_walks(text), exact_walks(text)
        assert len(raw.walks) == len(exact.walks) >= 2
        for r, x in zip(raw.walks, exact.walks, strict=True):
            assert r.duration_ns % US == 0  # microsecond timestamps
            assert abs(r.duration_ns - x.duration_ns) < US
            assert (r.pid, r.folio, r.page_type, r.function) == (
                x.pid, x.folio, x.page_type, x.function)
            assert x.end_ns >= r.end_ns  # the synthetic event follows the exit event


def test_synthetic_walks_fields() -> None:
    p = exact_walks(samples("fprobe_anon.trace")[0])
    assert p.walks[0] == Walk(
        end_ns=21_361_601_000, duration_ns=3_452_962, pid=182, function="rmap_walk",
        page_type="anon", folio=0xFFFFEA0000230580,
    )
    assert p.walks[1].duration_ns == 455_260
    assert p.walks[1].folio == 0xFFFFEA000105FC00
    assert (p.unmatched_exits, p.unfinished) == (0, 0)


def test_ksm_warmup_also_holds_numa_balancing_anon_walks() -> None:
    raw = raw_walks(samples("fprobe_ksm.trace")[0])
    assert [w.page_type for w in raw.walks] == ["anon"] * 4 + ["ksm"] * 2 + ["anon"] * 2
    assert [w.caller for w in raw.walks] == ["try_to_migrate", "migrate_folio_move"] * 4
    ksm = [w for w in raw.walks if w.page_type == "ksm"]
    assert [w.duration_ns for w in ksm] == [60_294_000, 110_241_000]
    # rmap_walk_ksm has no `locked` argument: the entry event has no field.
    assert all(w.function == "rmap_walk" for w in ksm)


@pytest.mark.parametrize(("name", "page_type"), FPROBE)
def test_merge_callers_on_recorded_traces(name: str, page_type: str) -> None:
    for text in samples(name).values():
        raw, exact = raw_walks(text), exact_walks(text)
        assert all(w.caller == "" for w in exact.walks)
        merged = events.merge_callers(exact.walks, raw.walks)
        assert [w.caller for w in merged] == [w.caller for w in raw.walks]
        assert [w.duration_ns for w in merged] == [w.duration_ns for w in exact.walks]


def test_merge_callers_refuses_walks_that_differ() -> None:
    text = samples("fprobe_ksm.trace")[0]
    raw, exact = raw_walks(text).walks, exact_walks(text).walks
    assert events.merge_callers(exact, raw[:-1]) == exact  # count differs
    other_pid = [Walk(w.end_ns, w.duration_ns, w.pid + 1, w.function, w.page_type, w.folio,
                      caller=w.caller) for w in raw]
    assert events.merge_callers(exact, other_pid) == exact
    swapped = [raw[1], raw[0], *raw[2:]]  # folio order differs
    assert events.merge_callers(exact, swapped) == exact


# -- hand-made event sequences ---------------------------------------------


def test_interleaved_walks_of_two_pids_on_two_cpus() -> None:
    p = pair([
        line("python3", 100, 0, 1_000_010, "rmap_walk_anon_entry",
             entry("rmap_walk_anon", folio=0xFFFFEA0000000040)),
        line("kcompactd0", 37, 1, 1_000_020, "rmap_walk_file_entry",
             entry("rmap_walk_file", folio=0xFFFFEA0000000080, mapping=0xFFFF888004446288)),
        line("python3", 100, 0, 1_000_050, "rmap_walk_anon_exit", exit_("rmap_walk_anon")),
        line("kcompactd0", 37, 1, 1_000_120, "rmap_walk_file_exit",
             exit_("rmap_walk_file", caller="folio_referenced")),
    ])
    assert p.walks == [
        Walk(end_ns=1_000_050_000, duration_ns=40_000, pid=100, function="rmap_walk",
             page_type="anon", folio=0xFFFFEA0000000040, caller="try_to_migrate"),
        Walk(end_ns=1_000_120_000, duration_ns=100_000, pid=37, function="rmap_walk",
             page_type="file", folio=0xFFFFEA0000000080, caller="folio_referenced"),
    ]
    assert (p.unmatched_exits, p.unfinished) == (0, 0)


def test_same_function_on_two_pids_is_paired_by_pid() -> None:
    p = pair([
        line("python3", 100, 0, 2_000_000, "rmap_walk_anon_entry",
             entry("rmap_walk_anon", folio=0x1000)),
        line("python3", 101, 1, 2_000_005, "rmap_walk_anon_entry",
             entry("rmap_walk_anon", folio=0x2000)),
        line("python3", 100, 0, 2_000_300, "rmap_walk_anon_exit", exit_("rmap_walk_anon")),
        line("python3", 101, 1, 2_000_007, "rmap_walk_anon_exit", exit_("rmap_walk_anon")),
    ])
    assert [(w.pid, w.folio, w.duration_ns) for w in p.walks] == [
        (100, 0x1000, 300_000), (101, 0x2000, 2_000)]


def test_walk_that_moves_to_another_cpu() -> None:
    # The walk sleeps on the anon_vma rwsem and resumes on CPU 1.
    p = pair([
        line("python3", 190, 0, 3_000_001, "rmap_walk_ksm_entry",
             entry("rmap_walk_ksm", mapping=0xFFFF88800551EB83, locked=None)),
        line("python3", 190, 1, 3_061_000, "rmap_walk_ksm_exit",
             exit_("rmap_walk_ksm", caller="migrate_folio_move")),
    ])
    assert len(p.walks) == 1
    w = p.walks[0]
    assert (w.duration_ns, w.page_type, w.caller) == (60_999_000, "ksm", "migrate_folio_move")
    assert (p.unmatched_exits, p.unfinished) == (0, 0)


def test_nested_walks() -> None:
    # A walk of another function inside a file walk, and (defensively) a
    # walk of the same function inside an anon walk: innermost exit first.
    p = pair([
        line("python3", 5, 0, 4_000_000, "rmap_walk_file_entry",
             entry("rmap_walk_file", folio=0xA000)),
        line("python3", 5, 0, 4_000_010, "rmap_walk_anon_entry",
             entry("rmap_walk_anon", folio=0xB000)),
        line("python3", 5, 0, 4_000_020, "rmap_walk_anon_entry",
             entry("rmap_walk_anon", folio=0xC000, locked=1)),
        line("python3", 5, 0, 4_000_025, "rmap_walk_anon_exit",
             exit_("rmap_walk_anon", caller="rmap_walk_anon")),
        line("python3", 5, 0, 4_000_040, "rmap_walk_anon_exit", exit_("rmap_walk_anon")),
        line("python3", 5, 0, 4_000_100, "rmap_walk_file_exit", exit_("rmap_walk_file")),
    ])
    assert [(w.folio, w.duration_ns, w.page_type, w.function) for w in p.walks] == [
        (0xC000, 5_000, "anon", "rmap_walk_locked"),
        (0xB000, 30_000, "anon", "rmap_walk"),
        (0xA000, 100_000, "file", "rmap_walk"),
    ]
    assert (p.unmatched_exits, p.unfinished) == (0, 0)


def test_exit_without_entry_is_counted() -> None:
    # The buffer was cleared while the walk ran: its entry is gone.
    p = pair([
        line("python3", 7, 0, 5_000_000, "rmap_walk_anon_exit", exit_("rmap_walk_anon")),
        line("python3", 7, 0, 5_000_100, "rmap_walk_anon_entry", entry("rmap_walk_anon")),
        line("python3", 7, 0, 5_000_150, "rmap_walk_anon_exit", exit_("rmap_walk_anon")),
        # An exit of another function does not close the anon walk.
        line("python3", 7, 0, 5_000_200, "rmap_walk_file_exit", exit_("rmap_walk_file")),
    ])
    assert [w.duration_ns for w in p.walks] == [50_000]
    assert (p.unmatched_exits, p.unfinished) == (2, 0)


def test_entry_without_exit_is_unfinished() -> None:
    p = pair([
        line("python3", 8, 0, 6_000_000, "rmap_walk_anon_entry", entry("rmap_walk_anon")),
        line("python3", 8, 0, 6_000_010, "rmap_walk_anon_exit", exit_("rmap_walk_anon")),
        line("python3", 8, 1, 6_000_020, "rmap_walk_file_entry", entry("rmap_walk_file")),
        line("python3", 9, 1, 6_000_030, "rmap_walk_file_exit", exit_("rmap_walk_file")),
    ])
    # pid 9's exit cannot close pid 8's walk: one unmatched, one unfinished.
    assert len(p.walks) == 1
    assert (p.unmatched_exits, p.unfinished) == (1, 1)


def test_unrelated_events_are_ignored() -> None:
    p = pair([
        line("python3", 8, 0, 6_000_000, "rmap_walk_anon_entry", entry("rmap_walk_anon")),
        line("python3", 8, 0, 6_000_005, "sched_switch",
             "prev_comm=python3 prev_pid=8 prev_prio=120 prev_state=D ==> next_comm=swapper/0 "
             "next_pid=0 next_prio=120"),
        line("python3", 8, 0, 6_000_010, "rmap_walk_anon_exit", exit_("rmap_walk_anon")),
    ])
    assert [w.duration_ns for w in p.walks] == [10_000]


def test_parse_ts_is_exact() -> None:
    assert events.parse_ts("21", "357166") == 21_357_166_000
    assert events.parse_ts("0", "000001") == 1_000
    assert events.parse_ts("12", "345678901") == 12_345_678_901  # ns clocks
    assert events.parse_ts("12", "3456789012") == 12_345_678_901  # beyond ns: cut
    assert events.parse_ts("5", "5") == 5_500_000_000
    # Large uptimes, where a float loses the last microseconds.
    seconds, frac = "9007199254", "740993"
    assert float(f"{seconds}.{frac}") * 1e9 != 9_007_199_254_740_993_000
    assert events.parse_ts(seconds, frac) == 9_007_199_254_740_993_000
    ev = next(events.parse(line("a", 1, 0, 9_007_199_254_740_993, "rmap_walk_anon_exit", "")))
    assert ev.ts_ns == 9_007_199_254_740_993_000


@pytest.mark.parametrize("comm", [
    "python3", "<...>", "Web Content", "my-prog", "kworker/u8:2-events_unbound",
    "gdbus-3", "a-1 b", "x y-9 z", "rmap test-1", "1234",
])
def test_comm_with_spaces_and_dashes(comm: str) -> None:
    text = line(comm, 4242, 3, 7_000_001, "rmap_walk_file_entry", entry("rmap_walk_file"))
    evs = list(events.parse(text))
    assert len(evs) == 1
    ev = evs[0]
    assert (ev.pid, ev.cpu, ev.ts_ns, ev.name) == (4242, 3, 7_000_001_000, "rmap_walk_file_entry")
    assert ev.fields["folio"] == "0xffffea0000230580"


def test_long_comm_and_pid_fill_the_columns() -> None:
    text = line("a-very-long-comm", 4194304, 127, 12_345_000_001, "rmap_walk_anon_entry",
                entry("rmap_walk_anon"))
    ev = next(events.parse(text))
    assert (ev.pid, ev.cpu, ev.ts_ns) == (4194304, 127, 12_345_000_001_000)


@pytest.mark.parametrize("flags", [None, "d..1", "...1.", "dNs3.", ".N.1."])
def test_lines_with_and_without_flags_column(flags: str | None) -> None:
    lines = [
        line("python3", 182, 0, 21_451_018, "rmap_walk_anon_entry", entry("rmap_walk_anon"),
             flags=flags),
        line("python3", 182, 0, 21_451_193, "rmap_walk_anon_exit", exit_("rmap_walk_anon"),
             flags=flags),
    ]
    p = pair(lines)
    assert [(w.duration_ns, w.caller, w.page_type) for w in p.walks] == [
        (175_000, "try_to_migrate", "anon")]


def test_lines_with_tgid_column() -> None:
    text = ("         python3-182     (    182) [000] ...1.    21.451018: rmap_walk_anon_entry: "
            + entry("rmap_walk_anon") + "\n"
            "         python3-183     (-------) [001] ...1.    21.451020: rmap_walk_anon_entry: "
            + entry("rmap_walk_anon") + "\n")
    evs = list(events.parse(text))
    assert [(ev.pid, ev.cpu, ev.ts_ns) for ev in evs] == [
        (182, 0, 21_451_018_000), (183, 1, 21_451_020_000)]


def test_headers_markers_and_garbage_are_skipped() -> None:
    text = "\n".join([
        "# tracer: nop",
        "#",
        "",
        "CPU:1 [LOST 12 EVENTS]",
        "##### CPU 1 buffer started ####",
        line("python3", 1, 0, 1, "rmap_walk_anon_exit", exit_("rmap_walk_anon")),
    ])
    assert [ev.name for ev in events.parse(text)] == ["rmap_walk_anon_exit"]


def test_to_int_and_page_type() -> None:
    assert events.to_int("0xffffea0000230580") == 0xFFFFEA0000230580
    assert events.to_int("18446719884456035712") == 0xFFFFEA0000230580
    assert events.to_int("000000006b1a2c3d") == 0x6B1A2C3D  # %p
    assert events.to_int("0000000012345678") == 0x12345678  # %p of decimal digits
    assert events.to_int("ffff88800565fbc9") == 0xFFFF88800565FBC9  # %lx
    assert events.page_type_of_mapping(0xFFFF88800565FBC9) == "anon"
    assert events.page_type_of_mapping(0xFFFF88800551EB83) == "ksm"
    assert events.page_type_of_mapping(0xFFFF888004446288) == "file"
    assert events.page_type_of_mapping(0xFFFF888004446282) == "movable"
    assert events.page_type_of_mapping(0) == "unknown"
    assert events.page_type_of({"page_type": "ksm", "mapping": "0x1"}) == "ksm"
    assert events.page_type_of({"mapping": "0xffff88800551eb83"}) == "ksm"
    assert events.page_type_of({}) == "unknown"


def test_mark_targets() -> None:
    walks = [Walk(1, 1, 1, "rmap_walk", "anon", folio=0x40),
             Walk(2, 1, 1, "rmap_walk", "anon", folio=0x80),
             Walk(3, 1, 1, "rmap_walk", "anon", folio=None)]
    assert [w.target for w in events.mark_targets(walks, {0x40})] == [True, False, None]
    assert [w.target for w in events.mark_targets(walks, None)] == [None, None, None]


# -- the proposed upstream rmap tracepoints ---------------------------------


def test_v4_rmap_walk_with_duration() -> None:
    s = samples("tracepoint_v4.trace")
    p0 = events.walks_with_duration(events.parse(s[0]), "rmap_walk")
    assert p0.walks == [
        Walk(end_ns=12_000_283_000, duration_ns=183_211, pid=201, function="rmap_walk",
             page_type="anon"),
        Walk(end_ns=12_000_341_000, duration_ns=41_007, pid=201, function="rmap_walk",
             page_type="anon"),
    ]
    p1 = events.walks_with_duration(events.parse(s[1]), "rmap_walk")  # mm_migrate_pages too
    assert [(w.duration_ns, w.page_type, w.function) for w in p1.walks] == [
        (112_282, "file", "rmap_walk"), (24_376, "file", "rmap_walk_locked")]
    p2 = events.walks_with_duration(events.parse(s[2]), "rmap_walk")
    assert [w.duration_ns for w in p2.walks] == [5_060_293_540, 110_240_926]  # %llu, > 32 bits
    assert all(w.folio is None and w.target is None for w in p0.walks + p1.walks + p2.walks)
    assert (p2.unmatched_exits, p2.unfinished) == (0, 0)


def test_v4_ignores_events_without_duration() -> None:
    text = samples("tracepoint_v5.trace")[0]  # rmap_walk_start/end carry no duration_ns
    assert events.walks_with_duration(events.parse(text), "rmap_walk").walks == []
    assert events.walks_with_duration(events.parse(text), "rmap_walk_end").walks == []


def test_v5_start_end_paired_by_folio_and_rwc() -> None:
    s = samples("tracepoint_v5.trace")
    p0 = events.pair_start_end(events.parse(s[0]), "rmap_walk_start", "rmap_walk_end")
    assert p0.walks == [
        Walk(end_ns=12_000_283_000, duration_ns=183_000, pid=201, function="rmap_walk",
             page_type="anon"),
        Walk(end_ns=12_000_341_000, duration_ns=41_000, pid=201, function="rmap_walk",
             page_type="anon"),
    ]
    assert (p0.unmatched_exits, p0.unfinished) == (0, 0)


def test_v5_two_walks_in_flight_and_locked() -> None:
    text = samples("tracepoint_v5.trace")[1]
    p = events.pair_start_end(events.parse(text), "rmap_walk_start", "rmap_walk_end")
    assert [(w.pid, w.duration_ns, w.page_type, w.function) for w in p.walks] == [
        (201, 112_000, "file", "rmap_walk"),      # 12.104230 -> 12.104342, rwc a4f1e2d0
        (37, 148_000, "file", "rmap_walk"),       # 12.104251 -> 12.104399, rwc 51c8a0f4
        (201, 24_000, "file", "rmap_walk_locked"),
    ]
    assert all(w.folio is None for w in p.walks)  # hashed %p: not a struct page address
    assert (p.unmatched_exits, p.unfinished) == (0, 0)


def test_v5_unmatched_end_and_unfinished_start() -> None:
    text = samples("tracepoint_v5.trace")[2]
    p = events.pair_start_end(events.parse(text), "rmap_walk_start", "rmap_walk_end")
    assert [(w.duration_ns, w.page_type) for w in p.walks] == [(60_054_000, "ksm")]
    assert (p.unmatched_exits, p.unfinished) == (1, 1)


def test_v5_whole_fixture_in_one_pass() -> None:
    text = (FIXTURES / "tracepoint_v5.trace").read_text()
    p = events.pair_start_end(events.parse(text), "rmap_walk_start", "rmap_walk_end")
    assert len(p.walks) == 6
    assert (p.unmatched_exits, p.unfinished) == (1, 1)
