"""The sampling loop's PFN look-up: the pagemap alone (root only)."""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
from pathlib import Path

import pytest

from rmapbench.machine import mm


def test_pfn_is_page_infos_pfn_without_the_flag_reads() -> None:
    if not os.access("/proc/kpageflags", os.R_OK):
        pytest.skip("needs root for PFNs")
    buf = mmap.mmap(-1, mm.PAGE_SIZE)
    buf[0] = 1  # present
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert mm.pfn(os.getpid(), addr) == mm.page_info(os.getpid(), addr).pfn != 0


# The preflight's look-up (mm.page_lookup_problem) on files laid out as
# Documentation/admin-guide/mm/pagemap.rst describes them: one u64 per
# virtual page (bit 63 present, bits 0-54 the PFN), one u64 per PFN in
# kpageflags and kpagecount.
PRESENT = 1 << 63


def _files(tmp_path: Path, entry: int, pfn_files: bool = True) -> dict[str, str]:
    paths = {name: str(tmp_path / name) for name in ("pagemap", "kpageflags", "kpagecount")}
    Path(paths["pagemap"]).write_bytes(struct.pack("<Q", entry))
    if pfn_files:
        for name in ("kpageflags", "kpagecount"):
            Path(paths[name]).write_bytes(bytes(8 * 0x2000))
    return paths


def test_page_lookup_with_pfns_shown(tmp_path: Path) -> None:
    assert mm.page_lookup_problem(0, **_files(tmp_path, PRESENT | 0x1234)) is None


def test_page_lookup_with_pfns_hidden(tmp_path: Path) -> None:
    # What a root without CAP_SYS_ADMIN in the initial user namespace reads.
    paths = _files(tmp_path, PRESENT)
    assert mm.page_lookup_problem(0, **paths) == (
        f"{paths['pagemap']} hides page frame numbers (it shows them to CAP_SYS_ADMIN in the "
        "initial user namespace only)"
    )


def test_page_lookup_without_page_monitor_files(tmp_path: Path) -> None:
    # CONFIG_PROC_PAGE_MONITOR=n: neither file exists.
    paths = _files(tmp_path, PRESENT | 0x1234, pfn_files=False)
    assert mm.page_lookup_problem(0, **paths) == (
        f"{paths['kpageflags']}: No such file or directory"
    )
    (tmp_path / "pagemap").unlink()
    assert mm.page_lookup_problem(0, **paths) == f"{paths['pagemap']}: No such file or directory"


def test_page_lookup_of_a_pfn_past_the_end(tmp_path: Path) -> None:
    # kpageflags reads nothing past the last PFN (its read returns 0).
    paths = _files(tmp_path, PRESENT | 0x9999)
    assert mm.page_lookup_problem(0, **paths) == (
        f"{paths['kpageflags']}: shorter than the entry looked up"
    )


def test_page_lookup_of_this_process() -> None:
    problem = mm.page_lookup_problem()
    if os.access("/proc/kpageflags", os.R_OK):
        assert problem is None
    else:
        assert problem is not None and problem.startswith("/proc/")
