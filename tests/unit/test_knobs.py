"""Tests of rmapbench.machine.knobs on plain temporary files standing in for sysfs knobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rmapbench.machine import knobs
from rmapbench.machine.knobs import (
    Interrupted,
    Journal,
    KnobUnwritable,
    Undo,
    append_line,
    recover_stale,
    signals_raise,
)

READ_ONLY_KNOB = "/sys/kernel/mm/ksm/pages_shared"


def knob(directory: Path, name: str, value: str) -> Path:
    path = directory / name
    path.write_text(value + "\n")  # sysfs values end with a newline
    return path


def journal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.json"))


@pytest.fixture
def jdir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def test_set_and_restore(tmp_path: Path, jdir: Path) -> None:
    run = knob(tmp_path, "run", "0")
    j = Journal(directory=jdir)
    j.set(run, 1)
    assert run.read_text() == "1"
    assert j.original(run) == "0"
    assert j.check_restored() == [f"{run}: '1' != '0'"]
    assert j.restore() == []
    assert run.read_text() == "0"
    assert j.check_restored() == []
    assert journal_files(jdir) == []  # removed once everything is undone


@pytest.mark.skipif(not Path(READ_ONLY_KNOB).exists(), reason="no KSM in this kernel")
@pytest.mark.skipif(os.geteuid() != 0, reason="root: the kernel's refusal, not DAC's")
def test_a_knob_the_kernel_will_not_let_us_write(jdir: Path) -> None:
    """KSM's pages_shared has no store method: even root's write is EACCES,
    as a read-only /sys or /proc/sys gives EROFS. KnobUnwritable names the
    knob, and no undo step is left for a change that never happened."""
    j = Journal(directory=jdir)
    value = int(Path(READ_ONLY_KNOB).read_text())
    with pytest.raises(KnobUnwritable, match=f"^{READ_ONLY_KNOB}: Permission denied$"):
        j.set(READ_ONLY_KNOB, value + 1)
    assert j.restore() == [] and j.check_restored() == []
    assert journal_files(jdir) == []


def test_set_remembers_the_first_original(tmp_path: Path, jdir: Path) -> None:
    pages = knob(tmp_path, "pages_to_scan", "100")
    j = Journal(directory=jdir)
    j.set(pages, 5000)
    j.set(str(pages), 20000)
    assert pages.read_text() == "20000"
    assert j.original(pages) == "100"
    j.restore()
    assert pages.read_text() == "100"


def test_no_write_when_unchanged(tmp_path: Path, jdir: Path) -> None:
    run = knob(tmp_path, "run", "1")
    before = run.stat().st_mtime_ns
    os.utime(run, ns=(0, 0))
    j = Journal(directory=jdir)
    j.set(run, "1")
    assert run.read_text() == "1\n"  # untouched, newline and all
    assert run.stat().st_mtime_ns == 0 != before
    assert journal_files(jdir) == []  # nothing to undo, nothing on disk
    assert j.restore() == []
    assert run.read_text() == "1\n"


def test_unchanged_then_changed_is_still_restored(tmp_path: Path, jdir: Path) -> None:
    # The first set() found the value already in place; a later set() that
    # does change the knob must still be undone.
    run = knob(tmp_path, "run", "0")
    j = Journal(directory=jdir)
    j.set(run, 0)
    j.set(run, 1)
    assert run.read_text() == "1"
    assert j.check_restored() != []
    j.restore()
    assert run.read_text() == "0"
    assert j.check_restored() == []


def test_set_after_restore_is_restored_again(tmp_path: Path, jdir: Path) -> None:
    run = knob(tmp_path, "run", "0")
    j = Journal(directory=jdir)
    j.set(run, 1)
    j.restore()
    j.set(run, 2)
    assert run.read_text() == "2"
    j.restore()
    assert run.read_text() == "0"


def test_original_of_an_empty_knob(tmp_path: Path, jdir: Path) -> None:
    events = tmp_path / "set_event"
    events.write_text("")
    j = Journal(directory=jdir)
    j.set(events, "rmap:rmap_walk")
    assert j.original(events) == ""
    j.restore()
    assert events.read_text() == ""


def test_original_of_an_untouched_knob(tmp_path: Path, jdir: Path) -> None:
    assert Journal(directory=jdir).original(knob(tmp_path, "k", "42")) == "42"


def test_restore_newest_first(tmp_path: Path, jdir: Path) -> None:
    a, b = knob(tmp_path, "a", "a0"), knob(tmp_path, "b", "b0")
    inst = tmp_path / "instances" / "rmapbench"
    log = tmp_path / "dynamic_events"
    log.write_text("")
    j = Journal(directory=jdir)
    j.set(a, "a1")
    inst.mkdir(parents=True)
    j.on_undo(Undo("rmdir", str(inst)))
    append_line(log, "f:rmapbench/rmap_walk_anon_entry rmap_walk_anon")
    j.on_undo(Undo("append", str(log), "-:rmapbench/rmap_walk_anon_entry"))
    j.set(b, "b1")
    j.set(a, "a2")
    saved = json.loads(journal_files(jdir)[0].read_text())
    assert saved == {"pid": os.getpid(), "steps": [
        {"kind": "write", "path": str(a), "value": "a0"},
        {"kind": "rmdir", "path": str(inst), "value": ""},
        {"kind": "append", "path": str(log), "value": "-:rmapbench/rmap_walk_anon_entry"},
        {"kind": "write", "path": str(b), "value": "b0"},
    ]}
    assert j.restore() == []
    assert (a.read_text(), b.read_text()) == ("a0", "b0")
    assert not inst.exists()
    assert log.read_text() == (
        "f:rmapbench/rmap_walk_anon_entry rmap_walk_anon\n-:rmapbench/rmap_walk_anon_entry\n")
    assert journal_files(jdir) == []


def test_restore_order_is_observable(tmp_path: Path, jdir: Path) -> None:
    # Two undo steps on one file: the oldest one is applied last and wins.
    f = knob(tmp_path, "f", "x")
    j = Journal(directory=jdir)
    j.on_undo(Undo("write", str(f), "oldest"))
    j.on_undo(Undo("write", str(f), "newest"))
    j.restore()
    assert f.read_text() == "oldest"


def test_restore_failure_is_reported_and_journal_kept(tmp_path: Path, jdir: Path) -> None:
    ok = knob(tmp_path, "ok", "0")
    j = Journal(directory=jdir)
    j.set(ok, 1)
    j.on_undo(Undo("write", str(tmp_path / "gone" / "knob"), "0"))
    failures = j.restore()
    assert len(failures) == 1
    assert failures[0].startswith(f"write {tmp_path / 'gone' / 'knob'}: ")
    assert ok.read_text() == "0"  # the other steps still ran
    assert len(journal_files(jdir)) == 1  # for recover_stale()


def test_context_manager_restores_on_exception(tmp_path: Path, jdir: Path) -> None:
    run = knob(tmp_path, "run", "0")
    with pytest.raises(RuntimeError), Journal(directory=jdir) as j:
        j.set(run, 1)
        raise RuntimeError("boom")
    assert run.read_text() == "0"


def test_unwritable_journal_directory_is_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = knob(tmp_path, "run", "0")
    j = Journal(directory=blocker / "journal")  # cannot mkdir below a file
    j.set(run, 1)
    assert j.restore() == []
    assert run.read_text() == "0"


def test_undo_kinds(tmp_path: Path) -> None:
    Undo("rmdir", str(tmp_path / "absent")).apply()  # already gone: fine
    with pytest.raises(ValueError, match="unknown undo kind"):
        Undo("delete", str(tmp_path)).apply()


def test_append_line(tmp_path: Path) -> None:
    path = tmp_path / "kprobe_events"
    path.write_text("p:a f\n")
    append_line(path, "-:a")
    append_line(str(path), "r:b g")
    assert path.read_text() == "p:a f\n-:a\nr:b g\n"
    with pytest.raises(FileNotFoundError):  # never creates a file
        append_line(tmp_path / "missing", "x")


CHILD = """
import sys, time
from pathlib import Path
from rmapbench.machine.knobs import Journal
j = Journal(directory=Path(sys.argv[1]))
j.set(sys.argv[2], "1")
print("ready", flush=True)
time.sleep(60)
"""


def child_with_journal(jdir: Path, path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(knobs.__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(jdir), str(path)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def test_recover_stale_undoes_a_dead_run(tmp_path: Path, jdir: Path) -> None:
    dead_knob, live_knob = knob(tmp_path, "dead", "0"), knob(tmp_path, "live", "0")
    dead = child_with_journal(jdir, dead_knob)
    live = child_with_journal(jdir, live_knob)
    try:
        dead.kill()  # SIGKILL: no chance to restore
        dead.wait()
        assert (dead_knob.read_text(), live_knob.read_text()) == ("1", "1")
        assert len(journal_files(jdir)) == 2
        assert recover_stale(jdir) == 1
        assert dead_knob.read_text() == "0"
        assert live_knob.read_text() == "1"  # its owner will restore it
        assert [p.name for p in journal_files(jdir)] == [f"journal-{live.pid}.json"]
    finally:
        live.kill()
        live.wait()
    assert recover_stale(jdir) == 1
    assert live_knob.read_text() == "0"
    assert journal_files(jdir) == []


def test_recover_stale_skips_unreadable_journals(tmp_path: Path, jdir: Path) -> None:
    jdir.mkdir()
    (jdir / "journal-1.json").write_text("{not json")
    (jdir / "journal-2.json").write_text(json.dumps({"steps": []}))
    assert recover_stale(jdir) == 0
    assert len(journal_files(jdir)) == 2


def test_recover_stale_of_own_pid(tmp_path: Path, jdir: Path) -> None:
    # A journal with our pid is from an earlier run that had the same pid
    # (guests boot to the same pids): it is stale too.
    k = knob(tmp_path, "k", "changed")
    jdir.mkdir()
    (jdir / f"journal-{os.getpid()}.json").write_text(json.dumps(
        {"pid": os.getpid(), "steps": [{"kind": "write", "path": str(k), "value": "orig"}]}))
    assert recover_stale(jdir) == 1
    assert k.read_text() == "orig"


def test_recover_stale_without_journals(tmp_path: Path) -> None:
    assert recover_stale(tmp_path) == 0


def test_signals_raise_turns_sigterm_into_interrupted(tmp_path: Path, jdir: Path) -> None:
    run = knob(tmp_path, "run", "0")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with pytest.raises(Interrupted) as exc, Journal(directory=jdir) as j, signals_raise():
        j.set(run, 1)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
        pytest.fail("SIGTERM did not interrupt the block")
    assert exc.value.signum == signal.SIGTERM
    assert str(exc.value) == "interrupted by SIGTERM"
    assert knobs.exit_status_for(exc.value) == 143
    assert run.read_text() == "0"  # restored on the way out
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_signals_raise_other_signals(sig: signal.Signals) -> None:
    with pytest.raises(Interrupted) as exc, signals_raise():
        os.kill(os.getpid(), sig)
        for _ in range(1000):
            pass
    assert exc.value.signum == sig
    assert knobs.exit_status_for(exc.value) == 128 + sig


def test_choice_knob_reads_and_restores_as_its_word(tmp_path: Path, jdir: Path) -> None:
    # THP's enabled file: the selection in brackets is the value it accepts.
    enabled = knob(tmp_path, "enabled", "always madvise [never]")
    assert knobs.read_knob(enabled) == "never"
    assert knobs.read_knob(knob(tmp_path, "defrag", "[always] defer defer+madvise")) == "always"
    assert knobs.read_knob(knob(tmp_path, "n", "256")) == "256"
    assert knobs.read_knob(knob(tmp_path, "odd", "a [b] [c]")) == "a [b] [c]"
    j = Journal(directory=jdir)
    j.set(enabled, "madvise")
    assert enabled.read_text() == "madvise"  # a plain file keeps the word; sysfs would bracket it
    enabled.write_text("always [madvise] never\n")
    assert j.check_restored() == [f"{enabled}: 'madvise' != 'never'"]
    assert j.restore() == []
    assert enabled.read_text() == "never"


def test_signal_held_until_the_change_is_journaled() -> None:
    """SIGTERM between a change and its journal entry arrives after both."""
    steps: list[str] = []
    with pytest.raises(knobs.Interrupted), knobs.signals_raise():
        with knobs.signals_held():
            signal.raise_signal(signal.SIGTERM)
            steps.append("changed")
            steps.append("journaled")
        steps.append("after")  # never reached: the signal is raised first
    assert steps == ["changed", "journaled"]


def test_a_caught_signal_is_remembered() -> None:
    """What fails after a group-wide SIGTERM may be a read of a killed
    child's /proc files; the case then still reports the signal."""
    with pytest.raises(knobs.Interrupted), knobs.signals_raise():
        assert knobs.received_signal() is None
        signal.raise_signal(signal.SIGTERM)
    assert knobs.received_signal() == signal.SIGTERM


