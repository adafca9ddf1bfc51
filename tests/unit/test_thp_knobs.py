"""THP's sysfs switches as the kernels write them: the top-level
`enabled` ("always [madvise] never"), and since 6.8 one per size
("always inherit madvise [never]" in hugepages-2048kB/enabled), on files
standing in for /sys/kernel/mm/transparent_hugepage."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmapbench.machine import thp
from rmapbench.machine.knobs import Journal


def _thp(tmp_path: Path, top: str, pmd: str | None) -> Path:
    root = tmp_path / "transparent_hugepage"
    root.mkdir()
    (root / "enabled").write_text(top + "\n")
    (root / "hpage_pmd_size").write_text("2097152\n")
    if pmd is not None:
        (root / "hugepages-2048kB").mkdir()
        (root / "hugepages-2048kB" / "enabled").write_text(pmd + "\n")
        (root / "hugepages-64kB").mkdir()
        (root / "hugepages-64kB" / "enabled").write_text("always inherit madvise [never]\n")
    return root


@pytest.mark.parametrize(
    ("pmd", "seen"),
    [
        ("always [inherit] madvise never", ("inherit", "inherit")),  # 6.8+'s default
        ("always inherit madvise [never]", ("never", "inherit")),
        ("always inherit [madvise] never", ("madvise", "madvise")),
    ],
)
def test_pmd_size_switch(tmp_path: Path, pmd: str, seen: tuple[str, str]) -> None:
    root = _thp(tmp_path, "always [madvise] never", pmd)
    with Journal(directory=tmp_path / "journal") as journal:
        assert thp.allow_madvise(journal, root) == ("madvise", "madvise")
        assert thp.allow_pmd_size(journal, root) == seen
        assert thp.pmd_size(root) == 2 << 20
    # Restored, the other sizes never touched.
    assert (root / "hugepages-2048kB" / "enabled").read_text().strip() in (pmd, seen[0])
    assert (root / "hugepages-64kB" / "enabled").read_text() == "always inherit madvise [never]\n"


def test_kernels_before_the_per_size_switches(tmp_path: Path) -> None:
    root = _thp(tmp_path, "always madvise [never]", None)
    with Journal(directory=tmp_path / "journal") as journal:
        assert thp.allow_madvise(journal, root) == ("never", "madvise")
        assert thp.allow_pmd_size(journal, root) is None
    assert (root / "enabled").read_text() == "never"
