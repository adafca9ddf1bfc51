"""The rmap tracepoints proposed upstream (not in mainline), both forms:

- v4: `rmap:rmap_walk` with duration_ns, page_type and locked;
- v5-v7: `rmap:rmap_walk_start` / `rmap:rmap_walk_end`, paired by (folio, rwc).

The form is recognised from the events' format files, not from a version.

Both forms carry the raw folio and rwc pointers in the ring buffer (the
fields folio_addr/rwc_addr, or folio/rwc in earlier drafts), but print
them with %p, which the text output hashes: a hashed folio cannot be told
from the target's frame. So the instance's `hash-ptr` option is turned
off (its trace prints %p as %px; the option dies with the instance), and
the start/end form is paired in the kernel: a hist trigger on the start
event keyed by the task stores common_timestamp and the raw (folio, rwc),
the end event's computes the latency and feeds a synthetic event carrying
it, the end's raw (folio, rwc) and the start's (1 ns, the instance's mono
clock, which the triggers name: hist.py); a walk counts when the two agree
(hist.KeyedPair says why the task is the key). The start/end events stay
enabled: their text gives each walk's page type and `locked`, matched by
(folio, rwc) in order. Without hist triggers (CONFIG_HIST_TRIGGERS,
CONFIG_SYNTH_EVENTS) the pairing falls back to user space at the text's
microseconds. v4 needs no pairing: duration_ns is measured in the kernel.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import replace

from rmapbench.tracing import eventformat, events, hist
from rmapbench.tracing.backend import Description, Unavailable
from rmapbench.tracing.events import Event, Pairing, Walk
from rmapbench.tracing.tracefs import Instance, TraceError, TraceFS, write

log = logging.getLogger(__name__)

SYSTEM = "rmap"
V4, START, END = "rmap_walk", "rmap_walk_start", "rmap_walk_end"

# How each name the walks' parsers read (events.DURATION_FIELDS,
# events.START_END_FIELDS) must be printed for them to read it right:
# duration_ns in decimal, all 64 bits of a field of 8 (a walk can last
# more than 2^32 ns: 5 s seen under TCG); page_type as a string; locked
# as true/false or a number; folio and rwc as a pointer or in hex, all
# 64 bits of a field of 8 (the in-kernel pairing keys a u64 on them).
# A draft printing one otherwise (a duration in hex or cut to 32 bits,
# a symbolic locked, a folio's PFN) would be misread: it is refused.
_DECIMAL = re.compile(r"(?:ll|l|z|j|t)[diu]")
_NUMBER = re.compile(r"(?:hh|h|ll|l|z|j|t)?[diuxX]")
_POINTER = re.compile(r"px?|(?:ll|l)[xX]")


def _misprinted(fmt: eventformat.Format, name: str) -> str:
    """Why the text's `name` would be misread ("" when it would not)."""
    p = fmt.printed.get(name)
    if p is None:
        return f"no {name}= printed"
    field = fmt.fields.get(p.field or "")
    how = f"{name} printed with %{p.conversion} from {p.field or p.arg}"
    if name == "duration_ns":
        ok = bool(_DECIMAL.fullmatch(p.conversion)) and field is not None and field.integer
        ok = ok and field is not None and field.size == 8
    elif name == "page_type":
        ok = p.conversion == "s"
    elif name == "locked":
        ok = (p.conversion == "s" and '"true"' in p.arg and '"false"' in p.arg) or (
            bool(_NUMBER.fullmatch(p.conversion)) and field is not None and field.integer
        )
    else:
        ok = bool(_POINTER.fullmatch(p.conversion)) and field is not None and field.size == 8
    return "" if ok else how


def understood(fmt: eventformat.Format, names: tuple[str, ...]) -> str:
    """Why the walks' parsers would misread the event ("" when they would not)."""
    return "; ".join(why for why in (_misprinted(fmt, n) for n in names) if why)


def key_fields(fmt: str) -> tuple[str, str]:
    """The fields the folio= and rwc= of an event's text are printed from
    (folio_addr and rwc_addr on the ground-truth kernel; folio and rwc in
    earlier drafts)."""
    return _keys(eventformat.parse(fmt))


