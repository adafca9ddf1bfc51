"""Trace text to walks: parse the instance's `trace` output, pair entry and
exit events, and classify each walk by page type and function.

Kept free of tracefs access so recorded traces can be replayed in tests.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from rmapbench.tracing import walkfuncs

log = logging.getLogger(__name__)

# `comm-pid [cpu] flags seconds.micros: event: body`; the flags column is
# absent with options/irq-info off, the tgid column present with record-tgid.
# ASCII digits of the widths the kernel can print (a pid is below 2^22, a
# CPU below 2^13): a longer run of digits is damage, and int() of one of
# more than 4300 digits would raise instead.
_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d{1,10})\s+(?:\(\s*[\d-]{1,10}\)\s+)?\[(?P<cpu>\d{1,6})\]\s+"
    r"(?:[^\s\[]{4,6}\s+)?(?P<ts>\d{1,12})\.(?P<frac>\d{1,9}):\s+"
    r"(?:(?P<event>[\w.]+):\s?(?P<body>.*)|(?P<syscall>sys_\w+)(?P<call>\(.*?\)| -> \S+).*)$",
    re.ASCII,
)
_FIELD = re.compile(r"(\w+)=(\S+)", re.ASCII)
# What the kernel prints in place of the events a CPU's buffer lost
# (kernel/trace/trace.c print_trace_line()): the count, or none when unknown.
_LOST = re.compile(r"^CPU:\d{1,6} \[LOST (?:(\d{1,20}) )?EVENTS\]$", re.ASCII)

# folio->mapping low bits select the walk (include/linux/page-flags.h).
PAGE_TYPE_BY_MAPPING_BITS = {0: "file", 1: "anon", 2: "movable", 3: "ksm"}

# The walk implementations, which are what the probes time: rmap_walk() is
# a three-way dispatch that the compiler inlines into callers inside
# mm/rmap.c (try_to_migrate, folio_mkclean), so probing it misses walks.
# By their own names; a backend takes a substitute where the kernel has
# only that (tracing/walkfuncs.py).
WALK_FUNCTIONS = {
    f: sig.page_type
    for f, sig in walkfuncs.SIGNATURES.items()
    if f not in walkfuncs.SUBSTITUTES.values()
}
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
    # buffer) or could not read (a damaged line or record: Damage); a
    # trace instance's losses are counted by the instance.
    lost: int = 0
    # Events the text's lost-event markers count: the reader's view of
    # the losses the instance's counters count, so not added to them.
    lost_marked: int = 0

    def lost_with(self, counted: int) -> int:
        """Every event lost, given those the instance's counters `counted`."""
        return max(counted, self.lost_marked) + self.lost


class Unreadable(ValueError):
    """A value, or an event of the backend's, that is not what the kernel
    prints there: a line cut short, a field missing or given twice, a
    number that is none or out of range."""


@dataclass
class Damage:
    """What a trace text held besides the events it could read: the
    kernel's lost-event markers, and what could not be read (a line that
    is no event line, an event of the backend's with a damaged field).
    Either makes the sample untrustworthy: a walk read from a damaged
    line could be a wrong one, and one not read is missing. Whoever makes
    the Damage charges it to the walks (charge())."""

    lost: int = 0  # events the markers count
    unreadable: int = 0
    first: str = ""  # the first thing not read, for the diagnostic

    def line(self, text: str) -> None:
        """A line that is no event line: a lost-event marker, or damage."""
        m = _LOST.match(text)
        if m:
            self.lost += int(m.group(1)) if m.group(1) else 1
        else:
            self.unread(text)

    def unread(self, what: str) -> None:
        self.unreadable += 1
        if not self.first:
            self.first = what[:160]

    def event(self, ev: Event, why: str) -> None:
        self.unread(f"{ev.name}: {ev.body} ({why})")

    def lost_with(self, counted: int) -> int:
        """Every event lost, given those the instance's counters `counted`."""
        return max(counted, self.lost) + self.unreadable

    def charge(self, p: Pairing) -> Pairing:
        """Count what was not read among the walks lost, and say once."""
        p.lost += self.unreadable
        p.lost_marked += self.lost
        if self.unreadable:
            _warn_unreadable(self)
        return p


