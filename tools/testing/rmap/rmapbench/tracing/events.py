"""Trace text to walks: parse the instance's `trace` output, pair entry and
exit events, and classify each walk by page type and function.

Kept free of tracefs access so recorded traces can be replayed in tests.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

# `comm-pid [cpu] flags seconds.micros: event: body`; the flags column is
# absent with options/irq-info off, the tgid column present with record-tgid.
_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:[^\s\[]{4,6}\s+)?(?P<ts>\d+)\.(?P<frac>\d+):\s+(?P<event>[\w.]+):\s?(?P<body>.*)$"
)
_FIELD = re.compile(r"(\w+)=(\S+)")

# folio->mapping low bits select the walk (include/linux/page-flags.h).
PAGE_TYPE_BY_MAPPING_BITS = {0: "file", 1: "anon", 2: "movable", 3: "ksm"}

# The walk implementations, which are what the probes time: rmap_walk() is
# a three-way dispatch that the compiler inlines into callers inside
# mm/rmap.c (try_to_migrate, folio_mkclean), so probing it misses walks.
WALK_FUNCTIONS = {"rmap_walk_ksm": "ksm", "rmap_walk_anon": "anon", "rmap_walk_file": "file"}
WALK_TYPES = tuple(WALK_FUNCTIONS.values())


def walk_functions(page_types: tuple[str, ...] = WALK_TYPES) -> dict[str, str]:
    """The walk functions (function -> page type) of these page types, in
    WALK_FUNCTIONS' order: what a probe backend arms to see their walks."""
    return {f: t for f, t in WALK_FUNCTIONS.items() if t in page_types}


@dataclass(frozen=True)
class Event:
    ts_ns: int
    cpu: int
    pid: int
    name: str
    fields: dict[str, str]
    body: str


@dataclass(frozen=True)
class Walk:
    """One reverse-mapping walk. `target` is None when it cannot be known."""

    end_ns: int
    duration_ns: int
    pid: int
    function: str  # rmap_walk or rmap_walk_locked (the i_mmap/anon_vma lock already held)
    page_type: str
    folio: int | None = None
    target: bool | None = None
    caller: str = ""  # where the walk returned to, when the probe says


@dataclass
class Pairing:
    walks: list[Walk] = field(default_factory=list)
    unmatched_exits: int = 0  # exit without entry (entry before the clear, or lost)
    unfinished: int = 0  # entry without exit (still running, or exit lost)
    # Walks the backend itself dropped (the bpf backend's full ring
    # buffer); a trace instance's losses are counted by the instance.
    lost: int = 0


def parse_ts(seconds: str, frac: str) -> int:
    """'12' '345678' -> ns, without float rounding; any fraction width."""
    return int(seconds) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


