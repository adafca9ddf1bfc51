"""The result document (docs/json.md, schema rmapbench/result/1) as typed
values: the pipeline fills one in stage by stage, and as_dict() turns it
into the JSON object once, when the result files are written. Keys come
out in the order the schema has always had them."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from rmapbench import __version__
from rmapbench.bench import crossval, measure
from rmapbench.bench.tally import Tally
from rmapbench.ksft import results
from rmapbench.ksft.options import Options
from rmapbench.ksft.stats import Summary
from rmapbench.scenarios.base import Scenario
from rmapbench.tracing.backend import Description

JSON = dict[str, Any]


@dataclass
class TriggerEntry:
    """`trigger`: the choice, then what the trigger says of itself once
    checked (`described`) and once prepared (`learnt`, e.g. kdamond's pid)."""

    name: str
    requested: str
    why: str
    described: dict[str, object] | None = None
    learnt: dict[str, object] | None = None

    def as_dict(self) -> JSON:
        if self.described is None:
            return {"name": self.name, "requested": self.requested, "why": self.why}
        return {
            **self.described,
            "requested": self.requested,
            "why": self.why,
            **(self.learnt or {}),
        }


@dataclass(frozen=True)
class Trial:
    """One entry of `trials`: one firing, warm-up included."""

    index: int
    warmup: bool
    from_node: int
    to_node: int
    migrated: bool  # kept for compatibility: the same as done (docs/json.md)
    done: bool
    status: int
    syscall_ns: int
    walk_ns: list[int]
    other_walks: int
    lost_events: int
    verified: bool
    problems: list[str]

    @classmethod
    def of(cls, s: measure.Sample, page_type: str) -> Trial:
        target = measure.target_walks(s, page_type)
        f = s.firing
        return cls(
            s.index,
            s.warmup,
            f.from_node,
            f.to_node,
            f.done,
            f.done,
            f.status,
            f.syscall_ns,
            [w.duration_ns for w in target],
            len(s.walks) - len(target),
            s.lost_events,
            s.verified,
            s.problems,
        )


@dataclass(frozen=True)
class Verified:
    samples: int
    failed: int
    mappings_per_sample: Any  # the scenario's count of the target's mappings
    processes: int


@dataclass(frozen=True)
class Timing:
    """What the timed samples measured, as the scenario entry has it."""

    tally: Tally
    page_type: str
    verified: Verified

    @classmethod
    def of(cls, tally: Tally, scenario: Scenario) -> Timing:
        setup = scenario.setup
        verified = Verified(
            len(tally.samples),
            len(tally.unverified),
            setup.get("target_mappings", setup.get("target_sharers_here")),
            len(scenario.pids()),
        )
        return cls(tally, scenario.page_type, verified)

    def as_dict(self) -> JSON:
        t = self.tally
        return {
            "walks": {**t.walks.as_dict(), "samples": t.walk_ns},
            "syscall": {**t.syscall.as_dict(), "samples": t.syscall_ns},
            "walks_by_kind": [
                {"page_type": p, "function": f, "folio": label, "count": n}
                for (p, f, label), n in sorted(t.kinds.items())
            ],
            "target_identified_by": "folio" if t.base is not None else "page_type",
            "lost_events": t.lost_events,
            "locked_walks": t.locked_walks,
            "trials": [asdict(Trial.of(s, self.page_type)) for s in t.samples],
            "verified": asdict(self.verified),
        }


@dataclass(frozen=True)
class BackendEntry:
    """One round of --backend all; the timing backends' rounds also have
    their ratio to the first round and their overhead per walk."""

    backend: JSON
    walks: Summary
    syscall: Summary
    walks_per_sample: float
    timing: bool  # False for the unarmed baseline round
    p50_ratio: float | None = None
    overhead_ns: int | None = None

    @classmethod
    def of(
        cls, rnd: crossval.Round, reference: crossval.Round, baseline: crossval.Round
    ) -> BackendEntry:
        backend = rnd.desc.as_dict() if rnd.desc else {"name": rnd.name}
        entry = cls(
            backend, rnd.walks, rnd.syscall, round(rnd.walks_per_sample, 2), rnd is not baseline
        )
        if not entry.timing:
            return entry
        ratio = rnd.walks.p50_ns / reference.walks.p50_ns if reference.walks.p50_ns else None
        overhead = crossval.overhead_per_walk_ns(rnd, baseline)
        return cls(**{**vars(entry), "p50_ratio": ratio, "overhead_ns": overhead})

    def as_dict(self) -> JSON:
        out: JSON = {
            "backend": self.backend,
            "walks": self.walks.as_dict(),
            "syscall": self.syscall.as_dict(),
            "walks_per_sample": self.walks_per_sample,
        }
        if self.timing:
            ratio = self.p50_ratio
            out.update(p50_ratio=round(ratio, 3) if ratio else None, overhead_ns=self.overhead_ns)
        return out


def backend_entries(rounds: list[crossval.Round]) -> list[BackendEntry]:
    return [BackendEntry.of(rnd, rounds[0], rounds[-1]) for rnd in rounds]


@dataclass
class ScenarioEntry:
    name: str
    params: JSON
    knob_params: dict[str, int] = field(default_factory=dict)  # KSM knobs in force
    setup: JSON | None = None  # the scenario's own dict, once built
    measure_seconds: float | None = None
    timing: Timing | None = None
    visits: JSON | None = None  # bench/visitcount.py's entry()
    backends: list[BackendEntry] | None = None
    bystanders: list[JSON] | None = None  # bench/bystander.py's entries
    lock_holds: JSON | None = None  # with --bystander: the walker's holds

    def as_dict(self) -> JSON:
        out: JSON = {"name": self.name, "params": {**self.params, **self.knob_params}}
        if self.setup is not None:
            out["setup"] = self.setup
        if self.measure_seconds is not None:
            out["measure_seconds"] = self.measure_seconds
        if self.timing is not None:
            out.update(self.timing.as_dict())
        if self.visits is not None:
            out["visits"] = self.visits
        if self.backends is not None:
            out["backends"] = [b.as_dict() for b in self.backends]
        if self.bystanders is not None:
            out["bystanders"] = self.bystanders
        if self.lock_holds is not None:
            out["lock_holds"] = self.lock_holds
        return out


@dataclass
class Document:
    program: str
    options: dict[str, str | None]
    scenario: ScenarioEntry
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    status: str = "error"  # pass | fail | skip | error
    trigger: TriggerEntry | None = None
    backend: Description | None = None
    duration_s: float | None = None
    reason: str | None = None
    reason_detail: str | None = None  # with skip

    @classmethod
    def start(cls, program: str, scenario: Scenario, opts: Options) -> Document:
        opt_items = {
            k: (str(v) if v is not None else None) for k, v in vars(opts).items() if k != "given"
        }
        return cls(program, opt_items, ScenarioEntry(scenario.name, scenario.params()))

    def conclude(self, status: str, reason: str | None = None, detail: str | None = None) -> None:
        self.status = status
        if reason is not None:
            self.reason = reason
        if detail is not None:
            self.reason_detail = detail

    def as_dict(self) -> JSON:
        u = os.uname()
        out: JSON = {
            "schema": results.SCHEMA,
            "tool": {"name": "rmapbench", "version": __version__},
            "program": self.program,
            "started": self.started,
            "kernel": {"release": u.release, "version": u.version, "machine": u.machine},
            "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "options": self.options,
            "status": self.status,
            "scenarios": [self.scenario.as_dict()],
        }
        optional = {
            "trigger": self.trigger.as_dict() if self.trigger else None,
            "backend": self.backend.as_dict() if self.backend else None,
            "duration_s": self.duration_s,
            "reason": self.reason,
            "reason_detail": self.reason_detail,
        }
        out.update((k, v) for k, v in optional.items() if v is not None)
        return out
