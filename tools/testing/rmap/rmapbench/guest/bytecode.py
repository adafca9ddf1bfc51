"""The package's bytecode, compiled on the host before a boot."""

from __future__ import annotations

import compileall
import contextlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

SUITE_DIR = Path(__file__).resolve().parents[2]  # tools/testing/rmap


def precompile(suite: Path = SUITE_DIR) -> None:
    """Write the bytecode of the library (and of what make install
    bundled) next to it, on the host. The guest sees the tree read-only
    (and runs with PYTHONDONTWRITEBYTECODE), so a module without current
    bytecode is compiled again, under TCG, by every program that imports
    it. Up-to-date files are left alone; an unwritable tree is not an error."""
    for sub in ("rmapbench", "vendor"):
        if (suite / sub).is_dir():
            with contextlib.suppress(OSError):
                ok = compileall.compile_dir(suite / sub, quiet=2, workers=1)
                if not ok:
                    log.info("could not compile every module under %s", suite / sub)
