"""rmapbench: measure reverse-mapping walk latency on stock and patched kernels."""

from rmapbench import early

__version__ = "0.1.0"

# A signal while a command is still importing: one line and 128+N.
early.install_for_commands()
