"""The sampling loop's PFN look-up: the pagemap alone (root only)."""

from __future__ import annotations

import ctypes
import mmap
import os

import pytest

from rmapbench.machine import mm


def test_pfn_is_page_infos_pfn_without_the_flag_reads() -> None:
    if not os.access("/proc/kpageflags", os.R_OK):
        pytest.skip("needs root for PFNs")
    buf = mmap.mmap(-1, mm.PAGE_SIZE)
    buf[0] = 1  # present
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert mm.pfn(os.getpid(), addr) == mm.page_info(os.getpid(), addr).pfn != 0