def not_understood(system: str, name: str, why: str) -> str:
    return f"{system}:{name}: format not understood ({why})"


def read_format(tfs: TraceFS, system: str, name: str) -> eventformat.Format | str:
    """The event's format, or why it cannot be had."""
    try:
        return eventformat.parse(tfs.event_format(system, name))
    except OSError as e:
        return not_understood(system, name, f"cannot read it: {e.strerror}")
    except ValueError as e:  # a FormatError, or bytes of no encoding
        return not_understood(system, name, str(e))


_RAW = re.compile(r"(?:0x)?(ffff[0-9a-f]{12})")


def raw_pointer(value: str | None) -> int | None:
    """A %px pointer (kernel addresses: ffff...), or None for a hashed %p
    (or anything else that is not a 64-bit kernel address)."""
    m = _RAW.fullmatch(value.lower()) if value else None
    return int(m.group(1), 16) if m else None


# --tracepoint-form values -> the form check() settles on.
FORMS = {"v4": "duration", "start-end": "start_end"}


class Tracepoint:
    name = "tracepoint"

    def __init__(self, prefer: str = "auto") -> None:
        """`prefer`: auto (v4 when the kernel has it, else start/end), v4
        or start-end: a kernel may carry both forms."""
        assert prefer == "auto" or prefer in FORMS
        self.prefer = prefer
        self.form: str | None = None
        self.keys: tuple[str, str] = ("folio", "rwc")  # the fields folio= and rwc= print
        self.entry_keys: tuple[str, str] | None = None  # rmap_walk_start's, when checked
        self.raw = False  # hash-ptr is off: the text's pointers are raw
        self.paired_in_kernel = False
        self.synth = f"rmapbench_{os.getpid()}_rmap_walk"

    def check(self, tfs: TraceFS) -> None:
        """Settle on the form whose events' format files say their text
        reads as the parsers read it; Unavailable naming the events
        whose format is not understood when none does."""
        present = [n for n in (V4, START, END) if tfs.has_event(SYSTEM, n)]
        if V4 not in present and not {START, END} <= set(present):
            raise Unavailable(
                "no rmap:rmap_walk tracepoint (a kernel with the proposed rmap "
                "tracepoint patches is needed)"
            )
        formats: dict[str, eventformat.Format] = {}
        why: dict[str, str] = {}
        for name, needs in ((V4, events.DURATION_FIELDS), (START, events.START_END_FIELDS),
                            (END, events.START_END_FIELDS)):  # fmt: skip
            if name not in present:
                continue
            fmt = read_format(tfs, SYSTEM, name)
            if isinstance(fmt, str):
                why[name] = fmt
                continue
            problem = understood(fmt, needs)
            if problem:
                why[name] = not_understood(SYSTEM, name, problem)
            else:
                formats[name] = fmt
        v4 = V4 in formats
        start_end = START in formats and END in formats
        if self.prefer == "v4" and not v4:
            raise Unavailable(
                why.get(V4, "no rmap:rmap_walk with duration_ns (--tracepoint-form v4)")
            )
        if self.prefer == "start-end" and not start_end:
            raise Unavailable(
                "; ".join(why[n] for n in (START, END) if n in why)
                or "no rmap:rmap_walk_start/rmap_walk_end (--tracepoint-form start-end)"
            )
        if not (v4 or start_end):
            raise Unavailable("; ".join(why.values()))
        if v4 and self.prefer != "start-end":
            self.form = "duration"
            self.keys = _keys(formats[V4])
        else:
            self.form = "start_end"
            # Each trigger names its own event's fields.
            self.keys, self.entry_keys = _keys(formats[END]), _keys(formats[START])
        # %px and %lx print raw pointers whatever hash-ptr says.
        ended = formats[V4 if self.form == "duration" else END].printed
        self.raw = all(k in ended and ended[k].conversion != "p" for k in ("folio", "rwc"))

    def _raw_pointers(self, inst: Instance) -> None:
        option = inst.path / "options" / "hash-ptr"
        if option.exists():
            try:
                write(option, "0")
                self.raw = True
            except TraceError as e:
                log.warning("hash-ptr stays on, folios are hashed: %s", e)

    def arm(self, tfs: TraceFS, inst: Instance) -> Description:
        self._raw_pointers(inst)
        ident = "raw folio" if self.raw else "hashed folio (target by page type)"
        if self.form == "duration":
            inst.enable(SYSTEM, "rmap_walk")
            return Description(
                self.name, "in-kernel duration_ns", 1, f"rmap:rmap_walk (v4); {ident}"
            )
        if hist.hist_supported(tfs) and not self.raw:
            # The kernel's pairing gives raw pointers, which a walk's page
            # type and `locked` are found by in the end events' text: not
            # among hashed ones. Hashed, the pointers still pair the text.
            log.warning("the text's pointers are hashed: pairing in user space")
        elif hist.hist_supported(tfs):
            try:
                hist.arm_pair(tfs, inst, start_end_pair(self.synth, self.keys, self.entry_keys))
                self.paired_in_kernel = True
            except TraceError as e:
                log.warning("in-kernel pairing unavailable, pairing in user space: %s", e)
        inst.enable(SYSTEM, START)
        inst.enable(SYSTEM, END)
        if self.paired_in_kernel:
            return Description(
                self.name,
                inst.clock,
                1,
                "rmap:rmap_walk_start/end (v5-v7), paired in kernel per task, checked by "
                f"raw folio and rwc (hist/synthetic); {ident}",
            )
        return Description(
            self.name, inst.clock, 1000,
            f"rmap:rmap_walk_start/end (v5-v7), paired by folio and rwc in user space; {ident}",
        )  # fmt: skip

    def walks(self, trace_text: str) -> Pairing:
        damage = events.Damage()
        parsed = list(events.parse(trace_text, damage))
        if self.form == "duration":
            timed = events.walks_with_duration(parsed, "rmap_walk", damage)
            return damage.charge(with_folios(timed, parsed, "rmap_walk"))
        raw = with_folios(events.pair_start_end(parsed, START, END, damage), parsed, END)
        if not self.paired_in_kernel:
            return damage.charge(raw)
        # The end events' damage is counted once, by pair_start_end().
        exact = in_kernel_walks(parsed, self.synth, END, damage)
        exact.unmatched_exits += raw.unmatched_exits
        exact.unfinished += raw.unfinished
        return damage.charge(exact)


