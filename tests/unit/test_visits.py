"""Tests of the --count-visits counter (rmapbench.tracing.visits and
rmapbench.bench.visitcount) on recorded traces.

The fixtures are RMAPBENCH_TRACE_DUMP output of a Debian 6.12 guest (TCG),
--pages 1000 --split 2 (1000 VMAs), migrate trigger: per firing, the ring
buffer of the counting instance (walk entry/exit, searches, rmap_one
calls), then the hist file of each iterator's return probe. KSM: 256
sharers on the target's stable node, so try_to_migrate() walks one pass
and stops once the folio is unmapped, remove_migration_ptes() (inlined in
migrate_folio_move) walks both passes.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

from rmapbench.bench import measure, program, visitcount
from rmapbench.ksft import results
from rmapbench.ksft.ktap import KTAP
from rmapbench.tracing import visits
from rmapbench.tracing.events import Walk
from rmapbench.tracing.visits import Firing, WalkVisits
from rmapbench.triggers import Firing as Firing_

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def firings(name: str) -> list[tuple[str, dict[str, str]]]:
    """[(trace text, {hist event: hist text})] per recorded firing."""
    text = (FIXTURES / name).read_text()
    parts = re.split(r"^# rmapbench visits (\d+)(?: hist (\w+))?\n", text, flags=re.MULTILINE)
    assert parts[0] == ""
    out: list[tuple[str, dict[str, str]]] = []
    for i in range(1, len(parts), 3):
        index, hist, body = int(parts[i]), parts[i + 1], parts[i + 2]
        if hist is None:
            assert index == len(out)
            out.append((body, {}))
        else:
            out[index][1][hist] = body
    return out


def replay(name: str) -> tuple[list[Firing], int | None]:
    probe = visits.VisitProbe("fprobe")
    raw: list[visits.RawFiring] = []
    for text, hists in firings(name):
        walks, buckets, dropped, damage = probe.collect(text, hists)
        assert damage.lost_with(0) == 0
        raw.append((walks, buckets, dropped, 0))
    return visits.finish(raw)


def by_caller(f: Firing) -> dict[str, WalkVisits]:
    return {w.caller: w for w in f.walks}


def test_ksm_walks_visit_every_vma_of_every_sharer() -> None:
    found, sp_delta = replay("visits_ksm.trace")
    assert sp_delta == 8  # the return probe sees the stack after `ret`
    assert len(found) == 2
    for f in found:
        assert f.outside == 0 and f.dropped == 0
        w = by_caller(f)
        assert set(w) == {"try_to_migrate", "migrate_folio_move"}
        unmap, remove = w["try_to_migrate"], w["migrate_folio_move"]
        assert unmap.page_type == remove.page_type == "ksm"
        # 1001 nodes in the anon_vma's tree (the 1000 VMAs of the region
        # and one more); remove_migration_ptes: 2 passes x 256 rmap_items.
        assert remove.searches == 512 and remove.matched == 256
        assert remove.visits == 2 * 256 * 1001
        # try_to_migrate: one pass; the last search stops at its match.
        assert unmap.searches == 256 and unmap.matched == 256
        assert unmap.visits == 255 * 1001 + 1
        assert unmap.callbacks == {"try_to_migrate_one": 256}
        assert remove.callbacks == {"remove_migration_pte": 256}
        assert remove.skipped == remove.visits - 256


def test_hist_counts_accumulate_and_are_diffed_per_firing() -> None:
    (_, hists0), (_, hists1) = firings("visits_ksm.trace")[:2]
    first, _ = visits.parse_hist(hists1["avnext_ret"])
    before, _ = visits.parse_hist(hists0["avnext_ret"])
    assert sum(first.values()) == 2 * sum(before.values())
    assert sum(visits.delta(first, before).values()) == 255000 + 512000


def test_anon_walk_visits_only_its_own_vma() -> None:
    found, _ = replay("visits_anon.trace")
    for f in found:
        assert len(f.walks) == 2
        for w in f.walks:
            assert (w.page_type, w.visits, w.matched, w.searches) == ("anon", 1, 1, 1)


def test_parse_hist() -> None:
    text = """# event histogram
