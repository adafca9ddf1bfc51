"""The report stage: KTAP diagnostics, metrics and test results of a
judged case. Every line here is read by people and by the guest tests;
none of it decides anything (bench/judge.py does)."""

from __future__ import annotations

from rmapbench.bench import crossval
from rmapbench.bench.cases import AGREEMENT, CASE
from rmapbench.bench.document import BackendEntry
from rmapbench.bench.judge import Verdict
from rmapbench.bench.preflight import Plan
from rmapbench.bench.tally import Tally, corrected
from rmapbench.ksft import stats
from rmapbench.ksft.ktap import KTAP
from rmapbench.triggers import Trigger, status_text

DONE_WORDS = {
    "migrate": "migrated",
    "soft-offline": "migrated",
    "damon": "sampled",
    "msync": "cleaned",
    "pageout": "paged out",
    "split": "split",
}


def samples(plan: Plan, t: Tally, traced: bool) -> None:
    """What the timed samples were: verification, firings that did not do
    their job, the walks seen, and the walk and syscall statistics."""
    ktap = plan.ktap
    verified = len(t.samples) - len(t.unverified)
    ktap.diag(
        f"samples: {len(t.measured)} measured after {sum(s.warmup for s in t.samples)} warm-up; "
        f"{len(t.measured) - len(t.not_done)} {DONE_WORDS.get(plan.trigger.name, 'done')}; "
        f"every mapping of the target verified after {verified} of {len(t.samples)} triggers"
    )
    for s in t.unverified[:3]:
        ktap.diag(f"sample {s.index} not verified: " + "; ".join(s.problems[:3]))
    _not_done(ktap, plan.trigger, t)
    _failed(ktap, plan.trigger, t, traced)
    name = plan.scenario.name
    if traced:
        _walks(ktap, plan.scenario.page_type, t)
        metrics(ktap, name, "walk", t.walks)
        if t.probe_cost_ns:
            ktap.metric("probe_cost_ns", t.probe_cost_ns)
            metrics(ktap, name, "walk_corrected", stats.summarize(t.corrected_ns))
        # Per caller: the walks one firing makes are different walks
        # (try_to_migrate unmaps, remove_migration_ptes remaps), not one
        # population; metric names walk_CALLER_KEY (KEY as for walk_).
        for caller, d in t.by_caller.items():
            metrics(ktap, name, f"walk_{caller}", stats.summarize(d))
            if t.probe_cost_ns:
                corr = stats.summarize(corrected(d, t.probe_cost_ns))
                ktap.metric(f"walk_{caller}_corrected_p50_ns", corr.p50_ns)
    metrics(ktap, name, "syscall", t.syscall)


def _not_done(ktap: KTAP, trigger: Trigger, t: Tally) -> None:
    for s in t.not_done[:3]:
        if trigger.name == "migrate":
            ktap.diag(
                f"sample {s.index}: node {s.firing.from_node} -> {s.firing.to_node} "
                f"not migrated ({status_text(s.firing.status)})"
            )
        else:
            ktap.diag(f"sample {s.index}: {trigger.name} did not take effect")


def _failed(ktap: KTAP, trigger: Trigger, t: Tally, traced: bool) -> None:
    """Firings that did not do their job: how many, why, and what their
    walks (left out of the statistics) and retries were."""
    ktap.metric("failed_triggers", len(t.failed))
    if t.failed:
        causes = ", ".join(f"{n} {c}" for c, n in t.failure_counts().most_common())
        walks = ""
        if traced and t.failed_walk_ns:
            fw = stats.summarize(t.failed_walk_ns)
            walks = (
                f"; their {fw.count} target walks (p50 {stats.format_ns(fw.p50_ns)}, "
                f"{fw.count / len(t.failed):.1f} per firing) are left out of the statistics"
            )
        ktap.diag(
            f"failed triggers: {len(t.failed)} of {len(t.measured)} {trigger.name} "
            f"({causes}){walks}"
        )
    if t.retry_walk_ns:
        rw = stats.summarize(t.retry_walk_ns)
        ktap.diag(
            f"retry walks: {rw.count} walks of earlier tries inside successful firings "
            f"(p50 {stats.format_ns(rw.p50_ns)}), left out of the statistics"
        )
    ktap.metric("retry_walks", len(t.retry_walk_ns))


