"""The tracepoint backend recognises the proposed event forms from their
format files (laid out here as tracefs shows them) and reads recorded
output of each."""

from __future__ import annotations

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
\tfield:int page_type;\toffset:32;\tsize:4;\tsigned:1;
\tfield:bool locked;\toffset:36;\tsize:1;\tsigned:0;

print fmt: "folio=%p rwc=%p duration_ns=%llu page_type=%s locked=%s", ...
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