_warned = [0]  # diagnostics given by this process: a damaged kernel damages every sample


def _warn_unreadable(d: Damage) -> None:
    if _warned[0] < 3:
        _warned[0] += 1
        log.warning("%d trace lines not understood, the sample counts as having lost "
                    "events: %s", d.unreadable, d.first)  # fmt: skip


def parse_ts(seconds: str, frac: str) -> int:
    """'12' '345678' -> ns, without float rounding; any fraction width."""
    return int(seconds) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


def parse(text: str, damage: Damage | None = None) -> Iterator[Event]:
    """Events of a trace file; header lines are skipped, lost-event
    markers and lines that are no event line go to `damage`. A field
    given twice with two values is left out: which is right is unknown."""
    # Split on newlines only: the kernel ends lines with \n, and a comm
    # may hold any other byte str.splitlines() would split on.
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            if damage is not None:
                damage.line(line)
            continue
        name, body = m.group("event"), m.group("body")
        if name is None:
            # A system call's events print no name (trace_syscalls.c):
            # "sys_getppid()" at entry, "sys_getppid -> 0x1" at exit.
            body = m.group("call")
            kind = "sys_exit_" if body.startswith(" ->") else "sys_enter_"
            name = m.group("syscall").replace("sys_", kind, 1)
        fields: dict[str, str] = {}
        twice = set()
        for key, value in _FIELD.findall(body):
            if fields.setdefault(key, value) != value:
                twice.add(key)
        for key in twice:
            del fields[key]
        yield Event(
            ts_ns=parse_ts(m.group("ts"), m.group("frac")),
            cpu=int(m.group("cpu")),
            pid=int(m.group("pid")),
            name=name,
            fields=fields,
            body=body,
        )


U64_MAX = (1 << 64) - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}", re.ASCII)
_HEX = re.compile(r"(?:0[xX])?[0-9a-fA-F]{1,16}", re.ASCII)


def decimal(value: str) -> int:
    """A u64 printed %llu (a synthetic event's fields, duration_ns)."""
    if not _DECIMAL.fullmatch(value) or int(value) > U64_MAX:
        raise Unreadable(f"not a u64 in decimal: {value[:40]!r}")
    return int(value)


def hex_u64(value: str) -> int:
    """A u64 a probe fetched as x64, printed 0x%llx."""
    if not (value[:2] in ("0x", "0X") and _HEX.fullmatch(value)):
        raise Unreadable(f"not a 0x-hex u64: {value[:40]!r}")
    return int(value, 16)


def kernel_pointer(value: int) -> int:
    """`value`, if it is a kernel address (the top 16 bits set: x86-64 and
    arm64); a hex or decimal pointer cut short has fewer digits, so it is none."""
    if value >> 48 != 0xFFFF:
        raise Unreadable(f"not a kernel address: {value:#x}")
    return value


def to_int(value: str) -> int:
    """Trace values are decimal, 0x-hex, or bare hex (%p, %lx): a u64.
    Decimal has no leading zero, so "0000000012345678" is a %p."""
    if _DECIMAL.fullmatch(value) and int(value) <= U64_MAX:
        return int(value)
    if _HEX.fullmatch(value):
        return int(value, 16)
    raise Unreadable(f"not a u64: {value[:40]!r}")


def fetched(fields: Mapping[str, str], names: Iterable[str]) -> None:
    """Unreadable unless every one of `names` is among the fields: a line
    cut short loses the last ones, and they are what tells it was."""
    missing = [n for n in names if n not in fields]
    if missing:
        raise Unreadable(f"no {', '.join(missing)}")


def page_type_of_mapping(mapping: int) -> str:
    return PAGE_TYPE_BY_MAPPING_BITS[mapping & 3] if mapping else "unknown"