def _keys(fmt: eventformat.Format) -> tuple[str, str]:
    folio, rwc = fmt.printed.get("folio"), fmt.printed.get("rwc")
    return (folio.field if folio else None) or "folio", (rwc.field if rwc else None) or "rwc"


def start_end_pair(synth: str, keys: tuple[str, str],
                   entry_keys: tuple[str, str] | None = None) -> hist.KeyedPair:  # fmt: skip
    """The in-kernel pairing of rmap_walk_start and rmap_walk_end: `keys`
    rmap_walk_end's fields, `entry_keys` rmap_walk_start's (when a draft
    names them otherwise)."""
    entry = entry_keys if entry_keys is not None and entry_keys != keys else ()
    return hist.KeyedPair(synth, (SYSTEM, START), (SYSTEM, END), keys, entry_keys=entry)


# The start/end form's probe cost (tracing/calibrate.py). Its window runs
# from rmap_walk_start's ring-buffer timestamp to rmap_walk_end's, and
# each is taken when the event reserves its place in the buffer
# (trace_event_buffer_reserve(), ring_buffer_lock_reserve()). So inside
# lie the start event's tail - its fields written, then
# trace_event_buffer_commit(), which runs the event's hist trigger on the
# record (event_triggers_call(): the task's map entry gets
# common_timestamp and the two pointers) before committing it - and the
# end event's head: the tracepoint's static call into its handler and the
# pid filter (set_event_pid) up to its own reservation.
# No ftrace trampoline, no kprobe: what a stock kernel offers on a pair of
# static tracepoints user space can fire without a walk is the syscall
# events (CONFIG_FTRACE_SYSCALLS, kernel/trace/trace_syscalls.c): the
# raw tracepoints sys_enter/sys_exit call ftrace_syscall_enter()/_exit(),
# which reserve and commit through the same two functions as any
# TRACE_EVENT, hist triggers included. Between sys_enter_getppid and
# sys_exit_getppid lies, besides that machinery, the system call's
# dispatch, getppid's body and the exit work up to the sys_exit
# tracepoint: at most an unprobed getppid()'s whole wall time.
SYSCALLS = "syscalls"
SYS_ENTER, SYS_EXIT = "sys_enter_getppid", "sys_exit_getppid"
# Two fields of each event stand in for the raw (folio, rwc): saved by the
# entry's trigger, carried into the synthetic event beside the exit's and
# compared the same way. The syscall events have no pointer: the system
# call's number (int __syscall_nr) and the task (int common_pid) are on
# both, with one type, as the kernel's type check wants.
SYSCALL_KEYS = ("__syscall_nr", "common_pid")
SYSCALL_SYNTH_NAMES = ("nr", "pid")


