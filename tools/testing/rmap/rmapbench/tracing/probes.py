"""fprobe and kprobe backends: entry and exit events on the walk
implementations, rmap_walk_ksm(), rmap_walk_anon() and rmap_walk_file():
the one of the case's page type, or all three (--probe-all-walks;
tracing/select.py walk_types()).

Not on rmap_walk() itself: that dispatcher is inlined into its callers in
mm/rmap.c (try_to_migrate() calls rmap_walk_anon() directly on Debian's
6.12 build), so a probe there sees only walks started from other files.
rmap_walk_locked() dispatches to the same two functions with locked=true.

The folio, folio->mapping and `locked` are fetched by the exit event where
the kernel allows it (Linux 6.10+ saves a return probe's $argN at entry),
else by the entry event. With BTF (CONFIG_PROBE_EVENTS_BTF_ARGS) arguments
are named; without it, positional arguments and the offset of `mapping` in
struct folio on x86-64 (24).

Why on the exit: a walk's interval runs from the entry event's timestamp
to the exit event's, and an event's arguments are fetched after its
timestamp is taken (kernel/trace/trace_fprobe.c: the ring buffer slot is
reserved, then store_trace_args() fills it). Fetched at entry, the
dereference of folio->mapping lies inside every timed walk; at exit it
lies after the interval. A return probe reads the saved argument
registers (store_trace_entry_data()), and the dereference at exit reads
the folio the walk was given, whose mapping a walk does not change.
Measured on the ground-truth kernel under TCG, this took 4-16 us out of
each probed anonymous walk's interval.
"""

from __future__ import annotations

import contextlib
import logging
import os

from rmapbench.machine.shared_probes import EvictError, SharedProbes
from rmapbench.tracing import events, functions, hist, kept, tracefs, walkfuncs
from rmapbench.tracing.backend import Description, Unavailable
from rmapbench.tracing.tracefs import Instance, TraceError, TraceFS, write

log = logging.getLogger(__name__)

FOLIO_MAPPING_OFFSET = 24  # x86-64: flags, lru (16 bytes), then mapping


