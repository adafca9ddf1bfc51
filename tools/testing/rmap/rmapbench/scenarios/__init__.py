"""One module per sharing pattern: build it, name the target page, tear it down."""

from __future__ import annotations

from rmapbench.scenarios.base import Scenario
from rmapbench.scenarios.ksm_mremap import KsmMremapScenario
from rmapbench.scenarios.region import AnonScenario, FileScenario, KsmScenario
from rmapbench.scenarios.thp import ThpScenario

SCENARIOS: dict[str, type[Scenario]] = {
    "ksm": KsmScenario,
    "anon": AnonScenario,
    "file": FileScenario,
    "ksm-mremap": KsmMremapScenario,
    "thp": ThpScenario,
}

__all__ = ["SCENARIOS", "Scenario"]