def syscall_pair(synth: str) -> hist.KeyedPair:
    """start_end_pair() on sys_enter_getppid/sys_exit_getppid: the same key
    (the task), two fields saved and carried, the instance's clock."""
    return hist.KeyedPair(
        synth,
        (SYSCALLS, SYS_ENTER),
        (SYSCALLS, SYS_EXIT),
        SYSCALL_KEYS,
        entry_keys=SYSCALL_KEYS,
        types=("int", "int"),
        names=SYSCALL_SYNTH_NAMES,
    )


class SyscallPair:
    """The start/end form's in-kernel pairing armed on the getppid system
    call events: a Backend whose "walks" are the empty intervals."""

    name = "tracepoint"

    def __init__(self, tag: str = "c") -> None:
        self.synth = f"rmapbench_{os.getpid()}_{tag}_getppid"

    def check(self, tfs: TraceFS) -> None:
        if not (tfs.has_event(SYSCALLS, SYS_ENTER) and tfs.has_event(SYSCALLS, SYS_EXIT)):
            raise Unavailable(
                f"no {SYSCALLS}:{SYS_ENTER}/{SYS_EXIT} tracepoints to calibrate the "
                "start/end form with (CONFIG_FTRACE_SYSCALLS)"
            )
        if not hist.hist_supported(tfs):
            raise Unavailable("no synthetic events (CONFIG_HIST_TRIGGERS, CONFIG_SYNTH_EVENTS)")
        for name in (SYS_ENTER, SYS_EXIT):
            fmt = read_format(tfs, SYSCALLS, name)
            if isinstance(fmt, str):
                raise Unavailable(fmt)
            # The fields saved and compared must be what their synthetic
            # fields are (the kernel refuses another size or sign, and
            # another field would compare something else).
            for key, type_ in zip(SYSCALL_KEYS, ("int", "int"), strict=True):
                f = fmt.fields.get(key)
                if f is None or (f.size, f.signed) != (4, True) or not f.integer:
                    raise Unavailable(not_understood(SYSCALLS, name, f"{key} is not an {type_}"))

    def arm(self, tfs: TraceFS, inst: Instance) -> Description:
        # In Tracepoint.arm()'s order: the pairing, then the two events
        # enabled, so that each commits its record as the rmap events do.
        hist.arm_pair(tfs, inst, syscall_pair(self.synth))
        inst.enable(SYSCALLS, SYS_ENTER)
        inst.enable(SYSCALLS, SYS_EXIT)
        detail = f"{SYSCALLS}:{SYS_ENTER}/{SYS_EXIT}, paired in kernel per task"
        return Description(self.name, inst.clock, 1, detail)

    def walks(self, trace_text: str) -> Pairing:
        damage = events.Damage()
        parsed = list(events.parse(trace_text, damage))
        out = syscall_intervals(parsed, self.synth, damage)
        # Each exit's trigger records one synthetic event: an exit without
        # one is an interval missing.
        exits = sum(1 for ev in parsed if ev.name == SYS_EXIT)
        out.unmatched_exits += max(0, exits - sum(1 for ev in parsed if ev.name == self.synth))
        return damage.charge(out)