def _walks(ktap: KTAP, page_type: str, t: Tally) -> None:
    seen = ", ".join(f"{n} {p}/{f}/{label}" for (p, f, label), n in sorted(t.kinds.items()))
    ktap.diag("walks seen: " + (seen or "none"))
    if t.base is None:
        ktap.diag(f"target folio not identified from pointers; counting {page_type} walks")
    if t.locked_walks:
        # The caller held the anon_vma/i_mmap lock: e.g. a THP split
        # remapping its subpages (remap_page()), not a plain migration.
        ktap.diag(f"{t.locked_walks} rmap_walk_locked walks seen (a THP split during the trigger?)")
    if t.lost:
        ktap.diag(
            f"lost events in {len(t.lost)} samples ({t.lost_events} events): "
            "those samples are left out; raise --buffer-kb"
        )
    if t.unpaired:
        ktap.diag(f"{t.unpaired} entry/exit events without a partner")


def metrics(ktap: KTAP, scenario: str, what: str, s: stats.Summary) -> None:
    ktap.diag(
        f"{scenario} {what}: n={s.count} min={stats.format_ns(s.min_ns)} "
        f"p50={stats.format_ns(s.p50_ns)} p90={stats.format_ns(s.p90_ns)} "
        f"p99={stats.format_ns(s.p99_ns)} max={stats.format_ns(s.max_ns)}"
    )
    for key, value in s.as_dict().items():
        ktap.metric(f"{what}_{key}", value)


def rounds(ktap: KTAP, rnds: list[crossval.Round], entries: list[BackendEntry]) -> None:
    """--backend all, per backend: walk p50/p99, ratio to the reference,
    overhead per walk."""
    reference = rnds[0]
    for rnd, e in zip(rnds, entries, strict=True):
        if not e.timing:
            ktap.diag(f"baseline (no backend): syscall p50 {stats.format_ns(rnd.syscall.p50_ns)}")
            continue
        overhead = e.overhead_ns
        ktap.diag(
            f"backend {rnd.name}: walk p50 {stats.format_ns(rnd.walks.p50_ns)} "
            f"p99 {stats.format_ns(rnd.walks.p99_ns)}, "
            f"{e.p50_ratio or 0:.2f}x {reference.name}, overhead "
            f"{stats.format_ns(overhead) if overhead is not None else '?'} per walk"
        )
        ktap.metric(f"{rnd.name}_walk_p50_ns", rnd.walks.p50_ns)
        ktap.metric(f"{rnd.name}_walk_p99_ns", rnd.walks.p99_ns)
        if overhead is not None:
            ktap.metric(f"{rnd.name}_overhead_ns", overhead)
        cost = rnd.cost_ns
        if cost:
            ktap.metric(f"{rnd.name}_probe_cost_ns", cost)
            ktap.metric(f"{rnd.name}_walk_corrected_p50_ns", rnd.corrected.p50_ns)
        parts = []
        for caller, s in rnd.by_caller.items():
            ktap.metric(f"{rnd.name}_walk_{caller}_p50_ns", s.p50_ns)
            text = f"{caller} {stats.format_ns(s.p50_ns)}"
            if cost:
                c50 = rnd.corrected_by_caller[caller].p50_ns
                ktap.metric(f"{rnd.name}_walk_{caller}_corrected_p50_ns", c50)
                text += f" ({stats.format_ns(c50)} corrected)"
            parts.append(text)
        if cost or parts:
            head = (
                f"probe cost {stats.format_ns(cost)}, corrected p50 "
                f"{stats.format_ns(rnd.corrected.p50_ns)}"
                if cost
                else "not corrected"
            )
            ktap.diag(f"backend {rnd.name}: {head}; p50 per caller: {', '.join(parts) or '-'}")


def result(ktap: KTAP, verdict: Verdict) -> None:
    """The case's test result line."""
    if verdict.passed:
        ktap.ok(CASE)
    else:
        ktap.fail(CASE, "; ".join(verdict.reasons))


def agreement(ktap: KTAP, verdict: Verdict) -> None:
    """--backend all: the backends' agreement test result line."""
    if verdict.disagreements:
        ktap.fail(AGREEMENT, "; ".join(verdict.disagreements))
    else:
        ktap.ok(AGREEMENT)
