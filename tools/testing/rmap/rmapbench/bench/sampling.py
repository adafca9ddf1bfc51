"""The arm and sample stages: arm the walk-timing backend in the run's own
trace instance, then fire the trigger for the warm-up and timed samples
(or, with --backend all, one round per backend: bench/crossval.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rmapbench.bench import crossval, measure, tally
from rmapbench.bench.build import Built
from rmapbench.bench.preflight import Plan, Skip
from rmapbench.bench.warmup import Warmup
from rmapbench.ksft import phases, precision, stats
from rmapbench.ksft.ktap import KTAP
from rmapbench.machine import ksm
from rmapbench.machine import shared_probes as shared
from rmapbench.machine.knobs import read_knob
from rmapbench.tracing import calcache, calibrate, hist, kept, select, tracefs
from rmapbench.tracing.backend import Backend, Description, Unavailable
from rmapbench.tracing.probes import DynamicProbe


@dataclass(frozen=True)
class Armed:
    """The armed probe (None: syscall-only, or --backend all, whose rounds
    arm their own) and how it times walks."""

    probe: measure.Probe | None
    desc: Description


@dataclass(frozen=True)
class Sampled:
    """The timed samples (the first round's with --backend all), whether a
    backend timed their walks, the backend, every round, and how long it took."""

    samples: list[measure.Sample]
    traced: bool
    desc: Description
    seconds: float
    rounds: list[crossval.Round] = field(default_factory=list)
    ksmd_running: bool = False  # ksmd was scanning while the samples were taken
    calibration: calibrate.Calibration | None = None  # the backend's cost in its window


def arm(plan: Plan) -> Armed:
    """The backend --backend asks for, or auto's best (journaled)."""
    opts, ktap = plan.opts, plan.ktap
    if plan.every_backend:
        return Armed(None, select.SYSCALL_ONLY)
    if opts.backend == "syscall":
        describe_backend(ktap, select.SYSCALL_ONLY)
        return Armed(None, select.SYSCALL_ONLY)
    tfs = tracefs.mounted(plan.journal)
    kept_probes = shared.from_env()
    try:
        backend, desc, passed_over, inst = select.arm(
            opts.backend, tfs, _instances(plan, tfs, kept_probes), opts.tracepoint_form,
            probed_types(plan), kept_probes,
        )  # fmt: skip
    except Unavailable as e:
        raise Skip(
            "no tracing backend" if opts.backend == "auto" else "backend unavailable", str(e)
        ) from e
    for reason in passed_over:
        ktap.diag(f"backend {reason}")
    describe_backend(ktap, desc)
    return Armed(measure.Probe(backend, inst), desc)


def _instances(plan: Plan, tfs: tracefs.TraceFS, kept_probes: shared.SharedProbes | None
               ) -> Callable[[Backend], tracefs.Instance]:  # fmt: skip
    """The instance a backend arms in: the program's own (made once, for
    whichever backend asks first), for a probe backend pairing in the
    kernel within a suite run the runner's kept one (tracing/kept.py), or
    none for a backend with a ring buffer of its own (bpf: tracefs.NoBuffer)."""
    own: list[tracefs.Instance] = []

    def instance(backend: Backend) -> tracefs.Instance:
        if getattr(backend, "own_buffer", False):
            return tracefs.NoBuffer(plan.journal)
        if kept_probes is not None and isinstance(backend, DynamicProbe) and (
            hist.hist_supported(tfs)
        ):
            inst = kept.instance(kept_probes, tfs.root, plan.journal, plan.opts.buffer_kb)
            if inst is not None:
                return inst
        if not own:
            own.append(tracefs.private_instance(plan.journal, plan.opts.buffer_kb)[1])
        return own[0]

    return instance


def probed_types(plan: Plan) -> tuple[str, ...]:
    """The page types whose walk functions the probe backends arm."""
    return select.walk_types(plan.scenario.page_type, plan.opts.probe_all_walks)


def describe_backend(ktap: KTAP, desc: Description) -> None:
    ktap.diag(
        f"backend: {desc.name} ({desc.detail}; clock {desc.clock}, "
        f"resolution {desc.resolution_ns} ns)"
    )


def sample(plan: Plan, built: Built, armed: Armed) -> Sampled:
    """Fire the trigger warm-up + samples times on the built target."""
    t0 = time.monotonic()
    running = ksmd_running()
    if plan.every_backend:
        rounds = _rounds(plan, built)
        desc = rounds[0].desc
        assert desc is not None
        describe_backend(plan.ktap, desc)
        return Sampled(
            rounds[0].samples, True, desc, _since(t0), rounds, running, rounds[0].calibration
        )
    if armed.probe:
        armed.probe.follow(plan.trigger.pids())
    rule, count, stop = _stopping(plan, armed)
    warm = Warmup.of(plan.opts.warmup)
    # The probe's cost timed right after each firing, by the program that
    # calibrates (none when this boot's calibration is reused).
    after = None
    if armed.probe:
        after = calcache.after_firings(armed.probe.backend, plan.opts.buffer_kb)
    with after or contextlib.nullcontext():
        samples = measure.run(
            plan.trigger,
            built.addr,
            phases.timed(plan.scenario.verify, "verification"),
            armed.probe,
            warm,
            count,
            phases.after_warmup(progress(plan, count), warm.most, "samples"),
            stop,
            after_firing=after,
        )
    if rule is not None:
        plan.ktap.diag(rule.line())
    cal = None
    if armed.probe:
        # After the samples, with the backend still armed: its probes stay
        # as they were while the walks were timed.
        cal = calcache.for_backend(armed.probe.backend, plan.opts.buffer_kb, after=after)
        describe_calibration(plan.ktap, cal)
    return Sampled(samples, armed.probe is not None, armed.desc, _since(t0), [], running, cal)


def describe_calibration(ktap: KTAP, cal: calibrate.Calibration) -> None:
    if cal.unavailable:
        ktap.diag(f"probe cost ({cal.backend}): not calibrated: {cal.unavailable}")
        return
    if not cal.firings:
        ktap.diag(f"probe cost ({cal.backend}): none inside the window ({cal.method})")
        return
    bound = f", getppid() itself {stats.format_ns(cal.body_bound_ns)}" if cal.body_bound_ns else ""
    after = (
        f"; right after a firing {stats.format_ns(cal.after_firing_cost_ns)} +- "
        f"{stats.format_ns(cal.after_firing_uncertainty_ns)} over {cal.after_firing_firings}, "
        "not subtracted"
        if cal.after_firing_firings
        else ""
    )
    reused = ""
    if cal.reused:
        reused = f"; reused, measured by {cal.calibrated_by} at {cal.calibrated_at}"
    ktap.diag(
        f"probe cost ({cal.backend}): {stats.format_ns(cal.cost_ns)} +- "
        f"{stats.format_ns(cal.uncertainty_ns)} per walk over {cal.firings} empty intervals "
        f"({cal.method}{bound}){after}{reused}"
    )


def expect_of(plan: Plan) -> tally.Expect:
    t = plan.trigger
    return tally.Expect(t.name, t.expected_callers, t.retries)


def ksmd_running() -> bool:
    """Whether ksmd scans (run=1): then it takes references on KSM pages and
    a migration of one may fail for that alone (docs/triggers.md)."""
    try:
        return read_knob(ksm.KSM / "run") == "1"
    except OSError:
        return False


def _stopping(
    plan: Plan, armed: Armed
) -> tuple[precision.Rule | None, int, Callable[[list[measure.Sample]], bool] | None]:
    """--precision's rule, the most samples to take, and measure.run's stop
    callback (none: the fixed --samples)."""
    opts = plan.opts
    if opts.precision is None:
        return None, opts.samples, None
    rule = precision.Rule(
        opts.precision,
        opts.min_samples or precision.MIN_SAMPLES_DEFAULT,
        opts.max_samples or precision.MAX_SAMPLES_DEFAULT,
    )
    precision.CURRENT = rule
    page_type = plan.scenario.page_type

    def values(samples: list[measure.Sample]) -> list[list[int]]:
        """The latencies so far, grouped by the walk's place in its sample
        (the first and second walk of a migration are different walks)."""
        if armed.probe is None:  # nothing timed but the trigger itself
            return [[s.firing.syscall_ns for s in samples if not s.warmup]]
        groups: list[list[int]] = []
        for s in samples:
            if s.warmup or s.lost_events:
                continue
            walks = [w for w in s.walks if w.page_type == page_type]
            for i, w in enumerate(walks):
                if i == len(groups):
                    groups.append([])
                groups[i].append(w.duration_ns)
        return groups

    return rule, rule.max_samples, precision.stopper(rule, values)


def _since(t0: float) -> float:
    return round(time.monotonic() - t0, 3)


def _rounds(plan: Plan, built: Built) -> list[crossval.Round]:
    """--backend all: one round per timing backend, then the syscall-only
    baseline. The first round is the most precise backend's."""
    root = tracefs.find_tracefs()
    assert root is not None
    names = crossval.available(root)
    if not names:
        raise Skip("no tracing backend", "no timing backend is available on this kernel")
    rounds: list[crossval.Round] = []
    for i, name in enumerate([*names, "syscall"], 1):
        plan.ktap.diag(f"round {i}/{len(names) + 1}: backend {name}")
        rnd = crossval.run_round(
            name,
            plan.trigger,
            built.addr,
            plan.scenario.verify,
            plan.opts,
            plan.scenario.page_type,
            progress(plan),
            expect_of(plan),
        )
        if rnd.unavailable:
            plan.ktap.diag(f"backend {name} unavailable: {rnd.unavailable}")
            continue
        rounds.append(rnd)
    if len(rounds) < 2:
        raise Skip("no tracing backend", "no timing backend could be armed")
    return rounds


def progress(plan: Plan, samples: int | None = None) -> Callable[[measure.Sample], None]:
    """A diagnostic every tenth of the run (every sample with -v), so a
    long run under TCG shows it is alive. `samples`: the most that will be
    taken (--precision's --max-samples), when not --samples."""
    opts, ktap, trigger = plan.opts, plan.ktap, plan.trigger
    most = Warmup.of(opts.warmup).most + (opts.samples if samples is None else samples)
    step = 1 if opts.verbose else max(1, most // 10)

    def report(s: measure.Sample) -> None:
        total = s.planned or most  # one less when the warm-up ended early
        if (s.index + 1) % step and s.index + 1 != total:
            return
        walks = ", ".join(stats.format_ns(w.duration_ns) for w in s.walks[:4]) or "none"
        ktap.diag(
            f"sample {s.index + 1}/{total}{' (warm-up)' if s.warmup else ''}: "
            f"{trigger.cost_name} {stats.format_ns(s.firing.syscall_ns)}, walks {walks}"
        )

    return report
