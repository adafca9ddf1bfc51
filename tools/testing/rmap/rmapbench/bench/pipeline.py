"""One test case end to end, as a flat pipeline of stages with typed values
between them (in the manner of tools/testing/kunit's kunit_tool):

  preflight.choose -> preflight.check -> sampling.arm -> build.set_knobs
  -> build.build -> build.prepare -> sampling.sample -> (visitcount.run_pass)
  -> judge.judge -> report

The system is restored (Scenario.teardown(), then the journal) as soon as
the measuring stages are over, however they end, and before the verdict,
which checks that it was. The result document (bench/document.py) is filled
in along the way and written once at the end. The test programs call main()
(through bench/program.py).
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rmapbench.bench import build, preflight, report, sampling, visitcount
from rmapbench.bench.cases import NOT_SELECTED, plan
from rmapbench.bench.document import Document, Timing, TriggerEntry, backend_entries
from rmapbench.bench.judge import Evidence, Verdict, judge
from rmapbench.bench.preflight import Plan, Skip
from rmapbench.bench.warmup import Warmup
from rmapbench.ksft import options, phases, precision, results
from rmapbench.ksft.cli import UsageError
from rmapbench.ksft.ktap import KSFT_FAIL, KSFT_SKIP, KTAP
from rmapbench.machine import knobs, ksm_knobs
from rmapbench.machine import shared_probes as shared
from rmapbench.machine.knobs import Interrupted, Journal
from rmapbench.scenarios import SCENARIOS
from rmapbench.scenarios.base import Scenario, SkipScenario
from rmapbench.tracing import calibrate

if TYPE_CHECKING:  # imported when --bystander asks (its imports cost 0.1 s under TCG)
    from rmapbench.bench import bystander

__all__ = ["Skip", "main"]

log = logging.getLogger("rmapbench")


@dataclass(frozen=True)
class Measured:
    """What the measuring stages hand the verdict: the plan they ran, when
    the case began (after preflight), the timed samples and the visit pass."""

    plan: Plan
    started: float
    sampled: sampling.Sampled
    visits: visitcount.VisitPass | None
    bystanders: bystander.Recording | None = None  # --bystander


def _setup_logging(verbose: bool) -> None:
    # Log lines are TAP diagnostics too, so a merged stderr keeps TAP valid.
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if verbose else logging.WARNING,
        format="# %(name)s: %(message)s",
    )


def main(program: str, scenario_name: str, opts: options.Options) -> int:
    """Run the case on options rmapbench.bench.program has checked."""
    phases.begin("preflight")
    _setup_logging(opts.verbose)
    cases = plan(opts.backend)
    if opts.case and scenario_name not in opts.case:
        return _report_not_selected(program, cases)
    journal = Journal()
    scenario = SCENARIOS[scenario_name](opts, journal)
    doc = Document.start(program, scenario, opts)
    if opts.results:
        # Replaced by the final document; left saying "running" by a run
        # killed. Before the KTAP plan: a directory that cannot take it (a
        # full filesystem passes the option check's empty probe file) is a
        # refused command line, with nothing set up.
        try:
            results.write_marker(opts.results, results.marker(program, doc.options))
        except OSError as e:
            raise UsageError(f"--results {opts.results}: cannot write there: {_why(e)}") from e
    ktap = KTAP(program, cases)
    for opt in options.not_applicable(opts, scenario.policy):
        ktap.diag(f"option {opt} does not apply to the {scenario_name} case; ignored")
    written = True
    try:
        status = _run_guarded(program, scenario, opts, journal, ktap, cases, doc)
    finally:
        # Also when reporting failed (the runner that read our output died).
        if opts.results:
            written = _write_results(program, opts, doc)
    # The KTAP said what happened; the results asked for are not there.
    return status if written else KSFT_FAIL


def _write_results(program: str, opts: options.Options, doc: Document) -> bool:
    """The final result files; False (and one line on stderr) when they
    could not be written: the filesystem filled up during the run."""
    assert opts.results is not None
    rule = precision.CURRENT
    sampling = rule.entry() if rule else precision.fixed_entry(opts.samples)
    sampling["warmup"] = Warmup.of(opts.warmup).entry()
    try:
        results.write_results(
            opts.results, {**doc.as_dict(), "phases": _phases(doc), "sampling": sampling}
        )
    except OSError as e:
        print(
            f"# {program}: could not write the results to {opts.results}: {_why(e)}; "
            "the system was restored",
            file=sys.stderr,
        )
        return False
    return True


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def _run_guarded(
    program: str,
    scenario: Scenario,
    opts: options.Options,
    journal: Journal,
    ktap: KTAP,
    cases: list[str],
    doc: Document,
) -> int:
    """Run the case; a SKIP, a signal or an exception becomes KTAP results
    for the cases not reported yet, and the document's status."""
    try:
        with knobs.signals_raise():
            try:
                measured = _measure_and_restore(program, scenario, opts, journal, ktap, doc)
            except knobs.KnobUnwritable as e:  # restored: what was set is undone
                raise Skip(KNOB_UNWRITABLE, f"cannot change {e}") from e
            return _conclude(measured, doc)
    except Skip as e:
        if e.detail:
            ktap.diag(e.detail)
        for case in cases:
            ktap.skip(case, e.reason)
        doc.conclude("skip", e.reason, e.detail)
        return ktap.finish()
    except Interrupted as e:
        return _interrupted(ktap, cases, doc, e)
    except Exception as e:
        signum = knobs.received_signal()
        if signum is not None:  # what failed was the signal's doing (a child it killed)
            ktap.diag(f"after the signal: {type(e).__name__}: {e}")
            return _interrupted(ktap, cases, doc, Interrupted(signum))
        # Like ksft.py: the exception becomes diagnostics and a failure;
        # the system is still restored and the result still written.
        for line in traceback.format_exc().splitlines():
            ktap.diag(f"Exception| {line}")
        for case in cases[ktap.reported() :]:
            ktap.fail(case, f"{type(e).__name__}: {e}")
        doc.conclude("error", f"{type(e).__name__}: {e}")
        return ktap.finish()


