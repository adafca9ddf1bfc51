"""fgraph backend: the function_graph tracer inside the private instance,
filtered to the walk functions probed (the case's, or all three with
--probe-all-walks: the instance's own set_ftrace_filter)
and to the test's pid (the instance's set_ftrace_pid).

Never the global graph options (set_graph_function, max_graph_depth,
tracing_thresh are global only) and never an unfiltered graph, which would
instrument every call inside the walk and inflate it. With the filter each
walk function is a leaf: one line with its duration, printed to the
nanosecond. It carries no folio, so walks are attributed to the target by
page type in the test's pid.
"""

from __future__ import annotations

import re
from pathlib import Path

from rmapbench.machine.knobs import Undo
from rmapbench.tracing import events, functions, walkfuncs
from rmapbench.tracing.backend import Description, Unavailable
from rmapbench.tracing.tracefs import Instance, TraceError, TraceFS, write

# With funcgraph-proc:  " 0)  python3-187   | ! 828.889 us  |  rmap_walk_anon();"
# and, when the walk slept and other output came between, a closing line
# " 0)  python3-187   | ! 2022.123 ms |  } /* rmap_walk_ksm */" (funcgraph-tail).
# The graph tracer's options have long been the tracer's, shared by every
# instance, so what someone else turned on shows here too: funcgraph-retval
# (6.5+) appends "/* = 0x0 */" to a leaf and makes the closing line
# "} /* rmap_walk_ksm = 0x0 */", funcgraph-retaddr (6.13+) appends
# "/* <-try_to_migrate+0x7c/0xa0 */", and funcgraph-args (6.15+) prints
# the arguments: "rmap_walk_anon(folio=0xffffea0004e6a180, ...);". The
# duration may follow an overhead mark (one of !#@*+$%& and a space,
# print_graph_duration()); what follows the call is left alone.
_LEAF = re.compile(
    r"^\s*(?P<cpu>\d{1,6})\)\s+(?:(?P<comm>.+?)-(?P<pid>\d{1,10})\s+\|\s+)?"
    r"(?:[!#@*+$%&]\s)?\s*(?P<dur>\d{1,12}(?:\.\d{1,9})?)\s*(?P<unit>us|ms|s|ns)\s*\|\s*"
    r"(?:(?P<leaf>\w+)\([^;{}]*\);|\}\s*/\*\s*(?P<tail>\w+)(?:\s*=\s*[-\w]+)?\s*\*/)",
    re.ASCII,
)
# The other lines the filtered graph prints: a walk that did not end as
# a leaf opening ("rmap_walk_ksm() {", with its arguments under
# funcgraph-args), and a context switch between its rules
# ("0)  python3-187  =>  kworker-12"). Any other line is damage.
_OPEN = re.compile(
    r"^\s*\d{1,6}\)\s+(?:.+?-\d{1,10}\s+\|\s+)?\s*\|\s*(?P<func>\w+)\([^;{}]*\)\s*\{\s*$",
    re.ASCII,
)
_SWITCH = re.compile(
    r"^\s*(?:-{10,}|\d{1,6}\)\s+\S.*?-\d{1,10}\s+=>\s+\S.*?-\d{1,10})\s*$", re.ASCII
)
# With funcgraph-irqs (on by default) an interrupt that arrives during a
# walk is bracketed by "==========>" and "<==========" lines
# (print_graph_irq()): a long KSM walk under TCG always has some.
_IRQ = re.compile(
    r"^\s*\d{1,6}\)\s+(?:.+?-\d{1,10}\s+\|\s+)?[\s|]*(?:==========>|<==========)[\s|]*$",
    re.ASCII,
)
_SCALE = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_duration(value: str, unit: str) -> int:
    whole, _, frac = value.partition(".")
    scale = _SCALE[unit]
    return int(whole) * scale + int(frac.ljust(9, "0")[:9]) * scale // 1_000_000_000


def graph_walks(
    text: str,
    pid: int,
    functions: dict[str, str] | None = None,
    beside: frozenset[str] = frozenset(),
) -> events.Pairing:
    """The walks of function_graph text. The filter lets only `functions`
    through, so a line that is none of the forms above, or names another
    function, is damage: counted with the walks lost (events.Damage);
    except one naming a function of `beside`, which another graph
    instance of ours times at the same time (FunctionGraph.beside)."""
    functions = functions or events.WALK_FUNCTIONS
    out = events.Pairing()
    damage = events.Damage()
    for line in text.split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        m = _LEAF.match(line)
        if not m:
            opened = _OPEN.match(line)
            known = _SWITCH.match(line) or _IRQ.match(line)
            ours = opened and (opened.group("func") in functions or opened.group("func") in beside)
            if not ours and not known:
                damage.line(line)
            continue
        func = m.group("leaf") or m.group("tail")
        if func in beside:
            continue
        if func not in functions:
            damage.unread(line)
            continue
        out.walks.append(
            events.Walk(
                end_ns=0,
                duration_ns=parse_duration(m.group("dur"), m.group("unit")),
                pid=int(m.group("pid")) if m.group("pid") else pid,
                function="rmap_walk",  # function_graph records no arguments
                page_type=functions[func],
            )
        )
    return damage.charge(out)


