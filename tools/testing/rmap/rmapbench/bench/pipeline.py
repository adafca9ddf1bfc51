"""One test case end to end: options -> scenario -> trigger + probe ->
walks -> statistics -> KTAP and result files. The test programs call main().
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rmapbench import __version__, triggers
from rmapbench.bench import crossval, measure, visitcount
from rmapbench.bench.cases import AGREEMENT, CASE, NOT_SELECTED, plan
from rmapbench.ksft import options, results, stats
from rmapbench.ksft.ktap import KSFT_FAIL, KSFT_PASS, KTAP
from rmapbench.machine import knobs, ksm_knobs
from rmapbench.machine.knobs import Interrupted, Journal
from rmapbench.scenarios import SCENARIOS
from rmapbench.scenarios.base import Scenario, SkipScenario
from rmapbench.tracing import select, tracefs
from rmapbench.tracing.backend import Description, Unavailable
from rmapbench.triggers import Trigger, TriggerUnavailable, status_text

log = logging.getLogger("rmapbench")

class Skip(Exception):
    """Skip the case: short constant reason, detail for the diagnostics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _setup_logging(verbose: bool) -> None:
    # Log lines are TAP diagnostics too, so a merged stderr keeps TAP valid.
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if verbose else logging.WARNING,
        format="# %(name)s: %(message)s",
    )


def _base_doc(program: str, scenario: Scenario, opts: options.Options) -> dict[str, Any]:
    u = os.uname()
    return {
        "schema": results.SCHEMA,
        "tool": {"name": "rmapbench", "version": __version__},
        "program": program,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "kernel": {"release": u.release, "version": u.version, "machine": u.machine},
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "options": {k: (str(v) if v is not None else None) for k, v in _opt_items(opts)},
        "status": "error",
        "scenarios": [{"name": scenario.name, "params": scenario.params()}],
    }


def _opt_items(opts: options.Options) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in vars(opts).items() if k != "given"]


def _preflight(scenario: Scenario, trigger: Trigger, opts: options.Options) -> None:
    if os.geteuid() != 0:
        raise Skip("not root")
    # Before the checks: a run killed with SIGKILL may have left state
    # behind that a check would take for someone else's (a kdamond).
    knobs.recover_stale()
    try:
        scenario.preflight()
        if scenario.policy.ksm:
            ksm_knobs.check(opts)
        trigger.check()
    except (SkipScenario, TriggerUnavailable) as e:
        raise Skip(str(e)) from e
    if opts.backend == "syscall":
        return
    if tracefs.find_tracefs() is None:
        raise Skip("no tracing backend", "tracefs is not mounted or not writable")


def _arm(
    opts: options.Options, journal: Journal, ktap: KTAP
) -> tuple[measure.Probe | None, Description]:
    if opts.backend == "syscall":
        _describe_backend(ktap, select.SYSCALL_ONLY)
        return None, select.SYSCALL_ONLY
    tfs, inst = tracefs.private_instance(journal, opts.buffer_kb)
    try:
        backend, desc, passed_over = select.arm(opts.backend, tfs, inst)
    except Unavailable as e:
        raise Skip(
            "no tracing backend" if opts.backend == "auto" else "backend unavailable", str(e)
        ) from e
    for reason in passed_over:
        ktap.diag(f"backend {reason}")
    _describe_backend(ktap, desc)
    return measure.Probe(backend, inst), desc


def _describe_backend(ktap: KTAP, desc: Description) -> None:
    ktap.diag(
        f"backend: {desc.name} ({desc.detail}; clock {desc.clock}, "
        f"resolution {desc.resolution_ns} ns)"
    )


