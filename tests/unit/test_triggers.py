"""Trigger selection: refusals (usage errors before any set-up), what auto
picks for a case on this kind of machine, the scenario contract triggers
decide from, and what a Firing reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from rmapbench import triggers
from rmapbench.bench.program import check
from rmapbench.ksft.cli import UsageError
from rmapbench.ksft.options import TRIGGERS, Options
from rmapbench.machine import mm
from rmapbench.scenarios import SCENARIOS
from rmapbench.scenarios.base import Scenario
from rmapbench.triggers import Firing, MigrateTrigger, choose, make, refusal

SUITE = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"


@pytest.fixture(autouse=True)
def _no_suite_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RMAP_ARGS", raising=False)


def _opts(trigger: str, destructive: bool = False) -> Options:
    return Options(trigger=trigger, allow_destructive=destructive)


class _Thp(Scenario):
    """Stands in for the thp case (another helper writes it)."""

    name = "thp"
    page_type = "anon"
    target_mapped_once = True


class _Shmem(Scenario):
    name = "shmem"
    page_type = "file"
    backing = "shmem"
    target_mapped_once: ClassVar[bool] = True


def test_scenario_contract() -> None:
    ksm, anon, file = SCENARIOS["ksm"], SCENARIOS["anon"], SCENARIOS["file"]
    assert (ksm.backing, ksm.target_mapped_once) == ("ksm", False)
    assert (anon.backing, anon.target_mapped_once) == ("anon", True)
    assert (file.backing, file.target_mapped_once) == ("file", True)
    # backing defaults to page_type; target_mapped_once to False.
    assert _Thp.backing == "anon"
    assert Scenario.target_mapped_once is False
    assert _Shmem.backing == "shmem"


@pytest.mark.parametrize(
    ("trigger", "case", "allowed"),
    [
        ("migrate", "ksm", True),
        ("damon", "ksm", True),
        ("damon", "file", True),
        ("msync", "file", True),
        ("msync", "anon", False),
        ("msync", "ksm", False),
        ("pageout", "file", True),
        ("pageout", "anon", True),
        ("pageout", "ksm", False),
        ("split", "anon", False),
        ("split", "ksm", False),
    ],
)
def test_refusal_by_case(trigger: str, case: str, allowed: bool) -> None:
    assert (refusal(_opts(trigger), case, SCENARIOS[case]) is None) == allowed


def test_refusals_of_other_cases() -> None:
    assert refusal(_opts("split"), "thp", _Thp) is None
    assert refusal(_opts("pageout"), "shmem", _Shmem) is not None
    assert refusal(_opts("msync"), "shmem", _Shmem) is not None
    refused = refusal(_opts("soft-offline"), "anon", SCENARIOS["anon"])
    assert refused and "--allow-destructive" in refused
    assert refusal(_opts("soft-offline", destructive=True), "anon", SCENARIOS["anon"]) is None


@pytest.mark.parametrize(
    ("program", "args", "words"),
    [
        ("rmap_anon", ["--trigger", "msync"], "msync"),
        ("rmap_anon", ["--trigger", "soft-offline"], "--allow-destructive"),
        ("rmap_ksm", ["--trigger", "pageout"], "mapped more than once"),
        ("rmap_file", ["--trigger", "split"], "thp"),
    ],
)
def test_program_refuses_before_setup(program: str, args: list[str], words: str) -> None:
    """Exit 2 with one line on stderr and nothing on stdout: no KTAP, so
    nothing was set up (root or not, one node or two)."""
    proc = subprocess.run(
        [sys.executable, str(SUITE / f"{program}.py"), *args, "--results", "/nonexistent/x"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}.py: error: "), proc.stderr
    assert words in lines[0]


def test_options() -> None:
    opts = check("anon", ["--trigger", "damon", "--allow-destructive"])
    assert (opts.trigger, opts.allow_destructive) == ("damon", True)
    assert check("anon", []).trigger == "auto"
    with pytest.raises(UsageError):
        check("anon", ["--trigger", "reboot"])


@pytest.fixture()
def one_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A machine with one node; DAMON's sysfs directory is tmp_path/kdamonds."""
    monkeypatch.setattr(mm, "online_nodes", lambda: [0])
    kdamonds = tmp_path / "kdamonds"
    monkeypatch.setattr(triggers, "KDAMONDS", kdamonds)
    return kdamonds


