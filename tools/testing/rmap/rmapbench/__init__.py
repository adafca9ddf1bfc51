"""rmapbench: measure reverse-mapping walk latency on stock and patched kernels."""

import time as _time

# The first line of library code a program runs: where its `imports` phase
# begins (ksft/phases.py).
STARTED = _time.monotonic()

from rmapbench import early  # noqa: E402 (after the clock starts)

__version__ = "0.1.0"

# A signal while a command is still importing: one line and 128+N.
early.install_for_commands()
