"""rmapbench: measure reverse-mapping walk latency on stock and patched kernels."""

__version__ = "0.1.0"
