"""What tracefs's README says a kernel offers, on the README text of the
kernels the suite runs on (tests/unit/fixtures/kernel/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rmapbench.tracing import tracefs

KERNEL = Path(__file__).parent / "fixtures" / "kernel"


def _root(tmp_path: Path, release: str) -> Path:
    shutil.copy(KERNEL / f"tracefs-README-{release}", tmp_path / "README")
    return tmp_path


@pytest.mark.parametrize(
    ("release", "kinds"),
    [
        # Before 6.0 the synopsis read p[:[<group>/]<event>]: kprobes were
        # there all the same (no fprobes before 6.7).
        ("5.15", ["kprobe"]),
        ("6.12", ["fprobe", "kprobe"]),
    ],
)
def test_probe_kinds_of_each_release(tmp_path: Path, release: str, kinds: list[str]) -> None:
    assert tracefs.probe_kinds(_root(tmp_path, release)) == kinds


def test_no_probe_events_without_the_synopsis(tmp_path: Path) -> None:
    # CONFIG_KPROBE_EVENTS=n and CONFIG_UPROBE_EVENTS=n: no "Format:" lines.
    text = (KERNEL / "tracefs-README-6.12").read_text()
    kept = [ln for ln in text.splitlines() if "[:[<group>/]" not in ln]
    (tmp_path / "README").write_text("\n".join(kept) + "\n")
    assert tracefs.probe_kinds(tmp_path) == []


def test_no_readme_means_no_probe_kinds(tmp_path: Path) -> None:
    assert tracefs.probe_kinds(tmp_path) == []