KNOB_UNWRITABLE = "kernel knob not writable"


def _report_not_selected(program: str, cases: list[str]) -> int:
    """A program whose case --case did not select: a valid KTAP plan of
    SKIPs, nothing set up, exit status 4 (KSFT_SKIP), so a runner that
    starts every program (the kernel tree's runner.sh) reports it as
    `# SKIP`, not as a test that passed having measured nothing."""
    ktap = KTAP(program, cases)
    for name in cases:
        ktap.skip(name, NOT_SELECTED)
    ktap.finish()
    return KSFT_SKIP


def _interrupted(ktap: KTAP, cases: list[str], doc: Document, e: Interrupted) -> int:
    # The document first: with the runner gone, writing KTAP can fail (EPIPE).
    doc.conclude("fail", str(e))
    doc.interrupted = knobs.signal_name(e.signum)
    for case in cases[ktap.reported() :]:
        ktap.fail(case, f"{e}; system restored")
    ktap.finish()
    return knobs.exit_status_for(e)


def _measure_and_restore(
    program: str,
    scenario: Scenario,
    opts: options.Options,
    journal: Journal,
    ktap: KTAP,
    doc: Document,
) -> Measured:
    """Every stage that changes the system; then, whatever happened, the
    journal is restored: the one place it is."""
    try:
        case = preflight.choose(program, scenario, opts, journal, ktap)
        doc.trigger = TriggerEntry(case.trigger.name, opts.trigger, case.why)
        preflight.check(case)
        started = time.monotonic()
        doc.trigger.described = case.trigger.describe()
        preflight.announce(case)
        case.trigger.quiesce(journal)
        phases.begin("arm")
        armed = sampling.arm(case)
        return _measure(case, armed, started, doc)
    finally:
        phases.begin("restore")
        for f in journal.restore() + shared.release_if_orphaned():
            print(f"# {program}: could not restore {f}", file=sys.stderr)


