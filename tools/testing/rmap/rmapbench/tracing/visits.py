"""Interval-tree visits per rmap walk (--count-visits).

A walk searches an interval tree and handles each node it returns:
rmap_walk_ksm() and rmap_walk_anon() iterate an anon_vma's tree with
anon_vma_interval_tree_iter_first()/_iter_next(), rmap_walk_file() the
file's i_mmap with vma_interval_tree_iter_first()/_iter_next() (all four
out of line in mm/interval_tree.c, so they can be probed). Definitions:

- visit: a non-NULL node returned by iter_first or iter_next (the NULL
  that ends a search is not one);
- matched: a call of the walk's rmap_one callback (try_to_migrate_one,
  remove_migration_pte, ...);
- skipped = visits - matched: every `continue` before the callback.
  rmap_walk_ksm() searches each rmap_item's anon_vma over 0..ULONG_MAX and
  skips VMAs that do not cover the item's address, then (first pass) VMAs
  of other mms or (second pass, for forks) of its own mm; all three walks
  skip what rwc->invalid_vma refuses. A walk that stops early (rmap_one
  false, or rwc->done true: try_to_migrate stops once the folio is
  unmapped) skips nothing after its last match.

How they are counted. A KSM walk at 2000 pages returns hundreds of
thousands of nodes, too many for the ring buffer and its text output
under TCG, so the visits are counted in the kernel: a hist trigger on the
return probes of the iterators, filtered on a non-NULL return, keyed on
(pid, stack pointer). Everything else is rare and goes to the ring buffer
of a private instance: walk entry and exit, each search (iter_first entry,
with its stack pointer) and each rmap_one call. A walk calls the
iterators from its own frame, so all its visits share one stack pointer,
the one its searches show (plus a constant: the return probe sees the
stack after the return address is popped, learned from the data). Two
walks in one firing differ in their call chains (try_to_migrate() from
migrate_folio_unmap(), remove_migration_ptes() from migrate_folio_move()),
hence in that stack pointer; walks that share one are reported as not
attributable rather than guessed.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from rmapbench.tracing import events, functions, walkfuncs
from rmapbench.tracing.backend import Unavailable
from rmapbench.tracing.tracefs import Instance, TraceError, TraceFS

# Iterator -> short event stem. anon_vma trees for KSM and anon walks,
# i_mmap for file walks.
ITERATORS = {
    "anon_vma_interval_tree_iter_first": "avfirst",
    "anon_vma_interval_tree_iter_next": "avnext",
    "vma_interval_tree_iter_first": "vmfirst",
    "vma_interval_tree_iter_next": "vmnext",
}
SEARCHES = ("anon_vma_interval_tree_iter_first", "vma_interval_tree_iter_first")

# Backing -> its walk function and the tree that walk searches. Only those
# are probed: under TCG each probe takes about a second to arm and to remove.
WALK_OF = {
    "ksm": ("rmap_walk_ksm", "anon_vma"),
    "anon": ("rmap_walk_anon", "anon_vma"),
    "file": ("rmap_walk_file", "vma"),
    "shmem": ("rmap_walk_file", "vma"),
}

# rmap_one callbacks of the walks the triggers start (mm/rmap.c, mm/migrate.c,
# mm/damon/paddr.c); the ones a kernel lacks or cannot trace are left out.
CALLBACKS = (
    "try_to_migrate_one",
    "remove_migration_pte",
    "try_to_unmap_one",
    "page_mkclean_one",
    "folio_referenced_one",
    "damon_folio_mkold_one",
    "damon_folio_young_one",
)

# A visit's stack pointer minus its search's: small, constant per kernel.
MAX_SP_DELTA = 64

_HIST_LINE = re.compile(
    r"\{\s*common_pid:\s*(\d{1,10}),\s*sp:\s*(\d{1,20})\s*\}\s*hitcount:\s*(\d{1,20})\s*", re.ASCII
)
# The totals a hist file ends with (kernel/trace/trace_events_hist.c hist_show()).
_TOTAL = re.compile(r"\s*(Totals:|Hits:\s*\d{1,20}|Entries:\s*\d{1,20}|Dropped:\s*(\d{1,20}))\s*",
                    re.ASCII)  # fmt: skip

Buckets = dict[tuple[int, int], int]  # (pid, stack pointer) -> visits
# One firing before attribution: walks, visit buckets, hist drops, lost events.
RawFiring = tuple[list["WalkVisits"], Buckets, int, int]


@dataclass
class WalkVisits:
    """One walk of the counting pass."""

    pid: int
    page_type: str
    caller: str = ""
    folio: int | None = None
    search_sps: set[int] = field(default_factory=set)
    searches: int = 0
    matched: int = 0
    callbacks: Counter[str] = field(default_factory=Counter)
    visits: int | None = None  # None: not attributable (stack pointer shared)
    finished: bool = False

    @property
    def skipped(self) -> int | None:
        return None if self.visits is None else self.visits - self.matched


@dataclass
class Firing:
    """What one trigger firing left: its walks and the visits outside them."""

    walks: list[WalkVisits]
    outside: int = 0  # visits in buckets no walk of this firing claimed
    lost_events: int = 0
    dropped: int = 0  # hist entries the kernel's map had no room for


def _caller(body: str) -> str:
    """'(migrate_folio_move+0x29f/0x330 <- rmap_walk_ksm)' -> migrate_folio_move."""
    m = re.match(r"\((\w+)[+\w/]* <- ", body)
    return m.group(1) if m else ""


def parse_hist(text: str, damage: events.Damage | None = None) -> tuple[Buckets, int]:
    """A `hist` file keyed on common_pid,sp -> buckets, and its Dropped
    count. A line that is none of what the file holds, a bucket given
    twice, or a file cut short before its totals go to `damage` (then
    what was read is not all there was)."""
    d = damage if damage is not None else events.Damage()
    out: Buckets = {}
    dropped, totals = 0, False
    for line in text.split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        m = _HIST_LINE.fullmatch(line)
        if m:
            key, hits = (int(m.group(1)), int(m.group(2))), int(m.group(3))
            if key in out or max(key[1], hits) > events.U64_MAX:
                d.unread(line)
            out[key] = hits
            continue
        t = _TOTAL.fullmatch(line)
        if t is None:
            d.unread(line)
        elif t.group(2) is not None:
            dropped += int(t.group(2))
            totals = True
    if not totals:
        d.unread("a hist file without its totals (cut short)")
    return out, dropped


def delta(now: Buckets, before: Buckets) -> Buckets:
    """Visits since the previous read: the hist counts accumulate."""
    return {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0) > 0}


def bracket(parsed: Iterable[events.Event], group_events: dict[str, str],
            damage: events.Damage | None = None) -> list[WalkVisits]:  # fmt: skip
    """Walks from the ring-buffer events, with their searches and callbacks.

    `group_events` maps an event name to its role: "walk:FUNC" (entry),
    "exit:FUNC", "search" or "cb:FUNC". Walks do not nest per task, but a
    stack per pid keeps a rmap_walk_locked() inside another walk apart.
    What cannot be read (a folio or stack pointer that is no kernel
    address), an event of none of these roles (the instance is the visit
    probes' own, so it is one of theirs damaged), and what belongs to no
    walk (its entry lost: an exit, a search or a callback outside any, an
    exit of another function than the open walk's) go to `damage`: its
    visits would be another walk's.
    """
    d = damage if damage is not None else events.Damage()
    open_: dict[int, list[WalkVisits]] = defaultdict(list)
    done: list[WalkVisits] = []
    for ev in parsed:
        role = group_events.get(ev.name)
        if role is None:
            d.event(ev, "no event of the visit probes")
            continue
        kind, _, func = role.partition(":")
        stack = open_[ev.pid]
        try:
            if kind == "walk":
                events.fetched(ev.fields, ("folio",))
                folio = events.kernel_pointer(events.hex_u64(ev.fields["folio"]))
                stack.append(WalkVisits(ev.pid, events.WALK_FUNCTIONS[func], folio=folio))
                continue
            if not stack:
                raise events.Unreadable("outside any walk")
            if kind == "exit":
                if stack[-1].page_type != events.WALK_FUNCTIONS[func]:
                    raise events.Unreadable("the exit of another walk than the open one")
                w = stack.pop()
                w.caller = _caller(ev.body)
                w.finished = True
                done.append(w)
            elif kind == "search":
                events.fetched(ev.fields, ("sp",))
                sp = events.kernel_pointer(events.hex_u64(ev.fields["sp"]))
                stack[-1].searches += 1
                stack[-1].search_sps.add(sp)
            elif kind == "cb":
                stack[-1].matched += 1
                stack[-1].callbacks[func] += 1
        except events.Unreadable as e:
            d.event(ev, str(e))
    for stack in open_.values():
        done.extend(stack)  # exit lost or still running: counted, not finished
    return done


def learn_sp_delta(firings: Iterable[tuple[list[WalkVisits], Buckets]]) -> int | None:
    """The constant between a search's stack pointer (entry probe) and its
    visits' (return probe): the difference seen most often."""
    votes: Counter[int] = Counter()
    for walks, buckets in firings:
        for w in walks:
            for sp in w.search_sps:
                for pid, bsp in buckets:
                    d = bsp - sp
                    if pid == w.pid and abs(d) <= MAX_SP_DELTA:
                        votes[d] += 1
    return votes.most_common(1)[0][0] if votes else None


def attribute(walks: list[WalkVisits], buckets: Buckets, sp_delta: int | None) -> int:
    """Give each walk the visits at its searches' stack pointers; returns
    the visits no walk claimed. Walks sharing a bucket stay None."""
    owners: dict[tuple[int, int], list[WalkVisits]] = defaultdict(list)
    for w in walks:
        if not w.search_sps:
            w.visits = 0  # no search: e.g. a KSM folio whose stable node is gone
            continue
        if sp_delta is None:
            continue
        for sp in w.search_sps:
            owners[(w.pid, sp + sp_delta)].append(w)
    shared = {id(w) for ws in owners.values() if len(ws) > 1 for w in ws}
    claimed: set[tuple[int, int]] = set()
    for key, ws in owners.items():
        claimed.add(key)
        for w in ws:
            if id(w) in shared:
                w.visits = None
            else:
                w.visits = (w.visits or 0) + buckets.get(key, 0)
    return sum(v for k, v in buckets.items() if k not in claimed)


class VisitProbe:
    """Probes, hist triggers and the reading of one firing's counts."""

    def __init__(self, kind: str, backing: str | None = None) -> None:
        """`backing`: probe only that backing's walk and tree (None: all,
        as for replaying a recorded trace)."""
        assert kind in ("fprobe", "kprobe")
        self.kind = kind
        self.group = f"rmapvisit_{os.getpid()}"
        if backing is None:
            self.walks = list(events.WALK_FUNCTIONS)
            self.iterators = list(ITERATORS)
        else:
            walk, tree = WALK_OF[backing]
            self.walks = [walk]
            self.iterators = [f"{tree}_interval_tree_iter_{x}" for x in ("first", "next")]
        # Ring-buffer event -> role (see bracket()); return-probe events
        # counted by a hist trigger. Fixed names, so a recorded trace can be
        # replayed without tracefs.
        self.roles: dict[str, str] = {}
        for func in self.walks:
            self.roles[f"{func}_entry"] = f"walk:{func}"
            self.roles[f"{func}_exit"] = f"exit:{func}"
        for func in SEARCHES:
            if func in self.iterators:
                self.roles[ITERATORS[func]] = "search"
        for func in CALLBACKS:
            self.roles[f"cb_{func}"] = f"cb:{func}"
        self.counted = [f"{ITERATORS[func]}_ret" for func in self.iterators]
        self.callbacks: list[str] = []
        self._last: dict[str, Buckets] = {name: {} for name in self.counted}

    def _entry(self, func: str, name: str, args: str = "") -> str:
        p = "f" if self.kind == "fprobe" else "p"
        return f"{p}:{self.group}/{name} {func} {args}".rstrip()

    def _exit(self, func: str, name: str, args: str = "") -> str:
        if self.kind == "fprobe":
            return f"f:{self.group}/{name} {func}%return {args}".rstrip()
        return f"r:{self.group}/{name} {func} {args}".rstrip()

    def arm(self, tfs: TraceFS, inst: Instance, traceable: set[str] | None) -> None:
        """Create the events (journaled) and enable them in `inst`. `traceable`
        is available_filter_functions when readable (None: try them all)."""
        folio = "folio=$arg1:x64"
        for func in self.walks:
            # 6.15+: rmap_walk_file's walk by __rmap_walk_file, whose folio
            # is its first argument too (tracing/walkfuncs.py); the events
            # keep the walk's name, so recorded traces read the same.
            probed = func
            instead = walkfuncs.SUBSTITUTES.get(func)
            if traceable is not None and func not in traceable and instead in traceable:
                probed = instead
            self._add(tfs, self._entry(probed, f"{func}_entry", folio))
            self._add(tfs, self._exit(probed, f"{func}_exit"))
        for func in self.iterators:
            if func in SEARCHES:
                self._add(tfs, self._entry(func, ITERATORS[func], "sp=$stack:x64"))
            ret = f"{ITERATORS[func]}_ret"
            self._add(tfs, self._exit(func, ret, "ret=$retval:x64 sp=$stack:x64"))
        for func in CALLBACKS:
            if traceable is not None and func not in traceable:
                del self.roles[f"cb_{func}"]  # absent or untraceable: matches nothing
                continue
            try:
                self._add(tfs, self._entry(func, f"cb_{func}"))
            except Unavailable:
                del self.roles[f"cb_{func}"]
                continue
            self.callbacks.append(func)
        for name in self.counted:
            # Not enabled in the buffer: the trigger alone arms the probe and
            # the records are discarded once it has counted them.
            inst.add_trigger(self.group, name, "hist:keys=common_pid,sp:vals=hitcount if ret != 0")
        for name in self.roles:
            inst.enable(self.group, name)

    def _add(self, tfs: TraceFS, definition: str) -> None:
        name = definition.split()[0].split("/", 1)[1]
        try:
            tfs.add_dynamic_event(definition, self.group, name)
        except TraceError as e:
            func = definition.split()[1].removesuffix("%return")
            why = functions.why_not_traceable(tfs.root, [func])
            raise Unavailable(why or f"cannot probe {func}: {e}") from e

    def hist_texts(self, inst: Instance) -> dict[str, str]:
        return {
            n: (inst.event_dir(self.group, n) / "hist").read_bytes().decode(errors="replace")
            for n in self.counted
        }

    def collect(
        self, trace_text: str, hists: dict[str, str]
    ) -> tuple[list[WalkVisits], Buckets, int, events.Damage]:
        """One firing: its walks (visits not yet attributed), the visit
        buckets since the previous firing, the hist drops, and what could
        not be read (with the lost-event markers: the firing's losses
        are damage.lost_with() the instance's)."""
        damage = events.Damage()
        walks = bracket(events.parse(trace_text, damage), self.roles, damage)
        total: Buckets = defaultdict(int)
        dropped = 0
        for name, text in hists.items():
            now, d = parse_hist(text, damage)
            dropped += d
            for k, v in delta(now, self._last.get(name, {})).items():
                total[k] += v
            self._last[name] = now
        return walks, dict(total), dropped, damage


def finish(raw: list[RawFiring]) -> tuple[list[Firing], int | None]:
    """Attribute every firing's visits (walks, buckets, dropped, lost) once
    the stack-pointer constant is known from all of them."""
    sp_delta = learn_sp_delta((w, b) for w, b, _, _ in raw)
    out = []
    for walks, buckets, dropped, lost in raw:
        outside = attribute(walks, buckets, sp_delta)
        out.append(Firing(walks, outside, lost, dropped))
    return out, sp_delta
