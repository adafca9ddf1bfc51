#!/usr/bin/env python3
"""Run a case with its target page mlocked: MADV_PAGEOUT then refuses it
(EINVAL on a VM_LOCKED mapping), so every pageout trigger fails and the
case must FAIL naming the status. Usage: mlocked_target.py PROGRAM CASE ARGS...
(run from tools/testing/rmap)."""

from __future__ import annotations

import ctypes
import os
import sys

sys.path.insert(0, os.getcwd())

from rmapbench.bench.program import main
from rmapbench.machine import mm
from rmapbench.scenarios import SCENARIOS

libc = ctypes.CDLL(None, use_errno=True)


def locked(cls: type) -> type:
    build = cls.build

    def build_and_lock(self: object) -> int:
        addr: int = build(self)
        page = addr - addr % mm.PAGE_SIZE
        if libc.mlock(ctypes.c_void_p(page), ctypes.c_size_t(mm.PAGE_SIZE)) != 0:
            raise OSError(ctypes.get_errno(), "mlock of the target")
        return addr

    cls.build = build_and_lock
    return cls


if __name__ == "__main__":
    program, case, *args = sys.argv[1:]
    locked(SCENARIOS[case])
    sys.exit(main(program, case, args))