class DynamicProbe:
    """kind "fprobe" (f:, Linux 6.7+) or "kprobe" (p:/r:)."""

    def __init__(
        self,
        kind: str,
        functions: dict[str, str] | None = None,
        tag: str = "",
        shared: SharedProbes | None = None,
    ) -> None:
        """`functions`: what to probe (function -> page type), the three
        walk functions unless told (tracing/select.py picks the case's;
        the calibration aims the same machinery at an empty function:
        tracing/calibrate.py); `tag` keeps a second set's hist variables
        apart; `shared`: the suite runner's events, used where they are
        the ones this probe would create, and where this probe's are kept
        (machine/shared_probes.py)."""
        assert kind in ("fprobe", "kprobe")
        self.name = kind
        self.group = f"rmapbench_{os.getpid()}"
        self.functions = functions or events.WALK_FUNCTIONS
        self.tag = tag
        self.shared = shared
        # The event group and synthetic event of a function whose kept
        # ones it uses (machine/shared_probes.py), the others' this run's.
        self.kept_groups: dict[str, str] = {}
        self.kept_synths: dict[str, str] = {}
        self._btf = False
        self._hist = False
        # Arguments fetched by the exit event (see the module's docstring);
        # arm() falls back to the entry where return probes take no $argN.
        self.args_on_exit = True

    # -- detection ----------------------------------------------------------
    def check(self, tfs: TraceFS) -> None:
        if not (tfs.root / "dynamic_events").exists():
            raise Unavailable("no dynamic_events (CONFIG_DYNAMIC_EVENTS / CONFIG_PROBE_EVENTS)")
        if self.name not in tracefs.probe_kinds(tfs.root):
            raise Unavailable(
                "no fprobe events (CONFIG_FPROBE_EVENTS, Linux 6.7+)"
                if self.name == "fprobe"
                else "no kprobe events (CONFIG_KPROBE_EVENTS)"
            )
        # BTF names are the walk functions' own; another function is
        # probed with the same number of fetches, by position.
        self._btf = "<argname>" in tracefs.readme(tfs.root) and all(
            walkfuncs.is_walk(f) for f in self.functions
        )

    # -- arming -------------------------------------------------------------
    def _args(self, func: str) -> str:
        # A walk's arguments where its signature has them (tracing/
        # walkfuncs.py); another function's fetches are rmap_walk_file's.
        sig = walkfuncs.SIGNATURES.get(func, walkfuncs.SIGNATURES["rmap_walk_file"])
        if self._btf:
            mapping = "mapping" if sig.mapping is not None else "folio->mapping"
            args = f"folio=folio:x64 mapping={mapping}:x64"
            locked = "locked=locked:u8"
        else:
            folio = f"$arg{sig.folio + 1}"
            mapping = (
                f"$arg{sig.mapping + 1}" if sig.mapping is not None
                else f"+{FOLIO_MAPPING_OFFSET}({folio})"
            )  # fmt: skip
            args = f"folio={folio}:x64 mapping={mapping}:x64"
            locked = f"locked=$arg{(sig.locked if sig.locked is not None else 2) + 1}:u8"
        return f"{args} {locked}" if _with_locked(func) else args

    def _definitions(self, func: str) -> tuple[str, str]:
        entry, exit_ = _event_names(func)
        args = " " + self._args(func)
        on_entry, on_exit = ("", args) if self.args_on_exit else (args, "")
        if self.name == "fprobe":
            return (
                f"f:{self.group}/{entry} {func}{on_entry}",
                f"f:{self.group}/{exit_} {func}%return{on_exit}",
            )
        return (
            f"p:{self.group}/{entry} {func}{on_entry}",
            f"r:{self.group}/{exit_} {func}{on_exit}",
        )

    def arm(self, tfs: TraceFS, inst: Instance) -> Description:
        armed: dict[str, str] = {}
        for i, (func, kind) in enumerate(list(self.functions.items())):
            on_exit = self.args_on_exit
            try:
                func = self._arm_events(tfs, func, i)
            except Unavailable:
                # 6.15+: the walk by its substitute's name, if it has one
                # that this kernel can trace (tracing/walkfuncs.py); the
                # refusal said nothing of where arguments can be fetched.
                instead = walkfuncs.SUBSTITUTES.get(func)
                names = functions.read(tfs.root) if instead else None
                if instead is None or names is None or instead not in names:
                    raise
                self.args_on_exit = on_exit
                func = self._arm_events(tfs, instead, i)
            armed[func] = kind
        self.functions = armed
        self._hist = hist.hist_supported(tfs)
        if self._hist:
            try:
                for i, func in enumerate(self.functions):
                    self._arm_pair(tfs, inst, func, self._pair(func, i))
            except TraceError as e:
                # Without hist triggers (CONFIG_HIST_TRIGGERS) pairing falls
                # back to user space at the text output's microseconds.
                log.warning("in-kernel pairing unavailable, pairing in user space: %s", e)
                self._hist = False
        for func in self.functions:
            for ev in _event_names(func):
                inst.enable(self._group(func), ev)
        args = "BTF arguments" if self._btf else "raw offsets"
        args += " fetched at exit" if self.args_on_exit else " fetched at entry"
        where = ", ".join(self.functions)
        if self.adopted:
            kept_too = " and their pairing" if self.paired_kept else ""
            where += (f" (the events of {', '.join(self.adopted)}{kept_too} "
                      "kept by an earlier program)")  # fmt: skip
        types = tuple(dict.fromkeys(self.functions.values()))
        if self._hist:
            detail = f"{where}; {args}; paired in kernel (hist/synthetic)"
            return Description(self.name, inst.clock, 1, detail, types)
        return Description(
            self.name, inst.clock, 1000, f"{where}; {args}; paired in user space (us text)", types
        )

    def _arm_events(self, tfs: TraceFS, func: str, i: int) -> str:
        """Create (or adopt) the entry and exit events of `func`, the i-th
        function; returns it. Unavailable when the kernel refuses them."""
        if self._adopt(tfs, func, fallback=i == 0):
            return func
        entry, exit_ = self._definitions(func)
        # The exit first: a kernel before 6.10 refuses $argN in a return
        # probe (EINVAL), and then the entry fetches them.
        try:
            self._add(tfs, func, exit_)
        except Unavailable:
            if i or not self.args_on_exit:
                raise
            self.args_on_exit = False
            entry, exit_ = self._definitions(func)
            self._add(tfs, func, exit_)
        self._add(tfs, func, entry)
        return func

    def _adopt(self, tfs: TraceFS, func: str, fallback: bool) -> bool:
        """Use the shared events of `func` when they are what this probe
        would create (with `fallback`, also those fetching the arguments at
        entry: an earlier program found this kernel refusing them at exit);
        any other shared probe on `func` is removed."""
        if self.shared is None:
            return False
        try:
            return self._adopt_or_evict(tfs, func, fallback)
        except EvictError as e:
            raise Unavailable(str(e)) from e

    def _adopt_or_evict(self, tfs: TraceFS, func: str, fallback: bool) -> bool:
        assert self.shared is not None
        forms = [self.args_on_exit] + ([False] if fallback and self.args_on_exit else [])
        for on_exit in forms:
            self.args_on_exit = on_exit
            entry = self.shared.adoptable(func, list(self._definitions(func))[::-1], tfs.root)
            if entry is not None:
                self.kept_groups[func] = entry.events()[0][0]
                return True
        self.args_on_exit = forms[0]
        self.shared.evict([func])
        return False

    def _arm_pair(self, tfs: TraceFS, inst: Instance, func: str, pair: hist.HistPair) -> None:
        """Pair `func`'s events in the kernel: in the runner's kept instance
        (tracing/kept.py) with the kept triggers when they are these, else
        made there and kept; in an instance of its own, made there."""
        if self.shared is None or not kept.holds(self.shared, inst):
            hist.arm_pair(tfs, inst, pair)
            return
        entry = self.shared.probes[func]
        sig = _signature(pair, inst.clock)
        synth_format = tfs.root / "events" / "synthetic" / entry.synth / "format"
        if entry.pairing == sig and entry.synth and synth_format.exists():
            self.kept_synths[func] = entry.synth
            return
        try:
            self.shared.evict_pairing(func)
            recorder = self.shared.pairing_recorder(func)
            with inst.journaled_by(recorder):
                hist.arm_pair(TraceFS(tfs.root, recorder), inst, pair)
        except EvictError as e:
            raise TraceError(str(e)) from e
        except TraceError:
            with contextlib.suppress(EvictError):
                self.shared.evict_pairing(func)
            raise
        self.shared.set_pairing(func, pair.synth, sig)

    def _add(self, tfs: TraceFS, func: str, definition: str) -> None:
        name = definition.split()[0].split("/", 1)[1]
        try:
            if self.shared is None:
                tfs.add_dynamic_event(definition, self.group, name)
            else:
                with self.shared.creating(func, definition, tfs.root):
                    write(tfs.root / "dynamic_events", definition, append=True)
        except TraceError as e:
            # The kernel's own error says little ("No such file or
            # directory"); the list of traceable functions says why.
            why = functions.why_not_traceable(tfs.root, [func])
            raise Unavailable(why or f"cannot probe {func}: {e}") from e

    def _pair(self, func: str, index: int) -> hist.HistPair:
        entry, exit_ = _event_names(func)
        group = self._group(func)
        return hist.HistPair(
            synth=f"{self.group}_{func}",
            entry=(group, entry),
            exit=(group, exit_),
            tag=f"{self.tag}{index}",
            locked=_with_locked(func),
            fields_on_exit=self.args_on_exit,
        )

    @property
    def adopted(self) -> list[str]:
        """The functions whose kept events it uses."""
        return list(self.kept_groups)

    @property
    def paired_kept(self) -> list[str]:
        """The functions whose kept pairing it uses."""
        return list(self.kept_synths)

    def _group(self, func: str) -> str:
        return self.kept_groups.get(func, self.group)

    # -- collecting ---------------------------------------------------------
    def walks(self, trace_text: str) -> events.Pairing:
        damage = events.Damage()
        parsed = list(events.parse(trace_text, damage))
        needs = {f: _fetches(f) for f in self.functions}
        raw = events.pair_entry_exit(
            parsed,
            {_event_names(f)[0]: f for f in self.functions},
            {_event_names(f)[1]: f for f in self.functions},
            needs,
            damage,
        )
        if not self._hist:
            return damage.charge(raw)
        exact = events.synthetic_walks(
            parsed, {self.kept_synths.get(f, f"{self.group}_{f}"): f for f in self.functions},
            needs, damage,
        )  # fmt: skip
        # The raw entry/exit events are still recorded: they tell walks that
        # never finished, and where each walk returned to. A walk they
        # paired that the kernel's pairing did not give (a negative
        # latency, its synthetic event missing) is unpaired.
        exact.walks = events.merge_callers(exact.walks, raw.walks)
        exact.unmatched_exits = raw.unmatched_exits + max(0, len(raw.walks) - len(exact.walks))
        exact.unfinished = raw.unfinished
        return damage.charge(exact)


def _fetches(func: str) -> tuple[str, ...]:
    """The fields _args() fetches for `func`, which its events (and its
    synthetic event: hist.HistPair) then carry."""
    return ("folio", "mapping", "locked") if _with_locked(func) else ("folio", "mapping")


def _with_locked(func: str) -> bool:
    """The walks with a `locked` argument; a calibration function gets the
    same fetch (whatever its third argument holds) so its cost is alike."""
    return walkfuncs.has_locked(func) or not walkfuncs.is_walk(func)


def _signature(pair: hist.HistPair, clock: str) -> str:
    """What a kept pairing must be to be used as it is: the synthetic
    event's fields and both triggers (its name aside) on this clock."""
    text = "|".join((pair.fields(), pair.entry_trigger(), pair.exit_trigger(), clock))
    return text.replace(pair.synth, "<synth>")


def _event_names(func: str) -> tuple[str, str]:
    return f"{func}_entry", f"{func}_exit"
