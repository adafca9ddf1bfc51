"""One module per sharing pattern: build it, name the target page, tear it down."""

from __future__ import annotations

from rmapbench.scenarios.base import Scenario
from rmapbench.scenarios.region import AnonScenario, FileScenario, KsmScenario

SCENARIOS: dict[str, type[Scenario]] = {
    "ksm": KsmScenario,
    "anon": AnonScenario,
    "file": FileScenario,
}

__all__ = ["SCENARIOS", "Scenario"]
