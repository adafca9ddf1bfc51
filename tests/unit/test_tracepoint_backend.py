"""The tracepoint backend recognises the proposed event forms from their
format files (laid out here as tracefs shows them) and reads recorded
output of each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rmapbench.machine.knobs import Journal
from rmapbench.tracing.backend import Unavailable
from rmapbench.tracing.tracefs import TraceFS
from rmapbench.tracing.tracepoint import Tracepoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"

V4_FORMAT = """name: rmap_walk
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:void * folio;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * rwc;\toffset:16;\tsize:8;\tsigned:0;
\tfield:u64 duration_ns;\toffset:24;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] page_type;\toffset:32;\tsize:4;\tsigned:0;
\tfield:bool locked;\toffset:36;\tsize:1;\tsigned:0;

print fmt: "folio=%p rwc=%p duration_ns=%llu page_type=%s locked=%s", REC->folio, REC->rwc, \
REC->duration_ns, __get_str(page_type), REC->locked ? "true" : "false"
"""


def _tracefs(tmp_path: Path, events: dict[str, str]) -> TraceFS:
    for name, fmt in events.items():
        d = tmp_path / "events" / "rmap" / name
        d.mkdir(parents=True)
        (d / "format").write_text(fmt)
    return TraceFS(tmp_path, Journal(directory=tmp_path / "journal"))


def test_v4_duration_form(tmp_path: Path) -> None:
    tp = Tracepoint()
    tp.check(_tracefs(tmp_path, {"rmap_walk": V4_FORMAT}))
    assert tp.form == "duration"
    walks = tp.walks((FIXTURES / "tracepoint_v4.trace").read_text()).walks
    assert walks and all(w.duration_ns > 0 for w in walks)
    assert {w.page_type for w in walks} <= {"ksm", "anon", "file"}


def test_v5_start_end_form(tmp_path: Path) -> None:
    tp = Tracepoint()
    fmt = V4_FORMAT.replace("\tfield:u64 duration_ns;\toffset:24;\tsize:8;\tsigned:0;\n", "")
    tp.check(_tracefs(tmp_path, {"rmap_walk_start": fmt, "rmap_walk_end": fmt}))
    assert tp.form == "start_end"
    pairing = tp.walks((FIXTURES / "tracepoint_v5.trace").read_text())
    assert pairing.walks
    assert any(w.function == "rmap_walk_locked" for w in pairing.walks)


def test_no_rmap_events_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    with pytest.raises(Unavailable, match="proposed rmap tracepoint"):
        Tracepoint().check(TraceFS(tmp_path, Journal(directory=tmp_path / "j")))


# Issue #12: both forms in the kernel, on the raw fields. The format files
# and traces are recorded on the ground-truth kernel (scripts/ground-truth;
# each fixture's header says how).
REAL_FORMATS = FIXTURES / "rmap_truth_formats"
V5_FORMAT = (REAL_FORMATS / "rmap_walk_start").read_text()


def _synth_name(text: str) -> str:
    m = re.search(r"(rmapbench_\d+_rmap_walk):", text)
    assert m
    return m.group(1)


def _armed(
    tmp_path: Path, events: dict[str, str], hist: bool = True, synth: str = "rmapbench_1_rmap_walk",
    hash_ptr: bool = True,
) -> tuple[Tracepoint, Path]:
    from rmapbench.tracing.tracefs import Instance

    tfs = _tracefs(tmp_path, events)
    if hist:
        (tmp_path / "synthetic_events").write_text("")
    inst_path = tmp_path / "instances" / "x"
    (inst_path / "options").mkdir(parents=True)
    if hash_ptr:
        (inst_path / "options" / "hash-ptr").write_text("1\n")
    for name in events:
        d = inst_path / "events" / "rmap" / name
        d.mkdir(parents=True)
        (d / "trigger").write_text("")
    (inst_path / "events" / "synthetic").mkdir(parents=True)
    tp = Tracepoint()
    tp.check(tfs)
    tp.synth = synth
    (inst_path / "events" / "synthetic" / tp.synth).mkdir()
    tp.arm(tfs, Instance(inst_path, tfs.journal))
    return tp, inst_path


def test_the_real_format_files() -> None:
    """Both forms as the ground-truth kernel lays them out: raw unsigned
    long pointers, a __data_loc page_type string."""
    from rmapbench.tracing.tracepoint import key_fields

    for name in ("rmap_walk", "rmap_walk_start", "rmap_walk_end"):
        fmt = (REAL_FORMATS / name).read_text()
        assert key_fields(fmt) == ("folio_addr", "rwc_addr")
        assert "__data_loc char[] page_type" in fmt and "bool locked" in fmt
    assert "u64 duration_ns" in (REAL_FORMATS / "rmap_walk").read_text()


def test_v5_is_paired_in_the_kernel_per_task(tmp_path: Path) -> None:
    text = (FIXTURES / "tracepoint_v5_hist.trace").read_text()
    synth = _synth_name(text)
    tp, inst = _armed(tmp_path, {"rmap_walk_start": V5_FORMAT, "rmap_walk_end": V5_FORMAT},
                      synth=synth)  # fmt: skip
    assert tp.keys == ("folio_addr", "rwc_addr") and tp.paired_in_kernel and tp.raw
    assert (inst / "options" / "hash-ptr").read_text() == "0\n"
    assert f"{synth} u64 lat; u64 folio; u64 rwc; u64 start_folio; u64 start_rwc" in (
        tmp_path / "synthetic_events"
    ).read_text()
    start = (inst / "events" / "rmap" / "rmap_walk_start" / "trigger").read_text()
    end = (inst / "events" / "rmap" / "rmap_walk_end" / "trigger").read_text()
    # Keyed by the task: one map entry per followed task, however many
    # folios the scenario's build walked (a map keyed by folio filled up).
    # Both keep the instance's clock (a hist trigger sets it: tracing/hist.py).
    assert start.strip() == (
        "hist:keys=common_pid:tsk=common_timestamp,s0k=folio_addr,s1k=rwc_addr:clock=mono"
    )
    assert end.strip() == (
        "hist:keys=common_pid:latk=common_timestamp-$tsk,x0k=$s0k,x1k=$s1k:"
        f"onmatch(rmap.rmap_walk_start).trace({synth},$latk,folio_addr,rwc_addr,$x0k,$x1k)"
        ":clock=mono"
    )
    walks = tp.walks(text).walks
    assert len(walks) == 10
    # The latency is the hist's (1 ns), the folio the raw pointer.
    assert walks[0].duration_ns == 586880 and walks[0].folio == 0xFFFFEA00010CEC80
    assert {w.page_type for w in walks} == {"anon"} and {w.function for w in walks} == {"rmap_walk"}


def test_v5_file_walks_pair_in_the_kernel(tmp_path: Path) -> None:
    text = (FIXTURES / "tracepoint_v5_hist_file.trace").read_text()
    tp, _ = _armed(tmp_path, {"rmap_walk_start": V5_FORMAT, "rmap_walk_end": V5_FORMAT},
                   synth=_synth_name(text))  # fmt: skip
    pairing = tp.walks(text)
    assert len(pairing.walks) == 10 and pairing.unmatched_exits == 0
    assert {w.page_type for w in pairing.walks} == {"file"}
    assert all(w.folio is not None and w.duration_ns > 0 for w in pairing.walks)


def test_a_start_of_another_walk_is_no_pair(tmp_path: Path) -> None:
    """The task's last start was another walk's (lost start, nested walk):
    the synthetic event's start pointers differ from the end's."""
    text = (FIXTURES / "tracepoint_v5_hist.trace").read_text()
    synth = _synth_name(text)
    tp, _ = _armed(tmp_path, {"rmap_walk_start": V5_FORMAT, "rmap_walk_end": V5_FORMAT},
                   synth=synth)  # fmt: skip
    first = re.search(rf"^.*{synth}: .*start_folio=(\d+).*$", text, re.MULTILINE)
    assert first
    broken = text.replace(first.group(0), first.group(0).replace(
        f"start_folio={first.group(1)}", "start_folio=1"), 1)  # fmt: skip
    pairing = tp.walks(broken)
    assert len(pairing.walks) == 9 and pairing.unmatched_exits == 1


def test_v5_without_hist_triggers_pairs_in_user_space(tmp_path: Path) -> None:
    tp, _ = _armed(tmp_path, {"rmap_walk_start": V5_FORMAT, "rmap_walk_end": V5_FORMAT}, False)
    assert not tp.paired_in_kernel
    text = (FIXTURES / "tracepoint_v5_hist.trace").read_text()
    walks = tp.walks(text).walks
    assert len(walks) == 10 and walks[0].folio == 0xFFFFEA00010CEC80
    assert abs(walks[0].duration_ns - 586880) < 1000  # the text's microseconds


@pytest.mark.parametrize(
    ("name", "page_type"),
    [("tracepoint_v4_raw.trace", "anon"), ("tracepoint_v4_raw_ksm.trace", "ksm")],
)
def test_v4_raw_folio_identifies_the_target(tmp_path: Path, name: str, page_type: str) -> None:
    from rmapbench.bench import tally
    from rmapbench.bench.measure import Sample
    from rmapbench.triggers import Firing

    tp, _ = _armed(tmp_path, {"rmap_walk": (REAL_FORMATS / "rmap_walk").read_text()})
    assert tp.form == "duration" and tp.raw and tp.keys == ("folio_addr", "rwc_addr")
    text = (FIXTURES / name).read_text()
    parts = re.split(r"^# rmapbench sample (\d+)\n", text, flags=re.MULTILINE)
    samples = []
    for i in range(1, len(parts), 2):
        walks = tp.walks(parts[i + 1]).walks
        assert all(w.page_type == page_type for w in walks)
        before, after = (((w.folio or 0) - 0xFFFFEA0000000000) // 64 for w in walks[:2])
        n = int(parts[i])
        samples.append(Sample(n, n < 2, Firing.migration(10**9, 0, 1, 1), before, after, walks))
    expect = tally.Expect("migrate", ("try_to_migrate", "remove_migration_ptes"), True)
    t = tally.tally(samples, page_type, expect=expect)
    assert t.base == 0xFFFFEA0000000000  # by folio, not by page type
    # No return site: the caller from the frame walked.
    assert set(t.by_caller) == {"try_to_migrate", "remove_migration_ptes"}
    assert t.walks.count == 6 and not t.failed


def test_hashed_pointers_are_not_folios() -> None:
    from rmapbench.tracing.tracepoint import raw_pointer

    assert raw_pointer("000000006b1a2c3d") is None
    assert raw_pointer("ffffea0000230580") == 0xFFFFEA0000230580


# A kernel may carry both forms (the ground-truth kernel does:
# scripts/ground-truth); --tracepoint-form tells the backend which to use.
BOTH = {"rmap_walk": V4_FORMAT, "rmap_walk_start": V5_FORMAT, "rmap_walk_end": V5_FORMAT}


@pytest.mark.parametrize(
    ("prefer", "form"), [("auto", "duration"), ("v4", "duration"), ("start-end", "start_end")]
)
def test_a_kernel_with_both_forms(tmp_path: Path, prefer: str, form: str) -> None:
    tp = Tracepoint(prefer)
    tp.check(_tracefs(tmp_path, BOTH))
    assert tp.form == form
    assert tp.keys == (("folio", "rwc") if form == "duration" else ("folio_addr", "rwc_addr"))


@pytest.mark.parametrize(
    ("prefer", "present", "missing"),
    [
        ("v4", {"rmap_walk_start": V5_FORMAT, "rmap_walk_end": V5_FORMAT}, "duration_ns"),
        ("start-end", {"rmap_walk": V4_FORMAT}, "rmap_walk_start"),
    ],
)
def test_a_form_asked_for_and_missing_is_unavailable(
    tmp_path: Path, prefer: str, present: dict[str, str], missing: str
) -> None:
    with pytest.raises(Unavailable, match=missing):
        Tracepoint(prefer).check(_tracefs(tmp_path, present))


def test_the_form_reaches_the_backend() -> None:
    from rmapbench.ksft import options
    from rmapbench.tracing import select

    backend = select.make("tracepoint", "start-end")
    assert isinstance(backend, Tracepoint) and backend.prefer == "start-end"
    assert options.TRACEPOINT_FORMS == ("auto", "v4", "start-end")


def test_hashed_pointers_are_paired_in_user_space(tmp_path: Path) -> None:
    """With no hash-ptr option to turn off (or a write to it refused) the
    text's %p are hashed: the kernel's pairing, which finds each walk's
    end event by its raw pointers, found none and counted every walk as
    unpaired. The hashed pointers still pair start and end in the text."""
    tp, _ = _armed(tmp_path, {"rmap_walk_start": V5_FORMAT, "rmap_walk_end": V5_FORMAT},
                   hash_ptr=False)  # fmt: skip
    assert not tp.raw and not tp.paired_in_kernel
    assert not (tmp_path / "synthetic_events").read_text()
    pairing = tp.walks((FIXTURES / "tracepoint_v5.trace").read_text())
    assert len(pairing.walks) == 6 and all(w.folio is None for w in pairing.walks)


def test_pointers_printed_raw_need_no_hash_ptr(tmp_path: Path) -> None:
    raw = V5_FORMAT.replace("folio=%p rwc=%p", "folio=%px rwc=%px")
    tp, _ = _armed(tmp_path, {"rmap_walk_start": raw, "rmap_walk_end": raw}, hash_ptr=False)
    assert tp.raw and tp.paired_in_kernel