# What a tracepoint's page_type can say: a walk's kind, or none.
PAGE_TYPES = frozenset({*PAGE_TYPE_BY_MAPPING_BITS.values(), "unknown"})


def page_type_of(fields: dict[str, str]) -> str:
    if "page_type" in fields:
        if fields["page_type"] not in PAGE_TYPES:
            raise Unreadable(f"page_type={fields['page_type'][:20]}")
        return fields["page_type"]
    if "mapping" in fields:
        return page_type_of_mapping(to_int(fields["mapping"]))
    return "unknown"


# What the rmap tracepoints' text carries, per form (tracing/tracepoint.py
# checks the events' format files print each of them as read here).
DURATION_FIELDS = ("duration_ns", "page_type", "locked")
START_END_FIELDS = ("folio", "rwc", "page_type", "locked")


def pair_entry_exit(
    events: Iterable[Event],
    entry: dict[str, str],
    exit_: dict[str, str],
    needs: Mapping[str, tuple[str, ...]] | None = None,
    damage: Damage | None = None,
) -> Pairing:
    """Pair function entry and exit events per task.

    `entry` and `exit_` map event names to the function they probe (a key of
    WALK_FUNCTIONS, which gives the page type). A walk can sleep and resume
    on another CPU, so pairing is by pid, not by CPU; a stack per
    (pid, function) keeps nested walks apart. `needs`: per function, the
    fields its probe fetches, which the event carrying them must have; a
    walk whose values cannot be read goes to `damage` (None: one of its
    own, charged to the result).
    """
    d = damage if damage is not None else Damage()
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
            try:
                fetched(args, (needs or {}).get(func, ()))
                folio = args.get("folio")
                walk = Walk(
                    end_ns=ev.ts_ns,
                    duration_ns=ev.ts_ns - start.ts_ns,
                    pid=ev.pid,
                    function=probed_function(func, args),
                    page_type=walkfuncs.page_type(func),
                    folio=hex_u64(folio) if folio else None,
                    caller=_caller(ev.body),
                )
            except Unreadable as e:
                d.event(ev if args is ev.fields else start, str(e))
                continue
            out.walks.append(walk)
    out.unfinished = sum(len(s) for s in stacks.values())
    return d.charge(out) if damage is None else out


def pair_start_end(
    events: Iterable[Event], start: str, end: str, damage: Damage | None = None
) -> Pairing:
    """The v5-v7 tracepoint form: rmap_walk_start/rmap_walk_end, paired by
    (folio, rwc); `locked` tells rmap_walk_locked from rmap_walk. An event
    without all of START_END_FIELDS (or with a `locked` of no known value)
    pairs with nothing: it goes to `damage` (None: one of its own)."""
    d = damage if damage is not None else Damage()
    out = Pairing()
    open_: dict[tuple[str, str], list[tuple[Event, str, str]]] = defaultdict(list)
    for ev in events:
        if ev.name not in (start, end):
            continue
        try:
            fetched(ev.fields, START_END_FIELDS)
            function, page_type = function_of_locked(ev.fields), page_type_of(ev.fields)
        except Unreadable as e:
            d.event(ev, str(e))
            continue
        key = (ev.fields["folio"], ev.fields["rwc"])
        if ev.name == start:
            open_[key].append((ev, function, page_type))
            continue
        if not open_.get(key):
            out.unmatched_exits += 1
            continue
        s, function, page_type = open_[key].pop()
        out.walks.append(
            Walk(
                end_ns=ev.ts_ns,
                duration_ns=ev.ts_ns - s.ts_ns,
                pid=ev.pid,
                function=function,
                page_type=page_type,
                folio=None,  # %p is hashed in text output: not comparable to a PFN
            )
        )
    out.unfinished = sum(len(v) for v in open_.values())
    return d.charge(out) if damage is None else out


# A latency printed as a u64 this large is negative: the end's timestamp
# is before its start's.
NEGATIVE = 1 << 63