def test_a_second_signal_does_not_cut_the_restore_short(
    tmp_path: Path, jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dying runner's PR_SET_PDEATHSIG comes once per thread: the second
    SIGTERM arrives while the program restores after the first."""
    a, b, c = (knob(tmp_path, n, "0") for n in "abc")
    j = Journal(directory=jdir)
    for path in (a, b, c):
        j.set(path, 1)
    apply = knobs.Undo.apply

    def apply_and_signal(self: knobs.Undo) -> None:
        apply(self)
        if Path(self.path) == c:  # the newest, undone first
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass

    monkeypatch.setattr(knobs.Undo, "apply", apply_and_signal)
    with pytest.raises(Interrupted), signals_raise():
        j.restore()
    assert [p.read_text() for p in (a, b, c)] == ["0", "0", "0"]
    assert journal_files(jdir) == []


def test_a_second_signal_does_not_cut_the_teardown_short() -> None:
    """GNU timeout sends SIGTERM to the child, then to its process group:
    the second arrives while the first's cleanup (munmap, KSM's drain)
    runs, outside any journal change, and must not abort it."""
    cleaned = False
    with pytest.raises(Interrupted), signals_raise():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
            cleaned = True
    assert cleaned
    assert knobs.received_signal() == signal.SIGTERM


def test_recover_stale_removes_a_dead_runs_half_written_journal(tmp_path: Path, jdir: Path
                                                                ) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    jdir.mkdir()
    stale = jdir / f".journal-{dead.stdout.strip()}.json.abcd1234"
    mine = jdir / f".journal-{os.getpid()}.json.abcd1234"
    stale.write_text("{")
    mine.write_text("{")
    assert recover_stale(jdir) == 0
    assert not stale.exists() and mine.exists()
