"""The Python packages a test program needs beyond the standard library,
checked before anything imports them.

A kernel CI device or a distribution's python3 may lack them. A program
that cannot import what it needs must still print valid KTAP: a SKIP with
a short constant reason (LKFT appends it to the result name), a diagnostic
naming both ways to get the package, and exit status 4. tap.py itself may
be what is missing, so this module writes that KTAP without it.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from rmapbench.ksft.status import KSFT_SKIP


@dataclass(frozen=True)
class Dependency:
    module: str  # what `import` names
    pypi: str  # pip install NAME
    debian: str  # apt install NAME

    @property
    def reason(self) -> str:
        """The SKIP reason: short and the same on every machine."""
        return f"{self.pypi} missing"

    @property
    def hint(self) -> str:
        return (
            f"{self.pypi} is not importable by {sys.executable}: use the project's "
            f"environment (make setup; .venv/bin/python), or pip install {self.pypi}, "
            f"or apt install {self.debian}"
        )


# What the in-kernel measuring path imports: python-ptrace reads process
# mappings, tap.py writes KTAP. (numpy, scipy and matplotlib are for the
# host's analysis only.)
REQUIRED = (
    Dependency("ptrace", "python-ptrace", "python3-ptrace"),
    Dependency("tap", "tap.py", "python3-tap"),
)


def missing(required: Sequence[Dependency] = REQUIRED) -> list[Dependency]:
    """The dependencies this interpreter cannot import, in REQUIRED order."""
    return [d for d in required if importlib.util.find_spec(d.module) is None]


def skip_all(
    program: str, cases: Sequence[str], absent: Sequence[Dependency], out: TextIO | None = None
) -> int:
    """Every case of the plan skipped for the first missing dependency:
    the KTAP that ktap.KTAP would print, written by hand."""
    out = sys.stdout if out is None else out
    print("TAP version 13", file=out)
    print(f"1..{len(cases)}", file=out)
    for d in absent:
        print(f"# {d.hint}", file=out)
    for n, case in enumerate(cases, 1):
        print(f"ok {n} {program}.{case} # SKIP {absent[0].reason}", file=out)
    print(f"# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:{len(cases)} error:0", file=out)
    out.flush()
    return KSFT_SKIP