def parse(text: str) -> Iterator[Event]:
    """Events of a trace file; header and marker lines are skipped."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        body = m.group("body")
        yield Event(
            ts_ns=parse_ts(m.group("ts"), m.group("frac")),
            cpu=int(m.group("cpu")),
            pid=int(m.group("pid")),
            name=m.group("event"),
            fields=dict(_FIELD.findall(body)),
            body=body,
        )


def to_int(value: str) -> int:
    """Trace values are decimal, 0x-hex, or bare hex (%p, %lx)."""
    try:
        return int(value, 0)
    except ValueError:
        return int(value, 16)


def page_type_of_mapping(mapping: int) -> str:
    return PAGE_TYPE_BY_MAPPING_BITS[mapping & 3] if mapping else "unknown"


def page_type_of(fields: dict[str, str]) -> str:
    if "page_type" in fields:
        return fields["page_type"]
    if "mapping" in fields:
        return page_type_of_mapping(to_int(fields["mapping"]))
    return "unknown"


def pair_entry_exit(
    events: Iterable[Event], entry: dict[str, str], exit_: dict[str, str]
) -> Pairing:
    """Pair function entry and exit events per task.

    `entry` and `exit_` map event names to the function they probe (a key of
    WALK_FUNCTIONS, which gives the page type). A walk can sleep and resume
    on another CPU, so pairing is by pid, not by CPU; a stack per
    (pid, function) keeps nested walks apart.
    """
    out = Pairing()
    stacks: dict[tuple[int, str], list[Event]] = defaultdict(list)
    for ev in events:
        if ev.name in entry:
            stacks[(ev.pid, entry[ev.name])].append(ev)
        elif ev.name in exit_:
            func = exit_[ev.name]
            stack = stacks.get((ev.pid, func))
            if not stack:
                out.unmatched_exits += 1
                continue
            start = stack.pop()
            # The arguments are the exit event's where it fetched them
            # (tracing/probes.py), else the entry's.
            args = ev.fields if "folio" in ev.fields else start.fields
            folio = args.get("folio")
            out.walks.append(
                Walk(
                    end_ns=ev.ts_ns,
                    duration_ns=ev.ts_ns - start.ts_ns,
                    pid=ev.pid,
                    function=function_of_locked(args),
                    page_type=WALK_FUNCTIONS.get(func) or page_type_of(args),
                    folio=to_int(folio) if folio else None,
                    caller=_caller(ev.body),
                )
            )
    out.unfinished = sum(len(s) for s in stacks.values())
    return out


def pair_start_end(events: Iterable[Event], start: str, end: str) -> Pairing:
    """The v5-v7 tracepoint form: rmap_walk_start/rmap_walk_end, paired by
    (folio, rwc); `locked` tells rmap_walk_locked from rmap_walk."""
    out = Pairing()
    open_: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for ev in events:
        if ev.name not in (start, end):
            continue
        key = (ev.fields.get("folio", ""), ev.fields.get("rwc", ""))
        if ev.name == start:
            open_[key].append(ev)
            continue
        if not open_.get(key):
            out.unmatched_exits += 1
            continue
        s = open_[key].pop()
        out.walks.append(
            Walk(
                end_ns=ev.ts_ns,
                duration_ns=ev.ts_ns - s.ts_ns,
                pid=ev.pid,
                function=function_of_locked(s.fields),
                page_type=page_type_of(s.fields),
                folio=None,  # %p is hashed in text output: not comparable to a PFN
            )
        )
    out.unfinished = sum(len(v) for v in open_.values())
    return out


def walks_with_duration(events: Iterable[Event], name: str) -> Pairing:
    """The v4 tracepoint form: one `rmap:rmap_walk` event with duration_ns."""
    out = Pairing()
    for ev in events:
        if ev.name != name or "duration_ns" not in ev.fields:
            continue
        out.walks.append(
            Walk(
                end_ns=ev.ts_ns,
                duration_ns=int(ev.fields["duration_ns"]),
                pid=ev.pid,
                function=function_of_locked(ev.fields),
                page_type=page_type_of(ev.fields),
            )
        )
    return out


def synthetic_walks(events: Iterable[Event], names: dict[str, str]) -> Pairing:
    """Walks paired in the kernel by hist triggers: synthetic events carrying
    lat (ns), folio, mapping and locked. `names` maps each synthetic event
    to the walk function it times."""
    out = Pairing()
    for ev in events:
        func = names.get(ev.name)
        if func is None or "lat" not in ev.fields:
            continue
        lat = to_int(ev.fields["lat"])
        if lat >= 1 << 63:
            # A negative latency, printed as u64: the exit's timestamp is
            # before its entry's. Seen (6.12) for a walk in flight while
            # the buffer was cleared: the pairing is wrong, so the walk is
            # counted as unpaired rather than kept.
            out.unmatched_exits += 1
            continue
        folio = ev.fields.get("folio")
        out.walks.append(
            Walk(
                end_ns=ev.ts_ns,
                duration_ns=lat,
                pid=ev.pid,
                function=function_of_locked(ev.fields),
                page_type=WALK_FUNCTIONS.get(func) or page_type_of(ev.fields),
                folio=to_int(folio) if folio else None,
            )
        )
    return out


def merge_callers(exact: list[Walk], raw: list[Walk]) -> list[Walk]:
    """Give in-kernel-paired walks the caller seen by the raw exit events.
    Both lists are in completion order; they are merged only when they
    describe the same walks (same count, pid and folio, one by one)."""
    same = len(exact) == len(raw) and all(
        a.pid == b.pid and a.folio == b.folio for a, b in zip(exact, raw, strict=True)
    )
    if not same:
        return exact
    return [replace(a, caller=b.caller) for a, b in zip(exact, raw, strict=True)]


# Where a walk returned to (the function holding the return address of
# rmap_walk_{ksm,anon,file}) -> the function that started the walk. The
# dispatch rmap_walk()/rmap_walk_locked() is inlined into its callers, and
# remove_migration_ptes() into migrate_folio_move() (6.12), so the return
# site is usually the caller itself; these are the sites where it is not.
# Where the dispatch is a function of its own (a kernel built otherwise,
# e.g. with the rmap tracepoints around it) a walk returns to it, which
# says nothing of who started the walk: "" lets the frame or the order
# tell instead.
CALLER_OF_SITE = {
    "rmap_walk": "",
    "rmap_walk_locked": "",
    "migrate_folio_move": "remove_migration_ptes",  # 6.12, a migration's success
    "migrate_folio_undo_src": "remove_migration_ptes",  # a migration undone (retry)
    "migrate_pages_batch": "remove_migration_ptes",  # 6.1
    "unmap_and_move_huge_page": "remove_migration_ptes",
    "remap_page": "remove_migration_ptes",  # a THP split putting PTEs back
    "__split_huge_page": "remove_migration_ptes",
    "unmap_folio": "try_to_migrate",  # a THP split's unmap
    "damon_pa_mkold": "damon_folio_mkold",
    "damon_pa_young": "damon_folio_young",
    "folio_clear_dirty_for_io": "folio_mkclean",
    "shrink_folio_list": "try_to_unmap",
}
# The callers a trigger's walks are expected from (triggers/*.py).
KNOWN_CALLERS = frozenset(
    {
        "try_to_migrate",
        "remove_migration_ptes",
        "try_to_unmap",
        "folio_mkclean",
        "folio_referenced",
        "damon_folio_mkold",
        "damon_folio_young",
        "page_idle_clear_pte_refs",
        "folio_lock_anon_vma_read",
    }
)


def caller_of(site: str) -> str:
    """The function that started a walk, from where it returned to ("" when
    the backend records no return site, or the site is the dispatch)."""
    return CALLER_OF_SITE.get(site, site)


def _caller(body: str) -> str:
    """'(migrate_folio_move+0x29f/0x330 <- rmap_walk_anon)' -> migrate_folio_move."""
    m = re.match(r"\((\w+)[+\w/]* <- ", body)
    return m.group(1) if m else ""


def function_of_locked(fields: dict[str, str]) -> str:
    locked = fields.get("locked", "false").lower()
    return "rmap_walk_locked" if locked in ("true", "1", "0x1") else "rmap_walk"


def mark_targets(walks: list[Walk], target: set[int] | None) -> list[Walk]:
    """Set `target` on each walk: True when its folio is one of the struct
    page addresses in `target`, None when either side is unknown."""
    return [
        replace(w, target=None if target is None or w.folio is None else w.folio in target)
        for w in walks
    ]