def walks_with_duration(events: Iterable[Event], name: str, damage: Damage | None = None
                        ) -> Pairing:  # fmt: skip
    """The v4 tracepoint form: one `rmap:rmap_walk` event with duration_ns.
    An event without all of DURATION_FIELDS, or whose duration is no
    u64 or a negative one, goes to `damage` (None: one of its own)."""
    d = damage if damage is not None else Damage()
    out = Pairing()
    for ev in events:
        if ev.name != name:
            continue
        try:
            fetched(ev.fields, DURATION_FIELDS)
            duration = decimal(ev.fields["duration_ns"])
            if duration >= NEGATIVE:
                raise Unreadable(f"a negative duration_ns ({duration})")
            walk = Walk(
                end_ns=ev.ts_ns,
                duration_ns=duration,
                pid=ev.pid,
                function=function_of_locked(ev.fields),
                page_type=page_type_of(ev.fields),
            )
        except Unreadable as e:
            d.event(ev, str(e))
            continue
        out.walks.append(walk)
    return d.charge(out) if damage is None else out


def synthetic_walks(
    events: Iterable[Event],
    names: dict[str, str],
    needs: Mapping[str, tuple[str, ...]] | None = None,
    damage: Damage | None = None,
) -> Pairing:
    """Walks paired in the kernel by hist triggers: synthetic events carrying
    lat (ns), folio, mapping and locked. `names` maps each synthetic event
    to the walk function it times; `needs`, per function, the fields its
    synthetic event carries besides lat. Their values are u64 printed in
    decimal (%llu); an event that does not have them goes to `damage`
    (None: one of its own)."""
    d = damage if damage is not None else Damage()
    out = Pairing()
    for ev in events:
        func = names.get(ev.name)
        if func is None:
            continue
        try:
            fetched(ev.fields, ("lat", *(needs or {}).get(func, ())))
            lat = decimal(ev.fields["lat"])
            folio = ev.fields.get("folio")
            walk = Walk(
                end_ns=ev.ts_ns,
                duration_ns=lat,
                pid=ev.pid,
                function=probed_function(func, ev.fields),
                page_type=walkfuncs.page_type(func),
                folio=decimal(folio) if folio else None,
            )
        except Unreadable as e:
            d.event(ev, str(e))
            continue
        if lat >= NEGATIVE:
            # A negative latency, printed as u64: the exit's timestamp is
            # before its entry's. Seen (6.12) for a walk in flight while
            # the buffer was cleared: the pairing is wrong, so the walk is
            # counted as unpaired rather than kept.
            out.unmatched_exits += 1
            continue
        out.walks.append(walk)
    return d.charge(out) if damage is None else out


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


def probed_function(func: str, args: dict[str, str]) -> str:
    """rmap_walk or rmap_walk_locked, for a walk function's probe. Another
    function (the calibration's) is probed with the walks' fetches from
    whatever its registers hold: its `locked` and `mapping` say nothing,
    and are not read."""
    return function_of_locked(args) if walkfuncs.is_walk(func) else "rmap_walk"


_LOCKED = {"true": True, "1": True, "0x1": True, "false": False, "0": False, "0x0": False}


def function_of_locked(fields: dict[str, str]) -> str:
    """rmap_walk_locked or rmap_walk, by `locked` (true/false from the
    tracepoints' %s, 0/1 from a probe's u8; rmap_walk_ksm has none)."""
    locked = _LOCKED.get(fields.get("locked", "false").lower())
    if locked is None:
        raise Unreadable(f"locked={fields['locked'][:20]}")
    return "rmap_walk_locked" if locked else "rmap_walk"


def mark_targets(walks: list[Walk], target: set[int] | None) -> list[Walk]:
    """Set `target` on each walk: True when its folio is one of the struct
    page addresses in `target`, None when either side is unknown."""
    return [
        replace(w, target=None if target is None or w.folio is None else w.folio in target)
        for w in walks
    ]
