"""Property tests: the parsers of trace text, on recorded traces damaged
line by line (tests/trace_damage.py says how), never raise and never make
a walk of a line they could not read without counting it.

Each parser is run through its backend's entry point (Backend.walks(),
the visit counter's collect(), contention.parse()) on the fixtures, once
as recorded and once damaged. What the property asks, by kind of damage:
- what a later kernel may add or reorder: the same records, nothing counted;
- a lost-events marker: the same records, its events counted as lost;
- anything else: every record one of the recorded ones (a folio or a
  caller maybe unknown), and every recorded one still there; else the
  damage counted, so the sample counts as having lost events.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from trace_damage import FIXTURES, HARMLESS, SETTINGS, Damaged, compatible, damaged, sections

from rmapbench.tracing import contention, fgraph, visits
from rmapbench.tracing.events import Pairing
from rmapbench.tracing.probes import DynamicProbe
from rmapbench.tracing.tracepoint import SyscallPair, Tracepoint


@dataclass(frozen=True)
class Read:
    records: list[tuple[object, ...]]
    counted: int  # unpaired, unreadable and lost events
    marked: int  # of them, the events lost-events markers counted


def _walks(p: Pairing) -> Read:
    records = [(w.end_ns, w.duration_ns, w.pid, w.function, w.page_type, w.folio, w.caller)
               for w in p.walks]  # fmt: skip
    return Read(records, p.unmatched_exits + p.unfinished + p.lost_with(0), p.lost_marked)


WALK_UNKNOWN = {5: None, 6: ""}  # a folio or caller the damage hid


def tracepoint(form: str, synth: str = "") -> Callable[[str], Read]:
    tp = Tracepoint()
    tp.form = form
    tp.paired_in_kernel = bool(synth)
    tp.synth = synth
    return lambda text: _walks(tp.walks(text))


def probe(kind: str, group: str) -> Callable[[str], Read]:
    p = DynamicProbe(kind)
    p.group, p._hist = group, True  # as recorded: paired in the kernel
    return lambda text: _walks(p.walks(text))


def syscall(synth: str) -> Callable[[str], Read]:
    pair = SyscallPair()
    pair.synth = synth
    return lambda text: _walks(pair.walks(text))


def graph(text: str) -> Read:
    return _walks(fgraph.graph_walks(text, 0))


def locks(text: str) -> Read:
    p = contention.parse(text)
    records = [(w.pid, w.lock, w.kind, w.begin_ns, w.end_ns, w.ret) for w in p.waits]
    return Read(records, p.unfinished + p.unmatched_ends + p.damage.lost_with(0), p.damage.lost)


# parser -> (how it reads a sample, the fixtures' samples, which unknown-
# event damage it must count: those whose instance holds its events alone)
PARSERS: dict[str, tuple[Callable[[str], Read], list[str], bool]] = {
    "tracepoint v4": (
        tracepoint("duration"),
        [*sections("tracepoint_v4.trace"), *sections("tracepoint_v4_raw.trace"),
         *sections("tracepoint_v4_raw_ksm.trace")],
        False,
    ),
    "tracepoint start/end, user space": (
        tracepoint("start_end"), sections("tracepoint_v5.trace"), False),
    "tracepoint start/end, in kernel": (
        tracepoint("start_end", "rmapbench_89_rmap_walk"),
        [*sections("tracepoint_v5_hist.trace"), *sections("tracepoint_v5_hist_file.trace")],
        False,
    ),
    "fprobe": (
        lambda t: _walks_of_group(t, "fprobe"),
        [s for f in ("fprobe_anon.trace", "fprobe_file.trace", "fprobe_ksm.trace",
                     "fprobe_anon_dispatch.trace", "fprobe_damon_ksm.trace")
         for s in sections(f)],
        False,
    ),
    "kprobe": (probe("kprobe", "rmapbench_140"), sections("kprobe_ksm_6.1.trace"), False),
    "syscall pair": (
        syscall("rmapbench_81_c_getppid"), sections("tracepoint_syscall_calibration.trace"), False),
    "function_graph": (graph, sections("fgraph_anon.trace"), True),
    "contention": (locks, sections("contention_ksm_6.12.trace"), False),
}  # fmt: skip


def _walks_of_group(text: str, kind: str) -> Read:
    """A probe backend named as the run that recorded `text` was."""
    m = re.search(r"(rmapbench_\d+)_rmap_walk", text)
    return probe(kind, m.group(1) if m else "rmapbench_0")(text)


def check(read: Callable[[str], Read], text: str, d: Damaged, unknown: dict[int, object],
          unknown_events_counted: bool) -> None:  # fmt: skip
    event(d.kind)
    recorded = read(text)
    got = read(d.text)  # raises nothing
    if d.kind in HARMLESS or d.kind == "none":
        assert (got.records, got.counted) == (recorded.records, recorded.counted), d.kind
        return
    if d.kind == "lost marker":
        assert got.records == recorded.records
        assert got.marked >= recorded.marked + d.lost and got.counted >= recorded.counted + d.lost
        return
    if got.counted > recorded.counted:
        return  # the sample counts as having lost events: left out
    assert compatible(got.records, recorded.records, unknown), (d.kind, "a record made up")
    if d.kind != "unknown event" or unknown_events_counted:
        # (an event of no name it knows is another program's: the kept instance)
        assert len(got.records) == len(recorded.records), (d.kind, "a record lost silently")


@pytest.mark.parametrize("name", PARSERS)
@settings(max_examples=120, **SETTINGS)
@given(data=st.data())
def test_damaged_trace_text(name: str, data: st.DataObject) -> None:
    read, texts, strict = PARSERS[name]
    text = texts[data.draw(st.integers(0, len(texts) - 1), label="sample")]
    d = data.draw(damaged(text))
    check(read, text, d, WALK_UNKNOWN, strict)


# -- the visit counter: ring-buffer text and hist files ------------------------


def _firings(name: str) -> list[tuple[str, dict[str, str]]]:
    """[(trace text, {hist event: hist text})] per recorded firing."""
    out: list[tuple[str, dict[str, str]]] = []
    text = (FIXTURES / name).read_text()
    for part in re.split(r"^# rmapbench visits ", text, flags=re.MULTILINE)[1:]:
        head, _, body = part.partition("\n")
        if " hist " in head:
            out[-1][1][head.split()[-1]] = body
        else:
            out.append((body, {}))
    return out


FIRINGS = _firings("visits_anon.trace") + _firings("visits_ksm.trace")[:2]


def _visits(text: str, hists: dict[str, str]) -> Read:
    walks, buckets, dropped, damage = visits.VisitProbe("fprobe").collect(text, hists)
    records: list[tuple[object, ...]] = [
        (w.pid, w.page_type, w.folio, tuple(sorted(w.search_sps)), w.searches, w.matched,
         tuple(sorted(w.callbacks.items())), w.finished, w.caller)
        for w in walks
    ]  # fmt: skip
    records += [("bucket", *key, n, None, None, None, None, None) for key, n in buckets.items()]
    return Read(records, damage.lost_with(dropped), damage.lost)


HIST_KINDS = ("out of range", "not a number", "garbage inside", "garbage line", "very long line",
              "field given twice")


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_damaged_visit_counts(data: st.DataObject) -> None:
    text, hists = FIRINGS[data.draw(st.integers(0, len(FIRINGS) - 1), label="firing")]
    damage_hist = bool(hists) and data.draw(st.booleans())
    if not damage_hist:
        d = data.draw(damaged(text))
        check(lambda t: _visits(t, hists), text, d, {8: ""}, True)
        return
    name = data.draw(st.sampled_from(sorted(hists)))
    if data.draw(st.booleans()):
        # A hist file is read whole: damage cuts it short, never a line inside.
        cut = data.draw(st.integers(0, len(hists[name]) - 1))
        d = Damaged("truncated", hists[name][:cut], 0, (hists[name][max(0, cut - 40) : cut],))
    else:
        d = data.draw(damaged(hists[name], HIST_KINDS))
    check(lambda h: _visits(text, {**hists, name: h}), hists[name], d, {}, True)
