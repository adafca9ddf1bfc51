"""Progress of long runs on a terminal: jobs done, elapsed, estimated time
left, on one rewritten stderr line. Silent when stderr is not a terminal
(CI logs, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    def __init__(
        self,
        total: int,
        what: str = "runs",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.what = total, what
        self.done = 0
        self.started = time.monotonic()
        self.note = ""

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        text = f"{self.done}/{self.total} {self.what} done, {_clock(elapsed)} elapsed"
        if 0 < self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            text += f", about {_clock(left)} left"
        return text + (f" ({self.note})" if self.note else "")

    def _show(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()

    def start(self, note: str = "") -> None:
        self.note = note
        self._show()

    def step(self, note: str = "") -> None:
        self.done += 1
        self.note = note
        self._show()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K" + self.line() + "\n")
            self.stream.flush()
