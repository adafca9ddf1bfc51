"""The interface every scenario implements."""

from __future__ import annotations

import abc
import os
from typing import Any, ClassVar

from rmapbench.ksft.options import CasePolicy, Options
from rmapbench.machine.knobs import Journal

NO_MEMORY = "not enough memory for the scenario"


class SkipScenario(Exception):
    """The machine lacks what this scenario needs: a short constant reason
    (the KTAP SKIP), and what exactly for a diagnostic line."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.detail = detail


class Scenario(abc.ABC):
    name: ClassVar[str]
    page_type: ClassVar[str]  # what rmap_walk dispatches on for the target
    # What backs the target page: "ksm", "anon", "file" (page cache of a real
    # filesystem) or "shmem"; triggers decide from it whether they fit.
    # Defaults to page_type.
    backing: ClassVar[str]
    # True when the target page has exactly one mapping (MADV_PAGEOUT skips
    # pages that look shared).
    target_mapped_once: ClassVar[bool] = False
    # What the case makes of the shared options: its default --pages and
    # --procs, the case-specific options it uses.
    policy: ClassVar[CasePolicy] = CasePolicy()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "backing" not in vars(cls) and "page_type" in vars(cls):
            cls.backing = cls.page_type

    def __init__(self, opts: Options, journal: Journal) -> None:
        self.opts = opts
        self.journal = journal
        self.setup: dict[str, Any] = {}  # facts measured while building

    @classmethod
    def usage_error(cls, opts: Options) -> str | None:
        """Why this case can never run with these options (the program exits
        with status 2 before setting anything up), or None."""
        return None

    def pids(self) -> list[int]:
        """Every process that maps the target page."""
        return [os.getpid()]

    def preflight(self) -> None:  # noqa: B027 (optional hook)
        """Raise SkipScenario before anything is changed."""

    def footprint(self) -> int:
        """Roughly the most memory the built scenario holds at once, in
        bytes, for the preflight to compare with MemAvailable; 0 when it is
        too small to matter."""
        return 0

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The parameters that define this scenario (JSON `params`)."""

    @abc.abstractmethod
    def build(self) -> int:
        """Create the sharing pattern; return the target page's address in
        this process."""

    def verify(self) -> list[str]:
        """After a trigger: every mapping of the target sees the frame the
        target now has, with its content intact. Returns what is wrong, with
        the process, address and frames involved; an rmap walk that missed a
        mapping leaves that mapping on the old frame (or a migration entry)."""
        return []

    @abc.abstractmethod
    def teardown(self) -> None:
        """Undo build(); safe to call after a partial build."""
