"""Transparent huge pages: the sysfs switch, the PMD size, and whether a
range is really mapped by a PMD.

A THP is one folio of HPAGE_PMD_NR pages (512 on x86-64), mapped by a single
PMD entry when the range is PMD-aligned and the fault allocated a huge page.
MADV_HUGEPAGE asks for one at fault time when THP's `enabled` is "always"
or "madvise"; with "never" no THP is ever allocated, so the case switches
it to "madvise" through the journal. /proc/PID/smaps counts a range's
PMD-mapped anonymous memory as AnonHugePages; /proc/kpageflags marks the
head page KPF_THP and KPF_COMPOUND_HEAD.
"""

from __future__ import annotations

from pathlib import Path

from rmapbench.machine import maps, mm
from rmapbench.machine.knobs import Journal, read_knob

THP = Path("/sys/kernel/mm/transparent_hugepage")
ENABLED = THP / "enabled"
DEFAULT_PMD_SIZE = 2 << 20
# /proc/vmstat counters of THP migration (CONFIG_ARCH_ENABLE_THP_MIGRATION).
MIGRATION_COUNTERS = ("thp_migration_success", "thp_migration_fail", "thp_migration_split")


def available() -> bool:
    """THP built in (CONFIG_TRANSPARENT_HUGEPAGE)."""
    return ENABLED.exists()


def pmd_size(root: Path = THP) -> int:
    try:
        return int(read_knob(root / "hpage_pmd_size"))
    except (OSError, ValueError):
        return DEFAULT_PMD_SIZE


def allow_madvise(journal: Journal, root: Path = THP) -> tuple[str, str]:
    """Make MADV_HUGEPAGE effective; returns the mode before and now."""
    enabled = root / "enabled"
    before = read_knob(enabled)
    if before == "never":
        journal.set(enabled, "madvise")
    return before, read_knob(enabled)


def allow_pmd_size(journal: Journal, root: Path = THP) -> tuple[str, str] | None:
    """Linux 6.8+ has a switch per THP size, hugepages-2048kB/enabled
    ("always [inherit] madvise never" by default for the PMD size): at
    "never" no PMD-sized THP is allocated whatever the top-level switch
    says, so it is set to "inherit" (follow that switch) for the run.
    Returns its mode before and now; None on kernels without it."""
    path = root / f"hugepages-{pmd_size(root) // 1024}kB" / "enabled"
    if not path.exists():
        return None
    before = read_knob(path)
    if before == "never":
        journal.set(path, "inherit")
    return before, read_knob(path)


def anon_huge_kb(pid: int, start: int) -> int:
    """AnonHugePages of the VMA of pid that starts at `start` (0 if none)."""
    return maps.smaps_kb(maps.read_lines(pid, "smaps"), start, b"AnonHugePages:")


def is_thp_head(pid: int, addr: int) -> bool:
    info = mm.page_info(pid, addr)
    return info.has(mm.KPF_THP) and info.has(mm.KPF_COMPOUND_HEAD)


def vmstat(names: tuple[str, ...] = MIGRATION_COUNTERS) -> dict[str, int]:
    found: dict[str, int] = {}
    with open("/proc/vmstat") as f:
        for line in f:
            key, _, value = line.partition(" ")
            if key in names:
                found[key] = int(value)
    return found
