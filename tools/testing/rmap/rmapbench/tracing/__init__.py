"""Timing rmap walks: tracefs handling and one module per backend."""
