"""KSM's structural knobs, set for one run: --max-page-sharing and
--merge-across-nodes.

Both change how KSM builds its stable tree, so mm/ksm.c only lets them
change while no KSM page exists: max_page_sharing_store() and
merge_across_nodes_store() return EBUSY while ksm_pages_shared is non-zero or
a stable node still has a mapped page (remove_all_stable_nodes()). Hence:

- they are written before our region is merged, and only when the wanted
  value differs from the current one (an equal write would still be refused
  while another process on the machine has KSM pages);
- if KSM pages of someone else exist, the case SKIPs instead of failing;
- they are restored by the journal after ksm.drain() has let ksmd drop our
  rmap_items (which is what brings ksm_pages_shared back to 0). The undo
  steps are recorded before merge() records run/sleep_millisecs/
  pages_to_scan, so, newest first, they are restored last.

max_page_sharing caps the rmap_items (sharers) per stable node: beyond it
KSM starts a "dup" stable node chained to the same content, and an
rmap_walk_ksm() covers only its own dup. merge_across_nodes=0 keeps one
stable tree per NUMA node, so pages on different nodes never merge.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmapbench.ksft import options
from rmapbench.machine.knobs import Journal, read_knob
from rmapbench.machine.ksm import KSM, STRUCTURAL, advisor_problem

# Option dest = KSM sysfs knob of the same name.
KNOBS = STRUCTURAL


class KnobRefused(Exception):
    """A knob asked for cannot be set on this kernel now (it does not exist,
    or KSM pages exist and the kernel refuses the change): the case SKIPs
    with this reason."""


def wanted(opts: options.Options) -> dict[str, int]:
    """The knobs the command line asks for."""
    return {k: int(getattr(opts, k)) for k in KNOBS if getattr(opts, k) is not None}


@dataclass
class KnobState:
    """One knob for the run: its value before, and the one in effect."""

    name: str
    before: int
    value: int

    @property
    def changed(self) -> bool:
        return self.before != self.value

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "before": self.before, "changed": self.changed}


def _current(root: Path, name: str) -> int:
    path = root / name
    if not path.exists():
        # merge_across_nodes exists only with CONFIG_NUMA.
        raise KnobRefused(f"no KSM {name} knob")
    return int(read_knob(path))


def check(opts: options.Options, root: Path = KSM) -> None:
    """Before anything is changed: SKIP when a wanted change cannot be
    made because KSM pages exist (someone else's: we have none yet), or
    when ksmd's scan rate is not ours to set (ksm.advisor_problem())."""
    problem = advisor_problem(root)
    if problem:
        raise KnobRefused(problem)
    for name, value in wanted(opts).items():
        if _current(root, name) != value and int(read_knob(root / "pages_shared")):
            raise KnobRefused(f"KSM pages exist; cannot change {name}")


def apply(opts: options.Options, journal: Journal, root: Path = KSM) -> dict[str, KnobState]:
    """Set the wanted knobs through the journal; return every knob's state
    (those not asked for too, so the result always says what was in force)."""
    want = wanted(opts)
    states: dict[str, KnobState] = {}
    for name in KNOBS:
        path = root / name
        if name not in want and not path.exists():
            continue
        before = _current(root, name)
        if name in want and want[name] != before:
            try:
                journal.set(path, want[name])
            except OSError as e:
                if e.errno == errno.EBUSY:  # KSM pages appeared since check()
                    raise KnobRefused(f"KSM pages exist; cannot change {name}") from e
                raise
        states[name] = KnobState(name, before, int(read_knob(path)))
    return states


def prepare(
    policy: options.CasePolicy, opts: options.Options, journal: Journal
) -> dict[str, KnobState]:
    """apply() for KSM cases; nothing for the others."""
    return apply(opts, journal) if policy.ksm else {}


def params(states: dict[str, KnobState]) -> dict[str, int]:
    """The values in effect, for the JSON `params`."""
    return {name: s.value for name, s in states.items()}


def describe(states: dict[str, KnobState]) -> str:
    return "ksm knobs: " + " ".join(
        f"{name}={s.value}" + (f" (was {s.before}; restored after)" if s.changed else "")
        for name, s in states.items()
    )