def main(program: str, scenario_name: str, opts: options.Options) -> int:
    """Run the case on options rmapbench.bench.program has checked."""
    _setup_logging(opts.verbose)
    cases = plan(opts.backend)
    if opts.case and scenario_name not in opts.case:
        return _report_not_selected(program, cases)
    ktap = KTAP(program, cases)
    journal = Journal()
    scenario = SCENARIOS[scenario_name](opts, journal)
    doc = _base_doc(program, scenario, opts)
    for opt in options.not_applicable(opts, scenario.policy):
        ktap.diag(f"option {opt} does not apply to the {scenario_name} case; ignored")
    status = KSFT_FAIL
    try:
        with knobs.signals_raise():
            status = _run(program, scenario, opts, journal, ktap, doc)
    except Skip as e:
        if e.detail:
            ktap.diag(e.detail)
        for case in cases:
            ktap.skip(case, e.reason)
        doc.update(status="skip", reason=e.reason, reason_detail=e.detail)
        status = ktap.finish()
    except Interrupted as e:
        status = _interrupted(ktap, cases, doc, e)
    except Exception as e:
        signum = knobs.received_signal()
        if signum is not None:  # what failed was the signal's doing (a child it killed)
            ktap.diag(f"after the signal: {type(e).__name__}: {e}")
            status = _interrupted(ktap, cases, doc, Interrupted(signum))
        else:
            # Like ksft.py: the exception becomes diagnostics and a failure;
            # the system is still restored and the result still written.
            for line in traceback.format_exc().splitlines():
                ktap.diag(f"Exception| {line}")
            for case in cases[ktap.reported() :]:
                ktap.fail(case, f"{type(e).__name__}: {e}")
            doc.update(status="error", reason=f"{type(e).__name__}: {e}")
            status = ktap.finish()
    finally:
        failures = journal.restore()
        for f in failures:
            print(f"# {program}: could not restore {f}", file=sys.stderr)
    if opts.results:
        results.write_results(opts.results, doc)
    return status


def _report_not_selected(program: str, cases: list[str]) -> int:
    """A program whose case --case did not select: a valid KTAP plan of
    SKIPs, nothing set up, exit status 0 (nothing was wrong)."""
    ktap = KTAP(program, cases)
    for name in cases:
        ktap.skip(name, NOT_SELECTED)
    ktap.finish()
    return KSFT_PASS


def _interrupted(ktap: KTAP, cases: list[str], doc: dict[str, Any], e: Interrupted) -> int:
    for case in cases[ktap.reported() :]:
        ktap.fail(case, f"{e}; system restored")
    doc.update(status="fail", reason=str(e))
    ktap.finish()
    return knobs.exit_status_for(e)


def _run(
    program: str,
    scenario: Scenario,
    opts: options.Options,
    journal: Journal,
    ktap: KTAP,
    doc: dict[str, Any],
) -> int:
    name, why = triggers.choose(opts, type(scenario))
    trigger = triggers.make(name, type(scenario))
    doc["trigger"] = {"name": name, "requested": opts.trigger, "why": why}
    _preflight(scenario, trigger, opts)
    t_start = time.monotonic()
    doc["trigger"] = {**trigger.describe(), "requested": opts.trigger, "why": why}
    ktap.diag(f"kernel {os.uname().release}; trigger {trigger.summary()} ({why})")
    for warning in trigger.warnings():
        ktap.diag(f"warning: {warning}")
    if opts.allow_destructive and trigger.harmless:
        ktap.diag(f"option --allow-destructive does not apply to trigger {name}; ignored")
    trigger.quiesce(journal)
    every = opts.backend == "all"
    probe, desc = (None, select.SYSCALL_ONLY) if every else _arm(opts, journal, ktap)
    sc_doc = doc["scenarios"][0]
    rounds: list[crossval.Round] = []
    try:
        t0 = time.monotonic()
        # KSM's structural knobs go in before merging, undone after drain.
        knob_states = ksm_knobs.prepare(scenario.policy, opts, journal)
        if knob_states:
            scenario.setup["ksm_knobs"] = {k: v.as_dict() for k, v in knob_states.items()}
            sc_doc["params"].update(ksm_knobs.params(knob_states))
            ktap.diag(ksm_knobs.describe(knob_states))
        addr = scenario.build()
        sc_doc["setup"] = scenario.setup
        sc_doc["setup"]["seconds"] = round(time.monotonic() - t0, 3)
        _report_setup(ktap, scenario)
        try:
            trigger.prepare(addr, journal)
        except TriggerUnavailable as e:
            raise Skip(str(e)) from e
        if probe:
            probe.follow(trigger.pids())
        doc["trigger"].update(trigger.describe())  # what prepare() learnt (kdamond's pid)
        t0 = time.monotonic()
        if every:
            rounds = _rounds(trigger, addr, opts, scenario, ktap)
            samples, traced = rounds[0].samples, True
            assert rounds[0].desc is not None
            desc = rounds[0].desc
            _describe_backend(ktap, desc)
        else:
            samples = measure.run(
                trigger,
                addr,
                scenario.verify,
                probe,
                opts.warmup,
                opts.samples,
                _progress(ktap, opts, trigger),
            )
            traced = probe is not None
        sc_doc["measure_seconds"] = round(time.monotonic() - t0, 3)
        # Separate, untimed: the visit probes would inflate the latency.
        vpass = None
        if opts.count_visits:
            vpass = visitcount.run_pass(
                trigger, addr, opts, journal, scenario.backing, trigger.pids()
            )
    except SkipScenario as e:  # found out while building (a knob KSM refused)
        raise Skip(str(e)) from e
    finally:
        scenario.teardown()
        journal.restore()
    doc["backend"] = desc.as_dict()
    not_restored = journal.check_restored()
    verdict = _analyse(ktap, scenario, trigger, samples, opts, sc_doc, traced)
    if vpass is not None:
        timed = samples if traced else None
        verdict += visitcount.report(ktap, sc_doc, vpass, scenario.page_type, timed)
    if not_restored:
        verdict.append("knobs not restored: " + "; ".join(not_restored))
    doc["duration_s"] = round(time.monotonic() - t_start, 3)
    if verdict:
        doc.update(status="fail", reason="; ".join(verdict))
        ktap.fail(CASE, "; ".join(verdict))
    else:
        doc["status"] = "pass"
        ktap.ok(CASE)
    if every:
        disagree = _report_rounds(ktap, rounds, sc_doc)
        if disagree:
            ktap.fail(AGREEMENT, "; ".join(disagree))
            doc.update(status="fail", reason="; ".join([*verdict, *disagree]))
        else:
            ktap.ok(AGREEMENT)
    return ktap.finish()


