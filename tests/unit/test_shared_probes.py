"""The probe events a suite's programs keep for each other
(machine/shared_probes.py): recorded in the runner's journal before they
are made, used by the next program only when they are what it would
create, every other probe on its function removed first, removed by the
runner at the end, by the program when the runner is gone, and by the next
run's replay after the programs' own journals. A directory stands in for
tracefs: an event "exists" when events/GROUP/NAME/format does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rmapbench.machine import knobs, shared_probes
from rmapbench.machine.knobs import Journal, Undo
from rmapbench.machine.shared_probes import SharedProbes
from rmapbench.tracing import probes, tracefs
from rmapbench.tracing.probes import DynamicProbe

DEAD = 2**22 + 1  # above pid_max's default: no such process


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake tracefs whose dynamic_events logs every line and makes (or
    removes) the event's directory, as the kernel does."""
    root = tmp_path / "tracing"
    root.mkdir()
    (root / "dynamic_events").write_text("")
    real = tracefs.write

    def write(path: Path, text: str, append: bool = False) -> None:
        real(path, text, append)
        if path.name == "dynamic_events" and not text.startswith("-:"):
            group, _, name = text.split()[0].partition(":")[2].partition("/")
            (root / "events" / group / name).mkdir(parents=True, exist_ok=True)
            (root / "events" / group / name / "format").write_text("")

    monkeypatch.setattr(probes, "write", write)
    return root


def _lines(root: Path) -> list[str]:
    return (root / "dynamic_events").read_text().splitlines()


def _arm(root: Path, jdir: Path, kind: str, group: str, shared: SharedProbes | None
         ) -> DynamicProbe:  # fmt: skip
    probe = DynamicProbe(kind, {"rmap_walk_anon": "anon"}, shared=shared)
    probe.group = group
    tfs = tracefs.TraceFS(root, Journal(directory=jdir, tag=group))
    inst = tracefs.Instance(root / "instances" / group, tfs.journal)
    for ev in ("rmap_walk_anon_entry", "rmap_walk_anon_exit"):
        for g in ("g1", "g2"):  # the instance's view of the events
            (inst.path / "events" / g / ev).mkdir(parents=True, exist_ok=True)
    probe.arm(tfs, inst)
    return probe


def test_the_next_program_uses_the_events_and_the_runner_removes_them(
    root: Path, tmp_path: Path
) -> None:
    path = shared_probes.path_for(os.getpid(), tmp_path / "run")
    first = _arm(root, tmp_path / "j", "fprobe", "g1", SharedProbes(path))
    created = _lines(root)
    assert [ln.split()[0] for ln in created] == ["f:g1/rmap_walk_anon_exit",
                                                 "f:g1/rmap_walk_anon_entry"]
    # The removals are in the runner's journal, not the program's.
    saved = json.loads(path.read_text())
    assert saved["pid"] == os.getpid()
    assert [s["value"] for s in saved["steps"]] == ["-:g1/rmap_walk_anon_exit",
                                                    "-:g1/rmap_walk_anon_entry"]
    assert first.adopted == []

    second = _arm(root, tmp_path / "j", "fprobe", "g2", SharedProbes(path))
    assert _lines(root) == created  # nothing written
    assert second.adopted == ["rmap_walk_anon"] and second._group("rmap_walk_anon") == "g1"

    assert SharedProbes(path).release() == []
    assert _lines(root)[2:] == ["-:g1/rmap_walk_anon_entry", "-:g1/rmap_walk_anon_exit"]
    assert not path.exists()


