"""How many firings warm up before the measured ones.

The warm-up takes first-time costs out of the measured samples: code that
TCG translates the first time it runs, cold caches and TLBs, the first
migration's allocations on a node. They are paid once per code path and
come to milliseconds, so a firing that took far longer than that already
absorbed them: after it, a second warm-up firing only costs time (two
firings of the ksm case's 20,000-VMA page are 1.4 s under TCG).

`--warmup W` asks for exactly W. Without it, the rule is: at most
DEFAULT_MOST firings, ending after the first one that took ENOUGH_NS or
more (the trigger's own time, which holds its walks).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MOST = 2
ENOUGH_NS = 50_000_000  # 50 ms: tens of times the one-off costs seen under TCG


@dataclass(frozen=True)
class Warmup:
    most: int  # warm-up firings at most
    enough_ns: int | None = None  # a warm-up firing this long ends the warm-up

    @classmethod
    def of(cls, asked: int | None) -> Warmup:
        """--warmup's value (None: not given) as a rule."""
        return cls(DEFAULT_MOST, ENOUGH_NS) if asked is None else cls(asked)

    def ends_after(self, syscall_ns: int) -> bool:
        """Whether a warm-up firing that took syscall_ns is the last one."""
        return self.enough_ns is not None and syscall_ns >= self.enough_ns

    def entry(self) -> dict[str, int | None]:
        """The rule in the JSON's `sampling` (docs/json.md); which firings
        warmed up is in each trial's `warmup`."""
        return {"most": self.most, "enough_ms": None if self.enough_ns is None else (
            self.enough_ns // 1_000_000)}