#
{ common_pid:        181, sp: 18446683600581523336 } hitcount:     255000
{ common_pid:        181, sp: 18446683600581523216 } hitcount:          7

Totals:
    Hits: 255007
    Entries: 2
    Dropped: 3
"""
    buckets, dropped = visits.parse_hist(text)
    assert buckets == {(181, 18446683600581523336): 255000, (181, 18446683600581523216): 7}
    assert dropped == 3


def test_walks_sharing_a_stack_pointer_are_not_guessed() -> None:
    a = WalkVisits(1, "ksm", search_sps={1000}, matched=1)
    b = WalkVisits(1, "ksm", search_sps={1000}, matched=1)
    c = WalkVisits(1, "ksm", search_sps={2000}, matched=2)
    outside = visits.attribute([a, b, c], {(1, 1008): 10, (1, 2008): 5, (1, 3000): 4}, 8)
    assert a.visits is None and b.visits is None
    assert c.visits == 5 and c.skipped == 3
    assert outside == 4


def test_walk_without_search_has_no_visits() -> None:
    w = WalkVisits(1, "ksm")
    assert visits.attribute([w], {(1, 8): 3}, 8) == 3
    assert w.visits == 0


def test_no_learnable_delta_leaves_walks_unattributed() -> None:
    w = WalkVisits(1, "ksm", search_sps={1000})
    assert visits.learn_sp_delta([([w], {(1, 9000): 3})]) is None
    visits.attribute([w], {(1, 9000): 3}, None)
    assert w.visits is None


def _pass(walks: list[WalkVisits], lost: int = 0) -> visitcount.VisitPass:
    for w in walks:
        w.finished = True
    return visitcount.VisitPass([Firing(walks, 0, lost, 0)], "fprobe", 8)


def _timed(durations: dict[str, list[int]]) -> list[measure.Sample]:
    """Timed samples with one walk each, by caller."""
    out = []
    for caller, ds in durations.items():
        for d in ds:
            walk = Walk(0, d, 1, "rmap_walk", "ksm", caller=caller)
            out.append(measure.Sample(len(out), False, Firing_.migration(0, 0, 1, 1), 1, 2, [walk]))
    return out


def _report(
    vp: visitcount.VisitPass, timed: list[measure.Sample] | None = None
) -> tuple[dict[str, Any], str, list[str]]:
    out = io.StringIO()
    doc: dict[str, Any] = {"visits": visitcount.entry(vp, "ksm", timed)}
    ktap = KTAP("rmap_ksm", ["x"], stream=out)
    visitcount.report(ktap, doc["visits"], visitcount.timed_p50(timed, "ksm"))
    problems = visitcount.problems(vp, "ksm")
    return doc, out.getvalue(), problems


def test_report_json_ktap_and_metrics() -> None:
    found, sp_delta = replay("visits_ksm.trace")
    timed = _timed({"try_to_migrate": [30_000_000] * 3, "migrate_folio_move": [130_000_000] * 3})
    doc, text, problems = _report(visitcount.VisitPass(found, "fprobe", sp_delta), timed)
    assert not problems
    v = doc["visits"]
    assert v["visits"]["count"] == 4 and v["visits"]["max"] == 512512
    assert v["matched"]["p50"] == 256
    assert v["skipped"]["max"] == 512512 - 256
    assert v["cost_per_visit_ns"] == pytest.approx(80_000_000 / v["visits"]["p50"], rel=1e-3)
    remove, unmap = v["by_caller"]
    assert (remove["caller"], unmap["caller"]) == ("migrate_folio_move", "try_to_migrate")
    assert remove["cost_per_visit_ns"] == pytest.approx(130_000_000 / 512512, rel=1e-3)
    assert unmap["walk_p50_ns"] == 30_000_000
    assert "# rmap_ksm.visits_p50: " in text and "# rmap_ksm.cost_per_visit_ns: " in text
    m = results.metrics({"scenarios": [{"name": "ksm", **doc}]})
    assert m["ksm_visits_max"] == (512512, "visits")
    assert m["ksm_skipped_max"] == (512256, "visits")
    assert m["ksm_cost_per_visit"][1] == "ns"


def test_report_leaves_out_firings_that_lost_events() -> None:
    doc, text, _ = _report(_pass([WalkVisits(1, "ksm", visits=5, matched=1)], lost=2))
    assert doc["visits"]["visits"] == {"count": 0}
    assert doc["visits"]["left_out_walks"] == 1 and doc["visits"]["lost_events"] == 2
    assert "no ksm walk counted" in text


def test_report_fails_on_more_matches_than_visits() -> None:
    _, _, problems = _report(_pass([WalkVisits(1, "ksm", visits=1, matched=3)]))
    assert problems and "more rmap_one calls than visits" in problems[0]


def test_report_unavailable() -> None:
    doc, text, problems = _report(visitcount.VisitPass(unavailable="no kprobe events"))
    assert visitcount.timed_p50(None, "ksm") == {}
    assert doc["visits"] == {"unavailable": "no kprobe events"} and not problems
    assert "unavailable" in text


def test_firings_are_few() -> None:
    assert visitcount.firings_for(30) == 3 and visitcount.firings_for(3) == 3


def test_option() -> None:
    assert program.check("ksm", ["--count-visits"]).count_visits
    assert not program.check("ksm", []).count_visits


@pytest.mark.parametrize(
    ("backing", "walk", "tree"),
    [("ksm", "rmap_walk_ksm", "avfirst"), ("anon", "rmap_walk_anon", "avfirst"),
     ("file", "rmap_walk_file", "vmfirst"), ("shmem", "rmap_walk_file", "vmfirst")],
)  # fmt: skip
def test_probes_only_the_backing_walk_and_tree(backing: str, walk: str, tree: str) -> None:
    p = visits.VisitProbe("kprobe", backing)
    assert p.walks == [walk]
    assert p.roles[f"{walk}_entry"] == f"walk:{walk}" and p.roles[tree] == "search"
    assert p.counted == [f"{tree}_ret", f"{tree.replace('first', 'next')}_ret"]
    assert len([r for r in p.roles.values() if r.startswith("cb:")]) == len(visits.CALLBACKS)
    assert p._exit("f", "x") == f"r:{p.group}/x f"


def test_damage_is_counted_not_attributed() -> None:
    """A firing whose text or hist files cannot all be read counts as
    having lost events (left out), where it used to raise KeyError (a
    search without sp), ValueError (a number of no kind), or count
    visits against the wrong walk."""
    text, hists = firings("visits_anon.trace")[0]
    lines = text.split("\n")
    search = next(i for i, ln in enumerate(lines) if " avfirst: " in ln)
    entry = next(i for i, ln in enumerate(lines) if "_entry: " in ln)
    cut_sp = lines[search][: lines[search].index("sp=0x") + 10]  # a pointer cut short
    damaged_texts = [
        "\n".join([*lines[:search], lines[search].split(" sp=")[0], *lines[search + 1 :]]),
        "\n".join([*lines[:search], cut_sp, *lines[search + 1 :]]),
        "\n".join([*lines[:entry], *lines[entry + 1 :]]),  # its exit, search, callback: no walk's
    ]
    for damaged in damaged_texts:
        *_, damage = visits.VisitProbe("fprobe").collect(damaged, hists)
        assert damage.lost_with(0) >= 1
    name = next(iter(hists))
    cut = hists[name][: hists[name].index("Totals:")]  # a read cut short
    twice = hists[name].replace("\nTotals:", hists[name].split("\n")[5] + "0\nTotals:")
    for hist in (cut, twice, hists[name].replace("} hitcount:", "} hitcount: x", 1)):
        *_, damage = visits.VisitProbe("fprobe").collect(text, {**hists, name: hist})
        assert damage.lost_with(0) >= 1
    *_, damage = visits.VisitProbe("fprobe").collect("CPU:1 [LOST 4 EVENTS]\n" + text, hists)
    assert (damage.lost, damage.lost_with(2), damage.lost_with(9)) == (4, 4, 9)