def test_auto_migrates_with_two_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mm, "online_nodes", lambda: [0, 1])
    for case in ("ksm", "anon", "file"):
        assert choose(_opts("auto"), SCENARIOS[case]) == ("migrate", "2 NUMA nodes")


def test_auto_on_one_node(one_node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one_node.mkdir()
    assert choose(_opts("auto"), SCENARIOS["file"])[0] == "msync"
    assert choose(_opts("auto"), SCENARIOS["ksm"])[0] == "damon"
    name, why = choose(_opts("auto"), SCENARIOS["anon"])
    assert name == "damon" and "one NUMA node" in why
    one_node.rmdir()  # no DAMON: anon pages out when there is swap, else nothing fits
    monkeypatch.setattr(triggers, "swap_total_kb", lambda: 1024)
    assert choose(_opts("auto"), SCENARIOS["anon"])[0] == "pageout"
    assert choose(_opts("auto"), SCENARIOS["ksm"])[0] == "migrate"  # -> SKIP, one node
    monkeypatch.setattr(triggers, "swap_total_kb", lambda: 0)
    assert choose(_opts("auto"), SCENARIOS["anon"])[0] == "migrate"


def test_requested_trigger_is_kept(one_node: Path) -> None:
    assert choose(_opts("migrate"), SCENARIOS["file"]) == ("migrate", "requested")


def test_migrate_unavailable_on_one_node(one_node: Path) -> None:
    with pytest.raises(triggers.TriggerUnavailable, match="fewer than two NUMA nodes"):
        MigrateTrigger().check()


def test_make_every_trigger() -> None:
    for name in TRIGGERS[1:]:
        trigger = make(name, SCENARIOS["anon"])
        assert trigger.name == name
        assert trigger.effect in (triggers.MOVES, triggers.LEAVES, triggers.UNMAPS)
        assert trigger.describe()["name"] == name
    assert make("damon", SCENARIOS["anon"]).walks_inside_cost is False
    assert make("soft-offline", SCENARIOS["anon"]).harmless is False


def test_firing_done() -> None:
    assert Firing.migration(10, 0, 1, 1).done  # move_pages status: the page is on node 1
    assert not Firing.migration(10, 0, 1, -16).done
    assert Firing(10, done=True).done and not Firing(10, done=False).done


def test_walk_in_flight_across_a_clear_is_not_kept() -> None:
    """Recorded (6.12, fprobe, --trigger damon on ksm, before firings were
    aligned with kdamond's sleep): the first event after the clear is the
    exit of a walk begun before it, and the kernel's pairing gives it a
    negative latency (printed as u64 near 2**64). It is counted as
    unpaired, the whole walks that follow are kept."""
    from rmapbench.tracing import events

    fixture = Path(__file__).resolve().parent / "fixtures" / "fprobe_damon_ksm.trace"
    sample0 = fixture.read_text().split("# rmapbench sample 1\n")[0]
    evs = list(events.parse(sample0))
    assert {ev.pid for ev in evs} == {183}  # all kdamond's
    pairing = events.synthetic_walks(evs, {"rmapbench_179_rmap_walk_ksm": "rmap_walk_ksm"})
    assert pairing.unmatched_exits == 1
    assert [w.duration_ns for w in pairing.walks] == [193_302_860, 190_921_463, 290_331_036]
    assert {w.page_type for w in pairing.walks} == {"ksm"}
