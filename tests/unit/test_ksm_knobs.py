"""Tests of rmapbench.machine.ksm_knobs on plain files standing in for KSM's sysfs."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from rmapbench.ksft.options import Options
from rmapbench.machine import ksm_knobs
from rmapbench.machine.knobs import Journal
from rmapbench.scenarios import SCENARIOS


@pytest.fixture
def ksm(tmp_path: Path) -> Path:
    root = tmp_path / "ksm"
    root.mkdir()
    for name, value in (("max_page_sharing", "256"), ("merge_across_nodes", "1"),
                        ("pages_shared", "0")):
        (root / name).write_text(value + "\n")
    return root


def journal(tmp_path: Path) -> Journal:
    return Journal(directory=tmp_path / "journal")


def test_applies_to_every_ksm_case_only() -> None:
    for case in ("ksm", "ksm-procs", "ksm-fork", "ksm-mremap"):
        assert SCENARIOS[case].policy.ksm
    for case in ("anon", "file", "thp", "shmem", "anon-fork", "file-mappers"):
        assert not SCENARIOS[case].policy.ksm


def test_set_reported_and_restored(tmp_path: Path, ksm: Path) -> None:
    j = journal(tmp_path)
    opts = Options(max_page_sharing=16)
    ksm_knobs.check(opts, ksm)
    states = ksm_knobs.apply(opts, j, ksm)
    assert (ksm / "max_page_sharing").read_text() == "16"
    assert ksm_knobs.params(states) == {"max_page_sharing": 16, "merge_across_nodes": 1}
    assert states["max_page_sharing"].as_dict() == {"value": 16, "before": 256, "changed": True}
    assert not states["merge_across_nodes"].changed
    assert "max_page_sharing=16 (was 256" in ksm_knobs.describe(states)
    assert j.restore() == []
    assert (ksm / "max_page_sharing").read_text().strip() == "256"


def test_equal_value_is_not_written(tmp_path: Path, ksm: Path) -> None:
    # KSM refuses even an equal write while KSM pages exist.
    (ksm / "pages_shared").write_text("40\n")
    opts = Options(max_page_sharing=256, merge_across_nodes=1)
    ksm_knobs.check(opts, ksm)
    j = journal(tmp_path)
    states = ksm_knobs.apply(opts, j, ksm)
    assert not any(s.changed for s in states.values())
    assert j.check_restored() == []


def test_skip_when_ksm_pages_exist(ksm: Path) -> None:
    (ksm / "pages_shared").write_text("40\n")
    refused = r"^KSM pages exist; cannot change merge_across_nodes$"
    with pytest.raises(ksm_knobs.KnobRefused, match=refused):
        ksm_knobs.check(Options(merge_across_nodes=0), ksm)


class _BusyJournal(Journal):
    """KSM's answer when pages got merged between check() and apply()."""

    def set(self, path: str | Path, value: str | int) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")


def test_skip_when_the_write_is_refused(tmp_path: Path, ksm: Path) -> None:
    j = _BusyJournal(directory=tmp_path / "journal")
    refused = r"^KSM pages exist; cannot change max_page_sharing$"
    with pytest.raises(ksm_knobs.KnobRefused, match=refused):
        ksm_knobs.apply(Options(max_page_sharing=2), j, ksm)


def test_missing_merge_across_nodes(tmp_path: Path, ksm: Path) -> None:
    # Without CONFIG_NUMA there is no merge_across_nodes: reported only when asked for.
    (ksm / "merge_across_nodes").unlink()
    states = ksm_knobs.apply(Options(), journal(tmp_path), ksm)
    assert ksm_knobs.params(states) == {"max_page_sharing": 256}
    with pytest.raises(ksm_knobs.KnobRefused, match="no KSM merge_across_nodes knob"):
        ksm_knobs.check(Options(merge_across_nodes=0), ksm)


@pytest.mark.parametrize(("shown", "refused"), [("[none] scan-time\n", False),
                                                ("none [scan-time]\n", True)])  # fmt: skip
def test_skip_while_the_ksm_advisor_sets_the_scan_rate(ksm: Path, shown: str,
                                                        refused: bool) -> None:  # fmt: skip
    # mm/ksm.c: with the advisor on, pages_to_scan_store() returns EINVAL,
    # which ksm.merge() would hit as a plain OSError and fail the case.
    (ksm / "advisor_mode").write_text(shown)
    if not refused:
        ksm_knobs.check(Options(), ksm)
        return
    with pytest.raises(ksm_knobs.KnobRefused) as e:
        ksm_knobs.check(Options(), ksm)
    assert str(e.value) == (
        f"KSM advisor_mode is scan-time: pages_to_scan is the advisor's ({ksm}/advisor_mode)"
    )


def test_kernels_before_the_advisor_are_checked_as_before(ksm: Path) -> None:
    ksm_knobs.check(Options(max_page_sharing=16), ksm)  # no advisor_mode file
