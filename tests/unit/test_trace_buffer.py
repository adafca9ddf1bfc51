"""The private instance's buffer emptied by consuming it (trace_pipe)
rather than reset, lost events counted from the last drain, and
set_event_pid written only when the pids change (a fake tracefs tree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmapbench.machine import knobs
from rmapbench.tracing import tracefs


def _instance(tmp_path: Path) -> tracefs.Instance:
    for cpu in (0, 1):
        d = tmp_path / "per_cpu" / f"cpu{cpu}"
        d.mkdir(parents=True)
        (d / "stats").write_text(  # as the kernel lists them: commit overrun is no loss
            "entries: 3\noverrun: 2\ncommit overrun: 7\nbytes: 4\ndropped events: 1\n"
        )
    return tracefs.Instance(tmp_path, knobs.Journal(tmp_path / "journal"))


def test_drain_and_take_consume_and_count_losses_since(tmp_path: Path) -> None:
    inst = _instance(tmp_path)
    (tmp_path / "trace_pipe").write_text(" python-1 [000] ..... 1.000001: e: x=1\n")
    assert inst.lost_events() == 6  # nothing drained yet: since the reset
    inst.drain()
    assert inst.lost_events() == 0
    (tmp_path / "per_cpu" / "cpu1" / "stats").write_text("overrun: 5\ndropped events: 1\n")
    assert inst.lost_events() == 3
    assert "1.000001: e: x=1" in inst.take()
    (tmp_path / "trace_pipe").write_text("")
    assert inst.take() == ""
    inst.clear()  # a reset zeroes the kernel's counters and the mark
    assert (tmp_path / "trace").read_text() == "\n" and inst.lost_mark == 0


def test_follow_pids_writes_only_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = _instance(tmp_path)
    writes: list[str] = []
    monkeypatch.setattr(tracefs, "write", lambda path, text, append=False: writes.append(text))
    inst.follow_pids([5])
    inst.follow_pids([5])
    inst.follow_pids([5, 6])
    assert writes == ["5", "5 6"]



@pytest.mark.parametrize("read", ["take", "lost_events"])
def test_a_signal_as_the_file_opens_does_not_leave_it_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """SIGTERM arriving just as os.open() returns (its Interrupted raised
    before the `try` that closes the file) must not leak the descriptor:
    an open trace_pipe or per_cpu file keeps the instance busy, and the
    restore's rmdir then fails with EBUSY. The signal is raised once the
    file is closed."""
    import os
    import signal

    inst = _instance(tmp_path)
    (tmp_path / "trace_pipe").write_text("")
    opened: list[int] = []
    real_open = os.open

    def open_then_signal(path: str, flags: int, *args: int) -> int:
        fd = real_open(path, flags, *args)
        opened.append(fd)
        os.kill(os.getpid(), signal.SIGTERM)  # handled as the call returns
        return fd

    monkeypatch.setattr(tracefs.os, "open", open_then_signal)
    with knobs.signals_raise(), pytest.raises(knobs.Interrupted):
        getattr(inst, read)()
    assert opened
    for fd in opened:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed


def test_trace_text_with_bytes_of_no_encoding_reads(tmp_path: Path) -> None:
    """A comm or a %s field may hold any bytes: read() decodes them as
    take() does (replaced), and the parsers see the line as damage."""
    inst = _instance(tmp_path)
    line = b" py\xff\xfe-1 [000] ..... 1.000001: e: x=\x80\n"
    (tmp_path / "trace").write_bytes(b"# tracer: nop\n" + line)
    assert "\ufffd" in inst.read()