def _rounds(
    trigger: Trigger, addr: int, opts: options.Options, scenario: Scenario, ktap: KTAP
) -> list[crossval.Round]:
    """--backend all: one round per timing backend, then the syscall-only
    baseline. The first round is the most precise backend's."""
    root = tracefs.find_tracefs()
    assert root is not None
    names = crossval.available(root)
    if not names:
        raise Skip("no tracing backend", "no timing backend is available on this kernel")
    rounds: list[crossval.Round] = []
    for i, name in enumerate([*names, "syscall"], 1):
        ktap.diag(f"round {i}/{len(names) + 1}: backend {name}")
        rnd = crossval.run_round(
            name,
            trigger,
            addr,
            scenario.verify,
            opts,
            scenario.page_type,
            _progress(ktap, opts, trigger),
        )
        if rnd.unavailable:
            ktap.diag(f"backend {name} unavailable: {rnd.unavailable}")
            continue
        rounds.append(rnd)
    if len(rounds) < 2:
        raise Skip("no tracing backend", "no timing backend could be armed")
    return rounds


def _report_rounds(ktap: KTAP, rounds: list[crossval.Round], sc_doc: dict[str, Any]) -> list[str]:
    """Per backend: walk p50/p99, ratio to the reference, overhead per walk."""
    reference, baseline = rounds[0], rounds[-1]
    timed = rounds[:-1]
    sc_doc["backends"] = []
    for rnd in rounds:
        entry: dict[str, Any] = {
            "backend": rnd.desc.as_dict() if rnd.desc else {"name": rnd.name},
            "walks": rnd.walks.as_dict(),
            "syscall": rnd.syscall.as_dict(),
            "walks_per_sample": round(rnd.walks_per_sample, 2),
        }
        if rnd is not baseline:
            ratio = rnd.walks.p50_ns / reference.walks.p50_ns if reference.walks.p50_ns else None
            overhead = crossval.overhead_per_walk_ns(rnd, baseline)
            entry.update(p50_ratio=round(ratio, 3) if ratio else None, overhead_ns=overhead)
            ktap.diag(
                f"backend {rnd.name}: walk p50 {stats.format_ns(rnd.walks.p50_ns)} "
                f"p99 {stats.format_ns(rnd.walks.p99_ns)}, "
                f"{ratio or 0:.2f}x {reference.name}, overhead "
                f"{stats.format_ns(overhead) if overhead is not None else '?'} per walk"
            )
            ktap.metric(f"{rnd.name}_walk_p50_ns", rnd.walks.p50_ns)
            ktap.metric(f"{rnd.name}_walk_p99_ns", rnd.walks.p99_ns)
            if overhead is not None:
                ktap.metric(f"{rnd.name}_overhead_ns", overhead)
        else:
            ktap.diag(f"baseline (no backend): syscall p50 {stats.format_ns(rnd.syscall.p50_ns)}")
        sc_doc["backends"].append(entry)
    return crossval.disagreements(reference, timed[1:], baseline)


