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

from rmapbench.tracing import events, hist
from rmapbench.tracing.backend import Description, Unavailable
from rmapbench.tracing.events import Event, Pairing, Walk
from rmapbench.tracing.tracefs import Instance, TraceError, TraceFS, write

log = logging.getLogger(__name__)

SYSTEM = "rmap"
START, END = "rmap_walk_start", "rmap_walk_end"
_FIELD_NAME = re.compile(r"field:[^;]*?\b(\w+);")


def key_fields(fmt: str) -> tuple[str, str]:
    """The raw folio and rwc field names in an event's format file."""
    names = _FIELD_NAME.findall(fmt)
    folio = next((n for n in ("folio_addr", "folio") if n in names), "folio")
    rwc = next((n for n in ("rwc_addr", "rwc") if n in names), "rwc")
    return folio, rwc


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
        self.keys: tuple[str, str] = ("folio", "rwc")
        self.raw = False  # hash-ptr is off: the text's pointers are raw
        self.paired_in_kernel = False
        self.synth = f"rmapbench_{os.getpid()}_rmap_walk"

    def check(self, tfs: TraceFS) -> None:
        v4 = tfs.has_event(SYSTEM, "rmap_walk") and "duration_ns" in tfs.event_format(
            SYSTEM, "rmap_walk"
        )
        start_end = tfs.has_event(SYSTEM, START) and tfs.has_event(SYSTEM, END)
        if not (v4 or start_end):
            raise Unavailable(
                "no rmap:rmap_walk tracepoint (a kernel with the proposed rmap "
                "tracepoint patches is needed)"
            )
        if self.prefer == "v4" and not v4:
            raise Unavailable("no rmap:rmap_walk with duration_ns (--tracepoint-form v4)")
        if self.prefer == "start-end" and not start_end:
            raise Unavailable(
                "no rmap:rmap_walk_start/rmap_walk_end (--tracepoint-form start-end)"
            )
        if v4 and self.prefer != "start-end":
            self.form = "duration"
            self.keys = key_fields(tfs.event_format(SYSTEM, "rmap_walk"))
        else:
            self.form = "start_end"
            self.keys = key_fields(tfs.event_format(SYSTEM, START))

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
        if hist.hist_supported(tfs):
            try:
                hist.arm_pair(tfs, inst, start_end_pair(self.synth, self.keys))
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


def start_end_pair(synth: str, keys: tuple[str, str]) -> hist.KeyedPair:
    """The in-kernel pairing of rmap_walk_start and rmap_walk_end."""
    return hist.KeyedPair(synth, (SYSTEM, START), (SYSTEM, END), keys)


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
