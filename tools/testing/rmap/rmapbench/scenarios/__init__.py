"""One module per sharing pattern: build it, name the target page, tear it down."""

from __future__ import annotations

from rmapbench.scenarios.anon_fork import AnonForkScenario
from rmapbench.scenarios.base import Scenario
from rmapbench.scenarios.file_mappers import FileMappersScenario
from rmapbench.scenarios.ksm_fork import KsmForkScenario
from rmapbench.scenarios.ksm_mremap import KsmMremapScenario
from rmapbench.scenarios.ksm_procs import KsmProcsScenario
from rmapbench.scenarios.region import AnonScenario, FileScenario, KsmScenario
from rmapbench.scenarios.shmem import ShmemScenario
from rmapbench.scenarios.thp import ThpScenario

SCENARIOS: dict[str, type[Scenario]] = {
    "ksm": KsmScenario,
    "anon": AnonScenario,
    "file": FileScenario,
    "ksm-procs": KsmProcsScenario,
    "ksm-fork": KsmForkScenario,
    "anon-fork": AnonForkScenario,
    "file-mappers": FileMappersScenario,
    "shmem": ShmemScenario,
    "ksm-mremap": KsmMremapScenario,
    "thp": ThpScenario,
}

__all__ = ["SCENARIOS", "Scenario"]