def _progress(
    ktap: KTAP, opts: options.Options, trigger: Trigger
) -> Callable[[measure.Sample], None]:
    """A diagnostic every tenth of the run (every sample with -v), so a
    long run under TCG shows it is alive."""
    total = opts.warmup + opts.samples
    step = 1 if opts.verbose else max(1, total // 10)

    def report(s: measure.Sample) -> None:
        if (s.index + 1) % step and s.index + 1 != total:
            return
        walks = ", ".join(stats.format_ns(w.duration_ns) for w in s.walks[:4]) or "none"
        ktap.diag(
            f"sample {s.index + 1}/{total}{' (warm-up)' if s.warmup else ''}: "
            f"{trigger.cost_name} {stats.format_ns(s.firing.syscall_ns)}, walks {walks}"
        )

    return report


def _report_setup(ktap: KTAP, scenario: Scenario) -> None:
    s = scenario.setup
    params = " ".join(f"{k}={v}" for k, v in scenario.params().items())
    ktap.diag(
        f"scenario {scenario.name}: {params} vmas={s.get('vmas')} "
        f"target={s.get('target_page_type')} built in {s.get('seconds')} s"
    )
    if "target_processes" in s:
        ktap.diag(
            f"target mapped {s['target_mappings']} times in {s['target_processes']} of "
            f"{s['processes']} processes"
        )
    for note in s.get("notes", []):  # what a scenario wants said about its set-up
        ktap.diag(note)
    k = s.get("ksm")
    if k:
        ktap.diag(
            f"ksm: merged in {k['seconds']} s; pages_shared={k['pages_shared']} "
            f"pages_sharing={k['pages_sharing']} max_page_sharing={k['max_page_sharing']} "
            f"merged_here={k['process_merged']}"
        )


def _analyse(
    ktap: KTAP,
    scenario: Scenario,
    trigger: Trigger,
    samples: list[measure.Sample],
    opts: options.Options,
    sc_doc: dict[str, Any],
    traced: bool,
) -> list[str]:
    """Statistics, diagnostics and the JSON entry; returns failure reasons."""
    problems: list[str] = []
    base = measure.mark(samples)
    measured = [s for s in samples if not s.warmup]
    lost = [s for s in measured if s.lost_events]
    usable = [s for s in measured if not s.lost_events]
    walk_ns = measure.target_durations(samples, scenario.page_type)
    kinds: Counter[tuple[str, str, str]] = Counter()
    short = 0
    over = 0
    for s in measured:
        for w in s.walks:
            kinds[(w.page_type, w.function, _folio_label(w.target))] += 1
    for s in usable:
        tw = measure.target_walks(s, scenario.page_type)
        short += not tw
        # Walks run inside the timed call, except damon's, whose window
        # may open in the middle of one.
        over += trigger.walks_inside_cost and sum(w.duration_ns for w in tw) > _ceiling(s)
    walks = stats.summarize(walk_ns)
    syscall = stats.summarize([s.firing.syscall_ns for s in measured])
    failed_moves = [s for s in measured if not s.firing.migrated]
    sc_doc["walks"] = {**walks.as_dict(), "samples": walk_ns}
    sc_doc["syscall"] = {**syscall.as_dict(), "samples": [s.firing.syscall_ns for s in measured]}
    sc_doc["walks_by_kind"] = [
        {"page_type": p, "function": f, "folio": t, "count": n}
        for (p, f, t), n in sorted(kinds.items())
    ]
    sc_doc["target_identified_by"] = "folio" if base is not None else "page_type"
    sc_doc["lost_events"] = sum(s.lost_events for s in measured)
    sc_doc["locked_walks"] = sum(n for (_, f, _), n in kinds.items() if f == "rmap_walk_locked")
    sc_doc["trials"] = [_trial(s, scenario.page_type) for s in samples]
    unverified = [s for s in samples if not s.verified]
    sc_doc["verified"] = {
        "samples": len(samples),
        "failed": len(unverified),
        "mappings_per_sample": scenario.setup.get(
            "target_mappings", scenario.setup.get("target_sharers_here")
        ),
        "processes": len(scenario.pids()),
    }

    ktap.diag(
        f"samples: {len(measured)} measured after {opts.warmup} warm-up; "
        f"{len(measured) - len(failed_moves)} {_done_word(trigger)}; every mapping of the target "
        f"verified after {len(samples) - len(unverified)} of {len(samples)} triggers"
    )
    for s in unverified[:3]:
        ktap.diag(f"sample {s.index} not verified: " + "; ".join(s.problems[:3]))
    for s in failed_moves[:3]:
        if trigger.name == "migrate":
            ktap.diag(
                f"sample {s.index}: node {s.firing.from_node} -> {s.firing.to_node} "
                f"not migrated ({status_text(s.firing.status)})"
            )
        else:
            ktap.diag(f"sample {s.index}: {trigger.name} did not take effect")
    if traced:
        ktap.diag(
            "walks seen: " + ", ".join(f"{n} {p}/{f}/{t}" for (p, f, t), n in sorted(kinds.items()))
            if kinds
            else "walks seen: none"
        )
        if base is None:
            ktap.diag(
                f"target folio not identified from pointers; counting {scenario.page_type} walks"
            )
        locked = sum(n for (_, f, _), n in kinds.items() if f == "rmap_walk_locked")
        if locked:
            # The caller held the anon_vma/i_mmap lock: e.g. a THP split
            # remapping its subpages (remap_page()), not a plain migration.
            ktap.diag(f"{locked} rmap_walk_locked walks seen (a THP split during the trigger?)")
        if lost:
            ktap.diag(
                f"lost events in {len(lost)} samples ({sc_doc['lost_events']} events): "
                "those samples are left out; raise --buffer-kb"
            )
        unpaired = sum(s.unmatched_exits + s.unfinished for s in measured)
        if unpaired:
            ktap.diag(f"{unpaired} entry/exit events without a partner")
        _metrics(ktap, scenario.name, "walk", walks)
    _metrics(ktap, scenario.name, "syscall", syscall)

    if unverified:
        problems.append(
            f"{len(unverified)} triggers left a mapping of the target behind "
            "(an rmap walk missed it)"
        )
    if traced:
        if not usable:
            problems.append("every sample lost trace events")
        elif short:
            problems.append(
                f"{short} of {len(usable)} samples captured no {scenario.page_type} walk "
                "of the target page"
            )
        if over:
            problems.append(f"{over} samples with walks longer than their syscall")
        if opts.max_p99_ms is not None and walks.p99_ns > opts.max_p99_ms * 1e6:
            problems.append(
                f"walk p99 {stats.format_ns(walks.p99_ns)} over the {opts.max_p99_ms:g} ms budget"
            )
    elif opts.max_p99_ms is not None and syscall.p99_ns > opts.max_p99_ms * 1e6:
        problems.append(
            f"syscall p99 {stats.format_ns(syscall.p99_ns)} over the {opts.max_p99_ms:g} ms budget"
        )
    return problems


def _done_word(trigger: Trigger) -> str:
    return {
        "migrate": "migrated",
        "soft-offline": "migrated",
        "damon": "sampled",
        "msync": "cleaned",
        "pageout": "paged out",
        "split": "split",
    }.get(trigger.name, "done")


def _ceiling(s: measure.Sample) -> float:
    """The most the walks of a firing may add up to: its timed cost, plus
    1% and 100 us because the two ends are read by different clocks
    (the trace's timestamps against the test's clock_gettime), which were
    seen to disagree by 0.25% on a loaded TCG host."""
    return s.firing.syscall_ns * 1.01 + 100_000


def _metrics(ktap: KTAP, scenario: str, what: str, s: stats.Summary) -> None:
    ktap.diag(
        f"{scenario} {what}: n={s.count} min={stats.format_ns(s.min_ns)} "
        f"p50={stats.format_ns(s.p50_ns)} p90={stats.format_ns(s.p90_ns)} "
        f"p99={stats.format_ns(s.p99_ns)} max={stats.format_ns(s.max_ns)}"
    )
    for key, value in s.as_dict().items():
        ktap.metric(f"{what}_{key}", value)


def _trial(s: measure.Sample, page_type: str) -> dict[str, Any]:
    return {
        "index": s.index,
        "warmup": s.warmup,
        "from_node": s.firing.from_node,
        "to_node": s.firing.to_node,
        "migrated": s.firing.migrated,
        "done": s.firing.migrated,
        "status": s.firing.status,
        "syscall_ns": s.firing.syscall_ns,
        "walk_ns": [w.duration_ns for w in measure.target_walks(s, page_type)],
        "other_walks": len(s.walks) - len(measure.target_walks(s, page_type)),
        "lost_events": s.lost_events,
        "verified": s.verified,
        "problems": s.problems,
    }


def _folio_label(target: bool | None) -> str:
    return "?" if target is None else "target" if target else "other"