def syscall_intervals(parsed: Iterable[Event], synth: str, damage: events.Damage | None = None
                      ) -> Pairing:  # fmt: skip
    """The calibration's intervals from its synthetic events; as in
    in_kernel_walks(), one counts only when the start's saved fields are
    the end's and the latency is not negative. An event without them, or
    with a value that is no decimal u64, goes to `damage` (None: one of
    its own)."""
    d = damage if damage is not None else events.Damage()
    out = Pairing()
    end_names = SYSCALL_SYNTH_NAMES
    start_names = tuple(f"{hist.START_PREFIX}{n}" for n in end_names)
    for ev in parsed:
        if ev.name != synth:
            continue
        try:
            events.fetched(ev.fields, ("lat", *end_names, *start_names))
            lat = events.decimal(ev.fields["lat"])
            ended = tuple(events.decimal(ev.fields[n]) for n in end_names)
            started = tuple(events.decimal(ev.fields[n]) for n in start_names)
        except events.Unreadable as e:
            d.event(ev, str(e))
            continue
        if lat >= events.NEGATIVE or started != ended:
            out.unmatched_exits += 1
            continue
        out.walks.append(Walk(ev.ts_ns, lat, ev.pid, "getppid", "calibration"))
    return d.charge(out) if damage is None else out


def with_folios(p: Pairing, parsed: list[Event], name: str) -> Pairing:
    """Give walks the raw folio of the event that ended them (None while
    hash-ptr hashes them)."""
    ends = [ev for ev in parsed if ev.name == name]
    out = []
    for w, ev in zip(p.walks, _ends_of(p.walks, ends), strict=True):
        folio = raw_pointer(ev.fields.get("folio")) if ev is not None else None
        out.append(replace(w, folio=folio))
    return Pairing(out, p.unmatched_exits, p.unfinished)


def _ends_of(walks: list[Walk], ends: list[Event]) -> list[Event | None]:
    """The end event of each walk: the next end with its timestamp and pid."""
    out: list[Event | None] = []
    i = 0
    for w in walks:
        while i < len(ends) and (ends[i].ts_ns != w.end_ns or ends[i].pid != w.pid):
            i += 1
        out.append(ends[i] if i < len(ends) else None)
        i += 1
    return out


def in_kernel_walks(parsed: list[Event], synth: str, end: str,
                    damage: events.Damage | None = None) -> Pairing:  # fmt: skip
    """Walks from the synthetic events (latency at 1 ns, raw folio and rwc),
    with page type and `locked` from the end event of the same (folio, rwc),
    taken in order. A synthetic event without its five u64 goes to
    `damage` (None: one of its own); an end event that cannot be read is
    left to pair_start_end(), which reads the same events."""
    d = damage if damage is not None else events.Damage()
    pending: dict[tuple[int, int], deque[tuple[Event, str, str]]] = defaultdict(deque)
    out = Pairing()
    keys = (*hist.SYNTH_KEY_NAMES, *(f"{hist.START_PREFIX}{n}" for n in hist.SYNTH_KEY_NAMES))
    for ev in parsed:
        if ev.name == end:
            f, r = raw_pointer(ev.fields.get("folio")), raw_pointer(ev.fields.get("rwc"))
            if f is None or r is None:
                continue
            try:
                events.fetched(ev.fields, events.START_END_FIELDS)
                read = (ev, events.function_of_locked(ev.fields), events.page_type_of(ev.fields))
            except events.Unreadable:
                continue
            pending[(f, r)].append(read)
            continue
        if ev.name != synth:
            continue
        try:
            events.fetched(ev.fields, ("lat", *keys))
            lat = events.decimal(ev.fields["lat"])
            folio, rwc, *started = (events.decimal(ev.fields[k]) for k in keys)
        except events.Unreadable as e:
            d.event(ev, str(e))
            continue
        queue = pending.get((folio, rwc))
        # Negative (a clear mid-walk), no end seen, or the task's last start
        # was another walk's.
        if lat >= events.NEGATIVE or not queue or tuple(started) != (folio, rwc):
            out.unmatched_exits += 1
            continue
        ended, function, page_type = queue.popleft()
        out.walks.append(
            Walk(
                end_ns=ended.ts_ns,
                duration_ns=lat,
                pid=ev.pid,
                function=function,
                page_type=page_type,
                folio=folio,
            )
        )
    # Ends the kernel's pairing gave no walk for (its synthetic event missing).
    out.unfinished = sum(len(q) for q in pending.values())
    return d.charge(out) if damage is None else out