def _measure(case: Plan, armed: sampling.Armed, started: float, doc: Document) -> Measured:
    """Build, prepare, sample and count visits; the scenario is torn down
    on every way out."""
    assert doc.trigger is not None
    try:
        phases.begin("build")
        ksm = build.set_knobs(case)
        doc.scenario.knob_params = ksm.params
        built = build.build(case, ksm)
        doc.scenario.setup = built.setup
        phases.begin("prepare")
        doc.trigger.learnt = build.prepare(case, built)
        crowd: bystander.Crowd | None = None
        if case.opts.bystander:
            from rmapbench.bench import bystander

            crowd = bystander.start(case, case.scenario)  # None when it does not apply
        phases.begin("warmup")  # sampling.sample opens "samples" after the warm-up
        try:
            sampled = sampling.sample(case, built, armed)
            recorded = crowd.finish() if crowd else None
        finally:
            if crowd:
                crowd.kill()
        doc.scenario.measure_seconds = sampled.seconds
        # Separate, untimed: the visit probes would inflate the latency.
        vpass = None
        if case.opts.count_visits:
            phases.begin("visits")
            vpass = visitcount.run_pass(
                case.trigger,
                built.addr,
                case.opts,
                case.journal,
                case.scenario.backing,
                case.trigger.pids(),
            )
    except SkipScenario as e:  # found out while building
        raise Skip(str(e), e.detail) from e
    except ksm_knobs.KnobRefused as e:
        raise Skip(str(e)) from e
    finally:
        phases.begin("teardown")
        case.scenario.teardown()
    return Measured(case, started, sampled, vpass, recorded)


def _conclude(m: Measured, doc: Document) -> int:
    """Judge the measurements, report them, and record the verdict."""
    case, sampled = m.plan, m.sampled
    phases.begin("report")
    doc.backend = sampled.desc
    verdict = judge(_evidence(m))
    report.samples(case, verdict.tally, sampled.traced)
    doc.scenario.timing = Timing.of(verdict.tally, case.scenario, sampled.calibration)
    if m.visits is not None:
        _report_visits(m, doc)
    if m.bystanders is not None:
        from rmapbench.bench import bystander

        bystander.conclude(m.plan, m.bystanders, verdict.tally, m.sampled, doc.scenario)
    doc.duration_s = round(time.monotonic() - m.started, 3)
    report.result(case.ktap, verdict)
    if verdict.passed:
        doc.conclude("pass")
    else:
        doc.conclude("fail", "; ".join(verdict.reasons))
    if case.every_backend:
        _report_rounds(m, verdict, doc)
    case.ktap.diag(phases.line(_phases(doc)))
    return case.ktap.finish()


def _phases(doc: Document) -> dict[str, object]:
    """The document's `phases` (docs/json.md): where the program's time went."""
    timing = doc.scenario.timing
    return phases.entry(phases.RECORDER.table(), timing.tally.walk_ns if timing else [])


def _evidence(m: Measured) -> Evidence:
    case, sampled = m.plan, m.sampled
    return Evidence(
        samples=sampled.samples,
        page_type=case.scenario.page_type,
        traced=sampled.traced,
        walks_inside_cost=case.trigger.walks_inside_cost,
        max_p99_ms=case.opts.max_p99_ms,
        not_restored=case.journal.check_restored(),
        visits=m.visits,
        rounds=sampled.rounds,
        expect=sampling.expect_of(case),
        ksmd_stopped=case.scenario.page_type != "ksm" or not sampled.ksmd_running,
        probe_cost_ns=cost_of(sampled.calibration),
    )


def cost_of(cal: calibrate.Calibration | None) -> int | None:
    """The correction per walk, when the backend's cost was measured."""
    if cal is None or cal.unavailable or not cal.firings:
        return None
    return cal.cost_ns


def _report_visits(m: Measured, doc: Document) -> None:
    assert m.visits is not None
    page_type = m.plan.scenario.page_type
    timed = m.sampled.samples if m.sampled.traced else None
    doc.scenario.visits = visitcount.entry(m.visits, page_type, timed)
    visitcount.report(m.plan.ktap, doc.scenario.visits, visitcount.timed_p50(timed, page_type))


def _report_rounds(m: Measured, verdict: Verdict, doc: Document) -> None:
    entries = backend_entries(m.sampled.rounds)
    doc.scenario.backends = entries
    report.rounds(m.plan.ktap, m.sampled.rounds, entries)
    report.agreement(m.plan.ktap, verdict)
    if verdict.disagreements:
        doc.conclude("fail", "; ".join([*verdict.reasons, *verdict.disagreements]))
