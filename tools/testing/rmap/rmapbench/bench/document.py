"""The result document (docs/json.md, schema rmapbench/result/1) as typed
values: the pipeline fills one in stage by stage, and as_dict() turns it
into the JSON object once, when the result files are written. Keys come
out in the order the schema has always had them."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from rmapbench import __version__
from rmapbench.bench import crossval, measure
from rmapbench.bench.tally import Outcome, Tally, corrected
from rmapbench.ksft import results, stats
from rmapbench.ksft.options import Options
from rmapbench.ksft.stats import Summary
from rmapbench.scenarios.base import Scenario
from rmapbench.tracing.backend import Description
from rmapbench.tracing.calibrate import Calibration

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
    failure: str | None = None  # why the firing did not do its job (tally.failure_text)
    counted: bool = False  # its walks are in the latency statistics
    retry_walks: int = 0  # target walks of earlier tries inside this firing
    callers: list[str] = field(default_factory=list)  # of walk_ns' last try, "" unknown

    @classmethod
    def of(cls, s: measure.Sample, page_type: str, o: Outcome | None = None) -> Trial:
        target = measure.target_walks(s, page_type)
        f = s.firing
        extra: dict[str, Any] = {}
        if o is not None:
            extra = {
                "failure": o.failure or None,
                "counted": not o.failed and not s.warmup and not s.lost_events,
                "retry_walks": len(o.retry),
                "callers": [c for c, _ in o.counted],
            }
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
            **extra,
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
    calibration: Calibration | None = None

    @classmethod
    def of(
        cls, tally: Tally, scenario: Scenario, calibration: Calibration | None = None
    ) -> Timing:
        setup = scenario.setup
        verified = Verified(
            len(tally.samples),
            len(tally.unverified),
            setup.get("target_mappings", setup.get("target_sharers_here")),
            len(scenario.pids()),
        )
        return cls(tally, scenario.page_type, verified, calibration)

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
            "trials": [
                asdict(Trial.of(s, self.page_type, o))
                for s, o in zip(t.samples, t.outcomes, strict=True)
            ],
            "verified": asdict(self.verified),
            **self._additions(),
        }

    def _additions(self) -> JSON:
        """What docs/json.md adds for issue #12: per-caller figures, the
        probe's cost and the corrected figures, failed triggers, retries."""
        t = self.tally
        cost = t.probe_cost_ns
        out: JSON = {
            "walks_by_caller": [
                {
                    "caller": c,
                    "walks": {**stats.summarize(d).as_dict(), "samples": d},
                    **(
                        {"corrected": stats.summarize(corrected(d, cost)).as_dict()}
                        if cost
                        else {}
                    ),
                }
                for c, d in t.by_caller.items()
            ],
            "failed_triggers": {
                "count": len(t.failed),
                "by_failure": [
                    {"failure": f, "count": n} for f, n in t.failure_counts().most_common()
                ],
                "walks": stats.summarize(t.failed_walk_ns).as_dict(),
            },
            "retry_walks": {
                **stats.summarize(t.retry_walk_ns).as_dict(),
                "samples": t.retry_walk_ns,
            },
        }
        if self.calibration is not None:
            out["probe_cost"] = self.calibration.as_dict()
        if cost:
            out["walks_corrected"] = {
                **stats.summarize(t.corrected_ns).as_dict(),
                "samples": t.corrected_ns,
                "probe_cost_ns": cost,
            }
        return out


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
    rnd: crossval.Round | None = None  # per caller, calibration, corrected figures
    corrected_p50_ratio: float | None = None

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
        ref = reference.corrected.p50_ns
        corrected_ratio = rnd.corrected.p50_ns / ref if ref and rnd.corrected.count else None
        return cls(
            **{
                **vars(entry),
                "p50_ratio": ratio,
                "overhead_ns": overhead,
                "rnd": rnd,
                "corrected_p50_ratio": corrected_ratio,
            }
        )

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
        if self.timing and self.rnd is not None:
            r, cr = self.rnd, self.corrected_p50_ratio
            out["walks_by_caller"] = [
                {
                    "caller": c,
                    "count": s.count,
                    "p50_ns": s.p50_ns,
                    "p99_ns": s.p99_ns,
                    "corrected_p50_ns": r.corrected_by_caller[c].p50_ns if r.cost_ns else None,
                }
                for c, s in r.by_caller.items()
            ]
            if r.calibration is not None:
                out["probe_cost"] = r.calibration.as_dict()
            if r.cost_ns:
                out["walks_corrected"] = r.corrected.as_dict()
            out["corrected_p50_ratio"] = round(cr, 3) if cr else None
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
    bystanders: list[JSON] | None = None  # bench/bystander/entry.py's entries
    lock_holds: JSON | None = None  # with --bystander: the walker's holds
    walker_waits: JSON | None = None  # with --bystander: the walker's lock waits

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
        if self.walker_waits is not None:
            out["walker_waits"] = self.walker_waits
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
    interrupted: str | None = None  # the signal that ended the run early (SIGINT, ...)

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
            "host": {"cpus": os.cpu_count(), "python": python_version()},
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
            "interrupted": self.interrupted,
        }
        out.update((k, v) for k, v in optional.items() if v is not None)
        return out


def python_version() -> str:
    """platform.python_version(), without importing platform for it (its
    import cost a test program 0.05 s under TCG): sys.version's first word."""
    return sys.version.split()[0]
