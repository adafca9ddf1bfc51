"""rmapbench: measure reverse-mapping walk latency on stock and patched kernels."""

__version__ = "0.1.0"

import time as _time

# The first line of library code a program runs: where its `imports` phase
# begins (ksft/phases.py).
STARTED = _time.monotonic()
