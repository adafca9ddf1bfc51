#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""rmap walk latency of a shmem page mapped by many processes;
see README.md and rmapbench/scenarios/shmem.py."""

import os
import sys

# The suite's library first, then what `make install` bundled beside it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rmapbench.bench.program import main

if __name__ == "__main__":
    sys.exit(main("rmap_shmem", "shmem"))