class FunctionGraph:
    """`beside`: functions another graph instance of ours times while this
    one runs (the calibration's, right after each firing). The graph
    tracer's callbacks are shared by its instances, and 6.12 hands some
    of that instance's returns to this one too: Debian's 6.12.118 printed
    "} /* __do_sys_getppid */", a return without its entry, in the walk
    instance after every firing the calibration timed. Such a line says
    nothing about the walks, so it is passed over, not counted as damage."""

    name = "fgraph"

    def __init__(self, pid: int, functions: dict[str, str] | None = None) -> None:
        self.pid = pid
        # What to time; another function for the calibration (tracing/calibrate.py).
        self.functions = functions or events.WALK_FUNCTIONS
        self.beside: frozenset[str] = frozenset()

    def check(self, tfs: TraceFS) -> None:
        tracers = (tfs.root / "available_tracers").read_text().split()
        if "function_graph" not in tracers:
            raise Unavailable("no function_graph tracer (CONFIG_FUNCTION_GRAPH_TRACER)")

    def arm(self, tfs: TraceFS, inst: Instance) -> Description:
        try:
            self._filter(tfs, inst)
            write(inst.path / "set_ftrace_pid", str(self.pid))
            for option, value in (
                ("funcgraph-tail", "1"),
                ("funcgraph-proc", "1"),
                ("funcgraph-irqs", "0"),
            ):
                self._option(tfs, inst.path / "options" / option, value)
            inst.ensure_clock()
            # Stopped before the instance is removed.
            with tfs.journal.change(Undo("write", str(inst.path / "current_tracer"), "nop")):
                write(inst.path / "current_tracer", "function_graph")
        except TraceError as e:
            # set_ftrace_filter refuses a function it does not know (EINVAL,
            # as rmap_walk_file on 6.15+), which is no fault of the tracer.
            why = functions.why_not_traceable(tfs.root, list(self.functions))
            if why:
                raise Unavailable(why) from e
            # Linux 6.1 refuses function_graph in an instance (EINVAL); the
            # global tracer is never touched, so the backend is unavailable.
            raise Unavailable(f"function_graph cannot run in a trace instance here: {e}") from e
        # The graph tracer times a call with trace_clock_local() at entry
        # and return (kernel/trace/fgraph.c), the scheduler's clock,
        # whatever the instance's trace_clock.
        return Description(
            self.name,
            "local",
            1,
            "function_graph in the instance, filtered to "
            + ", ".join(self.functions)
            + " and the test's pid",
            tuple(dict.fromkeys(self.functions.values())),
        )

    def _filter(self, tfs: TraceFS, inst: Instance) -> None:
        """The instance's set_ftrace_filter: the functions to time, or on
        6.15+ their substitutes by the names the kernel can trace
        (tracing/walkfuncs.py)."""
        try:
            write(inst.path / "set_ftrace_filter", " ".join(self.functions))
            return
        except TraceError:
            names = functions.read(tfs.root)
            instead = (
                walkfuncs.substituted(self.functions, names.__contains__) if names else None
            )
            if not instead or instead == self.functions:
                raise
        write(inst.path / "set_ftrace_filter", " ".join(instead))
        self.functions = instead

    @staticmethod
    def _option(tfs: TraceFS, path: Path, value: str) -> None:
        """Set a graph option, its old value journalled: the function_graph
        options are the tracer's (one set of flags in
        trace_functions_graph.c), so the instance's file changes them for
        every instance, the top level's included. The undo goes through
        this instance's file, which exists until the instance is removed,
        after it (undo steps run newest first)."""
        if not path.exists():
            return
        try:
            old = path.read_text().strip()
        except OSError as e:
            raise TraceError(f"reading {path}: {e.strerror}") from e
        if old == value:
            return
        with tfs.journal.change(Undo("write", str(path), old)):
            write(path, value)

    def follow(self, inst: Instance, pids: list[int]) -> None:
        """Trace these processes' walks instead (e.g. kdamond's)."""
        write(inst.path / "set_ftrace_pid", " ".join(str(p) for p in pids))
        self.pid = pids[0]

    def walks(self, trace_text: str) -> events.Pairing:
        return graph_walks(trace_text, self.pid, self.functions, self.beside)