def test_another_kind_on_the_function_is_removed_before_arming(
    root: Path, tmp_path: Path
) -> None:
    path = shared_probes.path_for(os.getpid(), tmp_path / "run")
    _arm(root, tmp_path / "j", "fprobe", "g1", SharedProbes(path))
    kp = _arm(root, tmp_path / "j", "kprobe", "g2", SharedProbes(path))
    assert kp.adopted == []
    assert [ln.split()[0] for ln in _lines(root)[2:]] == [
        "-:g1/rmap_walk_anon_entry", "-:g1/rmap_walk_anon_exit",
        "r:g2/rmap_walk_anon_exit", "p:g2/rmap_walk_anon_entry",
    ]  # fmt: skip
    assert list(SharedProbes(path).probes) == ["rmap_walk_anon"]
    assert SharedProbes(path).probes["rmap_walk_anon"].removals[0] == "-:g2/rmap_walk_anon_exit"


def test_events_that_are_gone_are_not_used(root: Path, tmp_path: Path) -> None:
    path = shared_probes.path_for(os.getpid(), tmp_path / "run")
    _arm(root, tmp_path / "j", "fprobe", "g1", SharedProbes(path))
    (root / "events" / "g1" / "rmap_walk_anon_exit" / "format").unlink()
    again = _arm(root, tmp_path / "j", "fprobe", "g2", SharedProbes(path))
    assert again.adopted == []
    assert _lines(root)[-2].split()[0] == "f:g2/rmap_walk_anon_exit"


def test_a_failed_creation_is_forgotten(tmp_path: Path) -> None:
    path = shared_probes.path_for(os.getpid(), tmp_path)
    shared = SharedProbes(path)
    with pytest.raises(OSError), shared.creating("fn", "f:g/ev fn", tmp_path):
        assert json.loads(path.read_text())["steps"][0]["value"] == "-:g/ev"
        raise OSError("EINVAL")
    assert shared.probes == {} and json.loads(path.read_text())["steps"] == []


def test_a_release_that_fails_keeps_the_journal(tmp_path: Path) -> None:
    path = shared_probes.path_for(os.getpid(), tmp_path)
    shared = SharedProbes(path)
    with shared.creating("fn", "f:g/ev fn", tmp_path / "missing-dir"):
        pass
    (tmp_path / "missing-dir").mkdir()
    (tmp_path / "missing-dir" / "dynamic_events").mkdir()  # writing it fails: EISDIR
    assert shared.release() and path.exists()


