"""In-kernel pairing of entry and exit events with a hist trigger feeding a
synthetic event (Documentation/trace/histogram.rst, "onmatch").

Text trace output prints timestamps in microseconds; the hist variables hold
common_timestamp in nanoseconds, so a walk's latency is exact to the clock.
The pairing key is the task (common_pid): a walk can sleep and finish on
another CPU.

Every trigger names the instance's clock (`clock=mono`): a hist trigger
that uses common_timestamp sets its instance's trace_clock to its `clock=`
attribute, "global" when none is given (trace_events_hist.c,
hist_register_trigger() -> tracing_set_clock()). Without it, arming the
pairing silently moved the whole instance from mono to global, the
scheduler's clock: under TCG with the TSC marked unstable that is TSC
cycles at the boot-time calibration, while CLOCK_MONOTONIC reads the HPET,
so the walks were timed on another clock than the trigger's syscall and
the bystanders' operations set against them (walks read up to 3% longer
than the move_pages() they ran inside, on a loaded host).
"""

from __future__ import annotations

from dataclasses import dataclass

from rmapbench.machine.knobs import Undo
from rmapbench.tracing.tracefs import Instance, TraceFS, write

SYNTH_FIELDS = "u64 lat; u64 folio; u64 mapping"


@dataclass(frozen=True)
class HistPair:
    """entry (system, event) + exit (system, event) -> synthetic event."""

    synth: str
    entry: tuple[str, str]
    exit: tuple[str, str]
    tag: str  # makes variable names unique across pairs
    locked: bool = False  # the events have a `locked` field to carry
    # folio, mapping (and locked) are the exit event's fields: the entry
    # trigger then saves only the timestamp (tracing/probes.py says why).
    fields_on_exit: bool = False

    def fields(self) -> str:
        return SYNTH_FIELDS + ("; u8 locked" if self.locked else "")

    def entry_trigger(self) -> str:
        t = self.tag
        if self.fields_on_exit:
            return f"hist:keys=common_pid:ts{t}=common_timestamp"
        lk = f",lk{t}=locked" if self.locked else ""
        return f"hist:keys=common_pid:ts{t}=common_timestamp,fo{t}=folio,ma{t}=mapping{lk}"

    def exit_trigger(self) -> str:
        t = self.tag
        sys_, ev = self.entry
        if self.fields_on_exit:
            lk = ",locked" if self.locked else ""
            return (
                f"hist:keys=common_pid:lat{t}=common_timestamp-$ts{t}:"
                f"onmatch({sys_}.{ev}).trace({self.synth},$lat{t},folio,mapping{lk})"
            )
        lk_var = f",lx{t}=$lk{t}" if self.locked else ""
        lk_arg = f",$lx{t}" if self.locked else ""
        return (
            f"hist:keys=common_pid:lat{t}=common_timestamp-$ts{t},"
            f"fx{t}=$fo{t},mx{t}=$ma{t}{lk_var}:"
            f"onmatch({sys_}.{ev}).trace({self.synth},$lat{t},$fx{t},$mx{t}{lk_arg})"
        )


@dataclass(frozen=True)
class KeyedPair:
    """Start and end events of one walk that carry the walk's identity (the
    proposed tracepoints' raw folio and rwc pointers), paired in the kernel
    per task: a task runs one walk at a time, so the hist maps hold one
    entry per followed task. Keyed by the pointers instead, they would hold
    one per folio ever walked, and a map full at its 2048 entries drops every
    new walk (the writeback walks of a file scenario's build fill it). The
    start's pointers ride along: the synthetic event carries the latency,
    the end's pointers and the start's, and a walk counts only when they
    agree (a start lost, or a walk nested in another's callback, does not)."""

    synth: str
    entry: tuple[str, str]
    exit: tuple[str, str]
    keys: tuple[str, ...]  # the events' field names, e.g. ("folio_addr", "rwc_addr")
    tag: str = "k"
    # The probe-cost calibration builds the same pairing on two events
    # whose fields differ (tracing/tracepoint.py SyscallPair): the entry
    # event's fields saved, when not `keys`; each synthetic field's type
    # (the kernel refuses a parameter of another size or signedness than
    # its synthetic field, kernel/trace/trace_events_hist.c
    # check_synth_field()); the synthetic fields' names.
    entry_keys: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    def _vars(self, prefix: str) -> list[str]:
        return [f"{prefix}{i}{self.tag}" for i in range(len(self.keys))]

    def fields(self) -> str:
        names = self.names or SYNTH_KEY_NAMES[: len(self.keys)]
        types = self.types or ("u64",) * len(self.keys)
        pairs = list(zip(types, names, strict=True))
        return "u64 lat; " + "; ".join(
            [f"{t} {n}" for t, n in pairs] + [f"{t} {START_PREFIX}{n}" for t, n in pairs]
        )

    def entry_trigger(self) -> str:
        keys = self.entry_keys or self.keys
        saved = ",".join(f"{v}={k}" for v, k in zip(self._vars("s"), keys, strict=True))
        return f"hist:keys=common_pid:ts{self.tag}=common_timestamp,{saved}"

    def exit_trigger(self) -> str:
        t = self.tag
        sys_, ev = self.entry
        carried = ",".join(
            f"{x}=${s}" for x, s in zip(self._vars("x"), self._vars("s"), strict=True)
        )
        params = ",".join([f"$lat{t}", *self.keys, *(f"${x}" for x in self._vars("x"))])
        return (
            f"hist:keys=common_pid:lat{t}=common_timestamp-$ts{t},{carried}:"
            f"onmatch({sys_}.{ev}).trace({self.synth},{params})"
        )


# The synthetic event's names for KeyedPair's keys, in order (the end
# event's; START_PREFIX + name: the start event's).
SYNTH_KEY_NAMES = ("folio", "rwc")
START_PREFIX = "start_"


def hist_supported(tfs: TraceFS) -> bool:
    return (tfs.root / "synthetic_events").exists()


def arm_pair(tfs: TraceFS, inst: Instance, pair: HistPair | KeyedPair) -> None:
    """Create the synthetic event, attach the two triggers and enable the
    synthetic event in the instance. Every step is journaled; undo runs in
    reverse order (the enable, the triggers, then the synthetic event
    itself). The triggers come before the enable: they set the instance's
    clock, which the enable would otherwise write first (one RCU grace
    period more: tracing/tracefs.py)."""
    synth_file = tfs.root / "synthetic_events"
    with tfs.journal.change(Undo("append", str(synth_file), f"!{pair.synth}")):
        write(synth_file, f"{pair.synth} {pair.fields()}", append=True)
    clock = f":clock={inst.clock}"  # both: each trigger sets the instance's clock
    inst.add_trigger(*pair.entry, pair.entry_trigger() + clock)
    inst.clock_set = True
    inst.add_trigger(*pair.exit, pair.exit_trigger() + clock)
    inst.enable("synthetic", pair.synth)
