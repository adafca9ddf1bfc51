"""KTAP output in the kselftest way, on top of tap.py's Tracker.

`TAP version 13`, the plan, diagnostics *before* the result they describe,
one flat `ok N program.case` line per case, the Totals line, and the exit
status kselftest runners understand: 0 pass, 1 fail, 4 skip.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tap import tracker
from tap.tracker import Tracker

from rmapbench.ksft.status import KSFT_FAIL, KSFT_PASS, KSFT_SKIP

__all__ = ["KSFT_FAIL", "KSFT_PASS", "KSFT_SKIP", "KTAP"]


class KTAP:
    """Results of one test program. Case names are `program.case`."""

    def __init__(self, program: str, cases: list[str], stream: TextIO | None = None) -> None:
        self.program = program
        self._stream = stream or sys.stdout
        if not tracker.ENABLE_VERSION_13:
            # tap.py writes the version line only with its yaml extra
            # (PyYAML, more-itertools), which Debian's python3-tap merely
            # recommends: without it, write the line KTAP starts with here.
            print("TAP version 13", file=self._stream)
        self._tracker = Tracker(streaming=True, stream=self._stream, header=False, plan=len(cases))
        self._cases = cases
        self.counts = {"pass": 0, "fail": 0, "xfail": 0, "xpass": 0, "skip": 0, "error": 0}

    def name(self, case: str) -> str:
        return f"{self.program}.{case}"

    def diag(self, text: str) -> None:
        """`# text` lines; multi-line text gives one line each."""
        for line in str(text).splitlines() or [""]:
            print(f"# {line}".rstrip(), file=self._stream)
        self._stream.flush()

    def metric(self, name: str, value: object) -> None:
        """A machine-readable number, `# program.name: value`."""
        self.diag(f"{self.program}.{name}: {value}")

    def _check(self, case: str) -> str:
        if case not in self._cases:
            raise ValueError(f"case {case!r} is not in the plan {self._cases}")
        return self.name(case)

    def ok(self, case: str) -> None:
        self._tracker.add_ok(self.program, self._check(case))
        self.counts["pass"] += 1
        self._stream.flush()

    def fail(self, case: str, reason: str = "") -> None:
        if reason:
            self.diag(reason)
        self._tracker.add_not_ok(self.program, self._check(case))
        self.counts["fail"] += 1
        self._stream.flush()

    def skip(self, case: str, reason: str) -> None:
        # The reason is part of the test name in LKFT: keep it short, constant
        # and free of '#'.
        self._tracker.add_skip(self.program, self._check(case), reason.replace("#", ""))
        self.counts["skip"] += 1
        self._stream.flush()

    def reported(self) -> int:
        """Results printed so far."""
        c = self.counts
        return c["pass"] + c["fail"] + c["xfail"] + c["xpass"] + c["skip"]

    def finish(self) -> int:
        """Print the Totals line; return the kselftest exit status. A plan
        left unfinished is an error, as in kselftest's ksft_finished()."""
        c = self.counts
        reported = self.reported()
        if reported != len(self._cases):
            self.diag(f"planned {len(self._cases)} results, reported {reported}")
            c["error"] += 1
        self.diag(
            f"Totals: pass:{c['pass']} fail:{c['fail']} xfail:{c['xfail']} "
            f"xpass:{c['xpass']} skip:{c['skip']} error:{c['error']}"
        )
        if c["fail"] or c["error"]:
            return KSFT_FAIL
        if c["skip"] and not c["pass"]:
            return KSFT_SKIP
        return KSFT_PASS