def test_the_replay_undoes_a_runners_shared_probes_after_its_programs(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("")
    for name, value in ((f"journal-{DEAD}-shared.json", "shared"),
                        (f"journal-{DEAD + 1}.json", "program")):  # fmt: skip
        steps = [{"kind": "append", "path": str(log), "value": value}]
        (tmp_path / name).write_text(json.dumps({"pid": DEAD, "steps": steps}))
    assert knobs.recover_stale(tmp_path) == 2
    assert log.read_text().split() == ["program", "shared"]


def test_a_program_whose_runner_is_gone_releases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    log.write_text("")
    for owner in (os.getppid(), DEAD):
        path = shared_probes.path_for(owner, tmp_path)
        path.write_text(json.dumps({"pid": owner, "steps": [
            Undo("append", str(log), f"-:g/{owner}").__dict__], "probes": {}}))
        monkeypatch.setenv(shared_probes.ENV, str(path))
        assert shared_probes.release_if_orphaned() == []
    assert log.read_text().split() == [f"-:g/{DEAD}"]
    assert not shared_probes.path_for(DEAD, tmp_path).exists()
    assert shared_probes.path_for(os.getppid(), tmp_path).exists()


def test_a_path_of_another_shape_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(shared_probes.ENV, "/tmp/whatever.json")
    assert shared_probes.from_env() is None


def test_an_eviction_the_kernel_refuses_is_one_line_and_keeps_the_record(tmp_path: Path) -> None:
    path = shared_probes.path_for(os.getpid(), tmp_path)
    shared = SharedProbes(path)
    root = tmp_path / "tracing"
    with shared.creating("fn", "f:g/ev fn", root):
        pass
    (root / "dynamic_events").mkdir(parents=True)  # writing it fails: EISDIR
    with pytest.raises(shared_probes.EvictError, match=r"kept on fn \(append -:g/ev\)"):
        shared.evict(["fn"])
    assert SharedProbes(path).probes["fn"].removals == ["-:g/ev"]


@pytest.fixture
def hist_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake tracefs with hist triggers: synthetic_events makes the
    event's directory like dynamic_events; an instance's mkdir gives it the
    walk events' and synthetic events' directories."""
    from rmapbench.tracing import hist

    (root / "synthetic_events").write_text("")
    (root / "instances").mkdir()
    real = hist.write

    def write(path: Path, text: str, append: bool = False) -> None:
        real(path, text, append)
        if path.name == "synthetic_events" and not text.startswith("!"):
            (root / "events" / "synthetic" / text.split()[0]).mkdir(parents=True)
            (root / "events" / "synthetic" / text.split()[0] / "format").write_text("")

    monkeypatch.setattr(hist, "write", write)
    return root


def _kept_arm(root: Path, jdir: Path, group: str, shared: SharedProbes) -> tuple[DynamicProbe,
                                                                                tracefs.Instance]:
    from rmapbench.tracing import kept

    journal = Journal(directory=jdir, tag=group)
    inst = kept.instance(shared, root, journal, 8192)
    assert inst is not None
    for g in ("g1", "g2", "synthetic"):
        for ev in ("rmap_walk_anon_entry", "rmap_walk_anon_exit", "g1_rmap_walk_anon"):
            (inst.path / "events" / g / ev).mkdir(parents=True, exist_ok=True)
            (inst.path / "events" / g / ev / "trigger").touch()
    probe = DynamicProbe("fprobe", {"rmap_walk_anon": "anon"}, shared=shared)
    probe.group = group
    probe.arm(tracefs.TraceFS(root, journal), inst)
    return probe, inst


def test_the_next_program_pairs_in_the_kept_instance_with_the_kept_triggers(
    hist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rmapbench.tracing import kept

    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        if self.parent == hist_root / "instances":  # as the kernel makes one
            (self / "trace_clock").write_text("[local] global mono\n")

    monkeypatch.setattr(Path, "mkdir", mkdir)
    path = shared_probes.path_for(os.getpid(), tmp_path / "run")
    first, inst = _kept_arm(hist_root, tmp_path / "j", "g1", SharedProbes(path))
    assert inst.path.name == f"rmapbench-{os.getpid()}-kept"
    assert kept.holds(SharedProbes(path), inst)
    trigger = inst.path / "events" / "g1" / "rmap_walk_anon_exit" / "trigger"
    written = trigger.read_text()
    assert "onmatch(g1.rmap_walk_anon_entry).trace(g1_rmap_walk_anon," in written
    assert first.paired_kept == []

    second, again = _kept_arm(hist_root, tmp_path / "j", "g2", SharedProbes(path))
    assert again.path == inst.path and trigger.read_text() == written  # nothing added
    assert second.paired_kept == ["rmap_walk_anon"] and second.adopted == ["rmap_walk_anon"]
    text = ("  python3-7 [000] ...4.  21.000004: g1_rmap_walk_anon: lat=2984 "
            "folio=18446683600581230424 mapping=0 locked=0\n")  # fmt: skip
    assert [w.duration_ns for w in second.walks(text).walks] == [2984]

    # The runner's release: the triggers and synthetic event, the events,
    # then the instance, in that order (tracefs removes an instance whole).
    real_rmdir = os.rmdir

    def rmdir(p: str) -> None:
        for child in sorted(Path(p).rglob("*"), reverse=True):
            (real_rmdir if child.is_dir() else os.unlink)(child)
        real_rmdir(p)

    monkeypatch.setattr(os, "rmdir", rmdir)
    assert SharedProbes(path).release() == []
    assert _lines(hist_root)[-2:] == ["-:g1/rmap_walk_anon_entry", "-:g1/rmap_walk_anon_exit"]
    assert (hist_root / "synthetic_events").read_text().splitlines()[-1] == "!g1_rmap_walk_anon"
    assert not inst.path.exists() and not path.exists()
